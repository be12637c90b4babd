"""The command-line contract: train / evaluate, how options reach a run, and one-line errors with exit code 2."""

from __future__ import annotations

import errno
import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agad import __version__
from agad.cli import build_parser, config_from_args, main, parse_sets, parse_value
from agad.errors import AgadError


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
    """Exit code, stdout and stderr, whether main returns the code or argparse exits with it."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = int(exc.code)
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
    code, stdout, _ = run_cli(["train", "--data", data, "--normal-class", "0", "--epochs", "1", "--batch-size", "4",
                               "--precision", "fp32", "--no-progress", "--out", out], capsys)
    assert code == 0, stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["normal_class"] == 0 and cfg["config"]["epochs"] == 1
    assert cfg["data"]["n_normal_train"] == 6  # 60 images of 10 classes
    assert (out / "generator.safetensors").is_file() and (out / "history.jsonl").is_file()
    assert (out / "reconstructions.png").stat().st_size > 0
    assert not list(out.glob("*.pt")) and not list(out.glob("*.pkl"))  # no pickle anywhere
    code, stdout, _ = run_cli(["evaluate", out, "--json"], capsys)
    assert code == 0
    m = json.loads(stdout)
    assert 0.0 <= m["auroc"] <= 1.0 and 0.0 <= m["aupr"] <= 1.0
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["auroc"] == m["auroc"] and saved["threshold"] == cfg["threshold"]
    p, r, f1 = saved["precision_at_threshold"], saved["recall_at_threshold"], saved["f1_at_threshold"]
    assert 0 <= p <= 1 and 0 <= r <= 1 and f1 == pytest.approx(2 * p * r / (p + r) if p + r else 0.0)
    assert "best_f1_threshold" in saved and 0 < saved["best_f1"] <= 1  # reported, never stored with the run
    assert saved["n_test"] == 20 and saved["n_anomalous"] == 18
    scores = (out / "scores.csv").read_text().splitlines()
    assert scores[0] == "index,score,label" and len(scores) == 21


@pytest.mark.parametrize(
    "case, needles",
    [
        ("missing", ["does not exist"]),
        ("missing_numbered_class", ["nope", "does not exist"]),
        ("bad_magic", ["magic"]),
        ("truncated", ["truncated"]),
        ("count_mismatch", ["labels"]),
        ("unknown_name", ["unknown dataset", "fashion-mnist"]),
        ("class_range", ["normal", "12"]),
        ("gamma", ["gamma", "[0, 1)"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_leaves_no_run_dir(tmp_path, capsys, case, needles):
    data = tmp_path / "idx"
    args = ["--normal-class", "0"]
    if case.startswith("missing"):
        data = tmp_path / "nope"
        args = ["--normal-class", "3" if case == "missing_numbered_class" else "0"]
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




def test_a_numbered_class_of_an_idx_directory_is_the_normal_class(tmp_path, capsys):
    data = make_idx_dir(tmp_path / "idx", n_train=80)
    out = tmp_path / "run"
    code, _, err = run_cli(["train", "--data", data, "--normal-class", "3", "--epochs", "1", "--batch-size", "4",
                            "--precision", "fp32", "--no-progress", "--out", out], capsys)
    assert code == 0, err
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["normal_class"] == 3 and meta["data"]["n_normal_train"] == 8


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
             "--gamma", "0.2", "--batch-size", "40", "--ema-decay", "0.9", "--track-bn-anomalies",
             "--no-track-bn-pseudo",
             "--scoring-bn", "recomputed", "--scoring-bn-anomaly-weight", "0.4"]
    code, _, err = run_cli(["train", "--data", data, "--epochs", "1", "--precision", "fp32", "--no-progress",
                            "--out", out, *flags], capsys)
    assert code == 0, err
    c = json.loads((out / "config.json").read_text())["config"]
    assert (c["ca"], c["advprop"], c["freeze_bn_anomalies"], c["anomaly_distance"]) == (False, True, True, "pseudo")
    assert (c["w_adv"], c["w_con"], c["w_adcon"], c["w_lat"], c["delta"], c["lr"]) == (2, 40, 10, 3, 1e-4, 1e-4)
    assert (c["gamma"], c["batch_size"], c["ema_decay"]) == (0.2, 40, 0.9)
    assert not {"detach_pseudo", "anomaly_margin", "lr_schedule", "grad_clip"} & set(c)  # removed options
    assert (c["track_bn_anomalies"], c["track_bn_pseudo"]) == (True, False)  # both leave their defaults
    assert (c["scoring_bn"], c["scoring_bn_anomaly_weight"]) == ("recomputed", 0.4)
    # labelled anomalies and no --val-fraction / --select-epoch: the run records what "auto" became
    assert (c["val_fraction"], c["select_epoch"]) == (0.1, "val-ratio")
    assert json.loads((out / "config.json").read_text())["data"]["n_validation"] > 0
    code, _, err = run_cli(["train", "--data", data, "--epochs", "1", "--precision", "fp32", "--no-progress",
                            "--out", tmp_path / "run2", "--no-advprop"], capsys)
    assert code == 0, err
    c = json.loads((tmp_path / "run2" / "config.json").read_text())["config"]
    assert c["advprop"] is False and (c["val_fraction"], c["select_epoch"]) == (0.0, "last")  # gamma 0: no hold-out
    # gamma 0: no labelled anomalies to keep out, recorded as the paper's shared statistics
    assert (c["track_bn_anomalies"], c["track_bn_pseudo"]) == (True, True)
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
    from agad.data import validation_split
    from agad.pipeline import load_run, prepare_split
    from agad.scoring import score_images

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
    run = load_run(out)
    split, _ = prepare_split(run.cfg)
    _, held = validation_split(split.x_normal, run.cfg.resolved_val_fraction(), seed=run.cfg.seed)
    assert len(held) == 10  # a quarter of the 40 normal training images
    s = score_images(run.scorer, held, batch_size=64, device="cpu")
    assert float(s.mean()) == pytest.approx(recon[best], rel=1e-4)
    # without held-out images there is nothing to select on: a clear one-line error
    code, _, err = run_cli(["train", "--data", data, "--select-epoch", "val-recon", "--out", tmp_path / "x"], capsys)
    assert_one_line_error(code, err, "val_fraction")


# ------------------------------------------------------------------ where a run's options come from
def parsed_config(*argv):
    """The TrainConfig `agad train ARGV --out x` would train, without training."""
    return config_from_args(build_parser().parse_args(["train", *map(str, argv), "--out", "x"]))


def test_version(capsys):
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"agad {__version__}"


@pytest.mark.parametrize("argv, needle", [
    (["train", "--epoch", "2", "--out", "x"], "--epoch"),  # not an abbreviation of --epochs
    (["train", "--no-c", "--out", "x"], "--no-c"),
    (["train", "--ca", "no", "--out", "x"], "unrecognized"),  # a bool flag takes no value: --ca / --no-ca
    (["train", "--recipe", "fast", "--out", "x"], "invalid choice"),
    (["train", "--backbone", "resnet", "--out", "x"], "invalid choice"),
])
def test_usage_errors_are_one_line_exit_2(tmp_path, capsys, argv, needle):
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "x").exists()


def test_every_bool_option_has_a_flag_and_its_negation():
    assert parsed_config().freeze_bn_anomalies is False and parsed_config().ca is True
    cfg = parsed_config("--freeze-bn-anomalies", "--no-ca", "--no-advprop", "--track-test-auroc")
    assert (cfg.freeze_bn_anomalies, cfg.ca, cfg.advprop, cfg.track_test_auroc) == (True, False, False, True)
    assert parsed_config("--no-ca", "--ca").ca is True  # the last one wins, as with any flag
    assert parsed_config("--no-freeze-bn-anomalies").freeze_bn_anomalies is False


def test_option_sources_in_increasing_priority(tmp_path):
    """defaults < --recipe < --config FILE < --set KEY=VALUE < flags."""
    from agad.recipes import recipe

    assert recipe("paper") == {"advprop": False, "ema_decay": 0.0, "val_fraction": 0.0, "epochs": 15,
                               "d_spectral_norm": False, "adcon_cap": 0.0, "label_head": False,
                               "track_bn_anomalies": True}
    cfg = parsed_config("--recipe", "paper")
    assert (cfg.advprop, cfg.ema_decay, cfg.val_fraction, cfg.epochs) == (False, 0.0, 0.0, 15)
    assert parsed_config("--recipe", "no-ca").ca is False and parsed_config("--recipe", "default") == parsed_config()
    toml = tmp_path / "c.toml"
    toml.write_text("ema_decay = 0.5\nepochs = 4\nlr = 1e-3\n")
    cfg = parsed_config("--recipe", "paper", "--config", toml)
    assert (cfg.advprop, cfg.ema_decay, cfg.epochs, cfg.lr) == (False, 0.5, 4, 1e-3)  # the file beats the recipe
    cfg = parsed_config("--recipe", "paper", "--config", toml, "--set", "epochs=6", "--set", "ema-decay=0.25")
    assert (cfg.epochs, cfg.ema_decay, cfg.lr) == (6, 0.25, 1e-3)  # --set beats the file
    cfg = parsed_config("--config", toml, "--set", "epochs=6", "--epochs", "7", "--ema-decay", "0.75")
    assert (cfg.epochs, cfg.ema_decay) == (7, 0.75)  # flags beat everything


@pytest.mark.parametrize("sets, needles", [
    (["emma=1"], ["--set emma", "unknown config field"]),
    (["ca=maybe"], ["--set ca=maybe", "true or false"]),
    (["epochs"], ["KEY=VALUE"]),
    (["grad_clip=0.5"], ["grad_clip", "unknown config field"]),  # a removed option is not a field
    (["epochs=0"], ["'epochs'"]),
])
def test_bad_set_values_are_one_line_and_train_nothing(tmp_path, capsys, sets, needles):
    argv = ["train", "--no-progress", "--out", tmp_path / "run"]
    for item in sets:
        argv += ["--set", item]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "run").exists()


def test_set_values_are_parsed_by_field_type():
    got = parse_sets(["ema_decay=0.999", "freeze-bn-anomalies=true", "known_classes=none", "epochs=3",
                      "select_epoch=last", 'extra={"tag": "x"}'])
    assert got == {"ema_decay": 0.999, "freeze_bn_anomalies": True, "known_classes": None, "epochs": 3,
                   "select_epoch": "last", "extra": {"tag": "x"}}
    assert (parse_value("ca", "no"), parse_value("ca", "ON"), parse_value("image_size", "null")) == (False, True, None)
    with pytest.raises(AgadError, match="unknown config field"):
        parse_sets(["emma=1"])
    with pytest.raises(AgadError, match="true or false"):
        parse_sets(["ca=maybe"])
    with pytest.raises(AgadError, match="an integer"):
        parse_sets(["epochs=2.5"])
    with pytest.raises(AgadError, match="a JSON object"):
        parse_sets(["extra=[1]"])


@pytest.mark.parametrize("exc, needles", [
    (OSError(errno.ENOSPC, "No space left on device", "/runs/a"), ["/runs/a", "disk is full"]),
    (PermissionError(errno.EACCES, "Permission denied", "/runs/b"), ["/runs/b", "permission denied"]),
    (OSError(errno.EROFS, "Read-only file system", "/runs/c"), ["read-only"]),
    (OSError("something odd"), ["something odd"]),
])
def test_any_os_error_of_a_command_is_one_line_exit_2(tmp_path, capsys, monkeypatch, exc, needles):
    import agad.export
    import agad.pipeline

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(agad.pipeline, "train", fail)
    monkeypatch.setattr(agad.export, "export_model", fail)
    code, _, err = run_cli(["train", "--no-progress", "--out", tmp_path / "run"], capsys)
    assert_one_line_error(code, err, *needles)
    code, _, err = run_cli(["export", tmp_path / "run", "--format", "onnx", "--out", tmp_path / "m.onnx"], capsys)
    assert_one_line_error(code, err, *needles)
