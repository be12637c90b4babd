"""Scores, thresholds and metrics: the one place where scores become labels.

Every entry point (``agad train``, :class:`agad.AGAD`, ``agad evaluate`` /
``calibrate`` / ``predict``) goes scores -> threshold -> labels through here,
as PyOD's ``_process_decision_scores`` does. Thresholds come from training or
validation scores only, never from the images being judged.

>>> import numpy as np
>>> contamination_threshold(np.arange(10.0), 0.1)
8.1
>>> f1_best_threshold(np.array([0.1, 0.2, 0.9, 1.0]), np.array([0, 0, 1, 1]))
(0.55, 1.0)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from torch import Tensor, nn

from .errors import AgadError
from .runtime import autocast, resolve_device

DEFAULT_CONTAMINATION = 0.1  # expected share of anomalies among unlabelled training images


def to_unit_range(x: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]; float input is passed through unchanged."""
    if x.dtype == torch.uint8:
        return x.float().div_(127.5).sub_(1.0)
    return x.float()


@torch.inference_mode()
def score_images(
    scorer: nn.Module,
    x: Tensor | np.ndarray,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = True,
    return_reconstructions: bool = False,
):
    """Scores of a method's scoring module (:mod:`agad.methods`) per image, streamed in batches.

    ``x`` is (N, C, H, W) uint8 or [-1, 1] float. With ``return_reconstructions`` (methods that
    reconstruct) also returns G(x) in [-1, 1] as a float32 tensor (only for small sets).
    """
    device = resolve_device(device) if device == "auto" else torch.device(device)
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if return_reconstructions and not hasattr(scorer, "score_and_reconstruct"):
        raise AgadError(f"{type(scorer).__name__} scores without reconstructing: it has no reconstructions to show")
    was_training = scorer.training
    scorer.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    # One preallocated buffer, filled in place: a small tensor kept per batch between the batch-sized
    # allocations fragmented the heap, and RSS grew with N (by 160-660 MB over 70,000 1x32x32 images).
    out = torch.empty(len(x), dtype=torch.float32, device=device)
    recons = []
    try:
        for i in range(0, len(x), batch_size):
            xb = to_unit_range(x[i : i + batch_size].to(device)).contiguous(memory_format=fmt)
            with autocast(device, amp_dtype):
                if return_reconstructions:
                    s, xh = scorer.score_and_reconstruct(xb)
                    recons.append(xh.float().cpu())
                else:
                    s = scorer(xb)
                out[i : i + len(xb)] = s.float()
    finally:
        scorer.train(was_training)
    s = out.cpu().numpy()  # one device-to-host copy, after the last batch
    if return_reconstructions:
        return s, (torch.cat(recons) if recons else torch.zeros(0))
    return s


def check_finite(scores: np.ndarray, what: str) -> np.ndarray:
    """Scores that are not finite are an error, never a label."""
    bad = ~np.isfinite(scores)
    if bad.any():
        raise AgadError(f"{what}: {int(bad.sum())} of {len(scores)} scores are not finite (NaN or inf); the model's "
                        "weights are broken (e.g. training diverged): re-train it")
    return scores


def contamination_threshold(train_scores: np.ndarray, contamination: float) -> float:
    """The (1 - contamination) quantile of training scores: that share of them scores above it."""
    if not (isinstance(contamination, (int, float)) and 0 < contamination <= 0.5):
        raise AgadError(f"The 'contamination' parameter must be a float in (0, 0.5]. Got {contamination!r} instead.")
    return float(np.quantile(train_scores, 1.0 - float(contamination)))


def f1_best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold with the best F1 on a labelled set, for the rule ``score > threshold``.

    ``precision_recall_curve`` counts ``score >= t`` as positive; the returned
    threshold sits halfway between the best ``t`` and the next lower score, so
    ``score > threshold`` flags exactly the same images. Returns ``(threshold, f1)``.
    """
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    p, r = precision[:-1], recall[:-1]  # the last point (P=1, R=0) has no threshold
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    i = int(np.argmax(f1))
    t = float(thresholds[i])
    lower = scores[scores < t]
    threshold = (float(lower.max()) + t) / 2 if lower.size else float(np.nextafter(t, -np.inf))
    return threshold, float(f1[i])


def fpr_threshold(normal_scores: np.ndarray, target_fpr: float) -> float:
    """The lowest threshold at which at most ``target_fpr`` of these normal images score above it.

    >>> fpr_threshold(np.arange(100.0), 0.05)
    94.0
    """
    if not 0 <= target_fpr < 1:
        raise AgadError(f"the target false-positive rate must be in [0, 1). Got {target_fpr!r} instead.")
    s = np.sort(np.asarray(normal_scores, np.float64))
    k = int(math.floor(target_fpr * len(s)))  # images allowed above the threshold
    return float(s[len(s) - k - 1]) if k < len(s) else float(s[0])


def labels_at(scores: np.ndarray, threshold: float) -> np.ndarray:
    """0 (normal) / 1 (anomaly): 1 where ``score > threshold``."""
    return (np.asarray(scores) > threshold).astype(np.int64)


def auroc_of(labels: np.ndarray, scores: np.ndarray) -> float:
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, scores))


def metrics_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Image-level AUROC, AUPR, and F1 / precision / recall / accuracy at ``threshold``; plus the best-F1
    threshold of these labels (reported, never stored: it was chosen on the data it describes)."""
    labels = np.asarray(labels, np.int64)
    pred = labels_at(scores, threshold)
    tp = int(((pred == 1) & (labels == 1)).sum())
    fp = int(((pred == 1) & (labels == 0)).sum())
    fn = int(((pred == 0) & (labels == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    both = len(np.unique(labels)) > 1
    out = {
        "auroc": auroc_of(labels, scores),
        "aupr": float(average_precision_score(labels, scores)) if both else float("nan"),
        "threshold": float(threshold),
        "accuracy_at_threshold": float((pred == labels).mean()) if len(labels) else float("nan"),
        "precision_at_threshold": precision,
        "recall_at_threshold": recall,
        "f1_at_threshold": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "n": int(len(labels)),
        "n_anomalous": int(labels.sum()),
    }
    if both:
        out["best_f1_threshold"], out["best_f1"] = f1_best_threshold(np.asarray(scores, np.float64), labels)
    return out
