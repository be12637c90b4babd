"""The fault catalogue: bad input, damaged runs, hostile files and failing disks, tried through `agad`.

Each case builds its own small fixture in tmp_path and calls the command line in-process
(``agad.cli.main``), or, where a hang is the fault, in a subprocess under ``timeout``. A case that
expects a refusal checks what a user sees and what is left on disk:

- the exit code (2 for bad input);
- stderr is exactly one line, it starts with ``agad: error:`` and names the file or the field at fault;
- nothing half-written: the output (CSV, run directory, exported file) is absent, every watched folder
  lists the same entries (names, sizes, times) before and after, and no hidden ``.NAME.staging``
  folder, lock or temporary file is left in the output's parent, except a staging folder that the
  error line names: a training that stops after it started keeps it for inspection and ``--resume``.

A few cases expect a success and check a property instead (modes follow the umask, a symbolic-link
loop is read once, the same seed and thread count give the same weights).

The cases read copies of ONE tiny run, trained once per pytest run; the few that must train train
on a 60-image IDX folder (6 images of the normal class) in about a second. docs/RELIABILITY.md
publishes this catalogue; re-run it with ``.venv/bin/python -m pytest tests/test_faults.py -q``.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import agad.data.cifar as cifar_module
from agad.cli import main
from agad.checkpoint import save_state
from agad.pipeline import CHECKPOINT_FILE
from agad.rundir import CHECKPOINT_DIR, staging_dir, staging_path

REPO = Path(__file__).resolve().parents[1]
ERROR_PREFIX = "agad: error:"
FIFO_TIMEOUT_S = 60  # a hang fails the case after this long instead of blocking the suite


# ----------------------------------------------------------------- tiny data, built in tmp_path
def png(path: Path, value: int | None = None, size: tuple[int, int] = (28, 28), seed: int = 0) -> Path:
    """A grey PNG: constant ``value``, or noise when None."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if value is None:
        pixels = np.random.default_rng(seed).integers(0, 256, size[::-1], dtype=np.uint8)
        Image.fromarray(pixels, "L").save(path)
    else:
        Image.new("L", size, value).save(path)
    return path


def idx_header(shape: tuple[int, ...], code: int = 0x08) -> bytes:
    return bytes([0, 0, code, len(shape)]) + np.asarray(shape, dtype=">u4").tobytes()


def idx_gz(arr: np.ndarray) -> bytes:
    return gzip.compress(idx_header(arr.shape) + arr.astype(np.uint8).tobytes(), compresslevel=1)


IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz")


def idx_dir(root: Path, n_train: int = 60, n_test: int = 20) -> Path:
    """An MNIST-format folder: 28x28 noise, labels cycling through 10 classes."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    arrays = (rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10,
              rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test) % 10)
    for name, arr in zip(IDX_FILES, arrays):
        (root / name).write_bytes(idx_gz(arr))
    return root


CIFAR10_MEMBERS = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]


def cifar_dir(top: Path, n: int = 2) -> Path:
    """An extracted CIFAR-10 folder written the way the official one is (protocol-2 pickles of dicts)."""
    top.mkdir(parents=True)
    for name in CIFAR10_MEMBERS[:-1]:
        (top / name).write_bytes(pickle.dumps({b"data": np.zeros((n, 3072), np.uint8), b"labels": [0] * n},
                                              protocol=2))
    (top / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"c%d" % i for i in range(10)]}, protocol=2))
    return top


def tar_gz(folder: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return out


class Payload:
    """Unpickling this creates ``marker``: a stand-in for any code a pickle can run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def live_payload(marker: Path) -> bytes:
    """The pickle of a Payload, after checking that plain ``pickle.loads`` really runs it."""
    blob = pickle.dumps({b"data": Payload(marker)}, protocol=2)
    control = marker.with_name(marker.name + ".control")
    pickle.loads(pickle.dumps(Payload(control), protocol=2)).close()
    assert control.exists(), "the payload must be live, or its absence later proves nothing"
    control.unlink()
    return blob


# ----------------------------------------------------------------- tampering with a run directory
def edit_record(run: Path, change: Callable[[dict], None]) -> None:
    meta = json.loads((run / "config.json").read_text())
    change(meta)
    (run / "config.json").write_text(json.dumps(meta))


def record_text(run: Path, replace: tuple[str, str]) -> None:
    """Rewrite config.json as text: for values json.dumps cannot write (NaN, a 400-digit number)."""
    text = json.dumps(json.loads((run / "config.json").read_text()))
    assert replace[0] in text
    (run / "config.json").write_text(text.replace(replace[0], replace[1], 1))


def edit_weights(run: Path, change: Callable[[dict[str, torch.Tensor]], None], name: str = "generator") -> None:
    path = run / f"{name}.safetensors"
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path), metadata={"role": name})  # safetensors' own writer: no agad check on the way


def first_float(tensors: dict[str, torch.Tensor]) -> str:
    return next(k for k, v in sorted(tensors.items()) if v.is_floating_point() and v.numel() > 1)


