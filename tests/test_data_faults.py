"""Damaged, hostile and oversized data: every fault ends in one DataError line, fast, without mixing classes."""

from __future__ import annotations

import gzip
import os
import pickle
import signal
import subprocess
import sys
import tarfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import agad.data.cifar as cifar_module
from agad.data import load_dataset, read_idx
from agad.data.images import DataWarning, list_images, read_images
from agad.data.layouts import load_folder
from agad.errors import DataError


def png(path: Path, value: int, size=(16, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)
    return path


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    return msg


@contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) if the block blocks for longer than ``seconds``."""

    def expired(signum, frame):
        raise TimeoutError(f"blocked for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(autouse=True)
def no_user_data(monkeypatch, tmp_path):
    monkeypatch.delenv("AGAD_DATA_DIR", raising=False)
    monkeypatch.delenv("AGAD_MEMORY_LIMIT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


# ----------------------------------------------------------------- folders


def test_symlink_loop_to_ancestor_never_mixes_classes(tmp_path):
    root = tmp_path / "d"
    for i in range(5):
        png(root / "normal" / f"n{i}.png", 10)
    for i in range(3):
        png(root / "abnormal" / f"a{i}.png", 200)
    (root / "normal" / "loop").symlink_to("..")  # normal/loop/abnormal/... would be "normal" images
    (root / "normal" / "sib").symlink_to("../abnormal")
    with pytest.warns(DataWarning, match="lead outside it"):
        data = load_folder(root)
    assert (data.x_train == 10).all()  # no abnormal image among the normal training images
    assert data.y_test.tolist() == [0, 1, 1, 1]
    listed = {p.relative_to(root).parts[1] for p in data.train_paths + data.test_paths}
    assert listed == {f"n{i}.png" for i in range(5)} | {f"a{i}.png" for i in range(3)}  # no path via a link


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_fifo_named_like_an_image_is_refused_fast(tmp_path):
    png(tmp_path / "d" / "normal" / "a.png", 10)
    png(tmp_path / "d" / "abnormal" / "b.png", 200)
    fifo = tmp_path / "d" / "normal" / "pipe.png"
    os.mkfifo(fifo)
    start = time.monotonic()
    with deadline(10):
        with pytest.raises(DataError, match="is a FIFO") as e:
            list_images(tmp_path / "d")
        assert str(fifo) in one_line(e)
        with pytest.raises(DataError, match="is a FIFO"):
            read_images([fifo], channels=1, size=16)  # named directly, it must not block on open
        with pytest.raises(DataError, match="is a FIFO"):
            load_folder(tmp_path / "d")
    assert time.monotonic() - start < 5


def test_decompression_bomb_is_one_data_error(tmp_path, monkeypatch):
    big = png(tmp_path / "d" / "normal" / "big.png", 5, size=(64, 64))  # 4096 pixels
    png(tmp_path / "d" / "normal" / "ok.png", 5)
    png(tmp_path / "d" / "abnormal" / "x.png", 9)
    # 4096 pixels: above the limit (Pillow's warning level), then above twice it (its error level).
    for limit in (3000, 1000):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(DataError, match="too large to decode safely") as e:
            read_images([big])
        assert str(big) in one_line(e) and "MAX_IMAGE_PIXELS" in one_line(e)
        with pytest.raises(DataError, match="too large to decode safely"):
            load_folder(tmp_path / "d")


def test_truncated_image_in_a_folder_names_the_file(tmp_path):
    png(tmp_path / "d" / "normal" / "a.png", 10)
    png(tmp_path / "d" / "abnormal" / "b.png", 200)
    bad = tmp_path / "d" / "normal" / "cut.png"
    bad.write_bytes((tmp_path / "d" / "normal" / "a.png").read_bytes()[:50])
    with pytest.raises(DataError, match="cannot read image") as e:
        load_folder(tmp_path / "d")
    assert str(bad) in one_line(e)


def test_oversized_image_size_says_the_estimate(tmp_path, monkeypatch):
    for i in range(3):
        png(tmp_path / "d" / "normal" / f"{i}.png", 10)
    png(tmp_path / "d" / "abnormal" / "x.png", 10)
    monkeypatch.setenv("AGAD_MEMORY_LIMIT", "1M")
    with pytest.raises(DataError, match=r"4 images of 1x1024x1024 needs an estimated 4.0 MiB of memory") as e:
        load_folder(tmp_path / "d", image_size=1024)
    assert "smaller --image-size" in one_line(e)
    with pytest.raises(DataError, match="needs an estimated"):
        read_images(list_images(tmp_path / "d"), size=1024)


# ----------------------------------------------------------------- IDX


def idx_header(shape, code=0x08) -> bytes:
    return bytes([0, 0, code, len(shape)]) + np.asarray(shape, dtype=">u4").tobytes()


def test_gzip_idx_inflating_beyond_its_header_is_refused(tmp_path):
    p = tmp_path / "train-labels-idx1-ubyte.gz"
    # Declares 10 labels, then inflates to 64 MiB: only the declared bytes and a small probe are read.
    with gzip.open(p, "wb", compresslevel=1) as f:
        f.write(idx_header((10,)) + bytes(10))
        block = bytes(1 << 20)
        for _ in range(64):
            f.write(block)
    assert p.stat().st_size < 1 << 20
    start = time.monotonic()
    with pytest.raises(DataError, match=r"has more than 1048576 trailing bytes after its 10 bytes of labels") as e:
        read_idx(p, dataset="fashion-mnist")
    assert time.monotonic() - start < 2 and "agad data fetch fashion-mnist" in one_line(e)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_dimensions_that_overflow_or_are_zero(tmp_path, gz):
    p = tmp_path / "x-idx3-ubyte"
    # 65536^4 bytes = 2^64: the product wraps to 0 in 64-bit integers.
    blob = idx_header((65536, 65536, 65536, 65536)) + bytes(16)
    p.write_bytes(gzip.compress(blob) if gz else blob)
    with pytest.raises(DataError, match="truncated|needs an estimated") as e:
        read_idx(p)
    one_line(e)
    zero = idx_header((0, 28, 28))
    p.write_bytes(gzip.compress(zero) if gz else zero)
    with pytest.raises(DataError, match=r"declares an empty array \(shape \(0, 28, 28\)\)"):
        read_idx(p)


def test_truncated_gzip_idx_declaring_gigabytes_costs_what_it_holds(tmp_path):
    # 30 bytes of gzip whose header declares 2 GB of pixels: refused as truncated, without touching 2 GB of
    # memory on the way (peak RSS measured in a fresh process, after the imports).
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(idx_header((20_000, 1000, 100)) + bytes(16)))
    code = (
        "import resource, sys\n"
        "from agad.data import read_idx\n"
        "from agad.errors import DataError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    read_idx(sys.argv[1])\n"
        "except DataError as exc:\n"
        "    print(exc)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "AGAD_MEMORY_LIMIT": "4G"}).stdout.splitlines()
    assert "is truncated (expected 2000000000 bytes of pixels, got 16)" in out[0]
    assert int(out[1]) < 100 * 1024  # KiB: well under the 2 GB declared


def test_gzip_idx_larger_than_memory_is_refused_before_reading(tmp_path, monkeypatch):
    p = tmp_path / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(idx_header((100, 28, 28)) + bytes(100 * 28 * 28)))
    monkeypatch.setenv("AGAD_MEMORY_LIMIT", "10K")
    with pytest.raises(DataError, match=r"IDX file .* \(shape \(100, 28, 28\)\) needs an estimated 76.6 KiB"):
        read_idx(p)


# ----------------------------------------------------------------- CIFAR


def write_cifar10(top: Path, n: int = 2) -> Path:
    top.mkdir(parents=True)

    def dump(name, obj):
        with open(top / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        dump(name, {b"data": np.zeros((n, 3072), np.uint8), b"labels": [0] * n})
    dump("batches.meta", {b"label_names": [b"c%d" % i for i in range(10)]})
    return top


@pytest.mark.parametrize("as_tar", [False, True])
def test_cifar_member_over_the_limit_is_refused_unread(tmp_path, monkeypatch, as_tar):
    top = write_cifar10(tmp_path / "cifar-10-batches-py")
    target = top
    if as_tar:
        target = tmp_path / "cifar-10-python.tar.gz"
        with tarfile.open(target, "w:gz") as tar:
            tar.add(top, arcname=top.name)
    monkeypatch.setattr(cifar_module, "MAX_MEMBER_BYTES", 1000)  # each batch member is ~6 KB
    with pytest.raises(DataError, match=r"holds 6.\d KiB, more than the 1000 B any official CIFAR file needs") as e:
        load_dataset(target)
    one_line(e)
