"""Validation tables for a selection: read from each run's config.json and history.jsonl only, never a test score.

A selection compares candidate recipes on validation images carved from the training split
(``val_fraction``). :func:`validation_table` groups runs by what distinguishes their configs, and per
candidate gives the validation AUROC at the kept epoch (the last one unless a held-out rule keeps another)
of every (setting, seed) run, the largest seed gap of a setting, the lowest run, the largest last-half
spread, and whether the candidate meets a steadiness rule: no run below ``floor``, every setting's seeds
within ``max_gap`` points and, when ``max_spread`` is given, every run's last-half spread below it. A
setting is a normal class, with its gamma and known_classes where the runs vary them (the draw of labelled
anomalies).

>>> rows = [{"candidate": "A", "normal_class": 0, "seed": 0, "val": 90.0, "spread": 1.0},
...         {"candidate": "A", "normal_class": 0, "seed": 1, "val": 93.0, "spread": 2.5}]
>>> summarise(rows, floor=80, max_gap=4)[0]["eligible"], summarise(rows, floor=80, max_gap=4, max_spread=2)[0]["eligible"]
(True, False)
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from ..config import RECORD_DEFAULTS, REMOVED_OPTIONS, RUNTIME_FIELDS, TrainConfig
from ..errors import AgadError
from ..rundir import CONFIG_FILE, HISTORY_FILE, atomic_write_text
from .stats import last_half_spread

STEADY_SPREAD = 2.0  # a run whose last-half spread is below this counts as steady
SETTING_FIELDS = ("gamma", "known_classes")  # with the normal class: the setting a run measures
IDENTITY_SKIP = RUNTIME_FIELDS | {"normal_class", "seed", "extra", "data", *SETTING_FIELDS}


def _runs(roots: Iterable[str | Path]) -> list[Path]:
    found = []
    for root in roots:
        found += sorted(p.parent for p in Path(root).rglob(CONFIG_FILE) if (p.parent / HISTORY_FILE).is_file())
    if not found:
        raise AgadError(f"no run with {CONFIG_FILE} and {HISTORY_FILE} under {', '.join(map(str, roots))}")
    return found


def _labels(cfgs: list[dict[str, Any]]) -> list[str]:
    """Each run's candidate: the options that vary between the runs, where this run leaves the default."""
    # a record without an option (older, or written after it went) had its default (or its kept value)
    base = {**REMOVED_OPTIONS, **TrainConfig().resolved().to_dict()}
    cfgs = [{**base, **RECORD_DEFAULTS, **c} for c in cfgs]
    keys = {k for c in cfgs for k in c if k not in IDENTITY_SKIP}
    varying = sorted(k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in cfgs}) > 1)
    labels = []
    for c in cfgs:
        defaults = _defaults_at(c, base)  # what the default resolves to with this run's labelled anomalies
        labels.append(", ".join(f"{k}={c.get(k)}" for k in varying if c.get(k) != defaults.get(k)) or "default")
    return labels


