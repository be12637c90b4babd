"""Selection tables read validation numbers from histories only and apply the steadiness rule."""

from __future__ import annotations

import json

import pytest

from agad.cli import main
from agad.config import TrainConfig
from agad.experiments.selection import summarise, validation_rows


def _run(root, name, val_curve, test_curve=None, kept_epoch=None, **cfg):
    d = root / name
    d.mkdir(parents=True)
    config = TrainConfig(val_fraction=0.2, **cfg).resolved().to_dict()
    (d / "config.json").write_text(json.dumps({"config": config, "kept_epoch": kept_epoch}))
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
    rows = [dict(candidate="A", normal_class=c, seed=s, val=v, spread=1.0) for c, s, v in
            [(0, 0, 90), (0, 1, 95), (6, 0, 85), (6, 1, 86)]]
    rows += [dict(candidate="B", normal_class=0, seed=0, val=99, spread=0.0),
             dict(candidate="B", normal_class=0, seed=1, val=79, spread=0.0)]
    got = {s["candidate"]: s for s in summarise(rows, floor=80, max_gap=4)}
    assert got["A"]["largest_seed_gap"] == 5 and not got["A"]["eligible"]  # seeds 5 apart on class 0
    assert got["B"]["lowest"] == 79 and not got["B"]["eligible"]
    loose = {s["candidate"]: s["eligible"] for s in summarise(rows, floor=80, max_gap=5)}
    assert loose == {"A": True, "B": False}
    steady = {s["candidate"]: s for s in summarise(rows, floor=80, max_gap=5, max_spread=1.0)}
    assert steady["A"]["largest_spread"] == 1.0 and not steady["A"]["eligible"]  # 1.0 is not below 1.0
    assert steady["A"]["steady_runs"] == 4 and steady["B"]["steady_runs"] == 2  # spread below 2


def test_rows_read_the_kept_epoch_and_tell_draws_of_labelled_anomalies_apart(tmp_path):
    plain = dict(normal_class=0, seed=0, gamma=0.05, label_head=False)
    _run(tmp_path, "p", [0.9, 0.95, 0.6, 0.5], kept_epoch=2, **plain)
    _run(tmp_path, "k", [0.8, 0.82, 0.81, 0.8], kept_epoch=2, known_classes=1, **plain)
    _run(tmp_path, "h", [0.8, 0.85, 0.86, 0.87], kept_epoch=4, normal_class=0, seed=0, gamma=0.05)
    rows = {r["run"]: r for r in validation_rows([tmp_path])}
    assert rows["p"]["val"] == pytest.approx(95.0) and rows["p"]["last"] == pytest.approx(50.0)
    assert rows["p"]["kept"] == 2 and rows["p"]["spread"] == pytest.approx(10.0)
    # the draw is part of the setting, not of the candidate
    assert rows["p"]["candidate"] == rows["k"]["candidate"] == "label_head=False"
    assert rows["h"]["candidate"] == "default"
    assert rows["p"]["normal_class"] != rows["k"]["normal_class"] and "known_classes=1" in rows["k"]["normal_class"]
    summary = {s["candidate"]: s for s in summarise(list(rows.values()), floor=0, max_gap=100, max_spread=2)}
    assert summary["label_head=False"]["largest_spread"] == pytest.approx(10.0)
    assert not summary["label_head=False"]["eligible"] and summary["default"]["eligible"]


def test_cli_writes_the_table_and_names_a_folder_without_runs(tmp_path, capsys):
    _run(tmp_path / "runs", "a0", [0.9], normal_class=0, seed=0)
    assert main(["bench", "validation", str(tmp_path / "runs"), "--out", str(tmp_path / "v.md")]) == 0
    text = (tmp_path / "v.md").read_text()
    assert "| default | 1 | 90.00 | 90.0 | 0.0 | 0.0 | 1 / 1 | yes |" in text and text.startswith("<!-- agad bench validation")
    assert main(["bench", "validation", str(tmp_path / "empty"), "--out", str(tmp_path / "w.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no run with config.json" in err[0] and not (tmp_path / "w.md").exists()
