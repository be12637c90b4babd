"""``AGAD``: the detector with scikit-learn / PyOD conventions.

``fit(X, y=None)`` trains the generator on the unlabelled images (``y == 0``)
and, when ``y`` marks some images with 1, on those labelled anomalies too
(the paper's limited supervision; ``gamma`` is derived from ``y``). The score
of an image is its reconstruction error ``||x - G(x)||_2``: higher means more
anomalous. Training runs through the same code as ``agad train``
(:func:`agad.pipeline.build_networks`, :class:`agad.train.AGADTrainer`,
:func:`agad.train.score_images`), and :meth:`AGAD.save` writes the same
run-directory format (:mod:`agad.runs`), so ``agad predict`` and
``agad export`` read a saved estimator and :meth:`AGAD.load` reads an
``agad train`` run.

>>> from agad import AGAD
>>> from agad.data import load_dataset
>>> ds = load_dataset("mnist-sample")
>>> X = ds.x_train[ds.y_train == 0][:64]                 # uint8 (64, 1, 32, 32)
>>> det = AGAD(epochs=1, batch_size=32, device="cpu", precision="fp32").fit(X)
>>> det.predict(ds.x_test[:5]).shape
(5,)

Inputs. ``X`` is an array (N, H, W), (N, C, H, W) or (N, H, W, C) with
C in {1, 3}, uint8 or floats in [0, 1] / [0, 255] (see
:func:`agad.data.as_nchw_uint8`), or a path, a folder, a PIL image or a list
of them (see :mod:`agad.predict`). Images are resized to a square
``image_size``; when it is None, the size is taken from the (first) training
image: its larger side, with 28 -> 32 as in the paper and clipped to
[16, 128] (:func:`agad.predict.default_image_size`). Files and PIL images are
converted to the majority mode of the training images (grayscale or RGB) at
fit time and to the model's mode afterwards; arrays must have the fitted
number of channels.

Thresholds and probabilities never look at the data being scored:
``threshold_`` is the (1 - contamination) quantile of the training scores of
the unlabelled images, or, when ``X_val, y_val`` are given, the threshold with
the best F1 on that validation set; ``predict_proba`` rescales scores linearly
with the minimum and maximum *training* score (PyOD's "linear" method) and
clips to [0, 1].
"""

from __future__ import annotations

import math
import numbers
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.metrics import precision_recall_curve, roc_auc_score
from sklearn.utils.validation import check_is_fitted

from . import __version__
from .config import HELD_OUT_RULES, TrainConfig
from .data import as_nchw_uint8, resize_uint8, validation_split
from .errors import AgadError
from .nets import count_parameters
from .pipeline import EpochKeeper, build_networks, make_trainer, selection_score
from .predict import default_image_size, expand_items, is_image_input, read_images
from .runs import (
    CONFIG_FILE, DISCRIMINATOR_FILE, FORMAT_VERSION, GENERATOR_FILE, HISTORY_FILE, atomic_write_json,
    load_config, load_weights, read_history, read_run_config, save_weights, staging_dir, write_history,
)
from .runtime import resolve_device, resolve_precision
from .train import score_images

__all__ = ["AGAD", "TRAIN_SCORES_FILE"]

TRAIN_SCORES_FILE = "train_scores.safetensors"  # decision_scores_ of a saved estimator (float64, no pickle)
IN_MEMORY_DATA = "in-memory-arrays"  # TrainConfig.data of a model fitted on arrays: no dataset to reload

# Estimator parameters that are TrainConfig fields of the same name. ``None``
# means "TrainConfig's default", read when ``fit`` runs, so the stability
# defaults live in one place (agad.config).
_CONFIG_PARAMS = (
    "backbone", "unet_style", "epochs", "batch_size", "lr", "lr_schedule", "w_adv", "w_con", "w_adcon", "w_lat", "ca",
    "anomaly_distance", "advprop", "freeze_bn_anomalies", "track_bn_anomalies", "track_bn_pseudo", "scoring_bn",
    "scoring_bn_anomaly_weight", "min_anomalies_per_batch", "detach_pseudo", "adcon_form", "adcon_margin",
    "adcon_warmup_epochs", "ema_decay", "grad_clip", "anomaly_margin", "select_epoch", "val_fraction", "device",
    "precision",
)
_BOOL_PARAMS = ("ca", "advprop", "freeze_bn_anomalies", "track_bn_anomalies", "track_bn_pseudo", "detach_pseudo")


