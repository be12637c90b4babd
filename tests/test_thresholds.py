"""Thresholds the user controls: `agad predict --threshold / --contamination`, `agad calibrate`, sklearn tags."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agad import AGAD
from agad.data import load_dataset
from agad.errors import AgadError
from agad.scoring import f1_best_threshold, fpr_threshold
from cli_helpers import assert_one_line_error, run_cli, save_png


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("mnist-sample")
    return ds.x_train[ds.y_train == 0][:, 0, 2:30, 2:30], ds.x_test[ds.y_test == 7][:, 0, 2:30, 2:30]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits):
    zeros, _ = digits
    det = AGAD(epochs=1, batch_size=32, device="cpu", precision="fp32").fit(zeros[:64])
    return det.save(tmp_path_factory.mktemp("thr") / "model")


@pytest.fixture
def run(trained, tmp_path):
    """A fresh copy of the trained run for each test that changes it."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, digits):
    zeros, sevens = digits
    root = tmp_path_factory.mktemp("labelled")
    for i in range(6):
        save_png(zeros[100 + i], root / "normal" / f"n{i}.png")
    for i in range(4):
        save_png(sevens[i], root / "abnormal" / f"a{i}.png")
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ predict
def test_predict_threshold_overrides_for_this_scoring_only(run, labelled, tmp_path, capsys):
    before = sha(run / "config.json")
    out = tmp_path / "s.csv"
    code, stdout, err = run_cli(["predict", run, labelled, "--out", out, "--threshold", "-1", "--no-progress"],
                                capsys)
    assert code == 0, err
    rows = read_csv(out)
    assert len(rows) == 10 and all(r["label"] == "1" for r in rows)  # every score is above -1
    assert "given with --threshold" in stdout
    assert sha(run / "config.json") == before

    code, _, err = run_cli(["predict", run, labelled, "--out", out, "--force", "--threshold", "1e9"], capsys)
    assert code == 0, err
    assert all(r["label"] == "0" for r in read_csv(out))


def test_predict_contamination_is_a_quantile_of_the_training_scores(run, labelled, tmp_path, capsys):
    model = AGAD.load(run)
    expected = float(np.quantile(model.decision_scores_, 0.75))
    out = tmp_path / "s.csv"
    code, stdout, err = run_cli(["predict", run, labelled, "--out", out, "--contamination", "0.25"], capsys)
    assert code == 0, err
    rows = read_csv(out)
    scores = model.decision_function([r["path"] for r in rows])
    assert [int(r["label"]) for r in rows] == (scores > expected).astype(int).tolist()
    assert f"{expected:.4g}" in stdout and "quantile" in stdout
    assert model.threshold_ == AGAD.load(run).threshold_  # the stored threshold is unchanged


@pytest.mark.parametrize("extra, needles", [
    (["--contamination", "0.7"], ["contamination", "(0, 0.5]"]),
    (["--threshold", "nan"], ["threshold", "finite"]),
    (["--threshold", "1", "--contamination", "0.1"], ["not allowed with"]),
])
def test_predict_threshold_errors_are_one_line(run, labelled, tmp_path, capsys, extra, needles):
    out = tmp_path / "s.csv"
    code, _, err = run_cli(["predict", run, labelled, "--out", out, *extra], capsys)
    assert_one_line_error(code, err, *needles)
    assert not out.exists()


# ------------------------------------------------------------------ calibrate
def test_calibrate_stores_the_f1_best_threshold(run, labelled, capsys):
    weights = sha(run / "generator.safetensors")
    model = AGAD.load(run)
    x = model._images(sorted(labelled.rglob("*.png")))  # abnormal/ first: the names sort that way
    y = np.array([1] * 4 + [0] * 6)
    expected, _ = f1_best_threshold(model.decision_function(x), y)
    code, out, err = run_cli(["calibrate", run, "--data", labelled], capsys)
    assert code == 0, err
    assert "best F1" in out and "weights unchanged" in out
    meta = json.loads((run / "config.json").read_text())
    assert meta["threshold"] == pytest.approx(expected)
    assert meta["threshold_source"].startswith("calibration: best F1 on 10 images")
    loaded = AGAD.load(run)
    assert loaded.threshold_source_ == "calibration" and loaded.threshold_ == pytest.approx(expected)
    assert sha(run / "generator.safetensors") == weights


