"""`python benchmarks/speed.py`: what a training step and scoring cost, measured side by side in one run.

For each generator backbone, on the same random batch and the same machine:

- ``eager_fp32_img_s``: Algorithm 1 written the obvious way (:class:`EagerAGADStep`):
  fp32, NCHW, a G phase (G(x), G(x̂), D(x̂), D(x) without grad, ``backward``)
  then a D phase (D(x), D(x̂.detach()), ``backward``);
- ``train_img_s``: :meth:`agad.train.AGADTrainer.step` as shipped (default config:
  precision, memory format and shared forward passes as agad chooses them);
- ``ganomaly_img_s``: :class:`agad.baselines.BaselineTrainer` with the same
  runtime settings -- GANomaly (encoder-decoder-encoder on the naive DCGAN
  stacks) for ``naive``, the Skip-GANomaly step (BCE + L1 + feature loss, one
  G pass) on the *same* generator for ``unet`` and ``unetpp``;
- ``score_img_s``: :func:`agad.train.score_images` at batch 256 (eval mode, inference mode);
- ``peak_gflops``: the best rate of square matmuls (512-2048 on a CPU, 4096-8192
  on a GPU) in the dtype scoring computes in (bf16 under autocast, else fp32),
  and ``achieved_gflops``: scoring's rate in G's forward FLOPs (convolutions and
  matmuls, counted by ``FlopCounterMode``).

Variants are interleaved (one timed repeat of each in turn, after warm-up) and
each number is the median of the repeats, so slow phases of a shared machine
hit every variant alike. Ratios are what to read, not absolute times.

>>> rows = run_speed(["naive"], batch_size=8, steps=1, repeats=1, score_batches=1, device="cpu")  # doctest: +SKIP
>>> sorted(rows[0])[:3]                                                                         # doctest: +SKIP
['achieved_gflops', 'agad_vs_ganomaly_cost', 'backbone']
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agad.config import BACKBONES, DEVICES, PRECISIONS, TrainConfig
from agad.nets import build_discriminator, build_generator
from agad.methods import ReconstructionScorer
from agad.runtime import resolve_device, resolve_precision

# Targets of the project's performance issue, checked on the machine that runs the benchmark.
TARGET_TRAIN_VS_EAGER = 1.7  # agad step >= 1.7x the plain eager fp32 step
TARGET_AGAD_VS_GANOMALY = 1.6  # agad step cost <= 1.6x GANomaly's step with the same backbone
TARGET_SCORE_PEAK_FRACTION = 0.5  # naive scoring at >= 50% of the measured matmul peak
SCORE_BATCH = 256
REQUIRED_KEYS = (
    "backbone", "train_img_s", "eager_fp32_img_s", "ganomaly_img_s", "score_img_s", "peak_gflops",
    "achieved_gflops", "train_vs_eager", "agad_vs_ganomaly_cost", "score_peak_fraction",
)


# ---------------------------------------------------------------------- machine
def physical_cores() -> int:
    """Physical cores (not SMT siblings) from /proc/cpuinfo; ``os.cpu_count()`` elsewhere."""
    try:
        cores, phys, core = set(), None, None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("physical id"):
                phys = line.split(":")[1].strip()
            elif line.startswith("core id"):
                core = line.split(":")[1].strip()
            elif not line.strip() and core is not None:
                cores.add((phys, core))
                phys = core = None
        if core is not None:
            cores.add((phys, core))
        if cores:
            return len(cores)
    except OSError:
        pass
    return os.cpu_count() or 1


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


MATMUL_SIZES = {"cpu": (512, 1024, 2048), "cuda": (4096, 8192)}


def matmul_fn(dtype: torch.dtype, device: torch.device, n: int) -> tuple[Callable[[], None], float]:
    """An n x n matmul and its FLOPs; the peak is the best rate over a few sizes (``MATMUL_SIZES``)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)

    def run() -> None:
        torch.mm(a, b)

    return run, 2.0 * n**3


