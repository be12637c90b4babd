"""Weights and training state in safetensors files: never pickle, never ``torch.load``.

:func:`save_weights` / :func:`load_weights` hold a network's ``state_dict``;
loading refuses what would give NaN scores later: a tensor stored with
another dtype than the network's (a header retyped from F32 to I32 passes
safetensors' own checks), non-finite values, magnitudes above
:data:`MAX_ABS_WEIGHT`. :func:`save_state` / :func:`load_state` hold any
named tensors plus a JSON ``meta`` in one file (the JSON sits in the
safetensors metadata, so the pair is written atomically), e.g. what
training needs to resume; torch RNG states are uint8 tensors and are stored
as such (:func:`rng_state`). Files are written with :func:`agad.rundir.atomic_write_bytes`
(temporary name, rename, umask modes); any ``OSError`` is one AgadError line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save as _st_save
from torch import nn

from .errors import AgadError
from .rundir import _check_json_values, _dumps, _shown, atomic_write_bytes, file_errors, parse_json

__all__ = [
    "MAX_ABS_WEIGHT", "MAX_STATE_BYTES", "STATE_META_KEY", "load_state", "load_weights", "rng_state", "save_state",
    "save_weights", "set_rng_state", "state_dict_for_saving",
]

MAX_ABS_WEIGHT = 1e10  # far above any trained weight or BN statistic; 1e38 weights overflow float32 scores
MAX_STATE_BYTES = 16 << 30
STATE_META_KEY = "agad_state"  # the safetensors metadata entry holding a state file's JSON meta
_WEIGHTS_ADVICE = "the file is damaged, re-train the run (or re-export it)"


def state_dict_for_saving(module: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of a module's tensors: safetensors wants contiguous, unshared tensors (channels-last is copied)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def _bad_values(name: str, t: torch.Tensor, *, max_abs: float | None) -> str | None:
    """Why a floating tensor is unusable (non-finite or absurd values), else None."""
    if not (t.is_floating_point() or t.is_complex()) or t.numel() == 0:
        return None
    if not bool(torch.isfinite(t).all()):
        return f"tensor '{name}' holds non-finite values (NaN or infinity)"
    if max_abs is not None:
        peak = float(t.abs().max())
        if peak > max_abs:
            return f"tensor '{name}' holds values up to {peak:.3g}, above {max_abs:g} in magnitude"
    return None


def _serialize(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None, path: Path) -> bytes:
    try:
        with file_errors(path):  # an OSError inside safetensors (e.g. no memory to map) is one line too
            return _st_save(tensors, metadata=metadata or None)
    except (SafetensorError, ValueError, TypeError, RuntimeError) as exc:
        raise AgadError(f"cannot write {_shown(path)}: {' '.join(str(exc).split())[:160]}") from None


def save_weights(module: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write a module's ``state_dict`` as safetensors, atomically, with umask modes.

    Refused (nothing written) when a tensor is not finite or above
    MAX_ABS_WEIGHT: such weights give NaN scores, and :func:`load_weights`
    would refuse them.
    """
    path = Path(path)
    state = state_dict_for_saving(module)
    for name, t in state.items():
        why = _bad_values(name, t, max_abs=MAX_ABS_WEIGHT)
        if why:
            raise AgadError(f"cannot write {_shown(path)}: {why}; training diverged, "
                            "re-train with a lower lr or with grad_clip")
    atomic_write_bytes(path, _serialize(state, {str(k): str(v) for k, v in (metadata or {}).items()}, path))


def _read_safetensors(path: Path, max_bytes: int, advice: str,
                      missing: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    with file_errors(path):
        if not path.is_file():
            raise AgadError(missing)
        size = path.stat().st_size
        if size > max_bytes:
            raise AgadError(f"{_shown(path)} is {size / 2**30:.1f} GiB, more than a run writes; {advice}")
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, ValueError, RuntimeError, TypeError) as exc:  # safetensors' own error types
            raise AgadError(f"cannot read {_shown(path)}: {' '.join(str(exc).split())[:160]}; {advice}") from None
    return tensors, metadata


