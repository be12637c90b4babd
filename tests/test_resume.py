"""A killed training resumes from its checkpoint and ends with the weights and scores of an uninterrupted run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from agad import pipeline
from agad.config import TrainConfig
from agad.errors import AgadError
from agad.rundir import CHECKPOINT_DIR, GENERATOR_FILE, staging_path


def _cfg(**kw) -> TrainConfig:
    base = dict(data="mnist-sample", normal_class=1, epochs=3, batch_size=32, device="cpu", precision="fp32",
                num_threads=1)
    return TrainConfig(**{**base, **kw})


class Killed(BaseException):
    """Stands for SIGKILL: nothing of the run's own error handling runs for it."""


def _checkpoint_then_die(monkeypatch, *, at_epoch: int):
    """A checkpoint after every epoch, then Killed once epoch ``at_epoch``'s is written; returns the real
    checkpoint writer and the list of epochs checkpointed."""
    monkeypatch.setattr(pipeline, "CHECKPOINT_EVERY_S", 0.0)
    real, saved = pipeline._save_checkpoint, []

    def save_then_die(path, cfg_, trainer, keeper):
        real(path, cfg_, trainer, keeper)
        saved.append(trainer.epoch)
        if trainer.epoch == at_epoch:
            raise Killed

    monkeypatch.setattr(pipeline, "_save_checkpoint", save_then_die)
    return real, saved


@pytest.mark.parametrize("gamma", [0.0, 0.05])
def test_a_run_killed_after_an_epoch_resumes_to_the_same_weights_and_scores(tmp_path, monkeypatch, gamma):
    cfg = _cfg(gamma=gamma)
    whole = pipeline.train(cfg, tmp_path / "whole", progress=False, figure=False)

    real, saved = _checkpoint_then_die(monkeypatch, at_epoch=2)
    out = tmp_path / "resumed"
    with pytest.raises(Killed):
        pipeline.train(cfg, out, progress=False, figure=False)
    assert not out.exists() and (staging_path(out) / CHECKPOINT_DIR).is_dir()

    monkeypatch.setattr(pipeline, "_save_checkpoint", real)
    resumed = pipeline.train(cfg, out, progress=False, figure=False, resume=True)
    assert saved == [1, 2]
    assert [h["epoch"] for h in resumed.fit.history] == [1, 2, 3]
    a, b = load_file(str(tmp_path / "whole" / GENERATOR_FILE)), load_file(str(out / GENERATOR_FILE))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(whole.fit.train_scores, resumed.fit.train_scores)
    assert whole.threshold == resumed.threshold
    assert not (out / CHECKPOINT_DIR).exists() and not staging_path(out).exists()


def test_a_checkpoint_of_another_config_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "CHECKPOINT_EVERY_S", 0.0)
    real = pipeline._save_checkpoint

    def die(path, cfg_, trainer, keeper):
        real(path, cfg_, trainer, keeper)
        raise Killed

    monkeypatch.setattr(pipeline, "_save_checkpoint", die)
    out = tmp_path / "run"
    with pytest.raises(Killed):
        pipeline.train(_cfg(), out, progress=False, figure=False)
    monkeypatch.setattr(pipeline, "_save_checkpoint", real)
    with pytest.raises(AgadError, match="checkpoint of another configuration"):
        pipeline.train(_cfg(lr=1e-3), out, progress=False, figure=False, resume=True)


def test_a_training_step_too_large_for_the_memory_is_refused_before_training(monkeypatch):
    import agad.data.bounds as bounds

    monkeypatch.setattr(bounds, "available_memory", lambda: 2 * 1024**3)  # a 2 GiB machine
    x = np.zeros((4, 1, 512, 512), np.uint8)
    with pytest.raises(AgadError, match=r"training step of 32 images of 512x512 needs an estimated .*--image-size"):
        pipeline.fit_model(_cfg(epochs=1), x, progress=False)


def test_a_grid_continues_a_killed_run_from_its_checkpoint(tmp_path, monkeypatch):
    from agad.experiments.grid import run_name, run_one

    cfg = _cfg()
    whole = run_one(cfg, tmp_path / "whole", in_process=True)
    real, epochs = _checkpoint_then_die(monkeypatch, at_epoch=2)
    root = tmp_path / "grid"
    with pytest.raises(Killed):
        run_one(cfg, root, in_process=True)
    assert (staging_path(root / run_name(cfg)) / CHECKPOINT_DIR).is_dir()
    monkeypatch.setattr(pipeline, "_save_checkpoint", lambda *a: (real(*a), epochs.append(a[2].epoch)))
    resumed = run_one(cfg, root, in_process=True)  # the grid called again, as after a reboot
    assert epochs == [1, 2, 3]  # only epoch 3 was trained again
    a, b = load_file(str(whole / GENERATOR_FILE)), load_file(str(resumed / GENERATOR_FILE))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    def metrics(run):  # timings aside
        return {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if "seconds" not in k}

    assert metrics(whole) == metrics(resumed) and metrics(whole)["auroc"] is not None