def _defaults_at(cfg: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    try:
        return {**base, **TrainConfig(gamma=cfg["gamma"], method=cfg["method"]).resolved().to_dict()}
    except (AgadError, KeyError, TypeError):
        return base


def validation_rows(roots: Iterable[str | Path]) -> list[dict[str, Any]]:
    """One row per run: its candidate label, class, seed, last-epoch validation AUROC (%) and its spread."""
    runs = _runs(roots)
    cfgs = [json.loads((run / CONFIG_FILE).read_text())["config"] for run in runs]
    varied = [k for k in SETTING_FIELDS if len({json.dumps(c.get(k)) for c in cfgs}) > 1]
    rows = []
    for run, cfg, label in zip(runs, cfgs, _labels(cfgs)):
        history = [json.loads(line) for line in (run / HISTORY_FILE).read_text().splitlines() if line.strip()]
        curve = [100 * h["val/auroc"] for h in history if h.get("val/auroc") is not None]
        if not curve or len(curve) != len(history):
            raise AgadError(f"{run}: no validation AUROC in {HISTORY_FILE} for every epoch; the run needs "
                            "val_fraction > 0")
        kept = int(json.loads((run / CONFIG_FILE).read_text()).get("kept_epoch") or len(history))
        setting = cfg["normal_class"] if not varied else " ".join(
            [str(cfg["normal_class"])] + [f"{k}={cfg.get(k)}" for k in varied])
        rows.append({"candidate": label, "normal_class": setting, "seed": cfg["seed"], "val": curve[kept - 1],
                     "last": curve[-1], "kept": kept, "spread": last_half_spread(curve),
                     "steps": history[-1].get("steps"), "run": run.name})
    return rows


def summarise(rows: list[dict[str, Any]], *, floor: float, max_gap: float,
              max_spread: float | None = None) -> list[dict[str, Any]]:
    """Per candidate: mean, lowest run, largest per-setting seed gap, largest last-half spread, and whether
    the steadiness rule holds."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[r["candidate"]].append(r)
    out = []
    for name, rs in by.items():
        per_class: dict[Any, list[float]] = defaultdict(list)
        for r in rs:
            per_class[r["normal_class"]].append(r["val"])
        gap = max((max(v) - min(v)) for v in per_class.values())
        low = min(r["val"] for r in rs)
        spread = max(r["spread"] for r in rs)
        steady = max_spread is None or spread < max_spread
        n_steady = sum(r["spread"] < STEADY_SPREAD for r in rs)
        out.append({"candidate": name, "runs": len(rs), "mean": sum(r["val"] for r in rs) / len(rs), "lowest": low,
                    "largest_seed_gap": gap, "largest_spread": spread, "steady_runs": n_steady,
                    "eligible": low >= floor and gap <= max_gap and steady,
                    "per_class": {c: v for c, v in sorted(per_class.items(), key=lambda kv: str(kv[0]))}})
    return sorted(out, key=lambda s: -s["mean"])


def validation_table(roots: Iterable[str | Path], out: str | Path, *, command: str, floor: float = 80.0,
                     max_gap: float = 4.0, max_spread: float | None = None) -> Path:
    """Write the validation table of the runs under ``roots`` (markdown) and return its path."""
    rows = validation_rows(roots)
    summary = summarise(rows, floor=floor, max_gap=max_gap, max_spread=max_spread)
    rule = f"no run below {floor:g} and every setting's seeds within {max_gap:g} points"
    if max_spread is not None:
        rule += f", and every run's last-half spread below {max_spread:g}"
    lines = [f"<!-- {command} -->", "",
             "Validation AUROC (%) at the kept epoch (the last one unless a held-out rule keeps another), from each "
             f"run's history (no test score read). Eligible: {rule}.", "",
             f"| candidate | runs | mean | lowest | largest seed gap | largest spread | spread < {STEADY_SPREAD:g} | "
             "eligible | per setting (seeds) |", "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        per = "; ".join(f"{c}: {' / '.join(f'{v:.1f}' for v in vs)}" for c, vs in s["per_class"].items())
        lines.append(f"| {s['candidate']} | {s['runs']} | {s['mean']:.2f} | {s['lowest']:.1f} | "
                     f"{s['largest_seed_gap']:.1f} | {s['largest_spread']:.1f} | {s['steady_runs']} / {s['runs']} | "
                     f"{'yes' if s['eligible'] else 'no'} "
                     f"| {per} |")
    lines += ["", "| run | candidate | setting | seed | steps | kept epoch | validation AUROC (kept) | "
              "at the last epoch | last-half spread |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["candidate"], str(r["normal_class"]), r["seed"])):
        lines.append(f"| {r['run']} | {r['candidate']} | {r['normal_class']} | {r['seed']} | {r['steps']} | "
                     f"{r['kept']} | {r['val']:.1f} | {r['last']:.1f} | {r['spread']:.1f} |")
    path = Path(out)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
