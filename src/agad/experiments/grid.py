"""Grids of runs: one run per TrainConfig, each in its own subprocess, resumable.

A run lives in ``ROOT/<run_name(cfg)>`` and is complete when its
``metrics.json`` exists; a complete run is never recomputed, so a grid can be
stopped (Ctrl-C, time budget, crash) and called again with the same configs. A
run killed mid-training continues from the checkpoint in its staging folder
(``agad train --resume``) and ends as an uninterrupted run would.
Each run is ``python -m agad train --config TOML --out DIR --no-progress``
followed by ``python -m agad evaluate DIR``, in subprocesses, so that a crash
or an out-of-memory kill of one run only records a line in
``ROOT/failures.jsonl``.

    ROOT/
      failures.jsonl                                  one JSON line per failed attempt
      fashion-mnist/agad-naive/c3-g0.05-s0-1a2b3c4d/  a run directory (see agad.rundir): config.json,
                                                      history.jsonl, metrics.json, scores.csv,
                                                      reconstructions.png, *.safetensors (if kept)
      fashion-mnist/agad-naive/.c3-g0.05-s0-1a2b3c4d.lock   held while a process works on that run
      fashion-mnist/ganomaly/c3-g0-s0-9f8e7d6c/
      table2.md, table2.csv                           written by agad.experiments.tables

Runs of different tables with the same settings share a directory (table1's runs are table2's
gamma-0 runs), so tables can share one root and nothing is computed twice.

Example (a GPU machine, 12 runs at a time, stop launching after 3 hours)::

    >>> from agad.experiments.grid import grid_for, run_grid           # doctest: +SKIP
    >>> cfgs = grid_for("table2", "fashion-mnist", seeds=[0, 1, 2], epochs=15)   # doctest: +SKIP
    >>> results = run_grid(cfgs, "results/fmnist", jobs=12, time_budget_s=3 * 3600)  # doctest: +SKIP

This module imports neither torch nor the trainer at import time (the CLI
stays fast); the in-process mode used by tests imports the pipeline lazily.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..config import BACKBONES, BASELINE_BACKBONES, RUNTIME_FIELDS, TrainConfig
from ..errors import AgadError
from ..rundir import CHECKPOINT_DIR, CONFIG_FILE, METRICS_FILE, staging_path

TABLES = ("table1", "table2", "table3", "table4", "table5", "table9", "baselines")
FAILURES_FILE = "failures.jsonl"
WEIGHT_SUFFIX = ".safetensors"

# Dataset names that load_dataset resolves by name (anything else is a path).
DATASET_NAMES = ("mnist-sample", "mnist", "fashion-mnist", "cifar10", "cifar100")
N_CLASSES = {"mnist-sample": 10, "mnist": 10, "fashion-mnist": 10, "cifar10": 10, "cifar100": 20}
STDERR_TAIL = 2000
# Fields that mean nothing for GANomaly / Skip-GANomaly: not part of a baseline run's identity, not
# shown in its row labels (so a change of AGAD's defaults does not orphan baseline runs). The baselines
# score with G itself.
AGAD_ONLY = frozenset({"ca", "advprop", "freeze_bn_anomalies", "track_bn_anomalies", "track_bn_pseudo",
                       "scoring_bn", "scoring_bn_anomaly_weight", "anomaly_distance", "w_adcon", "ema_decay",
                       "adcon_cap", "d_spectral_norm", "label_head"})

# Table defaults: the gammas of the paper's columns.
GAMMAS_T2 = (0.0, 0.01, 0.05, 0.1, 0.2)
GAMMAS_T34 = (0.0, 0.01, 0.03, 0.05, 0.1)
GAMMAS_T5 = (0.0, 0.01, 0.05, 0.1)  # the paper prints no Table 5 numbers; the Table 2 grid without 0.2
DEFAULT_BACKBONES = {
    "table1": ("naive",),
    "table2": ("naive",),
    "table3": ("unet",),  # the paper does not say; the same backbone as its C.A. ablation (Table 4)
    "table4": ("unet",),  # Table 4 is stated as UNet
    "table5": ("naive",),
    "table9": BACKBONES,
    "baselines": ("naive",),
}


# ------------------------------------------------------------------ names
def is_dataset_name(data: str) -> bool:
    return str(data) in DATASET_NAMES


def means_nothing_for(method: str, key: str) -> bool:
    """Whether the config field ``key`` plays no part in a run of ``method``: AGAD's own switches, and the
    backbone, which a baseline's or reference's method fixes (BASELINE_BACKBONES)."""
    return method != "agad" and (key in AGAD_ONLY or key == "backbone")


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


# Run names were first built against these values; later changes of TrainConfig's defaults must not
# rename existing runs (the stability defaults changed after the first grids ran).
NAME_BASELINE_OVERRIDES = {"ema_decay": 0.0, "advprop": False, "min_steps": 0, "d_spectral_norm": False,
                           "adcon_cap": 0.0, "label_head": False, "track_bn_anomalies": True}


def _defaults() -> dict[str, Any]:
    return {**TrainConfig().resolved().to_dict(), **NAME_BASELINE_OVERRIDES}


def canonical_config(cfg: TrainConfig) -> dict[str, Any]:
    """What identifies a run: the fields that differ from their defaults, minus runtime-only fields.

    Comparing with the defaults (rather than hashing every field) keeps old run names valid when a
    new field with a default is added to TrainConfig. Floats are normalised (gamma 0 == 0.0), and a
    dataset folder counts by its name only (``/data/oct`` == ``/mnt/copy/oct``), so that a results
    folder stays valid when the data moves (e.g. rebuilding tables on another machine).
    """
    types = _field_types()
    defaults = _defaults()
    out: dict[str, Any] = {}
    for k, v in cfg.resolved().to_dict().items():  # "auto" counts as what it resolves to
        if k in RUNTIME_FIELDS or means_nothing_for(cfg.method, k):
            continue
        if k == "unet_style" and (not cfg.uses_unet() or v == "zhou"):  # every U-Net before the field was zhou's
            continue
        if types.get(k) in (float, float | None) and isinstance(v, (int, float)) and not isinstance(v, bool):
            v = float(v)
        if k == "data" and not is_dataset_name(v):
            v = os.path.basename(os.path.normpath(str(v)))
        if v != defaults.get(k):
            out[k] = v
    return out


def config_differences(recorded: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """Fields (runtime ones aside) where a run's recorded config differs from ``cfg``; ["config"] if unreadable."""
    try:
        theirs = canonical_config(TrainConfig.from_dict(recorded, record=True))
    except (AgadError, TypeError):
        return ["config (unreadable with this version)"]
    ours = canonical_config(cfg)
    return sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))


