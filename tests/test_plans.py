"""Recipes (agad.recipes) and plans (agad.experiments.plans): every shipped file is valid, archived tables
rebuild exactly as `agad bench ... --table-only` builds them, bad plans give one-line errors, and a tiny plan
runs, archives and rebuilds its table."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from agad.config import TrainConfig
from agad.errors import AgadError
from agad.experiments.grid import grid_for, is_complete, run_name
from agad.experiments.plans import Plan, load_plan, plan_configs, run_plan
from agad.experiments.tables import build_table, render_csv, render_markdown
from agad.recipes import RECIPES, describe, recipe

REPO = Path(__file__).resolve().parents[1]
PLAN_FILES = sorted((REPO / "plans").glob("*.toml"))
# the TrainConfig fields a recipe may set (the stable ones)
RECIPE_FIELDS = {"advprop", "ema_decay", "val_fraction", "ca", "select_epoch", "epochs", "batch_size",
                 "freeze_bn_anomalies", "anomaly_distance", "w_adv", "w_con", "w_adcon", "w_lat", "d_spectral_norm",
                 "adcon_cap", "label_head", "track_bn_anomalies"}
# the discriminator, C.A. push, score and anomalies' BN tracking of the archived runs
OLD_D = {"d_spectral_norm": False, "adcon_cap": 0.0, "label_head": False, "track_bn_anomalies": True}
# plans whose runs are all in docs/runs, with the `agad bench` grid each table was first built with
ARCHIVED = {
    "fmnist-table4-gamma003": ("table4", "fashion-mnist", dict(gammas=[0.03], backbone="naive"),
                               {"track_test_auroc": True, "epochs": 15, **OLD_D}),
    "fmnist-table4-gamma001-no-ca": ("table2", "fashion-mnist", dict(gammas=[0.01]),
                                    {"ca": False, "track_test_auroc": True, "epochs": 15, **OLD_D}),
    "mnist-sample-table1-ganomaly": ("table1", "mnist-sample", dict(seeds=[0, 1, 2], method="ganomaly"),
                                     {"track_test_auroc": True, "epochs": 15}),
}
QUICK = {"epochs": 1, "batch_size": 32, "num_threads": 1, "precision": "fp32", "device": "cpu"}


@pytest.fixture(scope="module")
def mini_mnist(tmp_path_factory) -> str:
    """The MNIST sample cut to 16 training and 8 test images per digit, as an IDX folder (a run takes seconds)."""
    from agad.data.datasets import mnist_sample

    ds = mnist_sample(image_size=28)
    root = tmp_path_factory.mktemp("data") / "mini-mnist"
    root.mkdir()
    for split, x, y, n in (("train", ds.x_train, ds.y_train, 16), ("t10k", ds.x_test, ds.y_test, 8)):
        keep = np.sort(np.concatenate([np.flatnonzero(y == c)[:n] for c in range(10)]))
        for kind, arr in (("images-idx3", x[keep, 0]), ("labels-idx1", y[keep])):
            header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
            (root / f"{split}-{kind}-ubyte.gz").write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))
    return str(root)


def _plan_file(tmp_path: Path, body: str, name: str = "plan.toml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def _tiny_plan(tmp_path: Path, **keys: str) -> Plan:
    """A one-run plan on the MNIST sample whose folders all lie in tmp_path."""
    lines = {"description": '"one run"', "table": '"table1"', "data": '"mnist-sample"', "classes": "[0]",
             "seeds": "[0]", "grid": json.dumps(str(tmp_path / "grid")), "archive": json.dumps(str(tmp_path / "runs")),
             "output": json.dumps(str(tmp_path / "results" / "tiny.md")), **keys}
    sets = "\n".join(f"{k} = {json.dumps(v)}" for k, v in QUICK.items())
    body = "".join(f"{k} = {v}\n" for k, v in lines.items()) + f"\n[set]\n{sets}\n"
    return load_plan(_plan_file(tmp_path, body, "tiny.toml"))


# ------------------------------------------------------------------ recipes
def test_recipe_names_are_the_shipped_files():
    assert RECIPES == ("default", "no-ca", "paper")


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_builds_a_valid_config_from_stable_fields(name):
    overrides = recipe(name)
    assert set(overrides) <= RECIPE_FIELDS
    cfg = TrainConfig(**overrides)
    assert all(getattr(cfg, k) == v for k, v in overrides.items())
    assert len(describe(name)) > 20 and "\n" not in describe(name)


def test_recipes_hold_their_documented_values():
    assert recipe("default") == {} and TrainConfig(**recipe("default")) == TrainConfig()
    assert recipe("paper") == {"advprop": False, "ema_decay": 0.0, "val_fraction": 0.0, "epochs": 15,
                               "d_spectral_norm": False, "adcon_cap": 0.0, "label_head": False,
                               "track_bn_anomalies": True}
    assert recipe("no-ca") == {"ca": False}
    r = recipe("paper")
    r["advprop"] = True  # a caller's change never reaches the next caller
    assert recipe("paper")["advprop"] is False


def test_unknown_recipe_names_the_valid_ones():
    with pytest.raises(AgadError, match="unknown recipe 'papr'; valid recipes are: default, no-ca, paper"):
        recipe("papr")
    with pytest.raises(AgadError, match="unknown recipe"):
        describe("")


# ------------------------------------------------------------------ shipped plans
def test_plans_folder_holds_the_archived_and_main_tables():
    names = {p.stem for p in PLAN_FILES}
    assert set(ARCHIVED) <= names
    assert {"fmnist-table1", "fmnist-table2", "mnist-sample-table1"} <= names


@pytest.mark.parametrize("path", PLAN_FILES, ids=lambda p: p.stem)
def test_every_plan_file_loads_and_expands_to_valid_configs(path, monkeypatch):
    monkeypatch.chdir(REPO)  # the plans a plan references are named from the repository root
    plan = load_plan(path)
    cfgs = plan_configs(plan)
    assert cfgs and all(isinstance(c, TrainConfig) for c in cfgs)
    assert len({run_name(c) for c in cfgs}) == len(cfgs)
    assert set(plan.recipes) <= set(RECIPES) and plan.description
    assert plan.archive.parts[:2] == ("docs", "runs") and plan.output.parts[:2] == ("docs", "results")
    assert plan.output.suffix == ".md" and plan.grid.parts[0] == "results"


@pytest.mark.parametrize("name", sorted(ARCHIVED))
def test_archived_plan_rebuilds_the_bench_table(name, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # plan paths are relative to the repository root
    plan = load_plan(Path("plans") / f"{name}.toml")
    table, data, grid_args, overrides = ARCHIVED[name]
    # what `agad bench TABLE --data DATA ... --table-only --out ARCHIVE` builds
    bench_cfgs = grid_for(table, data, base_overrides=overrides, **grid_args)
    expected = build_table(table, [plan.archive / run_name(c) for c in bench_cfgs])
    assert not expected.missing and expected.rows

    plan = dataclasses.replace(plan, output=tmp_path / "t.md")
    md = run_plan(plan, workers=1, table_only=True, log=None)
    assert {run_name(c) for c in plan_configs(plan)} == {run_name(c) for c in bench_cfgs}
    assert plan.csv.read_text() == render_csv(expected)
    text = md.read_text()
    assert text.splitlines()[0] == f"Command: `agad bench run plans/{name}.toml --table-only`"
    assert text.splitlines()[1:] == render_markdown(expected, "x").splitlines()[1:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.md"]  # no temporary folder left


with contextlib.chdir(REPO):  # plan paths are relative to the repository root
    PUBLISHED = [p for p in PLAN_FILES if load_plan(p).output.exists()]


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda p: p.stem)
def test_every_published_table_is_what_its_plan_rebuilds_from_the_archive(path, tmp_path, monkeypatch):
    # a table in docs/results that lags its archive would quote numbers nobody can rebuild
    monkeypatch.chdir(REPO)
    plan = load_plan(path)
    fresh = dataclasses.replace(plan, output=tmp_path / "t.md")
    md = run_plan(fresh, workers=1, table_only=True, log=None)
    rebuild = f"rebuild it: agad bench run {path.relative_to(REPO)} --table-only"
    assert fresh.csv.read_text() == plan.csv.read_text(), rebuild
    assert md.read_text() == plan.output.read_text(), rebuild


# ------------------------------------------------------------------ bad plans
BAD_PLANS = [
    ('table = "table1"\ndata = "mnist"\ndescription = "x"\nseed = [0]\n', "seed: unknown key (did you mean 'seeds'?)"),
    ('table = "table1"\ndata = "mnist"\n', "description: missing"),
    ('table = "table7"\ndata = "mnist"\ndescription = "x"\n', "table: unknown value 'table7'"),
    ('table = "table1"\ndata = "mnist"\ndescription = "x"\nrecipes = ["papr"]\n', "recipes: unknown value 'papr'"),
    ('table = "table1"\ndata = "mnist"\ndescription = "x"\nrecipes = "paper"\n', "recipes: must be a list"),
    ('table = "table1"\ndata = "mnist"\ndescription = "x"\nseeds = 0\n', "seeds: must be a non-empty list of integers"),
    ('table = "table1"\ndata = "mnist"\ndescription = "x"\nseeds = [true]\n', "seeds: must be a non-empty list"),
    ('table = "table2"\ndata = "mnist"\ndescription = "x"\ngammas = [1.5]\n', "gammas: 1.5 is out of range"),
    ('table = "table1"\ndata = "mnist"\ndescription = "x"\nmethod = "gan"\n', "method: unknown value 'gan'"),
    ('table = "table1"\ndata = "mnist"\ndescription = "x"\noutput = "t.csv"\n', "output: must be a Markdown file"),
    ('table = "table1"\ndata = 3\ndescription = "x"\n', "data: must be a non-empty string"),
    ('table = "table1"\ndata = "mnist"\ndescription = "x"\nset = 1\n', "set: must be a table"),
    ('table = "table1"\ndata = "mnist"\ndescription = "x"\n[set]\nemma = 0.9\n', "set: unknown config field 'emma'"),
    ('table = "table1"\ndata = "mnist"\ndescription = "x"\n[set]\nepochs = "two"\n', "set: epochs must be an integer"),
    ('table = "table1"\ndata = "mnist"\ndescription = "x"\n[set]\nseed = 1\n', "set.seed: set by the plan itself"),
    ('table = "table1"\ndata = "mnist"\ndescription = "x"\n[set]\nepochs = 0\n', "'epochs' parameter"),
    ('table = "table4"\ndata = "mnist"\ndescription = "x"\n[set]\nca = false\n', "set.ca: table4 varies ca itself"),
    ('table = "table4"\ndata = "mnist"\ndescription = "x"\nrecipes = ["no-ca"]\n',
     "recipes: recipe 'no-ca' sets ca, which table4 varies itself"),
    ('table = "table1"\ndata = "mnist"\ndescription = "x"\nrecipes = ["paper"]\n[set]\nadvprop = true\n',
     "set.advprop: recipe 'paper' sets advprop too"),
    ('table = "baselines"\ndata = "mnist"\ndescription = "x"\nmethod = "ganomaly"\n', "method: the baselines table"),
    ('table = "table1"\ndata = "mnist"\ndescription = "x"\ngammas = [0.05]\nmethod = "ganomaly"\n',
     "semi-supervised"),
    ('table = "table1"\ndata = "mnist\n', "not valid TOML"),
]


@pytest.mark.parametrize("body,fragment", BAD_PLANS, ids=[f for _, f in BAD_PLANS])
def test_bad_plan_files_give_one_line_errors(tmp_path, body, fragment):
    path = _plan_file(tmp_path, body, "bad.toml")
    with pytest.raises(AgadError) as err:
        load_plan(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and fragment in msg and "\n" not in msg


REFERENCE_BODY = 'description = "x"\ntable = "table2"\ndata = "mnist"\n'
BAD_REFERENCES = [
    ('references = "ref.toml"', "references: must be a list of plan files"),
    ('references = ["nope.toml"]', "references: no plan file nope.toml"),
    ('references = ["bad.toml"]', "references: bad.toml is this plan itself"),
    ('references = ["other-table.toml"]', "other-table.toml builds table1 on mnist, this plan table2 on mnist"),
    ('references = ["nested.toml"]', "nested.toml has references of its own"),
]


@pytest.mark.parametrize("line,fragment", BAD_REFERENCES, ids=[f for _, f in BAD_REFERENCES])
def test_bad_references_give_one_line_errors(tmp_path, monkeypatch, line, fragment):
    monkeypatch.chdir(tmp_path)
    _plan_file(tmp_path, REFERENCE_BODY, "ref.toml")
    _plan_file(tmp_path, REFERENCE_BODY.replace("table2", "table1"), "other-table.toml")
    _plan_file(tmp_path, REFERENCE_BODY + 'references = ["ref.toml"]\n', "nested.toml")
    path = _plan_file(tmp_path, REFERENCE_BODY + line + "\n", "bad.toml")
    with pytest.raises(AgadError) as err:
        load_plan(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: references: ") and fragment in msg and "\n" not in msg


def test_a_missing_plan_file_is_one_line(tmp_path):
    with pytest.raises(AgadError, match=r"^no plan file .*nope\.toml"):
        load_plan(tmp_path / "nope.toml")


def test_run_plan_rejects_a_bad_worker_count(tmp_path):
    with pytest.raises(AgadError, match="workers must be a whole number of at least 1"):
        run_plan(_tiny_plan(tmp_path), workers=0)


# ------------------------------------------------------------------ expansion
def test_plan_defaults_come_from_the_plan_name(tmp_path):
    plan = load_plan(_plan_file(tmp_path, 'description = "x"\ntable = "table1"\ndata = "mnist"\n', "my-plan.toml"))
    assert (plan.grid, plan.archive, plan.output) == (Path("results/my-plan"), Path("docs/runs/my-plan"),
                                                      Path("docs/results/my-plan.md"))
    assert (plan.seeds, plan.recipes, plan.methods, plan.gammas, plan.classes) == ((0,), ("default",), ("agad",),
                                                                                    None, None)
    assert len(plan_configs(plan)) == 10  # every MNIST class at gamma 0


def test_configs_are_seed_major_and_a_baseline_runs_once_per_seed(tmp_path):
    plan = _tiny_plan(tmp_path, seeds="[0, 1]", method='["agad", "ganomaly"]', recipes='["default", "no-ca"]')
    cfgs = plan_configs(plan)
    assert [(c.seed, c.method, c.ca) for c in cfgs] == [(0, "agad", True), (0, "agad", False), (0, "ganomaly", True),
                                                         (1, "agad", True), (1, "agad", False), (1, "ganomaly", True)]
    assert all(c.epochs == 1 and c.batch_size == 32 for c in cfgs)
    paper = plan_configs(dataclasses.replace(plan, recipes=("paper",), methods=("agad",)))
    assert all(not c.advprop and c.ema_decay == 0.0 and c.val_fraction == 0.0 for c in paper)


# ------------------------------------------------------------------ running (no training)
def _archived_ganomaly_plan(tmp_path: Path) -> tuple[Plan, str]:
    plan = load_plan(REPO / "plans" / "mnist-sample-table1-ganomaly.toml")
    plan = dataclasses.replace(plan, classes=(0,), seeds=(0,), grid=tmp_path / "grid", archive=tmp_path / "runs",
                               output=tmp_path / "out" / "t.md")
    (name,) = [run_name(c) for c in plan_configs(plan)]
    return plan, name


def test_complete_grid_runs_are_archived_and_table_only_touches_nothing(tmp_path):
    plan, name = _archived_ganomaly_plan(tmp_path)
    shutil.copytree(REPO / "docs" / "runs" / "mnist-sample" / name, plan.grid / name)  # a finished run
    run_plan(plan, workers=1, table_only=True, log=None)
    assert not plan.archive.exists()  # table-only archives nothing...
    assert "Runs: 0 complete, 1 missing." in plan.output.read_text()  # ...and reads the archive alone

    logs: list[str] = []
    run_plan(plan, workers=1, log=logs.append)  # complete in the grid: checked, not trained
    assert is_complete(plan.archive / name)
    assert any("1 run(s) copied" in line for line in logs)
    assert "Runs: 1 complete, 0 missing." in plan.output.read_text()


def test_runs_complete_in_the_archive_are_not_run_again(tmp_path):
    plan, name = _archived_ganomaly_plan(tmp_path)
    shutil.copytree(REPO / "docs" / "runs" / "mnist-sample" / name, plan.archive / name)
    logs: list[str] = []
    run_plan(plan, workers=1, log=logs.append)
    assert not plan.grid.exists() and "1 already in" in logs[0] and "0 to run" in logs[0]
    assert "Runs: 1 complete, 0 missing." in plan.output.read_text()


def test_a_failed_run_is_explained_in_the_table(tmp_path):
    plan, name = _archived_ganomaly_plan(tmp_path)
    plan.grid.mkdir()
    record = {"run_dir": str(plan.grid / name), "stage": "train", "error": "RuntimeError: out of memory"}
    (plan.grid / "failures.jsonl").write_text(json.dumps(record) + "\n")
    text = run_plan(plan, workers=1, table_only=True, log=None).read_text()
    assert f"`{plan.archive / name}`: failed at train: RuntimeError: out of memory" in text


def test_references_join_the_table_from_their_own_archive_and_are_never_run(tmp_path):
    ref, ref_name = _archived_ganomaly_plan(tmp_path / "ref")
    shutil.copytree(REPO / "docs" / "runs" / "mnist-sample" / ref_name, ref.archive / ref_name)
    own = load_plan(REPO / "plans" / "demo-1-thread-600-steps.toml")
    own = dataclasses.replace(own, seeds=(0,), grid=tmp_path / "grid", archive=tmp_path / "runs",
                              output=tmp_path / "out" / "t.md", references=(ref,))
    (own_name,) = [run_name(c) for c in plan_configs(own)]  # the references add no config to run
    shutil.copytree(REPO / "docs" / "runs" / "demo-1-thread" / own_name, own.archive / own_name)
    (ref.grid).mkdir(parents=True)
    missing = run_name(plan_configs(dataclasses.replace(ref, seeds=(1,)))[0])
    record = {"run_dir": str(ref.grid / missing), "stage": "train", "error": "RuntimeError: out of memory"}
    (ref.grid / "failures.jsonl").write_text(json.dumps(record) + "\n")
    ref = dataclasses.replace(ref, seeds=(0, 1))
    own = dataclasses.replace(own, references=(ref,))

    logs: list[str] = []
    text = run_plan(own, workers=1, log=logs.append).read_text()
    assert "1 runs, 1 already in" in logs[0] and "0 to run" in logs[0]
    assert not own.grid.exists() and sorted(p.name for p in ref.grid.iterdir()) == ["failures.jsonl"]
    assert "Runs: 2 complete, 1 missing." in text
    rows = {line.split(" | ")[0] for line in text.splitlines() if line.startswith("| method=")}
    assert rows == {"| method=agad", "| method=ganomaly"}  # what tells them apart is the method alone
    assert f"`{ref.archive / missing}`: failed at train: RuntimeError: out of memory" in text
    # what the table is built from: the plan's own run from its archive, the reference's from the reference's
    assert own.csv.read_text() == render_csv(build_table("table1", [own.archive / own_name, ref.archive / ref_name,
                                                                    ref.archive / missing]))


# ------------------------------------------------------------------ end to end
def test_tiny_plan_runs_archives_and_rebuilds(tmp_path, mini_mnist):
    plan = _tiny_plan(tmp_path, data=json.dumps(mini_mnist))
    md = run_plan(plan, workers=1, in_process=True, log=None)
    (name,) = [run_name(c) for c in plan_configs(plan)]
    failures = plan.grid / "failures.jsonl"
    assert is_complete(plan.grid / name), failures.read_text()[-2000:] if failures.is_file() else "no failure recorded"
    assert sorted(p.name for p in (plan.archive / name).iterdir()) == ["config.json", "history.jsonl", "metrics.json"]
    assert md == plan.output and "Runs: 1 complete, 0 missing." in md.read_text()
    csv_text = plan.csv.read_text()
    auroc = float(dict(zip(*[line.split(",") for line in csv_text.splitlines()[:2]]))["class_0"])
    assert 0.0 <= auroc <= 100.0

    shutil.rmtree(plan.grid)  # a fresh checkout: only the archive is left
    assert run_plan(plan, workers=1, table_only=True, log=None) == md
    assert plan.csv.read_text() == csv_text
