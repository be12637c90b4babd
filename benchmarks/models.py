"""`python benchmarks/models.py`: size, cost and measured speed of each generator backbone (the paper's Table 8).

For each backbone: parameters of G and D at 1x32x32 and 3x32x32, G's forward
FLOPs per image (convolutions and matmuls, ``FlopCounterMode``), the median
latency of one 1x32x32 image (batch 1, eval mode, inference mode) and the
throughput at batch 256, on the device and precision asked for.

    python benchmarks/models.py                 # markdown table, fp32 on this machine
    python benchmarks/models.py --json --precision bf16

>>> rows = model_rows(["naive"], repeats=3, batch_repeats=1)   # doctest: +SKIP
>>> rows[0]["g_params_1ch"]                                    # doctest: +SKIP
2133632
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch

from agad.config import BACKBONES, DEVICES, PRECISIONS
from agad.nets import build_discriminator, build_generator, count_parameters
from agad.runtime import autocast, resolve_device, resolve_precision
from speed import forward_flops, sync

# The paper's Table 8: parameters (1-channel 32x32) and inference time of one 32x32 image on an NVIDIA A40.
PAPER_TABLE8 = {
    "naive": {"params_m": 2.04, "a40_ms": 2.67},
    "unet": {"params_m": 7.76, "a40_ms": 5.41},
    "unetpp": {"params_m": 9.04, "a40_ms": 16.73},
}
IMAGE_SIZE = 32


def _median_seconds(fn, *, repeats: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def model_rows(
    backbones: list[str] | tuple[str, ...] = BACKBONES,
    *,
    precision: str = "fp32",
    device: str = "auto",
    repeats: int = 50,
    batch_size: int = 256,
    batch_repeats: int = 3,
    channels_last: bool = True,
) -> list[dict[str, Any]]:
    """One dict per backbone; times are medians (``repeats`` single images, ``batch_repeats`` batches)."""
    dev = resolve_device(device)
    amp = resolve_precision(precision, dev)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    rows = []
    for name in backbones:
        torch.manual_seed(0)
        G = {c: build_generator(name, in_channels=c, image_size=IMAGE_SIZE) for c in (1, 3)}
        D = {c: build_discriminator(in_channels=c, image_size=IMAGE_SIZE) for c in (1, 3)}
        row: dict[str, Any] = {"backbone": name}
        for c in (1, 3):
            row[f"g_params_{c}ch"] = count_parameters(G[c])
            row[f"d_params_{c}ch"] = count_parameters(D[c])
            row[f"g_mflops_{c}ch"] = forward_flops(G[c], (c, IMAGE_SIZE, IMAGE_SIZE)) / 1e6
        g = G[1].to(dev, memory_format=fmt).eval()
        x1 = torch.rand(1, 1, IMAGE_SIZE, IMAGE_SIZE, device=dev).mul(2).sub(1).contiguous(memory_format=fmt)
        xb = torch.rand(batch_size, 1, IMAGE_SIZE, IMAGE_SIZE, device=dev).mul(2).sub(1).contiguous(memory_format=fmt)

        def forward(x):
            with torch.inference_mode(), autocast(dev, amp):
                return g(x)

        row["latency_ms"] = 1e3 * _median_seconds(lambda: forward(x1), repeats=repeats, warmup=5, device=dev)
        t = _median_seconds(lambda: forward(xb), repeats=batch_repeats, warmup=1, device=dev)
        row["throughput_img_s"] = batch_size / t
        row["throughput_batch"] = batch_size
        row.update({"device": dev.type, "precision": "bf16" if amp == torch.bfloat16 else "fp32",
                    "threads": torch.get_num_threads(), "latency_repeats": repeats,
                    "paper_params_m": PAPER_TABLE8[name]["params_m"], "paper_a40_ms": PAPER_TABLE8[name]["a40_ms"]})
        rows.append(row)
    return rows


def format_models_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| backbone | G params 1x32x32 | G params 3x32x32 | D params 1ch / 3ch | G MFLOP/img (1ch / 3ch) "
        "| latency, 1 image (ms) | img/s at batch 256 | paper params | paper A40 ms |",
        "|" + "---|" * 9,
    ]
    for r in rows:
        lines.append(
            f"| {r['backbone']} | {r['g_params_1ch']:,} | {r['g_params_3ch']:,} | {r['d_params_1ch']:,} / "
            f"{r['d_params_3ch']:,} | {r['g_mflops_1ch']:.1f} / {r['g_mflops_3ch']:.1f} | {r['latency_ms']:.2f} | "
            f"{r['throughput_img_s']:.0f} | {r['paper_params_m']:.2f}M | {r['paper_a40_ms']:.2f} |"
        )
    if rows:
        r = rows[0]
        lines += ["", f"{r['device']}, {r['precision']}, {r['threads']} threads; latency = median of "
                      f"{r['latency_repeats']} single-image forwards (eval, inference mode)."]
    return "\n".join(lines)


def cmd_models(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = model_rows(args.backbones, precision=args.precision, device=args.device, repeats=args.repeats,
                      batch_repeats=args.batch_repeats)
    print(json.dumps(rows, indent=2) if args.json else format_models_table(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/models.py", description=__doc__.split("\n\n>>>")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", nargs="+", choices=BACKBONES, default=list(BACKBONES))
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default, comparable with the paper's table), bf16 or auto")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--repeats", type=int, default=50, help="single-image forwards timed (median)")
    p.add_argument("--batch-repeats", type=int, default=3, help="batch-256 forwards timed (median)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    return p


if __name__ == "__main__":
    raise SystemExit(cmd_models(build_parser().parse_args()))
