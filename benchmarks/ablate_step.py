"""Which runtime switch pays on this machine: AGADTrainer.step and scoring under each variant, interleaved.

    PYTHONPATH=src python benchmarks/ablate_step.py --backbones naive unet --threads 1 --repeats 5
    PYTHONPATH=src python benchmarks/ablate_step.py --backbones naive --variants fp32-nchw bf16-nchw compile-bf16-nchw

A variant is ``[compile-]{fp32|bf16}-{nchw|cl}``. Every variant trains its own
copy of the same seeded networks on the same batch; one timed repeat of each
runs in turn, and the median is printed with its ratio to the first variant.
Scoring variants time :func:`agad.scoring.score_images` at batch 256.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from agad.config import TrainConfig
from speed import SCORE_BATCH, _networks, interleaved, make_agad_trainer
from agad.methods import ReconstructionScorer
from agad.runtime import resolve_device, resolve_precision
from agad.scoring import score_images

DEFAULT_VARIANTS = ("fp32-nchw", "fp32-cl", "bf16-nchw", "bf16-cl")


def parse_variant(name: str) -> dict:
    parts = name.split("-")
    compile_ = parts[0] == "compile"
    if compile_:
        parts = parts[1:]
    if len(parts) != 2 or parts[0] not in ("fp32", "bf16") or parts[1] not in ("nchw", "cl"):
        raise SystemExit(f"bad variant {name!r}: expected [compile-]fp32|bf16-nchw|cl")
    return {"precision": parts[0], "channels_last": parts[1] == "cl", "compile": compile_}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", nargs="+", default=["naive", "unet", "unetpp"])
    ap.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--no-score", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    results = []
    for bb in args.backbones:
        x_u8 = torch.randint(0, 256, (args.batch_size, 1, 32, 32), generator=torch.Generator().manual_seed(0),
                             dtype=torch.uint8)
        x_score = torch.randint(0, 256, (SCORE_BATCH, 1, 32, 32), dtype=torch.uint8)
        fns = {}
        for v in args.variants:
            opts = parse_variant(v)
            cfg = TrainConfig(device=dev.type, backbone=bb, batch_size=args.batch_size, **opts)
            if not args.no_train:
                tr = make_agad_trainer(cfg)
                x = tr._prep(x_u8)

                def step(tr=tr, x=x):
                    for _ in range(args.steps):
                        tr.step(x)

                fns[f"train {v}"] = step
            if not args.no_score:
                fmt = torch.channels_last if opts["channels_last"] else torch.contiguous_format
                G = ReconstructionScorer(_networks(bb, 1)[0]).to(dev, memory_format=fmt).eval()
                if opts["compile"]:
                    G = torch.compile(G)
                amp = resolve_precision(opts["precision"], dev)
                fns[f"score {v}"] = (lambda G=G, amp=amp, cl=opts["channels_last"]:
                                     score_images(G, x_score, device=dev, amp_dtype=amp, channels_last=cl))
        times = interleaved(fns, repeats=args.repeats, warmup=1, device=dev)
        base = {}
        for name, t in times.items():
            kind = name.split()[0]
            n = args.batch_size * args.steps if kind == "train" else SCORE_BATCH
            rate = n / statistics.median(t)
            base.setdefault(kind, rate)
            spread = (min(t), max(t))
            results.append({"backbone": bb, "variant": name, "img_s": rate, "vs_first": rate / base[kind],
                            "min_s": spread[0], "max_s": spread[1]})
            if not args.json:
                print(f"{bb:7s} {name:28s} {rate:9.1f} img/s  x{rate / base[kind]:.2f}  "
                      f"(min {spread[0]:.3f}s, max {spread[1]:.3f}s)", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
