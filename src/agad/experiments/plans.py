"""Plans: one TOML file per reproduced table, run by one function.

A plan says which bench table to build (``table1`` ... ``table9``, ``baselines``), on which data, over which
classes, seeds, gammas, backbones, methods and recipes (:mod:`agad.recipes`), with which extra TrainConfig
values (``[set]``), and where its runs and its table live::

    description = "Fashion-MNIST Table 4 at gamma 0.03: with and without C.A."
    table = "table4"
    data = "fashion-mnist"
    gammas = [0.03]
    backbone = "naive"
    recipes = ["default"]
    grid = "results/fmnist"              # the runs (default results/<plan name>)
    archive = "docs/runs/fmnist"         # what the table is rebuilt from (default docs/runs/<plan name>)
    output = "docs/results/fmnist_table4_gamma003.md"   # and .csv beside it (default docs/results/<plan name>.md)
    references = ["plans/fmnist-references-logreg.toml"]  # their archived runs join this table as rows

    [set]
    track_test_auroc = true

Keys: ``description``, ``table`` and ``data`` (required); ``classes`` (default: every class), ``seeds``
(default ``[0]``), ``gammas`` (default: the table's), ``backbone`` and ``method`` (a name or a list; default:
the table's backbone, agad), ``recipes`` (default ``["default"]``), ``set``, ``grid``, ``archive``, ``output``,
``paper_dataset``, ``references``. Relative paths are taken from the current directory (run plans from the
repository root).

The configs are those of :func:`agad.experiments.grid.grid_for`, so the run names match runs made with
``agad bench TABLE ...`` and the archives they went into. :func:`run_plan` runs whatever is complete neither
in the grid nor in the archive, copies the plan's complete runs into the archive and rebuilds the table from
the archive alone, so a table is always one a fresh checkout can rebuild.

``references`` names other plans (same table and data, no references of their own) whose runs are shown in
this plan's table, read from their own archives: the bar a method must clear sits beside it, while each
reference keeps its own seeds and is run by its own plan, never by this one.
"""

from __future__ import annotations

import difflib
import json
import os
import shlex
import shutil
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..config import BACKBONES, METHODS, TrainConfig
from ..errors import AgadError
from ..recipes import RECIPES, check_overrides, recipe
from .paper import PAPER_DATASETS
from .grid import FAILURES_FILE, TABLES, grid_for, is_complete, is_dataset_name, run_grid, run_name

# Fields that a plan sets through its own keys, never through [set].
GRID_KEYS = {"data": "data", "normal_class": "classes", "seed": "seeds", "gamma": "gammas", "method": "method",
             "backbone": "backbone"}
PLAN_KEYS = ("description", "table", "data", "classes", "seeds", "gammas", "backbone", "method", "recipes", "set",
             "grid", "archive", "output", "paper_dataset", "references")
REQUIRED_KEYS = ("description", "table", "data")
# The paper's datasets, as `agad bench --paper-dataset` names them (agad.experiments.paper.paper_dataset).


@dataclass(frozen=True)
class Plan:
    """A validated plan file (see the module docstring); paths as written in the file.

    ``backbones``, ``methods`` and ``overrides`` hold the file's ``backbone``, ``method`` and ``[set]``;
    ``name`` is the file's stem.
    """

    path: Path
    name: str
    description: str
    table: str
    data: str
    classes: tuple[int, ...] | None
    seeds: tuple[int, ...]
    gammas: tuple[float, ...] | None
    backbones: tuple[str, ...] | None
    methods: tuple[str, ...]
    recipes: tuple[str, ...]
    overrides: dict[str, Any]
    grid: Path
    archive: Path
    output: Path  # the table's .md; its .csv lies beside it
    paper_dataset: str | None = None
    references: tuple["Plan", ...] = ()  # plans whose archived runs join this table (never run by it)

    @property
    def csv(self) -> Path:
        return self.output.with_suffix(".csv")


