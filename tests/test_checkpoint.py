"""agad.checkpoint: safetensors weights that load only when they can score, and training-state files."""

from __future__ import annotations

import errno
import json
import os
import stat
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import agad.checkpoint as ckpt
from agad.checkpoint import (
    MAX_ABS_WEIGHT, STATE_META_KEY, load_state, load_weights, rng_state, save_state, save_weights, set_rng_state,
)
from agad.errors import AgadError


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def one_line_error(fn, *args, match: str, **kw) -> str:
    with pytest.raises(AgadError) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert "\n" not in msg and match in msg, msg
    return msg


def listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def retype(path, name: str, dtype: str) -> None:
    """Rewrite the safetensors header so that tensor ``name`` claims ``dtype`` (same byte size, same length)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header[name]["dtype"] = dtype
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= n
    path.write_bytes(raw[:8] + text.ljust(n, b" ") + raw[8 + n:])


# ------------------------------------------------------------------ weights
def test_weights_round_trip_with_umask_modes_and_nothing_else(tmp_path, umask022):
    path = tmp_path / "g.safetensors"
    save_weights(net(0), path, {"role": "generator"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and listing(tmp_path) == ["g.safetensors"]
    loaded = load_weights(net(1), path)
    assert same_weights(loaded, net(0))


def test_non_finite_weights_are_refused_on_load_naming_the_tensor(tmp_path):
    state = {k: v.clone() for k, v in net(0).state_dict().items()}
    state["2.weight"][0, 0, 0, 0] = float("nan")
    save_file(state, str(tmp_path / "nan.safetensors"))
    target = net(1)
    msg = one_line_error(load_weights, target, tmp_path / "nan.safetensors", match="tensor '2.weight'")
    assert str(tmp_path / "nan.safetensors") in msg and "non-finite" in msg
    assert same_weights(target, net(1))  # nothing was loaded


def test_absurd_weights_are_refused_on_load(tmp_path):
    state = {k: (v * 1e38 if v.is_floating_point() else v) for k, v in net(0).state_dict().items()}
    save_file(state, str(tmp_path / "big.safetensors"))
    msg = one_line_error(load_weights, net(1), tmp_path / "big.safetensors", match="above 1e+10 in magnitude")
    assert "tensor '0.weight'" in msg


def test_a_header_retyped_to_int32_is_refused(tmp_path):
    path = tmp_path / "g.safetensors"
    save_weights(net(0), path)
    retype(path, "0.weight", "I32")
    assert load_file(str(path))["0.weight"].dtype == torch.int32  # safetensors itself accepts it
    msg = one_line_error(load_weights, net(1), path, match="tensor '0.weight' is stored as int32")
    assert "float32" in msg and str(path) in msg


def test_mismatched_missing_and_corrupt_weights_are_one_line(tmp_path):
    path = tmp_path / "g.safetensors"
    save_weights(net(0), path)
    wide = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 2, 1))
    one_line_error(load_weights, wide, path, match="do not fit")
    one_line_error(load_weights, nn.Sequential(nn.Conv2d(1, 4, 3)), path, match="do not match")
    one_line_error(load_weights, net(), tmp_path / "absent.safetensors", match="is missing")
    path.write_bytes(path.read_bytes()[:100])
    one_line_error(load_weights, net(), path, match="cannot read")


def test_saving_weights_that_cannot_score_is_refused_and_writes_nothing(tmp_path):
    bad = net(0)
    with torch.no_grad():
        bad[0].weight.fill_(float("inf"))
    one_line_error(save_weights, bad, tmp_path / "g.safetensors", match="tensor '0.weight'")
    with torch.no_grad():
        bad[0].weight.fill_(MAX_ABS_WEIGHT * 10)
    one_line_error(save_weights, bad, tmp_path / "g.safetensors", match="above 1e+10")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("where, code, words", [
    ("replace", errno.ENOSPC, "no space left"),
    ("write", errno.ENOSPC, "no space left"),
    ("replace", errno.EROFS, "read-only"),
    ("serialize", errno.ENOSPC, "no space left"),
])
def test_a_failing_weights_write_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, where, code, words):
    def fail(*a, **k):
        raise OSError(code, os.strerror(code))

    if where == "serialize":
        monkeypatch.setattr(ckpt, "_st_save", fail)
    else:
        monkeypatch.setattr(os, where, fail)
    path = tmp_path / "g.safetensors"
    with pytest.raises(AgadError) as info:
        save_weights(net(0), path)
    monkeypatch.undo()
    assert words in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)
    assert listing(tmp_path) == []


# ------------------------------------------------------------------ training state
def test_state_round_trip_with_rng_and_meta(tmp_path, umask022):
    path = tmp_path / "checkpoint" / "state.safetensors"
    model = net(0)
    tensors = {**{f"G/{k}": v for k, v in model.state_dict().items()}, **rng_state()}
    meta = {"epoch": 3, "history": [{"epoch": 1, "G/total": 0.5}], "note": "x"}
    save_state(path, tensors, meta)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and listing(path.parent) == ["state.safetensors"]
    back, back_meta = load_state(path)
    assert back_meta == meta and back["rng/cpu"].dtype == torch.uint8
    assert all(torch.equal(back[k], tensors[k].cpu()) for k in tensors)


def test_rng_state_restores_the_draws():
    saved = rng_state()
    first = torch.rand(3)
    set_rng_state(saved)
    assert torch.equal(torch.rand(3), first)


def test_state_meta_must_be_json(tmp_path):
    path = tmp_path / "state.safetensors"
    one_line_error(save_state, path, {"x": torch.zeros(2)}, {"loss": {"last": float("nan")}}, match="'loss.last'")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("what, metadata, tensor, words", [
    ("weights, not a state", {"role": "generator"}, torch.zeros(2), "not a training-state file"),
    ("meta not JSON", {STATE_META_KEY: "{bad"}, torch.zeros(2), "not valid JSON"),
    ("meta NaN", {STATE_META_KEY: '{"lr": NaN}'}, torch.zeros(2), "'lr'"),
    ("meta a list", {STATE_META_KEY: "[1]"}, torch.zeros(2), "JSON object"),
    ("NaN tensor", {STATE_META_KEY: "{}"}, torch.tensor([1.0, float("nan")]), "tensor 'x' holds non-finite"),
])
def test_a_damaged_state_file_is_one_line(tmp_path, what, metadata, tensor, words):
    path = tmp_path / "state.safetensors"
    save_file({"x": tensor}, str(path), metadata=metadata)
    msg = one_line_error(load_state, path, match=words)
    assert str(path) in msg
    one_line_error(load_state, tmp_path / "absent.safetensors", match="does not exist")
