"""CIFAR-10 and CIFAR-100 from the official "python version" archives.

The archives (https://www.cs.toronto.edu/~kriz/cifar.html) hold Python 2
pickles of dicts with byte-string keys::

    cifar-10-batches-py/data_batch_1..5, test_batch   {b"data": (10000, 3072) uint8, b"labels": [...]}
    cifar-10-batches-py/batches.meta                  {b"label_names": [...]}
    cifar-100-python/train, test                      {b"data": ..., b"fine_labels": [...], b"coarse_labels": [...]}
    cifar-100-python/meta                             {b"fine_label_names": [...], b"coarse_label_names": [...]}

Unpickling can run arbitrary code, so a file is read with
:class:`RestrictedUnpickler`, which builds only numpy arrays and refuses any
other global. The archive is read in place (``tarfile``), never extracted, and
no member may hold more than :data:`agad.data.bounds.MAX_MEMBER_BYTES`
(256 MiB), checked from the member's header before it is decompressed.

CIFAR-100 is used with its 20 coarse superclasses, as in the paper.

Example:
    >>> x_tr, y_tr, x_te, y_te, names = load_cifar("cifar-10-python.tar.gz")  # doctest: +SKIP
    >>> x_tr.shape, names[0]  # doctest: +SKIP
    ((50000, 3, 32, 32), 'airplane')
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from agad.data.bounds import MAX_MEMBER_BYTES, format_bytes
from agad.errors import DataError

__all__ = ["RestrictedUnpickler", "find_cifar", "load_cifar", "CIFAR_ARCHIVES", "CIFAR_DIRS"]

# kind -> official archive file name / top directory inside it.
CIFAR_ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}
CIFAR_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}

# kind -> (train members, test members, meta member, labels key, names key)
_LAYOUT = {
    "cifar10": (
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "batches.meta",
        "labels",
        "label_names",
    ),
    "cifar100": (("train",), ("test",), "meta", "coarse_labels", "coarse_label_names"),
}

# Everything the official files (and files written the same way by numpy under
# Python 3) need: array reconstruction, and `_codecs.encode`, which protocol-2
# pickles written by Python 3 use to rebuild `bytes` objects. None of these
# can run code or touch files.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle reader that builds only numpy arrays, dtypes and plain containers.

    Any other global (``os.system``, ``builtins.eval``, a class) raises
    :class:`DataError` before it is looked up.

    Example:
        >>> import io, pickle, numpy as np
        >>> blob = pickle.dumps({b"data": np.zeros(2, np.uint8)}, protocol=2)
        >>> RestrictedUnpickler(io.BytesIO(blob), source="x").load()[b"data"]
        array([0, 0], dtype=uint8)
    """

    def __init__(self, file, *, source: str):
        # encoding="bytes": Python 2 `str` objects (the dict keys, the numpy
        # dtype strings) come back as bytes, which is what numpy expects when
        # it rebuilds arrays pickled under Python 2; the CIFAR authors' own
        # loading snippet uses it too.
        super().__init__(file, encoding="bytes")
        self._source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise DataError(
                f"refusing to unpickle {module}.{name} from {self._source}: official CIFAR files "
                "hold only numpy arrays, lists and dicts; replace the file with the official archive"
            )
        return super().find_class(module, name)


def _unpickle(data: bytes, source: str) -> dict:
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), source=source).load()
    except DataError:
        raise
    except Exception as exc:  # pickle raises many types for damaged input
        raise DataError(
            f"{source} is not a readable CIFAR pickle ({type(exc).__name__}: {' '.join(str(exc).split())}); "
            "replace it with the official archive"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(
            f"{source} holds a {type(obj).__name__}, not a CIFAR batch dict; "
            "replace it with the official archive"
        )
    # Keys are bytes in the official files (Python 2 str); accept str too.
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _get(d: dict, key: str, source: str):
    if key not in d:
        raise DataError(
            f"{source} has no key {key!r} (keys: {sorted(map(str, d))}); "
            "it is not an official CIFAR file, replace it with the official archive"
        )
    return d[key]


def _batch(d: dict, label_key: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(_get(d, "data", source))
    labels = np.asarray(_get(d, label_key, source))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{source}: 'data' is a {data.dtype} array of shape {data.shape}, expected uint8 "
            "(N, 3072); replace it with the official archive"
        )
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{source}: {len(data)} images but {label_key!r} has shape {labels.shape} "
            f"and dtype {labels.dtype}; replace it with the official archive"
        )
    # Rows are 1024 red, then 1024 green, then 1024 blue values, row-major.
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _names(values, source: str) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _too_large(source: str, size: int) -> DataError:
    return DataError(
        f"{source} holds {format_bytes(size)}, more than the {format_bytes(MAX_MEMBER_BYTES)} any official "
        "CIFAR file needs; replace it with the official archive"
    )


