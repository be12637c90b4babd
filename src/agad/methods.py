"""The method table: how each method in the harness builds its networks, trains and scores.

Every entry gives the same four things, so the CLI, the estimator, the
harness, export and the tests treat all methods alike (a new method is tested
the moment it is registered):

- ``build(cfg, in_channels, image_size) -> Nets``: the networks, seeded by ``cfg.seed``;
- ``trainer(cfg, nets, dist_info)``: an object with ``fit(x_normal, x_anomaly, *, progress, on_epoch)``
  returning one record per epoch, ``epoch``, ``d_resets`` and ``scoring_nets()`` (the networks that score
  now: e.g. the EMA copy of G);
- ``scorer(nets) -> nn.Module``: maps images in [-1, 1], (B, C, S, S), to scores (B,), higher = more
  anomalous; where the method reconstructs, the module also has ``reconstruct(x)``;
- ``labels`` (from :data:`agad.config.METHOD_LABELS`): what the method does with labelled anomalies: "uses"
  them when given, "ignores" them (the semi-supervised baselines refuse gamma > 0) or "needs" them (the
  supervised references refuse gamma 0).

``Nets.G`` is what ``generator.safetensors`` holds (for the references, their only network) and ``Nets.D``
what ``discriminator.safetensors`` holds, if anything.

>>> sorted(METHODS)
['agad', 'cnn', 'deep-sad', 'ganomaly', 'logreg', 'skip-ganomaly']
>>> get_method("naive")
Traceback (most recent call last):
...
agad.errors.AgadError: unknown method 'naive'; choose one of: agad, ganomaly, skip-ganomaly, logreg, cnn, deep-sad
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from . import baselines, losses
from .config import METHOD_LABELS, TrainConfig
from .errors import AgadError
from .nets import Nets, build_discriminator, build_generator
from .runtime import DistInfo
from .train import AGADTrainer


class ReconstructionScorer(nn.Module):
    """AGAD's score A(x) = ||x - G(x)||_2 per image."""

    def __init__(self, G: nn.Module):
        super().__init__()
        self.G = G

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.G(x)

    def score_and_reconstruct(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_hat = self.G(x)
        return losses.anomaly_score(x, x_hat), x_hat

    def forward(self, x: Tensor) -> Tensor:
        return self.score_and_reconstruct(x)[0]


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    build: Callable[[TrainConfig, int, int], Nets]
    trainer: Callable[[TrainConfig, Nets, DistInfo | None], Any]
    scorer: Callable[[Nets], nn.Module]

    @property
    def labels(self) -> str:
        """What the method does with labelled anomalies (agad.config.METHOD_LABELS): uses, ignores or needs."""
        return METHOD_LABELS[self.name]


# ------------------------------------------------------------------------------------------------ AGAD
def _build_agad(cfg: TrainConfig, in_channels: int, image_size: int) -> Nets:
    torch.manual_seed(cfg.seed)
    style = {"style": cfg.resolved_unet_style()} if cfg.backbone == "unet" else {}
    if cfg.g_norm != "batch":
        style["norm"] = cfg.g_norm
    G = build_generator(cfg.backbone, in_channels=in_channels, image_size=image_size, advprop=cfg.advprop, **style)
    D = build_discriminator(in_channels=in_channels, image_size=image_size)
    return Nets(G, D)


def _agad_trainer(cfg: TrainConfig, nets: Nets, dist_info: DistInfo | None) -> AGADTrainer:
    return AGADTrainer(cfg, nets.G, nets.D, dist_info=dist_info)


# ------------------------------------------------------------------------------------------- baselines
def _build_baseline(cfg: TrainConfig, in_channels: int, image_size: int) -> Nets:
    torch.manual_seed(cfg.seed)
    G, D = baselines.build_baseline_networks(cfg, in_channels=in_channels, image_size=image_size)
    return Nets(G, D)


def _baseline_trainer(cfg: TrainConfig, nets: Nets, dist_info: DistInfo | None) -> baselines.BaselineTrainer:
    return baselines.BaselineTrainer(cfg, nets.G, nets.D, dist_info=dist_info)


# ------------------------------------------------------------------------------------------ references
class ReferenceTrainer:
    """Adapts :func:`agad.references.fit_reference` to the trainer interface of the table."""

    def __init__(self, cfg: TrainConfig, nets: Nets, dist_info: DistInfo | None = None):
        if dist_info is not None and dist_info.enabled:
            raise AgadError(f"method {cfg.method} trains in one process; run it without torchrun")
        self.cfg, self.nets = cfg, nets
        self.D = None
        self.epoch = 0
        self.d_resets = 0
        self.history: list[dict[str, float]] = []

    def scoring_nets(self) -> Nets:
        return self.nets

    def fit(self, x_normal: Tensor, x_anomaly: Tensor | None = None, *, progress: bool = True,
            on_epoch: Callable[[Any, dict[str, float]], None] | None = None) -> list[dict[str, float]]:
        from . import references
        from .runtime import resolve_device

        def hook(_module: nn.Module, record: dict[str, float]) -> None:
            self.epoch = int(record.get("epoch", self.epoch + 1))
            if on_epoch is not None:
                on_epoch(self, record)

        self.history = references.fit_reference(
            self.cfg.method, self.nets.G, x_normal, x_anomaly, seed=self.cfg.seed, progress=progress,
            on_epoch=hook, device=str(resolve_device(self.cfg.device)))
        # the memory format a loaded run gets (agad.pipeline.load_run), so that scores match bit for bit
        self.nets.G.to(memory_format=torch.channels_last if self.cfg.channels_last else torch.contiguous_format)
        return self.history


def _reference(name: str) -> Callable[[TrainConfig, int, int], Nets]:
    def build(cfg: TrainConfig, in_channels: int, image_size: int) -> Nets:
        from . import references

        return Nets(references.build_reference(name, in_channels=in_channels, image_size=image_size,
                                               seed=cfg.seed))

    return build


# ------------------------------------------------------------------------------------------------ table
METHODS: dict[str, Method] = {
    "agad": Method("agad", "AGAD: reconstruction error of a generator trained to fail on (pseudo-)anomalies",
                   _build_agad, _agad_trainer, lambda nets: ReconstructionScorer(nets.G)),
    "ganomaly": Method("ganomaly", "GANomaly (Akçay et al. 2018): latent distance of an encoder-decoder-encoder",
                       _build_baseline, _baseline_trainer, lambda nets: baselines.LatentScorer(nets.G)),
    "skip-ganomaly": Method("skip-ganomaly", "Skip-GANomaly (Akçay et al. 2019): U-Net reconstruction and "
                            "discriminator features", _build_baseline, _baseline_trainer,
                            lambda nets: baselines.SkipGANomalyScorer(nets.G, nets.D)),
    "logreg": Method("logreg", "logistic regression on pixels, trained on normals and labelled anomalies",
                     _reference("logreg"), ReferenceTrainer, lambda nets: nets.G),
    "cnn": Method("cnn", "a small CNN classifier trained on normals and labelled anomalies",
                  _reference("cnn"), ReferenceTrainer, lambda nets: nets.G),
    "deep-sad": Method("deep-sad", "Deep SAD (Ruff et al. 2020): hypersphere distance, labelled anomalies pushed "
                       "out", _reference("deep-sad"), ReferenceTrainer, lambda nets: nets.G),
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise AgadError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[name]
