"""Score saved runs again after recomputing G's batch-norm running statistics.

    PYTHONPATH=src python scripts/bn_recalibration.py RUN_DIR [RUN_DIR ...]
    PYTHONPATH=src python scripts/bn_recalibration.py RUN_DIR ... --anomaly-weights 0 0.25 0.5

Session 6 found that the late collapses with labelled anomalies (and paper-literal's swings) live in the BN
running statistics, which mix normal-batch with (pseudo-)anomaly-batch statistics, while training never reads
them. This recomputes them for a run's *saved scoring generator* (``agad.nets.recompute_bn_statistics``: a cumulative
average over one pass in training mode, as ``torch.optim.swa_utils.update_bn``) on the run's normal training
images (the validation hold-out is left out), then scores the validation split (when the run has one) and the
test split.

``--anomaly-weights w ...`` (session 7; runs with labelled anomalies): the statistics are also computed over
the run's labelled anomalies alone, and each layer's running mean and variance are set to ``(1 - w) normal + w
anomaly`` -- a fixed, drift-free version of what training leaves in them (about w = 0.5 at momentum 0.1, one
anomaly batch after each normal batch). w = 0 is the normal-only recalibration. Nothing is written to the run.
Training with ``--scoring-bn recomputed`` does the same after every epoch (``scripts/bn_mix_probe.py``).
Test AUROC is printed for the report only; validation AUROC is what a choice of w may read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from agad.nets import recompute_bn_statistics
from agad.pipeline import _split_and_dataset, auroc_of, carve_validation, load_generator
from agad.train import score_images, to_unit_range


def _batches(x: np.ndarray, size: int = 256):
    for i in range(0, len(x), size):
        yield to_unit_range(torch.from_numpy(x[i : i + size])).contiguous(memory_format=torch.channels_last)


def _bn_stats(G: torch.nn.Module, x: np.ndarray) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each BN layer's (running_mean, running_var) after recomputing them over ``x``; G is left with them."""
    recompute_bn_statistics(G, _batches(x))  # restores G's mode afterwards
    return {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in G.named_modules()
            if isinstance(m, _BatchNorm) and m.running_mean is not None}


def _set_mixed(G: torch.nn.Module, normal: dict, anomaly: dict, w: float) -> None:
    for n, m in G.named_modules():
        if n in normal:
            m.running_mean.copy_((1 - w) * normal[n][0] + w * anomaly[n][0])
            m.running_var.copy_((1 - w) * normal[n][1] + w * anomaly[n][1])


def rescore(run_dir: Path, anomaly_weights: tuple[float, ...] = (0.0,)) -> dict[str, float]:
    cfg, _, G = load_generator(run_dir)
    split, ds = _split_and_dataset(cfg)
    train_split, val = carve_validation(cfg, split, ds)

    def score(label: str) -> None:
        if val is not None:
            out[f"val {label}"] = auroc_of(val.y, score_images(G, val.x))
        out[f"test {label}"] = auroc_of(split.y_test, score_images(G, split.x_test))

    out: dict[str, float] = {}
    score("as saved")
    anomaly = _bn_stats(G, split.x_anomaly) if len(split.x_anomaly) else None
    normal = _bn_stats(G, train_split.x_normal)
    for w in anomaly_weights:
        if w == 0 or anomaly is None:
            _set_mixed(G, normal, normal, 0.0)
            score("recalibrated")
            if anomaly is None:
                break
        else:
            _set_mixed(G, normal, anomaly, w)
            score(f"mixed w={w:g}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--anomaly-weights", nargs="+", type=float, default=[0.0], metavar="W",
                    help="weights of the labelled anomalies' statistics in the recomputed ones (default: 0)")
    args = ap.parse_args()
    if any(not 0 <= w <= 1 for w in args.anomaly_weights):
        ap.error("--anomaly-weights: each weight must lie in [0, 1]")
    torch.set_num_threads(1)
    for run in args.runs:
        if not (run / "generator.safetensors").is_file():
            print(f"{run}: no saved weights, skipped", file=sys.stderr)
            continue
        r = rescore(run, tuple(args.anomaly_weights))
        print(f"{run}: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in r.items()), flush=True)


if __name__ == "__main__":
    main()
