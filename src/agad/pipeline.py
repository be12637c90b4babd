"""From a config to a run directory, and from a run directory to metrics.

This is the glue between the data layer, the networks, the training loop and
the run files; the CLI, the estimator and the experiment harness all call it.

>>> from agad.config import TrainConfig
>>> run = train(TrainConfig(epochs=1), "runs/demo", progress=False)   # doctest: +SKIP
>>> evaluate(run)["auroc"]                                             # doctest: +SKIP
0.97...
"""

from __future__ import annotations

import dataclasses
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import nn

from . import __version__
from .config import TrainConfig
from .data import Split, load_dataset, one_class_split, validation_split
from .errors import AgadError
from .nets import build_discriminator, build_generator, count_parameters
from .runtime import DistInfo, init_distributed, resolve_device, resolve_precision
from .runs import (
    CONFIG_FILE, DISCRIMINATOR_FILE, GENERATOR_FILE, HISTORY_FILE, METRICS_FILE, SCORES_FILE,
    atomic_write_json, load_config, load_weights, read_run_config, save_weights, staging_dir,
    write_history, write_scores_csv,
)
from .train import AGADTrainer, score_images

DEFAULT_CONTAMINATION = 0.1


def prepare_split(cfg: TrainConfig) -> tuple[Split, list[str]]:
    """Load the dataset named by the config and apply the one-class protocol (errors before any file is written)."""
    split, ds = _split_and_dataset(cfg)
    return split, list(ds.class_names)


def _split_and_dataset(cfg: TrainConfig):
    ds = load_dataset(cfg.data, image_size=cfg.image_size)
    split = one_class_split(
        ds, cfg.normal_class, gamma=cfg.gamma, known_classes=cfg.known_classes, seed=cfg.seed, mode=cfg.protocol
    )
    return split, ds


@dataclass
class Validation:
    """Held-out *training* images for selection: normal images never trained on, and as many
    training images of the anomaly classes that are not among the labelled anomalies."""

    x: np.ndarray
    y: np.ndarray


def carve_validation(cfg: TrainConfig, split: Split, ds) -> tuple[Split, Validation | None]:
    fraction = cfg.resolved_val_fraction()
    if fraction <= 0:
        return split, None
    x_train, x_val = validation_split(split.x_normal, fraction, seed=cfg.seed)
    # anomaly pool: training images of the classes the test calls anomalous, minus the labelled anomalies
    if cfg.protocol == "one-vs-rest":
        pool = np.flatnonzero(ds.y_train != cfg.normal_class)
    else:
        pool = np.flatnonzero(ds.y_train == cfg.normal_class)
    pool = np.setdiff1d(pool, split.anomaly_indices)
    rng = np.random.default_rng(cfg.seed + 12345)
    pick = rng.choice(pool, size=min(len(pool), len(x_val)), replace=False)
    x = np.concatenate([x_val, ds.x_train[np.sort(pick)]])
    y = np.concatenate([np.zeros(len(x_val), np.int64), np.ones(len(pick), np.int64)])
    return dataclasses.replace(split, x_normal=x_train), Validation(x=x, y=y)


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
    """select_epoch="val-recon"/"val-ratio": keeps the epoch, score and (scoring) weights of the lowest
    ``selection_score``.

    Only held-out *normal training* images (and, for val-ratio, the labelled anomalies the generator trains on)
    decide: no test data.
    """

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.score = math.inf
        self.state: dict[str, torch.Tensor] | None = None

    def offer(self, trainer, score: float) -> None:
        if score < self.score:
            self.epoch, self.score = trainer.epoch, score
            self.state = {k: v.detach().clone() for k, v in trainer.scoring_generator.state_dict().items()}

    def restore(self, G: nn.Module) -> None:
        """Back to the kept epoch's weights (nothing to do when no epoch was offered)."""
        if self.state is not None:
            G.load_state_dict(self.state)