# ------------------------------------------------------------------ reading
class _Reader:
    """Typed access to a plan's keys; every error is one line naming the file and the key."""

    def __init__(self, path: Path, values: dict[str, Any]) -> None:
        self.path, self.values = path, values

    def fail(self, key: str, message: str) -> AgadError:
        return AgadError(f"{self.path}: {key}: {message}")

    def string(self, key: str, default: str | None = None, choices: tuple[str, ...] | None = None) -> str | None:
        value = self.values.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string; got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(key, f"unknown value {value!r}; valid values are: {', '.join(choices)}")
        return value

    def names(self, key: str, choices: tuple[str, ...], example: str) -> tuple[str, ...] | None:
        """A name or a list of names, each one of ``choices``."""
        value = self.values.get(key)
        if value is None:
            return None
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
            raise self.fail(key, f"must be a name or a non-empty list of names, e.g. {key} = {example}; got {value!r}")
        for v in items:
            if v not in choices:
                raise self.fail(key, f"unknown value {v!r}; valid values are: {', '.join(choices)}")
        return tuple(dict.fromkeys(items))

    def numbers(self, key: str, *, integer: bool, lo: float, hi: float, example: str) -> tuple | None:
        value = self.values.get(key)
        if value is None:
            return None
        kind = "integers" if integer else "numbers"
        ok = isinstance(value, list) and value and all(
            not isinstance(v, bool) and (isinstance(v, int) if integer else isinstance(v, (int, float))) for v in value)
        if not ok:
            raise self.fail(key, f"must be a non-empty list of {kind}, e.g. {key} = {example}; got {value!r}")
        for v in value:
            if not lo <= v < hi:
                raise self.fail(key, f"{v!r} is out of range: each value must be in [{lo:g}, {hi:g})")
        return tuple(dict.fromkeys(int(v) if integer else float(v) for v in value))


