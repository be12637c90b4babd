"""AGAD's label head (``label_head``): a classifier trained beside G whose calibrated logit joins the score.

What the option must change: the score (the reconstruction score and the head's logit, each standardised on
held-out normal training images, added). What it must not change: G, D, the epoch kept, and every loss term
of training. Each run is two epochs on 64 digits of the MNIST sample plus 8 labelled anomalies (fp32, CPU).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agad.config import TrainConfig
from agad.data import load_dataset
from agad.errors import AgadError
from agad.methods import LabelHead, calibrate_label_head, label_head_of, without_label_head
from agad.pipeline import fit_model, load_run, run_record, save_fit, validation_split
from agad.scoring import score_images

FAST = dict(epochs=2, batch_size=32, device="cpu", precision="fp32", gamma=8 / 72)


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("mnist-sample")
    test = np.r_[np.flatnonzero(ds.y_test == 0)[:10], np.flatnonzero(ds.y_test != 0)[:10]]
    return {"normal": ds.x_train[ds.y_train == 0][:64], "anomalies": ds.x_train[ds.y_train == 3][:8],
            "test": ds.x_test[test]}


@pytest.fixture(scope="module")
def pair(digits):
    """The same run without and with the head (the default hold-out of 10%: 6 normal images)."""
    return {head: fit_model(TrainConfig(label_head=head, **FAST), digits["normal"], digits["anomalies"],
                            progress=False)
            for head in (False, True)}


def _score(fit, module, x):
    return score_images(module, x, batch_size=fit.cfg.eval_batch_size, device="cpu", amp_dtype=None,
                        channels_last=fit.cfg.channels_last)


def test_the_head_lives_in_the_generator_and_trains():
    nets_cfg = TrainConfig(label_head=True, **FAST)
    from agad.methods import get_method

    nets = get_method("agad").build(nets_cfg, 1, 32)
    assert isinstance(label_head_of(nets.G), LabelHead)
    assert any(k.startswith("label_head.net.") for k in nets.G.state_dict())
    plain = get_method("agad").build(nets_cfg.replace(label_head=False), 1, 32)
    assert label_head_of(plain.G) is None


def test_the_head_changes_nothing_of_training(pair):
    plain, head = pair[False], pair[True]
    g0 = plain.nets.G.state_dict()
    g1 = {k: v for k, v in head.nets.G.state_dict().items() if not k.startswith("label_head.")}
    assert g0.keys() == g1.keys() and all(torch.equal(g0[k], g1[k]) for k in g0)
    d0, d1 = plain.nets.D.state_dict(), head.nets.D.state_dict()
    assert all(torch.equal(d0[k], d1[k]) for k in d0)
    assert head.kept_epoch == plain.kept_epoch

    def terms(history):  # every training term; the head's own and the validation AUROC (its score) aside
        return [{k: v for k, v in r.items() if not k.startswith("head/") and k not in ("val/auroc", "seconds")}
                for r in history]

    assert terms(head.history) == terms(plain.history)
    assert all("head/bce" in r and np.isfinite(r["head/bce"]) for r in head.history)
    assert all("head/bce" not in r for r in plain.history)
    # the head learns: its loss falls below chance (log 2) on 8 anomalies it sees every step
    assert head.history[-1]["head/bce"] < 0.6931


def test_the_score_adds_the_two_parts_standardised_on_held_out_normals(pair, digits):
    fit = pair[True]
    head = label_head_of(fit.nets.G)
    _, held = validation_split(digits["normal"], fit.cfg.resolved_val_fraction(), seed=fit.cfg.seed)
    recon_part = without_label_head(fit.scorer)
    a_held, h_held = _score(fit, recon_part, held), _score(fit, head, held)
    m_a, s_a, m_h, s_h = head.calibration.tolist()
    assert m_a == pytest.approx(a_held.mean(), rel=1e-5) and s_a == pytest.approx(a_held.std(), rel=1e-4)
    assert m_h == pytest.approx(h_held.mean(), abs=1e-5) and s_h == pytest.approx(h_held.std(), rel=1e-4)
    x = digits["test"]
    expected = (_score(fit, recon_part, x) - m_a) / s_a + (_score(fit, head, x) - m_h) / s_h
    np.testing.assert_allclose(fit.score(x), expected, rtol=1e-5, atol=1e-5)
    # the reconstruction part is the plain model's score, bit for bit
    np.testing.assert_array_equal(_score(fit, recon_part, x), pair[False].score(x))
    # the standardised parts have mean 0 and sd 1 on the images that calibrated them
    z = (a_held - m_a) / s_a
    assert abs(z.mean()) < 1e-4 and z.std() == pytest.approx(1.0, rel=1e-3)


def test_calibrating_again_on_the_same_images_changes_nothing(pair, digits):
    fit = pair[True]
    head = label_head_of(fit.nets.G)
    before = head.calibration.clone()
    _, held = validation_split(digits["normal"], fit.cfg.resolved_val_fraction(), seed=fit.cfg.seed)
    calibrate_label_head(fit.scorer, held, lambda m, x: _score(fit, m, x))
    torch.testing.assert_close(head.calibration, before)
    calibrate_label_head(pair[False].scorer, held, lambda m, x: pytest.fail("a scorer without a head is scored"))


def test_a_run_with_a_head_saves_loads_and_exports_alike(pair, digits, tmp_path):
    fit = pair[True]
    record = run_record(fit, threshold=float(np.quantile(fit.train_scores, 0.9)),
                        threshold_source="quantile of training-normal scores", contamination=0.1,
                        data={"source": "mnist-sample"}, command="test_label_head")
    run_dir = save_fit(tmp_path / "run", fit, record)
    run = load_run(run_dir)
    assert run.cfg.label_head and label_head_of(run.nets.G) is not None
    torch.testing.assert_close(label_head_of(run.nets.G).calibration, label_head_of(fit.nets.G).calibration)
    x = digits["test"]
    loaded = _score(fit, run.scorer, x)
    np.testing.assert_array_equal(loaded, fit.score(x))
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from agad.export import export_model

    out = export_model(run_dir, tmp_path / "head.onnx", format="onnx")
    names = [o.name for o in onnx.load(str(out)).graph.output]
    onnx_model = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = dict(zip(names, onnx_model.run(None, {"image": x[:5].astype(np.float32) / 127.5 - 1.0})))
    np.testing.assert_allclose(got["score"], loaded[:5], rtol=1e-4, atol=1e-4)


def test_the_head_is_on_by_default_only_where_it_can_learn(digits):
    from agad.methods import get_method

    # on with labelled anomalies; without them, or for another method, it is recorded (and built) as off
    assert TrainConfig(gamma=0.05).resolved().label_head
    assert not TrainConfig().resolved().label_head and not TrainConfig(label_head=True).resolved().label_head
    assert not TrainConfig(method="cnn", gamma=0.1).resolved().label_head
    assert label_head_of(get_method("agad").build(TrainConfig(), 1, 32).G) is None
    assert label_head_of(get_method("agad").build(TrainConfig(gamma=0.05), 1, 32).G) is not None
    # gamma > 0 promises labelled anomalies: a training set without any is refused, naming the way out
    with pytest.raises(AgadError, match="this training set has none; add labelled anomalies, or pass --no-label-head"):
        fit_model(TrainConfig(label_head=True, **FAST), digits["normal"], None, progress=False)


def test_the_estimator_trains_the_head_with_labels_only(digits, tmp_path):
    from agad import AGAD

    X = np.concatenate([digits["normal"], digits["anomalies"]])
    y = np.r_[np.zeros(len(digits["normal"]), int), np.ones(len(digits["anomalies"]), int)]
    est = AGAD(label_head=True, epochs=1, batch_size=32, device="cpu", precision="fp32").fit(X, y)
    assert label_head_of(est.generator_) is not None
    s = est.decision_function(digits["test"])
    est.save(tmp_path / "model")
    np.testing.assert_array_equal(AGAD.load(tmp_path / "model").decision_function(digits["test"]), s)
    plain = AGAD(label_head=True, epochs=1, batch_size=32, device="cpu", precision="fp32").fit(digits["normal"])
    assert label_head_of(plain.generator_) is None and not plain.config_.label_head