def build_networks(cfg: TrainConfig, in_channels: int, image_size: int) -> tuple[nn.Module, nn.Module]:
    """G and D as the config describes them, seeded by ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    if cfg.method == "agad":
        style = {"style": cfg.resolved_unet_style()} if cfg.backbone == "unet" else {}
        G = build_generator(cfg.backbone, in_channels=in_channels, image_size=image_size, advprop=cfg.advprop,
                            **style)
        D = build_discriminator(in_channels=in_channels, image_size=image_size)
        return G, D
    from .baselines import build_baseline_networks

    return build_baseline_networks(cfg, in_channels=in_channels, image_size=image_size)


def make_trainer(cfg: TrainConfig, G: nn.Module, D: nn.Module, dist_info: DistInfo | None = None):
    if cfg.method == "agad":
        return AGADTrainer(cfg, G, D, dist_info=dist_info)
    from .baselines import BaselineTrainer

    return BaselineTrainer(cfg, G, D, dist_info=dist_info)


def auroc_of(labels: np.ndarray, scores: np.ndarray) -> float:
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, scores))


@dataclass
class TrainResult:
    run_dir: Path | None
    trainer: Any
    split: Split
    threshold: float
    seconds: float


def train(
    cfg: TrainConfig,
    out: str | Path | None,
    *,
    progress: bool = True,
    overwrite: bool = False,
    figure: bool = True,
    command: str | None = None,
) -> TrainResult:
    """Train one model and write its run directory (atomically). ``out=None`` keeps it in memory only."""
    if out is not None and Path(out).exists() and not overwrite:  # fail before any work, not after training
        raise AgadError(f"output directory {out} already exists; choose another --out or pass --force to replace it")
    cfg = cfg.resolved()  # "auto" values made concrete: the run records what it did
    device = resolve_device(cfg.device)
    dist_info = init_distributed(device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    split, ds = _split_and_dataset(cfg)
    class_names = list(ds.class_names)
    split, val = carve_validation(cfg, split, ds)
    in_channels, image_size = int(split.x_normal.shape[1]), int(split.x_normal.shape[-1])
    G, D = build_networks(cfg, in_channels, image_size)
    trainer = make_trainer(cfg, G, D, dist_info)

    x_test = torch.from_numpy(split.x_test)
    amp = resolve_precision(cfg.precision, device)

    kept = EpochKeeper()

    def on_epoch(tr, record):
        if val is not None and dist_info.is_main:  # training data only: fair for selection
            s = score_images(tr.scoring_generator, val.x, batch_size=cfg.eval_batch_size, device=device,
                             amp_dtype=amp, channels_last=cfg.channels_last)
            record["val/auroc"] = auroc_of(val.y, s)
            record["val/recon"] = float(s[val.y == 0].mean())
            key = selection_score(cfg.select_epoch, record)
            if key is not None:
                kept.offer(tr, key)
        # Diagnostics only (paper Fig. 6): recorded, never used to choose anything.
        if cfg.track_test_auroc and dist_info.is_main:
            s = score_images(tr.scoring_generator, x_test, batch_size=cfg.eval_batch_size, device=device,
                             amp_dtype=amp, channels_last=cfg.channels_last)
            record["test/auroc"] = auroc_of(split.y_test, s)

    t0 = time.perf_counter()
    x_anom = torch.from_numpy(split.x_anomaly) if len(split.x_anomaly) else None
    history = trainer.fit(torch.from_numpy(split.x_normal), x_anom, progress=progress, on_epoch=on_epoch)
    seconds = time.perf_counter() - t0

    G_score = trainer.scoring_generator
    kept.restore(G_score)
    train_scores = score_images(G_score, split.x_normal, batch_size=cfg.eval_batch_size, device=device,
                                amp_dtype=amp, channels_last=cfg.channels_last)
    threshold = float(np.quantile(train_scores, 1.0 - DEFAULT_CONTAMINATION))
    result = TrainResult(run_dir=None, trainer=trainer, split=split, threshold=threshold, seconds=seconds)
    if out is None or not dist_info.is_main:
        return result

    meta = {
        "format_version": 1,
        "agad_version": __version__,
        "config": cfg.to_dict(),
        "model": {
            "method": cfg.method,
            "backbone": cfg.backbone,
            "in_channels": in_channels,
            "image_size": image_size,
            "advprop": cfg.advprop,
            "generator_parameters": count_parameters(G),
            "discriminator_parameters": count_parameters(D),
            "scores_with": "ema" if getattr(trainer, "G_ema", None) is not None else "generator",
        },
        "preprocessing": {"resize_to": image_size, "channels": in_channels, "scale": "x/127.5 - 1 (uint8 -> [-1, 1])"},
        "threshold": threshold,
        "contamination": DEFAULT_CONTAMINATION,
        "threshold_source": "quantile of training-normal scores",
        "data": {
            "class_names": class_names,
            "n_normal_train": int(len(split.x_normal)),
            "n_anomaly_train": int(len(split.x_anomaly)),
            "anomaly_classes": sorted({int(c) for c in split.anomaly_classes}),
            "n_test": int(len(split.y_test)),
            "n_validation": 0 if val is None else int(len(val.y)),
        },
        # the validation numbers of the weights that were kept (the last epoch unless select_epoch says otherwise)
        "validation": None if val is None else {k: history[(kept.epoch or len(history)) - 1][k]
                                                for k in ("val/auroc", "val/recon")},
        "kept_epoch": kept.epoch or len(history),
        "train_seconds": seconds,
        "d_resets": int(getattr(trainer, "d_resets", 0)),
        "world_size": dist_info.world_size,
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "device": str(device), "amp": str(amp)},
        "command": command or " ".join(sys.argv),
    }
    with staging_dir(Path(out), overwrite=overwrite) as tmp:
        save_weights(getattr(G_score, "G", G_score), tmp / GENERATOR_FILE, {"role": "generator"})
        save_weights(trainer.D, tmp / DISCRIMINATOR_FILE, {"role": "discriminator"})
        write_history(tmp / HISTORY_FILE, history)
        atomic_write_json(tmp / CONFIG_FILE, meta)
        if figure:
            from .figures import reconstruction_figure

            reconstruction_figure(G_score, split.x_test, split.y_test, tmp / "reconstructions.png", device=device,
                                  amp_dtype=amp, title=f"{cfg.data}, normal class {cfg.normal_class}")
    result.run_dir = Path(out)
    return result


def load_generator(run_dir: str | Path, *, device: str | torch.device = "cpu") -> tuple[TrainConfig, dict, nn.Module]:
    """Rebuild the scoring generator of a run from its files alone (no pickle)."""
    run_dir = Path(run_dir)
    meta = read_run_config(run_dir)
    cfg = load_config(run_dir)
    m = meta["model"]
    G, D = build_networks(cfg, int(m["in_channels"]), int(m["image_size"]))
    load_weights(G, run_dir / GENERATOR_FILE)
    if cfg.method != "agad":
        from .baselines import make_scorer

        load_weights(D, run_dir / DISCRIMINATOR_FILE)
        G = make_scorer(cfg, G, D)
    G.to(device).eval()
    return cfg, meta, G


def evaluate(run_dir: str | Path, *, device: str = "auto", batch_size: int | None = None) -> dict[str, Any]:
    """AUROC and average precision of a run on its test split; writes metrics.json and scores.csv."""
    run_dir = Path(run_dir)
    cfg, meta, G = load_generator(run_dir)
    dev = resolve_device(device if device != "auto" else cfg.device)
    G.to(dev)
    split, _ = prepare_split(cfg)
    amp = resolve_precision(cfg.precision, dev)
    t0 = time.perf_counter()
    scores = score_images(G, split.x_test, batch_size=batch_size or cfg.eval_batch_size, device=dev,
                          amp_dtype=amp, channels_last=cfg.channels_last)
    seconds = time.perf_counter() - t0
    y = split.y_test
    threshold = float(meta.get("threshold", np.nan))
    pred = (scores > threshold).astype(int)
    metrics = {
        "auroc": auroc_of(y, scores),
        "aupr": float(average_precision_score(y, scores)) if len(np.unique(y)) > 1 else float("nan"),
        "n_test": int(len(y)),
        "n_anomalous": int(y.sum()),
        "threshold": threshold,
        "accuracy_at_threshold": float((pred == y).mean()),
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
    }
    write_scores_csv(run_dir / SCORES_FILE, scores, y)
    atomic_write_json(run_dir / METRICS_FILE, metrics)
    return metrics

