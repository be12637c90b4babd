"""The method table (agad.methods): every registered method builds, trains, scores, saves, loads and exports alike.

Each method is fitted once, for one epoch on 64 digits of the MNIST sample (batch 32, fp32, CPU), through the
one training path (agad.pipeline.fit_model), then written and read back as a run directory.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agad import config
from agad.config import TrainConfig
from agad.data import load_dataset
from agad.errors import AgadError
from agad.methods import METHODS, ReconstructionScorer, get_method
from agad.nets import Nets, build_generator
from agad.pipeline import fit_model, load_run, run_record, save_fit
from agad.scoring import score_images

try:
    from agad import references
except ImportError:
    references = None

FAST = dict(epochs=1, batch_size=32, device="cpu", precision="fp32")
REFERENCES = ("logreg", "cnn", "deep-sad")


def _available(name: str) -> None:
    """The reference methods come from agad.references: skipped where it lacks build_reference."""
    if name in REFERENCES and not hasattr(references, "build_reference"):
        pytest.skip("agad.references has no build_reference")


def _short_deep_sad(mp: pytest.MonkeyPatch) -> None:
    # Deep SAD's fixed budget is the paper's 150 + 150 epochs; one of each keeps this a smoke test
    if references is not None:
        mp.setattr(references, "SAD_AE_EPOCHS", 1, raising=False)
        mp.setattr(references, "SAD_EPOCHS", 1, raising=False)


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("mnist-sample")
    test = np.r_[np.flatnonzero(ds.y_test == 0)[:10], np.flatnonzero(ds.y_test != 0)[:10]]
    return {"normal": ds.x_train[ds.y_train == 0][:64], "anomalies": ds.x_train[ds.y_train != 0][:8],
            "test": ds.x_test[test]}


def _config(name: str, **kw) -> TrainConfig:
    # the supervised references need labelled anomalies; no hold-out, so every method keeps its last epoch
    gamma = 8 / 72 if get_method(name).labels == "needs" else 0.0
    return TrainConfig(method=name, gamma=gamma, val_fraction=0.0, **{**FAST, **kw})


def _fit(name: str, digits, **kw):
    cfg = _config(name, **kw)
    anomalies = digits["anomalies"] if cfg.gamma > 0 else None
    with pytest.MonkeyPatch.context() as mp:
        _short_deep_sad(mp)
        return fit_model(cfg, digits["normal"], anomalies, progress=False)


@pytest.fixture(scope="module", params=list(METHODS))
def fitted(request, digits, tmp_path_factory):
    """(method name, FitResult, run directory) for every method of the table."""
    name = request.param
    _available(name)
    fit = _fit(name, digits)
    record = run_record(fit, threshold=float(np.quantile(fit.train_scores, 0.9)),
                        threshold_source="quantile of training-normal scores", contamination=0.1,
                        data={"source": "mnist-sample"}, command="test_methods")
    run_dir = save_fit(tmp_path_factory.mktemp(name) / "run", fit, record)
    return name, fit, run_dir


# ------------------------------------------------------------------ the table
def test_the_table_holds_every_configurable_method():
    assert list(METHODS) == list(config.METHODS)
    for name, method in METHODS.items():
        assert method.name == name and method.summary
        assert method.labels == config.METHOD_LABELS[name]
        assert get_method(name) is method
    with pytest.raises(AgadError, match="unknown method 'gan'; choose one of: agad, ganomaly"):
        get_method("gan")


@pytest.mark.parametrize("name", list(METHODS))
def test_build_gives_seeded_networks_with_a_scorer(name):
    _available(name)
    method = get_method(name)
    cfg = _config(name, seed=5)
    nets = method.build(cfg, 1, 32)
    assert isinstance(nets, Nets) and isinstance(nets.G, torch.nn.Module)
    assert (nets.D is not None) == (name in ("agad", "ganomaly", "skip-ganomaly"))
    again = method.build(cfg, 1, 32)
    for a, b in zip(nets.G.state_dict().values(), again.G.state_dict().values()):
        assert torch.equal(a, b)  # the seed decides the initial weights
    other = method.build(cfg.replace(seed=6), 1, 32)
    assert name == "logreg" or any(  # logreg starts from zero weights: its fit is convex
        not torch.equal(a, b) for a, b in zip(nets.G.state_dict().values(), other.G.state_dict().values())
        if a.is_floating_point())
    scorer = method.scorer(nets).eval()
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        s = scorer(x)
        assert s.shape == (3,) and torch.isfinite(s).all()
        if hasattr(scorer, "score_and_reconstruct"):
            s2, x_hat = scorer.score_and_reconstruct(x)
            assert x_hat.shape == x.shape and torch.equal(s2, s)
            assert torch.equal(scorer.reconstruct(x), x_hat)


def test_reconstruction_scorer_is_the_l2_reconstruction_error():
    torch.manual_seed(0)
    G = build_generator("naive", in_channels=1, image_size=32).eval()
    scorer = ReconstructionScorer(G)
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = (x - G(x)).flatten(1).norm(dim=1)
        torch.testing.assert_close(scorer(x), expected)
    assert score_images(scorer, x, batch_size=3).shape == (4,)


# ------------------------------------------------------------------ fit, save, load, export
def test_a_fit_scores_every_image_with_finite_scores(fitted, digits):
    name, fit, _ = fitted
    assert fit.cfg.method == name and fit.n_fit == 64 and fit.kept_epoch == len(fit.history) >= 1
    assert fit.train_scores.shape == (64,) and fit.train_scores.dtype == np.float64
    assert np.isfinite(fit.train_scores).all()
    s = fit.score(digits["test"])
    assert s.shape == (20,) and np.isfinite(s).all()
    assert len(np.unique(s)) > 1  # the scores tell images apart
    assert all(np.isfinite(v) for h in fit.history for k, v in h.items() if isinstance(v, float))




def test_save_then_load_gives_identical_scores(fitted, digits, request):
    name, fit, run_dir = fitted
    meta = json.loads((run_dir / "config.json").read_text())
    assert meta["model"]["method"] == name and meta["config"]["method"] == name
    assert meta["score_scaling"]["train_min"] == pytest.approx(float(fit.train_scores.min()))
    run = load_run(run_dir)
    assert run.cfg == fit.cfg
    assert (run.nets.D is None) == (fit.nets.D is None)
    np.testing.assert_array_equal(run.train_scores, fit.train_scores)
    loaded = score_images(run.scorer, digits["test"], batch_size=fit.cfg.eval_batch_size, device="cpu",
                          channels_last=fit.cfg.channels_last)
    np.testing.assert_array_equal(loaded, fit.score(digits["test"]))
    reconstructs = hasattr(fit.scorer, "score_and_reconstruct")
    assert hasattr(run.scorer, "score_and_reconstruct") == reconstructs


def test_export_to_onnx_matches_the_loaded_scores(fitted, digits, tmp_path):
    name, fit, run_dir = fitted
    reconstructs = hasattr(fit.scorer, "score_and_reconstruct")
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from agad.export import export_model

    out = export_model(run_dir, tmp_path / f"{name}.onnx", format="onnx")
    names = [o.name for o in onnx.load(str(out)).graph.output]
    # the reconstruction and the score first, the score alone for a scorer that does not reconstruct
    assert names[: 2 if reconstructs else 1] == (["reconstruction", "score"] if reconstructs else ["score"])
    x = digits["test"][:5]
    onnx_model = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = dict(zip(names, onnx_model.run(None, {"image": x.astype(np.float32) / 127.5 - 1.0})))
    s = got["score"]
    if reconstructs:
        assert got["reconstruction"].shape == x.shape
    expected = score_images(load_run(run_dir).scorer, x, device="cpu")
    np.testing.assert_allclose(s, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", [n for n in METHODS if config.METHOD_LABELS[n] != "ignores" and n != "agad"])
def test_other_methods_keep_their_last_epoch_under_the_default_rule(name, digits):
    """The held-out epoch rules read AGAD's own loss terms: with labelled anomalies the others keep their last
    epoch."""
    _available(name)
    cfg = TrainConfig(method=name, gamma=8 / 72, **FAST)  # val_fraction and select_epoch left at "auto"
    assert cfg.resolved().select_epoch == "last"
    with pytest.MonkeyPatch.context() as mp:
        _short_deep_sad(mp)
        fit = fit_model(cfg, digits["normal"], digits["anomalies"], progress=False)
    assert np.isfinite(fit.train_scores).all() and fit.train_scores.shape == (64,)
    assert fit.kept_epoch == len(fit.history)
    for rule in ("val-recon", "val-ratio"):
        with pytest.raises(AgadError, match=f"select_epoch '{rule}' reads AGAD's"):
            cfg.replace(select_epoch=rule)
