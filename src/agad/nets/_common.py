"""Shared pieces of the networks: argument checks, pad/crop, the conv block."""

from __future__ import annotations

import numbers

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import AgadError
from .norm import SwitchableBatchNorm2d

MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 1024
PAD_MODE = "reflect"  # mirrors content instead of inventing a border value


def check_image_args(in_channels: object, image_size: object) -> tuple[int, int]:
    """Validate the two shape arguments every network takes; returns them as ints."""
    if isinstance(in_channels, bool) or not isinstance(in_channels, numbers.Integral) or in_channels < 1:
        raise AgadError(
            f"in_channels must be a positive integer (1 for grayscale, 3 for RGB); got {in_channels!r}"
        )
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, numbers.Integral)
        or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE
    ):
        raise AgadError(
            f"image_size must be an integer from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} "
            f"(square images; sizes that the network cannot take directly, e.g. 28, are padded "
            f"inside forward and cropped back); got {image_size!r}"
        )
    return int(in_channels), int(image_size)


def next_power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def check_input(x: Tensor, in_channels: int, image_size: int) -> None:
    if x.dim() != 4 or x.shape[1] != in_channels or x.shape[2] != image_size or x.shape[3] != image_size:
        raise AgadError(
            f"expected a (B, {in_channels}, {image_size}, {image_size}) tensor; got shape {tuple(x.shape)}"
        )


def pad_to(x: Tensor, size: int) -> Tensor:
    """Pad a (B, C, h, w) tensor to (B, C, size, size), centred, by reflection."""
    h, w = x.shape[-2:]
    if h == size and w == size:
        return x
    top, left = (size - h) // 2, (size - w) // 2
    return F.pad(x, (left, size - w - left, top, size - h - top), mode=PAD_MODE)


def crop_to(x: Tensor, size: int) -> Tensor:
    """Inverse of :func:`pad_to`: the centred (size, size) window."""
    h, w = x.shape[-2:]
    if h == size and w == size:
        return x
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def double_conv(in_ch: int, out_ch: int, *, advprop: bool) -> nn.Sequential:
    """H of U-Net / UNet++: (conv3x3, BN, ReLU) x 2; convs bias-free (BN follows)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        SwitchableBatchNorm2d(out_ch, advprop=advprop),
        nn.ReLU(),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
        SwitchableBatchNorm2d(out_ch, advprop=advprop),
        nn.ReLU(),
    )


def check_filters(filters: object) -> tuple[int, ...]:
    try:
        out = tuple(int(f) for f in filters)  # type: ignore[union-attr]
    except TypeError:
        out = ()
    if len(out) < 2 or any(f < 1 for f in out):
        raise AgadError(f"filters must be a sequence of at least 2 positive channel counts; got {filters!r}")
    return out
