"""`agad bench TABLE ...` and `agad figures ...`: the reproduction harness on the command line.

    agad bench table2 --data fashion-mnist --seeds 0 1 2 --epochs 15 --jobs 12 --out results/fmnist
    agad bench table2 --data fashion-mnist --seeds 0 1 2 --epochs 15 --out results/fmnist --table-only
    agad figures boxplot results/fmnist --gammas 0.05 0.2 --out fig4.png

Heavy modules (torch, the trainer) are imported only when a command runs, so
`agad --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import shlex
import typing
from pathlib import Path
from typing import Any

from ..config import BACKBONES, METHODS, TrainConfig
from ..errors import AgadError
from .grid import TABLES

TABLE_HELP = {
    "table1": "per-class AUROC at gamma 0 (paper Table 1)",
    "table2": "limited supervision, gamma 0/.01/.05/.1/.2 (Table 2)",
    "table3": "real-world folder dataset, 128x128, gamma 0/.01/.03/.05/.1, with and without C.A. (Table 3)",
    "table4": "C.A. ablation: with and without, gamma 0/.01/.03/.05/.1, UNet (Table 4)",
    "table5": "BN ablation: advprop x freeze_bn_anomalies over gammas (Table 5)",
    "table9": "backbones naive / unet / unetpp at gamma 0 (Table 9)",
    "baselines": "AGAD with and without C.A., GANomaly, Skip-GANomaly at gamma 0",
}
PAPER_DATASETS = ("mnist", "fashion-mnist", "cifar10", "cifar100", "alzheimer", "chest-xray", "lung", "oct")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


# ------------------------------------------------------------------ --set KEY=VALUE
def parse_value(key: str, text: str) -> Any:
    """Parse ``text`` by the type of the TrainConfig field ``key`` (bool, int, float, str, optional, dict as JSON)."""
    hints = typing.get_type_hints(TrainConfig)
    if key not in hints:
        raise AgadError(f"--set {key}: unknown config field; valid fields are: {', '.join(TrainConfig.field_names())}")
    tp = hints[key]
    args = typing.get_args(tp)
    if type(None) in args:
        if text.strip().lower() in ("none", "null", ""):
            return None
        tp = next(a for a in args if a is not type(None))
    origin = typing.get_origin(tp) or tp
    try:
        if tp is bool:
            low = text.strip().lower()
            if low in _TRUE | _FALSE:
                return low in _TRUE
            raise ValueError
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
        if origin is dict:
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError
            return value
        return text
    except (ValueError, json.JSONDecodeError):
        kind = {bool: "true or false", int: "an integer", float: "a number"}.get(tp, "a JSON object")
        raise AgadError(f"--set {key}={text}: the value must be {kind}") from None


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``["ema_decay=0.999", "detach-pseudo=true"]`` -> ``{"ema_decay": 0.999, "detach_pseudo": True}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise AgadError(f"--set {item}: expected KEY=VALUE, e.g. --set ema_decay=0.999")
        key, text = item.split("=", 1)
        key = key.strip().replace("-", "_")
        out[key] = parse_value(key, text)
    return out


# ------------------------------------------------------------------ bench
def _bench_command(args: argparse.Namespace) -> str:
    """The command as an exact, re-runnable line (also when called through main(argv))."""
    parts = ["agad", "bench", args.bench_table, "--data", args.data]
    for flag, value in (("--classes", args.classes), ("--seeds", args.seeds), ("--gammas", args.gammas),
                        ("--backbone", args.backbone)):
        if value is not None:
            parts += [flag, *map(str, value)]
    for flag, value in (("--method", args.method), ("--epochs", args.epochs), ("--jobs", args.jobs),
                        ("--time-budget", args.time_budget), ("--run-timeout", args.run_timeout),
                        ("--paper-dataset", args.paper_dataset)):
        if value is not None:
            parts += [flag, str(value)]
    for item in args.set or []:
        parts += ["--set", item]
    parts += [flag for flag, on in (("--keep-weights", args.keep_weights), ("--table-only", args.table_only),
                                    ("--in-process", args.in_process)) if on]
    parts += ["--out", args.out]
    return shlex.join(parts)


def bench(table: str, data: str, out: str | Path, *, classes=None, seeds=None, gammas=None, backbone=None,
          method: str | None = None, epochs: int | None = None, overrides: dict[str, Any] | None = None,
          jobs: int = 2, time_budget_s: float | None = None, run_timeout_s: float | None = None,
          keep_weights: bool = False, table_only: bool = False, in_process: bool = False,
          paper_dataset: str | None = None, command: str | None = None, log=print) -> dict[str, Any]:
    """What `agad bench TABLE` does, callable from Python: build the grid, run it, rebuild OUT/TABLE.md/.csv.

    >>> bench("table2", "fashion-mnist", "results/fmnist", seeds=[0, 1, 2], epochs=15, jobs=12,
    ...       time_budget_s=3 * 3600)                                   # doctest: +SKIP
    """
    from .grid import grid_for, run_grid, run_name
    from .tables import write_table

    if jobs < 1:
        raise AgadError(f"--jobs must be at least 1; got {jobs}")
    cfgs = grid_for(table, data, classes=classes, seeds=seeds if seeds is not None else (0,), gammas=gammas,
                    backbone=backbone, epochs=epochs, method=method, base_overrides=overrides)
    root = Path(out)
    results: list[dict[str, Any]] = []
    if not table_only:
        results = run_grid(cfgs, root, jobs=jobs, keep_weights=keep_weights, log=log, time_budget_s=time_budget_s,
                           in_process=in_process, run_timeout_s=run_timeout_s)
    if command is None:
        command = f"python: agad.experiments.cli.bench({table!r}, {data!r}, {str(out)!r}, ...)"
    md, csv_path = write_table(table, [root / run_name(c) for c in cfgs], root, command=command, dataset=paper_dataset)
    return {"configs": cfgs, "results": results, "markdown": md, "csv": csv_path}


def cmd_bench(args: argparse.Namespace) -> int:
    r = bench(args.bench_table, args.data, args.out, classes=args.classes, seeds=args.seeds, gammas=args.gammas,
              backbone=args.backbone, method=args.method, epochs=args.epochs, overrides=parse_sets(args.set),
              jobs=args.jobs, time_budget_s=args.time_budget, run_timeout_s=args.run_timeout,
              keep_weights=args.keep_weights, table_only=args.table_only, in_process=args.in_process,
              paper_dataset=args.paper_dataset, command=_bench_command(args))
    failed = sum(x["status"] == "failed" for x in r["results"])
    print(f"{args.bench_table}: {r['markdown']} and {r['csv']} rebuilt from the run artefacts"
          + (f"; {failed} run(s) failed, see {Path(args.out) / 'failures.jsonl'}" if failed else ""))
    return 0


def cmd_archive(args: argparse.Namespace) -> int:
    from .archive import archive_runs

    n = archive_runs(args.out, args.to)
    print(f"archive: {n['copied']} run(s) copied to {args.to}, {n['unchanged']} already there"
          + (f", {n['skipped']} skipped (no config.json)" if n["skipped"] else ""))
    return 0


def add_bench_args(p: argparse.ArgumentParser, table: str) -> None:
    p.add_argument("--data", required=True,
                   help="dataset name or folder" + (" with normal/ and abnormal/" if table == "table3" else ""))
    p.add_argument("--classes", type=int, nargs="+", default=None, help="normal classes (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: 0); seed-major order")
    p.add_argument("--gammas", type=float, nargs="+", default=None, help="override the table's gammas")
    p.add_argument("--backbone", nargs="+", choices=BACKBONES, default=None,
                   help="generator backbone(s); several make an extra row axis")
    p.add_argument("--method", choices=METHODS, default=None, help="agad (default) or a baseline")
    p.add_argument("--epochs", type=int, default=None, help="training budget per run (default: the config's)")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time, each in its own process (default 2)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any TrainConfig field, e.g. --set ema_decay=0.999 --set detach_pseudo=true (repeatable)")
    p.add_argument("--time-budget", dest="time_budget", type=float, default=None, metavar="SECONDS",
                   help="launch no new run after this many seconds (runs in flight finish)")
    p.add_argument("--run-timeout", dest="run_timeout", type=float, default=None, metavar="SECONDS",
                   help="kill (and record as failed) a single run that takes longer")
    p.add_argument("--keep-weights", action="store_true", help="keep *.safetensors (needed for `agad figures recon`)")
    p.add_argument("--table-only", action="store_true", help="run nothing; rebuild the table from what exists")
    p.add_argument("--paper-dataset", choices=PAPER_DATASETS, default=None,
                   help="which of the paper's datasets to compare with (default: guessed from --data)")
    p.add_argument("--in-process", action="store_true",
                   help="train in this process (debugging; a crash stops the grid)")
    p.add_argument("--out", required=True, help="grid folder: runs, failures.jsonl, TABLE.md and TABLE.csv")


# ------------------------------------------------------------------ figures
def _where(args: argparse.Namespace) -> dict[str, Any] | None:
    return parse_sets(args.where) if getattr(args, "where", None) else None


def cmd_figures(args: argparse.Namespace) -> int:
    from . import figures as F

    runs = F.expand_runs(args.runs)
    if args.figure == "recon":
        out = F.recon_figure(runs, args.out, per_group=args.per_group, device=args.device)
    elif args.figure == "boxplot":
        out = F.score_boxplot(runs, args.out, gammas=args.gammas, where=_where(args))
    elif args.figure == "auroc-curves":
        out = F.auroc_curves(runs, args.out, where=_where(args))
    else:
        out = F.loss_curves(runs, args.out, terms=args.terms, where=_where(args))
    print(f"figure written to {out}")
    return 0


def register(subparsers) -> None:
    """Add `agad bench` (a sub-command per table, plus `speed` when agad.experiments.speed exists) and `agad figures`."""
    bench = subparsers.add_parser("bench", help="reproduce a paper table: run its grid (resumable), rebuild the table",
                                  description="Run the grid of one paper table (skipping complete runs), then rebuild "
                                              "OUT/TABLE.md and OUT/TABLE.csv from the run artefacts.")
    bsub = bench.add_subparsers(dest="bench_command", metavar="TABLE", parser_class=type(bench))
    bsub.required = True
    for table in TABLES:
        p = bsub.add_parser(table, help=TABLE_HELP[table], description=TABLE_HELP[table])
        add_bench_args(p, table)
        p.set_defaults(func=cmd_bench, bench_table=table)
    try:
        from .speed import add_speed_parser
    except ModuleNotFoundError as exc:
        if exc.name != "agad.experiments.speed":
            raise
    else:
        add_speed_parser(bsub)
    help_ = ("copy what the tables are built from (config.json, history.jsonl, metrics.json of each complete run) "
             "to a small folder that can be committed; `--table-only --out ARCHIVE` rebuilds the tables from it")
    p = bsub.add_parser("archive", help=help_, description=help_)
    p.add_argument("--out", required=True, help="the grid folder (an `agad bench ... --out` folder)")
    p.add_argument("--to", required=True, help="the archive folder (same layout; created if missing)")
    p.set_defaults(func=cmd_archive)

    figs = subparsers.add_parser("figures", help="paper figures from run directories",
                                 description="Draw the paper's figures from saved runs (PNG).")
    fsub = figs.add_subparsers(dest="figure", metavar="FIGURE", parser_class=type(figs))
    fsub.required = True

    def fig_parser(name: str, help_: str, runs_help: str) -> argparse.ArgumentParser:
        p = fsub.add_parser(name, help=help_, description=help_)
        p.add_argument("runs", nargs="+", help=runs_help)
        p.add_argument("--out", required=True, help="PNG file to write")
        p.set_defaults(func=cmd_figures)
        return p

    p = fig_parser("recon", "Fig. 2: inputs and reconstructions of 8 normal and 8 anomalous test images",
                   "run directories with weights, e.g. an AGAD run then a GANomaly run on the same class")
    p.add_argument("--per-group", type=int, default=8, help="images per group (default 8)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    where_help = "keep only runs whose config has KEY=VALUE (repeatable)"
    p = fig_parser("boxplot", "Fig. 4: class-wise normal vs anomalous scores after Tukey's fences, one panel per gamma",
                   "run directories, or folders holding them")
    p.add_argument("--gammas", type=float, nargs="+", default=None, help="panels to draw, e.g. 0.05 0.2")
    p.add_argument("--where", action="append", metavar="KEY=VALUE", help=where_help)
    p = fig_parser("auroc-curves", "Fig. 6: test AUROC per epoch per class, one panel per backbone (diagnostic only)",
                   "runs trained with --set track_test_auroc=true")
    p.add_argument("--where", action="append", metavar="KEY=VALUE", help=where_help)
    p = fig_parser("losses", "every loss term per epoch, one line per run", "run directories, or folders holding them")
    p.add_argument("--terms", nargs="+", default=None,
                   help="loss terms (default G/adv G/con G/adcon G/lat D/total ...)")
    p.add_argument("--where", action="append", metavar="KEY=VALUE", help=where_help)
