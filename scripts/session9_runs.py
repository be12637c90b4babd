"""CPU runs of the ninth session (no GPU again): Fashion-MNIST's Table 2 and Table 4 gaps, in one resumable queue.

    PYTHONPATH=src python scripts/session9_runs.py queue &   # two workers share one resumable queue
    PYTHONPATH=src python scripts/session9_runs.py queue &
    PYTHONPATH=src python scripts/session9_runs.py tables    # rebuild the tables from whatever finished

The queue, fixed before any of its runs (seed 0, naive backbone, all ten classes, the harness's own grids so
that ``agad bench ... --table-only`` rebuilds the same tables; the default recipe as shipped: AdvProp + EMA,
with labelled anomalies 10% of the normals held out and the val-ratio epoch kept):

1. **Table 2 at gamma 0.1** -- Fashion-MNIST had gamma 0, 0.05 and 0.2: ``agad bench table2 --gammas 0.1``.
2. **Table 4 at gamma 0.1 with the naive backbone** -- the same recipe without C.A. (``ca`` off, everything
   else equal, same hold-out and rule), so the with/without pair at 0.1 differs in the C.A. term only; the
   "with" half is stage 1's runs: ``agad bench table4 --backbone naive --gammas 0.1``.
3. **Table 2 at gamma 0.01** (completes Table 2's row): ``agad bench table2 --gammas 0.01``.
4. **Table 4 at gamma 0.01 with the naive backbone**, as stage 2.
5. **MNIST sample: GANomaly seeds 0-2** (session 8's last stage, not reached then).

Test AUROC is tracked per epoch for the curves and spreads only; nothing here is chosen from it.
"""

from __future__ import annotations

from stage_queue import main

STAGES = (  # (table, data, grid_for keyword arguments)
    ("table2", "fashion-mnist", {"gammas": [0.1]}),
    ("table4", "fashion-mnist", {"gammas": [0.1], "backbone": "naive"}),
    ("table2", "fashion-mnist", {"gammas": [0.01]}),
    ("table4", "fashion-mnist", {"gammas": [0.01], "backbone": "naive"}),
    ("table1", "mnist-sample", {"method": "ganomaly", "seeds": [0, 1, 2]}),
)


if __name__ == "__main__":
    main(STAGES)
