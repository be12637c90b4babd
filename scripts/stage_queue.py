"""A resumable queue of harness grids shared by the session scripts (``scripts/session8_runs.py`` onwards).

A stage is ``(table, data, grid_for keyword arguments)``; a ``base_overrides`` among them adds to ``TRACK``.
``queue`` runs every stage's grid in order, one run at a time per process (start two processes to use two
cores: they share the queue through the runs' locks and skip what is complete); ``tables`` prints the tables
``agad bench TABLE ... --table-only`` would write.
Test AUROC is tracked per epoch for curves and spreads only.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agad.experiments.cli import bench
from agad.experiments.grid import grid_for, run_grid

ROOTS = {"fashion-mnist": Path("results/fmnist"), "mnist-sample": Path("results/mnist-sample")}
TRACK = {"track_test_auroc": True, "num_threads": 1}  # num_threads is runtime-only: not part of a run's name


def _split(kw: dict, base: dict) -> tuple[dict, dict]:
    """(the stage's grid_for keywords without base_overrides, base updated with the stage's base_overrides)."""
    kw = dict(kw)
    return kw, {**base, **kw.pop("base_overrides", {})}


def queue(stages) -> None:
    for table, data, kw in stages:
        kw, overrides = _split(kw, TRACK)
        run_grid(grid_for(table, data, base_overrides=overrides, **kw), ROOTS[data], jobs=1, keep_weights=False)


def tables(stages) -> None:
    """The same tables `agad bench TABLE ... --table-only` writes, from the finished runs (missing ones blank)."""
    for table, data, kw in stages:
        kw, overrides = _split(kw, {"track_test_auroc": True})
        out = bench(table, data, ROOTS[data], overrides=overrides, table_only=True,
                    log=lambda *_: None, **kw)
        print(out["markdown"])


def main(stages, argv=None) -> None:
    for stage in (sys.argv[1:] if argv is None else argv) or ["queue"]:
        {"queue": queue, "tables": tables}[stage](stages)
