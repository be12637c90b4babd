"""CPU runs of the tenth session (no GPU again): Fashion-MNIST's Table 4 gaps, in one resumable queue.

    PYTHONPATH=src python scripts/session10_runs.py queue &   # two workers share one resumable queue
    PYTHONPATH=src python scripts/session10_runs.py queue &
    PYTHONPATH=src python scripts/session10_runs.py tables    # rebuild the tables from whatever finished

The queue, fixed before any of its runs (seed 0, naive backbone, the default recipe as shipped: AdvProp + EMA,
10% of the normals held out and the val-ratio epoch kept; the table-4 pair differs in the C.A. term only):

1. **Table 4 at gamma 0.01 without C.A.** -- the half session 9 did not reach (its "with" half is
   docs/results/fmnist_table4_session9.md). Table 2's grid with ``ca`` off builds exactly table 4's
   "without" configs, so ``agad bench table4 --backbone naive --gammas 0.01 --table-only`` finds these runs.
2. **Table 4 at gamma 0.03** (the last of the paper's Table-4 gammas not run here), one class at a time with
   and without C.A., so that a queue cut short by the session's end still leaves matched pairs.

Test AUROC is tracked per epoch for the curves and spreads only; nothing here is chosen from it.
"""

from __future__ import annotations

from stage_queue import TRACK, main

STAGES = (  # (table, data, grid_for keyword arguments)
    ("table2", "fashion-mnist", {"gammas": [0.01], "base_overrides": {**TRACK, "ca": False}}),
    *(("table4", "fashion-mnist", {"gammas": [0.03], "backbone": "naive", "classes": [c]}) for c in range(10)),
)


if __name__ == "__main__":
    main(STAGES)
