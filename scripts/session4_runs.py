"""CPU runs of the fourth session (no GPU again): the controls and baselines the earlier sessions lacked.

    PYTHONPATH=src python scripts/session4_runs.py queue &   # two workers share one resumable queue
    PYTHONPATH=src python scripts/session4_runs.py queue &
    PYTHONPATH=src python scripts/session4_runs.py report    # test AUROC tables (report only)

The queue, in priority order, fixed before any of its runs:

1. seed 1 at gamma 0, default and w/o C.A., the classes session 3 did not reach (issue 7: two seeds);
2. w/o C.A. at gamma 0.05 with the *same* label-free stopping rule as the default (10% of the normal training
   images held out, val-recon epoch): the fair control for "C.A. helps with labelled anomalies" (issue 7);
3. GANomaly on Fashion-MNIST at gamma 0, seed 0, same harness and budget (issue 5: baselines at gamma 0).

Then, if time allows, a probe (validation only, like session 3's selection): the default at gamma 0.05 with a
cosine learning-rate schedule (``lr_schedule="cosine"``) on the selection classes, to see whether damping the step
size damps the late-epoch swings (``probe-report`` sets it beside session 3's candidates); and w/o C.A. + EMA with
the same stopping rule on classes 0-3 (C.A.'s share vs the EMA's at gamma 0.05).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from campaign import SELECTION_CLASSES  # noqa: E402
from session2_runs import ADVPROP_EMA, NO_CA  # noqa: E402
from session3_runs import G05_CANDIDATES, _g05, _read, _report_rows, _seed1_plan  # noqa: E402

from agad.config import TrainConfig  # noqa: E402
from agad.experiments.grid import run_grid, run_name  # noqa: E402

ROOT = Path("results/fmnist")


def _ganomaly_plan(seeds=(0,)) -> list[TrainConfig]:
    return [TrainConfig(data="fashion-mnist", normal_class=k, seed=s, method="ganomaly", backbone="naive",
                        track_test_auroc=True, num_threads=1) for s in seeds for k in range(10)]


def plan() -> list[TrainConfig]:
    return _seed1_plan() + _g05(NO_CA, range(10)) + _ganomaly_plan()


def queue() -> None:
    run_grid(plan(), ROOT, jobs=1, keep_weights=False)


def _last_epoch_row(name: str, plan: list[TrainConfig]) -> None:
    """Final-epoch test AUROC per class, and in brackets its last-half spread (runs without a validation split)."""
    cells, vals = [], []
    for c in plan:
        d = ROOT / run_name(c)
        if not (d / "metrics.json").is_file():
            cells.append("–")
            continue
        hist = [json.loads(line) for line in (d / "history.jsonl").read_text().splitlines() if line.strip()]
        tail = [h["test/auroc"] for h in hist[len(hist) // 2 :]]
        vals.append(hist[-1]["test/auroc"])
        cells.append(f"{100 * vals[-1]:.1f} ({100 * (max(tail) - min(tail)):.1f})")
    mean = f"{100 * statistics.mean(vals):.1f}" if len(vals) == len(plan) else f"({len(vals)} of {len(plan)} runs)"
    print(f"| {name} | last | " + " | ".join(cells) + f" | {mean} | |")


PROBES = {"default+cosine": {**ADVPROP_EMA, "lr_schedule": "cosine"}}
# w/o C.A. but with the default's EMA (session 2's gamma-0 control), with the same stopping rule: tells how much of
# the default's lead over w/o C.A. at gamma 0.05 is the C.A. term and how much the EMA (6 classes: CPU time)
NO_CA_EMA = {**NO_CA, "ema_decay": 0.995}
CONTROL_CLASSES = [0, 1, 2, 3, 4, 5]  # 4 and 5 ran at the end of session 4


def probe() -> None:
    plan = [c for r in PROBES.values() for c in _g05(r, SELECTION_CLASSES)] + _g05(NO_CA_EMA, CONTROL_CLASSES)
    run_grid(plan, ROOT, jobs=1, keep_weights=False)


def probe_report() -> None:
    """Validation AUROC (training images only) of session 3's candidates and the probes, per selection class:
    at the last epoch and at the val-recon epoch, with the last-half spread of the validation curve."""
    print("| candidate | read at | " + " | ".join(f"c{k}" for k in SELECTION_CLASSES) + " | mean | mean val spread |")
    print("|---|---|" + "---|" * len(SELECTION_CLASSES) + "---|---|")
    for name, recipe in {**G05_CANDIDATES, **PROBES}.items():
        rows = [_read(ROOT / run_name(c)) for c in _g05(recipe, SELECTION_CLASSES)]
        if any(r is None for r in rows):
            print(f"| {name} | {sum(r is None for r in rows)} run(s) missing |")
            continue
        spread = statistics.mean(r["spread"] for r in rows)
        for rule in ("last", "val-recon"):
            cells = " | ".join(f"{100 * r[rule]:.1f}" for r in rows)
            mean = statistics.mean(r[rule] for r in rows)
            print(f"| {name} | {rule} | {cells} | {100 * mean:.1f} | {100 * spread:.1f} |")


def report() -> None:
    """Per class: test AUROC at the last epoch (last-half spread in brackets) and, for runs with a held-out
    split, at the val-recon epoch. For the report only: nothing is chosen from these numbers."""
    print("| recipe | read at | " + " | ".join(f"c{k}" for k in range(10)) + " | mean | max spread |")
    print("|---|---|" + "---|" * 10 + "---|---|")
    _report_rows("F-MNIST γ 0.05, w/o C.A. (10% held out)", _g05(NO_CA, range(10)), ROOT)
    _report_rows("F-MNIST γ 0.05, w/o C.A. + EMA (10% held out)", _g05(NO_CA_EMA, CONTROL_CLASSES), ROOT)
    _last_epoch_row("F-MNIST γ 0, GANomaly, seed 0", _ganomaly_plan())


if __name__ == "__main__":
    for stage in sys.argv[1:]:
        {"queue": queue, "report": report, "probe": probe, "probe-report": probe_report}[stage]()
