"""The dataset container every loader returns (kept apart so that loaders and the protocol share it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agad.errors import DataError


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled train/test split of images.

    Attributes:
        name: dataset name ("fashion-mnist") or the folder name for paths.
        x_train, x_test: uint8 (N, C, H, W).
        y_train, y_test: int64 (N,), class indices into ``class_names``.
        class_names: one name per class.

    Example:
        >>> import numpy as np
        >>> x = np.zeros((2, 1, 4, 4), np.uint8); y = np.array([0, 1])
        >>> Dataset("toy", x, y, x, y, ["a", "b"]).num_classes
        2
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]

    def __post_init__(self):
        # Checked here once so that every consumer can rely on the layout.
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
                raise DataError(
                    f"{self.name}: x_{split} must be a uint8 array (N, C, H, W); got "
                    f"{getattr(x, 'dtype', type(x).__name__)} of shape {getattr(x, 'shape', '?')}"
                )
            if not isinstance(y, np.ndarray) or y.ndim != 1 or len(y) != len(x):
                raise DataError(
                    f"{self.name}: y_{split} must be a 1-D array with one label per image "
                    f"({len(x)}); got shape {getattr(y, 'shape', '?')}"
                )
            if not np.issubdtype(y.dtype, np.integer):
                raise DataError(f"{self.name}: y_{split} must hold integer class indices; got dtype {y.dtype}")
            if y.dtype != np.int64:
                object.__setattr__(self, f"y_{split}", y.astype(np.int64))
            if len(y) and (y.min() < 0 or y.max() >= len(self.class_names)):
                raise DataError(
                    f"{self.name}: y_{split} holds labels {int(y.min())}..{int(y.max())} "
                    f"but there are {len(self.class_names)} class names"
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(
                f"{self.name}: train images are {self.x_train.shape[1:]} but test images are "
                f"{self.x_test.shape[1:]}; both splits must share (C, H, W)"
            )
        object.__setattr__(self, "class_names", [str(c) for c in self.class_names])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.x_train.shape[2]), int(self.x_train.shape[3])

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={self.x_train.shape}, test={self.x_test.shape}, "
            f"classes={self.num_classes})"
        )
