"""Reading IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``00 00 <dtype> <ndim>``, then ``ndim``
big-endian uint32 sizes, then the values in C order. The official files are
gzip-compressed; :func:`read_idx` accepts both forms and tells them apart by
the gzip magic bytes, not by the file name (Debian ships ``.gz`` files, some
mirrors ship the same bytes decompressed under the same name).

Example:
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x-idx1-ubyte")
    >>> _ = open(p, "wb").write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> read_idx(p)
    array([7, 8, 9], dtype=uint8)
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from agad.data.bounds import check_memory
from agad.errors import DataError

__all__ = ["read_idx", "load_idx_pair"]

_GZIP_MAGIC = b"\x1f\x8b"

# IDX type codes (http://yann.lecun.com/exdb/mnist/). Values are big-endian.
_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# Datasets that `agad data fetch` can download again; others get a generic hint.
_FETCHABLE = ("mnist", "fashion-mnist")


def _fail(path: Path, what: str, dataset: str | None) -> DataError:
    """Build the one-line error: what is wrong with which file, and the fix."""
    prefix = f"{dataset}: " if dataset else ""
    if dataset in _FETCHABLE:
        fix = f"re-download it with `agad data fetch {dataset}`"
    else:
        fix = "replace it with an intact copy"
    return DataError(f"{prefix}file {path} {what}; {fix}")


_TRAILING_PROBE = 1 << 20  # at most this much beyond the declared size is read to report trailing data


def _open(path: Path, dataset: str | None):
    """The file's byte stream (decompressing when it starts with the gzip magic) and whether it is gzip."""
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        prefix = f"{dataset}: " if dataset else ""
        raise DataError(
            f"{prefix}IDX file {path} does not exist; check the path or the --data directory"
        ) from None
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or exc})", dataset) from None
    if raw.read(2) == _GZIP_MAGIC:
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw, True
    raw.seek(0)
    return raw, raw, False


def _read_up_to(f, n: int) -> np.ndarray:
    """Up to ``n`` bytes (fewer only at the end of the stream) as a writable ``uint8`` array, without a
    second copy. The buffer is not zero-filled, so memory the stream never fills is never touched: a few
    bytes of truncated gzip that declare gigabytes cost what they hold, not what they declare."""
    buf = np.empty(n, dtype=np.uint8)
    view, got = memoryview(buf), 0
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            break
        got += k
    view.release()
    return buf[:got]


def read_idx(path: str | os.PathLike, *, dataset: str | None = None) -> np.ndarray:
    """Read one IDX file (raw or gzip-compressed) into a native-endian array.

    The header's dimensions give the exact size of the data: no more than
    that (plus a small probe for trailing bytes) is ever decompressed, so a
    damaged or hostile ``.gz`` cannot inflate without bound, and the array's
    memory is checked (:func:`agad.data.bounds.check_memory`) before it is
    allocated.

    Args:
        path: the file. Gzip is detected from its first two bytes.
        dataset: optional dataset name, used only to make error messages
            say which dataset is broken and how to get it again.

    Returns:
        An array of the file's shape; ``uint8`` for image and label files.

    Raises:
        DataError: missing file, bad magic number, unknown type code,
            impossible number of dimensions, a zero dimension, truncated
            data, trailing bytes, a corrupt gzip stream, or an array too
            large for the memory. The message names the file.

    Example:
        >>> read_idx("train-labels-idx1-ubyte.gz").shape  # doctest: +SKIP
        (60000,)
    """
    path = Path(path)
    stream, raw, compressed = _open(path, dataset)
    try:
        with raw, stream:
            try:
                return _parse(path, stream, None if compressed else os.fstat(raw.fileno()).st_size, dataset)
            except (OSError, EOFError, zlib.error) as exc:
                if not compressed:
                    raise _fail(path, f"cannot be read ({exc})", dataset) from None
                # gzip raises BadGzipFile (OSError), EOFError for a cut-off stream,
                # zlib.error for damaged deflate data: all mean "corrupt download".
                raise _fail(path, f"is not a valid gzip stream ({exc})", dataset) from None
    except (OSError, EOFError, zlib.error) as exc:  # closing a damaged gzip stream can fail too
        raise _fail(path, f"is not a valid gzip stream ({exc})", dataset) from None


