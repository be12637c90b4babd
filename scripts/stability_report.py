"""Issue 7's table from saved run artefacts: final-epoch test AUROC and epoch-to-epoch spread per recipe.

The spread is max - min of the per-epoch test AUROC over the last half of
training; it is computed from the diagnostic ``test/auroc`` that the runs
logged and is never used to choose anything. Runs with a validation split are left out: since session 3 the
default at gamma > 0 holds one out (``scripts/session3_runs.py report-g05`` reports those), so the
"AdvProp + EMA" rows at gamma > 0 are session 2's last-epoch runs on all normal images.

    PYTHONPATH=src python scripts/stability_report.py results/fmnist
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from agad.config import TrainConfig
from agad.experiments.grid import RUNTIME_FIELDS
from agad.experiments.stats import last_half_spread

RECIPES = {
    "paper-literal": lambda c: c["ca"] and not c["detach_pseudo"] and c["ema_decay"] == 0 and not c["advprop"],
    "session-1 default (detach + EMA)": lambda c: (c["ca"] and c["detach_pseudo"] and c["ema_decay"] > 0
                                                   and not c["advprop"]),
    "AdvProp + EMA (default at gamma 0)": lambda c: c["ca"] and not c["detach_pseudo"] and c["ema_decay"] > 0 and c["advprop"],
    "w/o C.A.": lambda c: not c["ca"] and not c["detach_pseudo"] and c["ema_decay"] == 0 and not c["advprop"],
    "w/o C.A. + EMA (control)": lambda c: not c["ca"] and c["ema_decay"] > 0,
}
# What the recipes above vary, what tells runs apart, and what only says how a run was executed; every
# other field must have its default, so that e.g. an --anomaly-margin run is not counted as a recipe.
RECIPE_FIELDS = {"ca", "detach_pseudo", "ema_decay", "advprop"}
RUN_FIELDS = {"data", "normal_class", "gamma", "seed", "track_test_auroc", "precision", "val_fraction",
              "method", "backbone"}
DEFAULTS = TrainConfig().resolved().to_dict()


def load_runs(root: Path):
    for metrics in sorted(root.rglob("metrics.json")):
        run = metrics.parent
        cfg = json.loads((run / "config.json").read_text())["config"]
        if cfg["val_fraction"] > 0 or cfg["method"] != "agad" or cfg["backbone"] != "naive" or not cfg["track_test_auroc"]:
            continue  # selection runs and other tables are reported elsewhere
        if cfg.get("precision", "auto") == "fp32":
            continue  # the bf16/fp32 parity check (docs/PERFORMANCE.md)
        other = {k for k, v in cfg.items() if k not in RECIPE_FIELDS | RUN_FIELDS | RUNTIME_FIELDS
                 and k in DEFAULTS and v != DEFAULTS[k]}
        if other:
            continue  # another option is on: not one of these recipes
        hist = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines() if line.strip()]
        curve = [h["test/auroc"] for h in hist if "test/auroc" in h]
        yield cfg, json.loads(metrics.read_text())["auroc"], last_half_spread(curve)


def collect(root: Path) -> dict[tuple[str, float, int, int], tuple[float, float]]:
    """(recipe, gamma, class, seed) -> (final test AUROC %, spread %)."""
    runs = {}
    for cfg, auroc, spread in load_runs(root):
        for name, match in RECIPES.items():
            if match(cfg):
                key = (name, cfg["gamma"], cfg["normal_class"], cfg["seed"])
                if key in runs:
                    raise SystemExit(f"two runs for {key}: tell them apart in RECIPES or RUN_FIELDS")
                runs[key] = (100 * auroc, 100 * spread)
    return runs


def main(root: Path) -> str:
    runs = collect(root)
    cells: dict[tuple[str, float, int], list[tuple[float, float]]] = defaultdict(list)
    for (name, g, c, _), v in runs.items():
        cells[(name, g, c)].append(v)
    gammas = sorted({g for _, g, _ in cells})
    classes = sorted({c for _, _, c in cells})
    out = ["| recipe | gamma | " + " | ".join(f"c{c}" for c in classes) + " | mean | max spread | seeds |",
           "|---|---|" + "---|" * len(classes) + "---|---|---|"]
    for g in gammas:
        for name in RECIPES:
            vals, spreads, seeds = [], [], set()
            row = []
            for c in classes:
                cell = cells.get((name, g, c), [])
                if not cell:
                    row.append("–")
                    continue
                a = statistics.mean(r[0] for r in cell)
                s = max(r[1] for r in cell)
                vals.append(a)
                spreads.append(s)
                seeds.add(len(cell))
                row.append(f"{a:.1f} ({s:.1f})")
            if not vals:
                continue
            mean = f"{statistics.mean(vals):.1f}" if len(vals) == len(classes) else f"({statistics.mean(vals):.1f}, partial)"
            out.append(f"| {name} | {g:g} | " + " | ".join(row) + f" | {mean} | {max(spreads):.1f} | {'/'.join(map(str, sorted(seeds)))} |")
    out += ["", "Per seed (mean over the classes that ran; classes with spread < 2 points):", "",
            "| recipe | gamma | seed | classes | mean AUROC | classes with spread < 2 |", "|---|---|---|---|---|---|"]
    for g in gammas:
        for name in RECIPES:
            for seed in sorted({k[3] for k in runs if k[0] == name and k[1] == g}):
                v = [runs[k] for k in runs if k[:2] == (name, g) and k[3] == seed]
                out.append(f"| {name} | {g:g} | {seed} | {len(v)} | {statistics.mean(a for a, _ in v):.1f} | "
                           f"{sum(s < 2 for _, s in v)}/{len(v)} |")
    ref = "AdvProp + EMA (default at gamma 0)"
    out += ["", f"Paired with {ref} on the same class and seed (its AUROC minus the other's):", "",
            "| other recipe | gamma | pairs | mean difference | pairs where the default is higher |", "|---|---|---|---|---|"]
    for g in gammas:
        for name in RECIPES:
            if name == ref:
                continue
            d = [runs[(ref, g, c, s)][0] - runs[k][0] for k in runs if k[:2] == (name, g)
                 for c, s in [k[2:]] if (ref, g, c, s) in runs]
            if d:
                out.append(f"| {name} | {g:g} | {len(d)} | {statistics.mean(d):+.1f} | {sum(x > 0 for x in d)}/{len(d)} |")
    return "\n".join(out)


if __name__ == "__main__":
    print(main(Path(sys.argv[1])))