def _table_varies(table: str, data: str, gammas, backbones, method: str) -> set[str]:
    """The TrainConfig fields that ``table`` sets itself (its rows), besides the grid keys."""
    try:
        cfgs = grid_for(table, data, classes=[0], gammas=gammas, backbone=backbones, method=method)
    except AgadError:
        return set()  # the full expansion reports the problem
    dicts = [c.to_dict() for c in cfgs]
    return {k for k in dicts[0] if len({json.dumps(d[k], sort_keys=True, default=str) for d in dicts}) > 1}


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file; any problem is one AgadError line naming the file and the key.

    >>> p = load_plan("plans/fmnist-table4-gamma003.toml")          # doctest: +SKIP
    >>> p.table, p.recipes, str(p.archive)                          # doctest: +SKIP
    ('table4', ('default',), 'docs/runs/fmnist')
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AgadError(f"no plan file {path}: pass a plans/*.toml file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AgadError(f"cannot read plan file {path}: {exc}") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AgadError(f"{path}: not valid TOML: {exc}") from None

    for key in values:
        if key not in PLAN_KEYS:
            close = difflib.get_close_matches(key, PLAN_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise AgadError(f"{path}: {key}: unknown key{hint}; valid keys are: {', '.join(PLAN_KEYS)}")
    for key in REQUIRED_KEYS:
        if key not in values:
            raise AgadError(f"{path}: {key}: missing; a plan needs {', '.join(REQUIRED_KEYS)}")
    r = _Reader(path, values)
    name = path.stem
    table = r.string("table", choices=TABLES)
    data = r.string("data")
    methods = r.names("method", METHODS, '"ganomaly"') or ("agad",)
    if table == "baselines" and methods != ("agad",):
        raise r.fail("method", "the baselines table fixes its methods (agad, ganomaly, skip-ganomaly); drop method")
    if "recipes" in values and not isinstance(values["recipes"], list):
        raise r.fail("recipes", 'must be a list of recipe names, e.g. recipes = ["default"]; '
                                f'got {values["recipes"]!r}')
    recipes = r.names("recipes", RECIPES, '["default", "paper"]') or ("default",)
    backbones = r.names("backbone", BACKBONES, '"naive"')
    gammas = r.numbers("gammas", integer=False, lo=0.0, hi=1.0, example="[0.0, 0.05]")
    output = Path(r.string("output", f"docs/results/{name}.md"))
    if output.suffix != ".md":
        raise r.fail("output", f"must be a Markdown file (.md; the .csv goes beside it); got {str(output)!r}")

    overrides = values.get("set", {})
    if not isinstance(overrides, dict):
        raise r.fail("set", f"must be a table of TrainConfig fields, e.g. [set] then track_test_auroc = true; "
                            f"got {overrides!r}")
    for key in overrides:
        if key in GRID_KEYS:
            raise r.fail(f"set.{key}", f"set by the plan itself: use the plan's {GRID_KEYS[key]!r} key")
    check_overrides(overrides, f"{path}: set")
    varied = set().union(*(_table_varies(table, data, gammas, backbones, m) for m in methods))
    for key in overrides:
        if key in varied:
            raise r.fail(f"set.{key}", f"{table} varies {key} itself (one row per value); remove it from set")
    for rec in recipes:
        for key in recipe(rec):
            if key in varied:
                raise r.fail("recipes", f"recipe {rec!r} sets {key}, which {table} varies itself; "
                                        "drop the recipe from this plan")
            if key in overrides:
                raise r.fail(f"set.{key}", f"recipe {rec!r} sets {key} too; drop one of them")

    plan = Plan(
        path=path, name=name, description=" ".join(r.string("description").split()), table=table, data=data,
        classes=r.numbers("classes", integer=True, lo=0, hi=10_000, example="[0, 1, 2]"),
        seeds=r.numbers("seeds", integer=True, lo=0, hi=2**32, example="[0, 1, 2]") or (0,),
        gammas=gammas, backbones=backbones, methods=methods, recipes=recipes, overrides=dict(overrides),
        grid=Path(r.string("grid", f"results/{name}")), archive=Path(r.string("archive", f"docs/runs/{name}")),
        output=output, paper_dataset=r.string("paper_dataset", choices=PAPER_DATASETS),
        references=_references(r, table, data),
    )
    if is_dataset_name(data) or plan.classes is not None:
        plan_configs(plan)  # cheap here (no data is read): report bad values now, not at run time
    return plan


def _references(r: _Reader, table: str, data: str) -> tuple[Plan, ...]:
    value = r.values.get("references", [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise r.fail("references", 'must be a list of plan files, e.g. references = ["plans/other.toml"]; '
                                   f"got {value!r}")
    out = []
    for ref_path in dict.fromkeys(value):
        if Path(ref_path).resolve() == r.path.resolve():
            raise r.fail("references", f"{ref_path} is this plan itself; name other plans")
        try:
            ref = load_plan(ref_path)
        except AgadError as exc:
            raise r.fail("references", str(exc)) from None
        if ref.references:
            raise r.fail("references", f"{ref_path} has references of its own; name the plans it references "
                                       "here instead")
        if (ref.table, ref.data) != (table, data):
            raise r.fail("references", f"{ref_path} builds {ref.table} on {ref.data}, this plan {table} on {data}; "
                                       "a reference must build the same table on the same data")
        out.append(ref)
    return tuple(out)


# ------------------------------------------------------------------ expanding
def plan_configs(plan: Plan) -> list[TrainConfig]:
    """The plan's configs, one per run, without duplicates: seed-major, then method, recipe, and the table's order.

    Each (seed, method, recipe) is one :func:`~agad.experiments.grid.grid_for` call with the recipe's
    overrides and the plan's ``[set]``, so run names are those of ``agad bench TABLE ...``.
    """
    out: dict[str, TrainConfig] = {}
    for seed in plan.seeds:
        for method in plan.methods:
            for rec in plan.recipes:
                try:
                    cfgs = grid_for(plan.table, plan.data, classes=plan.classes, seeds=[seed], gammas=plan.gammas,
                                    backbone=plan.backbones, method=method,
                                    base_overrides={**recipe(rec), **plan.overrides})
                except AgadError as exc:
                    raise AgadError(f"{plan.path}: {exc}") from None
                for cfg in cfgs:
                    out.setdefault(run_name(cfg), cfg)  # a baseline ignores AGAD-only recipe fields: one run
    return list(out.values())


# ------------------------------------------------------------------ running
def _command(plan: Plan, table_only: bool) -> str:
    path = plan.path
    try:
        path = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    return shlex.join(["agad", "bench", "run", str(path)] + (["--table-only"] if table_only else []))


def archive_plan(plan: Plan, names: list[str] | None = None) -> dict[str, int]:
    """Copy the plan's complete runs from its grid into its archive (:func:`~agad.experiments.archive.archive_runs`).

    Only the plan's own runs go, also when other plans share the grid. Returns the summed counts.
    """
    from .archive import archive_runs

    counts = {"copied": 0, "unchanged": 0, "skipped": 0}
    for name in names if names is not None else [run_name(c) for c in plan_configs(plan)]:
        if is_complete(plan.grid / name):
            for k, v in archive_runs(plan.grid / name, plan.archive / name).items():
                counts[k] += v
    return counts


def write_plan_table(plan: Plan, names: list[str] | None = None, *, command: str | None = None) -> Path:
    """Rebuild the plan's table (``plan.output`` and its .csv) from the archives alone; returns the .md path.

    The table holds the plan's runs and those of its ``references``, each read from its own plan's archive.
    Runs missing from an archive are listed as missing, with the reason from that plan's grid's failures.jsonl.
    Both files are written to a temporary folder beside the output and renamed into place.
    """
    from .tables import read_failures, write_table

    names = names if names is not None else [run_name(c) for c in plan_configs(plan)]
    runs = {n: plan for n in names}  # run name -> the plan whose archive holds it
    for ref in plan.references:  # a run both plans name is read from this plan's archive
        for n in (run_name(c) for c in plan_configs(ref)):
            runs.setdefault(n, ref)
    out = plan.output
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", suffix=".tmp", dir=out.parent))
    try:
        # failures are recorded under the grid's run directory; the table lists the archive's
        lines = []
        for owner in (plan, *plan.references):
            failures = read_failures(owner.grid / FAILURES_FILE)
            lines += [json.dumps({**failures[str(owner.grid / n)], "run_dir": str(owner.archive / n)}, default=str)
                      for n, p in runs.items() if p is owner and str(owner.grid / n) in failures
                      and not is_complete(owner.archive / n)]
        if lines:
            (tmp / FAILURES_FILE).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        md, csv_path = write_table(plan.table, [p.archive / n for n, p in runs.items()], tmp,
                                   command=command or _command(plan, table_only=False), dataset=plan.paper_dataset)
        os.replace(csv_path, plan.csv)
        os.replace(md, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def run_plan(plan: Plan, *, workers: int, table_only: bool = False, keep_weights: bool = False,
             time_budget_s: float | None = None, run_timeout_s: float | None = None, in_process: bool = False,
             log: Callable[[str], Any] | None = print) -> Path:
    """Run the plan's grid (resumable), archive its complete runs, rebuild its table; returns the table's .md.

    Runs complete in the archive or in the grid are not run again, so on a checkout whose archive holds every
    run nothing is trained. ``workers`` runs go at a time (:func:`~agad.experiments.grid.run_grid`'s
    ``jobs``); ``table_only`` runs and archives nothing and only rebuilds the table. The other options are
    :func:`~agad.experiments.grid.run_grid`'s.

    >>> run_plan(load_plan("plans/fmnist-table4-gamma003.toml"), workers=12)   # doctest: +SKIP
    PosixPath('docs/results/fmnist_table4_gamma003.md')
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise AgadError(f"workers must be a whole number of at least 1; got {workers!r}")
    say = log or (lambda _msg: None)
    cfgs = plan_configs(plan)
    names = [run_name(c) for c in cfgs]
    if not table_only:
        todo = [c for c, n in zip(cfgs, names) if not is_complete(plan.archive / n)]
        say(f"plan {plan.name}: {len(cfgs)} runs, {len(cfgs) - len(todo)} already in {plan.archive}, "
            f"{len(todo)} to run in {plan.grid}")
        try:
            if todo:
                run_grid(todo, plan.grid, jobs=workers, keep_weights=keep_weights, log=log,
                         time_budget_s=time_budget_s, in_process=in_process, run_timeout_s=run_timeout_s)
        finally:  # also after Ctrl-C: what finished is kept
            n = archive_plan(plan, names)
            say(f"archive: {n['copied']} run(s) copied to {plan.archive}, {n['unchanged']} already there")
    return write_plan_table(plan, names, command=_command(plan, table_only))

