"""Evaluation on labelled folders, pixel anomaly maps and pixel metrics (pixel AUROC, AUPRO)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agad import AGAD
from agad.data import load_dataset
from agad.errors import AgadError
from agad.evaluation import (aupro, evaluate_run, load_labelled, pixel_auroc, pro_curve, residual_map,
                             resize_maps)
from cli_helpers import assert_one_line_error, run_cli, save_png


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("mnist-sample")
    return ds.x_train[ds.y_train == 0][:, 0, 2:30, 2:30], ds.x_test[ds.y_test == 1][:, 0, 2:30, 2:30]  # 28x28


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, digits):
    zeros, _ = digits
    det = AGAD(epochs=1, batch_size=32, device="cpu", precision="fp32").fit(zeros[:64])
    return det.save(tmp_path_factory.mktemp("eval") / "model")


@pytest.fixture(scope="module")
def mvtec(tmp_path_factory, digits):
    """An MVTec AD category of 28x28 digits: defects are white squares, their masks the squares."""
    zeros, _ = digits
    cat = tmp_path_factory.mktemp("mvtec") / "toy"
    for i in range(4):
        save_png(zeros[100 + i], cat / "train" / "good" / f"{i:03d}.png")
        save_png(zeros[110 + i], cat / "test" / "good" / f"{i:03d}.png")
        img, mask = zeros[120 + i].copy(), np.zeros((28, 28), np.uint8)
        img[4 + 3 * i : 12 + 3 * i, 6:14] = 255
        mask[4 + 3 * i : 12 + 3 * i, 6:14] = 255
        save_png(img, cat / "test" / "scratch" / f"{i:03d}.png")
        save_png(mask, cat / "ground_truth" / "scratch" / f"{i:03d}_mask.png")
    return cat


@pytest.fixture(scope="module")
def classes(tmp_path_factory, digits):
    """normal/ + abnormal/ class folders (no split): 5 zeros, 3 ones."""
    zeros, ones = digits
    root = tmp_path_factory.mktemp("classes")
    for i in range(5):
        save_png(zeros[200 + i], root / "normal" / f"n{i}.png")
    for i in range(3):
        save_png(ones[i], root / "abnormal" / f"a{i}.png")
    return root


# ------------------------------------------------------------------ AUPRO and pixel AUROC, known answers
def test_perfect_maps_give_one():
    masks = np.zeros((2, 6, 6), np.uint8)
    masks[0, 1:3, 1:3] = 1
    masks[1, 4:, 4:] = 1
    maps = masks + 0.1 * np.arange(36).reshape(6, 6) / 36  # every anomalous pixel above every normal one
    assert pixel_auroc(masks, maps) == 1.0
    assert aupro(masks, maps) == pytest.approx(1.0)


def test_constant_map_is_the_diagonal():
    masks = np.zeros((1, 4, 4), np.uint8)
    masks[0, 0, 0] = 1
    # one threshold: the curve goes from (0, 0) straight to (1, 1); area to 0.3 is 0.045, divided by 0.3
    assert aupro(masks, np.zeros((1, 4, 4))) == pytest.approx(0.15)
    assert pixel_auroc(masks, np.zeros((1, 4, 4))) == pytest.approx(0.5)


def test_aupro_averages_regions_not_pixels():
    """Region A (1 pixel) is found at once, region B (3 pixels) never before every normal pixel is flagged:
    PRO is 0.5 over the whole FPR range, so AUPRO is 0.5, while pixel AUROC counts pixels: 1 of 4 found, 0.25."""
    masks = np.zeros((1, 3, 4), np.uint8)
    maps = np.full((1, 3, 4), 0.5)
    masks[0, 0, 0], maps[0, 0, 0] = 1, 1.0
    masks[0, 2, 1:], maps[0, 2, 1:] = 1, 0.0
    fprs, pros = pro_curve(masks, maps)
    np.testing.assert_allclose(fprs, [0, 0, 1, 1])
    np.testing.assert_allclose(pros, [0, 0.5, 0.5, 1])
    assert aupro(masks, maps) == pytest.approx(0.5)
    assert pixel_auroc(masks, maps) == pytest.approx(0.25)
    assert aupro(masks, maps, fpr_limit=1.0) == pytest.approx(0.5)


def test_pro_curve_matches_a_brute_force_count():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    masks = np.zeros((3, 8, 8), np.uint8)
    masks[0, 1:3, 1:4] = 1
    masks[0, 5:7, 5:7] = 1  # two regions in one image
    masks[1, 0:4, 6:8] = 1
    masks[2, 7, 7] = 1  # a region touching the corner of the image: never joined with image 1's
    maps = np.round(rng.random((3, 8, 8)) + 0.6 * masks, 1)  # rounded: ties between pixels
    fprs, pros = pro_curve(masks, maps)
    regions = []
    for m, s in zip(masks, maps):
        lab, k = ndimage.label(m, structure=np.ones((3, 3)))
        regions += [s[lab == r] for r in range(1, k + 1)]
    assert len(regions) == 4
    normal = maps[masks == 0]
    thresholds = np.unique(maps)[::-1]  # one point per distinct value, flagging every pixel >= it
    expected_fpr = [0.0] + [(normal >= t).mean() for t in thresholds]
    expected_pro = [0.0] + [np.mean([(r >= t).mean() for r in regions]) for t in thresholds]
    np.testing.assert_allclose(fprs, expected_fpr)
    np.testing.assert_allclose(pros, expected_pro)


def test_masks_and_maps_must_match():
    with pytest.raises(AgadError, match="must both be"):
        pixel_auroc(np.zeros((1, 4, 4)), np.zeros((1, 5, 5)))
    assert np.isnan(aupro(np.zeros((1, 4, 4)), np.zeros((1, 4, 4))))  # no anomalous region: undefined


# ------------------------------------------------------------------ anomaly maps
def test_residual_map_is_the_channel_mean_of_the_absolute_difference():
    x = np.array([[[[1.0]], [[-1.0]], [[0.5]]]])  # (1, 3, 1, 1)
    assert residual_map(x, np.zeros_like(x))[0, 0, 0] == pytest.approx((1 + 1 + 0.5) / 3)
    assert resize_maps(np.ones((2, 4, 4), np.float32), (6, 3)).shape == (2, 6, 3)


def test_anomaly_map_is_at_input_resolution(model_dir, digits):
    zeros, ones = digits
    det = AGAD.load(model_dir)
    x = np.concatenate([zeros[:2], ones[:2]])  # (4, 28, 28): the model resizes to 32
    maps = det.anomaly_map(x)
    assert maps.shape == (4, 28, 28) and maps.dtype == np.float32
    # the same map at the model's size, from the reconstruction, then resized back
    x32 = det._images(x)
    recon = det.reconstruct(x).astype(np.float32) / 127.5 - 1
    direct = residual_map(x32.astype(np.float32) / 127.5 - 1, recon)
    np.testing.assert_allclose(maps, resize_maps(direct, (28, 28)), atol=0.02)
    smooth = det.anomaly_map(x, sigma=2.0)
    assert smooth.shape == maps.shape and smooth.std() < maps.std()
    np.testing.assert_allclose(smooth.mean(), maps.mean(), rtol=0.05)
    with pytest.raises(AgadError, match="sigma"):
        det.anomaly_map(x, sigma=-1)


def test_anomaly_map_of_files_needs_one_size(model_dir, tmp_path, digits):
    zeros, _ = digits
    save_png(zeros[0], tmp_path / "a.png")
    save_png(np.pad(zeros[1], 2), tmp_path / "b.png")  # 32x32
    det = AGAD.load(model_dir)
    assert det.anomaly_map([tmp_path / "a.png"]).shape == (1, 28, 28)
    with pytest.raises(AgadError, match="2 sizes"):
        det.anomaly_map(tmp_path)


# ------------------------------------------------------------------ which images a folder gives
def test_layouts_give_their_test_split_or_every_image(mvtec, classes, tmp_path, digits):
    got = load_labelled(mvtec, channels=1, image_size=32)
    assert got.images == "test split" and got.y.tolist() == [0] * 4 + [1] * 4
    assert got.masks.shape == (8, 1, 32, 32)
    assert got.masks[:4].sum() == 0 and all(got.masks[i].sum() > 0 for i in range(4, 8))
    assert all("scratch" in n for n in got.names[4:])

    got = load_labelled(classes, channels=1, image_size=32)
    assert got.images == "every image" and len(got.y) == 8 and got.n_anomalous == 3 and got.masks is None

    zeros, ones = digits
    split = tmp_path / "split"
    for s, n in (("train", 3), ("test", 2)):
        for i in range(n):
            save_png(zeros[300 + 10 * len(s) + i], split / s / "NORMAL" / f"{i}.png")
            save_png(ones[20 + 10 * len(s) + i], split / s / "SICK" / f"{i}.png")
    got = load_labelled(split, channels=1, image_size=32)
    assert got.images == "test split" and len(got.y) == 4 and all("/test/" in n for n in got.names)


def test_a_folder_without_anomalies_cannot_be_evaluated(model_dir, tmp_path, capsys, digits):
    zeros, _ = digits
    for i in range(3):
        save_png(zeros[i], tmp_path / "only" / f"{i}.png")
    code, _, err = run_cli(["evaluate", model_dir, "--data", tmp_path / "only"], capsys)
    assert_one_line_error(code, err, "no anomalous images", "--abnormal-dir")


# ------------------------------------------------------------------ agad evaluate --data
def test_evaluate_on_mvtec_gives_pixel_metrics_of_the_models_maps(model_dir, mvtec):
    ev = evaluate_run(model_dir, mvtec)
    m = ev.metrics
    assert m["n"] == 8 and m["n_anomalous"] == 4 and m["images"] == "test split"
    det = AGAD.load(model_dir)
    np.testing.assert_allclose(ev.scores, det.decision_function(ev.images.x), rtol=1e-6)
    maps = det.anomaly_map(ev.images.x)  # at 32x32: the images were read at the model's size
    assert m["pixel_auroc"] == pytest.approx(pixel_auroc(ev.images.masks, maps), abs=1e-6)
    assert m["aupro"] == pytest.approx(aupro(ev.images.masks, maps), abs=1e-6)
    assert 0 <= m["aupro"] <= 1 and m["aupro_fpr_limit"] == 0.3
    assert m["threshold"] == det.threshold_
    for key in ("auroc", "aupr", "f1_at_threshold", "precision_at_threshold", "recall_at_threshold",
                "best_f1_threshold"):
        assert key in m


def test_evaluate_cli_prints_only_unless_out(model_dir, classes, tmp_path, capsys):
    before = sorted(p.name for p in model_dir.iterdir())
    code, out, err = run_cli(["evaluate", model_dir, "--data", classes], capsys)
    assert code == 0, err
    assert "AUROC" in out and "best-F1 threshold" in out and "every image" in out and "nothing written" in out
    assert sorted(p.name for p in model_dir.iterdir()) == before  # the run's own files are untouched

    res = tmp_path / "res"
    code, out, err = run_cli(["evaluate", model_dir, "--data", classes, "--out", res, "--json"], capsys)
    assert code == 0, err
    m = json.loads(out)
    assert m["n"] == 8 and 0 <= m["auroc"] <= 1 and "pixel_auroc" not in m
    assert json.loads((res / "metrics.json").read_text())["auroc"] == m["auroc"]
    rows = (res / "scores.csv").read_text().splitlines()
    assert rows[0] == "path,score,label,prediction" and len(rows) == 9
    code, _, err = run_cli(["evaluate", model_dir, "--data", classes, "--out", res], capsys)
    assert_one_line_error(code, err, "already exists", "--force")
    assert run_cli(["evaluate", model_dir, "--data", classes, "--out", res, "--force"], capsys)[0] == 0


@pytest.mark.parametrize("case", ["missing_data", "dirs_without_data", "array_model_without_data", "missing_run",
                                  "sigma"])
def test_evaluate_errors_are_one_line(model_dir, classes, tmp_path, capsys, case):
    argv = ["evaluate", model_dir, "--data", classes, "--out", tmp_path / "res"]
    needles = []
    if case == "missing_data":
        argv[3], needles = tmp_path / "nope", ["does not exist"]
    elif case == "dirs_without_data":
        argv, needles = ["evaluate", model_dir, "--normal-dir", "x"], ["--data"]
    elif case == "array_model_without_data":
        argv, needles = ["evaluate", model_dir], ["fitted on arrays", "--data"]
    elif case == "missing_run":
        argv[1], needles = tmp_path / "no-run", ["does not exist"]
    elif case == "sigma":
        argv += ["--sigma", "-2"]
        needles = ["sigma"]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "res").exists()


def test_scores_that_are_not_finite_are_an_error(model_dir, classes, monkeypatch):
    import agad.evaluation as ev_mod

    monkeypatch.setattr(ev_mod, "score_images", lambda scorer, x, **kw: np.full(len(x), np.nan, np.float32))
    with pytest.raises(AgadError, match="not finite"):
        evaluate_run(model_dir, classes)


def test_overlays_draw_the_anomaly_map(model_dir, tmp_path, digits, monkeypatch):
    """`agad predict --overlays` draws residual_map, the same map as AGAD.anomaly_map."""
    import agad.evaluation as ev_mod
    from agad.predict import predict_images

    zeros, ones = digits
    files = []
    for i, img in enumerate((np.pad(zeros[0], 2), np.pad(ones[0], 2))):  # 32x32: the model's size
        files.append(tmp_path / "in" / f"{i}.png")
        save_png(img, files[-1])
    drawn = []
    real = ev_mod.residual_map
    monkeypatch.setattr(ev_mod, "residual_map", lambda x, r: drawn.append(real(x, r)) or drawn[-1])
    predict_images(model_dir, files, out=tmp_path / "s.csv", overlays=tmp_path / "ov")
    assert len(drawn) == 2 and len(list((tmp_path / "ov").glob("*.png"))) == 2
    monkeypatch.setattr(ev_mod, "residual_map", real)
    expected = AGAD.load(model_dir).anomaly_map(files)
    np.testing.assert_allclose(np.concatenate(drawn), expected, atol=1e-6)


def test_explicit_folders_with_masks_score_every_image(model_dir, tmp_path, digits):
    """anomalib's folder format without normal test images: every image is scored, masks where given."""
    zeros, _ = digits
    for i in range(4):
        save_png(zeros[40 + i], tmp_path / "good" / f"g{i}.png")
        img, mask = zeros[50 + i].copy(), np.zeros((28, 28), np.uint8)
        img[5:13, 5:13], mask[5:13, 5:13] = 255, 255
        save_png(img, tmp_path / "bad" / f"b{i}.png")
        save_png(mask, tmp_path / "gt" / f"b{i}_mask.png")
    ev = evaluate_run(model_dir, tmp_path, normal_dirs=["good"], abnormal_dirs=["bad"], mask_dirs=["gt"])
    assert ev.images.images == "every image" and ev.metrics["n"] == 8 and ev.metrics["n_anomalous"] == 4
    assert ev.images.masks[ev.images.y == 0].sum() == 0
    assert (ev.images.masks[ev.images.y == 1].reshape(4, -1).sum(axis=1) > 0).all()
    assert 0 <= ev.metrics["pixel_auroc"] <= 1 and 0 <= ev.metrics["aupro"] <= 1
