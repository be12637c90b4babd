"""Score image files with a trained model: ``agad predict RUN_DIR PATH... --out scores.csv``.

This module is also the one place where image *files* (and PIL images) become
model input, for :class:`agad.AGAD` and for the CLI alike:

* a path may be a file or a folder; folders are searched recursively, files
  with the extensions png/jpg/jpeg/bmp/tif/tiff (any case) are taken, names
  starting with "." are skipped, and the result is sorted by path;
* each image is converted to the model's channels -- grayscale ("L") for a
  1-channel model, RGB for a 3-channel one (Pillow's conversions; 16-bit
  grayscale is scaled to 8 bits by dividing by 257) -- and resized to the
  model's square input size with Pillow's bilinear filter (the aspect ratio is
  not kept, as in :mod:`agad.data.folder`);
* an image that cannot be read is an error naming its path, raised before
  anything is written.

Scores, labels and the threshold come from the run directory (see
:mod:`agad.rundir`); nothing is normalised with the images being scored.

Example:
    >>> result = predict_images("runs/demo", ["photos/"], out="scores.csv")  # doctest: +SKIP
    >>> result.labels[:3]                                                    # doctest: +SKIP
    array([0, 0, 1])
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import AgadError, DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "PredictResult",
    "collect_image_paths",
    "default_image_size",
    "is_image_input",
    "predict_images",
    "read_images",
    "write_overlay",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Pillow modes that hold one channel of intensity (alpha, if any, is dropped).
GRAY_MODES = frozenset({"1", "L", "LA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
DEFAULT_MAX_SIZE = 128  # the paper's size for real-world images; larger inputs are shrunk to it by default
MNIST_SIZE, MNIST_RESIZE = 28, 32  # the paper resizes 28x28 digits to 32x32 (SPEC section 5)
MIN_SIZE = 16  # the smallest size the networks take

ImageItem = Any  # str | os.PathLike | PIL.Image.Image


# ----------------------------------------------------------------- sizes
def default_image_size(height: int, width: int) -> int:
    """The square input size used when ``image_size`` is not given.

    The larger side, except: 28 (MNIST-like) becomes 32 as in the paper;
    anything below 16 becomes 16 (the smallest size the networks take);
    anything above 128 becomes 128 (the paper's size for real-world images;
    pass ``image_size`` to train larger).

    >>> default_image_size(28, 28), default_image_size(64, 48), default_image_size(600, 800)
    (32, 64, 128)
    """
    side = max(int(height), int(width))
    if side == MNIST_SIZE:
        return MNIST_RESIZE
    return int(min(max(side, MIN_SIZE), DEFAULT_MAX_SIZE))


# ----------------------------------------------------------------- paths
def _is_item(x: object) -> bool:
    return isinstance(x, (str, os.PathLike, Image.Image))


def is_image_input(X: object) -> bool:
    """True when ``X`` is a path, a PIL image, or a non-empty list of them (not an array of pixels)."""
    if _is_item(X):
        return True
    if isinstance(X, np.ndarray):
        return X.dtype.kind in "US" or (X.dtype == object and X.size > 0 and all(_is_item(v) for v in X.ravel()))
    return isinstance(X, (list, tuple)) and len(X) > 0 and all(_is_item(v) for v in X)


def _folder_images(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath) / f for f in filenames
                  if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(found, key=str)


def collect_image_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, folders expanded recursively (sorted); errors name the path at fault.

    >>> collect_image_paths(["no/such/file.png"])
    Traceback (most recent call last):
    ...
    FileNotFoundError: image path no/such/file.png does not exist
    """
    out: list[Path] = []
    for p in paths:
        path = Path(p).expanduser()
        if path.is_dir():
            found = _folder_images(path)
            if not found:
                raise DataError(f"folder {path} holds no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")
            out += found
        elif path.exists():
            out.append(path)
        else:
            raise FileNotFoundError(f"image path {path} does not exist")
    if not out:
        raise AgadError("no image paths were given")
    return out


