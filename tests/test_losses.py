"""Each loss term on small hand-computed tensors."""

import math

import pytest
import torch

from agad import losses


def test_adversarial_loss_matches_bce_by_hand():
    logits = torch.tensor([0.0, 2.0])
    # BCE(sigmoid(0), 1) = log 2 ; BCE(sigmoid(2), 1) = log(1 + e^-2)
    expected = (math.log(2) + math.log(1 + math.exp(-2))) / 2
    assert losses.adversarial_loss(logits, 1.0).item() == pytest.approx(expected, rel=1e-6)
    expected0 = (math.log(2) + math.log(1 + math.exp(2))) / 2
    assert losses.adversarial_loss(logits, 0.0).item() == pytest.approx(expected0, rel=1e-6)


def test_contextual_and_latent_losses():
    x = torch.tensor([[[[0.0, 1.0], [-1.0, 0.5]]]])
    x_hat = torch.tensor([[[[0.5, 1.0], [0.0, 0.0]]]])
    assert losses.contextual_loss(x, x_hat).item() == pytest.approx((0.5 + 0 + 1 + 0.5) / 4)
    assert losses.latent_loss(x, x_hat).item() == pytest.approx((0.25 + 0 + 1 + 0.25) / 4)


def test_contextual_adversarial_term_is_negative_distance():
    x_hat = torch.zeros(2, 1, 2, 2)
    x_hat2 = torch.full_like(x_hat, 0.25)
    assert losses.contextual_adversarial_loss(x_hat, x_hat2).item() == pytest.approx(-0.25)
    # minimising it must *increase* the pseudo-anomaly's reconstruction error
    x_hat2 = x_hat2.clone().requires_grad_(True)
    losses.contextual_adversarial_loss(x_hat, x_hat2).backward()
    assert (x_hat2.grad < 0).all()  # gradient descent moves x̂₂ up, away from x̂


def test_generator_normal_loss_weights_and_terms():
    x = torch.zeros(1, 1, 2, 2)
    x_hat = torch.full_like(x, 0.5)
    x_hat2 = torch.full_like(x, 0.75)
    z = torch.zeros(1, 3)
    z_hat = torch.ones(1, 3)
    logits = torch.zeros(1)
    t = losses.generator_normal_loss(fake_logits=logits, x=x, x_hat=x_hat, x_hat2=x_hat2, z=z, z_hat=z_hat,
                                     w_adv=1, w_con=50, w_adcon=15, w_lat=5)
    assert set(t) == {"adv", "con", "adcon", "lat", "total"}
    assert t["adv"].item() == pytest.approx(math.log(2))
    assert t["con"].item() == pytest.approx(0.5)
    assert t["adcon"].item() == pytest.approx(-0.25)
    assert t["lat"].item() == pytest.approx(1.0)
    assert t["total"].item() == pytest.approx(math.log(2) + 25 - 3.75 + 5)
    # w/o C.A.: no pseudo pass, the term is zero
    t0 = losses.generator_normal_loss(fake_logits=logits, x=x, x_hat=x_hat, x_hat2=None, z=z, z_hat=z_hat)
    assert t0["adcon"].item() == 0.0


def test_generator_anomaly_loss_uses_reciprocals():
    logits = torch.zeros(2)  # BCE vs 0 = log 2
    dist = torch.tensor(0.5)
    z = torch.zeros(2, 4)
    z_hat = torch.full((2, 4), 2.0)  # lat = 4
    t = losses.generator_anomaly_loss(fake_logits=logits, distance=dist, z=z, z_hat=z_hat,
                                      w_adv=1, w_adcon=15, w_lat=5, eps=1e-3)
    expected = 1 / (math.log(2) + 1e-3) + 15 / (0.5 + 1e-3) + 5 / (4 + 1e-3)
    assert t["total"].item() == pytest.approx(expected, rel=1e-5)
    # the larger the distance, the smaller the loss: the generator is pushed to fail on anomalies
    t_far = losses.generator_anomaly_loss(fake_logits=logits, distance=torch.tensor(1.0), z=z, z_hat=z_hat)
    assert t_far["total"] < t["total"]



def test_generator_anomaly_loss_takes_per_image_or_averaged_distances():
    logits = torch.zeros(3)
    dist = torch.tensor([0.1, 0.5, 2.0])
    z = torch.zeros(3, 4)
    z_hat = torch.tensor([0.5, 1.0, 3.0]).repeat_interleave(4).reshape(3, 4)  # lat 0.25, 1, 9 per image
    a = losses.generator_anomaly_loss(fake_logits=logits, distance=dist, z=z, z_hat=z_hat)
    b = losses.generator_anomaly_loss(fake_logits=logits, distance=dist.mean(), z=z, z_hat=z_hat)
    assert a["total"].item() == pytest.approx(b["total"].item(), rel=1e-6)
    assert a["dist"].item() == pytest.approx(2.6 / 3) and a["lat"].item() == pytest.approx(10.25 / 3)


def test_discriminator_losses():
    real = torch.tensor([0.0])
    fake = torch.tensor([0.0])
    assert losses.discriminator_loss(real_logits=real, fake_logits=fake).item() == pytest.approx(2 * math.log(2))
    assert losses.discriminator_anomaly_loss(real_logits=torch.tensor([-3.0])).item() == pytest.approx(
        math.log(1 + math.exp(-3)), rel=1e-5)


def test_anomaly_score_is_per_image_l2():
    x = torch.zeros(2, 1, 2, 2)
    x_hat = torch.zeros(2, 1, 2, 2)
    x_hat[1] = 1.0  # four pixels off by 1 -> L2 = 2
    assert losses.anomaly_score(x, x_hat).tolist() == [0.0, 2.0]