def config_key(cfg: TrainConfig) -> str:
    """8 hex digits of SHA-1 over :func:`canonical_config` (sorted JSON)."""
    blob = json.dumps(canonical_config(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:8]


def data_label(data: str) -> str:
    """A directory-safe label: the dataset name, or a folder's base name."""
    name = str(data) if is_dataset_name(data) else os.path.basename(os.path.normpath(str(data))) or "data"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def run_name(cfg: TrainConfig) -> str:
    """A stable, readable relative directory for one run.

    ``<data>/<method>[-<backbone>]/c<class>-g<gamma>-s<seed>[-noca][-ap][-fz][-k<n>][-oa]-<hash>``;
    the hash (:func:`config_key`) tells apart runs that differ in any other option (epochs, lr, ...).

    >>> run_name(TrainConfig(data="fashion-mnist", normal_class=3, gamma=0.05))
    'fashion-mnist/agad-naive/c3-g0.05-s0-ap-68293d6c'
    """
    model = f"agad-{cfg.backbone}" if cfg.method == "agad" else cfg.method
    parts = [f"c{cfg.normal_class}", f"g{float(cfg.gamma):g}", f"s{cfg.seed}"]
    if cfg.method == "agad":
        parts += [tag for on, tag in ((not cfg.ca, "noca"), (cfg.advprop, "ap"), (cfg.freeze_bn_anomalies, "fz")) if on]
    if cfg.known_classes is not None:
        parts.append(f"k{cfg.known_classes}")
    if cfg.protocol != "one-vs-rest":
        parts.append("oa")
    parts.append(config_key(cfg))
    return f"{data_label(cfg.data)}/{model}/{'-'.join(parts)}"


# ------------------------------------------------------------------ TOML
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_key(k: str) -> str:
    return k if _BARE_KEY.match(k) else _toml_string(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(str(k))} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise AgadError(f"cannot write a value of type {type(v).__name__} to TOML: {v!r}")


def to_toml(values: dict[str, Any]) -> str:
    """A flat TOML document (str/int/float/bool; lists; dicts as inline tables); None values and empty dicts omitted.

    >>> to_toml({"data": "mnist", "gamma": 0.05, "ca": False, "known_classes": None})
    'data = "mnist"\\ngamma = 0.05\\nca = false\\n'
    """
    lines = []
    for k, v in values.items():
        if v is None or (isinstance(v, dict) and not v):
            continue
        lines.append(f"{_toml_key(str(k))} = {_toml_value(v)}")
    return "".join(line + "\n" for line in lines)


# ------------------------------------------------------------------ grid builders
def default_classes(data: str) -> list[int]:
    """Every class of a named dataset; class 0 ("normal") for a normal/abnormal folder."""
    if is_dataset_name(data):
        return list(range(N_CLASSES[str(data)]))
    from ..data.folder import is_folder_dataset

    if is_folder_dataset(data):
        return [0]
    from ..data import load_dataset  # an IDX or CIFAR folder: count its classes

    return list(range(load_dataset(data).num_classes))


def _as_list(x, default) -> list:
    if x is None:
        return list(default)
    if isinstance(x, (str, int, float)):
        return [x]
    return list(x)


def _variants(table: str, gammas: list[float], backbones: list[str], method: str) -> list[dict[str, Any]]:
    """The table's axes (everything but class and seed), in priority order."""
    out: list[dict[str, Any]] = []
    for bb in backbones:
        for g in gammas:
            base = {"method": method, "backbone": bb, "gamma": g}
            if table in ("table1", "table2", "table9"):
                out.append(base)
            elif table in ("table3", "table4"):
                out += [{**base, "ca": True}, {**base, "ca": False}]
            elif table == "table5":
                for advprop in (False, True):
                    for freeze in (False, True):
                        if freeze and g == 0:
                            continue  # freezing BN on labelled anomalies is a no-op without any
                        out.append({**base, "advprop": advprop, "freeze_bn_anomalies": freeze})
            elif table == "baselines":
                out += [{**base, "method": "agad", "ca": True}, {**base, "method": "agad", "ca": False}]
                out += [{**base, "method": m, "backbone": BASELINE_BACKBONES[m]} for m in ("ganomaly", "skip-ganomaly")]
    # a backbone list on the baselines table repeats the baseline runs: keep each once
    seen, unique = set(), []
    for v in out:
        key = tuple(sorted(v.items()))
        if key not in seen:
            seen.add(key)
            unique.append(v)
    return unique


def grid_for(
    table: str,
    data: str,
    classes: Iterable[int] | None = None,
    seeds: Iterable[int] = (0,),
    gammas: Iterable[float] | None = None,
    backbone: str | Sequence[str] | None = None,
    epochs: int | None = None,
    method: str | None = None,
    base_overrides: dict[str, Any] | None = None,
) -> list[TrainConfig]:
    """The configs of one paper table, ordered seed-major so a partial grid is still useful.

    Order: every variant and class of seed 0, then seed 1, ...; within a seed, one variant
    (row) at a time over all classes. ``base_overrides`` sets any other TrainConfig field
    (e.g. ``{"ema_decay": 0.999}``); setting a field that the table varies is an error.

    Tables: table1 (gamma 0), table2 (gamma 0/.01/.05/.1/.2), table3 (folder data, normal class
    only, gamma 0/.01/.03/.05/.1, with and without C.A.), table4 (C.A. on/off, same gammas, UNet),
    table5 (advprop x freeze_bn_anomalies; freeze skipped at gamma 0), table9 (naive/unet/unetpp at
    gamma 0), baselines (AGAD with and without C.A., GANomaly, Skip-GANomaly at gamma 0).

    >>> [c.gamma for c in grid_for("table2", "mnist-sample", classes=[0])]
    [0.0, 0.01, 0.05, 0.1, 0.2]
    """
    if table not in TABLES:
        raise AgadError(f"unknown table {table!r}; valid tables are: {', '.join(TABLES)}")
    overrides = dict(base_overrides or {})
    if epochs is not None:
        overrides["epochs"] = epochs
    if table == "baselines" and method not in (None, "agad"):
        raise AgadError("the baselines table fixes the methods (agad, ganomaly, skip-ganomaly); drop --method")
    method = method or overrides.pop("method", "agad")
    data = str(data)
    if not is_dataset_name(data):
        data = os.path.abspath(os.path.expanduser(data))  # subprocesses and later evaluation may run elsewhere
    if table == "table3" and is_dataset_name(data):
        raise AgadError("table3 is the real-world setting: pass --data DIR with normal/ and abnormal/ sub-folders")

    default_gammas = {"table2": GAMMAS_T2, "table3": GAMMAS_T34, "table4": GAMMAS_T34, "table5": GAMMAS_T5}
    gamma_list = [float(g) for g in _as_list(gammas, default_gammas.get(table, (0.0,)))]
    if "backbone" in overrides and backbone is None:
        backbone = overrides.pop("backbone")
    backbones = [str(b) for b in _as_list(backbone, DEFAULT_BACKBONES[table])]
    variants = _variants(table, gamma_list, backbones, method)

    varied = set().union(*(v.keys() for v in variants)) | {"normal_class", "seed", "data"}
    clash = sorted(varied & set(overrides))
    if clash:
        raise AgadError(
            f"{table} sets {clash[0]!r} itself; use the grid options (--classes, --seeds, --gammas, --backbone, "
            f"--method, --data) instead of --set {clash[0]}=..."
        )
    class_list = [int(c) for c in _as_list(classes, ())] if classes is not None else default_classes(data)
    seed_list = [int(s) for s in _as_list(seeds, (0,))]
    if not class_list or not seed_list:
        raise AgadError("a grid needs at least one class and one seed")

    configs = []
    for seed in seed_list:
        for v in variants:
            for c in class_list:
                configs.append(TrainConfig.from_dict({**overrides, **v, "data": data, "normal_class": c, "seed": seed},
                                                     source=f"{table} grid"))
    return configs


# ------------------------------------------------------------------ running
def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_job(jobs: int) -> int:
    """CPU threads each of ``jobs`` parallel runs may use: max(1, cores // jobs)."""
    return max(1, cpu_count() // max(1, int(jobs)))


def is_complete(run_dir: Path) -> bool:
    return (Path(run_dir) / METRICS_FILE).is_file()


class RunFailed(AgadError):
    """One run of a grid failed; the message ends with the tail of its error output."""


class _Processes:
    """Live subprocesses, so that Ctrl-C in the grid's thread can stop them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[subprocess.Popen] = set()
        self.stopping = threading.Event()

    def run(self, args: list[str], env: dict[str, str], timeout_s: float | None) -> tuple[int | str, str, str]:
        if self.stopping.is_set():
            return "interrupted", "", ""
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                stdin=subprocess.DEVNULL)
        with self._lock:
            self._live.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout_s)
            return proc.returncode, out, err
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return "timeout", out, err + f"\nkilled after {timeout_s} s (run timeout)"
        finally:
            with self._lock:
                self._live.discard(proc)

    def terminate_all(self) -> None:
        self.stopping.set()
        with self._lock:
            procs = list(self._live)
        for p in procs:
            if p.poll() is None:
                p.terminate()


def _tail(text: str, n: int = STDERR_TAIL) -> str:
    text = (text or "").strip()
    return text if len(text) <= n else "..." + text[-n:]


def _subprocess_env(num_threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if num_threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(num_threads)
    # the child must import this very agad, also when the caller put src/ on sys.path by hand
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _clean_staging(out: Path) -> None:
    """Remove hidden staging directories of this run left by a killed process (SIGKILL skips cleanup)."""
    if out.parent.is_dir():
        for p in out.parent.glob(f".{out.name}.*.tmp"):
            shutil.rmtree(p, ignore_errors=True)


def _record_failure(root: Path, lock: threading.Lock, record: dict[str, Any]) -> None:
    with lock:
        root.mkdir(parents=True, exist_ok=True)
        with open(root / FAILURES_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True, default=str) + "\n")


def _drop_weights(out: Path) -> None:
    for p in out.glob(f"*{WEIGHT_SUFFIX}"):
        p.unlink(missing_ok=True)


def _auroc(out: Path) -> float | None:
    m = _read_json(out / METRICS_FILE)
    return None if m is None else m.get("auroc")


_FAILURE_LOCK = threading.Lock()


@contextlib.contextmanager
def _run_lock(out: Path) -> Iterator[bool]:
    """An exclusive lock on ``.<run>.lock`` beside the run: two grids sharing a root never run the same
    config at once (nor clean up each other's staging directory). Released by the OS if the process dies."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process protection
        yield True
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.parent / f".{out.name}.lock"
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            if is_complete(out):  # nobody needs it any more (a late comer finds the run complete)
                path.unlink(missing_ok=True)
            fcntl.flock(f, fcntl.LOCK_UN)


def _execute(cfg: TrainConfig, root: Path, **kw: Any) -> dict[str, Any]:
    """Run one config to completion (train if needed, then evaluate); never raises for a failed run."""
    out = root / run_name(cfg)
    if is_complete(out):
        return _execute_locked(cfg, root, **kw)  # only its recorded config is checked
    with _run_lock(out) as mine:
        if not mine:
            return {"name": run_name(cfg), "run_dir": str(out), "status": "busy", "auroc": None, "seconds": 0.0,
                    "error": "another process is running this config"}
        return _execute_locked(cfg, root, **kw)


def _execute_locked(cfg: TrainConfig, root: Path, *, keep_weights: bool, in_process: bool, num_threads: int | None,
                    timeout_s: float | None, procs: _Processes) -> dict[str, Any]:
    name = run_name(cfg)
    out = root / name
    t0 = time.perf_counter()
    result: dict[str, Any] = {"name": name, "run_dir": str(out), "status": "complete", "auroc": None,
                              "seconds": 0.0, "error": None}

    def fail(stage: str, returncode, error: str, command: list[str] | None = None) -> dict[str, Any]:
        result.update(status="failed", error=error, seconds=time.perf_counter() - t0)
        _record_failure(root, _FAILURE_LOCK, {
            "run": name, "run_dir": str(out), "stage": stage, "returncode": returncode, "error": error,
            "seconds": result["seconds"], "time": _dt.datetime.now().isoformat(timespec="seconds"),
            "config": cfg.to_dict(), "command": None if command is None else shlex.join(command),
            "toml": to_toml(cfg.to_dict()),  # the (deleted) --config file, to re-run the command by hand
        })
        return result

    # An existing directory is never half-written (train is atomic), but it may lack its evaluation
    # (a killed `agad evaluate`), or hold another run: the name only covers non-default values, so a
    # changed default would otherwise pass an old run off as this one.
    need_train, force = True, False
    if out.exists():
        meta = _read_json(out / CONFIG_FILE)
        if meta is not None and isinstance(meta.get("config"), dict):
            diff = config_differences(meta["config"], cfg)
            if diff:
                return fail("check", None, f"{out} holds a different run (config differs in {', '.join(diff)}); "
                                           "move it away or change the grid root")
            if is_complete(out):
                result["auroc"] = _auroc(out)
                return result
            need_train = not (out / "generator.safetensors").is_file()
        force = need_train
    _clean_staging(out)
    # a run killed mid-training (SIGKILL, a machine shut down) left its staging folder with a checkpoint:
    # continue from it; a resumed run ends with the weights and scores of an uninterrupted one
    resume = need_train and (staging_path(out) / CHECKPOINT_DIR).is_dir()

    if cfg.num_threads == 0 and num_threads:
        cfg = cfg.replace(num_threads=num_threads)
    def interrupted() -> dict[str, Any]:
        _clean_staging(out)
        result.update(status="interrupted", seconds=time.perf_counter() - t0)
        return result

    if in_process:
        stage = "train"
        try:
            from ..pipeline import evaluate, train

            if need_train:
                train(cfg, out, progress=False, overwrite=force, figure=False, resume=resume)
            stage = "evaluate"
            evaluate(out)
        except Exception as exc:  # one run's failure must not stop the grid
            return fail(stage, None, _tail(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    else:
        py = sys.executable
        env = _subprocess_env(cfg.num_threads or num_threads)
        if need_train:
            root.mkdir(parents=True, exist_ok=True)
            fd, toml_path = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=root)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(to_toml(cfg.to_dict()))
                args = [py, "-m", "agad", "train", "--config", toml_path, "--out", str(out), "--no-progress"]
                args += ["--force"] if force else []
                args += ["--resume"] if resume else []
                rc, so, se = procs.run(args, env, timeout_s)
            finally:
                Path(toml_path).unlink(missing_ok=True)
            if rc != 0:
                if procs.stopping.is_set():
                    return interrupted()
                _clean_staging(out)
                return fail("train", rc, _tail(se or so), args)
        args = [py, "-m", "agad", "evaluate", str(out)]
        rc, so, se = procs.run(args, env, timeout_s)
        if rc != 0:
            return interrupted() if procs.stopping.is_set() else fail("evaluate", rc, _tail(se or so), args)
    if not is_complete(out):
        return fail("evaluate", None, f"{out / METRICS_FILE} was not written")
    if not keep_weights:
        _drop_weights(out)
    result.update(status="trained" if need_train else "evaluated", auroc=_auroc(out),
                  seconds=time.perf_counter() - t0)
    return result


def run_one(cfg: TrainConfig, root: str | Path, *, keep_weights: bool = True, in_process: bool = False,
            num_threads: int | None = None, timeout_s: float | None = None) -> Path:
    """Train and evaluate one config into ``root/run_name(cfg)``; a no-op when that run is complete.

    Raises RunFailed (with the tail of the run's error output) when it fails; the failure is
    also appended to ``root/failures.jsonl``. ``in_process=True`` calls agad.pipeline directly
    (tests); otherwise two subprocesses (`agad train`, `agad evaluate`) do the work.

    >>> run_one(TrainConfig(epochs=1), "results/try")   # doctest: +SKIP
    PosixPath('results/try/mnist-sample/agad-naive/c0-g0-s0-...')
    """
    r = _execute(cfg, Path(root), keep_weights=keep_weights, in_process=in_process, num_threads=num_threads,
                 timeout_s=timeout_s, procs=_Processes())
    if r["status"] == "failed":
        raise RunFailed(f"run {r['name']} failed: {r['error']}")
    return Path(r["run_dir"])


def _fmt_seconds(s: float) -> str:
    return f"{s:.0f}s" if s < 600 else f"{s / 60:.1f}min"


def run_grid(
    configs: Iterable[TrainConfig],
    root: str | Path,
    jobs: int = 2,
    keep_weights: bool = False,
    log: Callable[[str], Any] | None = print,
    time_budget_s: float | None = None,
    *,
    in_process: bool = False,
    run_timeout_s: float | None = None,
) -> list[dict[str, Any]]:
    """Run every config that is not complete yet, ``jobs`` at a time, in the given order.

    Returns one dict per config (same order; duplicate configs dropped): ``name``, ``run_dir``,
    ``status`` (``complete``: already done before this call; ``trained``; ``evaluated``: only the
    evaluation was missing; ``failed``; ``not-started``: the time budget had passed; ``busy``:
    another process holds this run's lock), ``auroc``
    (in [0, 1] or None), ``seconds`` and ``error``. Failures go to ``root/failures.jsonl`` and
    never stop the grid; Ctrl-C stops the running subprocesses and re-raises.
    No run is launched once ``time_budget_s`` has passed (runs in flight finish);
    ``run_timeout_s`` kills a single run that takes longer. Each run gets
    max(1, cores // jobs) CPU threads.
    """
    log = log or (lambda _msg: None)
    root = Path(root)
    configs = list(configs)
    names = [run_name(c) for c in configs]
    if len(set(names)) < len(names):
        first: dict[str, int] = {}
        keep = [first.setdefault(n, i) == i for i, n in enumerate(names)]
        log(f"grid: {len(names) - sum(keep)} duplicate configs dropped")
        configs = [c for c, k in zip(configs, keep) if k]
        names = [n for n, k in zip(names, keep) if k]
    jobs = max(1, int(jobs))
    n_threads = threads_per_job(jobs)
    root.mkdir(parents=True, exist_ok=True)
    done_before = [is_complete(root / n) for n in names]
    todo = [i for i, d in enumerate(done_before) if not d]
    budget = "" if time_budget_s is None else f"; no new run after {_fmt_seconds(time_budget_s)}"
    # a config's own num_threads wins over the share (_execute_locked)
    threads = "/".join(map(str, sorted({c.num_threads or n_threads for c in configs}))) or str(n_threads)
    log(f"grid: {len(names)} runs in {root}, {sum(done_before)} already complete; {len(todo)} to run, "
        f"{jobs} at a time with {threads} CPU thread(s) each{budget}")

    t_start = time.monotonic()
    deadline = None if time_budget_s is None else t_start + float(time_budget_s)
    procs = _Processes()
    results: list[dict[str, Any] | None] = [None] * len(names)

    def task(i: int) -> dict[str, Any]:
        late = procs.stopping.is_set() or (deadline is not None and time.monotonic() >= deadline)
        if late and not is_complete(root / names[i]):
            return {"name": names[i], "run_dir": str(root / names[i]), "status": "not-started", "auroc": None,
                    "seconds": 0.0, "error": None}
        return _execute(configs[i], root, keep_weights=keep_weights, in_process=in_process, num_threads=n_threads,
                        timeout_s=run_timeout_s, procs=procs)

    progress = 0
    ex = cf.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="agad-run")
    try:
        # FIFO: launched in the caller's order; complete runs are only checked (config.json) and pass quickly
        futures = {ex.submit(task, i): i for i in range(len(names))}
        for fut in cf.as_completed(futures):
            i = futures[fut]
            r = fut.result()
            results[i] = r
            progress += 1
            if r["status"] in ("not-started", "complete"):
                continue
            head = f"[{progress}/{len(names)}] {r['name']}"
            if r["status"] == "busy":
                log(f"{head}  skipped: another process is running it")
            elif r["status"] == "failed":
                last = (r["error"] or "").strip().splitlines()[-1:] or [""]
                log(f"{head}  FAILED after {_fmt_seconds(r['seconds'])}: {last[0][:200]} (see {root / FAILURES_FILE})")
            else:
                auc = "n/a" if r["auroc"] is None else f"{100 * r['auroc']:.2f}%"
                log(f"{head}  AUROC {auc}  {_fmt_seconds(r['seconds'])}")
    except BaseException:
        procs.terminate_all()  # Ctrl-C: stop the children too, launch nothing more
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)

    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    log(f"grid: {summary} in {_fmt_seconds(time.monotonic() - t_start)}")
    return [r for r in results if r is not None]
