"""CPU runs of the seventh session beside session 6's queue (no GPU again).

    PYTHONPATH=src python scripts/session7_runs.py mnist     # w/o C.A. on the MNIST sample at gamma 1% and 10%
    PYTHONPATH=src python scripts/session7_runs.py report    # its Table-4 row, from the saved runs

Issue 5 asks for Table 4 (the C.A. ablation over gamma) on the MNIST sample; w/o C.A. had run at gamma 0, 5%
and 20% only (session 2). These are the same recipe (the paper's ablation: paper-literal without the
contextual adversarial term, all normal images, last epoch), seed 0, ten digits. The session's other runs
(the BN-statistics probe, seed 1 at gamma 0.05) are in scripts/bn_mix_probe.py and scripts/session6_runs.py.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from session2_runs import ADVPROP_EMA, NO_CA, cfgs  # noqa: E402

from agad.experiments.grid import run_grid, run_name  # noqa: E402

ROOT = Path("results/mnist-sample")
GAMMAS = (0.0, 0.01, 0.05, 0.1, 0.2)


def mnist() -> None:
    run_grid(cfgs("mnist-sample", NO_CA, range(10), gammas=[0.01, 0.1]), ROOT, jobs=1, keep_weights=False)


def report() -> None:
    """Test AUROC (last epoch) per gamma for w/o C.A., with the session-2 protocol's AdvProp + EMA beside it."""
    for name, recipe in (("w/o C.A.", NO_CA), ("AdvProp + EMA, all normal images, last epoch", ADVPROP_EMA)):
        cells = []
        for g in GAMMAS:
            runs = [ROOT / run_name(c) / "metrics.json" for c in cfgs("mnist-sample", recipe, range(10), gammas=[g])]
            done = [json.loads(p.read_text())["auroc"] for p in runs if p.is_file()]
            cells.append(f"{100 * statistics.mean(done):.1f}" + ("" if len(done) == 10 else f" ({len(done)}/10)")
                         if done else "—")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    for stage in sys.argv[1:] or ["mnist"]:
        {"mnist": mnist, "report": report}[stage]()
