"""The one-class protocol: which images train, which test.

``mode="one-vs-rest"`` (default, the paper's text): class k is normal; the
model trains on class k's training images; the *whole* test split is scored,
label 0 for class k and 1 for every other class.

``mode="one-anomalous"`` (GANomaly's protocol, the paper's Fig. 2 caption):
class k is the anomaly; the model trains on every other class's training
images; test label 1 for class k, 0 otherwise.

Limited supervision (gamma > 0) adds ``a = round(gamma * n / (1 - gamma))``
labelled anomalies (so that ``gamma = a / (n + a)``, n = number of normal
training images, rounded half up), drawn without replacement from the
anomalous classes' *training* images, never from the test split. With
``known_classes=N`` (Deep SAD's harder variant) N anomaly classes are chosen
first and the anomalies come from those only.

Example:
    >>> from agad.data import load_dataset
    >>> s = one_class_split(load_dataset("mnist-sample"), 3, gamma=0.05)
    >>> len(s.x_normal), s.n_anomalies, len(s.y_test)
    (400, 21, 1000)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from agad.data.base import Dataset
from agad.errors import AgadError

__all__ = ["MODES", "Split", "n_anomalies_for", "one_class_split", "validation_split"]

MODES = ("one-vs-rest", "one-anomalous")


@dataclass(frozen=True, eq=False)
class Split:
    """Training and test data for one run of the one-class protocol.

    Attributes:
        x_normal: uint8 (n, C, H, W) normal training images.
        x_anomaly: uint8 (a, C, H, W) labelled anomalies from training
            images; shape (0, C, H, W) when gamma = 0.
        anomaly_classes: int64 (a,) original class of each labelled anomaly.
        anomaly_indices: int64 (a,) their indices into ``Dataset.x_train``.
        x_test: uint8 the whole test split.
        y_test: int64 0 normal / 1 anomaly, per test image.
        test_classes: int64 original class of each test image.
        normal_class: the selected class k (in "one-anomalous" mode, k is
            the *anomalous* class; the name follows the default mode).
        gamma: the requested anomaly fraction.
        n_anomalies: a, the number of labelled anomalies.
        mode: "one-vs-rest" or "one-anomalous".
        known_classes: the classes labelled anomalies may come from.
    """

    x_normal: np.ndarray
    x_anomaly: np.ndarray
    anomaly_classes: np.ndarray
    anomaly_indices: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_classes: np.ndarray
    normal_class: int
    gamma: float
    n_anomalies: int
    mode: str
    known_classes: tuple[int, ...]


def n_anomalies_for(n_normal: int, gamma: float) -> int:
    """Labelled anomalies needed so that ``a / (n + a) ~= gamma``, rounded half up.

    Example:
        >>> n_anomalies_for(6000, 0.05)
        316
        >>> n_anomalies_for(6000, 0.0)
        0
    """
    _check_gamma(gamma)
    # floor(x + 0.5) rather than round(): Python's round() goes to even on
    # exact halves, which would make the count depend on parity.
    return int(math.floor(n_normal * gamma / (1.0 - gamma) + 0.5))


def _check_gamma(gamma) -> float:
    if (
        isinstance(gamma, bool)
        or not isinstance(gamma, numbers.Real)
        or not math.isfinite(float(gamma))
        or not 0.0 <= float(gamma) < 1.0
    ):
        raise AgadError(f"gamma must be a float in [0, 1); got {gamma!r}")
    return float(gamma)


def _check_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise AgadError(f"{name} must be an integer; got {value!r}")
    return int(value)


def one_class_split(
    ds: Dataset,
    normal_class: int,
    *,
    gamma: float = 0.0,
    known_classes: int | None = None,
    seed: int = 0,
    mode: str = "one-vs-rest",
) -> Split:
    """Build the training/test data for class ``normal_class`` (see module docstring).

    Args:
        ds: the dataset.
        normal_class: class index k.
        gamma: fraction of labelled anomalies among training images, in [0, 1).
        known_classes: if set, draw labelled anomalies from this many
            randomly chosen anomaly classes only (1 .. num_classes - 1).
            Only meaningful in "one-vs-rest" mode.
        seed: seeds ``np.random.default_rng``: it picks the known classes
            first, then the anomalies.
        mode: "one-vs-rest" or "one-anomalous".

    Raises:
        AgadError: bad gamma, class, known_classes or mode, or more labelled
            anomalies needed than the anomalous training images provide.

    Example:
        >>> from agad.data import load_dataset
        >>> s = one_class_split(load_dataset("mnist-sample"), 0, gamma=0.2, known_classes=1)
        >>> len(set(s.anomaly_classes.tolist()))
        1
    """
    gamma = _check_gamma(gamma)
    if mode not in MODES:
        raise AgadError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    k = _check_int(normal_class, "normal_class")
    c = ds.num_classes
    if not 0 <= k < c:
        names = ", ".join(f"{i}={n}" for i, n in enumerate(ds.class_names))
        raise AgadError(f"normal_class must be in [0, {c - 1}] for {ds.name} ({names}); got {k}")
    seed = _check_int(seed, "seed")

    rng = np.random.default_rng(seed)
    others = np.array([i for i in range(c) if i != k], dtype=np.int64)
    if mode == "one-vs-rest":
        normal_mask = ds.y_train == k
        pool_classes = others
        if known_classes is not None:
            n_known = _check_int(known_classes, "known_classes")
            if not 1 <= n_known <= c - 1:
                raise AgadError(
                    f"known_classes must be in [1, {c - 1}] for {ds.name} ({c} classes); got {n_known}"
                )
            pool_classes = np.sort(rng.choice(others, size=n_known, replace=False))
        y_test = (ds.y_test != k).astype(np.int64)
    else:
        normal_mask = ds.y_train != k
        pool_classes = np.array([k], dtype=np.int64)
        if known_classes is not None and _check_int(known_classes, "known_classes") != 1:
            raise AgadError(
                f"known_classes must be None or 1 in mode 'one-anomalous' (class {k} is the only "
                f"anomaly class); got {known_classes}"
            )
        y_test = (ds.y_test == k).astype(np.int64)

    x_normal = ds.x_train[normal_mask]
    if len(x_normal) == 0:
        raise AgadError(f"{ds.name} has no normal training images for class {k} in mode {mode!r}; pick another class")
    a = n_anomalies_for(len(x_normal), gamma)
    pool = np.flatnonzero(np.isin(ds.y_train, pool_classes))
    if a > len(pool):
        raise AgadError(
            f"gamma={gamma} needs {a} labelled anomalies but classes {pool_classes.tolist()} have only "
            f"{len(pool)} training images; lower gamma or raise known_classes"
        )
    # Sorted so that the draw is a set: the same seed gives the same images
    # in the same order, whatever order the rng returned them in.
    idx = np.sort(rng.choice(pool, size=a, replace=False)) if a else np.zeros(0, dtype=np.int64)
    return Split(
        x_normal=x_normal,
        x_anomaly=ds.x_train[idx],
        anomaly_classes=ds.y_train[idx],
        anomaly_indices=idx.astype(np.int64),
        x_test=ds.x_test,
        y_test=y_test,
        test_classes=ds.y_test,
        normal_class=k,
        gamma=gamma,
        n_anomalies=a,
        mode=mode,
        known_classes=tuple(int(i) for i in pool_classes),
    )


def validation_split(
    x_normal: np.ndarray, fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out a random fraction of the normal training images: ``(x_train, x_val)``.

    For model selection that never looks at test labels.
    ``round(fraction * n)`` images (at least 1) go to validation, at least
    one stays for training; both keep their original order.

    Example:
        >>> import numpy as np
        >>> tr, va = validation_split(np.zeros((10, 1, 4, 4), np.uint8), 0.2, seed=0)
        >>> len(tr), len(va)
        (8, 2)
    """
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, numbers.Real)
        or not 0.0 < float(fraction) < 1.0
    ):
        raise AgadError(f"validation fraction must be a float in (0, 1); got {fraction!r}")
    seed = _check_int(seed, "seed")
    n = len(x_normal)
    if n < 2:
        raise AgadError(f"a validation split needs at least 2 normal images; got {n}")
    n_val = min(n - 1, max(1, int(math.floor(n * float(fraction) + 0.5))))
    perm = np.random.default_rng(seed).permutation(n)
    val = np.sort(perm[:n_val])
    train = np.sort(perm[n_val:])
    return x_normal[train], x_normal[val]