def test_calibrate_to_a_false_positive_rate_needs_normal_images_only(run, tmp_path, digits, capsys):
    zeros, _ = digits
    folder = tmp_path / "normals"
    for i in range(8):
        save_png(zeros[200 + i], folder / f"{i}.png")
    scores = AGAD.load(run).decision_function(folder)
    code, out, err = run_cli(["calibrate", run, "--data", folder, "--target-fpr", "0.25"], capsys)
    assert code == 0, err
    t = json.loads((run / "config.json").read_text())["threshold"]
    assert t == pytest.approx(fpr_threshold(scores, 0.25))
    assert (scores > t).sum() == 2  # 25% of 8
    assert "false-positive rate 0.25" in out


def test_calibrate_prefers_the_validation_split(run, tmp_path, digits):
    from agad.evaluation import calibrate_run

    zeros, sevens = digits
    root = tmp_path / "xray"
    for split, n in (("train", 3), ("test", 3), ("val", 2)):
        for i in range(n):
            save_png(zeros[300 + 10 * len(split) + i], root / split / "NORMAL" / f"{i}.png")
            save_png(sevens[30 + 10 * len(split) + i], root / split / "SICK" / f"{i}.png")
    c = calibrate_run(run, root)
    assert c.images.images == "validation split" and len(c.images.y) == 4
    assert all("/val/" in n for n in c.images.names)


def test_calibrate_rewrites_the_model_card(run, labelled):
    from agad.evaluation import calibrate_run
    from agad.report import model_card
    from agad.rundir import read_history, read_run_config

    (run / "README.md").write_text(model_card(read_run_config(run), read_history(run)))
    c = calibrate_run(run, labelled, target_fpr=0.0)
    assert f"{c.threshold:.4g}" in (run / "README.md").read_text()


@pytest.mark.parametrize("case", ["fpr_range", "f1_without_anomalies", "missing_data", "normal_class"])
def test_calibrate_errors_are_one_line_and_change_nothing(run, labelled, tmp_path, digits, capsys, case):
    argv = ["calibrate", run, "--data", labelled]
    target = run
    if case == "fpr_range":
        argv += ["--target-fpr", "1.5"]
        needles = ["--target-fpr", "[0, 1)"]
    elif case == "f1_without_anomalies":
        for i in range(3):
            save_png(digits[0][i], tmp_path / "only" / f"{i}.png")
        argv[3], needles = tmp_path / "only", ["no anomalous images"]
    elif case == "missing_data":
        argv[3], needles = tmp_path / "nope", ["does not exist"]
    else:
        argv += ["--normal-class", "CATS"]
        needles = ["no class folder 'CATS'", "--normal-class"]
    before = sha(target / "config.json")
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, *needles)
    assert sha(target / "config.json") == before


def test_save_threshold_refuses_another_model(trained, tmp_path, digits):
    zeros, _ = digits
    other = AGAD(epochs=1, batch_size=16, device="cpu", precision="fp32", random_state=1).fit(zeros[:16])
    other.save(tmp_path / "other")
    model = AGAD.load(tmp_path / "other")
    with pytest.raises(AgadError, match="another model"):
        model.save_threshold(trained)


# ------------------------------------------------------------------ scikit-learn
def test_sklearn_sees_an_outlier_detector_for_images():
    from sklearn.base import is_outlier_detector

    det = AGAD()
    assert is_outlier_detector(det)
    tags = det.__sklearn_tags__()
    assert tags.estimator_type == "outlier_detector"
    assert not tags.input_tags.two_d_array and tags.input_tags.three_d_array
