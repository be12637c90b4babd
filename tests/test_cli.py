"""The command-line contract: train / evaluate / demo and one-line errors with exit code 2."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agad.cli import main


def write_idx(path: Path, arr: np.ndarray, *, first_byte: int = 0, gz: bool = True) -> None:
    header = struct.pack(">BBBB", first_byte, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def make_idx_dir(root: Path, n_train: int = 60, n_test: int = 20, *, labels_train: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "train-images-idx3-ubyte.gz", rng.integers(0, 255, (n_train, 28, 28)))
    write_idx(root / "train-labels-idx1-ubyte.gz", np.arange(labels_train or n_train) % 10)
    write_idx(root / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (n_test, 28, 28)))
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.arange(n_test) % 10)
    return root


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("agad")
    assert "Traceback" not in err
    for n in needles:
        assert n.lower() in lines[0].lower(), (n, lines[0])


def test_train_and_evaluate_on_an_idx_directory(tmp_path, capsys):
    data = make_idx_dir(tmp_path / "idx")
    out = tmp_path / "run"
    code, stdout, _ = run_cli(["train", "--data", data, "--normal-class", "1", "--epochs", "1", "--batch-size", "4",
                               "--precision", "fp32", "--no-progress", "--out", out], capsys)
    assert code == 0, stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["normal_class"] == 1 and cfg["config"]["epochs"] == 1
    assert (out / "generator.safetensors").is_file() and (out / "history.jsonl").is_file()
    assert (out / "reconstructions.png").stat().st_size > 0
    assert not list(out.glob("*.pt")) and not list(out.glob("*.pkl"))  # no pickle anywhere
    code, stdout, _ = run_cli(["evaluate", out, "--json"], capsys)
    assert code == 0
    m = json.loads(stdout)
    assert 0.0 <= m["auroc"] <= 1.0 and 0.0 <= m["aupr"] <= 1.0
    assert (out / "metrics.json").is_file()
    scores = (out / "scores.csv").read_text().splitlines()
    assert scores[0] == "index,score,label" and len(scores) == 21


@pytest.mark.parametrize(
    "case, needles",
    [
        ("missing", ["does not exist"]),
        ("bad_magic", ["magic"]),
        ("truncated", ["truncated"]),
        ("count_mismatch", ["labels"]),
        ("unknown_name", ["unknown dataset", "fashion-mnist"]),
        ("class_range", ["normal_class"]),
        ("gamma", ["gamma", "[0, 1)"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_leaves_no_run_dir(tmp_path, capsys, case, needles):
    data = tmp_path / "idx"
    args = ["--normal-class", "0"]
    if case == "missing":
        data = tmp_path / "nope"
    elif case == "bad_magic":
        make_idx_dir(data)
        write_idx(data / "train-images-idx3-ubyte.gz", np.zeros((60, 28, 28)), first_byte=0x1F)
    elif case == "truncated":
        make_idx_dir(data)
        raw = gzip.decompress((data / "train-images-idx3-ubyte.gz").read_bytes())
        (data / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-500]))
    elif case == "count_mismatch":
        make_idx_dir(data, labels_train=50)
    elif case == "unknown_name":
        data = "imagenet-sample"
    elif case == "class_range":
        make_idx_dir(data)
        args = ["--normal-class", "12"]
    elif case == "gamma":
        make_idx_dir(data)
        args = ["--gamma", "1.5"]
    out = tmp_path / "run"
    code, _, err = run_cli(["train", "--data", data, *args, "--epochs", "1", "--no-progress", "--out", out], capsys)
    assert_one_line_error(code, err, *needles)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".run")] == []  # no staging leftovers


def test_evaluate_on_a_missing_run_dir(tmp_path, capsys):
    code, _, err = run_cli(["evaluate", tmp_path / "nothing"], capsys)
    assert_one_line_error(code, err, "does not exist")


def test_existing_output_needs_force(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    code, _, err = run_cli(["train", "--epochs", "1", "--out", out], capsys)
    assert_one_line_error(code, err, "already exists", "--force")


def test_usage_errors_are_one_line_from_the_real_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "agad", "train", "--epochs", "x", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_flags_reach_the_saved_config(tmp_path, capsys):
    data = make_idx_dir(tmp_path / "idx")
    out = tmp_path / "run"
    flags = ["--backbone", "naive", "--no-ca", "--advprop", "--freeze-bn-anomalies", "--anomaly-distance", "pseudo",
             "--w-adv", "2", "--w-con", "40", "--w-adcon", "10", "--w-lat", "3", "--delta", "1e-4", "--lr", "1e-4",
             "--gamma", "0.2", "--batch-size", "40", "--detach-pseudo", "--ema-decay", "0.9",
             "--anomaly-margin", "3", "--lr-schedule", "cosine", "--no-track-bn-anomalies", "--no-track-bn-pseudo",
             "--scoring-bn", "recomputed", "--scoring-bn-anomaly-weight", "0.4"]
    code, _, err = run_cli(["train", "--data", data, "--epochs", "1", "--precision", "fp32", "--no-progress",
                            "--out", out, *flags], capsys)
    assert code == 0, err
    c = json.loads((out / "config.json").read_text())["config"]
    assert (c["ca"], c["advprop"], c["freeze_bn_anomalies"], c["anomaly_distance"]) == (False, True, True, "pseudo")
    assert (c["w_adv"], c["w_con"], c["w_adcon"], c["w_lat"], c["delta"], c["lr"]) == (2, 40, 10, 3, 1e-4, 1e-4)
    assert (c["gamma"], c["batch_size"], c["detach_pseudo"], c["ema_decay"]) == (0.2, 40, True, 0.9)
    assert c["anomaly_margin"] == 3 and c["lr_schedule"] == "cosine"
    assert (c["track_bn_anomalies"], c["track_bn_pseudo"]) == (False, False)
    assert (c["scoring_bn"], c["scoring_bn_anomaly_weight"]) == ("recomputed", 0.4)
    # labelled anomalies and no --val-fraction / --select-epoch: the run records what "auto" became
    assert (c["val_fraction"], c["select_epoch"]) == (0.1, "val-ratio")
    assert json.loads((out / "config.json").read_text())["data"]["n_validation"] > 0
    code, _, err = run_cli(["train", "--data", data, "--epochs", "1", "--precision", "fp32", "--no-progress",
                            "--out", tmp_path / "run2", "--no-advprop"], capsys)
    assert code == 0, err
    c = json.loads((tmp_path / "run2" / "config.json").read_text())["config"]
    assert c["advprop"] is False and (c["val_fraction"], c["select_epoch"]) == (0.0, "last")  # gamma 0: no hold-out
    assert (c["track_bn_anomalies"], c["track_bn_pseudo"]) == (True, True)  # the paper's shared statistics
    assert c["scoring_bn"] == "running"


def test_unet_style_flag_reaches_the_config_and_is_refused_without_a_unet(tmp_path, capsys):
    data = make_idx_dir(tmp_path / "idx")
    code, _, err = run_cli(["train", "--data", data, "--epochs", "1", "--precision", "fp32", "--no-progress",
                            "--method", "skip-ganomaly", "--unet-style", "zhou", "--out", tmp_path / "run"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["unet_style"] == "zhou"
    code, _, err = run_cli(["train", "--data", data, "--epochs", "1", "--unet-style", "pix2pix",
                            "--out", tmp_path / "bad"], capsys)
    assert code != 0 and "unet_style" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_select_epoch_val_recon_keeps_the_epoch_with_the_lowest_heldout_normal_score(tmp_path, capsys):
    from agad.pipeline import _split_and_dataset, carve_validation, load_generator
    from agad.train import score_images

    data = make_idx_dir(tmp_path / "idx", n_train=400)
    out = tmp_path / "run"
    code, _, err = run_cli(["train", "--data", data, "--epochs", "4", "--batch-size", "8", "--precision", "fp32",
                            "--no-progress", "--val-fraction", "0.25", "--select-epoch", "val-recon", "--out", out],
                           capsys)
    assert code == 0, err
    meta = json.loads((out / "config.json").read_text())
    recon = [json.loads(line)["val/recon"] for line in (out / "history.jsonl").read_text().splitlines()]
    best = int(np.argmin(recon))
    assert meta["kept_epoch"] == best + 1 and meta["validation"]["val/recon"] == recon[best]
    # the saved weights are that epoch's: they score the held-out normal images as the history says
    cfg, _, G = load_generator(out)
    split, ds = _split_and_dataset(cfg)
    _, val = carve_validation(cfg, split, ds)
    s = score_images(G, val.x[val.y == 0], batch_size=64, device="cpu")
    assert float(s.mean()) == pytest.approx(recon[best], rel=1e-4)
    # without held-out images there is nothing to select on: a clear one-line error
    code, _, err = run_cli(["train", "--data", data, "--select-epoch", "val-recon", "--out", tmp_path / "x"], capsys)
    assert_one_line_error(code, err, "val_fraction")
