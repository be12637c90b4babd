"""Image array conversions shared by the loaders, the trainer and the figures.

Everything on disk and in :class:`agad.data.Dataset` is ``uint8`` (N, C, H, W);
networks see float32 in [-1, 1] (the generator ends in Tanh). These helpers
are the only place where either conversion happens.

Example:
    >>> import numpy as np
    >>> x = np.zeros((2, 1, 28, 28), dtype=np.uint8)
    >>> resize_uint8(x, 32).shape
    (2, 1, 32, 32)
    >>> t = to_float(x); float(t.min())
    -1.0
    >>> to_uint8(t).dtype
    dtype('uint8')
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from PIL import Image

from agad.errors import AgadError

__all__ = ["resize_uint8", "to_float", "to_uint8", "as_nchw_uint8"]


def _size_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        h = w = int(size)
    elif (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in size)
    ):
        h, w = int(size[0]), int(size[1])
    else:
        raise AgadError(f"image size must be an int or a pair (height, width); got {size!r}")
    if h < 1 or w < 1:
        raise AgadError(f"image size must be positive; got {size!r}")
    return h, w


def resize_uint8(x: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize uint8 images (N, C, H, W) to ``size`` with Pillow's bilinear filter.

    Pillow is used (not torch) so that every dataset, including folders of
    images of mixed sizes that are resized one by one as they are read, goes
    through the same filter. It is fast enough: ~70k 28x28 images take about
    2 s. Returns ``x`` itself when it already has that size.

    Example:
        >>> import numpy as np
        >>> resize_uint8(np.full((1, 3, 4, 4), 9, np.uint8), (8, 6))[0, :, 0, 0]
        array([9, 9, 9], dtype=uint8)
    """
    h, w = _size_pair(size)
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
        got = f"{x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise AgadError(
            f"resize_uint8 needs a uint8 array (N, C, H, W); got {got}; convert with as_nchw_uint8"
        )
    n, c = x.shape[:2]
    if x.shape[2:] == (h, w):
        return x
    out = np.empty((n, c, h, w), dtype=np.uint8)
    for i in range(n):
        for j in range(c):
            # Channel by channel in mode "L": bilinear is separable per channel,
            # so this equals resizing an RGB image, and works for any C.
            img = Image.fromarray(x[i, j])
            out[i, j] = np.asarray(img.resize((w, h), Image.BILINEAR))
    return out


def to_float(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Map uint8 images in [0, 255] to a float32 tensor in [-1, 1] (``x / 127.5 - 1``).

    Example:
        >>> import numpy as np
        >>> to_float(np.array([0, 255], np.uint8)).tolist()
        [-1.0, 1.0]
    """
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if t.dtype != torch.uint8:
        raise AgadError(f"to_float needs uint8 images in [0, 255]; got dtype {t.dtype}")
    return t.to(torch.float32) / 127.5 - 1.0


def to_uint8(t: torch.Tensor | np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_float` for figures: [-1, 1] floats to uint8, rounded and clipped.

    Example:
        >>> import torch
        >>> to_uint8(torch.tensor([-1.0, 0.0, 1.0, 3.0])).tolist()
        [0, 128, 255, 255]
    """
    if isinstance(t, torch.Tensor):
        t = t.detach().to("cpu", torch.float32).numpy()
    a = np.asarray(t, dtype=np.float32)
    # 0.0 maps to 127.5 and rounds half to even (128); values outside [-1, 1]
    # (an untrained generator) are clipped rather than wrapped.
    return np.clip(np.rint((a + 1.0) * 127.5), 0, 255).astype(np.uint8)


def as_nchw_uint8(x) -> np.ndarray:
    """Accept images in the usual layouts and return uint8 (N, C, H, W).

    Accepted:
      * shapes (N, H, W), (N, C, H, W) or (N, H, W, C) with C in {1, 3}. When
        both readings are possible, channels-first wins: (N, 3, H, 3) is NCHW.
      * dtype uint8; other integer types with values in [0, 255]; floats in
        [0, 1] (scaled by 255) or in [0, 255] (taken as is), rounded. Floats
        whose maximum is at most 1 are read as [0, 1].
      * numpy arrays, torch tensors or nested lists.

    Raises:
        AgadError: any other shape, dtype or value range, with what was seen.

    Example:
        >>> import numpy as np
        >>> as_nchw_uint8(np.ones((2, 8, 8, 3))).shape
        (2, 3, 8, 8)
        >>> int(as_nchw_uint8(np.ones((2, 8, 8)))[0, 0, 0, 0])
        255
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise AgadError(f"images must be an array (N, C, H, W); could not convert: {exc}") from None

    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4:
        if a.shape[1] not in (1, 3):
            if a.shape[3] in (1, 3):
                a = a.transpose(0, 3, 1, 2)
            else:
                raise AgadError(
                    f"images of shape {a.shape} have neither 1 nor 3 channels in axis 1 "
                    "(N, C, H, W) or axis 3 (N, H, W, C); pass grayscale or RGB images"
                )
    else:
        raise AgadError(
            f"images must have shape (N, H, W), (N, C, H, W) or (N, H, W, C); got shape {a.shape}"
        )
    if min(a.shape[2:]) < 1:
        raise AgadError(f"images must have a height and width of at least 1; got shape {a.shape}")

    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise AgadError(
            f"images must be uint8, integers in [0, 255] or floats in [0, 1] or [0, 255]; got dtype {a.dtype}"
        )
    if a.size == 0:
        return np.zeros(a.shape, dtype=np.uint8)
    lo, hi = a.min(), a.max()
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise AgadError("images contain NaN or infinite values; clean them before fitting")
        if lo < 0 or hi > 255:
            raise AgadError(
                f"float images must lie in [0, 1] or [0, 255]; got values in [{lo:.4g}, {hi:.4g}]; "
                "rescale them (e.g. (x + 1) / 2 for images in [-1, 1])"
            )
        if hi <= 1.0:
            a = a * 255.0
        return np.rint(a).astype(np.uint8)
    if lo < 0 or hi > 255:
        raise AgadError(f"integer images must lie in [0, 255]; got values in [{lo}, {hi}]")
    return np.ascontiguousarray(a.astype(np.uint8))
