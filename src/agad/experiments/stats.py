"""Small pure statistics shared by tables and figures.

>>> mean_sd([1.0, 2.0, 3.0])
(2.0, 0.816496580927726)
>>> tukey_filter([1, 2, 3, 4, 5, 6, 7, 8, 100]).tolist()
[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
>>> round(last_half_spread([0.5, 0.9, 0.8, 0.7, 0.75]), 6)  # epochs 3-5: 0.8 - 0.7
0.1
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np


def mean_sd(values: Iterable[float], *, ddof: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of the finite values (NaN for none).

    ``ddof=0`` (population SD) is the default because it is what the paper's
    "SD over classes" matches: e.g. its CIFAR-10 naive row, 79.9 ... 74.3,
    has population SD 9.63 (the paper's figure) and sample SD 10.15.
    The SD of a single value is 0 with ``ddof=0`` and NaN with ``ddof=1``.
    """
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) <= ddof:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(v.std(ddof=ddof))


def tukey_fences(values: Iterable[float], k: float = 1.5) -> tuple[float, float]:
    """[Q1 - k·IQR, Q3 + k·IQR] with NumPy's default (linear) quartiles."""
    v = np.asarray(list(values), dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    q1, q3 = np.percentile(v, [25, 75])
    iqr = q3 - q1
    return float(q1 - k * iqr), float(q3 + k * iqr)


def tukey_filter(values: Iterable[float], k: float = 1.5) -> np.ndarray:
    """The values inside Tukey's fences (paper Fig. 4), order kept; NaN/inf dropped."""
    v = np.asarray(list(values), dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return v
    lo, hi = tukey_fences(v, k)
    return v[(v >= lo) & (v <= hi)]


def last_half_spread(curve: Iterable[float]) -> float:
    """Max - min of a per-epoch curve over its last half (epochs ``len // 2`` onwards; the stability
    measure: 15 epochs -> epochs 8-15). NaN for an empty curve.
    """
    v = [float(x) for x in curve]
    tail = v[len(v) // 2 :]
    return max(tail) - min(tail) if tail else float("nan")
