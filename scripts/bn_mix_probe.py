"""Train a saved run's configuration again and, after every epoch, score with recomputed BN statistics.

    PYTHONPATH=src python scripts/bn_mix_probe.py probe RUN_DIR [RUN_DIR ...]   # -> results/fmnist/bn_mix_probe/
    PYTHONPATH=src python scripts/bn_mix_probe.py select                        # the pre-registered rule below
    PYTHONPATH=src python scripts/bn_mix_probe.py mnist-check                   # then session 6's second gate
    PYTHONPATH=src python scripts/bn_mix_probe.py report                        # test AUROC, report only

Session 7's test of a deterministic replacement for the running statistics (``bn_recalibration.py``): do
statistics recomputed at each epoch as ``(1 - w) normal + w anomaly`` (one pass over the normal training images,
one over the labelled anomalies, both in training mode; the layers' means and variances mixed) keep the labelled
anomalies' gain (w > 0) *and* hold steady to the last epoch, where the running ones collapse? On four seed-1
runs at their kept epoch, w = 0.5 reproduced the running statistics' validation AUROC (mean 94.9 vs 95.0) and
w = 0 lost 2.1 points. Training never reads the running statistics, so one run gives every w at once and
retraces the saved run (each epoch's ``shared`` test AUROC is printed beside the saved one). Per epoch, for the
running ("shared") statistics and each w: validation AUROC and mean normal score (held-out *training* images)
and test AUROC (report only).

**Selection, fixed before the probes' later epochs were seen** (session 7, after epochs 1-3 of class 1 only):
the candidates ``default + recomputed BN (w)`` for w in {0.25, 0.5} are read, on session 3's selection classes
(0, 1, 4, 6) at gamma 0.05, seed 0, under the three rules (last epoch; val-recon and val-ratio computed from the
*recomputed* statistics' held-out normal score), and join session 6's candidates (``selection_g05_session6
.json``) under the same rule (``campaign.choose``: best mean validation AUROC, ties within 0.5 points to the
lowest mean last-half validation spread). ``w = 0`` is session 6's ``default + untracked BN`` at its kept epoch
and is not a new candidate. If a new candidate is chosen it still has to pass session 6's check on the MNIST
sample before it may become the default: the chosen w's mean validation AUROC at the val-ratio epoch over the
default's 20 runs there (gamma 0.05 and 0.2, ten digits; probed the same way) must not be below the running
statistics' by more than 0.5 points.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bn_recalibration import _bn_stats, _set_mixed  # noqa: E402
from campaign import SELECTION_CLASSES, choose  # noqa: E402

from agad.config import TrainConfig  # noqa: E402
from agad.pipeline import _split_and_dataset, auroc_of, build_networks, carve_validation, make_trainer  # noqa: E402
from agad.pipeline import selection_score  # noqa: E402
from agad.train import score_images  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5)
CANDIDATE_WEIGHTS = (0.25, 0.5)
OUT = Path("results/fmnist/bn_mix_probe")
RUNS = Path("results/fmnist/fashion-mnist/agad-naive")
SELECTION_RUNS = {0: "c0-g0.05-s0-ap-6e42ee8f", 1: "c1-g0.05-s0-ap-cbbf4a06", 4: "c4-g0.05-s0-ap-f8e4b932",
                  6: "c6-g0.05-s0-ap-dffe55f5"}  # the default's selection runs (session 3), by run_name
KEEP = ("G/anomaly/dist", "G/con", "G/adcon")


def probe(run: Path, weights=WEIGHTS) -> Path:
    out_file = OUT / f"{run.name}.jsonl"
    if out_file.is_file():
        print(f"{run}: done already ({out_file})")
        return out_file
    cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text())["config"])
    saved = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines() if line.strip()]
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    split, ds = _split_and_dataset(cfg)
    split, val = carve_validation(cfg, split, ds)
    G, D = build_networks(cfg, int(split.x_normal.shape[1]), int(split.x_normal.shape[-1]))
    trainer = make_trainer(cfg, G, D)
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_suffix(".partial")
    fh = tmp.open("w")

    def measure(G_s) -> dict[str, float]:
        s = score_images(G_s, val.x)
        return {"val_auroc": auroc_of(val.y, s), "val_recon": float(s[val.y == 0].mean()),
                "test_auroc": auroc_of(split.y_test, score_images(G_s, split.x_test))}

    def on_epoch(tr, record):
        G_s = copy.deepcopy(tr.scoring_generator)
        row = {"epoch": record["epoch"], **{k: record[k] for k in KEEP if k in record},
               "saved_test_auroc": saved[record["epoch"] - 1].get("test/auroc"), "shared": measure(G_s)}
        normal, anomaly = _bn_stats(G_s, split.x_normal), _bn_stats(G_s, split.x_anomaly)
        for w in weights:
            _set_mixed(G_s, normal, anomaly, w)
            row[f"w={w:g}"] = measure(G_s)
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        print(f"{run.name} epoch {row['epoch']}: " + " ".join(
            f"{k} val {100 * v['val_auroc']:.1f} test {100 * v['test_auroc']:.1f}" for k, v in row.items()
            if isinstance(v, dict)) + f" (saved test {100 * (row['saved_test_auroc'] or 0):.1f})", flush=True)

    trainer.fit(torch.from_numpy(split.x_normal), torch.from_numpy(split.x_anomaly), progress=False, on_epoch=on_epoch)
    fh.close()
    tmp.replace(out_file)
    return out_file


def rows_of(run_name: str) -> list[dict] | None:
    p = OUT / f"{run_name}.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.is_file() else None


def read_variant(rows: list[dict], variant: str, key: str = "val_auroc") -> dict[str, float]:
    """``key`` of one variant at the epoch each rule keeps, and its last-half spread (as session5_runs._read)."""
    hist = [{"val/recon": r[variant]["val_recon"], "G/anomaly/dist": r["G/anomaly/dist"], key: r[variant][key]}
            for r in rows]
    tail = [h[key] for h in hist[len(hist) // 2 :]]
    out = {"last": hist[-1][key], "spread": max(tail) - min(tail)}
    for rule in ("val-recon", "val-ratio"):
        out[rule] = min(hist, key=lambda h: selection_score(rule, h))[key]
    return out


def select() -> str | None:
    per_class = {k: rows_of(name) for k, name in SELECTION_RUNS.items()}
    missing = [k for k, r in per_class.items() if r is None]
    if missing:
        print(f"selection probes missing for classes {missing}")
        return None
    assert list(per_class) == list(SELECTION_CLASSES)
    summary = dict(json.loads(Path("results/fmnist/selection_g05_session6.json").read_text())["summary"])
    for w in CANDIDATE_WEIGHTS:
        reads = [read_variant(per_class[k], f"w={w:g}") for k in SELECTION_CLASSES]
        for rule in ("last", "val-recon", "val-ratio"):
            summary[f"default+recomputed-bn-w{w:g} @{rule}"] = {
                "per_class": [round(r[rule], 4) for r in reads],
                "mean_val_auroc": statistics.mean(r[rule] for r in reads),
                "mean_val_spread": statistics.mean(r["spread"] for r in reads)}
    chosen = choose(summary)
    out = {"classes": SELECTION_CLASSES, "gamma": 0.05, "summary": summary, "chosen": chosen}
    (OUT / "selection_session7.json").write_text(json.dumps(out, indent=2))
    for name, s in sorted(summary.items(), key=lambda kv: -kv[1]["mean_val_auroc"])[:10]:
        print(f"{name:40s} val AUROC {100 * s['mean_val_auroc']:.2f}  spread {100 * s['mean_val_spread']:.2f}")
    print(f"chosen: {chosen}")
    return chosen


def mnist_check(chosen: str | None) -> bool | None:
    """Session 6's second gate for a chosen ``default+recomputed-bn-w<w>`` (probing the MNIST runs as needed)."""
    if chosen is None or not chosen.startswith("default+recomputed-bn-w"):
        print(f"no new candidate chosen ({chosen}); no MNIST check")
        return None
    from session6_runs import MNIST_ROOT, _mnist
    from session2_runs import ADVPROP_EMA

    from agad.experiments.grid import run_name

    w = chosen.split("-w")[1].split(" @")[0]
    runs = [MNIST_ROOT / run_name(c) for c in _mnist(ADVPROP_EMA)]
    for run in runs:
        probe(run)
    reads = {v: statistics.mean(read_variant(rows_of(r.name), v)["val-ratio"] for r in runs)
             for v in ("shared", f"w={w}")}
    passes = reads[f"w={w}"] >= reads["shared"] - 0.005
    out = {"chosen": chosen, "mnist_val_auroc_at_val_ratio": reads, "passes": passes}
    (OUT / "gate_session7.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=1))
    return passes


def report() -> None:
    """Per class and variant: test AUROC at the last epoch and at each rule's epoch, last-half test spread, and
    the largest difference between the probe's running-statistics test AUROC and the saved run's."""
    variants = ("shared",) + tuple(f"w={w:g}" for w in WEIGHTS)
    print("| class | statistics | test AUROC, epochs 1 → 15 (every other) | last | val-ratio epoch "
          "| last-half spread |")
    print("|---|---|---|---|---|---|")
    means: dict[str, list] = {v: [] for v in variants}
    for k, name in SELECTION_RUNS.items():
        rows = rows_of(name)
        if rows is None:
            continue
        drift = max(abs(r["shared"]["test_auroc"] - r["saved_test_auroc"]) for r in rows)
        for v in variants:
            r = read_variant(rows, v, "test_auroc")
            curve = " ".join(f"{100 * row[v]['test_auroc']:.1f}" for row in rows[::2])
            label = "running (as trained)" if v == "shared" else f"recomputed, {v}"
            print(f"| {k} | {label} | {curve} | {100 * r['last']:.1f} | {100 * r['val-ratio']:.1f} | "
                  f"{100 * r['spread']:.1f} |")
            means[v].append((r["last"], r["val-ratio"], r["spread"]))
        print(f"| {k} | (probe vs saved run, running statistics: max test AUROC difference {100 * drift:.2f}) "
              "| | | | |")
    for v, m in means.items():
        if m:
            print(f"{v}: mean last {100 * statistics.mean(a for a, _, _ in m):.1f}, at val-ratio "
                  f"{100 * statistics.mean(b for _, b, _ in m):.1f}, spread max {100 * max(c for _, _, c in m):.1f}, "
                  f"< 2 on {sum(c < 0.02 for _, _, c in m)}/{len(m)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("probe", "select", "mnist-check", "report"))
    ap.add_argument("runs", nargs="*", type=Path)
    args = ap.parse_args()
    if args.command == "probe":
        for run in args.runs or [RUNS / n for n in SELECTION_RUNS.values()]:
            probe(run)
    elif args.command == "select":
        select()
    elif args.command == "report":
        report()
    else:
        mnist_check(select())


if __name__ == "__main__":
    main()
