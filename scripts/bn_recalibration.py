"""Score saved runs again after recomputing G's batch-norm running statistics on normal training images only.

    PYTHONPATH=src python scripts/bn_recalibration.py RUN_DIR [RUN_DIR ...]

Session 6 found that the late collapses with labelled anomalies (and paper-literal's swings) live in the BN
running statistics, which mix normal-batch with (pseudo-)anomaly-batch statistics, while training never reads
them. This recomputes them for a run's *saved scoring generator* with ``torch.optim.swa_utils.update_bn`` (a
cumulative average over one pass of the run's normal training images in training mode; the validation
hold-out is left out), then scores the validation split (when the run has one) and the test split. Nothing is
written to the run. Test AUROC is printed for the report only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import update_bn

from agad.pipeline import _split_and_dataset, auroc_of, carve_validation, load_generator
from agad.train import score_images, to_unit_range


def _batches(x: np.ndarray, size: int = 256):
    for i in range(0, len(x), size):
        yield to_unit_range(torch.from_numpy(x[i : i + size])).contiguous(memory_format=torch.channels_last)


def rescore(run_dir: Path) -> dict[str, float]:
    cfg, _, G = load_generator(run_dir)
    split, ds = _split_and_dataset(cfg)
    train_split, val = carve_validation(cfg, split, ds)
    out = {}
    for label in ("as saved", "recalibrated"):
        if label == "recalibrated":
            with torch.no_grad():
                update_bn(_batches(train_split.x_normal), G)  # restores G's eval mode afterwards
        if val is not None:
            out[f"val {label}"] = auroc_of(val.y, score_images(G, val.x))
        out[f"test {label}"] = auroc_of(split.y_test, score_images(G, split.x_test))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for run in args.runs:
        if not (run / "generator.safetensors").is_file():
            print(f"{run}: no saved weights, skipped", file=sys.stderr)
            continue
        r = rescore(run)
        print(f"{run}: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in r.items()), flush=True)


if __name__ == "__main__":
    main()
