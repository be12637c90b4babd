"""Score image files with a trained model: ``agad predict RUN_DIR PATH... --out scores.csv``.

Files are found and read by :mod:`agad.data.images`, the one reader that
training and :class:`agad.AGAD` use too: folders are searched recursively,
each image is converted to the model's channels and resized to its input
size, and an image that cannot be read is an error naming its path, raised
before anything is written. Inputs whose mode or size is far from the
model's give a warning.

Scores and the threshold come from the run directory (see
:mod:`agad.rundir`); nothing is normalised with the images being scored.
``threshold=T`` or ``contamination=F`` (the (1 - F) quantile of the run's
training scores) replace the stored threshold for one call only; the run
directory is not changed (``agad calibrate`` changes it).

Example:
    >>> result = predict_images("runs/demo", ["photos/"], out="scores.csv")  # doctest: +SKIP
    >>> result.labels[:3]                                                    # doctest: +SKIP
    array([0, 0, 1])
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .data.images import DataWarning, check_compatible, list_images, read_images
from .errors import AgadError

__all__ = ["PredictResult", "predict_images", "write_overlay"]


def write_overlay(path: Path, x: np.ndarray, recon: np.ndarray, *, score: float, label: int, threshold: float,
                  title: str = "") -> None:
    """One PNG: input, reconstruction, the residual heatmap and the heatmap over the input.

    ``x`` is uint8 (C, H, W); ``recon`` is G(x) as float in [-1, 1], (C, H, W).
    The heatmap is :func:`agad.evaluation.residual_map`, the map of
    :meth:`agad.AGAD.anomaly_map` and of the exported models: the channel mean
    of |x - G(x)| on the [-1, 1] scale the network sees, drawn on a fixed 0..1
    colour scale so that overlays of different images can be compared.
    """
    from .evaluation import residual_map
    from .figures import plt, save_figure, to_display

    xf = x.astype(np.float32) / 127.5 - 1.0
    residual = residual_map(xf[None], recon[None])[0]  # (H, W)
    fig, axes = plt.subplots(1, 4, figsize=(10, 2.9))
    for ax, img, name in ((axes[0], x, "input"), (axes[1], recon, "reconstruction G(x)")):
        d = to_display(img)
        ax.imshow(d, cmap="gray" if d.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
    im = axes[2].imshow(residual, cmap="inferno", vmin=0.0, vmax=1.0)
    axes[2].set_title("|x - G(x)|", fontsize=9)
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.04)
    d = to_display(x)
    axes[3].imshow(d, cmap="gray" if d.ndim == 2 else None, vmin=0, vmax=1)
    axes[3].imshow(residual, cmap="inferno", vmin=0.0, vmax=1.0, alpha=0.55)
    axes[3].set_title("heatmap on input", fontsize=9)
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
    threshold_source: str = "stored with the model"


def predict_images(
    run_dir: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike,
    overlays: str | os.PathLike | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    overwrite: bool = False,
    threshold: float | None = None,
    contamination: float | None = None,
    progress: bool = False,
) -> PredictResult:
    """Score image files with the model in ``run_dir``; write ``out`` (CSV: path, score, label).

    Every image is read and scored before anything is written; the CSV is
    written last (atomically), so its presence means the whole job finished.
    ``overlays`` names a folder for one PNG per image (:func:`write_overlay`).
    ``threshold`` (a number) or ``contamination`` (in (0, 0.5]: that share of
    the run's training images scores above the threshold) labels this call's
    images instead of the stored threshold. ``progress`` shows a tqdm bar on
    a terminal.

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
    if threshold is not None and contamination is not None:
        raise AgadError("give --threshold or --contamination, not both: each sets the threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)
                                  or not math.isfinite(threshold)):
        raise AgadError(f"The 'threshold' parameter must be a finite number. Got {threshold!r} instead.")
    model = AGAD.load(run_dir, device=device)
    cut, source = _threshold(model, threshold, contamination)
    files = list_images(paths)
    for message in check_compatible(files, channels=model.n_channels_in_, size=model.image_size_):
        warnings.warn(message, DataWarning, stacklevel=2)
    bs = batch_size or model.config_.eval_batch_size

    # Pass 1: read and score everything (an unreadable image stops the job before any write).
    scores = []
    with _bar(len(files), "scoring", progress) as bar:
        for i in range(0, len(files), bs):
            x, _, _ = read_images(files[i : i + bs], channels=model.n_channels_in_, size=model.image_size_)
            scores.append(model._score(x))
            bar.update(len(x))
    s = np.concatenate(scores)
    labels = (s > cut).astype(np.int64)
    names = [str(f) for f in files]

    # Pass 2 (optional): overlays need the reconstructions; recomputed batch by batch to keep memory flat.
    overlay_dir = None
    if overlays is not None:
        overlay_dir = Path(overlays)
        overlay_dir.mkdir(parents=True, exist_ok=True)
        pngs = overlay_names(names)
        with _bar(len(files), "overlays", progress) as bar:
            for i in range(0, len(files), bs):
                x, _, _ = read_images(files[i : i + bs], channels=model.n_channels_in_, size=model.image_size_)
                _, recon = model._score(x, return_reconstructions=True)
                for j in range(len(x)):
                    k = i + j
                    write_overlay(overlay_dir / pngs[k], x[j], recon[j], score=float(s[k]), label=int(labels[k]),
                                  threshold=cut, title=Path(names[k]).name)
                bar.update(len(x))
    write_scores_csv(out, s, labels, ids=names)
    return PredictResult(paths=names, scores=s, labels=labels, threshold=cut, out=out, overlays=overlay_dir,
                         threshold_source=source)


def _threshold(model, threshold: float | None, contamination: float | None) -> tuple[float, str]:
    """The threshold of this call and where it comes from."""
    from .scoring import contamination_threshold

    if threshold is not None:
        return float(threshold), "given with --threshold"
    if contamination is not None:
        train = getattr(model, "decision_scores_", None)
        if train is None:
            raise AgadError("--contamination needs the training scores of the run (train_scores.safetensors), "
                            "which this run directory lacks; pass --threshold T instead")
        return (contamination_threshold(train, contamination),
                f"the {1 - float(contamination):.3g} quantile of the {len(train)} training scores")
    return float(model.threshold_), "stored with the model"


def _bar(total: int, desc: str, enabled: bool):
    """A tqdm bar over images, shown only on a terminal (logs and captured output stay clean)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=True if not enabled else None, leave=False,
                dynamic_ncols=True)
