"""Evaluation on labelled images: image-level metrics, pixel anomaly maps and pixel metrics.

``agad evaluate RUN --data DIR`` scores a labelled folder, in any layout that
:func:`agad.data.layouts.scan_folder` understands, with the model of a run and
reports image-level AUROC, AUPR, F1 / precision / recall at the stored
threshold, and the best-F1 threshold of these labels (reported, never stored:
it was chosen on the data it describes).

Which images are scored (:func:`load_labelled`): the layout's test split when
it has one (an MVTec AD category's ``test/``, a ``test/`` split of class
folders, ``--normal-test-dir``); otherwise every image of the folder, which is
then taken as a labelled evaluation set as a whole.

The anomaly map of an image is the residual ``|x - G(x)|`` averaged over
channels, on the [-1, 1] scale the network sees (:func:`residual_map`, the one
definition used by :meth:`agad.AGAD.anomaly_map`, ``agad predict --overlays``,
the report and the exported models). Where the layout has masks, the maps are
compared with them: pixel AUROC and AUPRO (:func:`aupro`, the per-region
overlap integrated up to a false-positive rate of 0.3, as the MVTec AD
benchmark defines it).

>>> import numpy as np
>>> masks = np.zeros((1, 4, 4), np.uint8); masks[0, :2, :2] = 1
>>> maps = masks.astype(np.float32)                 # a perfect map
>>> pixel_auroc(masks, maps), aupro(masks, maps)
(1.0, 1.0)
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .errors import AgadError, DataError
from .scoring import check_finite, metrics_at, score_images, to_unit_range

__all__ = [
    "AUPRO_FPR_LIMIT", "Calibration", "Evaluation", "LabelledImages", "RunModel", "aupro", "calibrate_run",
    "evaluate_run", "json_metrics", "load_labelled",
    "pixel_auroc", "pro_curve", "reconstruction_maps", "residual_map", "resize_maps", "run_test_images",
    "smooth_maps", "write_evaluation",
]

AUPRO_FPR_LIMIT = 0.3  # MVTec AD's integration limit for the per-region overlap curve


# ------------------------------------------------------------------ anomaly maps
def residual_map(x, recon):
    """Per-pixel anomaly map: ``|x - G(x)|`` averaged over channels, (B, C, H, W) -> (B, H, W).

    ``x`` and ``recon`` are on the [-1, 1] scale (uint8 ``v`` is ``v / 127.5 - 1``), as torch
    tensors (the exported graph traces this function) or numpy arrays.

    >>> residual_map(np.ones((1, 3, 2, 2)), np.zeros((1, 3, 2, 2))).shape
    (1, 2, 2)
    """
    if isinstance(x, torch.Tensor):
        return (x - recon).abs().mean(dim=1)
    return np.abs(np.asarray(x, np.float32) - np.asarray(recon, np.float32)).mean(axis=1)


def _check_sigma(sigma: Any) -> float | None:
    if sigma is None:
        return None
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not math.isfinite(sigma) or sigma < 0:
        raise AgadError(f"The 'sigma' parameter must be None or a number >= 0 (pixels). Got {sigma!r} instead.")
    return float(sigma) or None


def smooth_maps(maps: np.ndarray, sigma: float | None) -> np.ndarray:
    """Gaussian smoothing of each (H, W) map with standard deviation ``sigma`` pixels (None or 0: unchanged)."""
    sigma = _check_sigma(sigma)
    if sigma is None:
        return maps
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(np.asarray(maps, np.float32), sigma=sigma, axes=(1, 2), mode="reflect")


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, h, w) float maps -> (N, H, W), bilinear with antialiasing (as Pillow resized the images)."""
    maps = np.asarray(maps, np.float32)
    if tuple(maps.shape[1:]) == tuple(size):
        return maps
    t = torch.from_numpy(np.ascontiguousarray(maps))[:, None]
    out = torch.nn.functional.interpolate(t, size=tuple(int(s) for s in size), mode="bilinear",
                                          align_corners=False, antialias=True)
    return out[:, 0].numpy()


