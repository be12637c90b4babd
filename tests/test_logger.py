"""--logger tensorboard writes per-term losses and reconstructions into the run directory."""

from __future__ import annotations

import importlib.util

import pytest

from agad.cli import main

FAST = ["--data", "mnist-sample", "--epochs", "2", "--batch-size", "32", "--precision", "fp32", "--device", "cpu",
        "--num-threads", "1", "--no-progress"]


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_tensorboard_logs_every_loss_term_and_the_reconstructions(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(["train", *FAST, "--logger", "tensorboard", "--out", str(out)]) == 0
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0}).Reload()
    tags = events.Tags()
    assert {"G/adv", "G/con", "G/adcon", "G/lat", "D/total"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("G/con")] == [1, 2]
    assert tags["images"] and len(events.Images(tags["images"][0])) == 2


def test_a_missing_tensorboard_is_one_line_before_training(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    out = tmp_path / "run"
    assert main(["train", *FAST, "--logger", "tensorboard", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'agad[tensorboard]'" in err[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []
