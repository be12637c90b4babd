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

LABEL_HEAD_SEED_OFFSET = 7919  # the label head's initial weights come from seed + this


class LabelHead(nn.Module):
    """AGAD's optional classifier for labelled anomalies (``label_head``), held by G as ``G.label_head``.

    The network of the ``cnn`` reference (no batch norm, so no running statistics), trained beside G on
    normal (0) against labelled anomalous (1) images; its gradient reaches no weight of G. ``calibration``
    holds the mean and standard deviation, on normal training images, of the reconstruction score and of
    the logit, so that the score adds the two parts on one scale: (A - m_A) / s_A + (h - m_h) / s_h.
    """

    def __init__(self, in_channels: int, image_size: int):
        from .references import CNNDetector

        super().__init__()
        self.net = CNNDetector(in_channels, image_size)
        self.register_buffer("calibration", torch.tensor([0.0, 1.0, 0.0, 1.0]))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def combine(self, recon: Tensor, logit: Tensor) -> Tensor:
        c = self.calibration
        return (recon.float() - c[0]) / c[1] + (logit.float() - c[2]) / c[3]


def label_head_of(G: nn.Module) -> LabelHead | None:
    return getattr(G, "label_head", None)


class ReconstructionScorer(nn.Module):
    """AGAD's score A(x) = ||x - G(x)||_2 per image; with a label head (and ``with_head``), A and the head's
    logit standardised and added (:class:`LabelHead`)."""

    def __init__(self, G: nn.Module, *, with_head: bool = True):
        super().__init__()
        self.G = G
        self.with_head = with_head

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.G(x)

    def score_and_reconstruct(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_hat = self.G(x)
        score = losses.anomaly_score(x, x_hat)
        head = label_head_of(self.G) if self.with_head else None
        if head is not None:
            score = head.combine(score, head(x))
        return score, x_hat

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
    G = build_generator(cfg.backbone, in_channels=in_channels, image_size=image_size, advprop=cfg.advprop, **style)
    D = build_discriminator(in_channels=in_channels, image_size=image_size, spectral_norm=cfg.d_spectral_norm)
    if cfg.uses_label_head():  # its own random stream: G, D and what training draws stay as without it
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + LABEL_HEAD_SEED_OFFSET)
            G.label_head = LabelHead(in_channels, image_size)
    return Nets(G, D)


def without_label_head(scorer: nn.Module) -> nn.Module:
    """The reconstruction part of a scorer with a label head (what the held-out epoch rules read); any other
    scorer as it is."""
    if isinstance(scorer, ReconstructionScorer) and scorer.with_head and label_head_of(scorer.G) is not None:
        return ReconstructionScorer(scorer.G, with_head=False)
    return scorer


def calibrate_label_head(scorer: nn.Module, x: Any, score: Callable[[nn.Module, Any], Any]) -> None:
    """Set the calibration of ``scorer``'s label head (if any) from normal images ``x``.

    ``score(module, x)`` returns one score per image (e.g. :func:`agad.scoring.score_images` with the run's
    batch size and device). Nothing happens for a scorer without a label head.
    """
    head = label_head_of(getattr(scorer, "G", nn.Module()))
    if head is None:
        return
    recon = score(without_label_head(scorer), x)
    logit = score(head, x)
    values = [recon.mean(), recon.std(), logit.mean(), logit.std()]
    values[1], values[3] = max(float(values[1]), 1e-6), max(float(values[3]), 1e-6)
    head.calibration.copy_(torch.tensor([float(v) for v in values], device=head.calibration.device))


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
