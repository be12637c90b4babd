"""Run directories: what a training run leaves behind, and how it is read back.

A run directory describes itself, so loading needs no outside config::

    RUN_DIR/
      config.json              resolved TrainConfig + model shape + threshold + data summary
      generator.safetensors    weights (the EMA copy when enabled); never pickle
      discriminator.safetensors
      history.jsonl            one line of mean loss terms per epoch
      metrics.json, scores.csv written by `agad evaluate`

Every file is written to a temporary name and renamed, and a training run is
built in a hidden temporary directory renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .config import TrainConfig
from .errors import AgadError

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
HISTORY_FILE = "history.jsonl"
METRICS_FILE = "metrics.json"
SCORES_FILE = "scores.csv"


# ----------------------------------------------------------------- atomic writes
def _umask_mode() -> int:
    """0o666 less the process umask: what a plain open() would create (mkstemp makes 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, _umask_mode())
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def check_output_file(out: Path, *, overwrite: bool, example: str) -> Path:
    """Refuse a directory or an existing file as an output path before any work is done."""
    out = Path(out)
    if out.is_dir():
        raise AgadError(f"--out {out} is a directory; give a file name such as {out / example}")
    if out.exists() and not overwrite:
        raise AgadError(f"output file {out} already exists; choose another --out or pass --force to replace it")
    return out


@contextlib.contextmanager
def staging_dir(final: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary directory beside ``final``; rename it into place on success.

    On any error (or Ctrl-C) the temporary directory is removed, so no
    half-written run is ever left behind.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise AgadError(f"output directory {final} already exists; choose another --out or pass --force to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ----------------------------------------------------------------- weights
def state_dict_for_saving(module: nn.Module) -> dict[str, torch.Tensor]:
    # safetensors wants contiguous, unshared tensors; channels-last weights are copied
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def save_weights(module: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _umask_mode())
    try:
        save_file(state_dict_for_saving(module), tmp, metadata=metadata or {})
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def load_weights(module: nn.Module, path: Path) -> nn.Module:
    path = Path(path)
    if not path.is_file():
        raise AgadError(f"weights file {path} is missing; is this a complete run directory?")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise AgadError(f"cannot read weights {path}: {exc}; the file is corrupt, re-train or re-export it") from None
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError:  # shape mismatch: config.json and the weights disagree
        raise AgadError(
            f"weights {path} do not fit the network described in config.json (tensor shapes differ); "
            "the run directory is inconsistent, re-train it"
        ) from None
    if missing or unexpected:
        raise AgadError(
            f"weights {path} do not match the network described in config.json "
            f"(missing {len(missing)}, unexpected {len(unexpected)} tensors); the run directory is inconsistent"
        )
    return module


# ----------------------------------------------------------------- run files
def read_run_config(run_dir: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AgadError(f"run directory {run_dir} does not exist; train one with `agad train ... --out {run_dir}`")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise AgadError(f"{run_dir} is not a run directory (no {CONFIG_FILE}); point to the --out of `agad train`")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise AgadError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); re-train the run") from None
    if not isinstance(meta, dict) or "config" not in meta or "model" not in meta:
        raise AgadError(f"{path} lacks the 'config' and 'model' sections; re-train the run")
    return meta


def load_config(run_dir: Path) -> TrainConfig:
    return TrainConfig.from_dict(read_run_config(run_dir)["config"], source=str(Path(run_dir) / CONFIG_FILE))


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    atomic_write_text(path, "".join(json.dumps(h, sort_keys=True) + "\n" for h in history))


def read_history(run_dir: Path) -> list[dict[str, float]]:
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_scores_csv(path: Path, scores: np.ndarray, labels: np.ndarray | None = None,
                     ids: list[str] | None = None, predictions: np.ndarray | None = None) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    header = ["index" if ids is None else "path", "score"]
    if labels is not None:
        header.append("label")
    if predictions is not None:
        header.append("prediction")
    w.writerow(header)
    for i, s in enumerate(scores):
        row: list[Any] = [i if ids is None else ids[i], f"{float(s):.6g}"]
        if labels is not None:
            row.append(int(labels[i]))
        if predictions is not None:
            row.append(int(predictions[i]))
        w.writerow(row)
    atomic_write_text(path, buf.getvalue())


def read_scores_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    scores = np.array([float(r["score"]) for r in rows], dtype=np.float64)
    labels = np.array([int(r["label"]) for r in rows]) if rows and "label" in rows[0] else None
    return scores, labels
