"""The reference detectors (logreg, cnn, deep-sad): they learn, score deterministically, save, load and export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn.metrics import roc_auc_score

from agad.data import load_dataset
from agad.errors import AgadError
from agad.references import REFERENCE_METHODS, build_reference, deep_sad_loss, fit_reference, needs_labels

SIZE = 32
# epochs per method for the tiny split: enough to beat chance clearly, short enough for a fast test
TINY_EPOCHS = {"logreg": None, "cnn": 2, "deep-sad": 5}
MIN_AUROC = {"logreg": 0.9, "cnn": 0.9, "deep-sad": 0.8}
QUICK_EPOCHS = {"logreg": None, "cnn": 1, "deep-sad": 1}  # where only determinism matters


@pytest.fixture(scope="module")
def tiny():
    """Digit 1 normal vs the other digits: 200 normal and 40 labelled-anomaly training images, 200 test images."""
    ds = load_dataset("mnist-sample", image_size=SIZE)
    rng = np.random.default_rng(0)
    normal = rng.choice(np.flatnonzero(ds.y_train == 1), 200, replace=False)
    anomaly = rng.choice(np.flatnonzero(ds.y_train != 1), 40, replace=False)
    test = np.concatenate([np.flatnonzero(ds.y_test == 1),
                           rng.choice(np.flatnonzero(ds.y_test != 1), 100, replace=False)])
    return {
        "x_normal": torch.from_numpy(ds.x_train[normal]),
        "x_anomaly": torch.from_numpy(ds.x_train[anomaly]),
        "x_test": torch.from_numpy(ds.x_test[test]).float().div(127.5).sub(1.0),
        "y_test": (ds.y_test[test] != 1).astype(np.int64),
    }


def _fit(name: str, data, *, seed: int = 0, anomalies: bool = True, epochs=TINY_EPOCHS, **kwargs):
    torch.set_num_threads(1)
    m = build_reference(name, in_channels=1, image_size=SIZE, seed=seed)
    history = fit_reference(name, m, data["x_normal"], data["x_anomaly"] if anomalies else None, seed=seed,
                            epochs=epochs[name], **kwargs)
    return m, history


def _scores(m: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return m.eval()(x)


class _Fits(dict):
    """Each method fitted once on the tiny split, on first use (so no single test pays for all three)."""

    def __init__(self, data):
        super().__init__()
        self.data = data

    def __missing__(self, name):
        self[name] = _fit(name, self.data)
        return self[name]


@pytest.fixture(scope="module")
def fitted(tiny):
    return _Fits(tiny)


@pytest.mark.parametrize("name", REFERENCE_METHODS)
def test_reference_beats_chance_with_finite_scores(name, tiny, fitted):
    m, _ = fitted[name]
    s = _scores(m, tiny["x_test"])
    assert s.shape == (len(tiny["y_test"]),) and s.dtype == torch.float32
    assert torch.isfinite(s).all()
    assert roc_auc_score(tiny["y_test"], s.numpy()) > MIN_AUROC[name]


@pytest.fixture(scope="module")
def unlabelled_sad(tiny):
    """Deep SAD on the same normal images without labelled anomalies, each epoch as on_epoch saw it."""
    seen = []
    m, history = _fit("deep-sad", tiny, anomalies=False,
                      on_epoch=lambda module, record: seen.append((module.training, dict(record))))
    return m, history, seen


@pytest.mark.parametrize("name", ["cnn", "deep-sad"])
def test_same_seed_same_scores_other_seed_other_scores(name, tiny):
    m, _ = _fit(name, tiny, epochs=QUICK_EPOCHS)
    again, _ = _fit(name, tiny, epochs=QUICK_EPOCHS)
    other, _ = _fit(name, tiny, seed=1, epochs=QUICK_EPOCHS)
    x = tiny["x_test"][:50]
    assert torch.equal(_scores(m, x), _scores(again, x))
    assert not torch.allclose(_scores(m, x), _scores(other, x))


def test_logreg_is_deterministic(tiny, fitted):
    again, _ = _fit("logreg", tiny)
    x = tiny["x_test"][:50]
    assert torch.equal(_scores(fitted["logreg"][0], x), _scores(again, x))


def test_build_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_reference("cnn", in_channels=1, image_size=SIZE, seed=7)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", REFERENCE_METHODS)
def test_safetensors_round_trip_gives_identical_scores(name, tiny, fitted, tmp_path):
    m, _ = fitted[name]
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    fresh = build_reference(name, in_channels=1, image_size=SIZE, seed=99)
    x = tiny["x_test"][:40]
    assert not torch.equal(_scores(fresh, x), _scores(m, x))  # the weights, not the seed, carry the scores
    fresh.load_state_dict(load_file(str(path)))
    assert torch.equal(_scores(fresh, x), _scores(m, x))


@pytest.mark.parametrize("name", REFERENCE_METHODS)
def test_scores_do_not_depend_on_the_rest_of_the_batch(name, tiny, fitted):
    m, _ = fitted[name]
    x = tiny["x_test"][:16]
    batch = _scores(m, x)
    alone = torch.cat([_scores(m, x[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(alone, batch, rtol=1e-5, atol=1e-5)
    shuffled = _scores(m, x.flip(0)).flip(0)
    torch.testing.assert_close(shuffled, batch, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript-based exporter, as agad.export uses
@pytest.mark.parametrize("name", REFERENCE_METHODS)
def test_onnx_export_scores_as_torch(name, tiny, fitted, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    m, _ = fitted[name]
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(m.eval(), (tiny["x_test"][:2],), str(path), input_names=["image"], output_names=["score"],
                      dynamic_axes={"image": {0: "batch"}, "score": {0: "batch"}}, opset_version=17, dynamo=False)
    x = tiny["x_test"][:8]
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, _scores(m, x).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["logreg", "cnn"])
@pytest.mark.parametrize("empty", [None, "empty"])
def test_supervised_references_refuse_no_labelled_anomalies(name, empty, tiny):
    m = build_reference(name, in_channels=1, image_size=SIZE, seed=0)
    x_anomaly = None if empty is None else tiny["x_anomaly"][:0]
    with pytest.raises(AgadError, match="needs labelled anomalies") as info:
        fit_reference(name, m, tiny["x_normal"], x_anomaly, seed=0)
    assert "\n" not in str(info.value)


def test_needs_labels():
    assert [needs_labels(n) for n in REFERENCE_METHODS] == [True, True, False]
    with pytest.raises(AgadError, match="unknown reference method"):
        needs_labels("svm")


def test_deep_sad_trains_without_labels_and_records_both_phases(tiny, unlabelled_sad):
    m, history, seen = unlabelled_sad
    e = TINY_EPOCHS["deep-sad"]
    assert [r["epoch"] for r in history] == list(range(1, 2 * e + 1))  # pre-training epochs, then training
    assert all("ref/ae" in r for r in history[:e]) and all("ref/sad" in r for r in history[e:])
    assert [rec for _, rec in seen] == history and not any(training for training, _ in seen)  # eval mode
    assert m.c.abs().min() >= 0.1 - 1e-7  # the centre is set, no coordinate left near 0
    s = _scores(m, tiny["x_test"])
    assert roc_auc_score(tiny["y_test"], s.numpy()) > MIN_AUROC["deep-sad"]


def test_records_name_their_loss_terms(fitted):
    (_, logreg), (_, cnn), (_, sad) = (fitted[n] for n in REFERENCE_METHODS)
    assert len(logreg) == 1 and logreg[0]["ref/converged"] == 1.0 and logreg[0]["ref/bce"] > 0
    assert [r["epoch"] for r in cnn] == [1, 2] and all(r["ref/bce"] > 0 for r in cnn)
    terms = [sorted(k for k in r if k.startswith("ref/")) for r in sad]
    assert terms == [["ref/ae"]] * TINY_EPOCHS["deep-sad"] + [["ref/dist", "ref/sad"]] * TINY_EPOCHS["deep-sad"]


def test_deep_sad_loss_pulls_normals_in_and_pushes_labelled_anomalies_out():
    dist = torch.tensor([1.0, 4.0, 0.5], requires_grad=True)
    loss = deep_sad_loss(dist, torch.tensor([False, True, False]))
    torch.testing.assert_close(loss, torch.tensor((1.0 + 1 / (4.0 + 1e-6) + 0.5) / 3))
    loss.backward()
    assert dist.grad[0] > 0 and dist.grad[2] > 0  # descending shrinks normal distances
    assert dist.grad[1] < 0  # and grows the labelled anomaly's


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda d: build_reference("svm", in_channels=1, image_size=SIZE, seed=0), "unknown reference method"),
        (lambda d: build_reference("cnn", in_channels=0, image_size=SIZE, seed=0), "in_channels"),
        (lambda d: build_reference("cnn", in_channels=1, image_size=SIZE, seed=-1), "seed"),
        (lambda d: fit_reference("cnn", build_reference("cnn", in_channels=3, image_size=SIZE, seed=0),
                                 d["x_normal"], d["x_anomaly"], seed=0), "shape"),
        (lambda d: fit_reference("cnn", build_reference("logreg", in_channels=1, image_size=SIZE, seed=0),
                                 d["x_normal"], d["x_anomaly"], seed=0), "build_reference"),
        (lambda d: fit_reference("logreg", build_reference("logreg", in_channels=1, image_size=SIZE, seed=0),
                                 d["x_normal"], d["x_anomaly"], seed=0, epochs=3), "takes no epochs"),
        (lambda d: fit_reference("cnn", build_reference("cnn", in_channels=1, image_size=SIZE, seed=0),
                                 d["x_normal"], d["x_anomaly"], seed=0, epochs=0), "epochs"),
    ],
)
def test_bad_input_is_one_line_agad_error(call, message, tiny):
    with pytest.raises(AgadError, match=message) as info:
        call(tiny)
    assert "\n" not in str(info.value)
