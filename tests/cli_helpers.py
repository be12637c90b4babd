"""Helpers the command-line tests share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from agad.cli import main


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of the CLI, whether main returns the code or argparse exits with it."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = int(exc.code)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("agad") and "Traceback" not in err, err
    for n in needles:
        assert n.lower() in lines[0].lower(), (n, lines[0])


def save_png(a: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
