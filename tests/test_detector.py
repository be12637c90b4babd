"""The AGAD estimator: scikit-learn contract, thresholds, inputs, save/load.

Every fit is one epoch on a few dozen 32x32 digits (CPU, fp32): these tests
check the contract, not the quality.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from agad import AGAD
from agad.config import TrainConfig
from agad.data import load_dataset
from agad.detector import TRAIN_SCORES_FILE, f1_best_threshold
from agad.errors import AgadError

FAST = dict(epochs=1, batch_size=32, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("mnist-sample")
    zeros = ds.x_train[ds.y_train == 0]
    others = ds.x_train[ds.y_train != 0]
    test_idx = np.r_[np.flatnonzero(ds.y_test == 0)[:10], np.flatnonzero(ds.y_test != 0)[:10]]
    return {
        "train": zeros[:64],  # uint8 (64, 1, 32, 32)
        "anomalies": others[:8],
        "val_x": np.concatenate([zeros[64:80], others[8:24]]),
        "val_y": np.r_[np.zeros(16, int), np.ones(16, int)],
        "test": ds.x_test[test_idx],
    }


@pytest.fixture(scope="module")
def fitted(digits):
    return AGAD(**FAST).fit(digits["train"])


@pytest.fixture(scope="module")
def supervised(digits):
    """Labelled anomalies in y and a validation set: gamma > 0 and an F1 threshold."""
    X = np.concatenate([digits["train"][:32], digits["anomalies"]])  # one step: 32 normal + 32 (resampled) anomalies
    y = np.r_[np.zeros(32, int), np.ones(8, int)]
    return AGAD(**{**FAST, "batch_size": 64}).fit(X, y, X_val=digits["val_x"], y_val=digits["val_y"])


# ------------------------------------------------------------------ parameters
def test_init_only_stores_parameters_and_clone_round_trips():
    det = AGAD(epochs=3, contamination=0.2, backbone="unet", ema_decay=0.99)
    params = det.get_params()
    assert params["epochs"] == 3 and params["backbone"] == "unet" and params["ema_decay"] == 0.99
    assert params["detach_pseudo"] is None  # None: TrainConfig's default, read at fit time
    twin = clone(det)
    assert twin is not det and twin.get_params() == params
    assert twin.set_params(epochs=5).epochs == 5
    assert not [k for k in vars(det) if k.endswith("_")]  # no fitted state before fit


def test_explicit_defaults_agree_with_train_config():
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    params = AGAD().get_params()
    for name in ("backbone", "epochs", "batch_size", "lr", "w_adv", "w_con", "w_adcon", "w_lat", "ca",
                 "device", "precision"):
        assert params[name] == defaults[name], name


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"contamination": 1.5}, "The 'contamination' parameter must be a float in (0, 0.5]. Got 1.5 instead."),
        ({"contamination": 0}, "'contamination'"),
        ({"backbone": "resnet"}, "The 'backbone' parameter must be one of naive, unet, unetpp. Got 'resnet'"),
        ({"epochs": 0}, "The 'epochs' parameter"),
        ({"image_size": 8}, "The 'image_size' parameter must be None or an integer in [16, 1024]. Got 8"),
        ({"random_state": -1}, "The 'random_state' parameter"),
        ({"ca": "yes"}, "The 'ca' parameter must be a bool"),
        ({"device": "tpu"}, "The 'device' parameter must be one of auto, cpu, cuda"),
        ({"lr_schedule": "step"}, "The 'lr_schedule' parameter must be one of constant, cosine. Got 'step'"),
    ],
)
def test_bad_parameters_raise_value_errors_naming_them(kwargs, needle):
    with pytest.raises(ValueError) as info:
        AGAD(**kwargs).fit(np.zeros((4, 32, 32), np.uint8))
    assert needle in str(info.value)


def test_bad_inputs_are_named(digits):
    with pytest.raises(ValueError, match=r"X: .*shape"):
        AGAD(**FAST).fit(np.zeros((4, 5, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"y must be a 1-d array with one label per image \(4\)"):
        AGAD(**FAST).fit(np.zeros((4, 32, 32), np.uint8), y=[0, 1])
    with pytest.raises(ValueError, match=r"y must hold 0 .* and 1 .* only; got \[2\]"):
        AGAD(**FAST).fit(np.zeros((4, 32, 32), np.uint8), y=[0, 0, 2, 0])
    with pytest.raises(ValueError, match="at least 2 unlabelled"):
        AGAD(**FAST).fit(np.zeros((4, 32, 32), np.uint8), y=[1, 1, 1, 0])
    with pytest.raises(ValueError, match="X_val and y_val must be given together"):
        AGAD(**FAST).fit(digits["train"][:4], X_val=digits["val_x"])
    with pytest.raises(ValueError, match="both normal"):
        AGAD(**FAST).fit(digits["train"][:4], X_val=digits["val_x"][:3], y_val=[0, 0, 0])


def test_not_fitted_error_says_what_to_do(digits):
    for method in ("decision_function", "predict", "predict_proba", "score_samples"):
        with pytest.raises(NotFittedError, match="Call 'fit'"):
            getattr(AGAD(), method)(digits["test"])
    with pytest.raises(NotFittedError, match="AGAD.load"):
        AGAD().save("never-written")


# ------------------------------------------------------------------ fitted contract
def test_fitted_attributes(fitted, digits):
    assert fitted.n_channels_in_ == 1 and fitted.image_size_ == 32
    assert fitted.decision_scores_.shape == (64,) and fitted.decision_scores_.dtype == np.float64
    assert fitted.threshold_source_ == "contamination"
    assert fitted.threshold_ == pytest.approx(np.quantile(fitted.decision_scores_, 0.9))
    np.testing.assert_array_equal(fitted.labels_, fitted.decision_scores_ > fitted.threshold_)
    assert fitted.gamma_ == 0.0 and fitted.config_.gamma == 0.0
    assert len(fitted.history_) == 1 and np.isfinite(fitted.history_[0]["G/total"])


def test_scores_predictions_and_probabilities(fitted, digits):
    X = digits["test"]
    s = fitted.decision_function(X)
    assert s.shape == (20,) and np.isfinite(s).all()
    np.testing.assert_array_equal(fitted.score_samples(X), -s)
    pred = fitted.predict(X)
    assert set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, (s > fitted.threshold_).astype(int))
    proba = fitted.predict_proba(X)
    assert proba.shape == (20, 2) and (proba >= 0).all() and (proba <= 1).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    order = np.argsort(s)
    assert (np.diff(proba[order, 1]) >= 0).all()  # monotone in the score
    # statistics come from training scores only: scoring a batch alone or inside a bigger one changes nothing
    np.testing.assert_array_equal(fitted.predict_proba(X[:3]), proba[:3])
    lo, hi = fitted.decision_scores_.min(), fitted.decision_scores_.max()
    np.testing.assert_allclose(proba[:, 1], np.clip((s - lo) / (hi - lo), 0, 1))


def test_other_array_layouts_and_sizes_are_accepted(fitted, digits):
    X = digits["test"][:4]
    s = fitted.decision_function(X)
    np.testing.assert_array_equal(fitted.decision_function(X[:, 0]), s)  # (N, H, W)
    np.testing.assert_array_equal(fitted.decision_function(X.transpose(0, 2, 3, 1)), s)  # (N, H, W, C)
    np.testing.assert_array_equal(fitted.decision_function(X / 255.0), s)  # floats in [0, 1]
    assert fitted.decision_function(np.zeros((2, 28, 28), np.uint8)).shape == (2,)  # resized to 32
    with pytest.raises(ValueError, match="X has 3 channel"):
        fitted.decision_function(np.zeros((2, 3, 32, 32), np.uint8))


def test_same_seed_same_scores(digits):
    small = AGAD(**{**FAST, "batch_size": 16}).fit(digits["train"][:16])
    again = clone(small).fit(digits["train"][:16])
    np.testing.assert_array_equal(again.decision_scores_, small.decision_scores_)


def test_labelled_anomalies_change_training(supervised, fitted):
    assert supervised.gamma_ == pytest.approx(8 / 40) and supervised.config_.gamma == pytest.approx(8 / 40)
    assert "G/anomaly/dist" in supervised.history_[0] and "G/anomaly/dist" not in fitted.history_[0]
    assert supervised.decision_scores_.shape == (32,)  # scores of the unlabelled images only


def test_threshold_from_validation_set(supervised, digits):
    assert supervised.threshold_source_ == "validation"
    s_val = supervised.decision_function(digits["val_x"])
    best, f1 = f1_best_threshold(s_val, digits["val_y"])
    assert supervised.threshold_ == best
    pred = supervised.predict(digits["val_x"])
    tp = int(((pred == 1) & (digits["val_y"] == 1)).sum())
    assert 2 * tp / (pred.sum() + digits["val_y"].sum()) == pytest.approx(f1)
    assert "val/auroc" in supervised.history_[0]


def test_f1_best_threshold_uses_strict_rule():
    s = np.array([0.1, 0.2, 0.3, 0.9, 1.0])
    y = np.array([0, 0, 1, 1, 1])
    t, f1 = f1_best_threshold(s, y)
    assert f1 == 1.0 and 0.2 < t < 0.3
    t, _ = f1_best_threshold(np.array([0.5, 0.5, 0.5]), np.array([0, 1, 1]))
    assert t < 0.5  # every image flagged: the threshold sits just below the lowest score


# ------------------------------------------------------------------ persistence
def test_save_load_gives_identical_scores(fitted, digits, tmp_path):
    path = fitted.save(tmp_path / "model")
    files = sorted(p.name for p in path.iterdir())
    assert files == sorted(["config.json", "generator.safetensors", "discriminator.safetensors",
                            "history.jsonl", TRAIN_SCORES_FILE])
    meta = json.loads((path / "config.json").read_text())
    assert meta["threshold"] == fitted.threshold_ and meta["model"]["in_channels"] == 1
    assert meta["preprocessing"]["resize_to"] == 32 and meta["config"]["gamma"] == 0.0
    loaded = AGAD.load(path)
    assert loaded.get_params() == fitted.get_params()
    X = digits["test"]
    np.testing.assert_array_equal(loaded.decision_function(X), fitted.decision_function(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(loaded.decision_scores_, fitted.decision_scores_)
    assert loaded.threshold_ == fitted.threshold_ and loaded.history_ == fitted.history_
    with pytest.raises(AgadError, match="already exists"):
        fitted.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging leftovers
    loaded.save(tmp_path / "again")  # a loaded model saves the same directory again
    np.testing.assert_array_equal(AGAD.load(tmp_path / "again").decision_function(X), fitted.decision_function(X))


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(AgadError, match="does not exist"):
        AGAD.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AgadError, match="not a run directory"):
        AGAD.load(tmp_path / "empty")


# ------------------------------------------------------------------ image inputs
@pytest.fixture(scope="module")
def image_files(digits, tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    paths = []
    for i, img in enumerate(digits["train"][:16, 0]):
        p = root / f"digit{i:02d}.png"
        Image.fromarray(img).resize((28, 28)).save(p)
        paths.append(p)
    return paths


def test_fit_on_a_list_of_paths_and_pil_images(image_files):
    det = AGAD(**{**FAST, "batch_size": 16}).fit([str(p) for p in image_files])
    assert det.n_channels_in_ == 1 and det.image_size_ == 32  # 28x28 -> 32, as the paper does for MNIST
    pil = [Image.open(p) for p in image_files[:4]]
    s_paths = det.decision_function(image_files[:4])
    np.testing.assert_array_equal(det.decision_function(pil), s_paths)
    # an RGB copy is converted to the model's grayscale
    rgb = [im.convert("RGB") for im in pil]
    np.testing.assert_array_equal(det.decision_function(rgb), s_paths)
    # a folder is read recursively, sorted
    np.testing.assert_array_equal(det.decision_function(str(image_files[0].parent))[:4], s_paths)


def test_majority_mode_and_size_of_image_lists():
    from agad.predict import read_images

    imgs = [Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("RGB", (10, 10)), Image.new("L", (64, 64))]
    x, c, s = read_images(imgs)
    assert (c, s) == (3, 40) and x.shape == (3, 3, 40, 40)
    x, c, s = read_images(imgs[1:] + [Image.new("L", (5, 5))])
    assert (c, s) == (1, 16)  # more grayscale than colour; sizes below 16 grow to 16


def test_unreadable_image_names_the_path(tmp_path, image_files):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=f"cannot read image {bad}"):
        AGAD(**FAST).fit([image_files[0], bad])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AGAD(**FAST).fit([tmp_path / "nope.png"])


def test_labelled_anomalies_keep_the_epoch_that_scores_heldout_unlabelled_images_lowest(digits):
    """The default with labelled anomalies (select_epoch "auto" -> "val-ratio"): 10% of the unlabelled images are
    held out, and the weights kept are those of the epoch that scores them lowest relative to the labelled
    anomalies' reconstruction distance."""
    from agad.data import validation_split

    X = np.concatenate([digits["train"][:40], digits["anomalies"]])
    y = np.r_[np.zeros(40, int), np.ones(8, int)]
    det = AGAD(**{**FAST, "epochs": 3, "batch_size": 64}).fit(X, y)
    assert (det.config_.select_epoch, det.config_.val_fraction) == ("val-ratio", 0.1)
    ratio = [h["val/recon"] / h["G/anomaly/dist"] for h in det.history_]
    kept = int(np.argmin(ratio))
    assert len(ratio) == 3 and det.kept_epoch_ == kept + 1
    _, held = validation_split(digits["train"][:40], 0.1, seed=0)
    assert det.decision_function(held).shape == (4,)
    assert float(det._score(held).mean()) == pytest.approx(det.history_[kept]["val/recon"], rel=1e-4)
    assert det.decision_scores_.shape == (40,)  # every unlabelled image is scored, held out or not
    # "last" (or no labelled anomalies): no hold-out, the last epoch
    last = AGAD(**{**FAST, "epochs": 2, "batch_size": 64, "select_epoch": "last"}).fit(X, y)
    assert last.kept_epoch_ == 2 and "val/recon" not in last.history_[0]
    with pytest.raises(AgadError, match="val_fraction"):
        AGAD(**FAST, select_epoch="val-recon", val_fraction=0.0).fit(digits["train"][:8])


def test_val_recon_keeps_the_epoch_with_the_lowest_heldout_score(digits):
    """select_epoch "val-recon" (the default of sessions 3-4): the held-out normal score alone decides."""
    X = np.concatenate([digits["train"][:40], digits["anomalies"]])
    y = np.r_[np.zeros(40, int), np.ones(8, int)]
    det = AGAD(**{**FAST, "epochs": 3, "batch_size": 64, "select_epoch": "val-recon"}).fit(X, y)
    recon = [h["val/recon"] for h in det.history_]
    assert len(recon) == 3 and det.kept_epoch_ == int(np.argmin(recon)) + 1
    assert (det.config_.select_epoch, det.config_.val_fraction) == ("val-recon", 0.1)
    with pytest.raises(AgadError, match="needs labelled anomalies"):  # nothing to divide by
        AGAD(**FAST, select_epoch="val-ratio").fit(digits["train"][:8])
