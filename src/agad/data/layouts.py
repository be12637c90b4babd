"""Folder trees of images as they are distributed: one loader, :func:`load_folder`.

Layouts understood (checked in this order):

1. **Explicit folders** (anomalib's "folder" format): ``normal_dirs`` hold the
   normal training images, ``abnormal_dirs`` anomalous test images,
   ``normal_test_dirs`` normal test images and ``mask_dirs`` ground-truth
   masks of the anomalous images (matched by file stem, a ``_mask`` suffix
   allowed; with as many mask folders as abnormal folders, the i-th serves
   the i-th). Relative folders are taken inside ``root``.
2. **MVTec AD category**: ``train/good``, ``test/good``, ``test/<defect>/``
   and ``ground_truth/<defect>/<name>_mask.png``. Training uses
   ``train/good``; every test image is scored; the masks of good images are
   all zero. Given the root of the download (several categories), the error
   lists them; a root holding one category loads it.
3. **Class folders with splits**: ``train/``, ``test/`` and ``val/`` (also
   ``training``, ``testing``, ``valid``, ``validation``, any case), each
   holding one folder per class, e.g. ``chest_xray/{train,test,val}/{NORMAL,
   PNEUMONIA}``, ``OCT2017/{train,test}/{NORMAL,CNV,DME,DRUSEN}`` or
   ``Alzheimer's Dataset/{train,test}/{NonDemented,...}``. The training
   images of the other classes become labelled anomalies (for gamma > 0);
   ``val/`` becomes validation data.
4. **Class folders without splits**: one folder per class, e.g. LC25000's
   ``lung_image_sets/{lung_n,lung_aca,lung_scc}`` or ``normal/`` +
   ``abnormal/`` (whose sub-folders, such as ``abnormal/CNV``, all count as
   one class).
5. **Normal images only**: a folder that holds images (at any depth) and no
   class folders, or a single class folder named as the normal class:
   training data only, no test set.

A class folder's images are found at any depth (:func:`agad.data.images.list_images`,
including its symlink policy). The normal class is chosen by name, case
insensitive: ``normal_class`` when given, else the one class whose name is
in :data:`KNOWN_NORMAL_NAMES`; every other class is anomalous.

Without a test split (layouts 1 without ``normal_test_dirs``, and 4), **all**
anomalies go to the test set and only the normal images are split: a
``test_fraction`` of them (rounded, at least 1, leaving at least 1 for
training), drawn with ``np.random.default_rng(seed)``, are tested.

Images follow one channel rule and one size rule (:mod:`agad.data.images`):
the majority mode of the training images, and, without ``image_size``, the
larger side of the median training image (28 -> 32, clipped to [16, 128]).
The memory of all arrays is checked before any is allocated.

A layout that is not understood, or whose normal class is missing or
ambiguous, raises one :class:`DataError` that lists the sub-folders found with
their image counts and names the option that maps them (``--normal-class``,
``--normal-dir``, ...).

Example:
    >>> data = load_folder("data/chest_xray", normal_class="NORMAL")  # doctest: +SKIP
    >>> data.layout, data.x_train_normal.shape  # doctest: +SKIP
    ("class folders with train/test/val splits, normal class 'NORMAL'", (1341, 1, 128, 128))
    >>> split = data.to_split(gamma=0.05)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from agad.data.bounds import check_memory, images_nbytes
from agad.data.base import Dataset
from agad.data.images import (
    IMAGE_EXTENSIONS,
    DataWarning,
    ImageInfo,
    _check_channels_size,
    _conversion_note,
    _decode_into,
    _inside,
    _Skipped,
    _walk,
    choose_channels,
    choose_size,
    image_info,
    read_masks,
)
from agad.data.protocol import Split, one_class_split
from agad.errors import AgadError, DataError

__all__ = ["KNOWN_NORMAL_NAMES", "FolderData", "FolderPlan", "load_folder", "scan_folder"]

# Names of the normal class in the datasets this project uses (compared in lower case):
# most medical sets ("NORMAL"), MVTec AD ("good"), the Alzheimer's MRI set ("NonDemented")
# and LC25000 ("lung_n", "colon_n").
KNOWN_NORMAL_NAMES = ("normal", "good", "nondemented", "lung_n", "colon_n")

_SPLITS = {
    "train": ("train", "training"),
    "test": ("test", "testing"),
    "val": ("val", "valid", "validation"),
}
_IGNORED_DIRS = {"__macosx"}
_SHOWN = 8  # how many folders an error message lists


# ----------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class FolderPlan:
    """What :func:`scan_folder` found: files and labels, before any pixel is read.

    Attributes:
        root: the folder given.
        layout: a short description for logs.
        class_names: class 0 is the normal class; the rest are anomalous.
        train: (path, class) of the training images, normal ones first.
        test: (path, class) of the test images.
        val: (path, class) of the validation images; None without a val split.
        test_masks: one mask path per test image (None for normal images),
            or None when the layout has no masks.
    """

    root: Path
    layout: str
    class_names: list[str]
    train: list[tuple[Path, int]]
    test: list[tuple[Path, int]]
    val: list[tuple[Path, int]] | None = None
    test_masks: list[Path | None] | None = None

    @property
    def n_train_normal(self) -> int:
        return sum(1 for _, c in self.train if c == 0)


@dataclass(frozen=True, eq=False)
class FolderData:
    """A folder dataset read into arrays (see :func:`load_folder`).

    Attributes:
        root, layout, class_names: as in :class:`FolderPlan`.
        x_train: uint8 (n, C, S, S), the normal training images first, then
            the labelled anomalies; ``y_train`` their classes (0 = normal).
        x_test: uint8 (m, C, S, S); ``y_test`` 0 normal / 1 anomaly;
            ``test_classes`` the class of each; ``test_paths`` the files.
        test_masks: uint8 (m, 1, S, S) of 0/1 (1 = anomalous pixel), or None.
        x_val, y_val, val_paths: validation images, 0/1 labels and files, or
            None without a val split.
        channels, image_size: C and S.
    """

    root: Path
    layout: str
    class_names: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    train_paths: list[Path]
    x_test: np.ndarray
    y_test: np.ndarray
    test_classes: np.ndarray
    test_paths: list[Path]
    test_masks: np.ndarray | None
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    val_paths: list[Path] | None
    channels: int
    image_size: int
    n_train_normal: int = field(default=0)

    @property
    def normal_class(self) -> str:
        return self.class_names[0]

    @property
    def x_train_normal(self) -> np.ndarray:
        """The normal training images (a view of ``x_train``)."""
        return self.x_train[: self.n_train_normal]

    @property
    def x_train_anomalous(self) -> np.ndarray:
        """Labelled anomalies available for gamma > 0 (a view; may be empty)."""
        return self.x_train[self.n_train_normal :]

    def summary(self) -> str:
        """One line for logs: the layout and the image counts."""
        n_an = len(self.x_train) - self.n_train_normal
        test = (
            f"test {int((self.y_test == 0).sum())} normal + {int(self.y_test.sum())} anomalous"
            if len(self.y_test) else "no test set"
        )
        val = f", val {len(self.y_val)}" if self.y_val is not None else ""
        masks = ", with masks" if self.test_masks is not None else ""
        return (
            f"{self.root}: {self.layout}; train {self.n_train_normal} normal + {n_an} anomalous, {test}{val}"
            f"{masks}; {self.channels}x{self.image_size}x{self.image_size}"
        )

    def to_dataset(self, name: str | None = None) -> Dataset:
        """A :class:`~agad.data.Dataset` whose class 0 is the normal class (for ``one_class_split(ds, 0)``)."""
        return Dataset(
            name or self.root.name or str(self.root),
            self.x_train,
            self.y_train,
            self.x_test,
            self.test_classes,
            list(self.class_names),
        )

    def to_split(self, gamma: float = 0.0, *, known_classes: int | None = None, seed: int = 0) -> Split:
        """The one-class :class:`~agad.data.Split` (normal class 0, one-vs-rest).

        Labelled anomalies (gamma > 0) are drawn from ``x_train_anomalous``
        exactly as :func:`agad.data.one_class_split` draws them.
        """
        if gamma and len(self.x_train) == self.n_train_normal:
            raise AgadError(
                f"gamma={gamma} needs labelled anomalies, but {self.root} ({self.layout}) has no anomalous "
                "training images (without a train/ split all anomalies are test images); use gamma 0 or a "
                "layout with anomaly classes under train/"
            )
        return one_class_split(self.to_dataset(), 0, gamma=gamma, known_classes=known_classes, seed=seed)


# ----------------------------------------------------------------- folders
def _dirs(folder: Path, boundary: str, skipped: _Skipped) -> list[Path]:
    """Sub-folders of ``folder``, sorted by name; links followed only inside ``boundary``."""
    out = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"cannot list folder {folder} ({exc.strerror or exc}); check its permissions") from None
    for e in entries:
        if e.name.startswith(".") or e.name.lower() in _IGNORED_DIRS:
            continue
        if e.is_symlink():
            real = os.path.realpath(e.path)
            if not _inside(real, boundary) or real == boundary:
                skipped.add("outside" if not _inside(real, boundary) else "loop", e.path)
                continue
        try:
            if e.is_dir():
                out.append(Path(e.path))
        except OSError:
            continue
    return out


def _direct_images(folder: Path) -> int:
    try:
        return sum(
            1 for e in os.scandir(folder)
            if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS)
        )
    except OSError:
        return 0


def _find(subdirs: list[Path], names: Sequence[str]) -> Path | None:
    """The first of ``subdirs`` whose name is one of ``names`` (any case)."""
    wanted = {n.lower() for n in names}
    hits = [d for d in subdirs if d.name.lower() in wanted]
    return hits[0] if hits else None


def _listing(groups: dict[str, list[Path]]) -> str:
    shown = [f"{name}/ ({len(files)} images)" for name, files in list(groups.items())[:_SHOWN]]
    more = len(groups) - _SHOWN
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _classes(folder: Path, boundary: str, skipped: _Skipped) -> dict[str, list[Path]]:
    """Class folder name -> its images (any depth); folders without images are left out."""
    out = {}
    for d in _dirs(folder, boundary, skipped):
        files = _walk(d, skipped)
        if files:
            out[d.name] = files
    return out


def _pick_normal(
    classes: dict[str, list[Path]], normal_class: str | None, where: Path
) -> str:
    names = list(classes)
    if normal_class is not None:
        hits = [n for n in names if n.lower() == normal_class.lower()]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise DataError(
                f"{where} has several class folders named {normal_class!r} in different cases "
                f"({', '.join(hits)}); rename one of them"
            )
        raise DataError(
            f"{where} has no class folder {normal_class!r}: found {_listing(classes)}; pass --normal-class "
            "with one of these names (normal_class=...)"
        )
    hits = [n for n in names if n.lower() in KNOWN_NORMAL_NAMES]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise DataError(
            f"{where} has several classes that look normal ({', '.join(hits)}): found {_listing(classes)}; "
            f"pass --normal-class NAME (normal_class=...) to choose one"
        )
    raise DataError(
        f"cannot tell which class of {where} is normal: found {_listing(classes)}; pass --normal-class NAME "
        f"(normal_class=..., e.g. --normal-class {names[0]}) or --normal-dir DIR --abnormal-dir DIR"
    )


def _n_test(n: int, fraction: float) -> int:
    # round half up, at least 1, and at least one image left for training
    if n < 2:
        return 0
    return min(n - 1, max(1, int(math.floor(n * fraction + 0.5))))


def _split_normals(files: list[Path], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    k = _n_test(len(files), fraction)
    test = set(np.random.default_rng(seed).permutation(len(files))[:k].tolist())
    return [f for i, f in enumerate(files) if i not in test], [f for i, f in enumerate(files) if i in test]


def _order(names: list[str], normal: str) -> list[str]:
    return [normal] + sorted((n for n in names if n != normal), key=lambda n: (n.lower(), n))


# ----------------------------------------------------------------- layouts
def _is_mvtec(folder: Path) -> bool:
    return (folder / "train" / "good").is_dir() and (folder / "test").is_dir()


def _mask_key(path: Path, base: Path) -> str:
    stem = path.stem[:-5] if path.stem.endswith("_mask") else path.stem
    rel = path.parent.relative_to(base)
    return str(rel / stem)


def _mask_index(folder: Path, skipped: _Skipped) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for m in _walk(folder, skipped):
        key = _mask_key(m, folder)
        if key in index:
            raise DataError(
                f"masks {index[key]} and {m} both match images named {Path(key).name}; keep one of them"
            )
        index[key] = m
    return index


def _missing_masks(missing: list[Path], where: str) -> DataError:
    return DataError(
        f"{len(missing)} anomalous test image(s) have no mask in {where} (e.g. {missing[0]}, expected a file "
        f"named {missing[0].stem}_mask.png or {missing[0].stem}.png); add the masks or leave out the mask folder"
    )


def _scan_mvtec(root: Path, skipped: _Skipped, normal_class: str | None, category: str | None) -> FolderPlan:
    boundary = os.path.realpath(root)
    if normal_class is not None and normal_class.lower() != "good":
        raise DataError(
            f"{root} is an MVTec AD category, whose normal class is 'good'; leave out --normal-class "
            f"{normal_class} (normal_class=...)"
        )
    train = _walk(root / "train" / "good", skipped)
    if not train:
        raise DataError(f"{root / 'train' / 'good'} holds no images; re-extract the MVTec AD category")
    test_classes = _classes(root / "test", boundary, skipped)
    names = _order(list(dict.fromkeys([*test_classes, "good"])), "good")
    index = {n: i for i, n in enumerate(names)}
    test = [(p, index[c]) for c in names for p in test_classes.get(c, [])]
    gt = root / "ground_truth"
    masks = None
    if gt.is_dir():
        masks, missing = [], []
        for c in names[1:]:
            idx = _mask_index(gt / c, skipped) if (gt / c).is_dir() else {}
            for p in test_classes.get(c, []):
                m = idx.get(_mask_key(p, root / "test" / c))
                if m is None:
                    missing.append(p)
                masks.append(m)
        if missing:
            raise _missing_masks(missing, str(gt))
        masks = [None] * len(test_classes.get("good", [])) + masks
    where = f"MVTec AD category {category or root.name!r}"
    return FolderPlan(root, where + ("" if masks is not None else " (no ground_truth/ masks)"), names,
                      [(p, 0) for p in train], test, None, masks)


def _scan_splits(root: Path, splits: dict[str, Path], skipped: _Skipped, normal_class: str | None,
                 test_fraction: float, seed: int) -> FolderPlan:
    boundary = os.path.realpath(root)
    found = {s: _classes(d, boundary, skipped) for s, d in splits.items()}
    found = {s: groups for s, groups in found.items() if groups or s == "train"}  # an empty test/ or val/: none
    train = found["train"]
    if not train:
        n = _direct_images(splits["train"])
        raise DataError(
            f"{splits['train']} has no class folders with images"
            + (f" (it holds {n} images directly)" if n else "")
            + "; put the images in one folder per class (e.g. train/NORMAL, train/PNEUMONIA) or pass "
            "--normal-dir DIR (normal_dirs=...)"
        )
    normal = _pick_normal(train, normal_class, splits["train"])
    # Classes match across splits whatever their case; the train split's spelling is kept.
    canon = {n.lower(): n for n in train}
    for s in ("test", "val"):
        for n in found.get(s, {}):
            canon.setdefault(n.lower(), n)
    names = _order(list(dict.fromkeys(canon.values())), normal)
    index = {n.lower(): i for i, n in enumerate(names)}

    def labelled(groups: dict[str, list[Path]]) -> list[tuple[Path, int]]:
        pairs = [(p, index[n.lower()]) for n, files in groups.items() for p in files]
        return sorted(pairs, key=lambda pc: (pc[1] != 0, pc[1], pc[0]))  # normal first, then class by class

    train_pairs = labelled(train)
    if "test" in found:
        test_pairs = labelled(found["test"])
        layout_splits = "/".join(s for s in ("train", "test", "val") if s in found)
    else:
        normals = [p for p, c in train_pairs if c == 0]
        keep, held = _split_normals(normals, test_fraction, seed)
        test_pairs = [(p, 0) for p in held] + [(p, c) for p, c in train_pairs if c != 0]
        train_pairs = [(p, 0) for p in keep]
        layout_splits = "/".join(s for s in ("train", "val") if s in found) + " (no test split)"
    val_pairs = labelled(found["val"]) if "val" in found else None
    others = [d for d in _dirs(root, boundary, skipped) if d not in splits.values()]
    ignored = {d.name: f for d in others if (f := _walk(d, _Skipped()))}
    if ignored:
        warnings.warn(
            f"ignored sub-folders of {root} beside its splits: {_listing(ignored)}", DataWarning, stacklevel=4
        )
    return FolderPlan(root, f"class folders with {layout_splits} splits, normal class {normal!r}", names,
                      train_pairs, test_pairs, val_pairs, None)


def _scan_classes(root: Path, skipped: _Skipped, normal_class: str | None, test_fraction: float,
                  seed: int) -> FolderPlan:
    boundary = os.path.realpath(root)
    classes = _classes(root, boundary, skipped)
    direct = _direct_images(root)
    if direct and classes:
        raise DataError(
            f"{root} holds {direct} images directly and class folders {_listing(classes)}; move the loose "
            "images into a class folder, or pass --normal-dir DIR (normal_dirs=...) and --abnormal-dir DIR"
        )
    if direct:
        files = _walk(root, skipped)
        return FolderPlan(root, "normal images only (no test set)", ["normal"], [(p, 0) for p in files], [])
    if not classes:
        raise DataError(
            f"{root} holds no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) in it or its sub-folders; "
            "check the path"
        )
    try:
        normal = _pick_normal(classes, normal_class, root)
    except DataError as exc:
        # A wrapper folder around the real dataset (archive/OCT2017/train/...): say where to point instead.
        split_names = _SPLITS["train"] + _SPLITS["test"]
        nested = [n for n in classes
                  if _find(_dirs(root / n, boundary, _Skipped()), split_names) or _is_mvtec(root / n)]
        if not nested:
            raise
        raise DataError(f"{exc}; {root / nested[0]} has its own train/ or test/ folders: point --data at it") from None
    if len(classes) == 1:
        return FolderPlan(root, f"normal images only in {normal}/ (no test set)", [normal],
                          [(p, 0) for p in classes[normal]], [])
    names = _order(list(classes), normal)
    keep, held = _split_normals(classes[normal], test_fraction, seed)
    test = [(p, 0) for p in held] + [(p, i) for i, n in enumerate(names) if i for p in classes[n]]
    return FolderPlan(root, f"class folders (no split), normal class {normal!r}", names,
                      [(p, 0) for p in keep], test, None, None)


def _resolve_dirs(root: Path, dirs: Sequence[str | os.PathLike], option: str) -> list[Path]:
    out = []
    for d in dirs:
        p = Path(d).expanduser()
        p = p if p.is_absolute() else root / p
        if not p.is_dir():
            raise DataError(f"{option} {d}: folder {p} does not exist; give a folder of images (inside {root} "
                            "when relative)")
        out.append(p)
    return out


def _scan_explicit(root: Path, skipped: _Skipped, normal_class: str | None, normal_dirs, abnormal_dirs,
                   normal_test_dirs, mask_dirs, test_fraction: float, seed: int) -> FolderPlan:
    if not normal_dirs:
        raise AgadError(
            "abnormal, normal-test and mask folders need --normal-dir DIR (normal_dirs=...) for the "
            "normal training images"
        )
    normal_p = _resolve_dirs(root, normal_dirs, "--normal-dir")
    abnormal_p = _resolve_dirs(root, abnormal_dirs, "--abnormal-dir")
    ntest_p = _resolve_dirs(root, normal_test_dirs, "--normal-test-dir")
    mask_p = _resolve_dirs(root, mask_dirs, "--mask-dir")
    if mask_p and not abnormal_p:
        raise AgadError("--mask-dir needs --abnormal-dir: masks belong to the anomalous test images")

    def images(paths: list[Path], option: str) -> list[list[Path]]:
        out = []
        for p in paths:
            files = _walk(p, skipped)
            if not files:
                raise DataError(f"{option} {p} holds no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")
            out.append(files)
        return out

    normals = [f for fs in images(normal_p, "--normal-dir") for f in fs]
    abnormal = images(abnormal_p, "--abnormal-dir")
    ntest = [f for fs in images(ntest_p, "--normal-test-dir") for f in fs]
    if not ntest and abnormal:
        normals, ntest = _split_normals(normals, test_fraction, seed)
    names = [normal_class or "normal"] + [str(d) for d in abnormal_dirs]
    test = [(p, 0) for p in ntest] + [(p, i + 1) for i, fs in enumerate(abnormal) for p in fs]
    masks = None
    if mask_p:
        if len(mask_p) == len(abnormal_p):
            indices = [(_mask_index(m, skipped), m) for m in mask_p]
        else:
            pooled: dict[str, Path] = {}
            for m in mask_p:
                for k, v in _mask_index(m, skipped).items():
                    k = Path(k).name
                    if k in pooled:
                        raise DataError(f"masks {pooled[k]} and {v} both match images named {k}; keep one")
                    pooled[k] = v
            indices = None
        masks, missing = [None] * len(ntest), []
        for i, fs in enumerate(abnormal):
            for p in fs:
                if indices is not None:
                    idx, _ = indices[i]
                    m = idx.get(_mask_key(p, abnormal_p[i]))
                else:
                    m = pooled.get(p.stem)
                if m is None:
                    missing.append(p)
                masks.append(m)
        if missing:
            raise _missing_masks(missing, ", ".join(str(m) for m in mask_p))
    layout = "explicit folders" + ("" if test else " (normal images only, no test set)")
    return FolderPlan(root, layout, names, [(p, 0) for p in normals], test, None, masks)


def _check_options(test_fraction, seed, normal_class) -> tuple[float, int]:
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, numbers.Real)
        or not 0.0 < float(test_fraction) < 1.0
    ):
        raise AgadError(f"test_fraction must be a float in (0, 1); got {test_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise AgadError(f"seed must be an integer; got {seed!r}")
    if normal_class is not None and not isinstance(normal_class, str):
        raise AgadError(
            f"normal_class for a folder dataset is a class folder's name (e.g. 'NORMAL'); got {normal_class!r}"
        )
    return float(test_fraction), int(seed)


def _as_list(dirs) -> list:
    if dirs is None:
        return []
    if isinstance(dirs, (str, os.PathLike)):
        return [dirs]
    return list(dirs)


def scan_folder(
    root: str | os.PathLike,
    *,
    normal_class: str | None = None,
    normal_dirs: Sequence[str | os.PathLike] = (),
    abnormal_dirs: Sequence[str | os.PathLike] = (),
    normal_test_dirs: Sequence[str | os.PathLike] = (),
    mask_dirs: Sequence[str | os.PathLike] = (),
    seed: int = 0,
    test_fraction: float = 0.2,
) -> FolderPlan:
    """Detect the layout of ``root`` and list its files (no pixels read); see the module docstring.

    Raises:
        DataError: missing folder, a layout that is not understood (the message
            lists what was found), a missing or ambiguous normal class.

    Example:
        >>> plan = scan_folder("data/OCT2017")  # doctest: +SKIP
        >>> plan.class_names  # doctest: +SKIP
        ['NORMAL', 'CNV', 'DME', 'DRUSEN']
    """
    test_fraction, seed = _check_options(test_fraction, seed, normal_class)
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"dataset folder {path} does not exist; check the path")
    skipped = _Skipped()
    normal_dirs, abnormal_dirs = _as_list(normal_dirs), _as_list(abnormal_dirs)
    normal_test_dirs, mask_dirs = _as_list(normal_test_dirs), _as_list(mask_dirs)
    if normal_dirs or abnormal_dirs or normal_test_dirs or mask_dirs:
        plan = _scan_explicit(path, skipped, normal_class, normal_dirs, abnormal_dirs, normal_test_dirs,
                              mask_dirs, test_fraction, seed)
    elif _is_mvtec(path):
        plan = _scan_mvtec(path, skipped, normal_class, None)
    else:
        boundary = os.path.realpath(path)
        subdirs = _dirs(path, boundary, skipped)
        categories = [d for d in subdirs if _is_mvtec(d)]
        splits = {s: d for s, names in _SPLITS.items() if (d := _find(subdirs, names)) is not None}
        if len(categories) > 1:
            shown = ", ".join(d.name for d in categories[:_SHOWN * 2])
            more = len(categories) - _SHOWN * 2
            raise DataError(
                f"{path} holds {len(categories)} MVTec AD categories ({shown}"
                f"{f' and {more} more' if more > 0 else ''}); point --data at one of them, "
                f"e.g. {categories[0]}"
            )
        if len(categories) == 1 and not splits:
            plan = _scan_mvtec(categories[0], skipped, normal_class, categories[0].name)
        elif "train" in splits:
            plan = _scan_splits(path, splits, skipped, normal_class, test_fraction, seed)
        elif splits:
            raise DataError(
                f"{path} has {'/'.join(d.name for d in splits.values())}/ but no train/ split: found "
                f"{_listing({d.name: _walk(d, _Skipped()) for d in subdirs})}; add train/ or pass "
                "--normal-dir DIR (normal_dirs=...)"
            )
        else:
            plan = _scan_classes(path, skipped, normal_class, test_fraction, seed)
    skipped.warn(path)
    if not plan.train:
        raise DataError(f"{path} ({plan.layout}) has no normal training images; add some or check the folders")
    return plan


# ----------------------------------------------------------------- loading
def load_folder(
    root: str | os.PathLike,
    *,
    normal_class: str | None = None,
    normal_dirs: Sequence[str | os.PathLike] = (),
    abnormal_dirs: Sequence[str | os.PathLike] = (),
    normal_test_dirs: Sequence[str | os.PathLike] = (),
    mask_dirs: Sequence[str | os.PathLike] = (),
    image_size: int | None = None,
    channels: int | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> FolderData:
    """Read a folder tree of images (any layout of the module docstring) into arrays.

    Args:
        root: the folder (for explicit folders, what relative ones are inside).
        normal_class: the normal class folder's name (any case); default: the
            one class named like :data:`KNOWN_NORMAL_NAMES`.
        normal_dirs, abnormal_dirs, normal_test_dirs, mask_dirs: explicit
            folders (each a list); see the module docstring.
        image_size: square size S (1 to 1024); default: the size rule.
        channels: 1 or 3; default: the majority mode of the training images.
        seed, test_fraction: the split of normal images when the layout has
            no test split.

    Returns:
        :class:`FolderData`.

    Raises:
        DataError / AgadError: see :func:`scan_folder`; unreadable images
            (named); arrays that would not fit in memory.

    Example:
        >>> data = load_folder("data/mvtec/bottle", image_size=64)  # doctest: +SKIP
        >>> data.test_masks.shape[1:]  # doctest: +SKIP
        (1, 64, 64)
    """
    channels, size = _check_channels_size(channels, image_size)
    plan = scan_folder(root, normal_class=normal_class, normal_dirs=normal_dirs, abnormal_dirs=abnormal_dirs,
                       normal_test_dirs=normal_test_dirs, mask_dirs=mask_dirs, seed=seed,
                       test_fraction=test_fraction)
    return read_plan(plan, image_size=size, channels=channels)


def read_plan(plan: FolderPlan, *, image_size: int | None = None, channels: int | None = None) -> FolderData:
    """Read the files of a :class:`FolderPlan` (from :func:`scan_folder`) into a :class:`FolderData`."""
    channels, size = _check_channels_size(channels, image_size)
    val = plan.val or []
    files = [p for p, _ in plan.train] + [p for p, _ in val] + [p for p, _ in plan.test]
    n_train, n_val, n_test = len(plan.train), len(val), len(plan.test)
    mask_files = [m for m in plan.test_masks if m is not None] if plan.test_masks is not None else []
    infos: list[ImageInfo] = image_info(files + mask_files)
    infos, mask_infos = infos[: len(files)], infos[len(files):]
    if channels is None:
        channels = choose_channels(infos[:n_train])
        note = _conversion_note(infos, channels)
        if note:
            warnings.warn(f"{plan.root}: {note}", DataWarning, stacklevel=3)
    if size is None:
        size = choose_size(infos[:n_train])
    if plan.test_masks is not None:
        _check_mask_sizes(plan, infos[n_train + n_val:], mask_infos)
    check_memory(
        images_nbytes(len(files), channels, size) + (images_nbytes(n_test, 1, size) if plan.test_masks else 0),
        what=f"{plan.root}: {len(files)} images of {channels}x{size}x{size}",
        hint="pass a smaller --image-size (e.g. 128) or use a smaller folder",
    )

    def read(pairs: list[tuple[Path, int]]) -> np.ndarray:
        out = np.empty((len(pairs), channels, size, size), dtype=np.uint8)
        _decode_into(out, [p for p, _ in pairs], channels, size)
        return out

    x_train = read(plan.train)
    x_test = read(plan.test)
    masks = None
    if plan.test_masks is not None:
        masks = np.zeros((n_test, 1, size, size), dtype=np.uint8)
        where = [i for i, m in enumerate(plan.test_masks) if m is not None]
        if where:
            masks[where] = read_masks(mask_files, size)
    test_classes = np.array([c for _, c in plan.test], dtype=np.int64)
    x_val = y_val = val_paths = None
    if plan.val is not None:
        x_val = read(plan.val)
        y_val = np.array([int(c != 0) for _, c in plan.val], dtype=np.int64)
        val_paths = [p for p, _ in plan.val]
    return FolderData(
        root=plan.root,
        layout=plan.layout,
        class_names=list(plan.class_names),
        x_train=x_train,
        y_train=np.array([c for _, c in plan.train], dtype=np.int64),
        train_paths=[p for p, _ in plan.train],
        x_test=x_test,
        y_test=(test_classes != 0).astype(np.int64),
        test_classes=test_classes,
        test_paths=[p for p, _ in plan.test],
        test_masks=masks,
        x_val=x_val,
        y_val=y_val,
        val_paths=val_paths,
        channels=channels,
        image_size=size,
        n_train_normal=plan.n_train_normal,
    )


def _check_mask_sizes(plan: FolderPlan, test_infos: list[ImageInfo], mask_infos: list[ImageInfo]) -> None:
    it = iter(mask_infos)
    for (path, _), m, info in zip(plan.test, plan.test_masks or [], test_infos):
        if m is None:
            continue
        mi = next(it)
        if (mi.width, mi.height) != (info.width, info.height):
            raise DataError(
                f"mask {m} is {mi.width}x{mi.height} but its image {path} is {info.width}x{info.height}; "
                "a mask must have its image's size"
            )
