"""The one training path, and the run directory it writes and reads back.

:func:`fit_model` is what both ``agad train`` (:func:`train`) and
:meth:`agad.AGAD.fit` call: it holds out validation images, builds the method's
networks (:mod:`agad.methods`), trains, keeps an epoch, and scores the normal
training images. :func:`save_run` writes one run record for both, and
:func:`load_run` reads any run back (safetensors only, never pickle).

>>> from agad.config import TrainConfig
>>> run = train(TrainConfig(epochs=1), "runs/demo", progress=False)   # doctest: +SKIP
>>> evaluate(run.run_dir)["auroc"]                                     # doctest: +SKIP
0.97...
"""

from __future__ import annotations

import contextlib
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .config import TrainConfig
from .data import Split, existing_path, load_dataset, one_class_split, validation_split
from .errors import AgadError
from .methods import calibrate_label_head, get_method, without_label_head
from .nets import Nets, count_parameters
from .checkpoint import load_weights, save_weights
from .rundir import (
    DISCRIMINATOR_FILE, FORMAT_VERSION, GENERATOR_FILE, HISTORY_FILE, METRICS_FILE, SCORES_FILE, TRAIN_SCORES_FILE,
    CHECKPOINT_DIR, MODEL_CARD_FILE, atomic_write_json, atomic_write_text, check_output_dir, load_config, read_history, read_run_config, read_train_scores,
    staging_dir, staging_path, write_history, write_record, write_scores_csv, write_train_scores,
)
from .runtime import DistInfo, init_distributed, resolve_device, resolve_precision
from .scoring import (DEFAULT_CONTAMINATION, auroc_of, check_finite, contamination_threshold, metrics_at,
                      score_images)


# ------------------------------------------------------------------------------------------ selection
@dataclass
class Validation:
    """Labelled validation images (0 normal, 1 anomalous), never test images."""

    x: np.ndarray
    y: np.ndarray


def selection_score(select_epoch: str, record: dict) -> float | None:
    """What ``select_epoch`` minimises over epochs, from an epoch's record (None: this rule keeps the last epoch).

    val-recon: the held-out normal images' mean score. val-ratio: that score over the labelled anomalies' mean
    reconstruction distance during the epoch (``G/anomaly/dist``), so an epoch where everything, anomalies
    included, is reconstructed well does not look best.

    >>> selection_score("val-ratio", {"val/recon": 2.0, "G/anomaly/dist": 0.5})
    4.0
    >>> selection_score("last", {"val/recon": 2.0}) is None
    True
    """
    if select_epoch == "val-recon":
        return record["val/recon"]
    if select_epoch == "val-ratio":  # gamma > 0 (TrainConfig checks): every step trains on labelled anomalies
        return record["val/recon"] / max(record["G/anomaly/dist"], 1e-12)
    return None


class EpochKeeper:
    """Keeps the epoch, score and scoring weights of the lowest :func:`selection_score`.

    Only held-out *normal training* images (and, for val-ratio, the labelled anomalies the generator trains on)
    decide: no test data.
    """

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.score = math.inf
        self.state: dict[str, torch.Tensor] | None = None

    def offer(self, epoch: int, scorer: nn.Module, score: float) -> None:
        if score < self.score:
            self.epoch, self.score = epoch, score
            self.state = {k: v.detach().clone() for k, v in scorer.state_dict().items()}

    def restore(self, scorer: nn.Module) -> None:
        """Back to the kept epoch's weights (nothing to do when no epoch was offered)."""
        if self.state is not None:
            scorer.load_state_dict(self.state)


class TrainingDiverged(AgadError):
    """A loss or weight became NaN or infinite."""


def _check_record(record: dict[str, float]) -> None:
    """The divergence guard: a non-finite loss term stops training, naming the term and the epoch."""
    for key, value in record.items():
        if isinstance(value, float) and not math.isfinite(value) and not key.startswith(("val/", "test/")):
            raise TrainingDiverged(
                f"training diverged at epoch {record.get('epoch')}: loss term {key} is {value}; lower the loss "
                "weights or the learning rate (nothing was written as a finished run)")


def _check_weights(nets: Nets) -> None:
    for role, module in (("generator", nets.G), ("discriminator", nets.D)):
        if module is None:
            continue
        for name, t in module.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise TrainingDiverged(f"training diverged: {role} tensor {name} is not finite; lower the loss "
                                       "weights or the learning rate (nothing was written as a finished run)")


