"""Algorithm 1 of the paper: a plain training loop you can read top to bottom.

The loop takes image tensors, two networks and a config; it knows nothing
about files or dataset names. Each step has two named phases, the G step and
the D step, and reports every loss term by name (``G/con``, ``D/total``...).

One step reuses its forward passes: D(x) and D(x̂) are computed once and feed
both the generator's loss (through x̂) and the discriminator's loss. Since
Algorithm 1 updates D with the x̂ made *before* G's update (as GANomaly does),
computing both gradients before either optimiser step gives the same update
as two separate passes, without repeating D's passes (D is small beside G:
measured 1-5% of a CPU step; bf16 autocast and channels_last give the rest,
see docs/PERFORMANCE.md).

>>> from agad.config import TrainConfig
>>> from agad.nets import build_generator, build_discriminator
>>> import torch
>>> cfg = TrainConfig(epochs=1, batch_size=8, device="cpu", precision="fp32")
>>> G = build_generator("naive", in_channels=1, image_size=32, advprop=cfg.advprop)
>>> D = build_discriminator(in_channels=1, image_size=32)
>>> trainer = AGADTrainer(cfg, G, D)
>>> history = trainer.fit(torch.randint(0, 255, (16, 1, 32, 32), dtype=torch.uint8), progress=False)
>>> sorted(history[0])[:3]
['D/normal', 'D/total', 'G/adcon']
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections import defaultdict
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from . import losses
from .config import TrainConfig
from .errors import AgadError
from .nets import Nets, aux_bn, frozen_bn, has_aux_bn, init_weights, recompute_bn_statistics, untracked_bn
from .runtime import DistInfo, autocast, resolve_device, resolve_precision
from .scoring import to_unit_range


def _l1_per_image(a: Tensor, b: Tensor) -> Tensor:
    """Mean |a - b| of each image, shape (B,); its mean is losses.contextual_loss(a, b)."""
    return (a.float() - b.float()).abs().flatten(1).mean(1)


class AnomalyStream:
    """Endless reshuffled passes over the labelled anomalies (they are few: resample as needed).

    Its state (the generator, the current pass and the position in it) is saved with a checkpoint, so a
    resumed run draws the same anomalies as an uninterrupted one.

    >>> s = AnomalyStream(3, torch.Generator().manual_seed(0))
    >>> sorted(s.take(3)) == [0, 1, 2]
    True
    """

    def __init__(self, n: int, generator: torch.Generator):
        self.n, self.generator = n, generator
        self.order = torch.zeros(0, dtype=torch.int64)
        self.pos = 0

    def take(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            if self.pos >= len(self.order):
                self.order, self.pos = torch.randperm(self.n, generator=self.generator), 0
            m = min(k - len(out), len(self.order) - self.pos)
            out += self.order[self.pos : self.pos + m].tolist()
            self.pos += m
        return out


def _ema_with_warmup(decay: float):
    """EMA update whose decay grows as min(decay, (1 + n) / (10 + n)) with the update count n.

    A fixed decay would keep ``decay**steps`` of the random initial weights in
    short runs (0.99 over 72 steps keeps half); the warm-up, as in
    TensorFlow's ExponentialMovingAverage, forgets the start quickly. A slower warm-up (2, reaching
    ``decay`` after about 200 updates) lost its selection: the average lagged the generator
    (docs/DECISIONS.md, "Removed options").
    """

    def update(ema_params, current_params, num_averaged):
        n = int(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        floats = [(e, c) for e, c in zip(ema_params, current_params) if e.is_floating_point()]
        for e, c in zip(ema_params, current_params):
            if not e.is_floating_point():  # BN's num_batches_tracked: a counter, copied
                e.copy_(c)
        if floats:
            torch._foreach_lerp_([e for e, _ in floats], [c for _, c in floats], 1.0 - d)

    return update


class AGADTrainer:
    """Owns G, D, their optimisers and the optional EMA copy of G.

    ``fit`` runs Algorithm 1 for ``cfg.epochs`` epochs over the normal images
    (and the labelled anomalies, if any) and returns one dict of mean loss
    terms per epoch.
    """

    def __init__(self, cfg: TrainConfig, G: nn.Module, D: nn.Module, *, dist_info: DistInfo | None = None):
        if cfg.method == "agad" and cfg.advprop and not has_aux_bn(G):
            raise AgadError("the config asks for AdvProp (advprop=True) but the generator has no auxiliary BN; "
                            "build it with build_generator(..., advprop=cfg.advprop) or set advprop=False")
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.amp_dtype = resolve_precision(cfg.precision, self.device)
        self.dist = dist_info or DistInfo()
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.memory_format = fmt
        self.G = G.to(self.device, memory_format=fmt)
        self.D = D.to(self.device, memory_format=fmt)
        if self.dist.enabled:  # every process starts from rank 0's weights
            for module in (self.G, self.D):
                for t in list(module.parameters()) + list(module.buffers()):
                    dist.broadcast(t.data, src=0)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.G_ema = (
            AveragedModel(self.G, multi_avg_fn=_ema_with_warmup(cfg.ema_decay), use_buffers=True)
            if cfg.ema_decay > 0
            else None
        )
        if cfg.compile:
            import torch._functorch.config as functorch_config

            # step() takes G's and D's gradients from one graph (retain_graph=True), which compiled
            # backwards that donate their saved buffers refuse (PyTorch >= 2.6 donates by default).
            if hasattr(functorch_config, "donated_buffer"):
                functorch_config.donated_buffer = False
        self._g_fwd = torch.compile(self.G) if cfg.compile else self.G
        self._d_fwd = torch.compile(self.D) if cfg.compile else self.D
        self.epoch = 0
        self.steps = 0  # optimizer steps taken
        self.d_resets = 0
        self.history: list[dict[str, float]] = []
        self._rescored: nn.Module | None = None  # scoring_bn="recomputed": set at the end of each epoch of fit
        self.batch_gen = torch.Generator().manual_seed(cfg.seed)  # batch order
        self.stream: AnomalyStream | None = None  # labelled anomalies, made by the first fit that has them
        self._anomaly_gen = torch.Generator().manual_seed(cfg.seed + 1)

    # ------------------------------------------------------------------ helpers
    @property
    def scoring_generator(self) -> nn.Module:
        """The generator that scores images: the EMA copy when enabled; with ``scoring_bn="recomputed"``, a copy
        of it with recomputed BN statistics, made at the end of the last epoch of :meth:`fit`."""
        if self._rescored is not None:
            return self._rescored
        return self.G_ema.module if self.G_ema is not None else self.G

    def scoring_nets(self) -> Nets:
        """The networks that score now (agad.methods' trainer interface)."""
        return Nets(self.scoring_generator, self.D)

    def _recompute_scoring_bn(self, x_normal: Tensor, x_anomaly: Tensor | None) -> None:
        """scoring_bn="recomputed": refresh the scoring copy from the current (EMA) generator."""
        self._rescored = None
        G = copy.deepcopy(self.scoring_generator)
        size = self.cfg.eval_batch_size

        def batches(x: Tensor):
            return (x[i : i + size] for i in range(0, len(x), size) if len(x) - i > 1)  # BN needs two images

        with autocast(self.device, self.amp_dtype):
            recompute_bn_statistics(G, batches(x_normal), None if x_anomaly is None else batches(x_anomaly),
                                    self.cfg.scoring_bn_anomaly_weight)
        self._rescored = G

    def _prep(self, x: Tensor) -> Tensor:
        return to_unit_range(x.to(self.device, non_blocking=True)).contiguous(memory_format=self.memory_format)

    def _pseudo(self, x_hat: Tensor) -> Tensor:
        """The pseudo-anomaly x̂₂ = G(x̂), through the auxiliary BN when AdvProp is on."""
        with contextlib.ExitStack() as stack:
            if self.cfg.advprop:
                stack.enter_context(aux_bn(self.G))
            if not self.cfg.track_bn_pseudo:
                stack.enter_context(untracked_bn(self.G))
            return self._g_fwd(x_hat)

    # --------------------------------------------------------------------- step
    def step(self, x_n: Tensor, x_a: Tensor | None = None) -> dict[str, float]:
        """One step of Algorithm 1 on a batch of normal images and, optionally, labelled anomalies.

        Both inputs are (B, C, H, W), already in [-1, 1] on the device.
        """
        cfg = self.cfg
        self.G.train()
        self.D.train()
        w_adcon = cfg.w_adcon if cfg.ca else 0.0
        n_n = x_n.shape[0]
        n_a = 0 if x_a is None else x_a.shape[0]
        f_n, f_a = n_n / (n_n + n_a), n_a / (n_n + n_a)  # L = y·L_a + (1 - y)·L_n averaged over the batch
        logs: dict[str, Tensor] = {}

        with autocast(self.device, self.amp_dtype):
            # -- normal images (Algorithm 1, lines 6-7)
            x_hat = self._g_fwd(x_n)  # (B, C, H, W)
            x_hat2 = self._pseudo(x_hat) if w_adcon > 0 else None
            real_logits, z = self._d_fwd(x_n)
            fake_logits, z_hat = self._d_fwd(x_hat)
            g_terms = losses.generator_normal_loss(
                fake_logits=fake_logits, x=x_n, x_hat=x_hat, x_hat2=x_hat2, z=z.detach(), z_hat=z_hat,
                w_adv=cfg.w_adv, w_con=cfg.w_con, w_adcon=w_adcon, w_lat=cfg.w_lat, eps=cfg.eps,
                adcon_cap=cfg.adcon_cap,
            )
            # D sees x̂ as it was before G's update; autograd.grad below keeps G out of D's gradient.
            d_loss = losses.discriminator_loss(real_logits=real_logits, fake_logits=fake_logits)
            g_loss = f_n * g_terms["total"]
            d_total = f_n * d_loss
            for k, v in g_terms.items():
                logs[f"G/{k}"] = v
            logs["D/normal"] = d_loss

            # -- labelled anomalies (lines 9-10)
            if n_a:
                if cfg.freeze_bn_anomalies:
                    bn_mode = frozen_bn(self.G)
                elif not cfg.track_bn_anomalies:
                    bn_mode = untracked_bn(self.G)
                else:
                    bn_mode = contextlib.nullcontext()
                with bn_mode:
                    xa_hat = self._g_fwd(x_a)
                    if cfg.anomaly_distance == "pseudo":
                        with aux_bn(self.G) if cfg.advprop else contextlib.nullcontext():  # a pseudo pass too
                            dist_a = _l1_per_image(xa_hat, self._g_fwd(xa_hat))
                    else:
                        dist_a = _l1_per_image(x_a, xa_hat)
                real_a_logits, z_a = self._d_fwd(x_a)
                fake_a_logits, z_a_hat = self._d_fwd(xa_hat)
                a_terms = losses.generator_anomaly_loss(
                    fake_logits=fake_a_logits, distance=dist_a, z=z_a.detach(), z_hat=z_a_hat,
                    w_adv=cfg.w_adv, w_adcon=cfg.w_adcon, w_lat=cfg.w_lat, eps=cfg.eps,
                )
                d_a = losses.discriminator_anomaly_loss(real_logits=real_a_logits)
                g_loss = g_loss + f_a * a_terms["total"]
                d_total = d_total + f_a * d_a
                for k, v in a_terms.items():
                    logs[f"G/anomaly/{k}"] = v
                logs["D/anomaly"] = d_a
                head = getattr(self.G, "label_head", None)
                if head is not None:  # label_head: its loss reaches its own weights only
                    logs["head/bce"] = losses.label_head_loss(head(x_n), head(x_a))

        # -- G step then D step: both gradients from the same forward passes
        g_params = [p for p in self.G.parameters() if p.requires_grad]
        d_params = [p for p in self.D.parameters() if p.requires_grad]
        g_objective = g_loss + logs["head/bce"] if "head/bce" in logs else g_loss  # the head trains with G's optimiser
        g_grads = torch.autograd.grad(g_objective, g_params, retain_graph=True, allow_unused=True)
        d_grads = torch.autograd.grad(d_total, d_params, allow_unused=True)
        self._apply(self.opt_g, g_params, g_grads)
        self._apply(self.opt_d, d_params, d_grads)
        if self.G_ema is not None:
            self.G_ema.update_parameters(self.G)

        logs["G/total"] = g_loss
        logs["D/total"] = d_total
        # one device sync per step for all logged scalars (not one per term)
        out = dict(zip(logs, torch.stack([v.detach().float() for v in logs.values()]).tolist()))
        self._maybe_reset_discriminator(out["D/total"])
        return out

    # ------------------------------------------------------------------ resume
    def training_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Everything a resumed run needs to continue bit for bit: (named tensors, JSON metadata).

        Networks (with batch-norm statistics), optimiser moments, the EMA copy, every RNG the loop draws
        from (batch order, labelled anomalies, and torch's global RNG, which re-initialises D), counters and
        the history so far.
        """
        tensors: dict[str, Tensor] = {}
        meta: dict[str, Any] = {"epoch": self.epoch, "steps": self.steps, "d_resets": self.d_resets,
                                "history": self.history}
        for name, module in (("G", self.G), ("D", self.D)) + ((("G_ema", self.G_ema),) if self.G_ema else ()):
            for k, v in module.state_dict().items():
                tensors[f"{name}/{k}"] = v
        for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            sd = opt.state_dict()
            meta[name] = {"param_groups": sd["param_groups"], "state_keys": {}}
            for idx, st in sd["state"].items():
                meta[name]["state_keys"][str(idx)] = sorted(st)
                for k, v in st.items():
                    tensors[f"{name}/{idx}/{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
        tensors["rng/batch"] = self.batch_gen.get_state()
        tensors["rng/anomaly"] = self._anomaly_gen.get_state()
        tensors["rng/cpu"] = torch.get_rng_state()
        if self.stream is not None:
            tensors["stream/order"] = self.stream.order
            meta["stream_pos"] = self.stream.pos
            meta["stream_n"] = self.stream.n
        return tensors, meta

    def load_training_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        """Continue from :meth:`training_state` (the same config and networks must have been built)."""
        for name, module in (("G", self.G), ("D", self.D)) + ((("G_ema", self.G_ema),) if self.G_ema else ()):
            prefix = f"{name}/"
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            state = {int(idx): {k: tensors[f"{name}/{idx}/{k}"] for k in keys}
                     for idx, keys in meta[name]["state_keys"].items()}
            opt.load_state_dict({"state": state, "param_groups": meta[name]["param_groups"]})
        self.batch_gen.set_state(tensors["rng/batch"])
        self._anomaly_gen.set_state(tensors["rng/anomaly"])
        torch.set_rng_state(tensors["rng/cpu"])
        if "stream/order" in tensors:
            self.stream = AnomalyStream(int(meta["stream_n"]), self._anomaly_gen)
            self.stream.order, self.stream.pos = tensors["stream/order"].to(torch.int64), int(meta["stream_pos"])
        self.epoch, self.steps, self.d_resets = int(meta["epoch"]), int(meta["steps"]), int(meta["d_resets"])
        self.history = [dict(h) for h in meta["history"]]

    def steps_per_epoch(self, n: int) -> int:
        """Optimizer steps in one epoch over ``n`` normal images (this process's shard; a last batch of one
        image is dropped, as in :meth:`fit`).

        >>> from agad.config import TrainConfig
        >>> from agad.nets import build_generator, build_discriminator
        >>> tr = AGADTrainer(TrainConfig(device="cpu"), build_generator("naive", in_channels=1, image_size=32,
        ...                  advprop=True), build_discriminator(in_channels=1, image_size=32))
        >>> tr.steps_per_epoch(400), tr.steps_per_epoch(6000), tr.steps_per_epoch(129)
        (7, 94, 2)
        """
        ws = self.dist.world_size if self.dist.enabled else 1
        per_shard = (n - n % ws) // ws if self.dist.enabled else n
        batches = math.ceil(per_shard / self.cfg.batch_size)
        if batches > 1 and per_shard - (batches - 1) * self.cfg.batch_size < 2:
            batches -= 1
        return max(1, batches)

    def _maybe_reset_discriminator(self, d_loss: float) -> None:
        """GANomaly's trick (Algorithm 1): a discriminator that has won outright is re-initialised.

        In a data-parallel run the decision uses the loss averaged over processes, so every copy of D
        resets together (and from rank 0's new weights).
        """
        if self.dist.enabled:
            t = torch.tensor([d_loss], dtype=torch.float64)
            dist.all_reduce(t)
            d_loss = float(t) / self.dist.world_size
        if d_loss < self.cfg.delta:
            init_weights(self.D)
            if self.dist.enabled:
                for t in list(self.D.parameters()) + list(self.D.buffers()):
                    dist.broadcast(t.data, src=0)
            self.d_resets += 1

    def _apply(self, opt: torch.optim.Optimizer, params, grads) -> None:
        for p, g in zip(params, grads):
            p.grad = g if g is not None else torch.zeros_like(p)
        if self.dist.enabled:  # data parallel: average gradients over processes, as DDP does
            flat = torch.cat([p.grad.reshape(-1) for p in params])
            dist.all_reduce(flat)
            flat.div_(self.dist.world_size)
            offset = 0
            for p in params:
                n = p.numel()
                p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
                offset += n
        opt.step()
        opt.zero_grad(set_to_none=True)

    # ---------------------------------------------------------------------- fit
    def fit(
        self,
        x_normal: Tensor,
        x_anomaly: Tensor | None = None,
        *,
        epochs: int | None = None,
        progress: bool = True,
        on_epoch: Callable[["AGADTrainer", dict[str, float]], None] | None = None,
    ) -> list[dict[str, float]]:
        """Train for ``epochs`` (default ``cfg.epochs``) over the normal images.

        ``x_normal`` and ``x_anomaly`` are (N, C, H, W) uint8 or [-1, 1] float
        tensors held in memory; batches are sliced from them with no per-item
        Python work. In a torchrun job each process sees its own shard.
        """
        from tqdm.auto import tqdm

        cfg = self.cfg
        epochs_arg, epochs = epochs, cfg.resolved_epochs() if epochs is None else epochs
        x_normal = self._prep(x_normal)  # converted once: the data path is tensor slicing from here on
        has_anomalies = x_anomaly is not None and len(x_anomaly) > 0
        x_anomaly = self._prep(x_anomaly) if has_anomalies else None
        gen = self.batch_gen
        if has_anomalies and self.stream is None:
            self.stream = AnomalyStream(len(x_anomaly), self._anomaly_gen)
        stream = self.stream if has_anomalies else None

        # batch_size counts normal images; labelled anomalies ride on top, at least min_anomalies_per_batch of
        # them (Algorithm 1), so an epoch has as many steps with and without labelled anomalies.
        ratio = cfg.gamma / (1.0 - cfg.gamma)
        n_a = max(cfg.min_anomalies_per_batch, round(ratio * cfg.batch_size)) if has_anomalies else 0
        n_n = cfg.batch_size
        n = len(x_normal)
        min_steps = cfg.resolved_min_steps()
        if min_steps and epochs_arg is None:  # a budget in steps: as many epochs as it takes
            epochs = max(epochs, math.ceil(min_steps / self.steps_per_epoch(n)))
        if epochs_arg is None:  # the config's budget counts from the start: a resumed run does the rest
            epochs = max(0, epochs - self.epoch)
            if epochs == 0 and cfg.scoring_bn == "recomputed" and self._rescored is None:
                self._recompute_scoring_bn(x_normal, x_anomaly)
        last_epoch = self.epoch + epochs
        for _ in range(epochs):
            t0 = time.perf_counter()
            order = torch.randperm(n, generator=gen)  # same on every process; each takes its shard
            if self.dist.enabled:  # equal shards, so every process runs the same number of steps
                order = order[: n - n % self.dist.world_size]
            order = order[self.dist.rank :: self.dist.world_size]
            batches = [order[i : i + n_n] for i in range(0, len(order), n_n)]
            if len(batches) > 1 and len(batches[-1]) < 2:  # BN needs two images
                batches.pop()
            sums: dict[str, float] = defaultdict(float)
            bar = tqdm(
                batches, desc=f"epoch {self.epoch + 1}/{last_epoch}",
                disable=not progress or not self.dist.is_main, leave=False, dynamic_ncols=True,
            )
            for i, idx in enumerate(bar):
                x_a = None
                if stream is not None:
                    a_idx = torch.tensor(stream.take(n_a))
                    x_a = x_anomaly[a_idx]
                logs = self.step(x_normal[idx], x_a)
                self.steps += 1
                for k, v in logs.items():
                    sums[k] += v
                if progress and i % 5 == 0:
                    bar.set_postfix({k.split("/", 1)[1] if k.startswith("G/") and "anomaly" not in k else k: f"{v:.3g}"
                                     for k, v in logs.items() if k in ("G/adv", "G/con", "G/adcon", "G/lat", "D/total")})
            if self.dist.enabled:  # BN running statistics: keep rank 0's, as DDP does
                for module in (self.G, self.D):
                    for b in module.buffers():
                        dist.broadcast(b.data, src=0)
            self.epoch += 1
            if cfg.scoring_bn == "recomputed":
                self._recompute_scoring_bn(x_normal, x_anomaly)
            record = {k: v / max(1, len(batches)) for k, v in sums.items()}
            record["epoch"] = self.epoch
            record["steps"] = self.steps
            record["seconds"] = time.perf_counter() - t0
            record["d_resets"] = self.d_resets
            if not math.isfinite(record.get("G/total", 0.0)):
                record["nonfinite"] = 1.0
            if on_epoch is not None:
                on_epoch(self, record)
            self.history.append(record)
            if progress and self.dist.is_main:
                terms = " ".join(f"{k}={record[k]:.4g}" for k in ("G/adv", "G/con", "G/adcon", "G/lat", "D/total") if k in record)
                extra = "".join(f" {k}={record[k]:.4f}" for k in ("val/auroc", "val/recon", "test/auroc") if k in record)
                tqdm.write(f"epoch {self.epoch}: {terms}{extra} ({record['seconds']:.1f}s)")
        return self.history

