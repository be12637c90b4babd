"""CPU runs of the third session: a validation selection for labelled anomalies (issue 7, gamma 0.05).

    PYTHONPATH=src python scripts/session3_runs.py select-g05 after-select &   # two workers share the queue
    PYTHONPATH=src python scripts/session3_runs.py select-g05 after-select &
    PYTHONPATH=src python scripts/session3_runs.py choose-g05    # reads validation AUROC only
    PYTHONPATH=src python scripts/session3_runs.py report-g05    # test AUROC tables (report only)

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

import fcntl
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from campaign import SELECTION_CLASSES, choose  # noqa: E402
from session2_runs import ADVPROP_EMA, NO_CA, cfgs  # noqa: E402

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


def _read(run_dir: Path, key: str = "val/auroc") -> dict[str, float] | None:
    """``key`` (validation or test AUROC) at the last epoch and at the val-recon epoch, and its last-half
    spread, from a complete run's history; None if the run is not complete."""
    p = run_dir / "history.jsonl"
    if not (run_dir / "metrics.json").is_file() or not p.is_file():
        return None
    hist = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    tail = [h[key] for h in hist[len(hist) // 2 :]]
    kept = min(hist, key=lambda h: h["val/recon"])
    return {"last": hist[-1][key], "val-recon": kept[key], "spread": max(tail) - min(tail)}


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


def _report_rows(name: str, plan: list, root: Path) -> None:
    runs = {}
    for c in plan:
        r = _read(root / run_name(c), "test/auroc")
        if r is not None:
            runs[c.normal_class] = (r["last"], r["val-recon"], r["spread"])
    for i, rule in enumerate(("last", "val-recon")):
        cells = [f"{100 * runs[k][i]:.1f}" + (f" ({100 * runs[k][2]:.1f})" if i == 0 else "") if k in runs else "–"
                 for k in range(10)]
        vals = [runs[k][i] for k in runs]
        if not vals:
            continue
        mean = f"{100 * statistics.mean(vals):.1f}" if len(vals) == 10 else f"({100 * statistics.mean(vals):.1f}, {len(vals)} classes)"
        spread = f"{100 * max(r[2] for r in runs.values()):.1f}" if i == 0 else ""
        print(f"| {name} | {rule} | " + " | ".join(cells) + f" | {mean} | {spread} |")


def report_g05() -> None:
    """Test AUROC of the runs with a validation split (for the report; nothing is chosen from it).

    Per class: the last epoch's and the val-recon epoch's test AUROC (from the same run), and in brackets the
    spread (max - min of test AUROC over the last half of epochs). On Fashion-MNIST classes 0, 1, 4, 6 took part
    in the selection (on validation AUROC).
    """
    print("| candidate | read at | " + " | ".join(f"c{k}" for k in range(10)) + " | mean | max spread |")
    print("|---|---|" + "---|" * 10 + "---|---|")
    for name, recipe in G05_CANDIDATES.items():
        _report_rows(f"F-MNIST γ 0.05, {name}", _g05(recipe, range(10)), ROOT)
    for g in (0.05, 0.2):
        plan = cfgs("mnist-sample", ADVPROP_EMA, range(10), gammas=[g], val_fraction=0.1, select_epoch="val-recon")
        _report_rows(f"MNIST sample γ {g}, default", plan, Path("results/mnist-sample"))


def test_g05() -> None:
    """The chosen candidate on the six classes that took no part in the selection (after choose-g05)."""
    chosen = json.loads((ROOT / "selection_g05.json").read_text())["chosen"].split(" @")[0]
    rest = [k for k in range(10) if k not in SELECTION_CLASSES]
    run_grid(_g05(G05_CANDIDATES[chosen], rest), ROOT, jobs=1, keep_weights=False)


def seed1_g0() -> None:
    """A second seed at gamma 0, default and w/o C.A. in pairs, class by class (as far as time allows)."""
    run_grid(_seed1_plan(), ROOT, jobs=1, keep_weights=False)


def mnist_g() -> None:
    """The new gamma > 0 default (10% held out, val-recon epoch) on the MNIST sample: a check on other data."""
    plan = cfgs("mnist-sample", ADVPROP_EMA, range(10), gammas=[0.05, 0.2], val_fraction=0.1,
                select_epoch="val-recon")
    run_grid(plan, "results/mnist-sample", jobs=1, keep_weights=False)


def _seed1_plan() -> list:
    return [c for k in range(10) for r in (ADVPROP_EMA, NO_CA) for c in cfgs("fashion-mnist", r, [k], seeds=[1])]


def _busy(run_dir: Path) -> bool:
    """Whether another worker holds the run's lock (grid._run_lock: an flock, released when its holder dies)."""
    lock = run_dir.with_name(f".{run_dir.name}.lock")
    if not lock.exists():
        return False
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def after_select() -> None:
    """A worker's queue once its selection runs are done: seed-1 runs while the last selection run finishes,
    then the chosen candidate on the other six classes, then the rest of seed 1."""
    while True:
        if not (ROOT / "selection_g05.json").is_file():
            choose_g05()  # writes the file once every selection run is complete
        if (ROOT / "selection_g05.json").is_file():
            break
        free = [c for c in _seed1_plan() if not (ROOT / run_name(c) / "metrics.json").is_file()
                and not _busy(ROOT / run_name(c))]
        if not free:
            break
        run_grid(free[:1], ROOT, jobs=1, keep_weights=False)
    test_g05()
    seed1_g0()


if __name__ == "__main__":
    for stage in sys.argv[1:]:
        {"select-g05": select_g05, "choose-g05": choose_g05, "test-g05": test_g05, "report-g05": report_g05, "seed1-g0": seed1_g0,
         "after-select": after_select, "mnist-g": mnist_g}[stage]()
