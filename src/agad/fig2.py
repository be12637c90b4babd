"""Fig. 2 of the paper from saved runs: the inputs, then one row of reconstructions per run.

It rebuilds each run's networks (:func:`agad.pipeline.load_run`), so it lives beside the pipeline and not in
:mod:`agad.experiments`, whose tables and figures read artefacts only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import AgadError
from .figures import reconstruction_rows


METHOD_LABEL = {"agad": "AGAD", "ganomaly": "GANomaly", "skip-ganomaly": "Skip-GANomaly"}


def pick_spread(labels: np.ndarray, classes: np.ndarray, per_group: int = 8) -> np.ndarray:
    """The first ``per_group`` normal test indices, then ``per_group`` anomalous ones taken in turn from
    each anomalous class (the first unused image of each), so that the figure shows every kind of anomaly.

    >>> pick_spread(np.array([0, 1, 1, 1, 0, 1]), np.array([5, 1, 1, 2, 5, 3]), 2).tolist()
    [0, 4, 1, 3]
    """
    normal = np.flatnonzero(labels == 0)[:per_group]
    queues = [list(np.flatnonzero((labels == 1) & (classes == c))) for c in np.unique(classes[labels == 1])]
    anomalous: list[int] = []
    while len(anomalous) < per_group and any(queues):
        for q in queues:
            if q and len(anomalous) < per_group:
                anomalous.append(int(q.pop(0)))
    return np.concatenate([normal, np.sort(np.asarray(anomalous, dtype=np.int64))]).astype(np.int64)


def recon_figure(run_dirs: Sequence[str | Path], out: str | Path, *, per_group: int = 8,
                 device: str = "cpu") -> Path:
    """Fig. 2: input row, then one reconstruction row per run (e.g. AGAD, then GANomaly).

    All runs must share the test split (data, normal class, protocol, image size); the
    images are the first ``per_group`` normal test images and ``per_group`` anomalous ones spread over the
    anomalous classes (:func:`pick_spread`).
    """
    from .pipeline import load_run, prepare_split
    from .scoring import score_images

    from .rundir import read_run_config

    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise AgadError("recon: pass at least one run directory")
    cfgs = [read_run_config(d)["config"] for d in dirs]
    same = ("data", "normal_class", "protocol", "image_size")
    for d, c in zip(dirs[1:], cfgs[1:]):
        diff = [k for k in same if c.get(k) != cfgs[0].get(k)]
        if diff:
            raise AgadError(f"{d} has another test split than {dirs[0]} ({', '.join(diff)} differ); "
                            "compare runs on the same data and normal class")
    for d in dirs:
        if not (d / "generator.safetensors").is_file():
            raise AgadError(f"{d} has no generator weights (grids drop them unless --keep-weights); "
                            "re-run it with --keep-weights")
    cfg0 = load_run(dirs[0], device=device).cfg
    split, ds = prepare_split(cfg0)
    names = list(ds.class_names)
    idx = pick_spread(split.y_test, split.test_classes, per_group)
    x = split.x_test[idx]  # (16, C, H, W) uint8
    rows: list[tuple[str, np.ndarray]] = [("input", x)]
    for d in dirs:
        run = load_run(d, device=device)
        cfg = run.cfg
        _, recon = score_images(run.scorer, x, device=device, return_reconstructions=True)
        label = METHOD_LABEL.get(cfg.method, cfg.method) + (f" ({cfg.backbone})" if cfg.method == "agad" else "")
        rows.append((label, recon.numpy()))
    normal = names[cfg0.normal_class] if cfg0.normal_class < len(names) else cfg0.normal_class
    title = f"{Path(cfg0.data).name}: normal class {normal}; {per_group} normal, then {per_group} anomalous test images"
    reconstruction_rows(rows, Path(out), title=title, labels=split.y_test[idx])
    return Path(out)


# ------------------------------------------------------------------ Fig. 4