def expand_items(X: object) -> list[ImageItem]:
    """A path, a PIL image or a list of them -> a flat list of files and PIL images (folders expanded)."""
    items = list(np.asarray(X, dtype=object).ravel()) if isinstance(X, np.ndarray) else (
        [X] if _is_item(X) else list(X))  # type: ignore[arg-type]
    out: list[ImageItem] = []
    for item in items:
        if isinstance(item, Image.Image):
            out.append(item)
        else:
            out += collect_image_paths([item])
    return out


# ----------------------------------------------------------------- decoding
def _name(item: ImageItem, index: int) -> str:
    if isinstance(item, Image.Image):
        return getattr(item, "filename", "") or f"PIL image #{index}"
    return str(item)


def _unreadable(item: ImageItem, index: int, exc: BaseException) -> DataError:
    return DataError(
        f"cannot read image {_name(item, index)} ({type(exc).__name__}: {exc}); remove or replace the file"
    )


def _open(item: ImageItem, index: int) -> Image.Image:
    """A fully decoded PIL image (files are closed again)."""
    if isinstance(item, Image.Image):
        try:
            item.load()
        except (OSError, ValueError) as exc:
            raise _unreadable(item, index, exc) from None
        return item
    try:
        with Image.open(item) as img:
            img.load()
            return img.copy()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # Pillow reports damaged files with any of these.
        raise _unreadable(item, index, exc) from None


def _peek(item: ImageItem, index: int) -> tuple[str, tuple[int, int]]:
    """Mode and (width, height) from the header only."""
    if isinstance(item, Image.Image):
        return item.mode, item.size
    try:
        with Image.open(item) as img:
            return img.mode, img.size
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise _unreadable(item, index, exc) from None


def _convert(img: Image.Image, channels: int) -> Image.Image:
    if img.mode == "I" or img.mode.startswith("I;16"):
        # 16-bit scans: scale the full range to 8 bits (Pillow's own conversion would clip and saturate).
        a = np.asarray(img, dtype=np.float64)
        scale = 257.0 if img.mode.startswith("I;16") or a.max() > 255 else 1.0
        img = Image.fromarray(np.clip(np.rint(a / scale), 0, 255).astype(np.uint8), "L")
    return img.convert("L" if channels == 1 else "RGB")


def read_images(
    items: Sequence[ImageItem], *, channels: int | None = None, size: int | None = None
) -> tuple[np.ndarray, int, int]:
    """Decode files / PIL images into one uint8 (N, C, size, size) array.

    ``channels=None`` takes the majority: 1 if more images are grayscale than
    colour, else 3. ``size=None`` takes :func:`default_image_size` of the
    first image. Returns ``(x, channels, size)``.

    >>> from PIL import Image
    >>> x, c, s = read_images([Image.new("RGB", (40, 30)), Image.new("L", (10, 10))], channels=None)
    >>> x.shape, c, s
    ((2, 3, 40, 40), 3, 40)
    """
    items = list(items)
    if not items:
        raise AgadError("no images to read")
    if channels is None or size is None:
        heads = [_peek(it, i) for i, it in enumerate(items)] if channels is None else [_peek(items[0], 0)]
        if channels is None:
            n_gray = sum(mode in GRAY_MODES for mode, _ in heads)
            channels = 1 if n_gray > len(heads) - n_gray else 3
        if size is None:
            w, h = heads[0][1]
            size = default_image_size(h, w)
    out = np.empty((len(items), channels, size, size), dtype=np.uint8)
    for i, item in enumerate(items):
        img = _open(item, i)
        try:
            img = _convert(img, channels).resize((size, size), Image.BILINEAR)
        except (OSError, ValueError) as exc:
            raise _unreadable(item, i, exc) from None
        a = np.asarray(img, dtype=np.uint8)
        out[i] = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (H, W[, 3]) -> (C, H, W)
    return out, channels, size


