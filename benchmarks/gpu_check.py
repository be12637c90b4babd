"""One-shot GPU measurement of AGAD's backbones, made to run once inside a strict time budget (< 90 s).

    PYTHONPATH=src python benchmarks/gpu_check.py --out gpu_check.json            # on the GPU machine
    PYTHONPATH=src python benchmarks/gpu_check.py --quick --device cpu --out /tmp/gpu_check.json   # smoke test

Sections, in order (each one guarded: an error is recorded in the JSON and the
next section still runs; the JSON is rewritten after every item; once
``--budget-s`` seconds have passed, the remaining items are marked skipped):

1. ``env``: torch / CUDA / cuDNN versions, GPU name, TF32 and cuDNN-benchmark flags.
2. ``inference``: per backbone and precision (fp32, bf16 autocast): latency of
   one 1x32x32 image (batch 1; CUDA events around each forward, 20 warm-up,
   median of 200) and throughput at batch 256 (median of 20), eval + inference mode.
3. ``speed``: ``benchmarks/speed.py``'s ``run_speed`` at batch 64 -- images/s
   of the shipped AGAD step, the plain eager fp32 step and the GANomaly step,
   scoring at batch 256, and the ratios.
4. ``peak``: a large matmul in bf16 and in fp32 (TF32 off), TFLOP/s.
5. ``train256``: the shipped AGAD step at the paper's batch 256.
6. ``cudnn_benchmark``: the AGAD step at batch 64 with ``torch.backends.cudnn.benchmark = True``
   (agad leaves it off), to decide whether turning it on pays.

Prints a markdown table at the end. Nothing is downloaded; data are random
tensors (speed does not depend on pixel values).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

T_START = time.perf_counter()

import torch  # noqa: E402

from agad.config import BACKBONES, TrainConfig  # noqa: E402
from models import PAPER_TABLE8  # noqa: E402
from speed import interleaved, make_agad_trainer, run_speed  # noqa: E402
from agad.nets import build_generator  # noqa: E402
from agad.runtime import autocast, resolve_device  # noqa: E402


class Budget:
    def __init__(self, seconds: float):
        self.seconds = seconds

    def elapsed(self) -> float:
        return time.perf_counter() - T_START

    def left(self) -> bool:
        return self.elapsed() < self.seconds


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def timed_ms(fn, *, repeats: int, warmup: int, device: torch.device) -> list[float]:
    """Milliseconds of each call: CUDA events on a GPU (synchronised per call), perf_counter on a CPU."""
    for _ in range(warmup):
        fn()
    out = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(repeats):
            start.record()
            fn()
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end))
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            out.append(1e3 * (time.perf_counter() - t0))
    return out


def section_env(device: torch.device) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": device.type,
           "cpu_threads": torch.get_num_threads(), "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
           "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
           "cudnn_benchmark": torch.backends.cudnn.benchmark}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["gpu_memory_gib"] = torch.cuda.get_device_properties(device).total_memory / 2**30
    return env


def inference_item(name: str, precision: str, device: torch.device, *, lat_repeats: int, lat_warmup: int,
                   batch: int, batch_repeats: int) -> dict:
    torch.manual_seed(0)
    G = build_generator(name, in_channels=1, image_size=32).to(device, memory_format=torch.channels_last).eval()
    amp = torch.bfloat16 if precision == "bf16" else None
    x1 = torch.rand(1, 1, 32, 32, device=device).mul(2).sub(1).contiguous(memory_format=torch.channels_last)
    xb = torch.rand(batch, 1, 32, 32, device=device).mul(2).sub(1).contiguous(memory_format=torch.channels_last)

    def fwd(x):
        with torch.inference_mode(), autocast(device, amp):
            return G(x)

    lat = timed_ms(lambda: fwd(x1), repeats=lat_repeats, warmup=lat_warmup, device=device)
    thr = timed_ms(lambda: fwd(xb), repeats=batch_repeats, warmup=3, device=device)
    return {"backbone": name, "precision": precision, "latency_ms_median": statistics.median(lat),
            "latency_ms_p10": sorted(lat)[len(lat) // 10], "latency_ms_p90": sorted(lat)[(9 * len(lat)) // 10],
            "latency_repeats": lat_repeats, "throughput_img_s": batch / (statistics.median(thr) / 1e3),
            "throughput_batch": batch}


def peak_item(dtype: torch.dtype, device: torch.device, n: int, repeats: int) -> dict:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        ms = timed_ms(lambda: torch.mm(a, b), repeats=repeats, warmup=2, device=device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return {"dtype": str(dtype).replace("torch.", ""), "n": n, "tflops_best": 2 * n**3 / (min(ms) / 1e3) / 1e12,
            "tflops_median": 2 * n**3 / (statistics.median(ms) / 1e3) / 1e12}


def train_item(name: str, device: torch.device, *, batch: int, steps: int, repeats: int) -> dict:
    tr = make_agad_trainer(TrainConfig(device=device.type, backbone=name, batch_size=batch))
    x = tr._prep(torch.randint(0, 256, (batch, 1, 32, 32), dtype=torch.uint8))

    def run():
        for _ in range(steps):
            tr.step(x)

    t = interleaved({"agad": run}, repeats=repeats, warmup=1, device=device)["agad"]
    return {"backbone": name, "batch_size": batch, "train_img_s": steps * batch / statistics.median(t),
            "precision": "bf16" if tr.amp_dtype == torch.bfloat16 else "fp32",
            "cudnn_benchmark": torch.backends.cudnn.benchmark}


def markdown(res: dict) -> str:
    inf = {(r["backbone"], r["precision"]): r for r in res.get("inference", []) if "backbone" in r}
    spd = {r["backbone"]: r for r in res.get("speed", []) if "backbone" in r}
    t256 = {r["backbone"]: r for r in res.get("train256", []) if "backbone" in r}
    cb = {r["backbone"]: r for r in res.get("cudnn_benchmark", []) if "backbone" in r}
    k = res["knobs"]

    def f(d, key, fmt="{:.0f}"):
        return fmt.format(d[key]) if d and key in d else "-"

    lines = [f"GPU check: {res['env'].get('gpu', res['env']['device'])}, torch {res['env']['torch']}",
             "",
             f"| backbone | latency fp32 (ms) | latency bf16 (ms) | img/s b{k['batch']} fp32 | img/s b{k['batch']} bf16 "
             f"| train img/s b{k['speed_batch']} | eager fp32 img/s | GANomaly img/s | agad/eager | agad cost/GANomaly "
             f"| train img/s b{k['t256_batch']} | train b{k['speed_batch']} cudnn.benchmark | paper A40 ms |",
             "|" + "---|" * 13]
    for name in res["backbones"]:
        s = spd.get(name)
        lines.append(
            f"| {name} | {f(inf.get((name, 'fp32')), 'latency_ms_median', '{:.2f}')} | "
            f"{f(inf.get((name, 'bf16')), 'latency_ms_median', '{:.2f}')} | {f(inf.get((name, 'fp32')), 'throughput_img_s')} | "
            f"{f(inf.get((name, 'bf16')), 'throughput_img_s')} | {f(s, 'train_img_s')} | {f(s, 'eager_fp32_img_s')} | "
            f"{f(s, 'ganomaly_img_s')} | {f(s, 'train_vs_eager', '{:.2f}x')} | {f(s, 'agad_vs_ganomaly_cost', '{:.2f}x')} | "
            f"{f(t256.get(name), 'train_img_s')} | {f(cb.get(name), 'train_img_s')} | {PAPER_TABLE8[name]['a40_ms']:.2f} |")
    lines.append("")
    for p in res.get("peak", []):
        if "tflops_best" in p:
            lines.append(f"matmul {p['dtype']} n={p['n']}: {p['tflops_best']:.1f} TFLOP/s (best), "
                         f"{p['tflops_median']:.1f} (median)")
    if spd:
        lines.append("scoring (score_images, b256): " + ", ".join(
            f"{n} {r['score_img_s']:.0f} img/s = {r['achieved_gflops'] / 1e3:.1f} TFLOP/s "
            f"({100 * r['score_peak_fraction']:.0f}% of the {r['peak_dtype']} matmul)" for n, r in spd.items()))
    errors = [e for sec in ("inference", "peak", "speed", "train256", "cudnn_benchmark") for e in res.get(sec, [])
              if "error" in e or "skipped" in e]
    if errors:
        lines.append(f"\n{len(errors)} item(s) errored or skipped: see the JSON")
    lines.append(f"\ntotal {res['seconds']:.1f} s")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSON file to write (rewritten after every item)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    ap.add_argument("--quick", action="store_true", help="tiny repeats and batches: checks that the script runs")
    ap.add_argument("--budget-s", type=float, default=80.0, help="stop starting new items after this many seconds")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    budget = Budget(args.budget_s)
    device = resolve_device(args.device)
    q = args.quick
    knobs = {
        "lat_repeats": 3 if q else 200, "lat_warmup": 1 if q else 20, "batch": 8 if q else 256,
        "batch_repeats": 1 if q else 20, "mm_n": 256 if q else (8192 if device.type == "cuda" else 2048),
        "mm_repeats": 2 if q else 10, "speed_batch": 8 if q else 64, "speed_steps": 1 if q else 10,
        "speed_repeats": 1 if q else 5, "t256_batch": 8 if q else 256, "t256_steps": 1 if q else 5,
        "t256_repeats": 1 if q else 3,
    }
    res: dict = {"backbones": args.backbones, "quick": q, "knobs": knobs, "env": section_env(device),
                 "inference": [], "peak": [], "speed": [], "train256": [], "cudnn_benchmark": []}

    def guarded(section: str, label: dict, fn) -> None:
        if not budget.left():
            res[section].append({**label, "skipped": f"budget of {budget.seconds:.0f} s spent"})
        else:
            t0 = time.perf_counter()
            try:
                item = fn()
                item["seconds"] = time.perf_counter() - t0
                res[section].append(item)
            except Exception as exc:  # noqa: BLE001 -- one failing item must not cost the whole run
                res[section].append({**label, "error": f"{type(exc).__name__}: {exc}",
                                     "traceback": traceback.format_exc(limit=8)})
                print(f"[{section} {label}] {type(exc).__name__}: {exc}", file=sys.stderr)
        res["seconds"] = budget.elapsed()
        write_json(out, res)

    for name in args.backbones:
        for prec in ("fp32", "bf16"):
            guarded("inference", {"backbone": name, "precision": prec},
                    lambda: inference_item(name, prec, device, lat_repeats=knobs["lat_repeats"],
                                           lat_warmup=knobs["lat_warmup"], batch=knobs["batch"],
                                           batch_repeats=knobs["batch_repeats"]))
    for name in args.backbones:
        def speed_row(name=name):
            row = run_speed([name], batch_size=knobs["speed_batch"], steps=knobs["speed_steps"],
                            repeats=knobs["speed_repeats"], score_batches=1 if q else 4, device=device.type)[0]
            row.pop("targets", None)
            return row
        guarded("speed", {"backbone": name}, speed_row)
    for dtype in (torch.bfloat16, torch.float32):
        guarded("peak", {"dtype": str(dtype)}, lambda: peak_item(dtype, device, knobs["mm_n"], knobs["mm_repeats"]))
    for name in args.backbones:
        guarded("train256", {"backbone": name},
                lambda: train_item(name, device, batch=knobs["t256_batch"], steps=knobs["t256_steps"],
                                   repeats=knobs["t256_repeats"]))
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        for name in args.backbones:
            guarded("cudnn_benchmark", {"backbone": name},
                    lambda: train_item(name, device, batch=knobs["speed_batch"], steps=knobs["speed_steps"],
                                       repeats=knobs["speed_repeats"]))
    finally:
        torch.backends.cudnn.benchmark = old
    res["seconds"] = budget.elapsed()
    write_json(out, res)
    print(markdown(res))
    print(f"JSON written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
