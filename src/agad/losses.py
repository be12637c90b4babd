"""AGAD's loss terms (paper eqs. 5-11), as pure functions of tensors.

Each composite returns every term by name plus ``total`` so that each can be
logged and tested on its own. Weights are keyword-only.

>>> import torch
>>> x = torch.zeros(2, 1, 4, 4); x_hat = torch.full_like(x, 0.5)
>>> float(contextual_loss(x, x_hat))
0.5
>>> float(contextual_adversarial_loss(x_hat, x))  # negative: it is maximised
-0.5
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def adversarial_loss(logits: Tensor, target: float) -> Tensor:
    """Binary cross-entropy of D's raw logits against a constant target (0 or 1)."""
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits, target, dtype=torch.float32))


def contextual_loss(x: Tensor, x_hat: Tensor) -> Tensor:
    """l_con = |x - x̂|_1, averaged over pixels and images."""
    return (x.float() - x_hat.float()).abs().mean()


def latent_loss(z: Tensor, z_hat: Tensor) -> Tensor:
    """l_lat = ||z - ẑ||²_2, averaged over feature entries and images."""
    return (z.float() - z_hat.float()).pow(2).mean()


def contextual_adversarial_loss(x_hat: Tensor, x_hat2: Tensor, cap: float = 0.0) -> Tensor:
    """The pseudo-anomaly term (paper's "contextual adversarial information"): ``-|x̂ - x̂₂|_1``.

    Minimising it *raises* the reconstruction error of the pseudo-anomaly x̂₂ = G(x̂). With ``cap`` > 0 each
    image's distance counts up to ``cap`` only, so the push stops there (0: unbounded, the paper's).

    >>> x = torch.zeros(2, 1, 2, 2); x2 = torch.tensor([0.5, 1.5]).view(2, 1, 1, 1).expand(2, 1, 2, 2)
    >>> float(contextual_adversarial_loss(x, x2)), float(contextual_adversarial_loss(x, x2, cap=1.0))
    (-1.0, -0.75)
    """
    d = (x_hat.float() - x_hat2.float()).abs().flatten(1).mean(1)  # per image
    if cap > 0:
        d = d.clamp(max=cap)
    return -d.mean()


def generator_normal_loss(
    *,
    fake_logits: Tensor,
    x: Tensor,
    x_hat: Tensor,
    x_hat2: Tensor | None,
    z: Tensor,
    z_hat: Tensor,
    w_adv: float = 1.0,
    w_con: float = 50.0,
    w_adcon: float = 15.0,
    w_lat: float = 5.0,
    eps: float = 1e-3,
    adcon_cap: float = 0.0,
) -> dict[str, Tensor]:
    """Algorithm 1, line 6: L_g on normal images.

    ``x_hat2`` may be None when ``w_adcon`` is 0 (the "w/o C.A." ablation skips the pass). ``adcon_cap``:
    see :func:`contextual_adversarial_loss`.
    """
    terms = {
        "adv": adversarial_loss(fake_logits, 1.0),
        "con": contextual_loss(x, x_hat),
        "lat": latent_loss(z, z_hat),
    }
    if x_hat2 is not None:
        terms["adcon"] = contextual_adversarial_loss(x_hat, x_hat2, adcon_cap)
    else:
        terms["adcon"] = x_hat.new_zeros((), dtype=torch.float32)
    terms["total"] = w_adv * terms["adv"] + w_con * terms["con"] + w_adcon * terms["adcon"] + w_lat * terms["lat"]
    return terms


def generator_anomaly_loss(
    *,
    fake_logits: Tensor,
    distance: Tensor,
    z: Tensor,
    z_hat: Tensor,
    w_adv: float = 1.0,
    w_adcon: float = 15.0,
    w_lat: float = 5.0,
    eps: float = 1e-3,
) -> dict[str, Tensor]:
    """Algorithm 1, line 9: L_g on labelled anomalies, written with reciprocals.

    ``distance`` is d_a, the (mean L1) reconstruction distance that must grow,
    per image (B,) or already averaged. Each reciprocal falls as its term
    grows, so minimising L_g pushes the generator to *fail* on anomalies.
    """
    d = distance.float().reshape(-1)  # per image, or one already-averaged value
    lat = (z.float() - z_hat.float()).pow(2).flatten(1).mean(1)  # per image; its mean is latent_loss
    terms = {"adv": adversarial_loss(fake_logits, 0.0), "dist": d.mean(), "lat": lat.mean()}
    terms["total"] = w_adv / (terms["adv"] + eps) + w_adcon / (terms["dist"] + eps) + w_lat / (terms["lat"] + eps)
    return terms


def discriminator_loss(*, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Algorithm 1, line 7: L_d = l_adv(ŷ, 0) + l_adv(y, 1) on normal images."""
    return adversarial_loss(fake_logits, 0.0) + adversarial_loss(real_logits, 1.0)


def discriminator_anomaly_loss(*, real_logits: Tensor) -> Tensor:
    """Algorithm 1, line 10: L_d = l_adv(y, 0): D learns that true anomalies are not normal."""
    return adversarial_loss(real_logits, 0.0)


def label_head_loss(normal_logits: Tensor, anomaly_logits: Tensor) -> Tensor:
    """The label head's loss (``label_head``): BCE with the two classes weighted equally, whatever their counts.

    >>> round(float(label_head_loss(torch.zeros(4), torch.zeros(2))), 4)  # log 2 at chance
    0.6931
    """
    return 0.5 * (adversarial_loss(normal_logits, 0.0) + adversarial_loss(anomaly_logits, 1.0))


def anomaly_score(x: Tensor, x_hat: Tensor) -> Tensor:
    """A(x) = ||x - G(x)||_2 per image, shape (B,)."""
    return (x.float() - x_hat.float()).flatten(1).norm(dim=1)
