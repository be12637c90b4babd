"""``AGAD``: the detector with scikit-learn / PyOD conventions.

``fit(X, y=None)`` trains the generator on the unlabelled images (``y == 0``)
and, when ``y`` marks some images with 1, on those labelled anomalies too
(the paper's limited supervision; ``gamma`` is derived from ``y``). The score
of an image is its reconstruction error ``||x - G(x)||_2``; with labelled
anomalies (and ``label_head``, the default) the standardised logit of a small
classifier trained beside G is added to it. Higher means more anomalous.
Training runs through the same function as ``agad train``
(:func:`agad.pipeline.fit_model`), and :meth:`AGAD.save` writes the same run
record (:func:`agad.pipeline.save_run`), so ``agad predict`` and ``agad export``
read a saved estimator and :meth:`AGAD.load` reads an ``agad train`` run with
everything a fitted estimator has.

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
of them, read by :mod:`agad.data.images` (the reader of ``agad train`` and
``agad predict`` too). Images are resized to a square ``image_size``; when it
is None, the size comes from the training images (the median image's larger
side, 28 -> 32 as in the paper, clipped to [16, 128]). Files and PIL images
are converted to the majority mode of the training images (grayscale or RGB,
ties RGB) at fit time and to the model's mode afterwards; arrays must have
the fitted number of channels.

Thresholds and probabilities never look at the data being scored:
``threshold_`` is the (1 - contamination) quantile of the training scores of
the unlabelled images, or, when ``X_val, y_val`` are given, the threshold with
the best F1 on that validation set; ``predict_proba`` rescales scores linearly
with the minimum and maximum *training* score (PyOD's "linear" method) and
clips to [0, 1].
"""

from __future__ import annotations

import inspect
import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted

from .config import DEFAULTS, HELD_OUT_RULES, OPTIONS, TrainConfig
from .data import as_nchw_uint8, resize_uint8
from .data.images import default_image_size, expand_items, is_image_input, read_images
from .errors import AgadError
from .pipeline import Validation, fit_model, load_run, run_record, save_run
from .rundir import CONFIG_FILE, TRAIN_SCORES_FILE
from .runtime import resolve_device, resolve_precision
from .scoring import (DEFAULT_CONTAMINATION, check_finite, contamination_threshold, f1_best_threshold, labels_at,
                      score_images)

__all__ = ["AGAD", "TRAIN_SCORES_FILE"]

IN_MEMORY_DATA = "in-memory-arrays"  # TrainConfig.data of a model fitted on arrays: no dataset to reload

# The estimator's parameters: the TrainConfig options marked ``estimator`` in agad.config.OPTIONS (same names,
# same defaults), then its own. __init__'s signature is built from this, so help(AGAD) shows the real defaults.
_CONFIG_PARAMS = tuple(name for name, opt in OPTIONS.items() if opt.estimator)
_OWN_PARAMS = {"contamination": DEFAULT_CONTAMINATION, "random_state": 0, "verbose": False}
PARAM_DEFAULTS: dict[str, Any] = {**{name: DEFAULTS[name] for name in _CONFIG_PARAMS}, **_OWN_PARAMS}


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


def _parameter_doc() -> str:
    lines = []
    for name in _CONFIG_PARAMS:
        lines.append(f"        {name} = {DEFAULTS[name]!r}: {OPTIONS[name].help}.")
    return "\n".join(lines)