def retype_header(path: Path, old: bytes, new: bytes) -> None:
    """Edit the JSON header of a safetensors file in place (same length, so every offset stays valid)."""
    data = bytearray(path.read_bytes())
    n = struct.unpack("<Q", data[:8])[0]
    header = bytes(data[8 : 8 + n])
    assert len(old) == len(new) and old in header
    data[8 : 8 + n] = header.replace(old, new, 1)
    path.write_bytes(bytes(data))


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# ----------------------------------------------------------------- the catalogue's machinery
@dataclass
class Ctx:
    """What a case builds in: its tmp_path, the trained run, monkeypatch, and what it must leave alone."""

    tmp: Path
    trained: Path
    monkeypatch: pytest.MonkeyPatch
    stack: contextlib.ExitStack
    out: Path | None = None  # must not exist after a refusal (unless `kept`)
    kept: bool = False  # `out` existed before: it must stay as it was (the snapshot of `watch` says so)
    watch: list[Path] = field(default_factory=list)  # folders whose listing must not change
    _run: Path | None = None

    def run(self) -> Path:
        """A private copy of the trained run, for this case alone."""
        if self._run is None:
            self._run = Path(shutil.copytree(self.trained, self.tmp / "run"))
        return self._run

    def folder(self, name: str) -> Path:
        p = self.tmp / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def image(self) -> Path:
        return png(self.tmp / "images" / "digit.png", seed=1)

    # argv builders: each sets what must not appear and what must not change
    def predict(self, run: Path | None = None, *paths: Path, extra: tuple[str, ...] = ()) -> list[str]:
        run = self.run() if run is None else run
        self.out = self.folder("out") / "scores.csv"
        self.watch = [self.out.parent] + ([run] if run.is_dir() else [])
        return ["predict", str(run), *[str(p) for p in (paths or (self.image(),))], "--out", str(self.out), *extra]

    def export(self, run: Path | None = None) -> list[str]:
        run = self.run() if run is None else run
        self.out = self.folder("out") / "model.pt"
        self.watch = [self.out.parent, run]
        return ["export", str(run), "--format", "torchscript", "--out", str(self.out)]

    def evaluate(self, run: Path | None = None) -> list[str]:
        run = self.run() if run is None else run
        self.out = run / "metrics.json"
        self.watch = [run]
        return ["evaluate", str(run)]

    def train(self, *extra: str, data: str | Path | None = None, out: Path | None = None) -> list[str]:
        """A tiny training (1 epoch, batch 4, CPU, fp32, one thread) on ``data`` (default: a 60-image IDX folder)."""
        if data is None:
            data = idx_dir(self.tmp / "idx")
        self.out = out or self.folder("runs") / "r"
        self.watch = [self.out.parent]
        return ["train", "--data", str(data), "--epochs", "1", "--batch-size", "4", "--precision", "fp32",
                "--device", "cpu", "--num-threads", "1", "--seed", "0", "--no-progress", "--out", str(self.out),
                *extra]


@dataclass
class Case:
    id: str
    what: str  # the fault, as the catalogue in docs/RELIABILITY.md names it
    build: Callable[[Ctx], list[str]]  # makes the fixture, returns the argv
    needles: tuple[str, ...] = ()  # the file / field the error line must name
    code: int = 2
    check: Callable[[Ctx, str, list[warnings.WarningMessage]], str] | None = None  # more to assert; says what held
    isolated: bool = False  # run `python -m agad` in a subprocess under `timeout`
    deadline: int | None = None  # in-process, but SIGALRM fails the case after this many seconds
    xfail: str | None = None  # what is wrong in src/, while it is
    prefix: str = ERROR_PREFIX  # how the one line on stderr starts


def snapshot(folders: list[Path]) -> dict[str, tuple]:
    """Every entry under the folders (links not followed): path -> (kind, size, mtime_ns) or (link, target)."""
    seen: dict[str, tuple] = {}
    for top in folders:
        if not os.path.lexists(top):
            continue
        for p in [top, *sorted(top.rglob("*"))]:
            st = p.lstat()
            if p.is_symlink():
                seen[str(p)] = ("link", os.readlink(p))
            elif p.is_dir():  # its own times change when a probe or lock file comes and goes: its entries count
                seen[str(p)] = ("dir",)
            else:
                seen[str(p)] = ("file", st.st_size, st.st_mtime_ns)
    return seen


@contextlib.contextmanager
def alarm(seconds: int | None):
    """Raise TimeoutError in the main thread after ``seconds`` (a blocking open() fails instead of hanging)."""
    if seconds is None:
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"blocked for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_in_process(argv: list[str], capsys, deadline: int | None = None) -> tuple[int, str, str, list]:
    with alarm(deadline), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err, list(caught)


