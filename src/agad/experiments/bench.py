"""``agad bench TABLE``: build a paper table's grid, run it (resumable), rebuild the table from the artefacts.

>>> bench("table2", "fashion-mnist", "results/fmnist", seeds=[0, 1, 2], epochs=15, jobs=2)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import AgadError


def bench(table: str, data: str, out: str | Path, *, classes=None, seeds=None, gammas=None, backbone=None,
          method: str | None = None, epochs: int | None = None, overrides: dict[str, Any] | None = None,
          jobs: int = 2, time_budget_s: float | None = None, run_timeout_s: float | None = None,
          keep_weights: bool = False, table_only: bool = False, in_process: bool = False,
          paper_dataset: str | None = None, command: str | None = None, log=print) -> dict[str, Any]:
    """What `agad bench TABLE` does, callable from Python: build the grid, run it, rebuild OUT/TABLE.md/.csv.

    >>> bench("table2", "fashion-mnist", "results/fmnist", seeds=[0, 1, 2], epochs=15, jobs=12,
    ...       time_budget_s=3 * 3600)                                   # doctest: +SKIP
    """
    from .grid import grid_for, run_grid, run_name
    from .tables import write_table

    if jobs < 1:
        raise AgadError(f"--jobs must be at least 1; got {jobs}")
    cfgs = grid_for(table, data, classes=classes, seeds=seeds if seeds is not None else (0,), gammas=gammas,
                    backbone=backbone, epochs=epochs, method=method, base_overrides=overrides)
    root = Path(out)
    results: list[dict[str, Any]] = []
    if not table_only:
        results = run_grid(cfgs, root, jobs=jobs, keep_weights=keep_weights, log=log, time_budget_s=time_budget_s,
                           in_process=in_process, run_timeout_s=run_timeout_s)
    if command is None:
        command = f"python: agad.experiments.bench.bench({table!r}, {data!r}, {str(out)!r}, ...)"
    md, csv_path = write_table(table, [root / run_name(c) for c in cfgs], root, command=command, dataset=paper_dataset)
    return {"configs": cfgs, "results": results, "markdown": md, "csv": csv_path}