def _parse(path: Path, f, file_size: int | None, dataset: str | None) -> np.ndarray:
    head = bytes(_read_up_to(f, 4))
    if len(head) < 4:
        raise _fail(path, f"is too short to be an IDX file ({len(head)} bytes)", dataset)
    if head[0] != 0 or head[1] != 0:
        raise _fail(
            path,
            f"is not an IDX file (magic number starts with {head[0]:#04x} {head[1]:#04x}, "
            "expected 0x00 0x00)",
            dataset,
        )
    code, ndim = head[2], head[3]
    if code not in _DTYPES:
        raise _fail(path, f"has unknown IDX type code {code:#04x}", dataset)
    if not 1 <= ndim <= 4:
        raise _fail(path, f"declares {ndim} dimensions (expected 1 to 4)", dataset)
    header = 4 + 4 * ndim
    dims = _read_up_to(f, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise _fail(path, f"is truncated inside its header ({4 + len(dims)} of {header} bytes)", dataset)
    shape = tuple(int(s) for s in dims.view(">u4"))
    if 0 in shape:
        raise _fail(path, f"declares an empty array (shape {shape})", dataset)
    dtype = _DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow, whatever the header says
    kind = "pixels" if ndim >= 2 else "labels"
    if file_size is not None:  # an uncompressed file: its size tells everything before reading
        got = file_size - header
        if got < expected:
            raise _fail(path, f"is truncated (expected {expected} bytes of {kind}, got {got})", dataset)
        if got > expected:
            raise _fail(path, f"has {got - expected} trailing bytes after its {expected} bytes of {kind}", dataset)
    prefix = f"{dataset}: " if dataset else ""
    check_memory(
        expected,
        what=f"{prefix}IDX file {path} (shape {shape})",
        hint="check that the file is intact, or free memory",
    )
    buf = _read_up_to(f, expected)
    if len(buf) < expected:
        raise _fail(path, f"is truncated (expected {expected} bytes of {kind}, got {len(buf)})", dataset)
    extra = len(_read_up_to(f, _TRAILING_PROBE))
    if extra:
        more = f"{extra}" if extra < _TRAILING_PROBE else f"more than {extra}"
        raise _fail(path, f"has {more} trailing bytes after its {expected} bytes of {kind}", dataset)
    arr = buf.view(dtype).reshape(shape)
    # The buffer is writable; only multi-byte types need a byte swap to native order.
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


def load_idx_pair(
    images_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    *,
    dataset: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read an images file (N, H, W) and its labels file (N,) and check they agree.

    Returns:
        ``(images, labels)``: ``uint8`` (N, H, W) and ``int64`` (N,).

    Example:
        >>> x, y = load_idx_pair("t10k-images-idx3-ubyte.gz",
        ...                      "t10k-labels-idx1-ubyte.gz")  # doctest: +SKIP
        >>> x.shape, y.shape  # doctest: +SKIP
        ((10000, 28, 28), (10000,))
    """
    images = read_idx(images_path, dataset=dataset)
    labels = read_idx(labels_path, dataset=dataset)
    prefix = f"{dataset}: " if dataset else ""
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{prefix}file {images_path} holds a {images.dtype} array of shape {images.shape}, "
            "not uint8 images (N, H, W); check that images and labels files are not swapped"
        )
    if labels.ndim != 1:
        raise DataError(
            f"{prefix}file {labels_path} holds an array of shape {labels.shape}, "
            "not labels (N,); check that images and labels files are not swapped"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{prefix}{images_path} holds {len(images)} images but {labels_path} holds "
            f"{len(labels)} labels; the two files come from different releases, "
            "replace both with a matching pair"
        )
    return images, labels.astype(np.int64)
