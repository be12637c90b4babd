"""CPU runs of the eighth session (no GPU again): the gaps issue 5 still lists, in one resumable queue.

    PYTHONPATH=src python scripts/session8_runs.py queue &   # two workers share one resumable queue
    PYTHONPATH=src python scripts/session8_runs.py queue &
    PYTHONPATH=src python scripts/session8_runs.py tables    # rebuild the tables from whatever finished

The queue, fixed before any of its runs (seed 0 unless stated, the harness's own grids so that ``agad bench
... --table-only`` rebuilds the same tables):

1. **Skip-GANomaly at gamma 0, MNIST sample then Fashion-MNIST, all ten classes** -- the second baseline of
   issue 5's deliverable 2, which no session had run (score 0.9 reconstruction + 0.1 latent; same data, split,
   budget and final-epoch protocol as AGAD and GANomaly): ``agad bench table1 --method skip-ganomaly``.
   Amended after its first eight MNIST-sample runs: they used AGAD's unet backbone (Zhou's U-Net), which under
   GANomaly's N(0, 0.02) initialisation barely learns to reconstruct in the sample's 105 steps (L1 0.63 at the
   end; digit 1 at 22.4 AUROC, the eight digits at 53.4). Skip-GANomaly's paper uses pix2pix's U-Net; the
   baseline now builds that one (``unet_style`` "auto" -> "pix2pix" for skip-ganomaly; a different run name),
   and the queue restarted on it. The eight Zhou-U-Net runs are kept in
   ``results/mnist-sample/zhou-unet-skip-ganomaly-session8/``.
2. **Fashion-MNIST: the default at gamma 0.2 on all ten classes** -- Table 2 had only gamma 0 and 0.05 on Fashion-MNIST;
   0.2 is also the second panel of the paper's Fig. 4. The default recipe as shipped (AdvProp + EMA; with
   labelled anomalies 10% of the normals held out and the val-ratio epoch kept): ``agad bench table2
   --gammas 0.2``.
3. **MNIST sample: GANomaly seeds 0-2** (session 1's seed 0 did not track test AUROC per epoch, so it is a new
   run name), for a mean +- SD over seeds like AGAD's.

Test AUROC is tracked per epoch for the curves and spreads only; nothing here is chosen from it.
"""

from __future__ import annotations

from stage_queue import main

STAGES = (  # (table, data, grid_for keyword arguments)
    ("table1", "mnist-sample", {"method": "skip-ganomaly"}),
    ("table1", "fashion-mnist", {"method": "skip-ganomaly"}),
    ("table2", "fashion-mnist", {"gammas": [0.2]}),
    ("table1", "mnist-sample", {"method": "ganomaly", "seeds": [0, 1, 2]}),
)


if __name__ == "__main__":
    main(STAGES)
