"""Data-parallel training: torchrun end to end on CPU (gloo), and each rank's shard of an epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from agad.config import TrainConfig
from agad.nets import build_discriminator, build_generator
from agad.pipeline import evaluate
from agad.runtime import DistInfo
from agad.train import AGADTrainer

SRC = Path(__file__).resolve().parents[1] / "src"
TRAIN_ARGS = ["train", "--data", "mnist-sample", "--normal-class", "0", "--epochs", "1", "--precision", "fp32",
              "--device", "cpu", "--no-progress"]
N_IMAGES, WORLD, PER_RANK_BATCH = 70, 2, 32


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    return env


def test_torchrun_two_processes_write_one_run_close_to_a_single_process_run(tmp_path):
    """``--batch-size`` is per process, so the single-process twin trains with WORLD x that batch:
    the same images per update and the same number of updates (1-epoch AUROC swings with both)."""
    runs = tmp_path / "runs"
    runs.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(WORLD),
           "-m", "agad", *TRAIN_ARGS, "--batch-size", str(PER_RANK_BATCH), "--out", str(runs / "ddp")]
    ddp = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run([sys.executable, "-m", "agad", *TRAIN_ARGS, "--batch-size", str(WORLD * PER_RANK_BATCH),
                             "--out", str(runs / "single")], env=_env(), capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]

    assert sorted(p.name for p in runs.iterdir()) == ["ddp", "single"]  # rank 1 wrote nothing of its own
    assert ddp.stdout.count("run written to") == 1
    assert json.loads((runs / "ddp" / "config.json").read_text())["world_size"] == WORLD
    a_ddp = evaluate(runs / "ddp", device="cpu")["auroc"]
    a_single = evaluate(runs / "single", device="cpu")["auroc"]
    assert abs(a_ddp - a_single) < 0.1, (a_ddp, a_single)


# ------------------------------------------------------------- shards, with a real gloo group
def _images_with_ids(n: int) -> torch.Tensor:
    """uint8 images whose first pixel is their index, so a batch tells which images it holds."""
    x = torch.randint(0, 256, (n, 1, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    return x


def _shard_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cfg = TrainConfig(device="cpu", precision="fp32", batch_size=8, epochs=1, seed=0)
        torch.manual_seed(rank)  # different starting weights: the broadcast from rank 0 must align them
        G = build_generator("naive", in_channels=1, image_size=32, advprop=cfg.advprop)
        D = build_discriminator(in_channels=1, image_size=32)
        tr = AGADTrainer(cfg, G, D, dist_info=DistInfo(rank=rank, world_size=world))
        seen: list[int] = []
        real_step = tr.step

        def spy(x_n, x_a=None):
            seen.extend(torch.round((x_n[:, 0, 0, 0] + 1) * 127.5).long().tolist())
            return real_step(x_n, x_a)

        tr.step = spy
        tr.fit(_images_with_ids(N_IMAGES), progress=False)
        weights = torch.cat([p.detach().reshape(-1) for p in list(tr.G.parameters()) + list(tr.D.parameters())])
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps({
            "seen": seen, "checksum": float(weights.double().sum()), "first": weights[:16].tolist(),
        }))
    finally:
        dist.destroy_process_group()


def test_each_rank_trains_on_its_own_disjoint_shard_and_replicas_stay_equal(tmp_path):
    init_file = tempfile.mktemp(dir=tmp_path)
    mp.start_processes(_shard_worker, args=(WORLD, init_file, str(tmp_path)), nprocs=WORLD, start_method="spawn")
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD))
    s0, s1 = set(r0["seen"]), set(r1["seen"])
    assert len(s0) == len(r0["seen"]) and len(s1) == len(r1["seen"])  # no image twice within a rank's epoch
    assert not s0 & s1  # disjoint shards
    assert s0 | s1 <= set(range(N_IMAGES)) and len(s0 | s1) >= N_IMAGES - WORLD  # the epoch is covered
    assert abs(len(s0) - len(s1)) <= 1
    # gradients are averaged over ranks, so both replicas end with the same weights
    assert r0["first"] == pytest.approx(r1["first"], abs=1e-6)
    assert r0["checksum"] == pytest.approx(r1["checksum"], rel=1e-6)
