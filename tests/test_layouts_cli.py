"""Every folder layout as distributed trains and evaluates with one command each."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from agad.cli import main

FAST = ["--epochs", "1", "--batch-size", "4", "--precision", "fp32", "--device", "cpu", "--num-threads", "1",
        "--image-size", "16", "--no-progress"]


def _images(folder, n, value, *, mode="L", size=(20, 24)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    for i in range(n):
        shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
        a = np.clip(value + rng.normal(0, 3 if value < 128 else 60, shape), 0, 255).astype(np.uint8)
        Image.fromarray(a, mode).save(folder / f"img {i:03d}.png")


def _chest_xray(root):
    for split, n in (("train", 8), ("test", 3), ("val", 2)):
        _images(root / split / "NORMAL", n, 60)
        _images(root / split / "PNEUMONIA", n, 200)
    return ["--data", str(root), "--normal-class", "NORMAL"]


def _alzheimer(root):
    root = root / "Alzheimer's Dataset"
    for split, n in (("train", 8), ("test", 3)):
        _images(root / split / "NonDemented", n, 60)
        for c in ("VeryMildDemented", "MildDemented", "ModerateDemented"):
            _images(root / split / c, 2, 200)
    return ["--data", str(root)]  # NonDemented is found by its name


def _lc25000(root):
    root = root / "lung_image_sets"
    _images(root / "lung_n", 10, 60, mode="RGB")
    _images(root / "lung_aca", 3, 200, mode="RGB")
    _images(root / "lung_scc", 3, 220, mode="RGB")
    return ["--data", str(root), "--normal-class", "lung_n"]


def _mvtec(root):
    root = root / "bottle"
    _images(root / "train" / "good", 8, 60, mode="RGB", size=(24, 24))
    _images(root / "test" / "good", 2, 60, mode="RGB", size=(24, 24))
    _images(root / "test" / "broken", 2, 200, mode="RGB", size=(24, 24))
    (root / "ground_truth" / "broken").mkdir(parents=True)
    for i in range(2):
        m = np.zeros((24, 24), np.uint8)
        m[:8] = 255
        Image.fromarray(m).save(root / "ground_truth" / "broken" / f"img {i:03d}_mask.png")
    return ["--data", str(root)]


def _explicit(root):
    root = root / "my data"
    _images(root / "ok", 8, 60)
    _images(root / "scratch", 3, 200)
    return ["--data", str(root), "--normal-dir", "ok", "--abnormal-dir", "scratch"]


@pytest.mark.parametrize("layout", [_chest_xray, _alzheimer, _lc25000, _mvtec, _explicit],
                         ids=["chest_xray", "alzheimer", "lc25000", "mvtec", "anomalib"])
def test_layout_trains_and_evaluates_with_one_command_each(tmp_path, layout, capsys):
    data = layout(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["train", *data, *FAST, "--out", str(out)]) == 0
    assert main(["evaluate", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["n_test"] > 0 and 0.0 <= metrics["auroc"] <= 1.0


def test_normal_only_folder_trains_and_says_there_is_nothing_to_test(tmp_path, capsys):
    _images(tmp_path / "xrays", 8, 60)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "xrays"), *FAST, "--out", str(out)]) == 0
    assert (out / "generator.safetensors").is_file()
    assert main(["evaluate", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "test" in err[0]
