"""Tests for agad.data.layouts: folder trees as they are distributed, built small in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agad.data import Dataset, Split, load_dataset
from agad.data.images import DataWarning
from agad.data.layouts import FolderData, load_folder, scan_folder
from agad.errors import AgadError, DataError

# Mixed sizes and modes, as real downloads have: most grayscale PNGs, some RGB JPEGs.
_SIZES = ((40, 30), (36, 36), (44, 28))


def img(path: Path, value: int, *, mode: str = "L", size=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    size = size or _SIZES[value % len(_SIZES)]
    color = value if mode == "L" else (value, value // 2, 255 - value)
    Image.new(mode, size, color).save(path)
    return path


def fill(folder: Path, n: int, start: int, *, ext: str = "png", mode: str = "L") -> list[Path]:
    return [img(folder / f"{folder.name} {i:03d}.{ext}", start + i, mode=mode) for i in range(n)]


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    return msg


def means(x: np.ndarray) -> list[int]:
    return np.round(x.reshape(len(x), -1).mean(axis=1)).astype(int).tolist()


# ----------------------------------------------------------------- class folders with splits


def test_chest_xray_with_train_test_val(tmp_path):
    root = tmp_path / "chest_xray"
    fill(root / "train" / "NORMAL", 4, 10)
    fill(root / "train" / "PNEUMONIA", 3, 100, ext="jpeg")
    img(root / "train" / "PNEUMONIA" / "person1_virus_rgb.jpeg", 150, mode="RGB")
    fill(root / "test" / "NORMAL", 2, 20)
    fill(root / "test" / "PNEUMONIA", 3, 120, ext="jpeg")
    fill(root / "val" / "NORMAL", 1, 30)
    fill(root / "val" / "PNEUMONIA", 1, 130)
    with pytest.warns(DataWarning, match="converted 1 of 15 images to grayscale"):
        data = load_folder(root, normal_class="normal")  # any case
    assert data.layout == "class folders with train/test/val splits, normal class 'NORMAL'"
    assert data.class_names == ["NORMAL", "PNEUMONIA"]
    assert data.x_train_normal.shape == (4, 1, 40, 40) and data.x_train_anomalous.shape == (4, 1, 40, 40)
    assert means(data.x_train_normal) == [10, 11, 12, 13]
    assert data.y_test.tolist() == [0, 0, 1, 1, 1] and data.test_masks is None
    assert data.y_val.tolist() == [0, 1] and data.x_val.shape == (2, 1, 40, 40)
    assert [p.name for p in data.test_paths[:2]] == ["NORMAL 000.png", "NORMAL 001.png"]
    assert "train 4 normal + 4 anomalous, test 2 normal + 3 anomalous, val 2" in data.summary()


def test_oct2017_four_classes_and_split_conversion(tmp_path):
    root = tmp_path / "OCT2017"
    for split, n in (("train", 3), ("test", 1)):
        fill(root / split / "NORMAL", n + 2, 10)
        for k, cls in enumerate(("CNV", "DME", "DRUSEN")):
            fill(root / split / cls, n, 60 + 40 * k, ext="jpeg")
    data = load_folder(root, image_size=16)  # "NORMAL" is a known normal name
    assert data.class_names == ["NORMAL", "CNV", "DME", "DRUSEN"]
    assert len(data.x_train_normal) == 5 and len(data.x_train_anomalous) == 9
    assert data.test_classes.tolist() == [0, 0, 0, 1, 2, 3] and data.y_test.tolist() == [0, 0, 0, 1, 1, 1]
    split = data.to_split(gamma=0.2, seed=3)
    assert isinstance(split, Split) and split.x_normal.shape == (5, 1, 16, 16)
    assert split.n_anomalies == 1 and split.anomaly_classes[0] in (1, 2, 3)
    assert np.array_equal(split.x_test, data.x_test) and split.y_test.tolist() == data.y_test.tolist()
    ds = data.to_dataset()
    assert isinstance(ds, Dataset) and ds.name == "OCT2017" and ds.num_classes == 4


def test_alzheimers_dataset_names_with_spaces_and_apostrophes(tmp_path):
    root = tmp_path / "Alzheimer's Dataset"
    for split in ("train", "test"):
        fill(root / split / "NonDemented", 3, 10)
        for k, cls in enumerate(("VeryMildDemented", "MildDemented", "ModerateDemented")):
            fill(root / split / cls, 1, 100 + 30 * k, ext="jpg")
    ds = load_dataset(root)  # "NonDemented" is found as the normal class by itself
    assert ds.name == "Alzheimer's Dataset"
    assert ds.class_names == ["NonDemented", "MildDemented", "ModerateDemented", "VeryMildDemented"]
    assert np.bincount(ds.y_train).tolist() == [3, 1, 1, 1] and np.bincount(ds.y_test).tolist() == [3, 1, 1, 1]


def test_split_layout_without_test_split_tests_all_anomalies(tmp_path):
    root = tmp_path / "data"
    fill(root / "Train" / "good", 5, 10)
    fill(root / "Train" / "bad", 3, 200)
    (root / "test" / "good").mkdir(parents=True)  # an empty test split counts as none
    data = load_folder(root)
    assert "no test split" in data.layout
    assert len(data.x_train_anomalous) == 0 and data.y_test.tolist() == [0, 1, 1, 1]


# ----------------------------------------------------------------- class folders without splits


def test_lc25000_unsplit_sends_every_anomaly_to_test(tmp_path):
    root = tmp_path / "lung_image_sets"
    fill(root / "lung_aca", 4, 100, ext="jpeg", mode="RGB")
    fill(root / "lung_n", 10, 10, ext="jpeg", mode="RGB")
    fill(root / "lung_scc", 3, 200, ext="jpeg", mode="RGB")
    data = load_folder(root, test_fraction=0.2, seed=0)
    assert data.layout == "class folders (no split), normal class 'lung_n'"
    assert data.class_names == ["lung_n", "lung_aca", "lung_scc"] and data.channels == 3
    assert len(data.x_train_normal) == 8 and len(data.x_train_anomalous) == 0
    assert data.test_classes.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]  # all 7 anomalies, 2 of 10 normals
    held = {p.name for p in data.test_paths[:2]}
    assert held.isdisjoint(p.name for p in data.train_paths)
    # The held-out normals depend on the seed only.
    assert {p.name for p, _ in scan_folder(root, seed=0).test[:2]} == held
    others = [{p.name for p, _ in scan_folder(root, seed=s).test[:2]} for s in range(1, 6)]
    assert any(o != held for o in others) and all(len(o) == 2 for o in others)
    with pytest.raises(AgadError, match="no anomalous training images"):
        data.to_split(gamma=0.1)


def test_legacy_normal_abnormal_and_explicit_normal_class(tmp_path):
    root = tmp_path / "oct"
    fill(root / "normal", 5, 10)
    fill(root / "abnormal" / "CNV", 2, 100)
    fill(root / "abnormal" / "DME", 2, 150)
    data = load_folder(root)
    assert data.class_names == ["normal", "abnormal"]
    assert len(data.x_train_normal) == 4 and data.y_test.tolist() == [0, 1, 1, 1, 1]
    flipped = load_folder(root, normal_class="ABNORMAL")  # any class can be declared normal
    assert flipped.class_names == ["abnormal", "normal"] and flipped.y_test.tolist() == [0] + [1] * 5


def test_normal_only_folders(tmp_path):
    flat = tmp_path / "xrays"
    fill(flat, 4, 10)
    data = load_folder(flat)
    assert data.layout == "normal images only (no test set)"
    assert len(data.x_train_normal) == 4 and data.x_test.shape == (0, 1, 36, 36) and len(data.y_test) == 0
    assert data.image_size == 36  # sides 36, 44, 40, 36: the (lower) median image's
    assert data.to_split().x_normal.shape == (4, 1, 36, 36)
    single = tmp_path / "bottle_train"
    fill(single / "good", 2, 10)
    assert load_folder(single).layout == "normal images only in good/ (no test set)"


# ----------------------------------------------------------------- MVTec AD


def mvtec_category(root: Path, *, masks: bool = True) -> Path:
    fill(root / "train" / "good", 4, 10, mode="RGB")
    fill(root / "test" / "good", 2, 20, mode="RGB")
    for k, defect in enumerate(("broken_large", "contamination")):
        for i in range(2):
            name = f"{i:03d}"
            img(root / "test" / defect / f"{name}.png", 100 + 50 * k + i, mode="RGB", size=(32, 32))
            if masks:
                m = np.zeros((32, 32), np.uint8)
                m[: 8 * (k + 1) + i] = 255  # a different number of rows per image: alignment is checkable
                (root / "ground_truth" / defect).mkdir(parents=True, exist_ok=True)
                Image.fromarray(m).save(root / "ground_truth" / defect / f"{name}_mask.png")
    return root


def test_mvtec_category_with_aligned_masks(tmp_path):
    root = mvtec_category(tmp_path / "mvtec" / "bottle")
    data = load_folder(root, image_size=32)
    assert data.layout == "MVTec AD category 'bottle'"
    assert data.class_names == ["good", "broken_large", "contamination"]
    assert len(data.x_train_normal) == 4 and data.y_test.tolist() == [0, 0, 1, 1, 1, 1]
    assert data.test_masks.shape == (6, 1, 32, 32) and data.test_masks.dtype == np.uint8
    rows = data.test_masks[:, 0, :, 0].sum(axis=1).tolist()
    assert rows == [0, 0, 8, 9, 16, 17]  # each mask sits with its own image
    assert [p.parent.name + "/" + p.name for p in data.test_paths[2:4]] == ["broken_large/000.png",
                                                                              "broken_large/001.png"]


def test_mvtec_root_with_one_or_many_categories(tmp_path):
    root = tmp_path / "mvtec"
    mvtec_category(root / "bottle")
    assert load_folder(root).layout == "MVTec AD category 'bottle'"
    mvtec_category(root / "cable", masks=False)
    with pytest.raises(DataError, match=r"holds 2 MVTec AD categories \(bottle, cable\)") as e:
        load_folder(root)
    assert str(root / "bottle") in one_line(e)
    assert load_folder(root / "cable").test_masks is None


def test_mvtec_missing_mask_is_an_error(tmp_path):
    root = mvtec_category(tmp_path / "screw")
    (root / "ground_truth" / "contamination" / "001_mask.png").unlink()
    with pytest.raises(DataError, match="1 anomalous test image.s. have no mask") as e:
        scan_folder(root)
    assert "contamination/001.png" in one_line(e)


# ----------------------------------------------------------------- explicit folders


def test_explicit_folders_anomalib_style(tmp_path):
    root = tmp_path / "my data"
    fill(root / "ok", 5, 10)
    for d, n in (("scratch", 2), ("dent", 1)):
        for i in range(n):
            img(root / d / f"{d} {i:03d}.png", 100 + i, size=(40, 30))
    fill(root / "ok_test", 2, 20)
    for d, n in (("scratch", 2), ("dent", 1)):
        for i in range(n):
            (root / "masks" / d).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((30, 40), 255, np.uint8)).save(root / "masks" / d / f"{d} {i:03d}_mask.png")
    data = load_folder(root, normal_dirs=["ok"], abnormal_dirs=["scratch", "dent"], normal_test_dirs=["ok_test"],
                       mask_dirs=["masks/scratch", "masks/dent"], image_size=16)
    assert data.layout == "explicit folders" and data.class_names == ["normal", "scratch", "dent"]
    assert len(data.x_train_normal) == 5 and data.test_classes.tolist() == [0, 0, 1, 1, 2]
    assert data.test_masks[:2].sum() == 0 and (data.test_masks[2:] == 1).all()
    # Without normal test folders the normals are split, and every anomaly is tested.
    data2 = load_folder(root, normal_dirs=["ok"], abnormal_dirs=[root / "scratch"])
    assert len(data2.x_train_normal) == 4 and data2.y_test.tolist() == [0, 1, 1]
    with pytest.raises(DataError, match="--normal-dir nope: folder .* does not exist"):
        load_folder(root, normal_dirs=["nope"])
    with pytest.raises(AgadError, match="need --normal-dir"):
        load_folder(root, abnormal_dirs=["dent"])


# ----------------------------------------------------------------- errors


def test_unknown_layout_lists_what_it_found(tmp_path):
    root = tmp_path / "scans"
    fill(root / "cats", 3, 10)
    fill(root / "dogs", 2, 50)
    with pytest.raises(DataError, match="cannot tell which class") as e:
        load_folder(root)
    msg = one_line(e)
    assert "cats/ (3 images), dogs/ (2 images)" in msg and "--normal-class" in msg and "--normal-dir" in msg
    with pytest.raises(DataError, match="no class folder 'birds'") as e:
        load_folder(root, normal_class="birds")
    assert "cats/ (3 images)" in one_line(e)


def test_wrapper_folder_points_at_the_dataset_inside(tmp_path):
    root = tmp_path / "archive"
    fill(root / "OCT2017" / "train" / "NORMAL", 2, 10)
    fill(root / "OCT2017" / "test" / "CNV", 1, 100)
    with pytest.raises(DataError, match="OCT2017/ .3 images.") as e:
        load_folder(root)
    assert f"{root / 'OCT2017'} has its own train/ or test/ folders: point --data at it" in one_line(e)
    assert load_folder(root / "OCT2017").y_test.tolist() == [1]


def test_ambiguous_and_misplaced_layouts(tmp_path):
    both = tmp_path / "both"
    fill(both / "normal", 2, 10)
    fill(both / "good", 2, 10)
    with pytest.raises(DataError, match=r"several classes that look normal \(good, normal\)") as e:
        load_folder(both)
    assert "--normal-class" in one_line(e)
    loose = tmp_path / "loose"
    fill(loose, 2, 10)
    fill(loose / "abnormal", 2, 100)
    with pytest.raises(DataError, match="holds 2 images directly and class folders abnormal/ .2 images."):
        load_folder(loose)
    no_train = tmp_path / "no_train"
    fill(no_train / "test" / "NORMAL", 2, 10)
    with pytest.raises(DataError, match="has test/ but no train/ split"):
        load_folder(no_train)
    with pytest.raises(DataError, match="does not exist"):
        load_folder(tmp_path / "missing")
    with pytest.raises(AgadError, match="test_fraction"):
        load_folder(both, test_fraction=1.5)


def test_image_size_and_memory_checked_before_reading(tmp_path, monkeypatch):
    root = tmp_path / "d"
    fill(root / "normal", 3, 10)
    fill(root / "abnormal", 2, 100)
    with pytest.raises(AgadError, match="from 1 to 1024"):
        load_folder(root, image_size=4096)
    monkeypatch.setenv("AGAD_MEMORY_LIMIT", "4M")
    with pytest.raises(DataError, match=r"5 images of 1x1024x1024 needs an estimated 5.0 MiB") as e:
        load_dataset(root, image_size=1024)
    assert "smaller --image-size" in one_line(e)
    assert isinstance(load_folder(root, image_size=32), FolderData)
