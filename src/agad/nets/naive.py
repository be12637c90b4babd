"""The ``naive`` backbone: GANomaly's DCGAN encoder-decoder with a 100x1x1 bottleneck.

For 32x32 inputs it is exactly the paper's naive-backbone table (kernel 4, stride 2,
padding 1 unless noted; no conv biases, as in DCGAN/GANomaly)::

    encoder                                decoder
    Conv C->64, LReLU(0.2)        32->16   ConvT 100->256 k4 s1 p0, BN, ReLU   1->4
    Conv 64->128, BN, LReLU       16->8    ConvT 256->128, BN, ReLU            4->8
    Conv 128->256, BN, LReLU       8->4    ConvT 128->64, BN, ReLU             8->16
    Conv 256->100 k4 s1 p0         4->1    ConvT 64->C, Tanh                   16->32

Other sizes follow GANomaly's DCGAN rule: one more stride-2 stage (channels
doubling) per doubling of the input, i.e. the encoder stops at 4x4 and the
decoder starts at 4x4 with ``ngf * size / 8`` channels. The network works on
the next power of two >= ``image_size``; other sizes (28 -> 32) are padded by
reflection in ``forward`` and cropped back.

Parameters (advprop=False): 2,133,632 at 1x32x32, 2,137,728 at 3x32x32. The
paper's Table 8 says 2.04M; the layer table above fixes every layer and gives
2.13M (+4.6%). No bias or nz choice recovers the gap exactly, so the table
is kept as specified.

>>> import torch
>>> g = NaiveGenerator(in_channels=1, image_size=28)
>>> g(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

from torch import Tensor, nn

from ..errors import AgadError
from ._common import check_image_args, check_input, crop_to, next_power_of_two, pad_to
from .init import init_weights
from .norm import SwitchableBatchNorm2d

__all__ = ["NaiveGenerator", "dcgan_encoder", "dcgan_decoder"]


def _check_pow2(image_size: int) -> None:
    if image_size < 16 or image_size & (image_size - 1):
        raise AgadError(f"DCGAN stacks need a power-of-two image_size >= 16; got {image_size} (pad first)")


def dcgan_encoder(
    in_channels: int, image_size: int, nz: int = 100, ndf: int = 64, *, advprop: bool = False,
) -> nn.Sequential:
    """GANomaly's DCGAN encoder: (B, C, S, S) -> (B, nz, 1, 1), S a power of two >= 16.

    The last module is the k4 s1 p0 conv to ``nz``; ``encoder[:-1]`` is the
    feature extractor (B, ndf * S / 8, 4, 4), as GANomaly's discriminator uses it.

    >>> import torch
    >>> dcgan_encoder(3, 64)(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 100, 1, 1])
    """
    _check_pow2(image_size)
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, ndf, 4, 2, 1, bias=False),  # (B, ndf, S/2, S/2)
        nn.LeakyReLU(0.2),
    ]
    size, ch = image_size // 2, ndf
    while size > 4:
        layers += [
            nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False),
            SwitchableBatchNorm2d(ch * 2, advprop=advprop),
            nn.LeakyReLU(0.2),
        ]
        size, ch = size // 2, ch * 2
    layers.append(nn.Conv2d(ch, nz, 4, 1, 0, bias=False))  # (B, nz, 1, 1)
    return nn.Sequential(*layers)


def dcgan_decoder(
    out_channels: int, image_size: int, nz: int = 100, ngf: int = 64, *, advprop: bool = False,
) -> nn.Sequential:
    """GANomaly's DCGAN decoder: (B, nz, 1, 1) -> (B, C, S, S) through Tanh.

    >>> import torch
    >>> dcgan_decoder(1, 32)(torch.zeros(2, 100, 1, 1)).shape
    torch.Size([2, 1, 32, 32])
    """
    _check_pow2(image_size)
    ch = ngf * image_size // 8  # 256 for 32x32, so that the last stage has ngf channels
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False),  # (B, ch, 4, 4)
        SwitchableBatchNorm2d(ch, advprop=advprop),
        nn.ReLU(),
    ]
    size = 4
    while size < image_size // 2:
        layers += [
            nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
            SwitchableBatchNorm2d(ch // 2, advprop=advprop),
            nn.ReLU(),
        ]
        size, ch = size * 2, ch // 2
    layers += [nn.ConvTranspose2d(ch, out_channels, 4, 2, 1, bias=False), nn.Tanh()]  # (B, C, S, S)
    return nn.Sequential(*layers)


class NaiveGenerator(nn.Module):
    """DCGAN encoder-decoder generator, (B, C, S, S) -> (B, C, S, S) in [-1, 1].

    Args:
        in_channels: image channels C (also the output channels).
        image_size: S, 16..1024; non-powers of two are padded to the next one.
        advprop: give every BN an auxiliary twin (see :mod:`agad.nets.norm`).
        nz: bottleneck channels (the paper: 100).
        ngf: width of the outermost stage (GANomaly: 64).
    """

    def __init__(
        self, *, in_channels: int, image_size: int, advprop: bool = False, nz: int = 100, ngf: int = 64,
    ):
        super().__init__()
        self.in_channels, self.image_size = check_image_args(in_channels, image_size)
        self.work_size = next_power_of_two(self.image_size)
        self.encoder = dcgan_encoder(self.in_channels, self.work_size, nz, ngf, advprop=advprop)
        self.decoder = dcgan_decoder(self.in_channels, self.work_size, nz, ngf, advprop=advprop)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.in_channels, self.image_size)
        h = pad_to(x, self.work_size)  # (B, C, W, W)
        return crop_to(self.decoder(self.encoder(h)), self.image_size)
