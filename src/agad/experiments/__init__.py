"""The reproduction harness: grids of runs, tables and figures rebuilt from run artefacts.

- :mod:`agad.experiments.grid`: one run per :class:`~agad.config.TrainConfig`,
  run in subprocesses (resumable, parallel, time-boxed) — ``run_grid``,
  ``grid_for``, ``run_name``.
- :mod:`agad.experiments.tables`: paper tables from ``config.json`` +
  ``metrics.json`` only (never the trainer), with the paper's numbers beside.
- :mod:`agad.experiments.figures`: Fig. 4 / 6 and loss curves from run
  directories (Fig. 2 needs the networks: :func:`agad.fig2.recon_figure`).
- :mod:`agad.experiments.plans`: one plan file per reproduced table, run, archived and rebuilt.
- :mod:`agad.experiments.selection`: a selection's validation table, from histories only.

Tables, figures and selections read run artefacts only and never import the
trainer; the grid and plans start ``agad train`` in subprocesses (their
in-process mode, for tests, imports the pipeline when it runs).
- :mod:`agad.experiments.paper`: the numbers the paper reports.
"""