def _dir_reader(root: Path) -> Callable[[str], tuple[bytes, str]]:
    def read(member: str) -> tuple[bytes, str]:
        p = root / member
        try:
            with open(p, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > MAX_MEMBER_BYTES:
                    raise _too_large(str(p), size)
                return f.read(MAX_MEMBER_BYTES + 1), str(p)
        except FileNotFoundError:
            raise DataError(
                f"CIFAR file {p} is missing; extract the official archive again or pass the .tar.gz"
            ) from None

    return read


def _tar_reader(path: Path, kind: str) -> Callable[[str], tuple[bytes, str]]:
    """Read the needed members in ONE forward pass over the archive.

    The official archive stores batches out of order (data_batch_4 first);
    random access into a .tar.gz re-decompresses from the start on every
    backward seek, so a streaming pass that keeps the bytes is much faster.
    Members are matched by their last two path parts, so an archive repacked
    under an extra leading folder still works.
    """
    top = CIFAR_DIRS[kind]
    train, test, meta = _LAYOUT[kind][:3]
    wanted = {*train, *test, meta}
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r|*") as tar:
            for m in tar:
                parts = m.name.replace("\\", "/").split("/")
                if m.isfile() and len(parts) >= 2 and parts[-2] == top and parts[-1] in wanted:
                    # The member's size comes from its tar header, before anything is decompressed;
                    # the read is bounded as well.
                    if m.size > MAX_MEMBER_BYTES:
                        raise _too_large(f"{path}:{m.name}", m.size)
                    blobs.setdefault(parts[-1], tar.extractfile(m).read(MAX_MEMBER_BYTES + 1))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"archive {path} is not a readable tar.gz ({exc}); re-download it with "
            f"`agad data fetch {kind}`"
        ) from None

    def read(member: str) -> tuple[bytes, str]:
        if member not in blobs:
            raise DataError(
                f"archive {path} has no {top}/{member}; it is incomplete, re-download it with "
                f"`agad data fetch {kind}`"
            )
        return blobs.pop(member), f"{path}:{top}/{member}"  # pop: free the bytes once parsed

    return read


def find_cifar(path: str | os.PathLike) -> tuple[str, Path] | None:
    """Locate a CIFAR source under ``path``: returns ``(kind, location)`` or None.

    ``path`` may be an official archive, an extracted folder
    (``cifar-10-batches-py`` / ``cifar-100-python``) or a folder holding
    either. Extracted folders are preferred (faster than decompressing).

    Example:
        >>> find_cifar("/nonexistent") is None
        True
    """
    p = Path(path)
    if p.is_file():
        for kind, name in CIFAR_ARCHIVES.items():
            if p.name == name:
                return kind, p
        if p.name.endswith((".tar.gz", ".tgz", ".tar")):
            # A renamed archive: look at its top folder name.
            try:
                with tarfile.open(p) as tar:
                    for m in tar:
                        top = m.name.split("/")[0]
                        for kind, d in CIFAR_DIRS.items():
                            if top == d:
                                return kind, p
                        break
            except (tarfile.TarError, OSError, EOFError):
                return None
        return None
    if not p.is_dir():
        return None
    for kind, d in CIFAR_DIRS.items():
        meta, test = _LAYOUT[kind][2], _LAYOUT[kind][1][0]
        if p.name == d or ((p / meta).is_file() and (p / test).is_file()):
            return kind, p
    for kind, d in CIFAR_DIRS.items():
        if (p / d).is_dir():
            return kind, p / d
    for kind, name in CIFAR_ARCHIVES.items():
        if (p / name).is_file():
            return kind, p / name
    return None


def load_cifar(
    path: str | os.PathLike, kind: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Load CIFAR-10 or CIFAR-100 (coarse labels) from an archive or folder.

    Args:
        path: see :func:`find_cifar`.
        kind: "cifar10" or "cifar100"; when given, a source of the other
            kind is an error. None means whatever is found.

    Returns:
        ``(x_train, y_train, x_test, y_test, class_names)`` with uint8
        (N, 3, 32, 32) images and int64 labels.

    Example:
        >>> x_tr, y_tr, *_ = load_cifar("data/cifar-100-python", "cifar100")  # doctest: +SKIP
        >>> int(y_tr.max())  # doctest: +SKIP
        19
    """
    found = find_cifar(path)
    if found is None:
        raise DataError(
            f"no CIFAR data at {path} (expected {CIFAR_ARCHIVES['cifar10']}, "
            f"{CIFAR_ARCHIVES['cifar100']} or an extracted {CIFAR_DIRS['cifar10']}/"
            f"{CIFAR_DIRS['cifar100']} folder); run `agad data fetch cifar10` or pass `--data DIR`"
        )
    got_kind, loc = found
    if kind is not None and got_kind != kind:
        raise DataError(
            f"{loc} holds {got_kind}, not {kind}; point to the {CIFAR_ARCHIVES[kind]} archive instead"
        )
    train_members, test_members, meta_member, label_key, names_key = _LAYOUT[got_kind]

    def load_all(read: Callable[[str], tuple[bytes, str]]):
        meta_bytes, meta_src = read(meta_member)
        names = _names(_get(_unpickle(meta_bytes, meta_src), names_key, meta_src), meta_src)
        splits = []
        for group in (train_members, test_members):
            xs, ys = [], []
            for member in group:
                data, src = read(member)
                x, y = _batch(_unpickle(data, src), label_key, src)
                xs.append(x)
                ys.append(y)
            splits.append((np.concatenate(xs), np.concatenate(ys)))
        return splits, names

    reader = _dir_reader(loc) if loc.is_dir() else _tar_reader(loc, got_kind)
    splits, names = load_all(reader)
    (x_train, y_train), (x_test, y_test) = splits
    for y, src in ((y_train, "training"), (y_test, "test")):
        if len(y) and (y.min() < 0 or y.max() >= len(names)):
            raise DataError(
                f"{loc}: {src} labels run from {y.min()} to {y.max()} but there are only "
                f"{len(names)} class names; replace it with the official archive"
            )
    return x_train, y_train, x_test, y_test, names