def _plain(v: Any) -> Any:
    """numpy scalars -> Python scalars (TrainConfig and JSON want plain types)."""
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def _bad(name: str, what: str, value: Any) -> AgadError:
    return AgadError(f"The '{name}' parameter must be {what}. Got {value!r} instead.")


def f1_best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold with the best F1 on a labelled set, for the rule ``score > threshold``.

    ``precision_recall_curve`` counts ``score >= t`` as positive; the returned
    threshold sits halfway between the best ``t`` and the next lower score, so
    ``score > threshold`` flags exactly the same images. Returns ``(threshold, f1)``.

    >>> f1_best_threshold(np.array([0.1, 0.2, 0.9, 1.0]), np.array([0, 0, 1, 1]))
    (0.55, 1.0)
    """
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    p, r = precision[:-1], recall[:-1]  # the last point (P=1, R=0) has no threshold
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    i = int(np.argmax(f1))
    t = float(thresholds[i])
    lower = scores[scores < t]
    threshold = (float(lower.max()) + t) / 2 if lower.size else float(np.nextafter(t, -np.inf))
    return threshold, float(f1[i])


class AGAD(BaseEstimator):
    """Adversarial Generative Anomaly Detection (Shi & Zhang, 2023) for images.

    Parameters (keyword-only; ``None`` means ``agad.config.TrainConfig``'s default):
        backbone: generator backbone, "naive", "unet" or "unetpp".
        unet_style: with backbone "unet", "zhou" (default; the paper's 7.76M
            parameters) or "pix2pix" (Skip-GANomaly's U-Net).
        epochs: training epochs (fixed; never chosen on test data).
        batch_size: images per step (normal + labelled anomalies).
        contamination: expected fraction of anomalies among the unlabelled
            training images, in (0, 0.5]; sets ``threshold_`` unless a
            validation set is given.
        image_size: square input size; None derives it from the training images.
        lr_schedule: "constant" (the paper) or "cosine" (decays to 0 at the end).
        lr, w_adv, w_con, w_adcon, w_lat, ca: Adam's learning rate, the loss
            weights λadv, λcon, λadcon, λlat, and the contextual-adversarial
            switch (False is the paper's "w/o C.A." ablation).
        anomaly_distance, advprop, freeze_bn_anomalies, track_bn_anomalies, track_bn_pseudo,
        scoring_bn, scoring_bn_anomaly_weight, min_anomalies_per_batch:
            Algorithm 1's options (see TrainConfig).
        detach_pseudo, adcon_form, adcon_margin, adcon_warmup_epochs,
            ema_decay, grad_clip, anomaly_margin: stability options (see TrainConfig).
        select_epoch, val_fraction: which epoch's weights to keep. The default
            ("auto") keeps the last epoch without labelled anomalies; with
            labelled anomalies (``y`` has 1s) it holds out ``val_fraction``
            (default 0.1) of the unlabelled images and keeps the epoch where
            their mean score divided by the labelled anomalies' reconstruction
            distance is lowest ("val-ratio": a generator that learns to
            reconstruct everything does not look best). "val-recon" uses the
            held-out score alone; "last" turns selection off.
        device: "auto", "cpu" or "cuda". precision: "auto", "fp32" or "bf16".
        random_state: seed (int) of weights and batch order; None draws one.
        verbose: show a progress bar and per-epoch losses while fitting.

    Attributes (after ``fit`` or ``load``):
        decision_scores_: training scores of the unlabelled images (float64).
        threshold_: images scoring above it are predicted anomalous.
        threshold_source_: "contamination" or "validation".
        labels_: 0/1 predictions for the unlabelled training images.
        n_channels_in_, image_size_: the model's input shape (C, S, S).
        gamma_: fraction of labelled anomalies among the training images.
        history_: one dict of mean loss terms per epoch.
        kept_epoch_: the epoch whose weights score (the last one unless select_epoch chose another).
        config_: the resolved :class:`agad.config.TrainConfig`.
        generator_, discriminator_: the networks (generator_ scores; EMA copy when enabled).

    >>> AGAD(epochs=3).get_params()["epochs"]
    3
    """

    def __init__(
        self,
        *,
        backbone: str = "naive",
        unet_style: str | None = None,
        epochs: int = 15,
        batch_size: int = 64,
        contamination: float = 0.1,
        image_size: int | None = None,
        lr: float = 2e-4,
        lr_schedule: str | None = None,
        w_adv: float = 1.0,
        w_con: float = 50.0,
        w_adcon: float = 15.0,
        w_lat: float = 5.0,
        ca: bool = True,
        anomaly_distance: str | None = None,
        advprop: bool | None = None,
        freeze_bn_anomalies: bool | None = None,
        track_bn_anomalies: bool | None = None,
        track_bn_pseudo: bool | None = None,
        scoring_bn: str | None = None,
        scoring_bn_anomaly_weight: float | None = None,
        min_anomalies_per_batch: int | None = None,
        detach_pseudo: bool | None = None,
        adcon_form: str | None = None,
        adcon_margin: float | None = None,
        adcon_warmup_epochs: float | None = None,
        ema_decay: float | None = None,
        grad_clip: float | None = None,
        anomaly_margin: float | None = None,
        select_epoch: str | None = None,
        val_fraction: float | None = None,
        device: str = "auto",
        precision: str = "auto",
        random_state: int | None = 0,
        verbose: bool = False,
    ):
        self.backbone = backbone
        self.unet_style = unet_style
        self.epochs = epochs
        self.batch_size = batch_size
        self.contamination = contamination
        self.image_size = image_size
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.w_adv = w_adv
        self.w_con = w_con
        self.w_adcon = w_adcon
        self.w_lat = w_lat
        self.ca = ca
        self.anomaly_distance = anomaly_distance
        self.advprop = advprop
        self.freeze_bn_anomalies = freeze_bn_anomalies
        self.track_bn_anomalies = track_bn_anomalies
        self.track_bn_pseudo = track_bn_pseudo
        self.scoring_bn = scoring_bn
        self.scoring_bn_anomaly_weight = scoring_bn_anomaly_weight
        self.min_anomalies_per_batch = min_anomalies_per_batch
        self.detach_pseudo = detach_pseudo
        self.adcon_form = adcon_form
        self.adcon_margin = adcon_margin
        self.adcon_warmup_epochs = adcon_warmup_epochs
        self.ema_decay = ema_decay
        self.grad_clip = grad_clip
        self.anomaly_margin = anomaly_margin
        self.select_epoch = select_epoch
        self.val_fraction = val_fraction
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------ parameters
    def _check_params(self) -> None:
        c = self.contamination
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, numbers.Real) or not (
            math.isfinite(c) and 0.0 < c <= 0.5
        ):
            raise _bad("contamination", "a float in (0, 0.5]", c)
        s = self.image_size
        if s is not None and (isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral)
                              or not 16 <= s <= 1024):
            raise _bad("image_size", "None or an integer in [16, 1024]", s)
        r = self.random_state
        if r is not None and (isinstance(r, (bool, np.bool_)) or not isinstance(r, numbers.Integral)
                              or not 0 <= r < 2**32):
            raise _bad("random_state", "None or an integer in [0, 2**32 - 1]", r)
        for name in _BOOL_PARAMS:
            v = getattr(self, name)
            if v is not None and not isinstance(v, (bool, np.bool_)):
                raise _bad(name, "a bool", v)
        if not isinstance(self.verbose, (bool, np.bool_, numbers.Integral)):
            raise _bad("verbose", "a bool", self.verbose)
        # TrainConfig checks the rest, by name; rules that depend on y (an epoch rule that needs labelled
        # anomalies) are checked by fit with the real gamma
        needs_y = self.select_epoch in HELD_OUT_RULES
        self._make_config(gamma=0.5 if needs_y else 0.0, image_size=None, seed=0)

    def _make_config(self, *, gamma: float, image_size: int | None, seed: int) -> TrainConfig:
        values = {name: _plain(getattr(self, name)) for name in _CONFIG_PARAMS if getattr(self, name) is not None}
        values.update(data=IN_MEMORY_DATA, gamma=float(gamma), image_size=image_size, seed=int(seed))
        return TrainConfig(**values)

    def _seed(self) -> int:
        # None: non-deterministic, as scikit-learn's check_random_state(None); the drawn seed is kept in config_.
        return int(np.random.randint(0, 2**31 - 1)) if self.random_state is None else int(self.random_state)

    # ------------------------------------------------------------ inputs
    def _images_for_fit(self, X: Any, name: str = "X") -> tuple[np.ndarray, int, int]:
        size = None if self.image_size is None else int(self.image_size)
        if is_image_input(X):
            return read_images(expand_items(X), channels=None, size=size)
        x = self._as_array(X, name)
        if len(x) == 0:
            raise AgadError(f"{name} holds no images; fit needs at least 2 unlabelled images")
        size = size or default_image_size(*x.shape[2:])
        return resize_uint8(x, size), int(x.shape[1]), size

    @staticmethod
    def _as_array(X: Any, name: str) -> np.ndarray:
        try:
            return as_nchw_uint8(X)
        except AgadError as exc:
            raise AgadError(f"{name}: {exc}") from None

    def _images(self, X: Any, name: str = "X") -> np.ndarray:
        """Any accepted input -> uint8 (N, C, S, S) at the fitted channels and size."""
        if is_image_input(X):
            x, _, _ = read_images(expand_items(X), channels=self.n_channels_in_, size=self.image_size_)
            return x
        x = self._as_array(X, name)
        if x.shape[1] != self.n_channels_in_:
            raise AgadError(
                f"{name} has {x.shape[1]} channel(s), but this AGAD was fitted on {self.n_channels_in_}-channel "
                "images; convert the array (e.g. to grayscale or RGB) or pass image files, which are converted"
            )
        return resize_uint8(x, self.image_size_)

    @staticmethod
    def _labels(y: Any, n: int, name: str) -> np.ndarray:
        a = np.asarray(y)
        if a.ndim != 1 or len(a) != n:
            raise AgadError(f"{name} must be a 1-d array with one label per image ({n}); got shape {a.shape}")
        if a.dtype == object or not np.isin(a, (0, 1)).all():
            bad = sorted({v for v in a.tolist() if v not in (0, 1)}, key=str)[:3]
            raise AgadError(f"{name} must hold 0 (unlabelled/normal) and 1 (anomaly) only; got {bad}")
        return a.astype(np.int64)

    # ------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None, *, X_val: Any = None, y_val: Any = None) -> "AGAD":
        """Train on ``X``; ``y`` marks known anomalies with 1 (0 = unlabelled). Returns ``self``.

        With ``X_val, y_val`` (labels 0 normal / 1 anomalous, both present)
        the threshold is the F1-best one on that validation set, and each
        epoch's validation AUROC is logged in ``history_``.

        >>> AGAD(epochs=1, device="cpu").fit(np.zeros((8, 28, 28), np.uint8)).image_size_  # doctest: +SKIP
        32
        """
        self._check_params()
        seed = self._seed()
        x, channels, size = self._images_for_fit(X)
        y = np.zeros(len(x), np.int64) if y is None else self._labels(y, len(x), "y")
        x_normal, x_anom = x[y == 0], x[y == 1]
        if len(x_normal) < 2:
            raise AgadError(f"fit needs at least 2 unlabelled (y == 0) images; got {len(x_normal)}")
        gamma = len(x_anom) / len(x)
        cfg = self._make_config(gamma=gamma, image_size=size, seed=seed).resolved()
        # select_epoch "val-ratio" (the default with labelled anomalies) or "val-recon": held-out unlabelled images
        # (and the labelled anomalies' distance) choose the epoch
        keeper, x_fit, x_held = EpochKeeper(), x_normal, None
        if cfg.select_epoch in HELD_OUT_RULES:
            x_fit, x_held = validation_split(x_normal, cfg.val_fraction, seed=seed)
        # the input shape is fixed from here on; validation data are read like any later input
        self.n_channels_in_, self.image_size_ = channels, size
        x_val = y_val_ = None
        if X_val is not None or y_val is not None:
            if X_val is None or y_val is None:
                raise AgadError("X_val and y_val must be given together (y_val: 0 normal, 1 anomalous)")
            x_val = self._images(X_val, "X_val")
            y_val_ = self._labels(y_val, len(x_val), "y_val")
            if len(np.unique(y_val_)) < 2:
                raise AgadError("y_val must hold both normal (0) and anomalous (1) images to choose a threshold; "
                                f"got only {int(y_val_[0]) if len(y_val_) else 'no'} labels")

        device = resolve_device(cfg.device)
        amp = resolve_precision(cfg.precision, device)
        G, D = build_networks(cfg, channels, size)
        trainer = make_trainer(cfg, G, D)

        def score(G, images):
            return score_images(G, images, batch_size=cfg.eval_batch_size, device=device, amp_dtype=amp,
                                channels_last=cfg.channels_last)

        def on_epoch(tr, record):  # validation data only; never the images that will be scored
            if x_val is not None:
                record["val/auroc"] = float(roc_auc_score(y_val_, score(tr.scoring_generator, x_val)))
            if x_held is not None:
                record["val/recon"] = float(score(tr.scoring_generator, x_held).mean())
                keeper.offer(tr, selection_score(cfg.select_epoch, record))

        t0 = time.perf_counter()
        history = trainer.fit(
            torch.from_numpy(x_fit), torch.from_numpy(x_anom) if len(x_anom) else None,
            progress=bool(self.verbose), on_epoch=on_epoch if x_val is not None or x_held is not None else None,
        )
        seconds = time.perf_counter() - t0
        keeper.restore(trainer.scoring_generator)  # a no-op unless an epoch was offered
        self.kept_epoch_ = keeper.epoch or len(history)

        self.config_ = cfg
        self.generator_ = trainer.scoring_generator.eval()
        self.discriminator_ = trainer.D.eval()
        self._device, self._amp = device, amp
        self.gamma_ = gamma
        self.history_ = [dict(h) for h in history]
        self.decision_scores_ = self._score(x_normal)
        validation = None
        if x_val is not None:
            s_val = self._score(x_val)
            self.threshold_, f1 = f1_best_threshold(s_val, y_val_)
            self.threshold_source_ = "validation"
            validation = {"f1": f1, "auroc": float(roc_auc_score(y_val_, s_val)), "n": int(len(y_val_)),
                          "n_anomalous": int(y_val_.sum())}
        else:
            self.threshold_ = float(np.quantile(self.decision_scores_, 1.0 - float(self.contamination)))
            self.threshold_source_ = "contamination"
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)
        self._score_range = (float(self.decision_scores_.min()), float(self.decision_scores_.max()))
        self._meta = self._fit_meta(G, D, validation, seconds, int(getattr(trainer, "d_resets", 0)),
                                    n_anomalies=len(x_anom))
        return self

    def _fit_meta(self, G, D, validation, seconds: float, d_resets: int, *, n_anomalies: int) -> dict[str, Any]:
        """config.json of a saved estimator: the sections `agad train` writes, plus the estimator's own."""
        cfg = self.config_
        return {
            "format_version": FORMAT_VERSION,
            "agad_version": __version__,
            "config": cfg.to_dict(),
            "model": {
                "method": "agad", "backbone": cfg.backbone, "in_channels": self.n_channels_in_,
                "image_size": self.image_size_, "advprop": cfg.advprop,
                "generator_parameters": count_parameters(G), "discriminator_parameters": count_parameters(D),
                "scores_with": "ema" if cfg.ema_decay > 0 else "generator",
            },
            "preprocessing": {
                "resize_to": self.image_size_, "channels": self.n_channels_in_,
                "color": "grayscale (L)" if self.n_channels_in_ == 1 else "RGB",
                "resize": "Pillow bilinear to a square", "scale": "x/127.5 - 1 (uint8 -> [-1, 1])",
            },
            "threshold": self.threshold_,
            "contamination": float(self.contamination),
            "threshold_source": self.threshold_source_,
            "score_scaling": {"method": "linear", "train_min": self._score_range[0],
                              "train_max": self._score_range[1]},
            "data": {"source": "AGAD.fit", "n_normal_train": int(len(self.decision_scores_)),
                     "n_anomaly_train": int(n_anomalies)},
            "validation": validation,
            "kept_epoch": self.kept_epoch_,
            "train_seconds": seconds,
            "d_resets": d_resets,
            "world_size": 1,
            "environment": {"python": platform.python_version(), "torch": torch.__version__,
                            "device": str(self._device), "amp": str(self._amp)},
            "command": "agad.AGAD.fit",
            "estimator": {k: _plain(v) for k, v in self.get_params().items()},
        }

    # ------------------------------------------------------------ scoring
    def _check_fitted(self) -> None:
        check_is_fitted(self, ("threshold_", "generator_"),
                        msg="This AGAD instance is not fitted yet. Call 'fit' with training images, or load a "
                            "saved model with AGAD.load(path), before using this method.")

    def _score(self, x: np.ndarray, *, return_reconstructions: bool = False):
        """Scores (float64) of uint8 (N, C, S, S) images; optionally G(x) as float32 (N, C, S, S) in [-1, 1]."""
        out = score_images(self.generator_, x, batch_size=self.config_.eval_batch_size, device=self._device,
                           amp_dtype=self._amp, channels_last=self.config_.channels_last,
                           return_reconstructions=return_reconstructions)
        if return_reconstructions:
            s, recon = out
            return s.astype(np.float64), recon.numpy()
        return out.astype(np.float64)

    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly scores ``||x - G(x)||_2``, shape (N,); higher = more anomalous.

        >>> det.decision_function(X[:3]).shape  # doctest: +SKIP
        (3,)
        """
        self._check_fitted()
        return self._score(self._images(X))

    def score_samples(self, X: Any) -> np.ndarray:
        """scikit-learn's convention: higher = more normal, i.e. ``-decision_function(X)``."""
        return -self.decision_function(X)

    def predict(self, X: Any) -> np.ndarray:
        """0 (normal) / 1 (anomaly) per image: 1 where ``decision_function(X) > threshold_``."""
        return (self.decision_function(X) > self.threshold_).astype(np.int64)

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, 2): [P(normal), P(anomaly)] by linear rescaling of the scores (PyOD's "linear" method).

        ``P(anomaly) = clip((score - min) / (max - min), 0, 1)`` with min and max
        the *training* scores (``decision_scores_``), never the scored batch. It
        is monotone in the score, not a calibrated probability: 0.5 does not
        correspond to ``threshold_`` (use :meth:`predict` for decisions).
        """
        self._check_fitted()
        rng = getattr(self, "_score_range", None)
        if rng is None:
            raise AgadError("predict_proba needs the range of the training scores, which run directories written "
                            "by `agad train` do not store; fit with agad.AGAD (and save with AGAD.save) to use it")
        s = self.decision_function(X)
        lo, hi = rng
        p = np.clip((s - lo) / max(hi - lo, np.finfo(np.float64).tiny), 0.0, 1.0)
        return np.column_stack([1.0 - p, p])

    def reconstruct(self, X: Any) -> np.ndarray:
        """G(x) as uint8 images (N, C, S, S), e.g. to look at what the model expected to see."""
        from .data import to_uint8

        self._check_fitted()
        _, recon = self._score(self._images(X), return_reconstructions=True)
        return to_uint8(recon)

    # ------------------------------------------------------------ persistence
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write a run directory (the `agad train` format; safetensors, no pickle), atomically.

        ``path`` must not exist unless ``overwrite``. Returns the path.

        >>> det.save("models/digits")          # doctest: +SKIP
        >>> AGAD.load("models/digits").predict(X)  # doctest: +SKIP
        """
        from safetensors.numpy import save_file

        self._check_fitted()
        final = Path(path)
        with staging_dir(final, overwrite=overwrite) as tmp:
            save_weights(getattr(self.generator_, "G", self.generator_), tmp / GENERATOR_FILE, {"role": "generator"})
            if self.discriminator_ is not None:
                save_weights(self.discriminator_, tmp / DISCRIMINATOR_FILE, {"role": "discriminator"})
            write_history(tmp / HISTORY_FILE, self.history_)
            if hasattr(self, "decision_scores_"):
                save_file({"decision_scores": np.ascontiguousarray(self.decision_scores_, np.float64)},
                          str(tmp / TRAIN_SCORES_FILE))
            atomic_write_json(tmp / CONFIG_FILE, self._meta)
        return final

    @classmethod
    def _params_from_meta(cls, meta: dict[str, Any], cfg: TrainConfig, source: Path) -> dict[str, Any]:
        names = set(cls._get_param_names())
        if isinstance(meta.get("estimator"), dict):  # saved by AGAD.save: the exact parameters
            params = dict(meta["estimator"])
            unknown = sorted(set(params) - names)
            if unknown:
                raise AgadError(f"{source}: unknown estimator parameter {unknown[0]!r}; "
                                "was it saved by a newer version of agad?")
            # as fitted: None still means "TrainConfig's default at fit time" (config_ holds what that
            # was), the same as for the estimator that was saved
            return params
        # written by `agad train`: the config says it all
        params = {name: getattr(cfg, name) for name in _CONFIG_PARAMS}
        params.update(image_size=int(meta["model"]["image_size"]), random_state=cfg.seed,
                      contamination=float(meta.get("contamination", 0.1)))
        return params

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> "AGAD":
        """A fitted AGAD from a directory written by :meth:`save` or by ``agad train``.

        Weights are read with safetensors (never unpickled). ``device``
        overrides the saved ``device`` parameter ("auto", "cpu", "cuda").
        A model loaded from an ``agad train`` run has no ``decision_scores_`` /
        ``labels_`` and no ``predict_proba`` (those runs do not store
        training scores); everything else works.

        >>> AGAD.load("runs/demo").predict(images)  # doctest: +SKIP
        """
        from safetensors.numpy import load_file

        run_dir = Path(path)
        meta = read_run_config(run_dir)
        cfg = load_config(run_dir)
        if cfg.method != "agad":
            raise AgadError(f"{run_dir} holds a {cfg.method!r} baseline, not an AGAD model; "
                            "AGAD.load reads AGAD runs only")
        if not isinstance(meta.get("threshold"), (int, float)) or not math.isfinite(meta["threshold"]):
            raise AgadError(f"{run_dir / CONFIG_FILE} has no finite 'threshold'; re-train the run")
        channels, size = int(meta["model"]["in_channels"]), int(meta["model"]["image_size"])
        params = cls._params_from_meta(meta, cfg, run_dir / CONFIG_FILE)
        if device is not None:
            params["device"] = device
        est = cls(**params)
        est._check_params()
        G, D = build_networks(cfg, channels, size)
        load_weights(G, run_dir / GENERATOR_FILE)
        d_path = run_dir / DISCRIMINATOR_FILE
        est._device = resolve_device(est.device)
        est._amp = resolve_precision(est.precision, est._device)
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        # same memory format as after training, so that scores match the fitted model's bit for bit
        est.generator_ = G.to(est._device, memory_format=fmt).eval()
        est.discriminator_ = load_weights(D, d_path).eval() if d_path.is_file() else None
        est.config_ = cfg
        est.n_channels_in_, est.image_size_ = channels, size
        est.gamma_ = cfg.gamma
        est.history_ = read_history(run_dir)
        est.kept_epoch_ = int(meta.get("kept_epoch") or len(est.history_))
        est.threshold_ = float(meta["threshold"])
        est.threshold_source_ = "validation" if "valid" in str(meta.get("threshold_source", "")) else "contamination"
        scores_path = run_dir / TRAIN_SCORES_FILE
        if scores_path.is_file():
            try:
                est.decision_scores_ = load_file(str(scores_path))["decision_scores"].astype(np.float64)
            except Exception as exc:  # safetensors raises its own error types
                raise AgadError(f"cannot read {scores_path}: {exc}; the file is corrupt") from None
            est.labels_ = (est.decision_scores_ > est.threshold_).astype(np.int64)
        scaling = meta.get("score_scaling")
        if isinstance(scaling, dict) and {"train_min", "train_max"} <= set(scaling):
            est._score_range = (float(scaling["train_min"]), float(scaling["train_max"]))
        elif hasattr(est, "decision_scores_"):
            est._score_range = (float(est.decision_scores_.min()), float(est.decision_scores_.max()))
        est._meta = meta
        return est