class AGAD(OutlierMixin, BaseEstimator):
    """Adversarial Generative Anomaly Detection (Shi & Zhang, 2023) for images.

    Parameters (keyword-only; each is the :class:`agad.config.TrainConfig` option of the same name):
PARAMS_PLACEHOLDER
    Parameters of the estimator itself:
        contamination = 0.1: expected fraction of anomalies among the unlabelled training images, in
            (0, 0.5]; sets ``threshold_`` unless a validation set is given.
        random_state = 0: seed (int) of weights and batch order; None draws one.
        verbose = False: show a progress bar and per-epoch losses while fitting.

    Attributes (after ``fit`` or ``load``):
        decision_scores_: training scores of the unlabelled images (float64).
        threshold_: images scoring above it are predicted anomalous.
        threshold_source_: "contamination", "validation" or "calibration".
        labels_: 0/1 predictions for the unlabelled training images.
        n_channels_in_, image_size_: the model's input shape (C, S, S).
        gamma_: fraction of labelled anomalies among the training images.
        history_: one dict of mean loss terms per epoch.
        kept_epoch_: the epoch whose weights score (the last one unless select_epoch chose another).
        config_: the resolved :class:`agad.config.TrainConfig`.
        generator_, discriminator_: the networks (generator_ scores; the EMA copy when enabled).

    >>> AGAD(epochs=3).get_params()["epochs"]
    3
    """

    def __init__(self, **params: Any):
        # scikit-learn's contract: store the keyword arguments, nothing else (checked in fit)
        unknown = sorted(set(params) - set(PARAM_DEFAULTS))
        if unknown:
            raise TypeError(f"AGAD() got an unexpected keyword argument {unknown[0]!r}; "
                            f"valid parameters: {', '.join(PARAM_DEFAULTS)}")
        for name, default in PARAM_DEFAULTS.items():
            setattr(self, name, params.get(name, default))

    # ------------------------------------------------------------ parameters
    def _check_params(self) -> None:
        c = self.contamination
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, numbers.Real) or not (
            math.isfinite(c) and 0.0 < c <= 0.5
        ):
            raise _bad("contamination", "a float in (0, 0.5]", c)
        r = self.random_state
        if r is not None and (isinstance(r, (bool, np.bool_)) or not isinstance(r, numbers.Integral)
                              or not 0 <= r < 2**32):
            raise _bad("random_state", "None or an integer in [0, 2**32 - 1]", r)
        if not isinstance(self.verbose, (bool, np.bool_, numbers.Integral)):
            raise _bad("verbose", "a bool", self.verbose)
        # TrainConfig checks the rest, by name; rules that depend on y (an epoch rule that needs labelled
        # anomalies) are checked by fit with the real gamma
        needs_y = self.select_epoch in HELD_OUT_RULES
        self._make_config(gamma=0.5 if needs_y else 0.0, image_size=self.image_size, seed=0)

    def _make_config(self, *, gamma: float, image_size: int | None, seed: int) -> TrainConfig:
        values = {name: _plain(getattr(self, name)) for name in _CONFIG_PARAMS}
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

    def _labelled_set(self, X: Any, y: Any, names: tuple[str, str] = ("X_val", "y_val")) -> Validation:
        if X is None or y is None:
            raise AgadError(f"{names[0]} and {names[1]} must be given together ({names[1]}: 0 normal, 1 anomalous)")
        x = self._images(X, names[0])
        labels = self._labels(y, len(x), names[1])
        if len(np.unique(labels)) < 2:
            raise AgadError(f"{names[1]} must hold both normal (0) and anomalous (1) images to choose a threshold; "
                            f"got only {int(labels[0]) if len(labels) else 'no'} labels")
        return Validation(x, labels)

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
        # the input shape is fixed from here on; validation data are read like any later input
        self.n_channels_in_, self.image_size_ = channels, size
        val = None if X_val is None and y_val is None else self._labelled_set(X_val, y_val)
        fit = fit_model(cfg, x_normal, x_anom if len(x_anom) else None, val=val, progress=bool(self.verbose))
        self._set_fitted(fit, gamma)
        validation = fit.validation
        if val is not None:
            s_val = check_finite(fit.score(val.x).astype(np.float64), "validation scores")
            threshold, f1 = f1_best_threshold(s_val, val.y)
            self._set_threshold(threshold, "validation")
            validation = {"f1": f1, "auroc": (fit.validation or {}).get("val/auroc"),
                          "n": int(len(val.y)), "n_anomalous": int(val.y.sum())}
        else:
            self._set_threshold(contamination_threshold(self.decision_scores_, float(self.contamination)),
                                "contamination")
        self._meta = run_record(fit, threshold=self.threshold_, threshold_source=self.threshold_source_,
                                contamination=float(self.contamination), data={"source": "AGAD.fit"},
                                command="agad.AGAD.fit",
                                estimator={k: _plain(v) for k, v in self.get_params().items()})
        self._meta["validation"] = validation
        return self

    def fit_predict(self, X: Any, y: Any = None, **fit_params: Any) -> np.ndarray:
        """``fit(X, y)`` then the 0/1 labels of the unlabelled training images (``labels_``), in order.

        Unlike scikit-learn's outlier detectors (which answer -1 / 1), labels follow PyOD: 1 is an anomaly.
        """
        self.fit(X, y, **fit_params)
        return self.predict(X)

    def _set_fitted(self, fit, gamma: float) -> None:
        self.config_ = fit.cfg
        self.generator_ = fit.nets.G.eval()
        self.discriminator_ = None if fit.nets.D is None else fit.nets.D.eval()
        self._scorer = fit.scorer
        self._device, self._amp = fit.device, fit.amp
        self.gamma_ = gamma
        self.history_ = [dict(h) for h in fit.history]
        self.kept_epoch_ = fit.kept_epoch
        self.decision_scores_ = fit.train_scores
        self._score_range = (float(fit.train_scores.min()), float(fit.train_scores.max()))

    def _set_threshold(self, threshold: float, source: str) -> None:
        self.threshold_ = float(threshold)
        self.threshold_source_ = source
        if hasattr(self, "decision_scores_"):
            self.labels_ = labels_at(self.decision_scores_, self.threshold_)
        meta = getattr(self, "_meta", None)
        if meta is not None:
            meta["threshold"], meta["threshold_source"] = self.threshold_, source

    def calibrate(self, X_val: Any, y_val: Any = None, *, target_fpr: float | None = None) -> "AGAD":
        """Set ``threshold_`` without refitting: the F1-best threshold on ``X_val, y_val`` (0 normal, 1 anomalous),
        or, with ``target_fpr``, the threshold at which at most that share of the normal images in ``X_val``
        (``y_val == 0``, or all of ``X_val`` when ``y_val`` is None) score above it. Saved with the model.

        >>> det.calibrate(X_val, y_val).threshold_source_  # doctest: +SKIP
        'calibration'
        """
        from .scoring import fpr_threshold

        self._check_fitted()
        if target_fpr is None:
            val = self._labelled_set(X_val, y_val)
            threshold, _ = f1_best_threshold(check_finite(self._score(val.x), "validation scores"), val.y)
        else:
            x = self._images(X_val, "X_val")
            normal = x if y_val is None else x[self._labels(y_val, len(x), "y_val") == 0]
            if len(normal) == 0:
                raise AgadError("calibrating to a false-positive rate needs normal images (y_val == 0) in X_val")
            threshold = fpr_threshold(check_finite(self._score(normal), "validation scores"), target_fpr)
        self._set_threshold(threshold, "calibration")
        return self

    # ------------------------------------------------------------ scoring
    def _check_fitted(self) -> None:
        check_is_fitted(self, ("threshold_", "generator_"),
                        msg="This AGAD instance is not fitted yet. Call 'fit' with training images, or load a "
                            "saved model with AGAD.load(path), before using this method.")

    def _score(self, x: np.ndarray, *, return_reconstructions: bool = False):
        """Scores (float64) of uint8 (N, C, S, S) images; optionally G(x) as float32 (N, C, S, S) in [-1, 1]."""
        out = score_images(self._scorer, x, batch_size=self.config_.eval_batch_size, device=self._device,
                           amp_dtype=self._amp, channels_last=self.config_.channels_last,
                           return_reconstructions=return_reconstructions)
        if return_reconstructions:
            s, recon = out
            return check_finite(s.astype(np.float64), "scores"), recon.numpy()
        return check_finite(out.astype(np.float64), "scores")

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
        return labels_at(self.decision_function(X), self.threshold_)

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
            raise AgadError("predict_proba needs the range of the training scores, which this run directory does "
                            "not store; re-train it with this version of agad")
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

    def anomaly_map(self, X: Any, *, sigma: float | None = None) -> np.ndarray:
        """Pixel anomaly maps, float32 (N, H, W) at the input's resolution: higher = more anomalous.

        The map is the residual ``|x - G(x)|`` averaged over channels, on the [-1, 1] scale the network
        sees (:func:`agad.evaluation.residual_map`, the map of ``agad predict --overlays`` and of the
        exported models), resized back to the input's height and width when the model resized the image,
        then smoothed with a Gaussian of ``sigma`` pixels when given. Image files and PIL images must share
        one size (their maps are stacked); arrays give maps of their own (H, W).

        >>> det.anomaly_map(np.zeros((2, 28, 28), np.uint8)).shape  # doctest: +SKIP
        (2, 28, 28)
        """
        from .evaluation import _check_sigma, reconstruction_maps, resize_maps, smooth_maps

        self._check_fitted()
        sigma = _check_sigma(sigma)
        if is_image_input(X):
            items = expand_items(X)
            size = _common_size(items)
            x, _, _ = read_images(items, channels=self.n_channels_in_, size=self.image_size_)
        else:
            a = self._as_array(X, "X")
            size = tuple(int(v) for v in a.shape[2:])
            x = self._images(a)
        _, maps = reconstruction_maps(self._scorer, x, batch_size=self.config_.eval_batch_size,
                                      device=self._device, amp_dtype=self._amp,
                                      channels_last=self.config_.channels_last)
        return smooth_maps(resize_maps(maps, size), sigma).astype(np.float32, copy=False)

    def __sklearn_tags__(self):
        # Images, not feature tables: (N, H, W) arrays are accepted, (N, features) ones are not, so
        # scikit-learn's generic 2-d checks do not apply.
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        return tags

    # ------------------------------------------------------------ persistence
    def save_threshold(self, path: str | Path, *, note: str | None = None) -> Path:
        """Rewrite the threshold in the config.json of the run directory ``path``; the weights are untouched.

        ``path`` must hold this model (the same model section and training config, e.g. the folder it was
        loaded from). The record is validated and written atomically (:func:`agad.rundir.write_record`);
        ``note`` says how the threshold was chosen (kept in ``threshold_source``).

        >>> AGAD.load("runs/demo").calibrate(X_val, y_val).save_threshold("runs/demo")  # doctest: +SKIP
        """
        from .rundir import read_run_config, write_record

        self._check_fitted()
        path = Path(path)
        meta = read_run_config(path)
        mine = getattr(self, "_meta", None) or {}
        if meta.get("model") != mine.get("model") or meta.get("config") != mine.get("config"):
            raise AgadError(f"{path} holds another model than this AGAD; save it with AGAD.save, or give the "
                            "run directory it was loaded from")
        source = self.threshold_source_ + (f": {note}" if note else "")
        meta.update(threshold=float(self.threshold_), threshold_source=source[:200])
        write_record(path, meta)
        if isinstance(getattr(self, "_meta", None), dict):
            self._meta.update(threshold=meta["threshold"], threshold_source=meta["threshold_source"])
        return path

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write a run directory (the `agad train` format; safetensors, no pickle), atomically.

        ``path`` must not exist unless ``overwrite``. Returns the path.

        >>> det.save("models/digits")          # doctest: +SKIP
        >>> AGAD.load("models/digits").predict(X)  # doctest: +SKIP
        """
        from .nets import Nets

        self._check_fitted()
        return save_run(path, nets=Nets(self.generator_, self.discriminator_), history=self.history_,
                        train_scores=getattr(self, "decision_scores_", None), record=self._meta,
                        overwrite=overwrite)

    @classmethod
    def _params_from_meta(cls, meta: dict[str, Any], cfg: TrainConfig, source: Path) -> dict[str, Any]:
        if isinstance(meta.get("estimator"), dict):  # saved by AGAD.save: the exact parameters
            params = dict(meta["estimator"])
            for name in params.keys() & set(_removed_params()):
                params.pop(name)
            unknown = sorted(set(params) - set(PARAM_DEFAULTS))
            if unknown:
                raise AgadError(f"{source}: unknown estimator parameter {unknown[0]!r}; "
                                "was it saved by a newer version of agad?")
            for name, value in list(params.items()):
                if value is None and name in _CONFIG_PARAMS and DEFAULTS[name] is not None:
                    params[name] = getattr(cfg, name)  # written when None meant "TrainConfig's default"
            return params
        # written by `agad train`: the config says it all
        params = {name: getattr(cfg, name) for name in _CONFIG_PARAMS}
        params.update(image_size=int(meta["model"]["image_size"]), random_state=cfg.seed,
                      contamination=float(meta.get("contamination", DEFAULT_CONTAMINATION)))
        return params

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> "AGAD":
        """A fitted AGAD from a directory written by :meth:`save` or by ``agad train``.

        Weights are read with safetensors (never unpickled). ``device``
        overrides the saved ``device`` parameter ("auto", "cpu", "cuda").

        >>> AGAD.load("runs/demo").predict(images)  # doctest: +SKIP
        """
        from .rundir import read_history

        run_dir = Path(path)
        run = load_run(run_dir, device="cpu")
        meta, cfg = run.meta, run.cfg
        if cfg.method != "agad":
            raise AgadError(f"{run_dir} holds a {cfg.method!r} model, not an AGAD model; AGAD.load reads AGAD "
                            "runs only (agad predict and agad export read every method)")
        if not isinstance(meta.get("threshold"), (int, float)) or not math.isfinite(meta["threshold"]):
            raise AgadError(f"{run_dir / CONFIG_FILE} has no finite 'threshold'; re-train the run")
        params = cls._params_from_meta(meta, cfg, run_dir / CONFIG_FILE)
        if device is not None:
            params["device"] = device
        est = cls(**params)
        est._check_params()
        est._device = resolve_device(est.device)
        est._amp = resolve_precision(est.precision, est._device)
        run.scorer.to(est._device)
        est.generator_ = run.nets.G
        est.discriminator_ = run.nets.D
        est._scorer = run.scorer
        est.config_ = cfg
        m = meta["model"]
        est.n_channels_in_, est.image_size_ = int(m["in_channels"]), int(m["image_size"])
        est.gamma_ = cfg.gamma
        est.history_ = read_history(run_dir)
        est.kept_epoch_ = int(meta.get("kept_epoch") or len(est.history_))
        est.threshold_ = float(meta["threshold"])
        source = str(meta.get("threshold_source", ""))
        est.threshold_source_ = next((s for s in ("validation", "calibration") if s in source), "contamination")
        if run.train_scores is not None:
            est.decision_scores_ = run.train_scores
            est.labels_ = labels_at(est.decision_scores_, est.threshold_)
        scaling = meta.get("score_scaling")
        if isinstance(scaling, dict) and {"train_min", "train_max"} <= set(scaling):
            est._score_range = (float(scaling["train_min"]), float(scaling["train_max"]))
        elif hasattr(est, "decision_scores_"):
            est._score_range = (float(est.decision_scores_.min()), float(est.decision_scores_.max()))
        est._meta = meta
        return est


def _removed_params() -> tuple[str, ...]:
    from .config import REMOVED_OPTIONS

    return tuple(REMOVED_OPTIONS)


def _signature() -> inspect.Signature:
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
               for name, default in PARAM_DEFAULTS.items()]
    return inspect.Signature(params)


AGAD.__init__.__signature__ = _signature()  # what help(AGAD) and scikit-learn's get_params read
AGAD.__doc__ = AGAD.__doc__.replace("PARAMS_PLACEHOLDER", _parameter_doc())


def _common_size(items: list) -> tuple[int, int]:
    """(H, W) shared by image files / PIL images as they are decoded (EXIF rotations included)."""
    from .data.images import image_info

    sizes = set()
    for item, info in zip(items, image_info(items)):
        w, h = info.width, info.height
        if _exif_swaps(item):
            w, h = h, w
        sizes.add((h, w))
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h}" for h, w in sorted(sizes)[:3])
        raise AgadError(f"anomaly_map stacks one map per image at its own size, but these images have "
                        f"{len(sizes)} sizes ({shown}); call it once per size, or pass an array")
    return sizes.pop()


def _exif_swaps(item: Any) -> bool:
    """Whether the image's EXIF orientation turns it by 90 degrees when decoded (tags 5 to 8)."""
    from PIL import Image

    try:
        if isinstance(item, Image.Image):
            return item.getexif().get(0x0112, 1) in (5, 6, 7, 8)
        if isinstance(item, (str, Path)):
            with Image.open(item) as img:
                return img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except (OSError, ValueError):
        return False  # read_images names an unreadable file
    return False
