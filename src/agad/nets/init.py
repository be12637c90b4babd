"""GANomaly's weight initialisation (Akcay et al. 2018, ``weights_init``).

Conv and transposed-conv weights ~ N(0, 0.02), batch-norm (and group-norm) weights ~ N(1, 0.02),
all biases 0. Batch-norm running statistics are left alone, as in GANomaly
(its discriminator re-initialisation calls the same function).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

__all__ = ["init_weights"]

CONV_STD = 0.02
BN_STD = 0.02


@torch.no_grad()
def init_weights(module: nn.Module) -> nn.Module:
    """Initialise every conv and BN layer of ``module`` in place; returns ``module``.

    Covers ``SwitchableBatchNorm2d`` (a ``BatchNorm2d``) and its auxiliary BN.
    Uses the global torch RNG: seed it first for reproducible weights.

    >>> net = init_weights(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)))
    >>> float(net[1].bias.detach().abs().sum())
    0.0
    """
    for m in module.modules():
        if isinstance(m, _ConvNd):
            # a parametrised weight (e.g. spectral norm) is computed from the tensor it keeps: initialise that
            weight = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight
            weight.normal_(0.0, CONV_STD)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, (_BatchNorm, nn.GroupNorm)) and m.affine:
            m.weight.normal_(1.0, BN_STD)
            m.bias.zero_()
    return module
