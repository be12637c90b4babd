"""The reproduction harness: grids of runs, tables and figures rebuilt from run artefacts.

- :mod:`agad.experiments.grid`: one run per :class:`~agad.config.TrainConfig`,
  run in subprocesses (resumable, parallel, time-boxed) — ``run_grid``,
  ``grid_for``, ``run_name``.
- :mod:`agad.experiments.tables`: paper tables from ``config.json`` +
  ``metrics.json`` only (never the trainer), with the paper's numbers beside.
- :mod:`agad.experiments.figures`: Fig. 2 / 4 / 6 and loss curves from run
  directories.
- :mod:`agad.experiments.paper`: the numbers the paper reports.
"""
