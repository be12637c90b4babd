"""The AGAD estimator: scikit-learn contract, thresholds, inputs, save/load.

Every fit is one epoch on a few dozen 32x32 digits (CPU, fp32): these tests
check the contract, not the quality.
"""

from __future__ import annotations

import inspect
import json

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import clone, is_outlier_detector
from sklearn.exceptions import NotFittedError

from agad import AGAD
from agad.config import DEFAULTS, OPTIONS
from agad.data import load_dataset
from agad.detector import TRAIN_SCORES_FILE
from agad.errors import AgadError
from agad.scoring import f1_best_threshold

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
    assert params["lr"] == 2e-4 and params["advprop"] is True  # the real defaults, not None
    twin = clone(det)
    assert twin is not det and twin.get_params() == params
    assert twin.set_params(epochs=5).epochs == 5
    assert not [k for k in vars(det) if k.endswith("_")]  # no fitted state before fit


def test_explicit_defaults_agree_with_train_config():
    params = AGAD().get_params()
    for name in ("backbone", "epochs", "batch_size", "lr", "w_adv", "w_con", "w_adcon", "w_lat", "ca",
                 "device", "precision"):
        assert params[name] == DEFAULTS[name], name
    sig = inspect.signature(AGAD)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in sig.parameters.values())
    assert sig.parameters["w_con"].default == 50.0 and sig.parameters["contamination"].default == 0.1
    assert "w_con = 50.0" in AGAD.__doc__ and OPTIONS["w_con"].help in AGAD.__doc__  # help(AGAD) shows them


@pytest.mark.parametrize("name", ["lr_schedule", "grad_clip", "data", "method", "seed", "lr_rate"])
def test_unknown_parameters_are_a_type_error(name):
    # removed options, and options that fit's input sets (data, method) or that have their own name (seed)
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{name}'"):
        AGAD(**{name: 1})


def test_it_is_a_scikit_learn_outlier_detector():
    assert is_outlier_detector(AGAD())


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"contamination": 1.5}, "The 'contamination' parameter must be a float in (0, 0.5]. Got 1.5 instead."),
        ({"contamination": 0}, "'contamination'"),
        ({"backbone": "resnet"}, "The 'backbone' parameter must be one of naive, unet, unetpp. Got 'resnet'"),
        ({"epochs": 0}, "The 'epochs' parameter"),
        ({"image_size": 8}, "The 'image_size' parameter must be in [16, 1024]. Got 8 instead."),
        ({"image_size": 32.5}, "The 'image_size' parameter must be an integer. Got 32.5 instead."),
        ({"random_state": -1}, "The 'random_state' parameter"),
        ({"ca": "yes"}, "The 'ca' parameter must be true or false. Got 'yes' instead."),
        ({"device": "tpu"}, "The 'device' parameter must be one of auto, cpu, cuda"),
        ({"select_epoch": "best"}, "The 'select_epoch' parameter must be one of auto, last, val-recon, val-ratio. "
                                   "Got 'best' instead."),
        ({"ema_decay": 1.0}, "The 'ema_decay' parameter must be in [0, 1). Got 1.0 instead."),
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


def test_calibrate_sets_the_threshold_without_refitting(fitted, digits, tmp_path):
    from agad.scoring import fpr_threshold

    det = copy.deepcopy(fitted)  # the shared fixture keeps its own threshold
    weights = [p.clone() for p in det.generator_.parameters()]
    s_val = det.decision_function(digits["val_x"])
    assert det.calibrate(digits["val_x"], digits["val_y"]) is det
    assert det.threshold_source_ == "calibration"
    assert det.threshold_ == f1_best_threshold(s_val, digits["val_y"])[0]
    np.testing.assert_array_equal(det.labels_, det.decision_scores_ > det.threshold_)
    assert all(torch.equal(a, b) for a, b in zip(weights, det.generator_.parameters()))  # nothing retrained
    # a target false-positive rate on normal images only: y_val == 0, or all of X_val when y_val is None
    normal = digits["val_x"][digits["val_y"] == 0]
    det.calibrate(digits["val_x"], digits["val_y"], target_fpr=0.25)
    s_normal = det.decision_function(normal)
    assert det.threshold_ == fpr_threshold(s_normal, 0.25) and (s_normal > det.threshold_).mean() <= 0.25
    assert det.calibrate(normal, target_fpr=0.25).threshold_ == fpr_threshold(s_normal, 0.25)
    # saved with the model and read back as such
    loaded = AGAD.load(det.save(tmp_path / "calibrated"))
    assert loaded.threshold_ == det.threshold_ and loaded.threshold_source_ == "calibration"
    np.testing.assert_array_equal(loaded.predict(digits["test"]), det.predict(digits["test"]))