# ------------------------------------------------------------------------------------------------ resume
CHECKPOINT_FILE = "state.safetensors"
CHECKPOINT_EVERY_S = 60.0  # write the training state at the end of an epoch once this long after the last
CALIBRATION_IMAGES = 2048  # label_head without a hold-out: the first this many normal training images calibrate


def _identity(cfg: TrainConfig) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed: the config without its runtime options."""
    from .config import RUNTIME_FIELDS

    return {k: v for k, v in cfg.to_dict().items() if k not in RUNTIME_FIELDS}


def _save_checkpoint(path: Path, cfg: TrainConfig, trainer, keeper: "EpochKeeper") -> None:
    from .checkpoint import save_state

    tensors, meta = trainer.training_state()
    if keeper.state is not None:
        tensors.update({f"keeper/{k}": v for k, v in keeper.state.items()})
    meta.update(config=_identity(cfg), keeper_epoch=keeper.epoch,
                keeper_score=None if keeper.state is None else keeper.score)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_state(path, tensors, meta)


def _load_checkpoint(path: Path, cfg: TrainConfig, trainer, keeper: "EpochKeeper") -> None:
    from .checkpoint import load_state

    tensors, meta = load_state(path)
    if meta.get("config") != _identity(cfg):
        raise AgadError(f"{path} is the checkpoint of another configuration; rerun with the options it was "
                        "started with, or drop --resume to train from the start")
    trainer.load_training_state(tensors, meta)
    if meta.get("keeper_epoch") is not None:
        keeper.epoch, keeper.score = int(meta["keeper_epoch"]), float(meta["keeper_score"])
        keeper.state = {k[len("keeper/"):]: v for k, v in tensors.items() if k.startswith("keeper/")}


def _tensorboard(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise AgadError("--logger tensorboard needs the tensorboard package: pip install 'agad[tensorboard]'") from None
    return SummaryWriter(log_dir=str(log_dir))


def check_logger(cfg: TrainConfig) -> None:
    """Refuse a logger whose package is missing before any training."""
    if cfg.logger == "tensorboard":
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise AgadError("--logger tensorboard needs the tensorboard package: pip install 'agad[tensorboard]'")


# Memory of one training step per image and pixel (activations of both passes, gradients, the optimiser's
# share): measured on the naive backbone at one thread, 120 MB at 64 x 32 x 32, 1.3 GB at 64 x 128 x 128.
STEP_BYTES_PER_PIXEL = 1300


def check_training_memory(cfg: TrainConfig, image_size: int, *, with_anomalies: bool) -> None:
    """Refuse, before any network is built, a batch and image size whose training step cannot fit in memory."""
    from .data.bounds import check_memory

    images = cfg.batch_size + (cfg.min_anomalies_per_batch if with_anomalies else 0)
    check_memory(STEP_BYTES_PER_PIXEL * images * image_size**2,
                 what=f"a training step of {images} images of {image_size}x{image_size}",
                 hint="use a smaller --image-size or --batch-size")


# ------------------------------------------------------------------------------------------- fit_model
@dataclass
class FitResult:
    cfg: TrainConfig  # resolved
    nets: Nets  # the kept scoring networks (e.g. the EMA copy of G) and D
    scorer: nn.Module  # images in [-1, 1] -> scores
    history: list[dict[str, float]]
    kept_epoch: int
    train_scores: np.ndarray  # scores of every normal training image given, held-out ones included (float64)
    n_fit: int  # normal images trained on
    n_validation: int  # images held out for validation (normal and anomalous)
    n_anomalies: int
    validation: dict[str, float] | None  # validation numbers at the kept epoch
    seconds: float
    d_resets: int
    in_channels: int
    image_size: int
    device: torch.device
    amp: torch.dtype | None
    trainer: Any = field(repr=False, default=None)

    def score(self, x: np.ndarray | torch.Tensor, *, return_reconstructions: bool = False):
        return score_images(self.scorer, x, batch_size=self.cfg.eval_batch_size, device=self.device,
                            amp_dtype=self.amp, channels_last=self.cfg.channels_last,
                            return_reconstructions=return_reconstructions)


def fit_model(
    cfg: TrainConfig,
    x_normal: np.ndarray,
    x_anomaly: np.ndarray | None = None,
    *,
    val_pool: np.ndarray | None = None,
    val: Validation | None = None,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    progress: bool = True,
    dist_info: DistInfo | None = None,
    checkpoint: Path | None = None,
    log_dir: Path | None = None,
) -> FitResult:
    """Train ``cfg.method`` on uint8 (N, C, S, S) normal images and, optionally, labelled anomalies.

    When the resolved config holds out a validation fraction, that share of ``x_normal`` is not trained on;
    its scores give ``val/recon`` per epoch and choose the kept epoch (``select_epoch``). ``val_pool`` offers
    unlabelled anomalous *training* images: as many as were held out join them as validation anomalies
    (``val/auroc``). ``val`` is a labelled validation set given by the user (``val/auroc`` only).
    ``x_test``/``y_test`` are scored per epoch only when ``cfg.track_test_auroc`` (a diagnostic).
    ``log_dir``: where ``cfg.logger = "tensorboard"`` writes its event files.
    ``checkpoint``: a file for the training state, written at the end of an epoch at most every
    :data:`CHECKPOINT_EVERY_S` seconds; when it exists, training continues from it and ends with the same
    weights and scores as an uninterrupted run.
    """
    cfg = cfg.resolved()
    method = get_method(cfg.method)
    n_anomalies = 0 if x_anomaly is None else len(x_anomaly)
    device = resolve_device(cfg.device)
    amp = resolve_precision(cfg.precision, device)
    is_main = dist_info is None or dist_info.is_main
    fraction = cfg.resolved_val_fraction()
    x_fit, x_held, carved = x_normal, None, None
    if fraction > 0:
        x_fit, x_held = validation_split(x_normal, fraction, seed=cfg.seed)
        if val_pool is not None and len(val_pool):
            rng = np.random.default_rng(cfg.seed + 12345)
            pick = np.sort(rng.choice(len(val_pool), size=min(len(val_pool), len(x_held)), replace=False))
            carved = Validation(np.concatenate([x_held, val_pool[pick]]),
                                np.concatenate([np.zeros(len(x_held), np.int64), np.ones(len(pick), np.int64)]))
        else:
            carved = Validation(x_held, np.zeros(len(x_held), np.int64))
    in_channels, image_size = int(x_normal.shape[1]), int(x_normal.shape[-1])
    check_training_memory(cfg, image_size, with_anomalies=n_anomalies > 0)
    nets = method.build(cfg, in_channels, image_size)
    trainer = method.trainer(cfg, nets, dist_info)
    keeper = EpochKeeper()
    resumable = checkpoint is not None and hasattr(trainer, "training_state") and not (
        dist_info is not None and dist_info.enabled)
    if resumable and Path(checkpoint).is_file():
        _load_checkpoint(Path(checkpoint), cfg, trainer, keeper)
    last_saved = [time.monotonic()]
    logger = _tensorboard(log_dir) if cfg.logger == "tensorboard" and log_dir is not None and is_main else None
    x_show = x_fit[:8]  # the training images whose reconstructions the logger shows
    # label_head standardises its score's parts on normal images: the held-out ones when there are
    x_calibrate = x_held if x_held is not None else x_fit[:CALIBRATION_IMAGES]
    if cfg.uses_label_head() and n_anomalies == 0:
        raise AgadError("label_head learns from labelled anomalies and this training set has none; add "
                        "labelled anomalies, or pass --no-label-head")

    def score(scorer: nn.Module, x: np.ndarray) -> np.ndarray:
        return score_images(scorer, x, batch_size=cfg.eval_batch_size, device=device, amp_dtype=amp,
                            channels_last=cfg.channels_last)

    def on_epoch(tr, record: dict[str, float]) -> None:
        _check_record(record)
        if not is_main:
            return
        scorer = method.scorer(tr.scoring_nets())
        calibrate_label_head(scorer, x_calibrate, score)
        if carved is not None:  # training data only: fair for selection
            s = score(scorer, carved.x)
            if len(np.unique(carved.y)) > 1:
                record["val/auroc"] = auroc_of(carved.y, s)
            recon = without_label_head(scorer)  # the epoch rules read the reconstruction score alone
            held = s[carved.y == 0] if recon is scorer else score(recon, carved.x[carved.y == 0])
            record["val/recon"] = float(held.mean())
            key = selection_score(cfg.select_epoch, record)
            if key is not None:
                keeper.offer(tr.epoch, scorer, key)
        if val is not None:
            record["val/auroc"] = auroc_of(val.y, score(scorer, val.x))
        if cfg.track_test_auroc and x_test is not None:  # a diagnostic (paper Fig. 6): chooses nothing
            record["test/auroc"] = auroc_of(y_test, score(scorer, x_test))
        if logger is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    logger.add_scalar(key, value, tr.epoch)
            if hasattr(scorer, "score_and_reconstruct"):
                _, recon = score_images(scorer, x_show, device=device, amp_dtype=amp,
                                        channels_last=cfg.channels_last, return_reconstructions=True)
                both = torch.cat([torch.from_numpy(x_show).float() / 255.0, (recon + 1.0) / 2.0])  # (2k, C, S, S)
                logger.add_images("inputs and reconstructions", both.clamp(0, 1), tr.epoch)
            logger.flush()
        if resumable and time.monotonic() - last_saved[0] >= CHECKPOINT_EVERY_S:
            tr.history.append(record)  # the state after this epoch, its record included
            try:
                _save_checkpoint(Path(checkpoint), cfg, tr, keeper)
            finally:
                tr.history.pop()
            last_saved[0] = time.monotonic()

    t0 = time.perf_counter()
    try:
        history = trainer.fit(torch.from_numpy(x_fit), torch.from_numpy(x_anomaly) if n_anomalies else None,
                              progress=progress, on_epoch=on_epoch)
    finally:
        if logger is not None:
            logger.close()
    seconds = time.perf_counter() - t0
    kept_nets = trainer.scoring_nets()
    scorer = method.scorer(kept_nets)
    keeper.restore(scorer)
    calibrate_label_head(scorer, x_calibrate, score)  # what the kept epoch had (and a resumed run's last)
    _check_weights(kept_nets)
    kept_epoch = keeper.epoch or len(history)
    validation = None
    if carved is not None or val is not None:
        validation = {k: history[kept_epoch - 1][k] for k in ("val/auroc", "val/recon") if k in history[kept_epoch - 1]}
    train_scores = check_finite(score(scorer, x_normal).astype(np.float64), "training scores")
    return FitResult(cfg=cfg, nets=kept_nets, scorer=scorer.eval(), history=history, kept_epoch=kept_epoch,
                     train_scores=train_scores, n_fit=len(x_fit),
                     n_validation=0 if carved is None else len(carved.y), n_anomalies=n_anomalies, validation=validation,
                     seconds=seconds, d_resets=int(getattr(trainer, "d_resets", 0)), in_channels=in_channels,
                     image_size=image_size, device=device, amp=amp, trainer=trainer)


# ------------------------------------------------------------------------------------------ run record
def run_record(fit: FitResult, *, threshold: float, threshold_source: str, contamination: float,
               data: dict[str, Any], command: str, world_size: int = 1,
               estimator: dict[str, Any] | None = None) -> dict[str, Any]:
    """config.json of a run: the same sections whether ``agad train`` or ``AGAD.fit`` trained it."""
    cfg = fit.cfg
    record = {
        "format_version": FORMAT_VERSION,
        "agad_version": __version__,
        "config": cfg.to_dict(),
        "model": {
            "method": cfg.method,
            "backbone": cfg.backbone,
            "in_channels": fit.in_channels,
            "image_size": fit.image_size,
            "advprop": cfg.advprop,
            "generator_parameters": count_parameters(fit.nets.G),
            "discriminator_parameters": 0 if fit.nets.D is None else count_parameters(fit.nets.D),
            "scores_with": "ema" if cfg.method == "agad" and cfg.ema_decay > 0 else "generator",
        },
        "preprocessing": {
            "resize_to": fit.image_size, "channels": fit.in_channels,
            "color": "grayscale (L)" if fit.in_channels == 1 else "RGB",
            "resize": "Pillow bilinear to a square", "scale": "x/127.5 - 1 (uint8 -> [-1, 1])",
        },
        "threshold": float(threshold),
        "contamination": float(contamination),
        "threshold_source": threshold_source,
        "score_scaling": {"method": "linear", "train_min": float(fit.train_scores.min()),
                          "train_max": float(fit.train_scores.max())},
        "data": {**data, "n_normal_train": int(fit.n_fit), "n_anomaly_train": int(fit.n_anomalies)},
        "validation": fit.validation,
        "kept_epoch": int(fit.kept_epoch),
        "train_seconds": fit.seconds,
        "d_resets": fit.d_resets,
        "world_size": world_size,
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "device": str(fit.device), "amp": str(fit.amp)},
        "command": command,
    }
    if estimator is not None:
        record["estimator"] = estimator
    return record


def write_run_files(folder: Path, *, nets: Nets, history: list[dict[str, float]], train_scores: np.ndarray | None,
                    record: dict[str, Any], figure: Any = None) -> None:
    """Weights, history, training scores, figures, then config.json (validated) into ``folder``.

    ``figure``, if given, is called with the folder to add figures (e.g. ``reconstructions.png``).
    """
    save_weights(nets.G, folder / GENERATOR_FILE, {"role": "generator"})
    if nets.D is not None:
        save_weights(nets.D, folder / DISCRIMINATOR_FILE, {"role": "discriminator"})
    write_history(folder / HISTORY_FILE, history)
    if train_scores is not None:
        write_train_scores(folder / TRAIN_SCORES_FILE, train_scores)
    if figure is not None:
        figure(folder)
    from .report import model_card

    atomic_write_text(folder / MODEL_CARD_FILE, model_card(record, history))
    write_record(folder, record)


def save_run(out: str | Path, *, nets: Nets, history: list[dict[str, float]], train_scores: np.ndarray | None,
             record: dict[str, Any], overwrite: bool = False, figure: Any = None) -> Path:
    """Write a run directory atomically (:func:`write_run_files` in a staging folder renamed into place)."""
    final = Path(out)
    with staging_dir(final, overwrite=overwrite) as tmp:
        write_run_files(tmp, nets=nets, history=history, train_scores=train_scores, record=record, figure=figure)
    return final


def _fit_files(fit: FitResult, figure: tuple[np.ndarray, np.ndarray, str] | None) -> dict[str, Any]:
    draw = None  # a function of the staging folder that adds the figure
    if figure is not None and hasattr(fit.scorer, "score_and_reconstruct"):
        from .figures import reconstruction_figure

        x_fig, y_fig, title = figure
        draw = lambda tmp: reconstruction_figure(  # noqa: E731
            fit.scorer, x_fig, y_fig, tmp / "reconstructions.png", device=fit.device, amp_dtype=fit.amp, title=title)
    return {"nets": fit.nets, "history": fit.history, "train_scores": fit.train_scores, "figure": draw}


def save_fit(out: str | Path, fit: FitResult, record: dict[str, Any], *, overwrite: bool = False,
             figure: tuple[np.ndarray, np.ndarray, str] | None = None) -> Path:
    """:func:`save_run` for a fresh :class:`FitResult`; ``figure`` = (x_test, y_test, title) adds
    ``reconstructions.png`` for methods that reconstruct."""
    return save_run(out, record=record, overwrite=overwrite, **_fit_files(fit, figure))


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: TrainConfig
    meta: dict[str, Any]
    nets: Nets
    scorer: nn.Module
    train_scores: np.ndarray | None


def load_run(run_dir: str | Path, *, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild a run's scoring networks from its files alone (no pickle), in eval mode."""
    run_dir = Path(run_dir)
    meta = read_run_config(run_dir)
    cfg = load_config(run_dir)
    m = meta["model"]
    method = get_method(cfg.method)
    nets = method.build(cfg, int(m["in_channels"]), int(m["image_size"]))
    load_weights(nets.G, run_dir / GENERATOR_FILE)
    d_path = run_dir / DISCRIMINATOR_FILE
    if nets.D is not None:
        if d_path.is_file():
            load_weights(nets.D, d_path)
        elif method.labels == "ignores":  # the baselines score with D too
            raise AgadError(f"weights file {d_path} is missing; is this a complete run directory?")
        else:
            nets.D = None
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    # the memory format of training, so that scores match the fitted model's bit for bit
    for module in (nets.G, nets.D):
        if module is not None:
            module.to(dev, memory_format=fmt).eval()
    scores_path = run_dir / TRAIN_SCORES_FILE
    scores = read_train_scores(scores_path) if scores_path.is_file() else None
    return LoadedRun(run_dir, cfg, meta, nets, method.scorer(nets).eval(), scores)


