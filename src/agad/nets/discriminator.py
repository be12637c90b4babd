"""The discriminator D: two feature blocks and a fully convolutional classifier.

The paper calls it "VGG-like": two Conv-BN-LeakyReLU(0.2) blocks that give
the latent features z used by the latent loss, then a classifier that gives
one real/fake logit per image. Both feature blocks use kernel-4 stride-2
convs (DCGAN style) rather than stride-1 VGG convs: measured on CPU, that made
a whole training step 2.5x faster. The classifier halves the map with more
kernel-4 stride-2 Conv-BN-LeakyReLU blocks (channels doubling, capped at 512)
down to 4x4, then a k4 s1 p0 conv to one channel -- no Linear layer, so the
same code serves every input size::

    features   Conv C->64 s2, BN, LReLU; Conv 64->128 s2, BN, LReLU   -> z (B, 128, W/4, W/4)
    classifier [Conv c->min(2c, 512) s2, BN, LReLU] until 4x4; Conv c->1 k4 s1 p0 -> logit (B,)

W is the working size: ``image_size`` rounded up to a power of two (28 is
padded to 32 by reflection, so z is (B, 128, 8, 8) for 28x28 inputs).

Parameters: 661,376 at 1x32x32, 663,424 at 3x32x32.

BN layers are ``SwitchableBatchNorm2d`` without AdvProp, which behave exactly
like ``nn.BatchNorm2d`` but let ``frozen_bn(D)`` work if a caller wants it.

>>> import torch
>>> logit, z = Discriminator(in_channels=1, image_size=32)(torch.zeros(2, 1, 32, 32))
>>> logit.shape, z.shape
(torch.Size([2]), torch.Size([2, 128, 8, 8]))
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils import parametrizations

from ._common import check_image_args, check_input, next_power_of_two, pad_to
from .init import init_weights
from .norm import SwitchableBatchNorm2d

__all__ = ["Discriminator"]

MAX_CHANNELS = 512  # keeps the 128x128 classifier at ~7M parameters


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 4, 2, 1, bias=False),
        SwitchableBatchNorm2d(cout),
        nn.LeakyReLU(0.2),
    )


class Discriminator(nn.Module):
    """D(x) -> (logit, z): raw real/fake logit (B,) and features z (B, 2*ndf, W/4, W/4).

    Args:
        in_channels: image channels C.
        image_size: S, 16..1024; non-powers of two are padded to the next one.
        ndf: width of the first block (64).
        spectral_norm: divide every conv weight by its largest singular value (Miyato et al. 2018, one power
            iteration per training forward), which bounds how sharply D's output can change with its input.

    Attributes:
        feature_shape: (channels, height, width) of z.
    """

    def __init__(self, *, in_channels: int, image_size: int, ndf: int = 64, spectral_norm: bool = False):
        super().__init__()
        self.in_channels, self.image_size = check_image_args(in_channels, image_size)
        self.work_size = next_power_of_two(self.image_size)
        self.features = nn.Sequential(_block(self.in_channels, ndf), _block(ndf, 2 * ndf))
        size, ch = self.work_size // 4, 2 * ndf
        self.feature_shape = (ch, size, size)
        layers: list[nn.Module] = []
        while size > 4:
            nxt = min(2 * ch, MAX_CHANNELS)
            layers.append(_block(ch, nxt))
            size, ch = size // 2, nxt
        layers.append(nn.Conv2d(ch, 1, 4, 1, 0, bias=False))  # (B, 1, 1, 1)
        self.classifier = nn.Sequential(*layers)
        init_weights(self)
        if spectral_norm:
            for m in list(self.modules()):
                if isinstance(m, nn.Conv2d):
                    parametrizations.spectral_norm(m)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_input(x, self.in_channels, self.image_size)
        z = self.features(pad_to(x, self.work_size))  # (B, 128, W/4, W/4)
        logit = self.classifier(z).flatten()  # (B,)
        return logit, z
