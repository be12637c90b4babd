"""The performance scripts: benchmarks/speed.py, benchmarks/models.py, benchmarks/gpu_check.py.

The scripts are loaded from their files (they are not part of the package) or run as subprocesses with tiny
settings. These check that the tools run and report what they promise; they never assert a timing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from agad.config import TrainConfig
from agad.methods import ReconstructionScorer
from agad.nets import build_discriminator, build_generator, count_parameters
from agad.scoring import score_images
from agad.train import AGADTrainer

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def _load_script(name: str):
    """benchmarks/NAME.py as the module NAME: the name the other scripts import it by (models.py imports speed)."""
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(BENCHMARKS / f"{name}.py"):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


speed = _load_script("speed")
models = _load_script("models")
QUICK_SPEED = ["--backbones", "naive", "--batch-size", "8", "--steps", "1", "--repeats", "1", "--warmup", "0",
               "--score-batches", "1", "--threads", "1"]


@pytest.fixture(autouse=True)
def _keep_thread_count():
    """The commands' --threads sets torch's global thread count; later tests must not inherit it."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _script_env() -> dict[str, str]:
    """The environment of a script run as a subprocess: one thread, and agad importable from src/."""
    return dict(os.environ, OMP_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p))


def test_speed_json_has_the_required_keys_and_consistent_ratios(capsys):
    args = speed.build_parser().parse_args(["--json", *QUICK_SPEED])
    assert speed.cmd_speed(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["backbone"] for r in rows] == ["naive"]
    row = rows[0]
    for key in speed.REQUIRED_KEYS:
        assert key in row, key
    for key in ("train_img_s", "eager_fp32_img_s", "ganomaly_img_s", "score_img_s", "peak_gflops", "achieved_gflops"):
        assert row[key] > 0 and np.isfinite(row[key]), key
    assert row["train_vs_eager"] == pytest.approx(row["train_img_s"] / row["eager_fp32_img_s"])
    assert row["agad_vs_ganomaly_cost"] == pytest.approx(row["ganomaly_img_s"] / row["train_img_s"])
    assert row["achieved_gflops"] == pytest.approx(row["score_img_s"] * row["g_forward_mflop_per_image"] / 1e3)
    assert set(row["targets"].values()) <= {True, False}
    assert "naive" in speed.format_table(rows)


