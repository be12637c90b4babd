"""CPU runs of the third session: a validation selection for labelled anomalies (issue 7, gamma 0.05).

    PYTHONPATH=src python scripts/session3_runs.py select-g05 &   # two workers share the queue
    PYTHONPATH=src python scripts/session3_runs.py select-g05 &
    PYTHONPATH=src python scripts/session3_runs.py choose-g05      # reads validation AUROC only

The default (AdvProp + EMA) collapses late on some classes at gamma 0.05 (docs/STABILITY.md). Candidates,
fixed before any of their runs: the default; + ``freeze_bn_anomalies`` (labelled anomalies are normalised with
the running statistics and do not update them -- the paper's own freeze-BN, Table 5); + ``anomaly_margin=2``
(the push on each anomaly stops at twice the batch's normal distance). Each is trained once per selection class
with 10% of the normal training images held out, and read two ways from the same run: the last epoch, and the
epoch with the lowest held-out *normal* score (``select_epoch="val-recon"``). The choice uses validation AUROC
(held-out normals vs other classes' training images that are not labelled anomalies) and ``campaign.choose``.
Test AUROC is tracked per epoch for the spread and the curves only.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from campaign import SELECTION_CLASSES, choose  # noqa: E402
from session2_runs import ADVPROP_EMA, cfgs  # noqa: E402

from agad.experiments.grid import run_grid, run_name  # noqa: E402

ROOT = Path("results/fmnist")
G05_CANDIDATES = {
    "default": ADVPROP_EMA,
    "default+freeze-bn": {**ADVPROP_EMA, "freeze_bn_anomalies": True},
    "default+margin2": {**ADVPROP_EMA, "anomaly_margin": 2.0},
}


def _g05(recipe: dict, classes) -> list:
    return cfgs("fashion-mnist", recipe, classes, gammas=[0.05], val_fraction=0.1, select_epoch="val-recon")


def select_g05() -> None:
    plan = [c for k in SELECTION_CLASSES for r in G05_CANDIDATES.values() for c in _g05(r, [k])]
    run_grid(plan, ROOT, jobs=1, keep_weights=False)


def _read(run_dir: Path) -> dict[str, float] | None:
    """Validation AUROC at the last epoch and at the val-recon epoch, and the last-half spread (history only)."""
    p = run_dir / "history.jsonl"
    if not (run_dir / "metrics.json").is_file() or not p.is_file():
        return None
    hist = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    tail = [h["val/auroc"] for h in hist[len(hist) // 2 :]]
    kept = min(hist, key=lambda h: h["val/recon"])
    return {"last": hist[-1]["val/auroc"], "val-recon": kept["val/auroc"], "spread": max(tail) - min(tail)}


def choose_g05() -> str:
    summary: dict[str, dict] = {}
    for name, recipe in G05_CANDIDATES.items():
        rows = [_read(ROOT / run_name(c)) for c in _g05(recipe, SELECTION_CLASSES)]
        if any(r is None for r in rows):
            print(f"{name}: {sum(r is None for r in rows)} selection run(s) missing")
            continue
        for rule in ("last", "val-recon"):
            summary[f"{name} @{rule}"] = {
                "per_class": [round(r[rule], 4) for r in rows],
                "mean_val_auroc": statistics.mean(r[rule] for r in rows),
                "mean_val_spread": statistics.mean(r["spread"] for r in rows),
            }
    chosen = choose(summary) if summary else "none"
    out = {"classes": SELECTION_CLASSES, "gamma": 0.05, "summary": summary, "chosen": chosen}
    print(json.dumps(out, indent=1))
    if len(summary) == 2 * len(G05_CANDIDATES):
        (ROOT / "selection_g05.json").write_text(json.dumps(out, indent=2))
    return chosen


if __name__ == "__main__":
    for stage in sys.argv[1:]:
        {"select-g05": select_g05, "choose-g05": choose_g05}[stage]()
