"""Image files, PIL images and pixel arrays -> one uint8 (N, C, S, S) array.

This is the one place where images are decoded: folder datasets
(:mod:`agad.data.layouts`), :class:`agad.AGAD` and ``agad predict`` all call
:func:`list_images` and :func:`read_images`, so they follow the same rules.

Finding files (:func:`list_images`):
    folders are searched recursively; files ending in png/jpg/jpeg/bmp/tif/tiff
    (any case) are taken, names starting with "." are skipped, and the result
    is sorted by path (folder by folder). Only regular files are read: a FIFO,
    device or socket with an image name is refused with a :class:`DataError`
    (opening a FIFO would block for ever). Symbolic links are followed only
    while they stay inside the folder that was given, and never into a folder
    already listed, so a link to an ancestor (``normal/loop -> ..``) or to a
    sibling class (``normal/x -> ../abnormal``) is skipped; one
    :class:`DataWarning` says how many links were skipped and why. A file
    reached twice through links is listed once.

Channels (one rule, :func:`choose_channels`):
    an image counts as grayscale when its mode is one of :data:`GRAY_MODES`
    (or a palette of gray entries only), as colour otherwise. With
    ``channels=None`` the majority wins: 1 channel if more images are
    grayscale than colour, else 3 (a tie gives RGB, which loses nothing). The
    minority is converted, with one :class:`DataWarning` giving the count.
    Conversions are Pillow's (``convert("L")`` is ITU-R 601-2 luma; gray to RGB
    replicates the channel); alpha is dropped; 16-bit and 32-bit integer
    images are scaled to 8 bits (divided by 257 when they use more than
    8 bits), float images in [0, 1] are multiplied by 255.

Size (one rule, :func:`default_image_size` of the median larger side):
    with ``size=None`` every image is resized to a square of the larger side
    of the median image, with 28 -> 32 (the paper's MNIST size) and clipped to
    [16, 128]. Resizing is Pillow's bilinear filter and does not keep the
    aspect ratio. Sizes above :data:`~agad.data.bounds.MAX_IMAGE_SIZE` (1024)
    are refused, and the array's memory is checked before it is allocated
    (:func:`agad.data.bounds.check_memory`).

Orientation: the EXIF orientation tag is applied
(:func:`PIL.ImageOps.exif_transpose`), so an image looks as a viewer shows it.

Speed: a JPEG file at least twice the target size is decoded at a reduced
scale (libjpeg's DCT scaling, never below the target size) before the
bilinear resize, and many images are decoded on a few threads.

Errors: an unreadable or damaged file, a file that Pillow considers a
decompression bomb (``PIL.Image.MAX_IMAGE_PIXELS``, both the warning and the
error level), a missing path or a non-regular file raises one
:class:`DataError` naming the file.

Example:
    >>> from PIL import Image
    >>> x, c, s = read_images([Image.new("L", (28, 28), 9), Image.new("L", (20, 30), 9)])
    >>> x.shape, c, s
    ((2, 1, 32, 32), 1, 32)
"""

from __future__ import annotations

import os
import stat
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import numpy as np
from PIL import Image, ImageOps

from agad.data.bounds import MAX_IMAGE_SIZE, check_memory, images_nbytes
from agad.data.transforms import as_nchw_uint8
from agad.errors import AgadError, DataError

