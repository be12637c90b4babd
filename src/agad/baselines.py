"""GANomaly and Skip-GANomaly, trained and scored in AGAD's own harness and protocol.

- GANomaly (Akçay et al. 2018): encoder-decoder-encoder generator on the
  naive (DCGAN) stacks; G loss = feature matching on D's features (w 1) +
  L1 reconstruction (w 50) + L2 between the two latent codes (w 1); the
  anomaly score is the latent distance mean((z - ẑ)²).
- Skip-GANomaly (Akçay et al. 2019): its own U-Net generator (pix2pix's
  ``UnetGenerator``, ``agad.nets.unet`` style "pix2pix"; AGAD's unet backbone
  is Zhou's U-Net, which under GANomaly's N(0, 0.02) initialisation learns to
  reconstruct several times more slowly); G loss = BCE
  adversarial (w 1) + L1 reconstruction (w 40) + L2 on D's features (w 1);
  score 0.9·reconstruction + 0.1·latent.

Both use the same discriminator, Adam settings, D re-initialisation rule,
data path and evaluation as AGAD. Scores are never rescaled with test
statistics (the original code min-max scales over the test set).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import losses
from .config import TrainConfig
from .nets import build_discriminator, build_generator, dcgan_decoder, dcgan_encoder, init_weights
from .nets._common import check_image_args, crop_to, next_power_of_two, pad_to
from .train import AGADTrainer

GANOMALY_WEIGHTS = {"adv": 1.0, "con": 50.0, "enc": 1.0}
SKIP_GANOMALY_WEIGHTS = {"adv": 1.0, "con": 40.0, "lat": 1.0}
SKIP_SCORE_MIX = 0.9  # 0.9·reconstruction + 0.1·latent


class GANomalyGenerator(nn.Module):
    """Encoder -> decoder -> encoder; ``forward`` returns the reconstruction like every generator."""

    def __init__(self, *, in_channels: int, image_size: int, nz: int = 100, ngf: int = 64):
        super().__init__()
        self.in_channels, self.image_size = check_image_args(in_channels, image_size)
        self.work_size = next_power_of_two(self.image_size)
        self.encoder1 = dcgan_encoder(self.in_channels, self.work_size, nz, ngf)
        self.decoder = dcgan_decoder(self.in_channels, self.work_size, nz, ngf)
        self.encoder2 = dcgan_encoder(self.in_channels, self.work_size, nz, ngf)
        init_weights(self)

    def encode_decode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(x̂, z, ẑ): reconstruction and the two latent codes (B, nz, 1, 1)."""
        h = pad_to(x, self.work_size)
        z = self.encoder1(h)
        x_hat_w = self.decoder(z)
        z_hat = self.encoder2(x_hat_w)
        return crop_to(x_hat_w, self.image_size), z, z_hat

    def forward(self, x: Tensor) -> Tensor:
        return self.encode_decode(x)[0]


class LatentScorer(nn.Module):
    """GANomaly's score: the latent distance mean((z - ẑ)²) of its encoder-decoder-encoder generator."""

    def __init__(self, G: GANomalyGenerator):
        super().__init__()
        self.G = G

    def score_and_reconstruct(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_hat, z, z_hat = self.G.encode_decode(x)
        return (z.float() - z_hat.float()).pow(2).flatten(1).mean(1), x_hat

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.G(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.score_and_reconstruct(x)[0]


class SkipGANomalyScorer(nn.Module):
    """Skip-GANomaly's score: 0.9 x reconstruction + 0.1 x the discriminator's feature distance."""

    def __init__(self, G: nn.Module, D: nn.Module):
        super().__init__()
        self.G, self.D = G, D

    def score_and_reconstruct(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_hat = self.G(x)
        rec = (x.float() - x_hat.float()).pow(2).flatten(1).mean(1)
        lat = (self.D(x)[1].float() - self.D(x_hat)[1].float()).pow(2).flatten(1).mean(1)
        return SKIP_SCORE_MIX * rec + (1 - SKIP_SCORE_MIX) * lat, x_hat

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.G(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.score_and_reconstruct(x)[0]


def build_baseline_networks(cfg: TrainConfig, *, in_channels: int, image_size: int) -> tuple[nn.Module, nn.Module]:
    D = build_discriminator(in_channels=in_channels, image_size=image_size)
    if cfg.method == "ganomaly":
        return GANomalyGenerator(in_channels=in_channels, image_size=image_size), D
    if cfg.method == "skip-ganomaly":
        # Skip-GANomaly's own generator (pix2pix's UnetGenerator) unless the config asks for Zhou's U-Net
        return build_generator("unet", in_channels=in_channels, image_size=image_size,
                               style=cfg.resolved_unet_style()), D
    raise ValueError(f"not a baseline method: {cfg.method!r}")


class BaselineTrainer(AGADTrainer):
    """Same loop, data path and D step as AGAD; only the generator's loss differs.

    Labelled anomalies are not used by these semi-supervised baselines: the
    config refuses gamma > 0 for them.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.G_ema = None  # the baselines score with G itself, as their papers do

    def step(self, x_n: Tensor, x_a: Tensor | None = None) -> dict[str, float]:
        self.G.train()
        self.D.train()
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            if self.cfg.method == "ganomaly":
                x_hat, z, z_hat = self.G.encode_decode(x_n)
            else:
                x_hat = self.G(x_n)
            real_logits, f_real = self.D(x_n)
            fake_logits, f_fake = self.D(x_hat)
            terms: dict[str, Tensor] = {"con": losses.contextual_loss(x_n, x_hat)}
            if self.cfg.method == "ganomaly":
                w = GANOMALY_WEIGHTS
                terms["adv"] = F.mse_loss(f_fake.float(), f_real.detach().float())  # feature matching
                terms["enc"] = F.mse_loss(z_hat.float(), z.float())
                g_loss = w["adv"] * terms["adv"] + w["con"] * terms["con"] + w["enc"] * terms["enc"]
            else:
                w = SKIP_GANOMALY_WEIGHTS
                terms["adv"] = losses.adversarial_loss(fake_logits, 1.0)
                terms["lat"] = losses.latent_loss(f_real.detach(), f_fake)
                g_loss = w["adv"] * terms["adv"] + w["con"] * terms["con"] + w["lat"] * terms["lat"]
            d_loss = losses.discriminator_loss(real_logits=real_logits, fake_logits=fake_logits)
        g_params = [p for p in self.G.parameters() if p.requires_grad]
        d_params = [p for p in self.D.parameters() if p.requires_grad]
        g_grads = torch.autograd.grad(g_loss, g_params, retain_graph=True, allow_unused=True)
        d_grads = torch.autograd.grad(d_loss, d_params, allow_unused=True)
        self._apply(self.opt_g, g_params, g_grads)
        self._apply(self.opt_d, d_params, d_grads)
        out = {f"G/{k}": float(v.detach()) for k, v in terms.items()}
        out["G/total"] = float(g_loss.detach())
        out["D/total"] = float(d_loss.detach())
        self._maybe_reset_discriminator(out["D/total"])
        return out
