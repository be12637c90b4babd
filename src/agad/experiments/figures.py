"""The paper's figures from run directories (PNG, ~100 dpi, written atomically).

- :func:`recon_figure` — Fig. 2/3: the same 8 normal and 8 anomalous test images,
  reconstructed by each given run (input row, then one row per run). Needs weights.
- :func:`score_boxplot` — Fig. 4: class-wise box plots of normal vs anomalous test
  scores after Tukey's fences, one panel per gamma. Reads scores.csv.
- :func:`auroc_curves` — Fig. 6: test AUROC per epoch, one curve per class, one
  panel per backbone (diagnostic only). Reads history.jsonl.
- :func:`loss_curves` — every loss term per epoch, one line per run (stability).

>>> tukey_filter([1, 2, 3, 4, 5, 6, 7, 8, 100]).tolist()   # Q1 3, Q3 7, fences [-3, 13]
[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ..config import BACKBONES
from ..errors import AgadError
from ..figures import plt, save_figure  # matplotlib with the Agg backend
from .grid import CONFIG_FILE
from .stats import tukey_filter
from .tables import NOT_A_VARIANT, find_runs

SCORES_FILE = "scores.csv"
HISTORY_FILE = "history.jsonl"
LOSS_TERMS = ("G/adv", "G/con", "G/adcon", "G/lat", "D/total")


# ------------------------------------------------------------------ reading run directories
def expand_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories given directly or found under the given folders (in order, no duplicates)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise AgadError(f"{p} does not exist; pass run directories or a folder that holds them")
        found = find_runs(p)
        if not found:
            raise AgadError(f"no run directory (with {CONFIG_FILE}) under {p}")
        out += [d for d in found if d not in out]
    return out


def _config(run_dir: Path) -> dict[str, Any]:
    try:
        meta = json.loads((run_dir / CONFIG_FILE).read_text())
        return meta["config"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        raise AgadError(f"{run_dir} is not a run directory (unreadable {CONFIG_FILE})") from None


def _history(run_dir: Path) -> list[dict[str, Any]]:
    p = run_dir / HISTORY_FILE
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.is_file() else []


def _read_scores(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    from ..rundir import read_scores_csv

    p = run_dir / SCORES_FILE
    if not p.is_file():
        raise AgadError(f"{run_dir} has no {SCORES_FILE}; evaluate it first (`agad evaluate {run_dir}`)")
    scores, labels = read_scores_csv(p)
    if labels is None:
        raise AgadError(f"{p} has no label column; it was not written by `agad evaluate`")
    return scores, labels


def select_runs(run_dirs: Sequence[Path], where: dict[str, Any] | None) -> list[tuple[Path, dict[str, Any]]]:
    """(run_dir, config) pairs whose config matches every ``where`` item (floats compared with tolerance)."""
    out = []
    for d in run_dirs:
        cfg = _config(d)
        ok = True
        for k, v in (where or {}).items():
            if k not in cfg:
                raise AgadError(f"--where {k}: not a config field of {d}")
            have = cfg[k]
            if isinstance(v, float) or isinstance(have, float):
                ok &= isinstance(have, (int, float)) and math.isclose(float(have), float(v), abs_tol=1e-9)
            else:
                ok &= have == v
        if ok:
            out.append((d, cfg))
    if not out:
        raise AgadError(f"no run matches {where}; check --where")
    return out


def _pick(runs: list[tuple[Path, dict[str, Any]]], group: tuple[str, ...]) -> dict[tuple, tuple[Path, dict[str, Any]]]:
    """One run per value of ``group`` fields: the lowest seed. Runs that differ in anything else are ambiguous."""
    chosen: dict[tuple, tuple[Path, dict[str, Any]]] = {}
    for d, cfg in sorted(runs, key=lambda r: int(r[1].get("seed", 0))):
        key = tuple(cfg.get(k) for k in group)
        if key in chosen:
            prev = chosen[key][1]
            diff = sorted(k for k in set(prev) | set(cfg)
                          if k not in NOT_A_VARIANT and k not in group and prev.get(k) != cfg.get(k))
            if diff:
                raise AgadError(f"the runs differ in {', '.join(diff)} as well; select one variant with "
                                f"--where {diff[0]}=VALUE")
            continue  # a later seed of the same setting
        chosen[key] = (d, cfg)
    return chosen


def _save(fig, out: str | Path) -> Path:
    out = Path(out)
    save_figure(fig, out, dpi=100)
    return out


# ------------------------------------------------------------------ Fig. 2
def score_boxplot(run_dirs: Sequence[str | Path], out: str | Path, *, gammas: Sequence[float] | None = None,
                  where: dict[str, Any] | None = None) -> Path:
    """Fig. 4: per class, normal vs anomalous test scores after Tukey's fences; one panel per gamma.

    The fences [Q1 - 1.5 IQR, Q3 + 1.5 IQR] are computed separately for the normal and the
    anomalous scores of each class. With several seeds the lowest seed is shown.
    """
    runs = select_runs([Path(d) for d in run_dirs], where)
    if gammas is not None:
        runs = [(d, c) for d, c in runs if any(math.isclose(float(c["gamma"]), float(g), abs_tol=1e-9) for g in gammas)]
        if not runs:
            raise AgadError(f"no run has gamma in {list(gammas)}")
    chosen = _pick(runs, ("gamma", "normal_class"))
    panel_gammas = sorted({float(k[0]) for k in chosen})
    classes = sorted({int(k[1]) for k in chosen})
    width = max(4.0, 0.55 * len(classes) + 1.5)
    fig, axes = plt.subplots(1, len(panel_gammas), figsize=(width * len(panel_gammas), 3.4), squeeze=False)
    for ax, g in zip(axes[0], panel_gammas):
        for i, c in enumerate(classes):
            hit = [v for k, v in chosen.items() if math.isclose(float(k[0]), g, abs_tol=1e-9) and int(k[1]) == c]
            if not hit:
                continue
            scores, labels = _read_scores(hit[0][0])
            for offset, lab, color in ((-0.2, 0, "tab:green"), (0.2, 1, "tab:red")):
                kept = tukey_filter(scores[labels == lab])
                if len(kept) == 0:
                    continue
                bp = ax.boxplot([kept], positions=[i + offset], widths=0.32, showfliers=False, whis=(0, 100),
                                patch_artist=True)
                for box in bp["boxes"]:
                    box.set_facecolor(color)
                    box.set_alpha(0.55)
        ax.set_xticks(range(len(classes)))
        ax.set_xticklabels([str(c) for c in classes])
        ax.set_xlabel("normal class")
        ax.set_title(f"gamma = {100 * g:g}%", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("anomaly score ||x - G(x)||")
    axes[0][-1].legend(handles=[Patch(color="tab:green", alpha=0.55, label="normal"),
                                Patch(color="tab:red", alpha=0.55, label="anomalous")], fontsize=7, loc="best")
    fig.suptitle("Test anomaly scores after Tukey's fences (1.5 IQR, per class and label)", fontsize=9)
    return _save(fig, out)


# ------------------------------------------------------------------ Fig. 6
def auroc_curves(run_dirs: Sequence[str | Path], out: str | Path, *, where: dict[str, Any] | None = None) -> Path:
    """Fig. 6: test AUROC per epoch, one curve per class, one panel per backbone.

    Diagnostic only: needs runs trained with ``track_test_auroc``; nothing is selected from it.
    """
    runs = select_runs([Path(d) for d in run_dirs], where)
    runs = [(d, c) for d, c in runs if any("test/auroc" in h for h in _history(d))]
    if not runs:
        raise AgadError("no run logged test AUROC per epoch; train with --set track_test_auroc=true")
    chosen = _pick(runs, ("backbone", "normal_class"))
    backbones = sorted({k[0] for k in chosen}, key=lambda b: BACKBONES.index(b) if b in BACKBONES else 99)
    fig, axes = plt.subplots(1, len(backbones), figsize=(4.2 * len(backbones), 3.3), squeeze=False, sharey=True)
    cmap = plt.get_cmap("tab10" if len({k[1] for k in chosen}) <= 10 else "tab20")
    for ax, bb in zip(axes[0], backbones):
        for (b, c), (d, _) in sorted(chosen.items(), key=lambda kv: int(kv[0][1])):
            if b != bb:
                continue
            hist = [h for h in _history(d) if "test/auroc" in h]
            ax.plot([h.get("epoch", i + 1) for i, h in enumerate(hist)], [100 * h["test/auroc"] for h in hist],
                    marker=".", lw=1.2, color=cmap(int(c) % cmap.N), label=str(c))
        ax.set_title(bb, fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test AUROC (%)")
    axes[0][-1].legend(title="class", fontsize=7, title_fontsize=7, ncol=2, loc="lower right")
    fig.suptitle("Test AUROC per epoch: diagnostic only, never used to choose an epoch", fontsize=9)
    return _save(fig, out)


# ------------------------------------------------------------------ losses
def _labels(cfgs: list[dict[str, Any]]) -> list[str]:
    keys = sorted({k for c in cfgs for k in c if k not in ("num_threads", "device", "compile", "eval_batch_size",
                                                           "channels_last")})
    varying = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in cfgs}) > 1]
    short = {"normal_class": "c", "gamma": "g", "seed": "s"}
    return [" ".join(f"{short.get(k, k + '=')}{c.get(k)}" for k in varying) or "run" for c in cfgs]


def loss_curves(run_dirs: Sequence[str | Path], out: str | Path, *, terms: Sequence[str] | None = None,
                where: dict[str, Any] | None = None) -> Path:
    """Every loss term per epoch (one panel each), one line per run; D re-initialisations marked with x."""
    runs = select_runs([Path(d) for d in run_dirs], where)
    hists = [(d, c, _history(d)) for d, c in runs]
    hists = [h for h in hists if h[2]]
    if not hists:
        raise AgadError("no history.jsonl in the given runs")
    if terms is None:
        present = {k for _, _, h in hists for r in h for k in r}
        terms = [t for t in LOSS_TERMS if t in present] + sorted(
            k for k in present if k.startswith(("G/anomaly/", "D/")) and k not in LOSS_TERMS)
    if not terms:
        raise AgadError("the histories hold none of the requested loss terms")
    labels = _labels([c for _, c, _ in hists])
    ncol = min(3, len(terms))
    nrow = math.ceil(len(terms) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.6 * nrow), squeeze=False)
    for ax, term in zip(axes.flat, terms):
        for (d, c, h), lab in zip(hists, labels):
            pts = [(r.get("epoch", i + 1), r[term]) for i, r in enumerate(h) if term in r]
            if not pts:
                continue
            line, = ax.plot(*zip(*pts), lw=1.0, marker="." if len(pts) < 30 else None, label=lab)
            resets = [r.get("epoch", i + 1) for i, r in enumerate(h)
                      if i > 0 and r.get("d_resets", 0) > h[i - 1].get("d_resets", 0) and term in r]
            if resets:
                ys = [r[term] for r in h if r.get("epoch") in resets]
                ax.scatter(resets, ys, marker="x", color=line.get_color(), s=18)
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(terms):]:
        ax.axis("off")
    if len(hists) <= 12:
        axes.flat[0].legend(fontsize=6)
    fig.suptitle("Loss terms per epoch (mean over the epoch's steps; x = D re-initialised)", fontsize=9)
    fig.tight_layout()
    return _save(fig, out)
