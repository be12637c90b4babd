"""Selection tables read validation numbers from histories only and apply the steadiness rule."""

from __future__ import annotations

import json

import pytest

from agad.cli import main
from agad.config import TrainConfig
from agad.experiments.selection import summarise, validation_rows


def _run(root, name, val_curve, test_curve=None, **cfg):
    d = root / name
    d.mkdir(parents=True)
    config = TrainConfig(val_fraction=0.2, **cfg).resolved().to_dict()
    (d / "config.json").write_text(json.dumps({"config": config}))
    lines = []
    for i, v in enumerate(val_curve):
        rec = {"epoch": i + 1, "steps": 10 * (i + 1), "val/auroc": v}
        if test_curve is not None:
            rec["test/auroc"] = test_curve[i]
        lines.append(json.dumps(rec))
    (d / "history.jsonl").write_text("\n".join(lines) + "\n")


def test_rows_take_the_last_validation_epoch_and_never_the_test_curve(tmp_path):
    _run(tmp_path, "a0", [0.5, 0.9, 0.8], test_curve=[0.99, 0.99, 0.99], normal_class=0, seed=0)
    _run(tmp_path, "b0", [0.7, 0.95], normal_class=0, seed=0, min_steps=0)
    rows = {r["candidate"]: r for r in validation_rows([tmp_path])}
    assert set(rows) == {"default", "min_steps=0"}
    assert rows["default"]["val"] == pytest.approx(80.0) and rows["default"]["spread"] == pytest.approx(10.0)
    assert rows["min_steps=0"]["val"] == pytest.approx(95.0)


def test_the_rule_needs_every_run_above_the_floor_and_close_seeds():
    rows = [dict(candidate="A", normal_class=c, seed=s, val=v) for c, s, v in
            [(0, 0, 90), (0, 1, 95), (6, 0, 85), (6, 1, 86)]]
    rows += [dict(candidate="B", normal_class=0, seed=0, val=99), dict(candidate="B", normal_class=0, seed=1, val=79)]
    got = {s["candidate"]: s for s in summarise(rows, floor=80, max_gap=4)}
    assert got["A"]["largest_seed_gap"] == 5 and not got["A"]["eligible"]  # seeds 5 apart on class 0
    assert got["B"]["lowest"] == 79 and not got["B"]["eligible"]
    loose = {s["candidate"]: s["eligible"] for s in summarise(rows, floor=80, max_gap=5)}
    assert loose == {"A": True, "B": False}


def test_cli_writes_the_table_and_names_a_folder_without_runs(tmp_path, capsys):
    _run(tmp_path / "runs", "a0", [0.9], normal_class=0, seed=0)
    assert main(["bench", "validation", str(tmp_path / "runs"), "--out", str(tmp_path / "v.md")]) == 0
    text = (tmp_path / "v.md").read_text()
    assert "| default | 1 | 90.00 | 90.0 | 0.0 | yes |" in text and text.startswith("<!-- agad bench validation")
    assert main(["bench", "validation", str(tmp_path / "empty"), "--out", str(tmp_path / "w.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no run with config.json" in err[0] and not (tmp_path / "w.md").exists()
