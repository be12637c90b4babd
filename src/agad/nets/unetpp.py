"""The ``unetpp`` backbone: UNet++ (Zhou et al. 2018), nested dense skip pathways.

Nodes X[i, j], level i (resolution S / 2**i), column j::

    X[i, 0] = H(pool(X[i-1, 0]))                      (X[0, 0] = H(x))
    X[i, j] = H(cat(X[i, 0], ..., X[i, j-1], up(X[i+1, j-1])))
    out     = tanh(conv1x1(X[0, D]))                  D = number of pools

H = (conv3x3, BN, ReLU) x 2, pool = 2x2 max-pool, filters 32-64-128-256-512
(4 pools). ``up`` is a 2x2 stride-2 transposed conv to the level's width f[i],
as in Zhou et al.'s original code (Conv2DTranspose); the popular PyTorch port
uses parameter-free bilinear upsampling instead and would have 9,162,753
parameters here. No deep supervision (one output).

Parameters: 9,045,249 at 1x32x32 (9,045,891 at 3x32x32) -- the paper's
Table 8 says 9.04M; Zhou's original (no BN, conv biases) has 9,041,601. Convs
in H are bias-free because BN follows them.

Sizes: four pools at every input size, as the standard UNet++ (a 128x128
input reaches an 8x8 bottleneck); inputs are padded by reflection to a
multiple of 16 (28 -> 32) and cropped back.

>>> import torch
>>> UNetPlusPlusGenerator(in_channels=1, image_size=28)(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._common import check_filters, check_image_args, check_input, crop_to, double_conv, pad_to, round_up
from .init import init_weights

__all__ = ["UNetPlusPlusGenerator"]


class UNetPlusPlusGenerator(nn.Module):
    """UNet++ generator, (B, C, S, S) -> (B, C, S, S) in [-1, 1].

    Args:
        in_channels: image channels C (also the output channels).
        image_size: S, 16..1024; padded internally to a multiple of 2**(len(filters)-1).
        advprop: give every BN an auxiliary twin (see :mod:`agad.nets.norm`).
        filters: channels per level; ``len(filters) - 1`` pools.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        advprop: bool = False,
        filters: Sequence[int] = (32, 64, 128, 256, 512),
    ):
        super().__init__()
        self.in_channels, self.image_size = check_image_args(in_channels, image_size)
        f = check_filters(filters)
        self.depth = depth = len(f) - 1
        self.work_size = round_up(self.image_size, 2**depth)
        self.pool = nn.MaxPool2d(2)
        nodes, ups = {}, {}
        for i in range(depth + 1):
            nodes[f"{i}_0"] = double_conv(self.in_channels if i == 0 else f[i - 1], f[i], advprop=advprop)
        for j in range(1, depth + 1):
            for i in range(depth + 1 - j):
                ups[f"{i}_{j}"] = nn.ConvTranspose2d(f[i + 1], f[i], 2, stride=2)
                nodes[f"{i}_{j}"] = double_conv((j + 1) * f[i], f[i], advprop=advprop)
        self.nodes = nn.ModuleDict(nodes)
        self.ups = nn.ModuleDict(ups)
        self.head = nn.Conv2d(f[0], self.in_channels, 1)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.in_channels, self.image_size)
        h = pad_to(x, self.work_size)
        d = self.depth
        cols: list[list[Tensor]] = []  # cols[i] = [X[i,0], X[i,1], ...]
        for i in range(d + 1):
            h = self.nodes[f"{i}_0"](h if i == 0 else self.pool(h))  # (B, f[i], W / 2**i, W / 2**i)
            cols.append([h])
        for j in range(1, d + 1):
            for i in range(d + 1 - j):
                up = self.ups[f"{i}_{j}"](cols[i + 1][j - 1])  # (B, f[i], W / 2**i, ...)
                cols[i].append(self.nodes[f"{i}_{j}"](torch.cat([*cols[i], up], dim=1)))
        return crop_to(torch.tanh(self.head(cols[0][d])), self.image_size)