def run_isolated(argv: list[str]) -> tuple[int, str, str, list]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(["timeout", "-k", "5", str(FIFO_TIMEOUT_S), sys.executable, "-m", "agad", *argv],
                          capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode not in (124, 137), f"`agad {argv[0]}` hung for {FIFO_TIMEOUT_S} s"
    return proc.returncode, proc.stdout, proc.stderr, []


def error_line(err: str, needles: tuple[str, ...], prefix: str = ERROR_PREFIX) -> str:
    lines = err.splitlines()
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"stderr must be one line, got {len(lines)}:\n{err}"
    line = lines[0]
    assert line.startswith(prefix), line
    for needle in needles:
        assert needle.lower() in line.lower(), f"the error line does not name {needle!r}: {line}"
    return line


def left_behind(folder: Path) -> list[str]:
    """Hidden staging folders, locks and temporary files beside an output."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.name.startswith(".") and p.name.endswith((".staging", ".staging.lock", ".tmp", ".replaced",
                                                                 ".part")))


# ----------------------------------------------------------------- cases: a run read back
def tampered(fault: str, change: Callable[[Path], None], *needles: str) -> Case:
    """`agad predict` on a run whose files were changed after training."""

    def build(ctx: Ctx) -> list[str]:
        argv = ctx.predict()
        change(ctx.run())
        return argv

    return Case(f"record-{fault.split(':')[0]}", fault.split(":", 1)[1].strip(), build, needles)


def _set(*path_and_value):
    *keys, value = path_and_value

    def change(run: Path) -> None:
        def edit(meta: dict) -> None:
            d = meta
            for k in keys[:-1]:
                d = d[k]
            d[keys[-1]] = value

        edit_record(run, edit)

    return change


def _drop(key: str):
    return lambda run: edit_record(run, lambda meta: meta.pop(key))


def _text(old: str, new: str):
    return lambda run: record_text(run, (old, new))


def _bytes(data: bytes, name: str = "config.json"):
    return lambda run: (run / name).write_bytes(data)


def _history(lines: list[str]):
    return lambda run: (run / "history.jsonl").write_text("".join(line + "\n" for line in lines))


_H1 = '{"epoch": 1, "G/total": 1.0}'

RECORD_CASES = [
    tampered('config-null: "config": null in config.json', _set("config", None), "config.json", "'config'"),
    tampered('model-text: "model": "naive" (a string, not an object)', _set("model", "naive"),
             "config.json", "'model'"),
    tampered('in-channels-text: "model.in_channels": "one"', _set("model", "in_channels", "one"),
             "config.json", "model.in_channels"),
    tampered('in-channels-huge: "model.in_channels": 1e12', _set("model", "in_channels", 1e12),
             "config.json", "model.in_channels"),
    tampered('image-size-huge: "model.image_size": 10**12', _set("model", "image_size", 10**12),
             "config.json", "model.image_size"),
    tampered("deeply-nested: a value nested 100,000 levels deep",
             _text('"data": {', '"deep": ' + nested(100_000) + ', "data": {'), "config.json", "nested"),
    tampered("not-utf8: config.json holds bytes that are not UTF-8", _bytes(b'{"format_version": 1, "x": "\xff\xfe"}'),
             "config.json", "UTF-8"),
    tampered("not-json: config.json cut in the middle", lambda run: (run / "config.json").write_text(
        (run / "config.json").read_text()[:200]), "config.json", "not valid JSON"),
    tampered("oversized: config.json of 2 MiB", _set("command", "x" * (2 << 20)), "config.json", "larger than"),
    tampered("missing: config.json deleted", lambda run: (run / "config.json").unlink(), "config.json"),
    tampered("newer-format: format_version 99", _set("format_version", 99), "config.json", "format_version"),
    tampered("threshold-missing: no threshold", _drop("threshold"), "config.json", "'threshold'"),
    tampered("threshold-nan: threshold NaN", _text('"threshold": ', '"threshold": NaN, "x": '),
             "config.json", "'threshold'"),
    tampered('threshold-text: threshold "0.5" (a string)', _text('"threshold": ', '"threshold": "0.5", "x": '),
             "config.json", "'threshold'"),
    tampered("threshold-400-digits: a threshold of 400 digits",
             _text('"threshold": ', f'"threshold": {"9" * 400}, "x": '), "config.json", "'threshold'"),
    tampered("threshold-1e400: a threshold beyond float range", _text('"threshold": ', '"threshold": 1e400, "x": '),
             "config.json", "'threshold'"),
    tampered('kept-epoch-text: "kept_epoch": "last"', _set("kept_epoch", "last"), "config.json", "'kept_epoch'"),
    tampered("scaling-inverted: score_scaling.train_min above train_max",
             _set("score_scaling", {"method": "linear", "train_min": 5.0, "train_max": 1.0}),
             "config.json", "score_scaling.train_min"),
    tampered('config-unknown-key: "config.bogus": 1', _set("config", "bogus", 1), "config.json", "bogus"),
    tampered('config-method: "config.method": "naive"', _set("config", "method", "naive"), "config.json", "method"),
    tampered('config-epochs: "config.epochs": -3', _set("config", "epochs", -3), "config.json", "epochs"),
    tampered("history-corrupt-line: history.jsonl line 2 is not JSON", _history([_H1, '{"epoch": 2, "G/tot']),
             "history.jsonl", "line 2"),
    tampered('history-text-value: "G/total": "high" in history.jsonl',
             _history(['{"epoch": 1, "G/total": "high"}']), "history.jsonl", "G/total"),
    tampered("history-epochs-backwards: epoch 1 after epoch 2", _history(['{"epoch": 2}', '{"epoch": 1}']),
             "history.jsonl", "epoch 1"),
    tampered("history-not-utf8: history.jsonl holds bytes that are not UTF-8", _bytes(b'{"epoch": 1, "\xff": 1}\n',
             "history.jsonl"), "history.jsonl", "UTF-8"),
    tampered("train-scores-garbage: train_scores.safetensors overwritten with text",
             _bytes(b"not a safetensors file", "train_scores.safetensors"), "train_scores.safetensors"),
]


def _nan_weight(run: Path) -> None:
    def change(t: dict) -> None:
        t[first_float(t)].view(-1)[0] = float("nan")

    edit_weights(run, change)


def _huge_weights(run: Path) -> None:
    def change(t: dict) -> None:
        k = first_float(t)
        t[k] = t[k] * 1e38

    edit_weights(run, change)


def _pickle_as_weights(run: Path) -> None:
    (run / "generator.safetensors").write_bytes(live_payload(run.parent / "PWNED"))


def _torch_save_as_weights(run: Path) -> None:
    live_payload(run.parent / "PWNED")  # the same payload, checked to be live
    torch.save({"weight": Payload(run.parent / "PWNED")}, str(run / "generator.safetensors"))


def no_marker(ctx: Ctx, err: str, caught) -> str:
    """The planted payload did not run: its marker file is absent."""
    assert not (ctx.tmp / "PWNED").exists(), "the planted payload ran"
    return "payload not run (no marker file)"


WEIGHT_CASES = [
    tampered("weights-nan: one generator weight set to NaN", _nan_weight, "generator.safetensors", "non-finite"),
    tampered("weights-1e38: generator weights multiplied by 1e38", _huge_weights, "generator.safetensors", "above"),
    tampered("weights-retyped: a tensor's header dtype edited from F32 to I32 (same byte size)",
             lambda run: retype_header(run / "generator.safetensors", b'"dtype":"F32"', b'"dtype":"I32"'),
             "generator.safetensors", "int32"),
    tampered("weights-truncated: generator.safetensors cut at 4 MiB of its 8",
             lambda run: (run / "generator.safetensors").write_bytes(
                 (run / "generator.safetensors").read_bytes()[: 4 << 20]), "generator.safetensors"),
    tampered("weights-missing: generator.safetensors deleted", lambda run: (run / "generator.safetensors").unlink(),
             "generator.safetensors"),
    tampered("weights-other-network: config.json says image_size 64, the weights are for 32",
             _set("model", "image_size", 64), "generator.safetensors"),
    tampered("weights-extra-tensor: an unexpected tensor in generator.safetensors",
             lambda run: edit_weights(run, lambda t: t.update(extra=torch.zeros(3))), "generator.safetensors", "extra"),
]
WEIGHT_CASES += [
    Case("record-weights-pickle", "a pickle whose payload creates a file, renamed generator.safetensors",
         lambda ctx: (ctx.predict(), _pickle_as_weights(ctx.run()))[0], ("generator.safetensors",), check=no_marker),
    Case("record-weights-torch-save", "a torch.save file with the same payload, renamed generator.safetensors",
         lambda ctx: (ctx.predict(), _torch_save_as_weights(ctx.run()))[0], ("generator.safetensors",),
         check=no_marker),
    Case("export-weights-nan", "`agad export` of a run with a NaN weight",
         lambda ctx: (ctx.export(), _nan_weight(ctx.run()))[0], ("generator.safetensors", "non-finite")),
    Case("evaluate-weights-1e38", "`agad evaluate` of a run with weights x1e38",
         lambda ctx: (ctx.evaluate(), _huge_weights(ctx.run()))[0], ("generator.safetensors", "above")),
]


def _nan_scores(ctx: Ctx) -> list[str]:
    import agad.pipeline

    def nan_scores(scorer, x, **kw):
        return np.full(len(x), np.nan, dtype=np.float32)

    ctx.monkeypatch.setattr(agad.pipeline, "score_images", nan_scores)
    return ctx.evaluate()


RUN_CASES = RECORD_CASES + WEIGHT_CASES + [
    Case("run-dir-is-a-file", "`agad predict` given a file as the run directory",
         lambda ctx: ctx.predict(png(ctx.tmp / "notarun.png")), ("notarun.png", "not a run directory")),
    Case("run-dir-missing", "`agad predict` given a run directory that does not exist",
         lambda ctx: ctx.predict(ctx.tmp / "nope"), ("nope", "does not exist")),
    Case("evaluate-nan-scores", "NaN scores on the test split (before any metric reaches scikit-learn)",
         _nan_scores, ("scores of", "not finite")),
]


# ----------------------------------------------------------------- cases: training input and options
def _toml(ctx: Ctx, body: bytes | str, *extra: str) -> list[str]:
    path = ctx.tmp / "train.toml"
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return ctx.train("--config", str(path), *extra)


def _held_lock(ctx: Ctx) -> list[str]:
    argv = ctx.train(data="mnist-sample")

    class Abandon(Exception):
        pass

    @contextlib.contextmanager
    def other_writer():
        with contextlib.suppress(Abandon), staging_dir(ctx.out):
            yield
            raise Abandon  # leave without publishing: the staging folder is removed

    ctx.stack.enter_context(other_writer())
    return argv


def _force_on_symlink(ctx: Ctx) -> list[str]:
    target = ctx.folder("real-run")
    (target / "keep.txt").write_text("an older run")
    argv = ctx.train("--force", data="mnist-sample")
    ctx.out.symlink_to(target, target_is_directory=True)
    ctx.watch.append(target)
    ctx.kept = True  # the link, and the run it points to, stay as they were
    return argv


def _existing_out(ctx: Ctx) -> list[str]:
    argv = ctx.train(data="mnist-sample")
    ctx.out.mkdir()
    (ctx.out / "keep.txt").write_text("an older run")
    ctx.kept = True  # the old run stays as it was, nothing is added to it
    return argv


def _out_under_file(ctx: Ctx) -> list[str]:
    (ctx.folder("runs") / "afile").write_text("a file, not a folder")
    argv = ctx.train(data="mnist-sample", out=ctx.tmp / "runs" / "afile" / "r")
    ctx.watch = [ctx.tmp / "runs"]  # the file stays a file, and nothing appears beside it
    return argv


class _FakeStatvfs:
    def __init__(self, real, **changes):
        self._real, self._changes = real, changes

    def __getattr__(self, name):
        return self._changes.get(name, getattr(self._real, name))


def _statvfs(ctx: Ctx, **changes) -> None:
    real = os.statvfs
    ctx.monkeypatch.setattr(os, "statvfs", lambda p: _FakeStatvfs(real(p), **changes))


def _read_only(ctx: Ctx) -> list[str]:
    argv = ctx.train(data="mnist-sample")
    _statvfs(ctx, f_flag=os.ST_RDONLY)
    return argv


def _disk_full_before(ctx: Ctx) -> list[str]:
    argv = ctx.train(data="mnist-sample")
    _statvfs(ctx, f_bavail=0, f_bfree=0)
    return argv


def _replace_fails(ctx: Ctx, code: int, when: Callable[[str], bool] = lambda src: True) -> None:
    real = os.replace

    def replace(src, dst, *a, **kw):
        if when(os.fsdecode(src)):
            raise OSError(code, os.strerror(code), os.fsdecode(dst))
        return real(src, dst, *a, **kw)

    ctx.monkeypatch.setattr(os, "replace", replace)


def _disk_full_at_publish(ctx: Ctx) -> list[str]:
    argv = ctx.train()
    _replace_fails(ctx, errno.ENOSPC, when=lambda src: src.endswith(".staging"))
    return argv


def _disk_full_first_file(ctx: Ctx) -> list[str]:
    argv = ctx.train()
    _replace_fails(ctx, errno.ENOSPC)
    return argv


def _memory_cap(ctx: Ctx) -> list[str]:
    ctx.monkeypatch.setenv("AGAD_MEMORY_LIMIT", "64M")
    return ctx.train("--image-size", "1024", data="mnist-sample")


def _resume_with(plant: Callable[[Path], None]) -> Callable[[Ctx], list[str]]:
    """`agad train --resume` over a staging folder whose checkpoint ``plant`` wrote."""

    def build(ctx: Ctx) -> list[str]:
        argv = ctx.train("--resume")
        state = staging_path(ctx.out) / CHECKPOINT_DIR / CHECKPOINT_FILE
        state.parent.mkdir(parents=True)
        plant(state)
        return argv

    return build


def _pickle_state(path: Path) -> None:
    path.write_bytes(live_payload(path.parents[3] / "PWNED"))


def check_kept_checkpoint(ctx: Ctx, err: str, caught) -> str:
    """A kept staging folder holds the checkpoint/ its message names."""
    staging = staging_path(ctx.out)
    if f"its {CHECKPOINT_DIR}/ holds the last saved state" in err:
        assert (staging / CHECKPOINT_DIR).is_dir(), f"{staging} holds {sorted(os.listdir(staging))}"
    return f"{staging.name} holds {CHECKPOINT_DIR}/"


def _training_raises(exc: BaseException) -> Callable[[Ctx], list[str]]:
    """A tiny training whose fit stops with ``exc`` (out of memory, Ctrl-C) once the staging folder exists."""

    def build(ctx: Ctx) -> list[str]:
        import agad.pipeline

        def fit_model(*a, **kw):
            raise exc

        ctx.monkeypatch.setattr(agad.pipeline, "fit_model", fit_model)
        return ctx.train()

    return build


TRAIN_CASES = [
    Case("train-diverged", "a loss that overflows (--w-con 1e300): the divergence guard",
         lambda ctx: ctx.train("--w-con", "1e300"), ("diverged", "G/")),
    Case("train-kept-staging-promise", "a training that fails in its first minute: the staging folder it keeps "
         "holds the checkpoint/ its message names", lambda ctx: ctx.train("--w-con", "1e300"), ("kept in",),
         check=check_kept_checkpoint,),
    Case("resume-damaged-checkpoint", "--resume over a checkpoint that is not a safetensors file",
         _resume_with(lambda p: p.write_bytes(b"garbage")), (CHECKPOINT_FILE,)),
    Case("resume-pickle-checkpoint", "--resume over a pickle (with a payload) named state.safetensors",
         _resume_with(_pickle_state), (CHECKPOINT_FILE,), check=no_marker),
    Case("resume-nan-checkpoint", "--resume over a checkpoint holding a NaN tensor",
         _resume_with(lambda p: save_state(p, {"G/w": torch.tensor([float("nan")])}, {"config": {}})),
         (CHECKPOINT_FILE, "non-finite")),
    Case("resume-other-config", "--resume over the checkpoint of another configuration",
         _resume_with(lambda p: save_state(p, {"G/w": torch.zeros(2)}, {"config": {"epochs": 99}})),
         (CHECKPOINT_FILE, "another configuration")),
    Case("train-out-of-memory", "MemoryError during training", _training_raises(MemoryError()), ("out of memory",),),
    Case("train-interrupted", "Ctrl-C (KeyboardInterrupt) during training", _training_raises(KeyboardInterrupt()),
         code=130, prefix="agad: interrupted",),
    Case("train-abbreviated-flag", "--epoch 2 (an abbreviation of --epochs)",
         lambda ctx: ctx.train("--epoch", "2"), ("--epoch",)),
    Case("train-flag-bad-value", "--epochs two (a flag's value of the wrong type)",
         lambda ctx: ctx.train("--epochs", "two"), ("--epochs", "two"),),
    Case("train-nan-option", "--w-adv nan", lambda ctx: ctx.train("--w-adv", "nan"), ("w_adv",)),
    Case("train-min-anomalies-huge", "min_anomalies_per_batch = 100000 in a TOML config",
         lambda ctx: _toml(ctx, "min_anomalies_per_batch = 100000\n"), ("min_anomalies_per_batch",)),
    Case("train-toml-not-utf8", "a TOML config that is not UTF-8",
         lambda ctx: _toml(ctx, b"epochs = 1\n# caf\xe9\n"), ("train.toml", "UTF-8")),
    Case("train-toml-mixed", "a TOML config with a [train] table and top-level keys",
         lambda ctx: _toml(ctx, "epochs = 3\n[train]\nbatch_size = 8\n"), ("train.toml", "[train]", "epochs")),
    Case("train-toml-invalid", "a TOML config with a syntax error",
         lambda ctx: _toml(ctx, "epochs = = 1\n"), ("train.toml", "TOML")),
    Case("train-toml-unknown-key", "a TOML config with a misspelt option",
         lambda ctx: _toml(ctx, "epoch = 3\n"), ("train.toml", "'epoch'")),
    Case("train-image-size-1024", "--image-size 1024 with 64 MiB of memory ($AGAD_MEMORY_LIMIT)",
         _memory_cap, ("needs an estimated", "image-size")),
    Case("train-image-size-out-of-range", "--image-size 4096",
         lambda ctx: ctx.train("--image-size", "4096", data="mnist-sample"), ("image_size",)),
    Case("train-normal-class-out-of-range", "--normal-class 10 on a 10-class dataset",
         lambda ctx: ctx.train("--normal-class", "10", data="mnist-sample"), ("normal",)),
    Case("train-data-missing", "--data DIR that does not exist",
         lambda ctx: ctx.train(data=ctx.tmp / "nope"), ("nope",)),
    Case("train-lock-held", "a second `agad train` into an --out whose staging lock is held",
         _held_lock, ("another run is writing", "r")),
    Case("train-out-exists", "--out an existing run directory, without --force", _existing_out,
         ("already exists", "--force")),
    Case("train-force-on-symlink", "--force with --out a symbolic link to a run directory", _force_on_symlink,
         ("symbolic link",)),
    Case("train-out-under-file", "--out under a file (afile/r)", _out_under_file, ("afile",)),
    Case("train-out-name-too-long", "--out with a 300-byte name",
         lambda ctx: ctx.train(data="mnist-sample", out=ctx.folder("runs") / ("r" * 300)), ("too long",)),
    Case("train-read-only", "a read-only file system under --out (statvfs says ST_RDONLY)", _read_only,
         ("read-only",)),
    Case("train-disk-full-before", "a full disk under --out (statvfs: no free blocks), before training",
         _disk_full_before, ("no space",)),
    Case("train-disk-full-first-write", "ENOSPC from os.replace on the first file of the run",
         _disk_full_first_file, ("no space",)),
    Case("train-disk-full-at-publish", "ENOSPC from os.replace when the finished run is renamed into place",
         _disk_full_at_publish, ("no space",)),
]


# ----------------------------------------------------------------- cases: data files
def _idx_train(ctx: Ctx, name: str, blob: bytes) -> list[str]:
    root = idx_dir(ctx.tmp / "idx")
    (root / name).write_bytes(blob)
    return ctx.train(data=root)


def _gzip_bomb() -> bytes:
    """Labels that declare 10 entries, then inflate to 64 MiB."""
    comp = gzip.compress(idx_header((10,)) + bytes(10) + bytes(64 << 20), compresslevel=1)
    assert len(comp) < 1 << 20
    return comp


def _cifar_train(ctx: Ctx, as_tar: bool, member: str | None = None, blob: bytes | None = None) -> list[str]:
    top = cifar_dir(ctx.tmp / "cifar" / "cifar-10-batches-py")
    if member is not None:
        (top / member).write_bytes(blob)
    data = top
    if as_tar:
        data = tar_gz(top, ctx.tmp / "cifar-10-python.tar.gz")
        shutil.rmtree(top)
    return ctx.train(data=data)


def _cifar_payload(ctx: Ctx, as_tar: bool) -> list[str]:
    return _cifar_train(ctx, as_tar, "data_batch_1", live_payload(ctx.tmp / "PWNED"))


def _cifar_member_too_large(ctx: Ctx) -> list[str]:
    """cifar-10-python.tar.gz whose first member's header declares 1 GiB (the data never follows)."""
    member = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
    member.size = 1 << 30
    archive = ctx.tmp / "cifar-10-python.tar.gz"
    archive.write_bytes(gzip.compress(member.tobuf(format=tarfile.GNU_FORMAT)))
    return ctx.train(data=archive)


def _cifar_member_over_cap(ctx: Ctx) -> list[str]:
    # Decompressed bytes are capped too: a lower cap stands in for a real member larger than 256 MiB.
    ctx.monkeypatch.setattr(cifar_module, "MAX_MEMBER_BYTES", 1000)
    return _cifar_train(ctx, False)


def _cifar_tar_truncated(ctx: Ctx) -> list[str]:
    argv = _cifar_train(ctx, True)
    archive = ctx.tmp / "cifar-10-python.tar.gz"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    return argv


def _bomb_image(ctx: Ctx) -> list[str]:
    big = png(ctx.tmp / "images" / "big.png", 5, size=(256, 256))  # 65,536 pixels
    ctx.monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # far below them: Pillow's bomb error
    return ctx.predict(None, big)


def _bad_image(ctx: Ctx, name: str, data: bytes | None = None) -> list[str]:
    good = png(ctx.tmp / "images" / "good.png", seed=2)
    bad = ctx.tmp / "images" / name
    bad.write_bytes(good.read_bytes()[:60] if data is None else data)
    return ctx.predict(None, good, bad)


def _fifo(ctx: Ctx) -> list[str]:
    fifo = ctx.tmp / "images" / "x.png"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    return ctx.predict(None, fifo)


def _fifo_in_training_folder(ctx: Ctx) -> list[str]:
    root = ctx.tmp / "d"
    for i in range(4):
        png(root / "normal" / f"n{i}.png", size=(16, 16), seed=i)
    png(root / "abnormal" / "a.png", 250, size=(16, 16))
    os.mkfifo(root / "normal" / "x.png")
    return ctx.train(data=root)


def _existing_csv(ctx: Ctx) -> list[str]:
    argv = ctx.predict()
    ctx.out.write_text("path,score,label\nold.png,1.0,0\n")
    ctx.kept = True  # the old CSV stays as it was
    return argv


def _fetch(ctx: Ctx, url: str) -> list[str]:
    ctx.out = ctx.folder("fetch") / "mnist"
    ctx.watch = [ctx.out.parent]
    return ["data", "fetch", "mnist", "--dest", str(ctx.out), "--base-url", url, "--no-progress"]


DATA_CASES = [
    Case("idx-header-overflow", "IDX images whose header declares 65536^4 bytes (wraps to 0 in 64 bits)",
         lambda ctx: _idx_train(ctx, IDX_FILES[0], gzip.compress(idx_header((65536,) * 4) + bytes(16))),
         ("train-images",)),
    Case("idx-truncated", "IDX images cut short",
         lambda ctx: _idx_train(ctx, IDX_FILES[0], gzip.compress(idx_header((60, 28, 28)) + bytes(1000))),
         ("train-images", "truncated")),
    Case("idx-gzip-bomb", "IDX labels that declare 10 entries and inflate to 64 MiB",
         lambda ctx: _idx_train(ctx, IDX_FILES[1], _gzip_bomb()), ("train-labels", "trailing bytes")),
    Case("idx-not-gzip", "an IDX .gz file that is not gzip",
         lambda ctx: _idx_train(ctx, IDX_FILES[2], b"plain text, not gzip"), ("t10k-images",)),
    Case("cifar-not-a-pickle", "a CIFAR batch that is not a pickle",
         lambda ctx: _cifar_train(ctx, False, "data_batch_1", b"not a pickle"), ("data_batch_1",)),
    Case("cifar-pickle-payload", "a CIFAR batch whose pickle would create a file (extracted folder)",
         lambda ctx: _cifar_payload(ctx, False), ("data_batch_1", "refusing to unpickle"), check=no_marker),
    Case("cifar-tar-pickle-payload", "the same payload inside cifar-10-python.tar.gz",
         lambda ctx: _cifar_payload(ctx, True), ("data_batch_1", "refusing to unpickle"), check=no_marker),
    Case("cifar-member-too-large", "a CIFAR archive member whose header declares 1 GiB",
         _cifar_member_too_large, ("cifar-10-python.tar.gz", "1.0 GiB")),
    Case("cifar-file-over-cap", "an extracted CIFAR batch larger than the member cap",
         _cifar_member_over_cap, ("data_batch_1", "more than")),
    Case("cifar-tar-truncated", "cifar-10-python.tar.gz cut in half", _cifar_tar_truncated,
         ("cifar-10-python.tar.gz",)),
    Case("image-decompression-bomb", "an image above PIL.Image.MAX_IMAGE_PIXELS given to `agad predict`",
         _bomb_image, ("big.png", "too large to decode")),
    Case("image-truncated", "a truncated PNG among the images of `agad predict`",
         lambda ctx: _bad_image(ctx, "cut.png"), ("cut.png",)),
    Case("image-not-an-image", "a text file named x.png", lambda ctx: _bad_image(ctx, "x.png", b"hello"), ("x.png",)),
    Case("image-fifo", "a FIFO named x.png given to `agad predict` (subprocess under timeout)", _fifo,
         ("x.png", "FIFO"), isolated=True),
    Case("folder-fifo", "a FIFO named x.png in the folder given to `agad train --data` (under an alarm)",
         _fifo_in_training_folder, ("x.png", "FIFO"), deadline=FIFO_TIMEOUT_S),
    Case("image-missing", "an image path that does not exist",
         lambda ctx: ctx.predict(None, ctx.tmp / "nope.png"), ("nope.png",)),
    Case("image-empty-folder", "a folder without images",
         lambda ctx: ctx.predict(None, ctx.folder("empty")), ("empty",)),
    Case("predict-out-is-dir", "`agad predict --out` an existing folder",
         lambda ctx: ctx.predict(None, ctx.image())[:-1] + [str(ctx.folder("out"))], ("is a directory",)),
    Case("predict-out-exists", "`agad predict --out` an existing CSV, without --force", _existing_csv,
         ("already exists", "--force")),
    Case("predict-disk-full", "ENOSPC from os.replace when the CSV is written",
         lambda ctx: (ctx.predict(), _replace_fails(ctx, errno.ENOSPC))[0], ("scores.csv", "no space")),
    Case("export-read-only", "EROFS from os.replace when the exported model is written",
         lambda ctx: (ctx.export(), _replace_fails(ctx, errno.EROFS))[0], ("model.pt", "read-only")),
    Case("fetch-invalid-base-url", "`agad data fetch --base-url` that is not a URL",
         lambda ctx: _fetch(ctx, "not a url"), ("not a url",),),
    Case("fetch-unreachable-base-url", "`agad data fetch --base-url` to a closed port",
         lambda ctx: _fetch(ctx, "http://127.0.0.1:9/"), ("127.0.0.1:9",),),
]


# ----------------------------------------------------------------- cases that must succeed
def _modes(ctx: Ctx) -> list[str]:
    old = os.umask(0o027)
    ctx.stack.callback(os.umask, old)
    return ctx.predict()


def check_modes(ctx: Ctx, err: str, caught) -> str:
    """The CSV is 0640 under umask 027; the run trained under 022 is 0755 with 0644 files."""
    csv_mode = ctx.out.stat().st_mode & 0o777
    assert csv_mode == 0o640, oct(csv_mode)  # 0o666 less the umask 0o027
    assert ctx.trained.stat().st_mode & 0o777 == 0o755  # trained under umask 0o022
    for p in ctx.trained.iterdir():
        assert p.stat().st_mode & 0o777 == 0o644, (p.name, oct(p.stat().st_mode))
    return f"CSV {csv_mode:04o}; run directory 0755, its {len(list(ctx.trained.iterdir()))} files 0644"


def _loop_folder(root: Path) -> Path:
    for i in range(8):
        png(root / "normal" / f"n{i}.png", size=(16, 16), seed=i)
    for i in range(4):
        png(root / "abnormal" / f"a{i}.png", 250, size=(16, 16))
    (root / "normal" / "loop").symlink_to("..")  # normal/loop/abnormal/... would pass for normal images
    (root / "normal" / "sib").symlink_to("../abnormal")
    return root


def check_loop_training(ctx: Ctx, err: str, caught) -> str:
    """Each of the 12 real images is read once, in its own class; a warning names the skipped links."""
    data = json.loads((ctx.out / "config.json").read_text())["data"]
    assert data["n_normal_train"] + data["n_test"] == 12, data  # 8 normal + 4 anomalous, each once
    assert data["n_anomaly_train"] == 0
    note = next((str(w.message) for w in caught if "lead outside it" in str(w.message)), None)
    assert note is not None, [str(w.message) for w in caught]
    note = " ".join(note.replace(str(ctx.tmp) + os.sep, "").split())
    return f"{data['n_normal_train']} normal training + {data['n_test']} test images, each once; warning: {note}"


def check_loop_predict(ctx: Ctx, err: str, caught) -> str:
    """The CSV lists each of the 12 real images once, by its real path (no path through a link)."""
    rows = [Path(r.split(",")[0]).relative_to(ctx.tmp / "d") for r in ctx.out.read_text().splitlines()[1:]]
    assert sorted(map(str, rows)) == sorted([f"normal/n{i}.png" for i in range(8)]
                                            + [f"abnormal/a{i}.png" for i in range(4)]), rows
    return f"{len(rows)} rows, each real image once"


def _twice(ctx: Ctx) -> list[str]:
    first = ctx.train(out=ctx.folder("runs") / "first")
    assert main(first) == 0
    return ctx.train(out=ctx.folder("runs") / "second")


def check_same_run(ctx: Ctx, err: str, caught) -> str:
    """Both runs hold bit-identical weights and training scores, the same losses and the same threshold."""
    runs = ctx.tmp / "runs"
    n = 0
    for name in ("generator", "discriminator", "train_scores"):
        a, b = (load_file(str(runs / r / f"{name}.safetensors")) for r in ("first", "second"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
        n += len(a)

    def losses(run: str) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (runs / run / "history.jsonl").read_text().splitlines()]

    assert losses("first") == losses("second")
    first, second = (json.loads((runs / r / "config.json").read_text())["threshold"] for r in ("first", "second"))
    assert first == second
    return f"{n} tensors bit-identical, same losses, same threshold {first:.6g}"


SUCCESS_CASES = [
    Case("modes-follow-umask", "files and folders get umask modes (run 0755/0644 under 022, CSV 0640 under 027)",
         _modes, code=0, check=check_modes),
    Case("folder-symlink-loop-train", "`agad train --data DIR` where normal/loop -> .. and normal/sib -> ../abnormal",
         lambda ctx: ctx.train("--image-size", "16", data=_loop_folder(ctx.tmp / "d")), code=0,
         check=check_loop_training),
    Case("folder-symlink-loop-predict", "`agad predict` of the same folder",
         lambda ctx: ctx.predict(None, _loop_folder(ctx.tmp / "d")), code=0, check=check_loop_predict),
    Case("deterministic", "the same seed and one thread, trained twice: identical weights, scores and losses",
         _twice, code=0, check=check_same_run),
]

CASES = RUN_CASES + TRAIN_CASES + DATA_CASES + SUCCESS_CASES


def _param(case: Case):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    if case.isolated and not (hasattr(os, "mkfifo") and shutil.which("timeout")):
        marks.append(pytest.mark.skip(reason="needs os.mkfifo and the timeout command"))
    if case.deadline and not (hasattr(os, "mkfifo") and hasattr(signal, "SIGALRM")):
        marks.append(pytest.mark.skip(reason="needs os.mkfifo and SIGALRM"))
    return pytest.param(case, id=case.id, marks=marks)


# ----------------------------------------------------------------- fixtures and the one test
@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """ONE tiny run for the whole catalogue: 1 epoch on the MNIST sample's digit 0, trained under umask 022."""
    out = tmp_path_factory.mktemp("trained") / "run"
    old, threads = os.umask(0o022), torch.get_num_threads()
    try:
        code = main(["train", "--data", "mnist-sample", "--epochs", "1", "--batch-size", "32", "--precision", "fp32",
                     "--device", "cpu", "--num-threads", "1", "--no-progress", "--out", str(out)])
    finally:
        os.umask(old)
        torch.set_num_threads(threads)  # --num-threads sets the process's; other test files keep theirs
    assert code == 0 and (out / "config.json").is_file()
    return out


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No user data directory or memory cap leaks in; the thread count a case's training sets is restored."""
    monkeypatch.delenv("AGAD_DATA_DIR", raising=False)
    monkeypatch.delenv("AGAD_MEMORY_LIMIT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_fault(case: Case, trained_run, tmp_path, monkeypatch, capsys, record_property):
    """One case of the catalogue: exit code, one error line naming the culprit, nothing half-written."""
    with contextlib.ExitStack() as stack:
        ctx = Ctx(tmp=tmp_path / "case", trained=trained_run, monkeypatch=monkeypatch, stack=stack)
        ctx.tmp.mkdir()
        argv = case.build(ctx)
        before = snapshot(ctx.watch)
        hidden = left_behind(ctx.out.parent) if ctx.out is not None else []
        try:
            if case.isolated:
                code, out, err, caught = run_isolated(argv)
            else:
                code, out, err, caught = run_in_process(argv, capsys, case.deadline)
        except Exception as exc:  # what escaped main: the catalogue shows it as the traceback it would print
            record_property("observed", f"traceback: {type(exc).__name__}: {exc}")
            raise
        record_property("observed", " ".join((err if code else out).split()))
        record_property("exit", code)
        assert code == case.code, f"exit {code}, expected {case.code}\n{err}"
        if case.code != 0:
            line = error_line(err, case.needles, case.prefix)
            assert ctx.out is not None and (ctx.kept or not os.path.lexists(ctx.out)), f"{ctx.out} was written"
            kept = [name for name in left_behind(ctx.out.parent) if name not in hidden]
            # a training that stops after it started keeps its staging folder for --resume, and says where
            assert all(str(ctx.out.parent / name) in line for name in kept), f"left unannounced: {kept}"
            assert {k: v for k, v in snapshot(ctx.watch).items() if not any(f"/{n}" in k for n in kept)} == before, \
                "a watched folder changed"
        if case.check is not None:
            record_property("checked", case.check(ctx, err, caught))


def test_catalogue_ids_are_unique():
    """docs/RELIABILITY.md names cases by id: each names one case."""
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