def test_calibrate_errors_are_named(fitted, digits):
    det = copy.deepcopy(fitted)
    with pytest.raises(NotFittedError):
        AGAD().calibrate(digits["val_x"], digits["val_y"])
    with pytest.raises(AgadError, match="both normal"):
        det.calibrate(digits["val_x"][:4], [0, 0, 0, 0])
    with pytest.raises(AgadError, match="X_val and y_val must be given together"):
        det.calibrate(digits["val_x"])
    with pytest.raises(AgadError, match="false-positive rate must be in"):
        det.calibrate(digits["val_x"], target_fpr=1.5)
    with pytest.raises(AgadError, match="needs normal images"):
        det.calibrate(digits["val_x"][:2], [1, 1], target_fpr=0.1)
    assert det.threshold_ == fitted.threshold_ and det.threshold_source_ == "contamination"  # unchanged


def test_fit_predict_labels_the_training_images(fitted, digits):
    twin = clone(fitted)
    labels = twin.fit_predict(digits["train"])
    np.testing.assert_array_equal(labels, fitted.labels_)  # the same seed: the same model
    np.testing.assert_array_equal(labels, twin.labels_)
    assert labels.dtype == np.int64 and set(np.unique(labels)) <= {0, 1}  # PyOD's 0/1, not -1/1
    assert 0 < labels.sum() < len(labels)  # contamination 0.1: some training images are flagged


def test_f1_best_threshold_uses_strict_rule():
    s = np.array([0.1, 0.2, 0.3, 0.9, 1.0])
    y = np.array([0, 0, 1, 1, 1])
    t, f1 = f1_best_threshold(s, y)
    assert f1 == 1.0 and 0.2 < t < 0.3
    t, _ = f1_best_threshold(np.array([0.5, 0.5, 0.5]), np.array([0, 1, 1]))
    assert t < 0.5  # every image flagged: the threshold sits just below the lowest score


def test_scores_become_labels_in_one_place():
    from agad.scoring import (DEFAULT_CONTAMINATION, auroc_of, check_finite, contamination_threshold, labels_at,
                              metrics_at, to_unit_range)

    assert DEFAULT_CONTAMINATION == 0.1
    x = torch.tensor([0, 255], dtype=torch.uint8)
    assert to_unit_range(x).tolist() == [-1.0, 1.0] and to_unit_range(torch.tensor([0.25])).tolist() == [0.25]
    assert contamination_threshold(np.arange(11.0), 0.1) == pytest.approx(9.0)
    for bad in (0, 0.6, True, "0.1"):
        with pytest.raises(AgadError, match="'contamination' parameter"):
            contamination_threshold(np.arange(11.0), bad)
    assert labels_at(np.array([0.5, 1.0, 1.5]), 1.0).tolist() == [0, 0, 1]  # strictly above
    with pytest.raises(AgadError, match="1 of 3 scores are not finite"):
        check_finite(np.array([0.1, np.nan, 0.3]), "scores")
    assert np.isnan(auroc_of(np.zeros(3), np.arange(3.0)))  # one class: no AUROC, not an error
    # 2 normal (0.1, 0.6) and 2 anomalous (0.4, 0.9) images, threshold 0.5: TP 1, FP 1, FN 1, TN 1
    m = metrics_at(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9]), 0.5)
    assert (m["precision_at_threshold"], m["recall_at_threshold"], m["f1_at_threshold"]) == (0.5, 0.5, 0.5)
    assert m["accuracy_at_threshold"] == 0.5 and m["auroc"] == 0.75 and (m["n"], m["n_anomalous"]) == (4, 2)
    assert m["best_f1"] == pytest.approx(0.8) and 0.1 < m["best_f1_threshold"] < 0.4  # 3 flagged: P 2/3, R 1


