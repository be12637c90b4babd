"""Tests for agad.data.images: finding image files, decoding them under one channel and size rule."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agad.data.images import (
    DataWarning,
    ImageInfo,
    check_compatible,
    choose_size,
    default_image_size,
    expand_items,
    image_info,
    is_image_input,
    list_images,
    read_images,
    read_masks,
)
from agad.errors import AgadError, DataError


def save(path: Path, value: int = 0, mode: str = "L", size=(20, 20), **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode in ("L", "I;16", "1", "P") else tuple([value] * len(mode))
    Image.new(mode, size, color).save(path, **kw)
    return path


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    return msg


# ----------------------------------------------------------------- list_images


def test_list_images_recursive_sorted_and_filtered(tmp_path):
    root = tmp_path / "Alzheimer's Dataset"
    save(root / "b dir" / "x.PNG")
    save(root / "a.jpeg", mode="RGB")
    save(root / "b dir" / "deep" / "y.tif")
    save(root / ".hidden.png")
    save(root / ".cache" / "z.png")
    (root / "notes.txt").write_text("not an image")
    found = list_images(root)
    assert [p.relative_to(root).as_posix() for p in found] == ["a.jpeg", "b dir/deep/y.tif", "b dir/x.PNG"]
    # files given explicitly are taken as they are, in the order given
    assert list_images([found[2], root / "a.jpeg"]) == [found[2], root / "a.jpeg"]


def test_list_images_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images") as e:
        list_images(tmp_path / "empty")
    one_line(e)
    with pytest.raises(DataError, match="does not exist"):
        list_images([tmp_path / "nope.png"])
    with pytest.raises(AgadError, match="no image paths"):
        list_images([])


def test_symlinks_followed_only_inside_the_root(tmp_path):
    root = tmp_path / "root"
    save(root / "a" / "1.png")
    save(root / "b" / "2.png")
    save(tmp_path / "outside" / "3.png")
    (root / "a" / "to_b").symlink_to(root / "b")  # inside the root: followed, listed once
    (root / "a" / "out").symlink_to(tmp_path / "outside")  # leads out: skipped
    (root / "b" / "up").symlink_to(root)  # a loop to an ancestor: skipped
    (root / "b" / "same.png").symlink_to(root / "b" / "2.png")  # the same file twice: listed once
    with pytest.warns(DataWarning, match=r"skipped 3 symbolic link.*1 lead outside it.*2 lead into a folder"):
        found = list_images(root)
    assert sorted(p.name for p in found) == ["1.png", "2.png"]
    # Given a class folder as the root, a link to its sibling is not followed: classes never mix.
    with pytest.warns(DataWarning, match="lead outside it"):
        assert [p.name for p in list_images(root / "a")] == ["1.png"]


# ----------------------------------------------------------------- rules


def test_default_size_rule():
    assert default_image_size(28, 28) == 32
    assert default_image_size(8, 10) == 16
    assert default_image_size(480, 640) == 128
    assert default_image_size(50, 64) == 64
    infos = [ImageInfo(str(i), "L", True, s, s) for i, s in enumerate((28, 28, 28, 300, 500))]
    assert choose_size(infos) == 32  # the median image, not the first or the largest


def test_channel_rule_majority_with_warning(tmp_path):
    files = [save(tmp_path / f"g{i}.png", 10 * i, size=(28, 28)) for i in range(3)]
    files.append(save(tmp_path / "c.jpg", 200, mode="RGB", size=(30, 20)))
    with pytest.warns(DataWarning, match=r"converted 1 of 4 images to grayscale \(3 grayscale, 1 colour") as w:
        x, c, s = read_images(files)
    assert str(files[-1]) in str(w[0].message)
    assert (x.shape, c, s) == ((4, 1, 32, 32), 1, 32)
    assert x.dtype == np.uint8 and (x[1] == 10).all()


def test_channel_rule_tie_gives_rgb_and_explicit_channels(tmp_path):
    gray = save(tmp_path / "g.png", 77)
    rgb = save(tmp_path / "c.png", 10, mode="RGB")
    with pytest.warns(DataWarning, match="to RGB"):
        x, c, _ = read_images([gray, rgb])
    assert c == 3 and (x[0] == 77).all()  # gray replicated to 3 channels
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit choice converts silently
        x1, c1, s1 = read_images([gray, rgb], channels=1, size=24)
    assert (x1.shape, c1, s1) == ((2, 1, 24, 24), 1, 24)


def test_modes_are_converted_to_eight_bits(tmp_path):
    a16 = tmp_path / "a16.png"
    Image.fromarray(np.full((16, 16), 257 * 40, np.uint16)).save(a16)
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (16, 16), (90, 90, 90, 0)).save(rgba)
    pal = tmp_path / "pal.png"
    Image.new("L", (16, 16), 33).convert("P").save(pal)
    infos = image_info([a16, rgba, pal])
    assert [i.gray for i in infos] == [True, False, True]  # a palette of grays counts as grayscale
    x, _, _ = read_images([a16, rgba, pal], channels=1, size=16)
    assert (x[0] == 40).all() and (x[1] == 90).all() and (x[2] == 33).all()
    f = Image.fromarray(np.full((16, 16), 0.5, np.float32), "F")
    assert (read_images([f], channels=1, size=16)[0] == 128).all()  # floats in [0, 1] scale by 255


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((20, 40), np.uint8)
    a[:, 20:] = 255  # left half black, right half white, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    p = tmp_path / "rotated.png"
    Image.fromarray(a).save(p, exif=exif.tobytes())
    x, _, _ = read_images([p], channels=1, size=40)
    # Displayed upright, the white half is the bottom one.
    assert x[0, 0, :10].mean() < 10 and x[0, 0, -10:].mean() > 245
    plain, _, _ = read_images([Image.fromarray(a)], channels=1, size=40)
    assert plain[0, 0, :, :10].mean() < 10  # without the tag: stored orientation


def test_arrays_pil_images_and_batches(tmp_path):
    gray = np.full((10, 12), 5, np.uint8)
    hwc = np.full((10, 12, 3), 0.5, np.float32)  # floats in [0, 1]
    x, c, s = read_images([gray, hwc, Image.new("RGB", (12, 10), (1, 2, 3))], channels=3, size=16)
    assert x.shape == (3, 3, 16, 16) and (x[0] == 5).all() and (x[1] == 128).all()
    assert x[2, :, 0, 0].tolist() == [1, 2, 3]
    batch = np.zeros((4, 1, 28, 28), np.uint8)
    xb, cb, sb = read_images(batch)
    assert (xb.shape, cb, sb) == ((4, 1, 32, 32), 1, 32)
    with pytest.raises(AgadError, match="channels must be 1"):
        read_images(batch, channels=2)
    with pytest.raises(AgadError, match="from 1 to 1024"):
        read_images(batch, size=2048)
    with pytest.raises(AgadError, match="no images"):
        read_images([])


def test_expand_items_and_is_image_input(tmp_path):
    save(tmp_path / "d" / "a.png")
    save(tmp_path / "d" / "b.png")
    pil = Image.new("L", (4, 4))
    items = expand_items([tmp_path / "d", pil])
    assert [getattr(i, "name", None) for i in items[:2]] == ["a.png", "b.png"] and items[2] is pil
    assert is_image_input(str(tmp_path)) and is_image_input([pil]) and not is_image_input(np.zeros((2, 4, 4)))
    with pytest.raises(DataError, match="is a folder"):
        read_images([tmp_path / "d"])


def test_unreadable_file_is_one_data_error(tmp_path):
    good = save(tmp_path / "ok.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(save(tmp_path / "x.png").read_bytes()[:40])  # cut inside the image data
    with pytest.raises(DataError, match="cannot read image") as e:
        read_images([good, bad], channels=1, size=16)
    assert str(bad) in one_line(e)


def test_read_masks_binary(tmp_path):
    m255 = np.zeros((8, 8), np.uint8)
    m255[:4] = 255
    p = tmp_path / "m_mask.png"
    Image.fromarray(m255).save(p)
    m01 = (m255 > 0).astype(np.uint8)  # some datasets store 0/1
    out = read_masks([p, m01], 8)
    assert out.shape == (2, 1, 8, 8) and set(np.unique(out)) == {0, 1}
    assert (out[0, 0, :4] == 1).all() and (out[0, 0, 4:] == 0).all() and np.array_equal(out[0], out[1])


def test_check_compatible_warns_on_mode_and_size(tmp_path):
    rgb = save(tmp_path / "big.jpg", 100, mode="RGB", size=(600, 400))
    gray = save(tmp_path / "ok.png", size=(30, 30))
    with pytest.warns(DataWarning) as w:
        msgs = check_compatible([rgb, gray], channels=1, size=32)
    assert len(msgs) == 2 and len(w) == 2
    assert "1 of 2 input images are colour" in msgs[0] and str(rgb) in msgs[0]
    assert "more than 4x in size" in msgs[1] and "600x400" in msgs[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_compatible([gray], channels=1, size=32) == []
    with pytest.warns(DataWarning, match="are grayscale"):
        check_compatible([gray], channels=3, size=32)
