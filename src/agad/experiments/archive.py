"""Keep the part of a grid that the tables are built from, small enough to commit.

A grid root (``results/...``) holds per run a few MB of scores, reconstructions and, if kept, weights,
and lives only on the machine that ran it. The tables need three small files per run: ``config.json``,
``metrics.json`` and ``history.jsonl`` (agad.experiments.tables). ``archive_runs`` copies those three
of every complete run into a second root with the same layout, so ``agad bench TABLE --table-only
--out ARCHIVE`` rebuilds the same table on any checkout::

    agad bench archive --out results/fmnist --to docs/runs/fmnist
    agad bench table4 --data fashion-mnist --gammas 0.03 --table-only --out docs/runs/fmnist

Incomplete runs (no metrics.json) and everything else in a run directory are left behind. A file is
copied to a temporary name and renamed, metrics.json last, so an interrupted archive never holds a run
that looks complete without its config.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import AgadError
from .grid import CONFIG_FILE, METRICS_FILE
from .tables import HISTORY_FILE

ARCHIVED_FILES = (CONFIG_FILE, HISTORY_FILE, METRICS_FILE)  # metrics.json last: it marks a run complete


def complete_runs(root: Path) -> list[Path]:
    """Every run directory under ``root`` with a metrics.json, sorted."""
    return sorted(p.parent for p in root.rglob(METRICS_FILE) if not p.parent.name.startswith("."))


def archive_runs(root: str | Path, dest: str | Path) -> dict[str, int]:
    """Copy config.json, history.jsonl and metrics.json of each complete run under ``root`` to ``dest``.

    Returns counts: ``copied`` (runs new or changed in ``dest``), ``unchanged`` and ``skipped`` (complete
    runs lacking config.json: nothing of theirs is copied).
    """
    from ..rundir import atomic_write_bytes

    root, dest = Path(root), Path(dest)
    if not root.is_dir():
        raise AgadError(f"no grid folder {root}: pass the --out folder of an `agad bench` grid")
    if dest.resolve() == root.resolve() or root.resolve() in dest.resolve().parents:
        raise AgadError(f"--to {dest} is inside the grid folder {root}: archive to a folder outside it")
    counts = {"copied": 0, "unchanged": 0, "skipped": 0}
    for run in complete_runs(root):
        if not (run / CONFIG_FILE).is_file():
            counts["skipped"] += 1
            continue
        target = dest / run.relative_to(root)
        changed = False
        for name in ARCHIVED_FILES:
            src, dst = run / name, target / name
            if not src.is_file():
                continue  # history.jsonl is optional for the tables
            data = src.read_bytes()
            if dst.is_file() and dst.read_bytes() == data:
                continue
            atomic_write_bytes(dst, data)
            changed = True
        counts["copied" if changed else "unchanged"] += 1
    return counts
