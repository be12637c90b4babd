"""`agad predict`, `agad data fetch` and `agad train --config FILE.toml`: results, and one-line errors (exit 2)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agad import AGAD
from agad.cli import main
from cli_helpers import assert_one_line_error, run_cli

fetch_mod = importlib.import_module("agad.data.fetch")


def idx_bytes(arr: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return gzip.compress(header + arr.astype(np.uint8).tobytes())


def make_idx_dir(root: Path, n_train: int = 60, n_test: int = 20) -> Path:
    """A tiny MNIST-format dataset (28x28, 10 classes)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    (root / "train-images-idx3-ubyte.gz").write_bytes(idx_bytes(rng.integers(0, 255, (n_train, 28, 28))))
    (root / "train-labels-idx1-ubyte.gz").write_bytes(idx_bytes(np.arange(n_train) % 10))
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(idx_bytes(rng.integers(0, 255, (n_test, 28, 28))))
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(idx_bytes(np.arange(n_test) % 10))
    return root


# ------------------------------------------------------------------ train --config FILE.toml
@pytest.fixture(scope="module")
def toml_run(tmp_path_factory):
    """`agad train --config` with a TOML file, one value overridden by a flag: the run the predict tests use.

    The data is a tiny MNIST where `--data mnist` looks for it ($AGAD_DATA_DIR/mnist)."""
    root = tmp_path_factory.mktemp("toml")
    make_idx_dir(root / "data-home" / "mnist")
    cfg = root / "train.toml"
    cfg.write_text(
        'data = "mnist"\nnormal_class = 1\nepochs = 3\nbatch_size = 4\nw_con = 40.0\nseed = 3\n'
        'device = "cpu"\nprecision = "fp32"\n'
    )
    out = root / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGAD_DATA_DIR", str(root / "data-home"))
        code = main(["train", "--config", str(cfg), "--epochs", "1", "--no-progress", "--out", str(out)])
    assert code == 0
    return out


def test_toml_sets_values_and_flags_override_them(toml_run):
    saved = json.loads((toml_run / "config.json").read_text())["config"]
    assert saved["epochs"] == 1  # flag beats the file
    assert saved["w_con"] == 40.0 and saved["batch_size"] == 4 and saved["seed"] == 3 and saved["normal_class"] == 1
    assert saved["w_adv"] == 1.0  # neither: the default
    assert len((toml_run / "history.jsonl").read_text().splitlines()) == 1


def test_toml_train_table_is_read(tmp_path, capsys):
    cfg = tmp_path / "t.toml"
    cfg.write_text("[train]\ngamma = 1.5\n")  # read from the [train] table, then validated
    code, _, err = run_cli(["train", "--config", cfg, "--no-progress", "--out", tmp_path / "run"], capsys)
    assert_one_line_error(code, err, "gamma", "1.5")
    assert not (tmp_path / "run").exists()


def test_toml_with_keys_inside_and_outside_the_train_table_is_refused(tmp_path, capsys):
    cfg = tmp_path / "t.toml"
    cfg.write_text("epochs = 2\n[train]\nlr = 1e-3\n")
    code, _, err = run_cli(["train", "--config", cfg, "--no-progress", "--out", tmp_path / "run"], capsys)
    assert_one_line_error(code, err, "t.toml", "'epochs'", "[train]")
    assert not (tmp_path / "run").exists()


def test_a_run_config_json_is_a_config_file(toml_run):
    """`--config RUN/config.json` gives the run's own options back (flags still override them)."""
    from agad.cli import build_parser, config_from_args
    from agad.config import TrainConfig

    saved = TrainConfig.from_dict(json.loads((toml_run / "config.json").read_text())["config"])
    args = build_parser().parse_args(["train", "--config", str(toml_run / "config.json"), "--out", "x"])
    assert config_from_args(args) == saved
    args = build_parser().parse_args(["train", "--config", str(toml_run / "config.json"), "--seed", "4", "--out", "x"])
    assert config_from_args(args) == saved.replace(seed=4)