__all__ = [
    "DataWarning",
    "GRAY_MODES",
    "IMAGE_EXTENSIONS",
    "ImageInfo",
    "SIZE_RATIO_WARNING",
    "check_compatible",
    "choose_channels",
    "choose_size",
    "default_image_size",
    "expand_items",
    "image_info",
    "is_image_input",
    "list_images",
    "read_images",
    "read_masks",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Pillow modes that hold one channel of intensity (alpha, if any, is dropped).
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
DEFAULT_MAX_SIZE = 128  # the paper's size for real-world images; larger inputs are shrunk to it by default
MNIST_SIZE, MNIST_RESIZE = 28, 32  # the paper resizes 28x28 digits to 32x32
MIN_SIZE = 16  # the smallest size the networks take
SIZE_RATIO_WARNING = 4  # check_compatible warns when an input's larger side is this far from the model's size

ImageItem = Any  # str | os.PathLike | PIL.Image.Image | np.ndarray (one image)

_PARALLEL_MIN = 32  # below this many images, threads cost more than they save
_PARALLEL_MAX_WORKERS = 8


class DataWarning(UserWarning):
    """Images were converted or skipped; the data still loads."""


class ImageInfo(NamedTuple):
    """What the header of one image says: its name, Pillow mode, and size."""

    name: str
    mode: str
    gray: bool
    width: int
    height: int


# ----------------------------------------------------------------- sizes
def default_image_size(height: int, width: int) -> int:
    """The square input size used when no size is given.

    The larger side, except: 28 (MNIST-like) becomes 32 as in the paper;
    anything below 16 becomes 16 (the smallest size the networks take);
    anything above 128 becomes 128 (the paper's size for real-world images;
    pass a size to train larger).

    >>> default_image_size(28, 28), default_image_size(64, 48), default_image_size(600, 800)
    (32, 64, 128)
    """
    side = max(int(height), int(width))
    if side == MNIST_SIZE:
        return MNIST_RESIZE
    return int(min(max(side, MIN_SIZE), DEFAULT_MAX_SIZE))


def choose_size(infos: Sequence[ImageInfo]) -> int:
    """:func:`default_image_size` of the median image's larger side (the lower median).

    >>> choose_size([ImageInfo("a", "L", True, 28, 28)] * 2 + [ImageInfo("b", "L", True, 500, 400)])
    32
    """
    if not infos:
        raise AgadError("no images to take a size from")
    sides = sorted(max(i.width, i.height) for i in infos)
    side = sides[(len(sides) - 1) // 2]
    return default_image_size(side, side)


def choose_channels(infos: Sequence[ImageInfo]) -> int:
    """The channel rule: 1 if more images are grayscale than colour, else 3 (ties give RGB).

    >>> gray, rgb = ImageInfo("a", "L", True, 8, 8), ImageInfo("b", "RGB", False, 8, 8)
    >>> choose_channels([gray, gray, rgb]), choose_channels([gray, rgb])
    (1, 3)
    """
    n_gray = sum(1 for i in infos if i.gray)
    return 1 if n_gray > len(infos) - n_gray else 3


def _check_channels_size(channels, size) -> tuple[int | None, int | None]:
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise AgadError(f"channels must be 1 (grayscale) or 3 (RGB); got {channels!r}")
    if size is not None and (
        isinstance(size, bool)
        or not isinstance(size, (int, np.integer))
        or not 1 <= size <= MAX_IMAGE_SIZE
    ):
        raise AgadError(f"image size must be an integer from 1 to {MAX_IMAGE_SIZE}; got {size!r}")
    return (None if channels is None else int(channels)), (None if size is None else int(size))


# ----------------------------------------------------------------- paths
def _is_item(x: object) -> bool:
    return isinstance(x, (str, os.PathLike, Image.Image))


def is_image_input(X: object) -> bool:
    """True when ``X`` is a path, a PIL image, or a non-empty list of them (not an array of pixels).

    >>> is_image_input("photos/"), is_image_input([[0, 1], [2, 3]])
    (True, False)
    """
    if _is_item(X):
        return True
    if isinstance(X, np.ndarray):
        return X.dtype.kind in "US" or (X.dtype == object and X.size > 0 and all(_is_item(v) for v in X.ravel()))
    return isinstance(X, (list, tuple)) and len(X) > 0 and all(_is_item(v) for v in X)


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _not_regular(path: str | os.PathLike, mode: int) -> DataError:
    return DataError(
        f"{path} is {_file_kind(mode)}, not an image file; remove it or move it out of the image folder"
    )


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class _Skipped:
    """Symbolic links that the walk did not follow, for one warning."""

    def __init__(self) -> None:
        self.outside = self.loop = self.broken = 0
        self.example: str | None = None

    def add(self, kind: str, path: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.example = self.example or path

    def warn(self, root: Path) -> None:
        parts = [
            f"{n} {why}"
            for n, why in (
                (self.outside, "lead outside it"),
                (self.loop, "lead into a folder already listed (a loop or a duplicate)"),
                (self.broken, "are broken"),
            )
            if n
        ]
        if parts:
            total = self.outside + self.loop + self.broken
            warnings.warn(
                f"skipped {total} symbolic link(s) under {root}: {', '.join(parts)} (e.g. {self.example}); "
                "links are followed only inside the folder given",
                DataWarning,
                stacklevel=3,
            )


def _walk(root: Path, skipped: _Skipped) -> list[Path]:
    """Image files under ``root`` (see the module docstring for the policy), sorted."""
    top = os.path.realpath(root)
    visited = {top}
    seen_files: set[str] = set()
    files: list[Path] = []
    stack = [(str(root), top)]
    while stack:
        folder, real_folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise DataError(f"cannot list folder {folder} ({exc.strerror or exc}); check its permissions") from None
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            link = entry.is_symlink()
            if link:
                real = os.path.realpath(entry.path)
                if not _inside(real, top):
                    skipped.add("outside", entry.path)
                    continue
                if not os.path.exists(real):
                    skipped.add("broken", entry.path)
                    continue
            else:
                real = os.path.join(real_folder, entry.name)
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if is_dir:
                if real in visited:
                    if link:
                        skipped.add("loop", entry.path)
                    continue
                visited.add(real)
                subdirs.append((entry.path, real))
                continue
            if not entry.name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            try:
                mode = entry.stat().st_mode  # follows a link: the target decides
            except OSError:
                skipped.add("broken", entry.path)
                continue
            if not stat.S_ISREG(mode):
                raise _not_regular(entry.path, mode)
            if real in seen_files:
                continue
            seen_files.add(real)
            files.append(Path(entry.path))
        stack.extend(reversed(subdirs))
    return sorted(files)


def list_images(root_or_paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Image files: folders expanded recursively (sorted), files taken as given.

    A file named explicitly is taken whatever its extension; inside folders
    only image extensions count. See the module docstring for the symlink
    and regular-file policy.

    Raises:
        DataError: a path that does not exist, a folder without images, or a
            FIFO/device named like an image. AgadError: no paths at all.

    >>> list_images(["no/such/file.png"])
    Traceback (most recent call last):
    ...
    agad.errors.DataError: image path no/such/file.png does not exist; check the path
    """
    paths = [root_or_paths] if isinstance(root_or_paths, (str, os.PathLike)) else list(root_or_paths)
    out: list[Path] = []
    for p in paths:
        path = Path(p).expanduser()
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise DataError(f"image path {path} does not exist; check the path") from None
        except OSError as exc:
            raise DataError(f"cannot access image path {path} ({exc.strerror or exc})") from None
        if stat.S_ISDIR(mode):
            skipped = _Skipped()
            found = _walk(path, skipped)
            skipped.warn(path)
            if not found:
                raise DataError(
                    f"folder {path} holds no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}); "
                    "add images or give another folder"
                )
            out += found
        elif stat.S_ISREG(mode):
            out.append(path)
        else:
            raise _not_regular(path, mode)
    if not out:
        raise AgadError("no image paths were given")
    return out


def expand_items(X: object) -> list[ImageItem]:
    """A path, a PIL image or a list of them -> a flat list of files and PIL images (folders expanded).

    >>> from PIL import Image
    >>> len(expand_items([Image.new("L", (4, 4))] * 2))
    2
    """
    items = list(np.asarray(X, dtype=object).ravel()) if isinstance(X, np.ndarray) else (
        [X] if _is_item(X) else list(X))  # type: ignore[arg-type]
    out: list[ImageItem] = []
    for item in items:
        if isinstance(item, (Image.Image, np.ndarray)):
            out.append(item)
        else:
            out += list_images(item)
    return out


# ----------------------------------------------------------------- decoding
def _name(item: ImageItem, index: int) -> str:
    if isinstance(item, Image.Image):
        return getattr(item, "filename", "") or f"PIL image #{index}"
    if isinstance(item, np.ndarray):
        return f"array image #{index}"
    return str(item)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _unreadable(item: ImageItem, index: int, exc: BaseException) -> DataError:
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return DataError(
            f"image {_name(item, index)} is too large to decode safely ({_one_line(exc)}); shrink or remove "
            "the file, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust it"
        )
    return DataError(
        f"cannot read image {_name(item, index)} ({type(exc).__name__}: {_one_line(exc)}); "
        "remove or replace the file"
    )


def _open_regular(path: str | os.PathLike):
    """Open ``path`` for reading without blocking, refusing anything but a regular file.

    O_NONBLOCK makes opening a FIFO return at once (instead of waiting for a
    writer), and fstat on the open descriptor then tells what it is: no race
    between a check and the open.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise DataError(f"image path {path} does not exist; check the path") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _array_image(a: np.ndarray, index: int) -> np.ndarray:
    """One image array (H, W), (H, W, C) or (C, H, W) -> uint8 (C, H, W)."""
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise AgadError(f"array image #{index} must have shape (H, W), (H, W, C) or (C, H, W); got {a.shape}")
    try:
        return as_nchw_uint8(a[None])[0]
    except AgadError as exc:
        raise AgadError(f"array image #{index}: {exc}") from None


def _palette_is_gray(img: Image.Image) -> bool:
    pal = getattr(img, "palette", None)
    try:
        if pal is None or pal.rawmode is not None or pal.mode not in ("RGB", "RGBA"):
            return False
        data = np.frombuffer(bytes(pal.palette), dtype=np.uint8)
        entries = data[: len(data) - len(data) % len(pal.mode)].reshape(-1, len(pal.mode))
        rgb = entries[:, :3].astype(np.int16)
        return bool(len(entries) > 0 and not np.any(np.diff(rgb, axis=1)))
    except (AttributeError, ValueError, TypeError):
        return False


def _is_gray(img: Image.Image) -> bool:
    return img.mode in GRAY_MODES or (img.mode in ("P", "PA") and _palette_is_gray(img))


def _info(item: ImageItem, index: int) -> ImageInfo:
    if isinstance(item, np.ndarray):
        a = _array_image(item, index)
        return ImageInfo(_name(item, index), "L" if a.shape[0] == 1 else "RGB", a.shape[0] == 1, a.shape[2], a.shape[1])
    if isinstance(item, Image.Image):
        return ImageInfo(_name(item, index), item.mode, _is_gray(item), *item.size)
    if os.path.isdir(item):
        raise DataError(f"{item} is a folder; expand it with list_images() or expand_items() first")
    try:
        with _open_regular(item) as f, Image.open(f) as img:
            return ImageInfo(str(item), img.mode, _is_gray(img), *img.size)
    except (DataError, MemoryError):
        raise
    except Exception as exc:  # Pillow signals damage with many types; its bomb warning is raised as one too
        raise _unreadable(item, index, exc) from None


def _map(fn: Callable[[int], Any], n: int, *, threads: bool = True) -> list:
    """``[fn(i) for i in range(n)]``, on threads for many items (Pillow releases the GIL while decoding).

    The first failing index raises, as in a plain loop; pending work is cancelled.
    """
    with warnings.catch_warnings():
        # Pillow's decompression-bomb *warning* becomes an error too (its error level raises anyway).
        # The filter is process-wide, so it also holds in the worker threads.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        workers = min(_PARALLEL_MAX_WORKERS, os.cpu_count() or 1)
        if not threads or n < _PARALLEL_MIN or workers < 2:
            return [fn(i) for i in range(n)]
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agad-images")
        try:
            return list(pool.map(fn, range(n)))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _as_items(items: Any) -> list[ImageItem]:
    """A list of items, or a batch array (N, ...) split into one array per image."""
    if not isinstance(items, (list, tuple, np.ndarray)) and hasattr(items, "detach"):  # a torch tensor
        items = items.detach().cpu().numpy()
    if isinstance(items, np.ndarray) and items.dtype.kind not in "OUS":
        return list(as_nchw_uint8(items))
    if isinstance(items, np.ndarray):
        return list(items.ravel())
    if _is_item(items):
        return [items]
    return list(items)


def image_info(items: Any) -> list[ImageInfo]:
    """Mode and size of each image, from the file headers only (no pixels are decoded).

    >>> from PIL import Image
    >>> image_info([Image.new("RGB", (40, 30))])[0][1:]
    ('RGB', False, 40, 30)
    """
    items = _as_items(items)
    return _map(lambda i: _info(items[i], i), len(items), threads=False)  # headers are cheap: no threads


def _load(item: ImageItem, index: int, draft: tuple[int, int] | None = None) -> Image.Image:
    """A decoded PIL image, EXIF orientation applied (a file is closed again).

    ``draft=(channels, size)`` lets a large JPEG decode at 1/2, 1/4 or 1/8
    scale (libjpeg's DCT scaling), never below ``size``: several times faster
    for photographs and scans that are resized down anyway.
    """
    if isinstance(item, np.ndarray):
        a = _array_image(item, index)
        return Image.fromarray(a[0], "L") if a.shape[0] == 1 else Image.fromarray(a.transpose(1, 2, 0), "RGB")
    if isinstance(item, Image.Image):
        try:
            item.load()
            if item.getexif().get(0x0112, 1) not in (1, None):
                return ImageOps.exif_transpose(item)  # a copy: the caller's image is left alone
        except MemoryError:
            raise
        except Exception as exc:
            raise _unreadable(item, index, exc) from None
        return item
    try:
        with _open_regular(item) as f, Image.open(f) as img:
            if draft is not None and img.format == "JPEG":
                channels, size = draft
                img.draft("L" if channels == 1 and img.mode == "RGB" else None, (size, size))
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
            return img
    except (DataError, MemoryError):
        raise
    except Exception as exc:  # Pillow signals damage with many types; its bomb warning is raised as one too
        raise _unreadable(item, index, exc) from None


def _eight_bit(img: Image.Image) -> Image.Image:
    """High bit-depth and float images -> mode "L"; palettes with transparency -> RGBA."""
    mode = img.mode
    if mode == "I" or mode.startswith("I;16"):
        # Pillow's own conversion clips at 255, which would saturate 16-bit scans.
        a = np.asarray(img).astype(np.float64)
        scale = 257.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 1.0
        return Image.fromarray(np.clip(np.rint(a / scale), 0, 255).astype(np.uint8), "L")
    if mode == "F":
        a = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if a.max(initial=0) <= 1.0:
            a = a * 255.0
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if mode in ("P", "PA") and (mode == "PA" or "transparency" in img.info):
        return img.convert("RGBA")  # Pillow warns when such a palette goes straight to RGB
    return img


def _pixels(img: Image.Image, channels: int, size: int, resample: int) -> np.ndarray:
    img = _eight_bit(img)
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:
        img = img.convert(target)
    if img.size != (size, size):
        img = img.resize((size, size), resample)
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (H, W[, 3]) -> (C, H, W)


def _decode_into(
    out: np.ndarray, items: Sequence[ImageItem], channels: int, size: int, resample: int = Image.BILINEAR
) -> None:
    """Fill ``out[i]`` with item i (uint8 (C, size, size)); errors name the item."""

    def one(i: int) -> None:
        item = items[i]
        img = _load(item, i, (channels, size))
        try:
            out[i] = _pixels(img, channels, size, resample)
        except (OSError, ValueError) as exc:
            raise _unreadable(item, i, exc) from None

    # Threads only for files: PIL images given by a caller may be one object listed twice,
    # and loading it from two threads at once is not safe.
    _map(one, len(items), threads=all(isinstance(it, (str, os.PathLike)) for it in items))


def _conversion_note(infos: Sequence[ImageInfo], channels: int) -> str | None:
    minority = [i for i in infos if i.gray != (channels == 1)]
    if not minority:
        return None
    n_gray = sum(1 for i in infos if i.gray)
    target = "grayscale" if channels == 1 else "RGB"
    keep = 3 if channels == 1 else 1
    return (
        f"converted {len(minority)} of {len(infos)} images to {target} ({n_gray} grayscale, "
        f"{len(infos) - n_gray} colour: the majority decides, a tie gives RGB; e.g. {minority[0].name} is "
        f"{minority[0].mode}); pass channels={keep} to choose the other"
    )


def read_images(
    items: Any, *, channels: int | None = None, size: int | None = None
) -> tuple[np.ndarray, int, int]:
    """Decode files, PIL images or arrays into one uint8 (N, C, size, size) array.

    ``items``: a list of paths (files), PIL images and single-image arrays,
    or one batch array (N, H, W), (N, C, H, W) or (N, H, W, C). ``channels``
    (1 or 3) and ``size`` default to the channel and size rules of the module
    docstring. Returns ``(x, channels, size)``.

    >>> from PIL import Image
    >>> x, c, s = read_images([Image.new("RGB", (40, 30)), Image.new("RGB", (64, 64))])
    >>> x.shape, c, s
    ((2, 3, 40, 40), 3, 40)
    """
    channels, size = _check_channels_size(channels, size)
    items = _as_items(items)
    if not items:
        raise AgadError("no images to read")
    if channels is None or size is None:
        infos = image_info(items)
        if channels is None:
            channels = choose_channels(infos)
            note = _conversion_note(infos, channels)
            if note:
                warnings.warn(note, DataWarning, stacklevel=2)
        if size is None:
            size = choose_size(infos)
    check_memory(
        images_nbytes(len(items), channels, size),
        what=f"reading {len(items)} images of {channels}x{size}x{size}",
        hint="pass a smaller image size (e.g. --image-size 128) or fewer images",
    )
    out = np.empty((len(items), channels, size, size), dtype=np.uint8)
    _decode_into(out, items, channels, size)
    return out, channels, size


def read_masks(items: Any, size: int) -> np.ndarray:
    """Ground-truth masks -> uint8 (N, 1, size, size) holding 0 (normal) or 1 (anomalous pixel).

    Each mask is read as grayscale, resized bilinearly and thresholded at half
    intensity, so masks stored as 0/255 or 0/1 (as 0/1, any non-zero pixel
    counts) both work.

    >>> import numpy as np
    >>> m = read_masks([np.array([[0, 255], [255, 255]], np.uint8)], 2)
    >>> m[0, 0].tolist()
    [[0, 1], [1, 1]]
    """
    _, size = _check_channels_size(None, size)
    items = _as_items(items)
    check_memory(images_nbytes(len(items), 1, size), what=f"reading {len(items)} masks of {size}x{size}",
                 hint="pass a smaller image size (e.g. --image-size 128)")
    out = np.empty((len(items), 1, size, size), dtype=np.uint8)

    def one(i: int) -> None:
        item = items[i]
        try:
            a = np.asarray(_eight_bit(_load(item, i)).convert("L"), dtype=np.uint8)
            if a.max(initial=0) <= 1:
                a = a * np.uint8(255)  # masks stored as 0/1: scaled before resizing, or they would vanish
            m = Image.fromarray(a, "L")
            if m.size != (size, size):
                m = m.resize((size, size), Image.BILINEAR)
        except (OSError, ValueError) as exc:
            raise _unreadable(item, i, exc) from None
        out[i, 0] = np.asarray(m) >= 128

    _map(one, len(items))
    return out


# ----------------------------------------------------------------- compatibility
def check_compatible(
    items: Any, *, channels: int, size: int, what: str = "input images"
) -> list[str]:
    """Warn when inputs are far from what a model was trained on; returns the warnings given.

    Far means: colour images for a grayscale model (colour is lost) or
    grayscale ones for an RGB model, and images whose larger side is more
    than :data:`SIZE_RATIO_WARNING` (4) times larger or smaller than the
    model's ``size``. ``items`` may also be a list of :class:`ImageInfo`.
    Each kind of mismatch gives one :class:`DataWarning` with a count and an
    example.

    >>> import warnings
    >>> from PIL import Image
    >>> with warnings.catch_warnings(record=True):
    ...     msgs = check_compatible([Image.new("RGB", (512, 512))], channels=1, size=32)
    >>> len(msgs)
    2
    """
    channels, size = _check_channels_size(channels, size)
    if channels is None or size is None:
        raise AgadError("check_compatible needs the model's channels and size")
    seq = list(items) if isinstance(items, (list, tuple)) else None
    infos = seq if seq and all(isinstance(i, ImageInfo) for i in seq) else image_info(items)
    msgs = []
    wrong = [i for i in infos if i.gray != (channels == 1)]
    if wrong:
        if channels == 1:
            msgs.append(
                f"{len(wrong)} of {len(infos)} {what} are colour (e.g. {wrong[0].name} is {wrong[0].mode}) "
                "but the model was trained on grayscale images; they are converted to grayscale"
            )
        else:
            msgs.append(
                f"{len(wrong)} of {len(infos)} {what} are grayscale (e.g. {wrong[0].name} is {wrong[0].mode}) "
                "but the model was trained on RGB images; their one channel is copied to three"
            )
    far = [i for i in infos if max(i.width, i.height) > SIZE_RATIO_WARNING * size
           or SIZE_RATIO_WARNING * max(i.width, i.height) < size]
    if far:
        e = far[0]
        msgs.append(
            f"{len(far)} of {len(infos)} {what} differ more than {SIZE_RATIO_WARNING}x in size from the "
            f"model's {size}x{size} input (e.g. {e.name} is {e.width}x{e.height}); they are resized, but "
            "their scores may not be comparable with the training images'"
        )
    for m in msgs:
        warnings.warn(m, DataWarning, stacklevel=2)
    return msgs
