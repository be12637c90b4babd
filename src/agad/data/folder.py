"""The normal/abnormal folder API, kept for existing callers; see :mod:`agad.data.layouts`.

Every folder layout (``normal/`` + ``abnormal/``, ``train/`` and ``test/``
splits, class folders, MVTec AD, explicit folders) is read by
:func:`agad.data.layouts.load_folder`; the functions here return its result
in the older shapes: labels 0 (normal) / 1 (any anomalous class) and the
class names ``["normal", "abnormal"]``.

Example:
    >>> x_tr, y_tr, x_te, y_te, names = load_folder("data/chest_xray")  # doctest: +SKIP
    >>> names  # doctest: +SKIP
    ['normal', 'abnormal']
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from agad.data.images import IMAGE_EXTENSIONS
from agad.errors import AgadError

__all__ = ["IMAGE_EXTENSIONS", "CLASS_NAMES", "is_folder_dataset", "list_folder", "load_folder"]

CLASS_NAMES = ["normal", "abnormal"]


def is_folder_dataset(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder of images whose layout :func:`agad.data.layouts.scan_folder` understands.

    IDX and CIFAR folders are not folder datasets. Never raises.

    >>> is_folder_dataset("/no/such/folder")
    False
    """
    from agad.data.cifar import find_cifar
    from agad.data.datasets import _has_idx
    from agad.data.layouts import scan_folder

    p = Path(path)
    try:
        if not p.is_dir() or _has_idx(p) or find_cifar(p) is not None:
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scan_folder(p)
        return True
    except (AgadError, OSError):
        return False


def list_folder(
    path: str | os.PathLike, *, test_fraction: float = 0.2, seed: int = 0, normal_class: str | None = None
) -> tuple[list[Path], np.ndarray, list[Path], np.ndarray]:
    """Image files and 0/1 labels: ``(train_files, y_train, test_files, y_test)``; no pixels are read.

    Example:
        >>> tr, y_tr, te, y_te = list_folder("data/oct")  # doctest: +SKIP
    """
    from agad.data.layouts import scan_folder

    plan = scan_folder(path, test_fraction=test_fraction, seed=seed, normal_class=normal_class)
    return (
        [p for p, _ in plan.train],
        np.array([int(c != 0) for _, c in plan.train], dtype=np.int64),
        [p for p, _ in plan.test],
        np.array([int(c != 0) for _, c in plan.test], dtype=np.int64),
    )


def load_folder(
    path: str | os.PathLike,
    *,
    image_size: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    normal_class: str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Load a folder dataset as ``(x_train, y_train, x_test, y_test, ["normal", "abnormal"])``.

    Labels are 0 (normal) and 1 (anomalous); images are uint8 (N, C, S, S).

    Example:
        >>> x_tr, y_tr, x_te, y_te, names = load_folder("data/oct", image_size=64)  # doctest: +SKIP
        >>> x_tr.shape[1:]  # doctest: +SKIP
        (1, 64, 64)
    """
    from agad.data.layouts import load_folder as load

    data = load(path, image_size=image_size, test_fraction=test_fraction, seed=seed, normal_class=normal_class)
    return data.x_train, (data.y_train != 0).astype(np.int64), data.x_test, data.y_test, list(CLASS_NAMES)