@pytest.mark.parametrize(
    "text, needles",
    [
        ("epoch = 3\n", ["unknown key 'epoch'", "t.toml"]),
        ("epochs = [\n", ["not valid toml"]),
        (None, ["does not exist"]),
        ("grad_clip = 1.0\n", ["'grad_clip'", "removed"]),
        ("epochs = \"two\"\n", ["'epochs'", "integer"]),
    ],
)
def test_bad_config_file_is_one_line_and_no_run(tmp_path, capsys, text, needles):
    cfg = tmp_path / "t.toml"
    if text is not None:
        cfg.write_text(text)
    code, _, err = run_cli(["train", "--config", cfg, "--no-progress", "--out", tmp_path / "run"], capsys)
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ predict
@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Grayscale and colour images of several sizes and formats, one in a sub-folder."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(root / "b_gray.png")
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(root / "a_colour.jpg")
    (root / "sub").mkdir()
    Image.fromarray(rng.integers(0, 65535, (20, 20), dtype=np.uint16)).save(root / "sub" / "c_16bit.png")
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "sub" / "d.bmp")
    (root / "notes.txt").write_text("not an image: ignored in folders")
    single = tmp_path_factory.mktemp("single") / "e.tiff"
    Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(single)
    return root, single


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predict_writes_csv_and_overlays(toml_run, images, tmp_path, capsys):
    folder, single = images
    out, overlays = tmp_path / "scores.csv", tmp_path / "overlays"
    code, stdout, err = run_cli(["predict", toml_run, folder, single, "--out", out, "--overlays", overlays,
                                 "--batch-size", "2"], capsys)
    assert code == 0, err
    assert str(out) in stdout
    rows = read_csv(out)
    assert list(rows[0]) == ["path", "score", "label"]
    expected = [folder / "a_colour.jpg", folder / "b_gray.png", folder / "sub" / "c_16bit.png",
                folder / "sub" / "d.bmp", single]
    assert [r["path"] for r in rows] == [str(p) for p in expected]  # folders recursive and sorted
    model = AGAD.load(toml_run)
    scores = model.decision_function(expected)
    np.testing.assert_allclose([float(r["score"]) for r in rows], scores, rtol=1e-5)
    assert [int(r["label"]) for r in rows] == [int(s > model.threshold_) for s in scores]
    pngs = sorted(overlays.glob("*.png"))
    assert [p.name for p in pngs] == ["0000_a_colour.png", "0001_b_gray.png", "0002_c_16bit.png", "0003_d.png",
                                      "0004_e.png"]
    for p in pngs:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 200
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary files left


@pytest.mark.parametrize("case", ["unreadable", "missing", "empty_folder", "bad_run", "exists", "batch"])
def test_predict_errors_are_one_line_and_write_nothing(toml_run, images, tmp_path, capsys, case):
    folder, _ = images
    out, overlays = tmp_path / "scores.csv", tmp_path / "overlays"
    paths, run, extra, needles = [folder], toml_run, [], []
    if case == "unreadable":
        bad = tmp_path / "in" / "broken.png"
        bad.parent.mkdir()
        bad.write_bytes(b"\x89PNG not really")
        paths, needles = [folder, bad.parent], ["cannot read image", str(bad)]
    elif case == "missing":
        paths, needles = [tmp_path / "nope.png"], ["nope.png", "does not exist"]
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        paths, needles = [tmp_path / "empty"], ["holds no images"]
    elif case == "bad_run":
        run, needles = tmp_path / "no-run", ["run directory", "does not exist"]
    elif case == "exists":
        out.write_text("keep me")
        needles = ["already exists", "--force"]
    elif case == "batch":
        extra, needles = ["--batch-size", "0"], ["positive integer"]
    code, _, err = run_cli(["predict", run, *paths, "--out", out, "--overlays", overlays, *extra], capsys)
    assert_one_line_error(code, err, *needles)
    if case == "exists":
        assert out.read_text() == "keep me"
    else:
        assert not out.exists()
    assert not overlays.exists()


def test_model_from_agad_train_run_loads(toml_run, images):
    model = AGAD.load(toml_run)
    assert model.n_channels_in_ == 1 and model.image_size_ == 32
    assert model.get_params()["w_con"] == 40.0 and model.get_params()["random_state"] == 3
    assert model.threshold_source_ == "contamination"
    assert model.predict(images[0]).shape == (4,)
    # every run stores the training scores: the threshold is their 90% quantile, over all 6 normal images
    assert model.decision_scores_.shape == (6,) and np.isfinite(model.decision_scores_).all()
    assert model.threshold_ == pytest.approx(np.quantile(model.decision_scores_, 0.9))
    np.testing.assert_array_equal(model.labels_, model.decision_scores_ > model.threshold_)
    proba = model.predict_proba(images[0])
    assert proba.shape == (4, 2) and ((proba >= 0) & (proba <= 1)).all()
    meta = json.loads((toml_run / "config.json").read_text())
    assert meta["score_scaling"]["train_max"] == pytest.approx(model.decision_scores_.max())


def test_held_out_normal_images_count_in_the_threshold_of_agad_train(tmp_path):
    """With a validation hold-out the threshold is still the 90% quantile of every normal training image."""
    from agad.pipeline import load_run

    data = make_idx_dir(tmp_path / "idx", n_train=200)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--normal-class", "0", "--epochs", "1", "--batch-size", "8",
                 "--val-fraction", "0.25", "--device", "cpu", "--precision", "fp32", "--no-progress",
                 "--out", str(out)]) == 0
    meta = json.loads((out / "config.json").read_text())
    run = load_run(out)
    assert meta["data"]["n_normal_train"] == 15 and len(run.train_scores) == 20  # 5 of 20 held out, all scored
    assert meta["threshold"] == pytest.approx(float(np.quantile(run.train_scores, 0.9)))