def test_the_benchmark_scripts_are_scripts_not_agad_commands(capsys):
    from agad.cli import main

    for argv in (["models"], ["bench", "speed"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert speed.build_parser().prog == "python benchmarks/speed.py"
    assert models.build_parser().prog == "python benchmarks/models.py"


def test_forward_flops_counts_convolutions_exactly():
    # 8 output channels x 32 x 32 positions x 9 taps x 1 input channel, 2 FLOPs per multiply-add
    assert speed.forward_flops(nn.Conv2d(1, 8, 3, padding=1, bias=False), (1, 32, 32)) == 2 * 8 * 32 * 32 * 9
    naive = speed.forward_flops(build_generator("naive", in_channels=1, image_size=32), (1, 32, 32))
    unet = speed.forward_flops(build_generator("unet", in_channels=1, image_size=32), (1, 32, 32))
    assert 0 < naive < unet


def test_models_json_reports_parameters_flops_and_speed(capsys):
    args = models.build_parser().parse_args(["--json", "--backbones", "naive", "--repeats", "2",
                                             "--batch-repeats", "1", "--threads", "1"])
    assert models.cmd_models(args) == 0
    (row,) = json.loads(capsys.readouterr().out)
    for key in ("backbone", "g_params_1ch", "g_params_3ch", "d_params_1ch", "d_params_3ch", "g_mflops_1ch",
                "g_mflops_3ch", "latency_ms", "throughput_img_s", "paper_params_m", "paper_a40_ms"):
        assert key in row, key
    assert row["g_params_1ch"] == count_parameters(build_generator("naive", in_channels=1, image_size=32))
    assert row["d_params_3ch"] == count_parameters(build_discriminator(in_channels=3, image_size=32))
    assert row["g_mflops_3ch"] > row["g_mflops_1ch"] > 0
    assert row["latency_ms"] > 0 and row["throughput_img_s"] > 0
    assert row["paper_params_m"] == models.PAPER_TABLE8["naive"]["params_m"]


def test_models_script_prints_a_markdown_table():
    r = subprocess.run([sys.executable, str(BENCHMARKS / "models.py"), "--backbones", "naive", "--repeats", "1",
                        "--batch-repeats", "1", "--threads", "1", "--device", "cpu"], env=_script_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("| backbone |") and "2,133,632" in r.stdout


def test_eager_reference_step_trains_both_networks():
    G, D = speed._networks("naive", 1)
    step = speed.EagerAGADStep(TrainConfig(), G, D, torch.device("cpu"))
    g0 = [p.detach().clone() for p in G.parameters()]
    d0 = [p.detach().clone() for p in D.parameters()]
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    assert np.isfinite(step(x))
    assert any(not torch.equal(a, b) for a, b in zip(g0, G.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, D.parameters()))


@pytest.mark.parametrize("backbone, method", [("naive", "ganomaly"), ("unet", "skip-ganomaly")])
def test_ganomaly_comparison_uses_the_documented_variant(backbone, method):
    tr = speed.make_ganomaly_trainer(TrainConfig(device="cpu", precision="fp32", backbone=backbone))
    assert tr.cfg.method == method
    if backbone != "naive":  # the same generator as AGAD's
        assert count_parameters(tr.G) == count_parameters(build_generator(backbone, in_channels=1, image_size=32))
    logs = tr.step(tr._prep(torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8)))
    assert np.isfinite(logs["G/total"])


def test_scoring_memory_reports_rss_from_a_fresh_process():
    m = speed.scoring_memory("naive", 600, precision="fp32", device="cpu", batch_size=128)
    assert m["scores"] == 600
    for key in ("rss_before_mb", "peak_rss_after_tenth_mb", "peak_rss_after_all_mb", "growth_tenth_to_all_mb"):
        assert np.isfinite(m[key]), key
    # VmHWM is kept from per-thread RSS counters that the kernel syncs lazily, so a later read of the peak can
    # come out a few pages lower (seen: 394.37 after 394.43 MB); a megabyte of slack, far below any growth
    assert m["peak_rss_after_all_mb"] >= m["peak_rss_after_tenth_mb"] - 1.0 and m["peak_rss_after_tenth_mb"] > 0


def test_score_images_fills_one_buffer_with_the_same_scores_as_per_batch_scoring():
    torch.manual_seed(0)
    G = ReconstructionScorer(build_generator("naive", in_channels=1, image_size=32))
    x = torch.randint(0, 256, (70, 1, 32, 32), dtype=torch.uint8)
    whole = score_images(G, x, batch_size=32, device="auto")
    parts = np.concatenate([score_images(G, x[i : i + 32], batch_size=32) for i in range(0, 70, 32)])
    assert whole.dtype == np.float32 and whole.shape == (70,)
    np.testing.assert_array_equal(whole, parts)
    assert score_images(G, x[:0]).shape == (0,)


def test_physical_cores_is_positive():
    assert 1 <= speed.physical_cores() <= (os.cpu_count() or 1)


class _TinyG(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 1))

    def forward(self, x):
        return torch.tanh(self.body(x))


class _TinyD(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 4, 2, 1), nn.LeakyReLU(0.2))
        self.head = nn.Conv2d(4, 1, 16)

    def forward(self, x):
        z = self.features(x)  # (B, 4, 16, 16)
        return self.head(z).flatten(), z


def test_compiled_step_runs_and_matches_eager():
    """The --compile path of the step runs and gives the eager losses.

    step() takes G's and D's gradients from one retained graph, which compiled backwards that donate their
    buffers refuse ("compiled with non-empty donated buffers") when several compiled models share a process,
    as benchmarks/ablate_step.py makes them; real networks take minutes to compile, so this smoke test uses
    tiny networks and the same code path.
    """
    pytest.importorskip("torch._inductor")
    losses = {}
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    for compile_ in (False, True):
        torch.manual_seed(0)
        tr = AGADTrainer(TrainConfig(device="cpu", precision="fp32", compile=compile_, advprop=False), _TinyG(), _TinyD())
        losses[compile_] = [tr.step(x)["G/total"] for _ in range(2)]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)


def test_gpu_check_quick_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    r = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), "--quick", "--device", "cpu",
                        "--backbones", "naive", "--out", str(out)], env=_script_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    for section in ("inference", "speed", "peak", "train256", "cudnn_benchmark"):
        assert res[section] and not any("error" in item for item in res[section]), section
    assert {(i["backbone"], i["precision"]) for i in res["inference"]} == {("naive", "fp32"), ("naive", "bf16")}
    assert "| naive |" in r.stdout