# ----------------------------------------------------------------- overlays
def write_overlay(path: Path, x: np.ndarray, recon: np.ndarray, *, score: float, label: int, threshold: float,
                  title: str = "") -> None:
    """One PNG: input, reconstruction and the residual heatmap |x - G(x)|, score and label in the title.

    ``x`` is uint8 (C, H, W); ``recon`` is G(x) as float in [-1, 1], (C, H, W).
    The heatmap is the channel mean of |x - G(x)| on the [-1, 1] scale the
    network sees, drawn on a fixed 0..1 colour scale so that overlays of
    different images can be compared.
    """
    from .figures import plt, save_figure, to_display

    xf = x.astype(np.float32) / 127.5 - 1.0
    residual = np.abs(xf - recon).mean(axis=0)  # (H, W)
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.9))
    for ax, img, name in ((axes[0], x, "input"), (axes[1], recon, "reconstruction G(x)")):
        d = to_display(img)
        ax.imshow(d, cmap="gray" if d.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
    im = axes[2].imshow(residual, cmap="inferno", vmin=0.0, vmax=1.0)
    axes[2].set_title("|x - G(x)|", fontsize=9)
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.04)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    verdict = "ANOMALY" if label else "normal"
    fig.suptitle(f"{title}\nscore {score:.4g} ({'>' if label else '<='} threshold {threshold:.4g}): {verdict}",
                 fontsize=9, color="tab:red" if label else "tab:green")
    save_figure(fig, path)


def overlay_names(paths: Sequence[str], *, prefix_width: int | None = None) -> list[str]:
    """Unique PNG names: the position in the CSV, then the file's stem (``0003_scan.png``)."""
    width = prefix_width or max(4, len(str(max(0, len(paths) - 1))))
    return [f"{i:0{width}d}_{Path(p).stem or 'image'}.png" for i, p in enumerate(paths)]


# ----------------------------------------------------------------- predict
@dataclass
class PredictResult:
    paths: list[str]
    scores: np.ndarray  # (N,) float64, ||x - G(x)||_2
    labels: np.ndarray  # (N,) int64, 1 if score > threshold
    threshold: float
    out: Path
    overlays: Path | None


def predict_images(
    run_dir: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike,
    overlays: str | os.PathLike | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    overwrite: bool = False,
) -> PredictResult:
    """Score image files with the model in ``run_dir``; write ``out`` (CSV: path, score, label).

    Every image is read and scored before anything is written; the CSV is
    written last (atomically), so its presence means the whole job finished.
    ``overlays`` names a folder for one PNG per image (:func:`write_overlay`).

    Raises:
        AgadError / DataError: bad run directory, unreadable image (named),
            ``out`` exists without ``overwrite``. FileNotFoundError: missing path.

    Example:
        >>> predict_images("runs/demo", ["digits/"], out="scores.csv", overlays="overlays")  # doctest: +SKIP
    """
    from .detector import AGAD
    from .rundir import check_output_file, write_scores_csv

    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise AgadError(f"The 'batch_size' parameter must be a positive integer. Got {batch_size!r} instead.")
    out = check_output_file(out, overwrite=overwrite, example="scores.csv")
    if overlays is not None and Path(overlays).exists() and not Path(overlays).is_dir():
        raise AgadError(f"--overlays {overlays} exists and is not a directory; give a folder name")
    model = AGAD.load(run_dir, device=device)
    files = collect_image_paths(paths)
    bs = batch_size or model.config_.eval_batch_size

    # Pass 1: read and score everything (an unreadable image stops the job before any write).
    scores = []
    for i in range(0, len(files), bs):
        x, _, _ = read_images(files[i : i + bs], channels=model.n_channels_in_, size=model.image_size_)
        scores.append(model._score(x))
    s = np.concatenate(scores)
    labels = (s > model.threshold_).astype(np.int64)
    names = [str(f) for f in files]

    # Pass 2 (optional): overlays need the reconstructions; recomputed batch by batch to keep memory flat.
    overlay_dir = None
    if overlays is not None:
        overlay_dir = Path(overlays)
        overlay_dir.mkdir(parents=True, exist_ok=True)
        pngs = overlay_names(names)
        for i in range(0, len(files), bs):
            x, _, _ = read_images(files[i : i + bs], channels=model.n_channels_in_, size=model.image_size_)
            _, recon = model._score(x, return_reconstructions=True)
            for j in range(len(x)):
                k = i + j
                write_overlay(overlay_dir / pngs[k], x[j], recon[j], score=float(s[k]), label=int(labels[k]),
                              threshold=model.threshold_, title=Path(names[k]).name)
    write_scores_csv(out, s, labels, ids=names)
    return PredictResult(paths=names, scores=s, labels=labels, threshold=float(model.threshold_), out=out,
                         overlays=overlay_dir)