@torch.inference_mode()
def reconstruction_maps(scorer: nn.Module, x: np.ndarray, *, batch_size: int = 256,
                        device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None,
                        channels_last: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Scores (float64, (N,)) and anomaly maps (float32, (N, S, S)) of uint8 images (N, C, S, S).

    Batches are the ones :func:`agad.scoring.score_images` uses, so the scores are those of the plain
    scoring path; only one batch of reconstructions is held at a time.
    """
    if not hasattr(scorer, "score_and_reconstruct"):
        raise AgadError(f"{type(scorer).__name__} scores without reconstructing: this method has no anomaly maps")
    n = len(x)
    scores = np.empty(n, np.float64)
    maps = np.empty((n, *x.shape[2:]), np.float32)
    for i in range(0, n, batch_size):
        xb = x[i : i + batch_size]
        s, recon = score_images(scorer, xb, batch_size=batch_size, device=device, amp_dtype=amp_dtype,
                                channels_last=channels_last, return_reconstructions=True)
        scores[i : i + len(xb)] = s
        maps[i : i + len(xb)] = residual_map(to_unit_range(torch.from_numpy(np.ascontiguousarray(xb))), recon).numpy()
    check_finite(scores, "scores")
    return scores, maps


# ------------------------------------------------------------------ pixel metrics
def _pixel_arrays(masks: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    masks = np.asarray(masks)
    maps = np.asarray(maps, np.float64)
    if masks.ndim == 4:
        masks = masks[:, 0]
    if masks.shape != maps.shape or masks.ndim != 3:
        raise AgadError(f"masks {masks.shape} and anomaly maps {maps.shape} must both be (N, H, W) of one size")
    if not np.isfinite(maps).all():
        raise AgadError("anomaly maps hold values that are not finite; the model's weights are broken: re-train it")
    return masks != 0, maps


def pixel_auroc(masks: np.ndarray, maps: np.ndarray) -> float:
    """AUROC of every pixel's map value against its mask (1 = anomalous pixel); NaN without both kinds.

    >>> pixel_auroc(np.array([[[0, 1]]]), np.array([[[0.2, 0.1]]]))
    0.0
    """
    from sklearn.metrics import roc_auc_score

    m, s = _pixel_arrays(masks, maps)
    if m.all() or not m.any():
        return float("nan")
    return float(roc_auc_score(m.ravel(), s.ravel()))


def pro_curve(masks: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-region overlap (PRO) curve: (false-positive rates, PRO values), from (0, 0) to (1, 1).

    At each threshold on the map values, the PRO is the mean, over every connected anomalous region of
    every mask (8-connectivity), of the fraction of the region's pixels above the threshold; the
    false-positive rate is the fraction of normal pixels (all images) above it. One point per distinct
    map value, as in the MVTec AD evaluation code.
    """
    from scipy import ndimage

    m, s = _pixel_arrays(masks, maps)
    # 8-connected inside an image, never across images (the middle plane of a 3x3x3 structure); one numbering
    structure = np.zeros((3, 3, 3), dtype=int)
    structure[1] = 1
    labels, n_regions = ndimage.label(m, structure=structure)
    ok = labels == 0
    n_ok = int(ok.sum())
    if n_regions == 0 or n_ok == 0:
        raise AgadError("the masks need anomalous and normal pixels for a PRO curve; "
                        f"got {int(m.sum())} anomalous of {m.size} pixels")
    sizes = np.bincount(labels.ravel())
    pro_step = np.where(ok, 0.0, 1.0 / sizes[labels]).ravel()  # each region adds up to 1 when fully covered
    order = np.argsort(s.ravel(), kind="stable")[::-1]
    values = s.ravel()[order]
    fprs = np.cumsum(ok.ravel()[order], dtype=np.float64) / n_ok
    pros = np.cumsum(pro_step[order]) / n_regions
    last_of_tie = np.append(values[1:] != values[:-1], True)  # a threshold flags all pixels of one value at once
    fprs = np.concatenate([[0.0], np.clip(fprs[last_of_tie], 0.0, 1.0)])
    pros = np.concatenate([[0.0], np.clip(pros[last_of_tie], 0.0, 1.0)])
    return fprs, pros


def aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float = AUPRO_FPR_LIMIT) -> float:
    """Area under the PRO curve up to ``fpr_limit``, divided by it (1.0 is perfect); NaN without regions.

    >>> masks = np.zeros((1, 1, 4), np.uint8); masks[0, 0, 0] = 1
    >>> round(aupro(masks, np.zeros((1, 1, 4))), 6)     # a constant map: the diagonal, 0.3**2 / 2 / 0.3
    0.15
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise AgadError(f"the AUPRO false-positive-rate limit must be in (0, 1]. Got {fpr_limit!r} instead.")
    m, _ = _pixel_arrays(masks, maps)
    if m.all() or not m.any():
        return float("nan")
    fprs, pros = pro_curve(masks, maps)
    i = int(np.searchsorted(fprs, fpr_limit, side="right"))  # fprs[:i] <= limit
    x, y = fprs[:i], pros[:i]
    if i < len(fprs) and x[-1] < fpr_limit:  # close the area at the limit, on the segment that crosses it
        f0, f1, p0, p1 = fprs[i - 1], fprs[i], pros[i - 1], pros[i]
        x = np.append(x, fpr_limit)
        y = np.append(y, p0 + (fpr_limit - f0) / (f1 - f0) * (p1 - p0))
    return float(np.trapezoid(y, x) / fpr_limit)


# ------------------------------------------------------------------ models of any method
@dataclass
class RunModel:
    """The scoring module of a run directory with what scoring needs; any method of :mod:`agad.methods`.

    >>> model = RunModel.load("runs/demo")            # doctest: +SKIP
    >>> model.score(x).shape, model.threshold         # doctest: +SKIP
    ((10,), 0.71)
    """

    run_dir: Path
    meta: dict[str, Any]
    cfg: Any
    scorer: nn.Module
    device: torch.device
    amp: torch.dtype | None
    channels: int
    image_size: int
    threshold: float
    train_scores: np.ndarray | None
    batch_size: int

    @classmethod
    def load(cls, run_dir: str | os.PathLike, *, device: str | None = None,
             batch_size: int | None = None) -> "RunModel":
        from .pipeline import load_run
        from .runtime import resolve_device, resolve_precision
        from .rundir import load_config

        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise AgadError(f"The 'batch_size' parameter must be a positive integer. Got {batch_size!r} instead.")
        cfg = load_config(run_dir)  # validates the record before anything is built
        dev = resolve_device(device or cfg.device)
        run = load_run(run_dir, device=dev)
        m = run.meta["model"]
        return cls(Path(run_dir), run.meta, run.cfg, run.scorer.eval(), dev, resolve_precision(cfg.precision, dev),
                   int(m["in_channels"]), int(m["image_size"]), float(run.meta["threshold"]), run.train_scores,
                   batch_size or run.cfg.eval_batch_size)

    @property
    def reconstructs(self) -> bool:
        return hasattr(self.scorer, "score_and_reconstruct")

    def score(self, x: np.ndarray) -> np.ndarray:
        """Scores (float64) of uint8 images (N, C, S, S) at the model's size; not finite is an error."""
        s = score_images(self.scorer, x, batch_size=self.batch_size, device=self.device, amp_dtype=self.amp,
                         channels_last=self.cfg.channels_last)
        return check_finite(s.astype(np.float64), f"scores of {self.run_dir}")

    def maps(self, x: np.ndarray, *, sigma: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Scores and anomaly maps (N, S, S) of uint8 images at the model's size, maps smoothed by ``sigma``."""
        scores, maps = reconstruction_maps(self.scorer, x, batch_size=self.batch_size, device=self.device,
                                           amp_dtype=self.amp, channels_last=self.cfg.channels_last)
        return scores, smooth_maps(maps, sigma)

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """G(x) as float32 (N, C, S, S) in [-1, 1] of a few uint8 images."""
        _, recon = score_images(self.scorer, x, batch_size=self.batch_size, device=self.device,
                                amp_dtype=self.amp, channels_last=self.cfg.channels_last, return_reconstructions=True)
        return recon.numpy()


# ------------------------------------------------------------------ labelled images
@dataclass
class LabelledImages:
    """Images with 0 (normal) / 1 (anomalous) labels, as scored by an evaluation.

    Attributes:
        x: uint8 (N, C, S, S) at the model's channels and size; y: int64 (N,).
        names: one name per image (the file's path, or the index in a dataset's test split).
        masks: uint8 (N, 1, S, S) of 0/1 (1 = anomalous pixel), or None when the layout has none.
        source: what was read, e.g. ``"data/bottle"`` or ``"the run's own test split of mnist-sample"``.
        layout: the layout found (:func:`agad.data.layouts.scan_folder`), or the dataset's name.
        images: which of its images: "test split", "every image" or "validation split".
    """

    x: np.ndarray
    y: np.ndarray
    names: list[str]
    masks: np.ndarray | None
    source: str
    layout: str
    images: str
    notes: list[str] = field(default_factory=list)

    @property
    def n_anomalous(self) -> int:
        return int(self.y.sum())

    def describe(self) -> str:
        """One line: where the images come from and how many of each kind."""
        n_an = self.n_anomalous
        return (f"{self.source} ({self.layout}; {self.images}): {len(self.y) - n_an} normal + {n_an} anomalous "
                f"images" + (", with masks" if self.masks is not None else ""))


def _has_test_split(layout: str, explicit: bool, normal_test_dirs: Sequence) -> bool:
    """Whether a layout (the description :func:`scan_folder` gives) keeps its own test images apart."""
    if explicit:
        return bool(normal_test_dirs)
    if layout.startswith("MVTec AD"):
        return True
    return layout.startswith("class folders with") and "no test split" not in layout


def _as_list(dirs) -> list:
    if dirs is None:
        return []
    return [dirs] if isinstance(dirs, (str, os.PathLike)) else list(dirs)


def load_labelled(
    data: str | os.PathLike,
    *,
    channels: int,
    image_size: int,
    normal_class: str | None = None,
    normal_dirs: Sequence[str | os.PathLike] = (),
    abnormal_dirs: Sequence[str | os.PathLike] = (),
    normal_test_dirs: Sequence[str | os.PathLike] = (),
    mask_dirs: Sequence[str | os.PathLike] = (),
    prefer_val: bool = False,
    need_both: bool = True,
) -> LabelledImages:
    """The labelled images of a folder, read at a model's ``channels`` and ``image_size``.

    The layout's test split when it has one, else every image of the folder; with ``prefer_val`` its
    validation split first, when it has one (what ``agad calibrate`` uses, so that a threshold is not chosen
    on the images it is then tested on). ``need_both``: refuse a set without normal or without anomalous
    images (AUROC needs both).

    >>> imgs = load_labelled("data/mvtec/bottle", channels=3, image_size=128)   # doctest: +SKIP
    >>> imgs.images, imgs.masks.shape                                            # doctest: +SKIP
    ('test split', (83, 1, 128, 128))
    """
    from .data.images import DataWarning, check_compatible
    from .data.layouts import FolderPlan, read_plan, scan_folder

    normal_dirs, abnormal_dirs = _as_list(normal_dirs), _as_list(abnormal_dirs)
    normal_test_dirs, mask_dirs = _as_list(normal_test_dirs), _as_list(mask_dirs)
    explicit = bool(normal_dirs or abnormal_dirs or normal_test_dirs or mask_dirs)
    plan = scan_folder(data, normal_class=normal_class, normal_dirs=normal_dirs, abnormal_dirs=abnormal_dirs,
                       normal_test_dirs=normal_test_dirs, mask_dirs=mask_dirs)
    val = plan.val or []
    if prefer_val and val:
        pairs, masks, which = list(val), None, "validation split"
    elif _has_test_split(plan.layout, explicit, normal_test_dirs):
        pairs, masks, which = list(plan.test), plan.test_masks, "test split"
    else:
        pairs = [*plan.train, *val, *plan.test]
        masks = None if plan.test_masks is None else [None] * (len(plan.train) + len(val)) + list(plan.test_masks)
        which = "every image"
    y = np.array([int(c != 0) for _, c in pairs], dtype=np.int64)
    n_an = int(y.sum())
    if need_both and (n_an == 0 or n_an == len(y)):
        kind = "anomalous" if n_an == 0 else "normal"
        hint = ("add a folder of anomalous images (--abnormal-dir DIR) or use a layout with anomaly classes"
                if n_an == 0 else "add normal images (--normal-dir DIR)")
        raise DataError(f"{plan.root} ({plan.layout}; {which}) holds no {kind} images, and evaluating needs "
                        f"both normal and anomalous ones; {hint}")
    if not pairs:
        raise DataError(f"{plan.root} ({plan.layout}) holds no images to score; check the folders")
    files = [p for p, _ in pairs]
    for message in check_compatible(files, channels=channels, size=image_size, what=f"images of {plan.root}"):
        warnings.warn(message, DataWarning, stacklevel=2)
    # the images to score as the test split of a plan without training images: read once, at the model's shape
    sub = FolderPlan(plan.root, plan.layout, list(plan.class_names), [], pairs, None, masks)
    fd = read_plan(sub, image_size=image_size, channels=channels)
    return LabelledImages(fd.x_test, y, [str(p) for p in files], fd.test_masks, str(plan.root), plan.layout, which)


def run_test_images(model: RunModel) -> LabelledImages:
    """The run's own test split (the one :func:`agad.pipeline.evaluate` scores), at the model's size."""
    from .detector import IN_MEMORY_DATA
    from .pipeline import prepare_split

    cfg = model.cfg
    if cfg.data == IN_MEMORY_DATA:
        raise AgadError(f"{model.run_dir} was fitted on arrays (AGAD.fit): it has no test split of its own; "
                        "pass --data DIR with labelled images")
    split, _ = prepare_split(cfg)
    x = split.x_test
    if x.shape[1] != model.channels or x.shape[-1] != model.image_size:
        raise AgadError(f"{cfg.data} now reads as {x.shape[1]}x{x.shape[-1]}x{x.shape[-1]} images but the model "
                        f"of {model.run_dir} takes {model.channels}x{model.image_size}x{model.image_size}; "
                        "pass --data DIR")
    return LabelledImages(x, np.asarray(split.y_test, np.int64), [str(i) for i in range(len(x))], None,
                          f"the run's own test split of {cfg.data}", f"normal class {cfg.normal_class}",
                          "test split")


# ------------------------------------------------------------------ evaluation
@dataclass
class Evaluation:
    """What :func:`evaluate_run` measured.

    ``metrics`` holds the image-level numbers of :func:`agad.scoring.metrics_at` (auroc, aupr, threshold,
    precision / recall / f1 / accuracy at it, best_f1_threshold and best_f1), plus ``pixel_auroc`` and
    ``aupro`` when the images have masks, and what was evaluated (data, layout, images, run).
    """

    model: RunModel
    images: LabelledImages
    scores: np.ndarray
    predictions: np.ndarray
    threshold: float
    metrics: dict[str, Any]
    maps: np.ndarray | None = None


def evaluate_run(
    run_dir: str | os.PathLike,
    data: str | os.PathLike | None = None,
    *,
    normal_class: str | None = None,
    normal_dirs: Sequence[str | os.PathLike] = (),
    abnormal_dirs: Sequence[str | os.PathLike] = (),
    normal_test_dirs: Sequence[str | os.PathLike] = (),
    mask_dirs: Sequence[str | os.PathLike] = (),
    device: str | None = None,
    batch_size: int | None = None,
    sigma: float | None = None,
) -> Evaluation:
    """Score labelled images with a run's model and measure it at the run's stored threshold.

    ``data`` is a folder (:func:`load_labelled`); None evaluates on the run's own test split. Nothing is
    written (see :func:`write_evaluation`).

    >>> ev = evaluate_run("runs/bottle", "data/mvtec/bottle")              # doctest: +SKIP
    >>> ev.metrics["auroc"], ev.metrics["pixel_auroc"], ev.metrics["aupro"]  # doctest: +SKIP
    (0.93, 0.88, 0.61)
    """
    sigma = _check_sigma(sigma)
    folder_opts = dict(normal_dirs=normal_dirs, abnormal_dirs=abnormal_dirs, normal_test_dirs=normal_test_dirs,
                       mask_dirs=mask_dirs)
    if data is None and (normal_class is not None or any(_as_list(v) for v in folder_opts.values())):
        raise AgadError("--normal-class / --normal-dir / --abnormal-dir / --normal-test-dir / --mask-dir describe "
                        "the folder of --data DIR; pass --data, or drop them to evaluate on the run's test split")
    model = RunModel.load(run_dir, device=device, batch_size=batch_size)
    if data is None:
        images = run_test_images(model)
    else:
        images = load_labelled(data, channels=model.channels, image_size=model.image_size,
                               normal_class=normal_class, **folder_opts)
        trained_on = model.cfg.data
        if trained_on and Path(trained_on).expanduser().resolve() == Path(data).expanduser().resolve() and \
                images.images == "every image":
            images.notes.append("this is the folder the model was trained on and it has no test split, so its "
                                "training images are scored too; leave out --data for the run's own test split")
    maps = None
    if images.masks is not None and model.reconstructs:
        scores, maps = model.maps(images.x, sigma=sigma)
    else:
        scores = model.score(images.x)
        if images.masks is not None:
            images.notes.append(f"method {model.cfg.method} does not reconstruct: no pixel metrics")
    threshold = model.threshold
    metrics = metrics_at(images.y, scores, threshold)
    if maps is not None:
        metrics["pixel_auroc"] = pixel_auroc(images.masks, maps)
        metrics["aupro"] = aupro(images.masks, maps)
        metrics["aupro_fpr_limit"] = AUPRO_FPR_LIMIT
        metrics["map_sigma"] = sigma
    metrics.update(run=str(run_dir), data=images.source, layout=images.layout, images=images.images,
                   method=model.cfg.method, threshold_source=model.meta.get("threshold_source"))
    return Evaluation(model, images, scores, (scores > threshold).astype(np.int64), threshold, metrics, maps)


def json_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics with NaN (undefined, e.g. AUROC of one class) as None, which JSON can hold."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in metrics.items()}


def write_evaluation(out: str | os.PathLike, ev: Evaluation, *, overwrite: bool = False) -> Path:
    """Write ``metrics.json`` and ``scores.csv`` (path, score, label, prediction) into the folder ``out``.

    Existing files there are replaced only with ``overwrite``; both are checked before either is written,
    and each is written atomically.
    """
    from .rundir import METRICS_FILE, SCORES_FILE, atomic_write_json, check_output_file, file_errors, \
        write_scores_csv

    out = Path(out)
    with file_errors(out):
        if out.exists() and not out.is_dir():
            raise AgadError(f"--out {out} is a file; give a folder for metrics.json and scores.csv")
    for name in (METRICS_FILE, SCORES_FILE):
        check_output_file(out / name, overwrite=overwrite, example=name)
    write_scores_csv(out / SCORES_FILE, ev.scores, ev.images.y, ids=ev.images.names, predictions=ev.predictions)
    atomic_write_json(out / METRICS_FILE, json_metrics(ev.metrics))
    return out


# ------------------------------------------------------------------ calibration
@dataclass
class Calibration:
    """What :func:`calibrate_run` stored: the new threshold, the old one, and how it was chosen."""

    run_dir: Path
    threshold: float
    previous: float
    rule: str
    images: LabelledImages
    false_positive_rate: float  # of the calibration images' normal ones, at the new threshold
    recall: float | None  # of their anomalous ones (None without any)
    f1: float | None


def calibrate_run(
    run_dir: str | os.PathLike,
    data: str | os.PathLike,
    *,
    target_fpr: float | None = None,
    normal_class: str | None = None,
    normal_dirs: Sequence[str | os.PathLike] = (),
    abnormal_dirs: Sequence[str | os.PathLike] = (),
    normal_test_dirs: Sequence[str | os.PathLike] = (),
    device: str | None = None,
) -> Calibration:
    """Set the stored threshold of an AGAD run from a labelled folder, without refitting.

    The images are the folder's validation split when it has one, else those :func:`load_labelled` gives.
    Without ``target_fpr`` the threshold is the F1-best one on them (normal and anomalous images needed);
    with it, the lowest threshold at which at most that share of their normal images scores above it
    (:meth:`agad.AGAD.calibrate`). The run's config.json is rewritten atomically and validated
    (:meth:`agad.AGAD.save_threshold`), and its model card (README.md), when there is one.

    >>> calibrate_run("runs/demo", "data/xray", target_fpr=0.05).threshold   # doctest: +SKIP
    0.81
    """
    from .detector import AGAD
    from .report import model_card
    from .rundir import MODEL_CARD_FILE, atomic_write_text, read_history, read_run_config

    if target_fpr is not None and (isinstance(target_fpr, bool) or not isinstance(target_fpr, numbers.Real)
                                   or not 0 <= target_fpr < 1):
        raise AgadError(f"--target-fpr must be a number in [0, 1), e.g. 0.05. Got {target_fpr!r} instead.")
    run_dir = Path(run_dir)
    model = AGAD.load(run_dir, device=device)
    images = load_labelled(data, channels=model.n_channels_in_, image_size=model.image_size_,
                           normal_class=normal_class, normal_dirs=normal_dirs, abnormal_dirs=abnormal_dirs,
                           normal_test_dirs=normal_test_dirs, prefer_val=True, need_both=target_fpr is None)
    if target_fpr is not None and images.n_anomalous == len(images.y):
        raise DataError(f"{images.source} ({images.images}) holds no normal images; a false-positive rate "
                        "needs normal ones")
    previous = float(model.threshold_)
    model.calibrate(images.x, images.y, target_fpr=target_fpr)
    scores = model.decision_function(images.x)
    m = metrics_at(images.y, scores, model.threshold_)
    normal = images.y == 0
    fpr = float((scores[normal] > model.threshold_).mean())
    rule = ("best F1" if target_fpr is None else f"false-positive rate {float(target_fpr):g}")
    model.save_threshold(run_dir, note=f"{rule} on {len(images.y)} images ({images.images}) of {images.source}")
    card = run_dir / MODEL_CARD_FILE
    if card.is_file():  # the card states the threshold: keep it true
        atomic_write_text(card, model_card(read_run_config(run_dir), read_history(run_dir)))
    has_anomalies = images.n_anomalous > 0
    return Calibration(run_dir, float(model.threshold_), previous, rule, images, fpr,
                       m["recall_at_threshold"] if has_anomalies else None,
                       m["f1_at_threshold"] if has_anomalies else None)