# ------------------------------------------------------------------ persistence
def test_save_load_gives_identical_scores(fitted, digits, tmp_path):
    path = fitted.save(tmp_path / "model")
    files = sorted(p.name for p in path.iterdir())
    assert files == sorted(["config.json", "generator.safetensors", "discriminator.safetensors",
                            "history.jsonl", TRAIN_SCORES_FILE, "README.md"])
    assert "threshold" in (path / "README.md").read_text().lower()  # the model card
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
    with pytest.raises(AgadError, match="does not exist"):
        AGAD(**FAST).fit([tmp_path / "nope.png"])


def test_labelled_anomalies_keep_the_epoch_that_scores_heldout_unlabelled_images_lowest(digits):
    """The default with labelled anomalies (select_epoch "auto" -> "val-ratio"): 10% of the unlabelled images are
    held out, and the weights kept are those of the epoch that scores them lowest relative to the labelled
    anomalies' reconstruction distance."""
    from agad.data import validation_split

    X = np.concatenate([digits["train"][:40], digits["anomalies"]])
    y = np.r_[np.zeros(40, int), np.ones(8, int)]
    # the reconstruction score alone, so that the held-out images' mean score is what the epoch rule read
    det = AGAD(**{**FAST, "epochs": 3, "batch_size": 64, "label_head": False}).fit(X, y)
    assert (det.config_.select_epoch, det.config_.val_fraction) == ("val-ratio", 0.1)
    ratio = [h["val/recon"] / h["G/anomaly/dist"] for h in det.history_]
    kept = int(np.argmin(ratio))
    assert len(ratio) == 3 and det.kept_epoch_ == kept + 1
    _, held = validation_split(digits["train"][:40], 0.1, seed=0)
    assert det.decision_function(held).shape == (4,)
    assert float(det._score(held).mean()) == pytest.approx(det.history_[kept]["val/recon"], rel=1e-4)
    assert det.decision_scores_.shape == (40,)  # every unlabelled image is scored, held out or not
    # "last": the last epoch; the default hold-out is still scored each epoch (it chooses nothing)
    last = AGAD(**{**FAST, "epochs": 2, "batch_size": 64, "select_epoch": "last"}).fit(X, y)
    assert last.kept_epoch_ == 2 and "val/recon" in last.history_[0]
    assert last.config_.val_fraction == 0.1 and last.decision_scores_.shape == (40,)
    # no hold-out at all: val_fraction 0
    whole = AGAD(**{**FAST, "epochs": 1, "batch_size": 64, "val_fraction": 0.0}).fit(X, y)
    assert whole.config_.select_epoch == "last" and "val/recon" not in whole.history_[0]
    with pytest.raises(AgadError, match="val_fraction"):
        AGAD(**FAST, select_epoch="val-recon", val_fraction=0.0).fit(digits["train"][:8])


def test_val_recon_keeps_the_epoch_with_the_lowest_heldout_score(digits):
    """select_epoch "val-recon": the held-out normal score alone decides."""
    X = np.concatenate([digits["train"][:40], digits["anomalies"]])
    y = np.r_[np.zeros(40, int), np.ones(8, int)]
    det = AGAD(**{**FAST, "epochs": 3, "batch_size": 64, "select_epoch": "val-recon"}).fit(X, y)
    recon = [h["val/recon"] for h in det.history_]
    assert len(recon) == 3 and det.kept_epoch_ == int(np.argmin(recon)) + 1
    assert (det.config_.select_epoch, det.config_.val_fraction) == ("val-recon", 0.1)
    with pytest.raises(AgadError, match="needs labelled anomalies"):  # nothing to divide by
        AGAD(**FAST, select_epoch="val-ratio").fit(digits["train"][:8])
