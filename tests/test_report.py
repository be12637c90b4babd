"""`agad report`: one self-contained HTML page that renders, and the model card of a run directory."""

from __future__ import annotations

import base64
import io
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agad import AGAD
from agad.cli import main
from agad.data import load_dataset
from agad.report import REPORT_SECTIONS, build_report, loss_terms, model_card
from agad.rundir import read_history, read_run_config
from cli_helpers import assert_one_line_error, run_cli, save_png

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 1-epoch model on 64 zeros and an MVTec-style folder of zeros with white-square defects and masks."""
    ds = load_dataset("mnist-sample")
    zeros = ds.x_train[ds.y_train == 0][:, 0, 2:30, 2:30]
    root = tmp_path_factory.mktemp("report")
    run = AGAD(epochs=1, batch_size=32, device="cpu", precision="fp32").fit(zeros[:64]).save(root / "model")
    cat = root / "toy"
    for i in range(5):
        save_png(zeros[100 + i], cat / "train" / "good" / f"{i}.png")
        save_png(zeros[110 + i], cat / "test" / "good" / f"{i}.png")
        img, mask = zeros[120 + i].copy(), np.zeros((28, 28), np.uint8)
        img[3 + 3 * i : 11 + 3 * i, 5:15], mask[3 + 3 * i : 11 + 3 * i, 5:15] = 255, 255
        save_png(img, cat / "test" / "square" / f"{i}.png")
        save_png(mask, cat / "ground_truth" / "square" / f"{i}_mask.png")
    out = root / "report.html"
    assert main(["report", str(run), "--data", str(cat), "--out", str(out), "--gallery", "3"]) == 0
    return run, cat, out


def test_report_is_one_self_contained_page(setup):
    run, _, out = setup
    text = out.read_text(encoding="utf-8")
    for sid in REPORT_SECTIONS:
        assert f'<section id="{sid}">' in text, sid
    assert "pixel AUROC" in text and "AUPRO" in text and "best-F1 threshold" in text
    # nothing is fetched: no script, no stylesheet link, no remote address; every image is an embedded PNG
    assert "<script" not in text and "<link" not in text and "http://" not in text and "https://" not in text
    sources = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert len(sources) >= 5
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.format == "PNG" and im.size[0] > 100
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_gallery_shows_the_worst_errors(setup):
    from agad.evaluation import evaluate_run
    from agad.report import _worst

    run, cat, _ = setup
    ev = evaluate_run(run, cat)
    fp, fn = _worst(ev.images.y, ev.scores, ev.predictions, 3)
    assert all(ev.images.y[fp] == 0) and all(ev.scores[fp] > ev.threshold)
    assert all(ev.images.y[fn] == 1) and all(ev.scores[fn] <= ev.threshold)
    assert list(ev.scores[fn]) == sorted(ev.scores[fn]) and list(ev.scores[fp]) == sorted(ev.scores[fp])[::-1]
    n_fn = int(((ev.images.y == 1) & (ev.predictions == 0)).sum())
    assert len(fn) == min(3, n_fn)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_report_renders_in_headless_chromium(setup, tmp_path):
    _, _, out = setup
    shot = tmp_path / "shot.png"
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,3000",
           out.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    with Image.open(shot) as im:
        rgb = np.asarray(im.convert("RGB"))
    assert rgb.shape[:2] == (3000, 1200)
    colours = np.unique(rgb.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 50  # figures, not a blank page
    white = (rgb == 255).all(axis=2).mean()
    assert white < 0.97, white
    assert (rgb[:, :, 0] > rgb[:, :, 2] + 60).any() and (rgb[:, :, 2] > rgb[:, :, 0] + 60).any()  # red and blue


def test_report_errors_are_one_line_and_write_nothing(setup, tmp_path, capsys):
    run, cat, out = setup
    before = out.read_bytes()
    code, _, err = run_cli(["report", run, "--data", cat, "--out", out], capsys)
    assert_one_line_error(code, err, "already exists", "--force")
    assert out.read_bytes() == before
    target = tmp_path / "r.html"
    code, _, err = run_cli(["report", tmp_path / "no-run", "--out", target], capsys)
    assert_one_line_error(code, err, "does not exist")
    code, _, err = run_cli(["report", run, "--data", tmp_path / "nope", "--out", target], capsys)
    assert_one_line_error(code, err, "does not exist")
    code, _, err = run_cli(["report", run, "--out", target], capsys)  # fitted on arrays: no test split of its own
    assert_one_line_error(code, err, "--data")
    assert not target.exists()


def test_report_default_goes_into_the_run_directory(setup, tmp_path):
    import shutil

    run, cat, _ = setup
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    r = build_report(copy, data=cat, gallery=0)
    assert r.path == copy / "report.html" and r.path.is_file()
    ev = r.evaluation
    text = r.path.read_text()
    n_fp = int(((ev.images.y == 0) & (ev.predictions == 1)).sum())
    n_fn = int(((ev.images.y == 1) & (ev.predictions == 0)).sum())
    for n, kind in ((n_fp, "false positives"), (n_fn, "false negatives")):
        assert (f"{n} {kind}; none shown" if n else f"no {kind} at this threshold") in text
    assert "data:image/png;base64" in text
    assert r.seconds > 0


def test_model_card_describes_the_run(setup):
    run, _, _ = setup
    record, history = read_run_config(run), read_history(run)
    card = model_card(record, history)
    assert card.startswith("# Model card: agad anomaly detector (naive backbone)")
    for heading in ("## Input", "## Training data", "## Training", "## Threshold", "## Use", "## Limitations"):
        assert heading in card
    assert f"{record['threshold']:.4g}" in card and "1 channel(s)" in card and "32 x 32" in card
    assert "| G/con |" in card  # the loss terms of the kept epoch
    assert loss_terms(history)[0].startswith("G/") and "epoch" not in loss_terms(history)
    # a record with little in it still gives a card
    assert model_card({"threshold": 1.0}, []).startswith("# Model card: ? anomaly detector")