# ------------------------------------------------------------------------------------- agad train / evaluate
def _is_named(data: str) -> bool:
    """A dataset whose classes are numbered: a name (mnist, cifar10...) or an IDX / CIFAR folder."""
    from .data import DATASETS
    from .data.cifar import find_cifar
    from .data.datasets import _has_idx

    if data in DATASETS:
        return True
    path = Path(data)
    return path.is_dir() and (_has_idx(path) or find_cifar(path) is not None) or find_cifar(path) is not None


def prepare_split(cfg: TrainConfig) -> tuple[Split, Any]:
    """Load the dataset named by the config and apply the one-class protocol (errors before any file is written).

    A folder is read by :func:`agad.data.layouts.load_folder` in the layout it was distributed in; its normal
    class (found by name, or ``normal_class`` as a folder name) becomes class 0 of the dataset returned.
    """
    folder_opts = {k: getattr(cfg, k) for k in ("normal_dirs", "abnormal_dirs", "normal_test_dirs", "mask_dirs")}
    if _is_named(cfg.data):
        if any(folder_opts.values()):
            raise AgadError(f"--normal-dir / --abnormal-dir / --normal-test-dir / --mask-dir map the folders of "
                            f"images; {cfg.data} numbers its classes: drop them or pass a folder of images")
        if isinstance(cfg.normal_class, str):
            raise AgadError(f"--normal-class {cfg.normal_class!r}: {cfg.data} numbers its classes; pass an index")
        ds = load_dataset(cfg.data, image_size=cfg.image_size)
        normal = cfg.normal_class
    else:
        existing_path(cfg.data)  # a missing folder first: no class of it can be named
        if isinstance(cfg.normal_class, int) and cfg.normal_class != 0:
            raise AgadError(f"--normal-class {cfg.normal_class}: a folder's classes are its sub-folders; pass the "
                            "normal one by name (e.g. --normal-class NORMAL), or nothing to find it by its name")
        name = cfg.normal_class if isinstance(cfg.normal_class, str) else None
        ds = load_dataset(cfg.data, image_size=cfg.image_size, normal_class=name, seed=cfg.seed, **folder_opts)
        normal = 0  # the folder loader puts the normal class first
    split = one_class_split(
        ds, normal, gamma=cfg.gamma, known_classes=cfg.known_classes, seed=cfg.seed, mode=cfg.protocol
    )
    return split, ds


