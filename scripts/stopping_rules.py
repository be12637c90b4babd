"""Replay the epoch-selection rules on recorded runs: which epoch each rule keeps, and what it scores.

    PYTHONPATH=src python scripts/stopping_rules.py results/fmnist [--gamma 0.05]

Every run with a held-out split records per epoch the held-out normal score (``val/recon``), the labelled
anomalies' mean reconstruction distance during the epoch (``G/anomaly/dist``), the validation AUROC (held-out
normal training images vs other classes' training images, ``val/auroc``) and, for the report only, the test
AUROC. Each rule's kept epoch depends on recorded values only, so replaying it is exact:

- last: the fixed budget;
- val-recon: the lowest held-out normal score (the default with labelled anomalies since session 3);
- val-ratio: the lowest held-out normal score over the labelled anomalies' distance (``select_epoch
  "val-ratio"``, session 5);
- val-auroc: the best validation AUROC -- a reference only: it needs hundreds of labelled held-out anomalies a
  user does not have.

Rules are compared on validation AUROC; the test column is printed beside it and chooses nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from agad.config import TrainConfig
from agad.pipeline import selection_score

RULES = {  # what each rule maximises over a run's epoch records
    "last": lambda h: h["epoch"],
    "val-recon": lambda h: -selection_score("val-recon", h),  # the training code's own rule
    "val-ratio": lambda h: -selection_score("val-ratio", h),
    "val-auroc": lambda h: h["val/auroc"],
}


def recipe(cfg: dict) -> str:
    parts = ["C.A." if cfg["ca"] else "w/o C.A."]
    parts += ["AdvProp"] if cfg["advprop"] else []
    parts += ["EMA"] if cfg["ema_decay"] else []
    parts += [f"M {cfg['anomaly_margin']:g}"] if cfg["anomaly_margin"] else []
    parts += ["freeze-BN"] if cfg["freeze_bn_anomalies"] else []
    parts += ["untracked BN"] if not cfg["track_bn_anomalies"] else []
    parts += ["cosine LR"] if cfg["lr_schedule"] != "constant" else []
    return " + ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--gamma", type=float, default=0.05)
    ap.add_argument("--per-class", action="store_true", help="also test AUROC per class for every recipe")
    args = ap.parse_args()
    groups: dict[str, list[dict]] = defaultdict(list)
    for cfg_file in sorted(args.root.glob("**/config.json")):
        run = cfg_file.parent
        if not (run / "metrics.json").is_file() or not (run / "history.jsonl").is_file():
            continue
        cfg = TrainConfig.from_dict(json.loads(cfg_file.read_text())["config"]).resolved().to_dict()
        if cfg["method"] != "agad" or cfg["gamma"] != args.gamma:
            continue
        hist = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines() if line.strip()]
        if not hist or "val/recon" not in hist[0] or "G/anomaly/dist" not in hist[0]:
            continue
        kept = {name: max(hist, key=key) for name, key in RULES.items()}
        groups[f"{recipe(cfg)}, seed {cfg['seed']}"].append(
            {"class": cfg["normal_class"],
             **{name: (h["val/auroc"], h.get("test/auroc", float("nan"))) for name, h in kept.items()}})
    print(f"Mean AUROC at the epoch each rule keeps (γ {args.gamma}; validation / test, test for the report only)\n")
    print("| recipe | runs | " + " | ".join(RULES) + " |")
    print("|---|---|" + "---|" * len(RULES))
    for name, runs in sorted(groups.items()):
        cells = [f"{100 * statistics.mean(r[k][0] for r in runs):.1f} / {100 * statistics.mean(r[k][1] for r in runs):.1f}"
                 for k in RULES]
        print(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    every = [r for runs in groups.values() for r in runs]
    if every:
        cells = [f"{100 * statistics.mean(r[k][0] for r in every):.1f} / {100 * statistics.mean(r[k][1] for r in every):.1f}"
                 for k in RULES]
        print(f"| all | {len(every)} | " + " | ".join(cells) + " |")
    if args.per_class:
        for name, runs in sorted(groups.items()):
            runs = sorted(runs, key=lambda r: r["class"])
            print(f"\n{name}: test AUROC per class at the epoch each rule keeps\n")
            print("| rule | " + " | ".join(f"c{r['class']}" for r in runs) + " | mean |")
            print("|---|" + "---|" * (len(runs) + 1))
            for k in RULES:
                print(f"| {k} | " + " | ".join(f"{100 * r[k][1]:.1f}" for r in runs)
                      + f" | {100 * statistics.mean(r[k][1] for r in runs):.1f} |")


if __name__ == "__main__":
    main()