def load_weights(module: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load safetensors weights into ``module`` (in place; returns it), refusing what would not score.

    One AgadError line naming the file and the tensor for: missing or extra
    tensors, another shape (config.json and weights disagree), another dtype
    than the module's, non-finite values, magnitudes above MAX_ABS_WEIGHT.
    """
    path = Path(path)
    stored, _ = _read_safetensors(path, MAX_STATE_BYTES, _WEIGHTS_ADVICE,
                                  f"weights file {_shown(path)} is missing; is this a complete run directory?")
    expected = module.state_dict()
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    if missing or unexpected:
        example = f"'{(missing or unexpected)[0]}'"
        raise AgadError(
            f"weights {_shown(path)} do not match the network described in config.json (missing {len(missing)}, "
            f"unexpected {len(unexpected)} tensors, e.g. {example}); the run directory is inconsistent, re-train it"
        )
    for name, want in expected.items():
        got = stored[name]
        if tuple(got.shape) != tuple(want.shape):
            raise AgadError(
                f"weights {_shown(path)} do not fit the network described in config.json (tensor '{name}' is "
                f"{tuple(got.shape)}, the network's {tuple(want.shape)}); "
                "the run directory is inconsistent, re-train it"
            )
        if got.dtype != want.dtype:
            stored_as, held = (str(t.dtype).replace("torch.", "") for t in (got, want))
            raise AgadError(f"weights {_shown(path)}: tensor '{name}' is stored as {stored_as} "
                            f"where the network holds {held}; {_WEIGHTS_ADVICE}")
        why = _bad_values(name, got, max_abs=MAX_ABS_WEIGHT)
        if why:
            raise AgadError(f"weights {_shown(path)}: {why}; {_WEIGHTS_ADVICE}")
    module.load_state_dict(stored, strict=True)
    return module


# ----------------------------------------------------------------- training state
def save_state(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write named tensors and a JSON ``meta`` to one safetensors file, atomically (never pickle).

    ``meta`` must hold JSON values (a NaN is refused with its key). Tensors
    are copied to the CPU; RNG states are plain uint8 tensors::

        save_state(run / "checkpoint" / "state.safetensors",
                   {**{f"G/{k}": v for k, v in G.state_dict().items()}, **rng_state()},
                   {"epoch": 3, "history": history})
    """
    path = Path(path)
    clean: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        if not isinstance(name, str) or not isinstance(t, torch.Tensor):
            raise TypeError(f"save_state wants str -> torch.Tensor, got {type(name).__name__} -> {type(t).__name__}")
        clean[name] = t.detach().cpu().contiguous().clone()
    text = _dumps(meta, path, sort_keys=True)
    atomic_write_bytes(path, _serialize(clean, {STATE_META_KEY: text}, path))


def load_state(path: str | os.PathLike, *, check_finite: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta) of a file written by :func:`save_state`; one AgadError line naming the file.

    Floating tensors must be finite unless ``check_finite=False``.
    """
    path = Path(path)
    advice = "the state file is damaged; delete it and train from the start"
    tensors, metadata = _read_safetensors(path, MAX_STATE_BYTES, advice,
                                          f"training-state file {_shown(path)} does not exist")
    if STATE_META_KEY not in metadata:
        raise AgadError(f"{_shown(path)} is not a training-state file (no '{STATE_META_KEY}' metadata); {advice}")
    meta = parse_json(metadata[STATE_META_KEY], f"{_shown(path)} (its metadata)", advice=advice)
    if not isinstance(meta, dict):
        raise AgadError(f"{_shown(path)}: its metadata must be a JSON object; {advice}")
    def fail(problem: str) -> None:
        raise AgadError(f"{_shown(path)}: metadata {problem}; {advice}")

    _check_json_values(meta, "", fail)
    if check_finite:
        for name, t in tensors.items():
            why = _bad_values(name, t, max_abs=None)
            if why:
                raise AgadError(f"{_shown(path)}: {why}; {advice}")
    return tensors, meta


def rng_state() -> dict[str, torch.Tensor]:
    """torch's global RNG states as uint8 tensors: ``rng/cpu`` and ``rng/cuda/N`` per initialised GPU."""
    out = {"rng/cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng/cuda/{i}"] = s
    return out


def set_rng_state(tensors: dict[str, torch.Tensor]) -> None:
    """Restore what :func:`rng_state` captured (other keys are ignored; missing GPUs are skipped)."""
    if "rng/cpu" in tensors:
        torch.set_rng_state(tensors["rng/cpu"].to(torch.uint8))
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            s = tensors.get(f"rng/cuda/{i}")
            if s is not None:
                torch.cuda.set_rng_state(s.to(torch.uint8), i)