def _validation_pool(cfg: TrainConfig, split: Split, ds) -> np.ndarray:
    """Training images of the classes the test calls anomalous, minus the labelled anomalies."""
    normal = cfg.normal_class if _is_named(cfg.data) else 0
    if cfg.protocol == "one-vs-rest":
        pool = np.flatnonzero(ds.y_train != normal)
    else:
        pool = np.flatnonzero(ds.y_train == normal)
    return ds.x_train[np.setdiff1d(pool, split.anomaly_indices)]


@dataclass
class TrainResult:
    run_dir: Path | None
    fit: FitResult
    split: Split
    threshold: float


def train(
    cfg: TrainConfig,
    out: str | Path | None,
    *,
    progress: bool = True,
    overwrite: bool = False,
    figure: bool = True,
    command: str | None = None,
    contamination: float = DEFAULT_CONTAMINATION,
    threshold: float | None = None,
    resume: bool = False,
) -> TrainResult:
    """``agad train``: one model on a dataset's one-class split, written to ``out`` (None: in memory only).

    While training, the state is checkpointed in the staging folder beside ``out``; with ``resume`` a run that
    was killed continues from its last checkpoint (a finished run directory is never touched). The stored
    threshold is the (1 - ``contamination``) quantile of the normal training images' scores, or ``threshold``.
    """
    if threshold is not None and not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
        raise AgadError(f"--threshold must be a finite number. Got {threshold!r} instead.")
    contamination_threshold(np.zeros(2), contamination)  # checks its range before any work
    if out is not None and not (resume and staging_path(Path(out)).is_dir()):  # fail before any work
        check_output_dir(out, overwrite=overwrite)
    cfg = cfg.resolved()
    check_logger(cfg)
    device = resolve_device(cfg.device)
    dist_info = init_distributed(device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    split, ds = prepare_split(cfg)
    pool = _validation_pool(cfg, split, ds) if cfg.resolved_val_fraction() > 0 else None
    check_training_memory(cfg, int(split.x_normal.shape[-1]), with_anomalies=len(split.x_anomaly) > 0)
    writes = out is not None and dist_info.is_main
    staging = staging_dir(Path(out), overwrite=overwrite, resume=resume, keep_on_error=True) if writes else None
    with staging or contextlib.nullcontext() as tmp:
        # the staging folder (and its lock) exists from here: a second run into the same --out refuses now
        fit = fit_model(cfg, split.x_normal, split.x_anomaly if len(split.x_anomaly) else None, val_pool=pool,
                        x_test=split.x_test, y_test=split.y_test, progress=progress, dist_info=dist_info,
                        checkpoint=None if tmp is None else tmp / CHECKPOINT_DIR / CHECKPOINT_FILE,
                        log_dir=None if tmp is None else tmp / "tensorboard")
        given = threshold is not None
        threshold = float(threshold) if given else contamination_threshold(fit.train_scores, contamination)
        result = TrainResult(run_dir=None, fit=fit, split=split, threshold=threshold)
        if writes:
            _write_train_run(tmp, cfg, fit, split, ds, threshold, contamination, command, dist_info, figure,
                             "given with --threshold" if given else "quantile of training-normal scores")
    if writes:
        result.run_dir = Path(out)
    return result


def _write_train_run(tmp: Path, cfg: TrainConfig, fit: FitResult, split: Split, ds, threshold: float,
                     contamination: float, command: str | None, dist_info: DistInfo, figure: bool,
                     threshold_source: str) -> None:
    data = {
        "source": cfg.data,
        "class_names": list(ds.class_names),
        "anomaly_classes": sorted({int(c) for c in split.anomaly_classes}),
        "n_test": int(len(split.y_test)),
        "n_validation": fit.n_validation,
    }
    record = run_record(fit, threshold=threshold, threshold_source=threshold_source,
                        contamination=contamination, data=data, command=command or " ".join(sys.argv),
                        world_size=dist_info.world_size)
    title = f"{cfg.data}, normal class {cfg.normal_class}"
    show = figure and len(split.y_test) > 0  # a folder of normal images only has no test images to show
    write_run_files(tmp, record=record, **_fit_files(fit, (split.x_test, split.y_test, title) if show else None))


def evaluate(run_dir: str | Path, *, device: str = "auto", batch_size: int | None = None) -> dict[str, Any]:
    """AUROC, AUPR and the threshold's F1 of a run on its test split; writes metrics.json and scores.csv."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    cfg, meta = run.cfg, run.meta
    dev = resolve_device(device if device != "auto" else cfg.device)
    run.scorer.to(dev)
    split, _ = prepare_split(cfg)
    if len(split.y_test) == 0:
        raise AgadError(f"{cfg.data} has no test images (normal images only); evaluate the run on labelled "
                        f"images with `agad evaluate {run_dir} --data DIR`")
    amp = resolve_precision(cfg.precision, dev)
    t0 = time.perf_counter()
    scores = score_images(run.scorer, split.x_test, batch_size=batch_size or cfg.eval_batch_size, device=dev,
                          amp_dtype=amp, channels_last=cfg.channels_last)
    seconds = time.perf_counter() - t0
    check_finite(scores, f"scores of {run_dir}")
    y = split.y_test
    metrics = metrics_at(y, scores, float(meta["threshold"]))
    metrics.update({
        "n_test": int(len(y)),
        "score_seconds": seconds,
        "normal_class": cfg.normal_class,
        "gamma": cfg.gamma,
        "data": cfg.data,
        "backbone": cfg.backbone,
        "method": cfg.method,
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "train_seconds": meta.get("train_seconds"),
        "validation": meta.get("validation"),
    })
    write_scores_csv(run_dir / SCORES_FILE, scores, y)
    atomic_write_json(run_dir / METRICS_FILE, {k: None if isinstance(v, float) and not math.isfinite(v) else v
                                               for k, v in metrics.items()})
    return metrics


__all__ = ["EpochKeeper", "FitResult", "LoadedRun", "TrainResult", "TrainingDiverged", "Validation", "evaluate",
           "fit_model", "load_run", "prepare_split", "read_history", "run_record", "save_fit", "save_run",
           "selection_score",
           "train"]
