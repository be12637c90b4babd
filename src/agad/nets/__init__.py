"""AGAD's networks: three generator backbones, the discriminator, BN switches.

Every generator maps (B, C, S, S) in [-1, 1] to the same shape through Tanh
and is built as ``cls(*, in_channels, image_size, advprop=False, **family_kwargs)``.
The discriminator returns ``(logit, z)``: a raw logit per image, shape (B,), and
the feature tensor z of the latent loss. Networks are GANomaly-initialised
(:func:`init_weights`) when constructed.

>>> import torch
>>> G = build_generator("unet", in_channels=1, image_size=32)
>>> D = build_discriminator(in_channels=1, image_size=32)
>>> logit, z = D(G(torch.zeros(2, 1, 32, 32)))
>>> logit.shape
torch.Size([2])

Parameter counts (advprop=False), 1x32x32 / 3x32x32; the paper's Table 8 in brackets:

=========  ===========  ===========  =======
naive      2,133,632    2,137,728    [2.04M]
unet       7,762,465    7,763,107    [7.76M]
unetpp     9,045,249    9,045,891    [9.04M]
D          661,376      663,424
=========  ===========  ===========  =======
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import AgadError
from ._common import check_image_args
from .discriminator import Discriminator
from .init import init_weights
from .naive import NaiveGenerator, dcgan_decoder, dcgan_encoder
from .norm import SwitchableBatchNorm2d, aux_bn, frozen_bn, has_aux_bn, recompute_bn_statistics, untracked_bn
from .unet import UNetGenerator
from .unetpp import UNetPlusPlusGenerator

__all__ = [
    "GENERATORS",
    "Nets",
    "build_generator",
    "build_discriminator",
    "count_parameters",
    "NaiveGenerator",
    "UNetGenerator",
    "UNetPlusPlusGenerator",
    "Discriminator",
    "dcgan_encoder",
    "dcgan_decoder",
    "SwitchableBatchNorm2d",
    "aux_bn",
    "frozen_bn",
    "has_aux_bn",
    "recompute_bn_statistics",
    "untracked_bn",
    "init_weights",
]

@dataclass
class Nets:
    """A method's networks: ``G`` scores (a generator, or a reference detector's only network); ``D`` is the
    discriminator of the adversarial methods. Run directories store them as generator / discriminator."""

    G: nn.Module
    D: nn.Module | None = None


GENERATORS: dict[str, type[nn.Module]] = {
    "naive": NaiveGenerator,
    "unet": UNetGenerator,
    "unetpp": UNetPlusPlusGenerator,
}


def build_generator(name: str, *, in_channels: int, image_size: int, advprop: bool = False, **kwargs) -> nn.Module:
    """Build the generator backbone ``name`` (a key of :data:`GENERATORS`), GANomaly-initialised.

    Extra keyword arguments go to the backbone (e.g. ``nz`` for naive,
    ``style``/``filters`` for unet). Raises ``AgadError`` (a ``ValueError``) for an
    unknown name or bad shape arguments.

    >>> build_generator("naive", in_channels=3, image_size=32).encoder[0].in_channels
    3
    """
    if not isinstance(name, str) or name not in GENERATORS:
        raise AgadError(f"unknown backbone {name!r}; choose one of: {', '.join(GENERATORS)}")
    check_image_args(in_channels, image_size)
    # The constructors apply init_weights themselves, so direct construction matches too.
    return GENERATORS[name](in_channels=in_channels, image_size=image_size, advprop=advprop, **kwargs)


def build_discriminator(*, in_channels: int, image_size: int, **kwargs) -> Discriminator:
    """Build the discriminator, GANomaly-initialised; ``kwargs`` go to :class:`Discriminator` (``ndf``).

    >>> build_discriminator(in_channels=3, image_size=64).feature_shape
    (128, 16, 16)
    """
    check_image_args(in_channels, image_size)
    return Discriminator(in_channels=in_channels, image_size=image_size, **kwargs)


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (auxiliary AdvProp BNs included).

    >>> count_parameters(nn.Conv2d(1, 8, 3))
    80
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
