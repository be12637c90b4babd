"""Folders of images for the real-world setting (normal vs abnormal).

Accepted layouts::

    DIR/normal/...      DIR/abnormal/...                  (split made here)
    DIR/train/normal/   DIR/train/abnormal/   DIR/test/normal/   DIR/test/abnormal/

``abnormal`` may hold sub-folders (e.g. ``CNV/``, ``DME/``, ``drusen/``); every
image under it, at any depth, is label 1. Files are found recursively; names
starting with "." and files whose extension is not one of
png/jpg/jpeg/bmp/tif/tiff (any case) are ignored.

Without a train/test split the split is deterministic: within every folder
that directly holds images (``normal/``, ``abnormal/CNV/``, ...) the files are
sorted by name (Python string order) and the last ``test_fraction`` of them
(20% by default, rounded, at least 1) form the test set. This mirrors the
paper's LC25000 protocol, which takes the last 500 images of each class in
alphabetical order as the test set.

Images are resized to a square ``image_size`` (default 128, as in the paper)
with Pillow's bilinear filter; the aspect ratio is not kept. The dataset has
1 channel if every image is grayscale (modes "1", "L", "LA", "I", "I;16*",
"F") and 3 channels otherwise (grayscale images are then replicated to RGB).
16-bit grayscale is scaled to 8 bits (divided by 257).

Example:
    >>> x_tr, y_tr, x_te, y_te, names = load_folder("data/chest_xray")  # doctest: +SKIP
    >>> names  # doctest: +SKIP
    ['normal', 'abnormal']
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from agad.errors import AgadError, DataError

__all__ = ["IMAGE_EXTENSIONS", "CLASS_NAMES", "is_folder_dataset", "list_folder", "load_folder"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
CLASS_NAMES = ["normal", "abnormal"]

_GRAY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


def is_folder_dataset(path: str | os.PathLike) -> bool:
    """True if ``path`` has ``normal/`` and ``abnormal/`` (directly or under ``train/``)."""
    p = Path(path)
    return all((p / c).is_dir() for c in CLASS_NAMES) or all(
        (p / s / c).is_dir() for s in ("train", "test") for c in CLASS_NAMES
    )


def _images_by_folder(root: Path) -> dict[Path, list[Path]]:
    """Image files under ``root`` grouped by the folder that holds them, names sorted."""
    groups: dict[Path, list[Path]] = {}
    seen: set[str] = set()
    # Symlinked sub-folders are followed (datasets are often assembled from
    # links); `seen` stops a link cycle from walking forever.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files = sorted(
            f for f in filenames if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
        )
        if files:
            groups[Path(dirpath)] = [Path(dirpath) / f for f in files]
    return groups


def _n_test(n: int, fraction: float) -> int:
    # round(), at least 1; for n >= 2 keep at least one training image too.
    k = max(1, int(np.floor(n * fraction + 0.5)))
    return min(k, n - 1) if n >= 2 else k


def list_folder(
    path: str | os.PathLike, *, test_fraction: float = 0.2
) -> tuple[list[Path], np.ndarray, list[Path], np.ndarray]:
    """List image files and labels: ``(train_files, y_train, test_files, y_test)``.

    Only names are read here; see the module docstring for the layouts and
    the deterministic split.

    Example:
        >>> tr, y_tr, te, y_te = list_folder("data/oct")  # doctest: +SKIP
    """
    root = Path(path)
    if not 0.0 < test_fraction < 1.0:
        raise AgadError(f"test_fraction must be a float in (0, 1); got {test_fraction!r}")
    split_layout = all((root / s / c).is_dir() for s in ("train", "test") for c in CLASS_NAMES)
    if not split_layout and not all((root / c).is_dir() for c in CLASS_NAMES):
        raise DataError(
            f"{root} is not a folder dataset: expected sub-folders normal/ and abnormal/ "
            "(or train/{normal,abnormal} and test/{normal,abnormal}); create them and put the images inside"
        )
    out: dict[str, tuple[list[Path], list[int]]] = {"train": ([], []), "test": ([], [])}
    for label, cls in enumerate(CLASS_NAMES):
        if split_layout:
            for split in ("train", "test"):
                groups = _images_by_folder(root / split / cls)
                files = [f for g in groups.values() for f in g]
                if not files:
                    raise DataError(
                        f"folder {root / split / cls} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                        "add images or remove the train/test split"
                    )
                out[split][0].extend(files)
                out[split][1].extend([label] * len(files))
        else:
            groups = _images_by_folder(root / cls)
            if not groups:
                raise DataError(
                    f"folder {root / cls} holds no images ({', '.join(IMAGE_EXTENSIONS)}); add images to it"
                )
            for files in groups.values():
                k = _n_test(len(files), test_fraction)
                train, test = files[: len(files) - k], files[len(files) - k :]
                out["train"][0].extend(train)
                out["train"][1].extend([label] * len(train))
                out["test"][0].extend(test)
                out["test"][1].extend([label] * len(test))
    return (
        out["train"][0],
        np.asarray(out["train"][1], dtype=np.int64),
        out["test"][0],
        np.asarray(out["test"][1], dtype=np.int64),
    )


def _read_image(path: Path, size: int) -> tuple[np.ndarray, bool]:
    """Read one file, resized: (H, W) uint8 if grayscale else (H, W, 3)."""
    try:
        with Image.open(path) as img:
            img.load()
            gray = img.mode in _GRAY_MODES
            if img.mode.startswith("I;16") or img.mode == "I":
                # 16-bit scans: scale the full range to 8 bits instead of
                # Pillow's clipping conversion, which would saturate them.
                a = np.asarray(img, dtype=np.float64)
                scale = 257.0 if img.mode.startswith("I;16") or a.max() > 255 else 1.0
                img = Image.fromarray(np.clip(np.rint(a / scale), 0, 255).astype(np.uint8), "L")
            else:
                img = img.convert("L" if gray else "RGB")
            img = img.resize((size, size), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8), gray
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        # Pillow signals damaged files with any of these.
        raise DataError(
            f"cannot read image {path} ({type(exc).__name__}: {exc}); remove or replace the file"
        ) from None


def _read_all(files: list[Path], size: int) -> tuple[list[np.ndarray], bool]:
    arrays, all_gray = [], True
    for f in files:
        a, gray = _read_image(f, size)
        arrays.append(a)
        all_gray &= gray
    return arrays, all_gray


def _stack(arrays: list[np.ndarray], channels: int, size: int) -> np.ndarray:
    out = np.empty((len(arrays), channels, size, size), dtype=np.uint8)
    for i, a in enumerate(arrays):
        if a.ndim == 2:
            out[i] = a[None]  # broadcasts gray to 1 or 3 channels (same as convert("RGB"))
        else:
            out[i] = a.transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)
    return out


def load_folder(
    path: str | os.PathLike, *, image_size: int = 128, test_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Load a normal/abnormal folder dataset.

    Returns:
        ``(x_train, y_train, x_test, y_test, class_names)``: uint8
        (N, C, image_size, image_size) with C in {1, 3}, int64 labels
        (0 normal, 1 abnormal), and ``["normal", "abnormal"]``.

    Raises:
        DataError: wrong layout, empty folder, or an unreadable image (named).

    Example:
        >>> x_tr, y_tr, x_te, y_te, names = load_folder("data/oct", image_size=64)  # doctest: +SKIP
        >>> x_tr.shape[1:]  # doctest: +SKIP
        (1, 64, 64)
    """
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise AgadError(f"image_size must be a positive integer; got {image_size!r}")
    size = int(image_size)
    train_files, y_train, test_files, y_test = list_folder(path, test_fraction=test_fraction)
    train, gray_train = _read_all(train_files, size)
    test, gray_test = _read_all(test_files, size)
    channels = 1 if (gray_train and gray_test) else 3
    return (
        _stack(train, channels, size),
        y_train,
        _stack(test, channels, size),
        y_test,
        list(CLASS_NAMES),
    )