# ------------------------------------------------------------------ data fetch
@pytest.fixture
def mirror(server, monkeypatch, tmp_path):
    """A local HTTP server holding a tiny MNIST, registered as the 'mnist' source (nothing leaves 127.0.0.1)."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AGAD_DATA_DIR", str(tmp_path / "data-home"))
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte.gz": idx_bytes(rng.integers(0, 255, (10, 28, 28))),
        "train-labels-idx1-ubyte.gz": idx_bytes(np.arange(10) % 10),
        "t10k-images-idx3-ubyte.gz": idx_bytes(rng.integers(0, 255, (4, 28, 28))),
        "t10k-labels-idx1-ubyte.gz": idx_bytes(np.arange(4)),
    }
    handler, url = server
    handler.files = dict(files)
    remotes = tuple(fetch_mod.Remote(n, len(b), hashlib.sha256(b).hexdigest()) for n, b in files.items())
    monkeypatch.setitem(fetch_mod.SOURCES, "mnist", (url, remotes))
    yield url, files


def test_data_fetch_says_where_the_files_are(mirror, tmp_path, capsys):
    _, files = mirror
    dest = tmp_path / "mnist-here"
    code, out, err = run_cli(["data", "fetch", "mnist", "--dest", dest, "--no-progress"], capsys)
    assert code == 0, err
    assert str(dest) in out and "--data" in out
    assert sorted(p.name for p in dest.iterdir()) == sorted(files)
    # default destination: where `agad train --data mnist` looks
    code, out, _ = run_cli(["data", "fetch", "mnist", "--no-progress"], capsys)
    assert code == 0 and str(tmp_path / "data-home" / "mnist") in out


def test_data_fetch_from_a_mirror_url(mirror, tmp_path, capsys, monkeypatch):
    url, files = mirror
    monkeypatch.setitem(fetch_mod.SOURCES, "mnist", ("http://127.0.0.1:9/unused/", fetch_mod.SOURCES["mnist"][1]))
    code, _, err = run_cli(["data", "fetch", "mnist", "--dest", tmp_path / "m", "--base-url", url,
                            "--no-progress"], capsys)
    assert code == 0, err
    assert len(list((tmp_path / "m").iterdir())) == len(files)


def test_data_fetch_errors_are_one_line(mirror, server, tmp_path, capsys, monkeypatch):
    code, _, err = run_cli(["data", "fetch", "imagenet"], capsys)
    assert_one_line_error(code, err, "invalid choice", "fashion-mnist")
    code, _, err = run_cli(["data"], capsys)
    assert_one_line_error(code, err, "required")
    # a file whose checksum does not match: exit 2, nothing kept under its final name
    _, files = mirror
    name = "train-labels-idx1-ubyte.gz"
    server[0].files[name] = files[name][:-1] + b"X"
    dest = tmp_path / "bad"
    code, _, err = run_cli(["data", "fetch", "mnist", "--dest", dest, "--no-progress"], capsys)
    assert_one_line_error(code, err, "sha-256", name)
    assert not (dest / name).exists() and not (dest / (name + ".part")).exists()
    # nobody listening
    code, _, err = run_cli(["data", "fetch", "mnist", "--dest", tmp_path / "x", "--base-url",
                            "http://127.0.0.1:9/", "--no-progress"], capsys)
    assert_one_line_error(code, err, "cannot reach")


# ------------------------------------------------------------------ evaluate / report on the run's own test split
def test_evaluate_of_the_runs_own_split_goes_to_the_run_and_to_out(toml_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AGAD_DATA_DIR", str(toml_run.parent / "data-home"))  # where the run's data is
    out = tmp_path / "copy"
    code, stdout, err = run_cli(["evaluate", toml_run, "--out", out], capsys)
    assert code == 0, err
    assert "AUROC" in stdout and "F1" in stdout and str(out) in stdout
    own = json.loads((toml_run / "metrics.json").read_text())
    assert json.loads((out / "metrics.json").read_text()) == own
    assert (out / "scores.csv").read_text() == (toml_run / "scores.csv").read_text()
    for key in ("f1_at_threshold", "precision_at_threshold", "recall_at_threshold", "best_f1_threshold"):
        assert key in own
    code, _, err = run_cli(["evaluate", toml_run, "--out", out], capsys)  # refused before anything is done
    assert_one_line_error(code, err, "already exists", "--force")


def test_report_of_the_runs_own_split(toml_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AGAD_DATA_DIR", str(toml_run.parent / "data-home"))  # where the run's data is
    out = tmp_path / "r.html"
    code, stdout, err = run_cli(["report", toml_run, "--out", out, "--gallery", "2"], capsys)
    assert code == 0, err
    assert str(out) in stdout and "own test split" in stdout
    text = out.read_text()
    assert '<section id="training">' in text and text.count("data:image/png;base64,") >= 4


def test_predict_progress_bar_stays_off_the_captured_output(toml_run, images, tmp_path, capsys):
    """The bar shows on a terminal only: captured stderr has no bar, with or without --no-progress."""
    folder, _ = images
    for extra in ([], ["--no-progress"]):
        out = tmp_path / f"s{len(extra)}.csv"
        code, _, err = run_cli(["predict", toml_run, folder, "--out", out, *extra], capsys)
        assert code == 0 and "scoring" not in err and "img/s" not in err, err
        assert out.is_file()
