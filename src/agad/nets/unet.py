"""The ``unet`` backbone: a U-Net with skip connections, two styles.

``style="zhou"`` (default; matches the paper's parameter count)
    The plain U-Net of Zhou et al.'s UNet++ code (the baseline beside their
    Nest_Net): filters 32-64-128-256-512, H = (conv3x3, BN, ReLU) x 2,
    2x2 max-pool down, 2x2 stride-2 transposed-conv up, skip by concatenation,
    1x1 conv head + Tanh. Four pools at every size (a 32x32 input reaches a
    2x2 bottleneck, 128x128 reaches 8x8), like the standard U-Net/UNet++; the
    input is padded to a multiple of 16 (28 -> 32).

    Parameters: 7,762,465 at 1x32x32 (7,763,107 at 3x32x32). The paper's
    Table 8 says 7.76M. The same network without BN and with conv biases (the
    original Keras code) has 7,759,521; the UNet++ of the same code has
    9,041,601 = the paper's 9.04M. Two exact matches from one code base are
    why this is the default, although the paper's text describes the backbone as
    pix2pix / Skip-GANomaly style.

``style="pix2pix"`` (the paper text's reading)
    pix2pix's / Skip-GANomaly's ``UnetGenerator``: ngf 64, kernel-4 stride-2
    convs, channels ngf * min(2**k, 8), ``log2(size)`` downsamplings down to
    1x1 (5 for 32x32, 7 for 128x128), LeakyReLU(0.2) down, ReLU up, BN
    everywhere except the outermost down, the innermost down and the outermost
    up, Tanh output. 16,652,929 parameters at 1x32x32 -- 2.1x the paper's
    7.76M, which is why it is not the default. Input padded to the next power
    of two (28 -> 32). No dropout (pix2pix's default for this generator) and
    no in-place LeakyReLU: the skip carries the pre-activation features that
    the pix2pix code means to pass.

>>> import torch
>>> UNetGenerator(in_channels=3, image_size=32)(torch.zeros(2, 3, 32, 32)).shape
torch.Size([2, 3, 32, 32])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import AgadError
from ._common import (
    check_filters,
    check_image_args,
    check_input,
    crop_to,
    double_conv,
    next_power_of_two,
    pad_to,
    round_up,
)
from .init import init_weights
from .norm import SwitchableBatchNorm2d

__all__ = ["UNetGenerator"]

STYLES = ("zhou", "pix2pix")


class _ZhouUNet(nn.Module):
    def __init__(self, channels: int, filters: Sequence[int], advprop: bool):
        super().__init__()
        f = list(filters)
        self.pool = nn.MaxPool2d(2)
        self.down = nn.ModuleList(
            double_conv(cin, cout, advprop=advprop) for cin, cout in zip([channels] + f[:-1], f)
        )
        # up[i]: level i+1 -> level i; dec[i]: cat(skip_i, up) -> f[i]
        self.up = nn.ModuleList(nn.ConvTranspose2d(f[i + 1], f[i], 2, stride=2) for i in range(len(f) - 1))
        self.dec = nn.ModuleList(double_conv(2 * f[i], f[i], advprop=advprop) for i in range(len(f) - 1))
        self.head = nn.Conv2d(f[0], channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        h = x
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else self.pool(h))  # (B, f[i], S / 2**i, S / 2**i)
            skips.append(h)
        for i in reversed(range(len(self.up))):
            h = self.dec[i](torch.cat([skips[i], self.up[i](h)], dim=1))  # (B, f[i], ...)
        return torch.tanh(self.head(h))


class _Pix2PixUNet(nn.Module):
    def __init__(self, channels: int, num_downs: int, ngf: int, advprop: bool):
        super().__init__()
        ch = [ngf * min(2**k, 8) for k in range(num_downs)]  # output channels of down k
        last = num_downs - 1
        downs, ups = [], []
        for k in range(num_downs):
            cin = channels if k == 0 else ch[k - 1]
            layers: list[nn.Module] = [] if k == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(cin, ch[k], 4, 2, 1, bias=False))
            if 0 < k < last:
                layers.append(SwitchableBatchNorm2d(ch[k], advprop=advprop))
            downs.append(nn.Sequential(*layers))

            up_in = ch[k] if k == last else 2 * ch[k]
            if k == 0:
                up = [nn.ReLU(), nn.ConvTranspose2d(up_in, channels, 4, 2, 1), nn.Tanh()]
            else:
                up = [
                    nn.ReLU(),
                    nn.ConvTranspose2d(up_in, ch[k - 1], 4, 2, 1, bias=False),
                    SwitchableBatchNorm2d(ch[k - 1], advprop=advprop),
                ]
            ups.append(nn.Sequential(*up))
        self.down = nn.ModuleList(downs)
        self.up = nn.ModuleList(ups)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        h = x
        for block in self.down:
            h = block(h)  # (B, ch[k], S / 2**(k+1), ...)
            skips.append(h)
        h = self.up[-1](skips[-1])
        for k in reversed(range(len(self.up) - 1)):
            h = self.up[k](torch.cat([skips[k], h], dim=1))
        return h


class UNetGenerator(nn.Module):
    """U-Net generator, (B, C, S, S) -> (B, C, S, S) in [-1, 1].

    Args:
        in_channels: image channels C (also the output channels).
        image_size: S, 16..1024; padded internally where the style needs it.
        advprop: give every BN an auxiliary twin (see :mod:`agad.nets.norm`).
        style: ``"zhou"`` (default, the paper's 7.76M) or ``"pix2pix"``; see the module doc.
        filters: channels per level for ``"zhou"``; ``len(filters) - 1`` pools.
        ngf: outermost width for ``"pix2pix"``.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        advprop: bool = False,
        style: str = "zhou",
        filters: Sequence[int] = (32, 64, 128, 256, 512),
        ngf: int = 64,
    ):
        super().__init__()
        self.in_channels, self.image_size = check_image_args(in_channels, image_size)
        if style not in STYLES:
            raise AgadError(f"unknown U-Net style {style!r}; choose one of: {', '.join(STYLES)}")
        self.style = style
        if style == "zhou":
            f = check_filters(filters)
            self.work_size = round_up(self.image_size, 2 ** (len(f) - 1))
            self.body: nn.Module = _ZhouUNet(self.in_channels, f, advprop)
        else:
            self.work_size = next_power_of_two(self.image_size)
            num_downs = self.work_size.bit_length() - 1  # log2: 5 for 32, 7 for 128
            self.body = _Pix2PixUNet(self.in_channels, num_downs, int(ngf), advprop)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.in_channels, self.image_size)
        return crop_to(self.body(pad_to(x, self.work_size)), self.image_size)