def forward_flops(G: nn.Module, image_shape: tuple[int, int, int], device: torch.device | str = "cpu") -> int:
    """Forward FLOPs of ``G`` per image (convolutions and matmuls; elementwise ops are not counted).

    >>> forward_flops(nn.Conv2d(1, 8, 3, padding=1), (1, 32, 32))
    147456
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = G.training
    G.eval()
    try:
        x = torch.zeros(1, *image_shape, device=device)
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            G(x)
        return int(counter.get_total_flops())
    finally:
        G.train(was_training)


# ---------------------------------------------------------------------- the steps
class EagerAGADStep:
    """Algorithm 1 as a first implementation would write it: fp32, NCHW, separate G and D passes.

    The G phase runs G(x), G(x̂), D(x̂) (and D(x) without grad for the latent
    target) and calls ``backward`` (which also fills D's unused gradients); the
    D phase runs D(x) and D(x̂.detach()) again. Same losses and weights as
    :mod:`agad.losses` with the linear contextual adversarial term; it follows
    the config's ``ema_decay`` (a plain per-parameter EMA
    loop with the trainer's warm-up), so it does the same work as the shipped step.
    """

    def __init__(self, cfg: TrainConfig, G: nn.Module, D: nn.Module, device: torch.device):
        self.cfg = cfg
        self.G, self.D = G.to(device), D.to(device)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.G_ema = copy.deepcopy(self.G) if cfg.ema_decay > 0 else None
        self.n_ema = 0

    def __call__(self, x: Tensor) -> float:
        cfg, G, D = self.cfg, self.G, self.D
        G.train()
        D.train()
        # G step
        x_hat = G(x)
        x_hat2 = G(x_hat)
        fake, z_hat = D(x_hat)
        with torch.no_grad():
            _, z = D(x)
        l_adv = F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
        l_con = (x - x_hat).abs().mean()
        l_adcon = -(x_hat - x_hat2).abs().mean()
        l_lat = (z - z_hat).pow(2).mean()
        g_loss = cfg.w_adv * l_adv + cfg.w_con * l_con + cfg.w_adcon * l_adcon + cfg.w_lat * l_lat
        self.opt_g.zero_grad()
        g_loss.backward()
        self.opt_g.step()
        # D step, on the x̂ made before G's update
        real, _ = D(x)
        fake, _ = D(x_hat.detach())
        d_loss = F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)) + \
            F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
        self.opt_d.zero_grad()
        d_loss.backward()
        self.opt_d.step()
        if self.G_ema is not None:
            d = min(cfg.ema_decay, (1.0 + self.n_ema) / (10.0 + self.n_ema))
            with torch.no_grad():
                for e, p in zip(self.G_ema.state_dict().values(), G.state_dict().values()):
                    if e.is_floating_point():
                        e.mul_(d).add_(p, alpha=1.0 - d)
                    else:
                        e.copy_(p)
            self.n_ema += 1
        return float(d_loss.detach())


def _networks(backbone: str, in_channels: int, seed: int = 0, advprop: bool = False) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    return (build_generator(backbone, in_channels=in_channels, image_size=32, advprop=advprop),
            build_discriminator(in_channels=in_channels, image_size=32))


def make_agad_trainer(cfg: TrainConfig, in_channels: int = 1):
    from agad.train import AGADTrainer

    return AGADTrainer(cfg, *_networks(cfg.backbone, in_channels, cfg.seed, advprop=cfg.advprop))


def make_ganomaly_trainer(cfg: TrainConfig, in_channels: int = 1):
    """GANomaly for ``naive``; the Skip-GANomaly step on the same generator for the U-Nets."""
    from agad.baselines import BaselineTrainer, GANomalyGenerator

    torch.manual_seed(cfg.seed)
    D = build_discriminator(in_channels=in_channels, image_size=32)
    if cfg.backbone == "naive":
        return BaselineTrainer(cfg.replace(method="ganomaly"), GANomalyGenerator(in_channels=in_channels, image_size=32), D)
    G = build_generator(cfg.backbone, in_channels=in_channels, image_size=32)
    style = "zhou" if cfg.backbone == "unet" else "auto"  # AGAD's own U-Net, so that only the step differs
    return BaselineTrainer(cfg.replace(method="skip-ganomaly", unet_style=style), G, D)


def ganomaly_variant(backbone: str) -> str:
    return "GANomaly (enc-dec-enc, naive stacks)" if backbone == "naive" else f"Skip-GANomaly step on the {backbone} G"


# ---------------------------------------------------------------------- timing
def interleaved(fns: dict[str, Callable[[], Any]], *, repeats: int, warmup: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each callable, one call of each in turn per repeat, after ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def _rate(times: list[float], items: float) -> float:
    return items / statistics.median(times)


def run_speed(
    backbones: list[str],
    *,
    batch_size: int = 64,
    steps: int = 3,
    repeats: int = 5,
    warmup: int = 1,
    score_batches: int = 2,
    precision: str = "auto",
    device: str = "auto",
    in_channels: int = 1,
    base: TrainConfig | None = None,
) -> list[dict[str, Any]]:
    """One row per backbone: images/s of each variant, the matmul peak and the ratios against the targets.

    The AGAD step runs with ``advprop`` off whatever ``base`` says (the plain eager reference has no
    BN routing; the auxiliary BN does the same work as the shared one).

    ``steps`` training steps (or ``score_batches`` scoring batches) make one
    timed repeat; every number is the median over ``repeats``.
    """
    from agad.scoring import score_images

    dev = resolve_device(device)
    base = base or TrainConfig()
    # advprop off: the plain eager reference has no BN routing, and the auxiliary BN costs what the shared
    # one does (same shapes), so the comparison holds the rest of the recipe fixed.
    cfg0 = base.replace(device=dev.type, precision=precision, batch_size=batch_size, advprop=False)
    amp = resolve_precision(cfg0.precision, dev)
    peak_dtype = amp or torch.float32
    rows = []
    for backbone in backbones:
        cfg = cfg0.replace(backbone=backbone)
        gen = torch.Generator().manual_seed(0)
        x_u8 = torch.randint(0, 256, (batch_size, in_channels, 32, 32), generator=gen, dtype=torch.uint8)
        x_score = torch.randint(0, 256, (SCORE_BATCH * score_batches, in_channels, 32, 32), generator=gen,
                                dtype=torch.uint8)

        eager = EagerAGADStep(cfg, *_networks(backbone, in_channels, cfg.seed), dev)
        x_eager = x_u8.to(dev).float().div(127.5).sub(1.0)  # NCHW fp32
        agad = make_agad_trainer(cfg, in_channels)
        x_agad = agad._prep(x_u8)
        gano = make_ganomaly_trainer(cfg, in_channels)
        x_gano = gano._prep(x_u8)
        G_score = ReconstructionScorer(_networks(backbone, in_channels, cfg.seed)[0]).to(dev, memory_format=agad.memory_format)
        flops = forward_flops(G_score, (in_channels, 32, 32), dev)
        mms = {n: matmul_fn(peak_dtype, dev, n) for n in MATMUL_SIZES.get(dev.type, MATMUL_SIZES["cuda"])}

        def repeat(fn: Callable[[], Any], k: int) -> Callable[[], None]:
            def run() -> None:
                for _ in range(k):
                    fn()
            return run

        fns = {
            "eager": repeat(lambda: eager(x_eager), steps),
            "agad": repeat(lambda: agad.step(x_agad), steps),
            "ganomaly": repeat(lambda: gano.step(x_gano), steps),
            "score": lambda: score_images(G_score, x_score, batch_size=SCORE_BATCH, device=dev, amp_dtype=amp,
                                          channels_last=cfg.channels_last),
        }
        for n, (mm, _) in mms.items():
            fns[f"matmul{n}"] = repeat(mm, 3)
        t = interleaved(fns, repeats=repeats, warmup=warmup, device=dev)
        n_img = steps * batch_size
        row: dict[str, Any] = {
            "backbone": backbone,
            "device": dev.type,
            "threads": torch.get_num_threads(),
            "batch_size": batch_size,
            "in_channels": in_channels,
            "precision": "bf16" if agad.amp_dtype == torch.bfloat16 else "fp32",
            "channels_last": agad.memory_format == torch.channels_last,
            "ganomaly_variant": ganomaly_variant(backbone),
            "ema_decay": cfg.ema_decay,
            "eager_fp32_img_s": _rate(t["eager"], n_img),
            "train_img_s": _rate(t["agad"], n_img),
            "ganomaly_img_s": _rate(t["ganomaly"], n_img),
            "score_img_s": _rate(t["score"], len(x_score)),
            "score_batch": SCORE_BATCH,
            "g_forward_mflop_per_image": flops / 1e6,
            "peak_dtype": "bf16" if peak_dtype == torch.bfloat16 else "fp32",
            # a peak: the best repeat of the best size
            "peak_gflops": max(3 * fl / min(t[f"matmul{n}"]) for n, (_, fl) in mms.items()) / 1e9,
            "peak_gflops_median": max(_rate(t[f"matmul{n}"], 3 * fl) for n, (_, fl) in mms.items()) / 1e9,
            "repeats": repeats,
            "steps_per_repeat": steps,
        }
        row["achieved_gflops"] = row["score_img_s"] * flops / 1e9
        row["train_vs_eager"] = row["train_img_s"] / row["eager_fp32_img_s"]
        row["agad_vs_ganomaly_cost"] = row["ganomaly_img_s"] / row["train_img_s"]
        row["score_peak_fraction"] = row["achieved_gflops"] / row["peak_gflops"]
        row["targets"] = {
            f"train_vs_eager>={TARGET_TRAIN_VS_EAGER}": row["train_vs_eager"] >= TARGET_TRAIN_VS_EAGER,
            f"agad_vs_ganomaly_cost<={TARGET_AGAD_VS_GANOMALY}": row["agad_vs_ganomaly_cost"] <= TARGET_AGAD_VS_GANOMALY,
            f"score_peak_fraction>={TARGET_SCORE_PEAK_FRACTION}": row["score_peak_fraction"] >= TARGET_SCORE_PEAK_FRACTION,
        }
        rows.append(row)
        del eager, agad, gano, G_score
    return rows


# ---------------------------------------------------------------------- memory
def current_rss_mb() -> float:
    """Resident set size now (Linux /proc; the peak elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far.

    Linux: ``VmHWM`` of /proc/self/status (``ru_maxrss`` would also count the
    parent's RSS at fork time, kept across exec). Elsewhere ``ru_maxrss``
    (KiB on Linux, bytes on macOS).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024


def reset_peak_rss() -> bool:
    """Restart the peak-RSS count from the current RSS (Linux >= 4.0); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def scoring_memory(backbone: str = "naive", n_images: int = 70_000, *, precision: str = "auto", device: str = "auto",
                   in_channels: int = 1, batch_size: int = SCORE_BATCH, threads: int = 0) -> dict[str, Any]:
    """Peak RSS while :func:`score_images` streams ``n_images`` through G, in a fresh process.

    The child holds the images as uint8 (the float copy exists one batch at a
    time); it records the RSS after a warm-up batch, the peak after a tenth of
    the images and the peak after all of them. Flat memory means the last two
    agree: the peak does not grow with the number of images. ``threads`` (0: this
    process's count) sets the child's ``torch.set_num_threads``.
    """
    env = dict(os.environ)
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"from speed import _scoring_memory_child as f; "
            f"print(json.dumps(f({backbone!r}, {int(n_images)}, {precision!r}, {device!r}, {int(in_channels)}, "
            f"{int(batch_size)}, {int(threads or torch.get_num_threads())})))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _scoring_memory_child(backbone: str, n_images: int, precision: str, device: str, in_channels: int,
                          batch_size: int, threads: int) -> dict[str, Any]:
    from agad.scoring import score_images

    torch.set_num_threads(threads)
    dev = resolve_device(device)
    amp = resolve_precision(precision, dev)
    G = ReconstructionScorer(_networks(backbone, in_channels)[0]).to(dev, memory_format=torch.channels_last)
    x = torch.empty(n_images, in_channels, 32, 32, dtype=torch.uint8).random_()  # in place: no int64 temporary
    score_images(G, x[:batch_size], batch_size=batch_size, device=dev, amp_dtype=amp)  # warm-up: kernels, allocator
    peak_warmup = peak_rss_mb()
    peak_reset = reset_peak_rss()  # so the peaks below belong to scoring alone
    rss_before = current_rss_mb()
    tenth = max(batch_size, n_images // 10)
    t0 = time.perf_counter()
    score_images(G, x[:tenth], batch_size=batch_size, device=dev, amp_dtype=amp)
    peak_tenth = peak_rss_mb()
    s = score_images(G, x, batch_size=batch_size, device=dev, amp_dtype=amp)
    seconds = time.perf_counter() - t0
    peak_all = peak_rss_mb()
    return {
        "backbone": backbone,
        "images": n_images,
        "batch_size": batch_size,
        "input_uint8_mb": x.numel() / 2**20,
        "input_as_float32_mb": x.numel() * 4 / 2**20,
        "rss_before_mb": rss_before,
        "peak_rss_after_warmup_mb": peak_warmup,
        "peak_reset_after_warmup": peak_reset,
        "peak_rss_after_tenth_mb": peak_tenth,
        "peak_rss_after_all_mb": peak_all,
        "rss_after_mb": current_rss_mb(),
        "growth_tenth_to_all_mb": peak_all - peak_tenth,
        "scores": int(len(s)),
        "seconds": seconds,
    }


# ---------------------------------------------------------------------- report
def format_table(rows: list[dict[str, Any]]) -> str:
    head = ("| backbone | eager fp32 img/s | agad step img/s | GANomaly img/s | scoring img/s (b256) | peak GFLOP/s | "
            "scoring GFLOP/s | agad / eager | agad cost / GANomaly | scoring / peak |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['backbone']} | {r['eager_fp32_img_s']:.0f} | {r['train_img_s']:.0f} | {r['ganomaly_img_s']:.0f} | "
            f"{r['score_img_s']:.0f} | {r['peak_gflops']:.0f} ({r['peak_dtype']}) | {r['achieved_gflops']:.0f} | "
            f"{r['train_vs_eager']:.2f}x | {r['agad_vs_ganomaly_cost']:.2f}x | {100 * r['score_peak_fraction']:.0f}% |"
        )
    if rows:
        r = rows[0]
        lines.append("")
        lines.append(f"device {r['device']}, {r['threads']} threads, batch {r['batch_size']}, agad precision "
                     f"{r['precision']}, channels_last {r['channels_last']}, "
                     f"ema_decay {r['ema_decay']}; medians of {r['repeats']} interleaved "
                     f"repeats of {r['steps_per_repeat']} steps. Targets: agad/eager >= {TARGET_TRAIN_VS_EAGER}x, "
                     f"agad cost/GANomaly <= {TARGET_AGAD_VS_GANOMALY}x, naive scoring >= "
                     f"{100 * TARGET_SCORE_PEAK_FRACTION:.0f}% of peak.")
    for r in rows:
        if "score_memory" in r:
            m = r["score_memory"]
            lines.append(f"scoring {m['images']:,} images ({r['backbone']}, batch {m['batch_size']}): RSS "
                         f"{m['rss_before_mb']:.0f} MB before, peak {m['peak_rss_after_tenth_mb']:.0f} MB after "
                         f"{m['images'] // 10:,}, peak {m['peak_rss_after_all_mb']:.0f} MB after all "
                         f"(+{m['growth_tenth_to_all_mb']:.1f} MB); input {m['input_uint8_mb']:.0f} MB uint8")
    return "\n".join(lines)


def cmd_speed(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run_speed(args.backbones, batch_size=args.batch_size, steps=args.steps, repeats=args.repeats,
                     warmup=args.warmup, score_batches=args.score_batches, precision=args.precision,
                     device=args.device, in_channels=args.channels)
    if args.rss_images and rows:
        rows[0]["score_memory"] = scoring_memory(rows[0]["backbone"], args.rss_images, precision=args.precision,
                                                 device=args.device, in_channels=args.channels)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/speed.py", description=__doc__.split("\n\n>>>")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backbones", nargs="+", choices=BACKBONES, default=list(BACKBONES))
    p.add_argument("--batch-size", type=int, default=64, help="training batch (default 64, the config default)")
    p.add_argument("--steps", type=int, default=3, help="training steps per timed repeat")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per variant (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--score-batches", type=int, default=2, help="scoring batches of 256 per timed repeat")
    p.add_argument("--precision", choices=PRECISIONS, default="auto")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--channels", type=int, choices=(1, 3), default=1, help="image channels (1: MNIST-like, 3: CIFAR)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    p.add_argument("--rss-images", type=int, default=0,
                   help="also measure peak RSS while scoring this many images (e.g. 70000) with the first backbone")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    return p


if __name__ == "__main__":
    raise SystemExit(cmd_speed(build_parser().parse_args()))
