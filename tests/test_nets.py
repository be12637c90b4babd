"""Networks: shapes, gradients, BN switches, parameter counts, init, errors.

Parameter counts at 1x32x32 (advprop=False) against the paper's Table 8:
naive 2,133,632 (2.04M, +4.6%), unet 7,762,465 (7.76M), unetpp 9,045,249
(9.04M); discriminator 661,376.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agad.nets import (
    GENERATORS,
    Discriminator,
    SwitchableBatchNorm2d,
    aux_bn,
    build_discriminator,
    build_generator,
    count_parameters,
    dcgan_encoder,
    frozen_bn,
    init_weights,
)

SIZES = (28, 32, 64, 128)
BATCH = 2


def _images(channels: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(BATCH, channels, size, size, generator=g) * 2 - 1


def _switchable(module: nn.Module) -> list[SwitchableBatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, SwitchableBatchNorm2d)]


def _main_bn_params(module: nn.Module) -> list[nn.Parameter]:
    return [p for m in _switchable(module) for p in (m.weight, m.bias)]


def _aux_bn_params(module: nn.Module) -> list[nn.Parameter]:
    return [p for m in _switchable(module) for p in m.aux.parameters()]


def _conv_weights(module: nn.Module) -> list[nn.Parameter]:
    return [m.weight for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd)]


def _probe_loss(out: torch.Tensor, seed: int = 1) -> torch.Tensor:
    # A random projection: a plain mean would give BN-normalised paths an exactly-zero gradient.
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    return (out.float() * w).sum()


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", (1, 3))
@pytest.mark.parametrize("name", GENERATORS.keys())
def test_generator_keeps_shape_and_range(name, channels, size):
    torch.manual_seed(0)
    G = build_generator(name, in_channels=channels, image_size=size).train()
    x = _images(channels, size)
    with torch.no_grad():
        y = G(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert y.abs().max() <= 1.0


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", (1, 3))
def test_discriminator_shapes(channels, size):
    torch.manual_seed(0)
    D = build_discriminator(in_channels=channels, image_size=size).train()
    logit, z = D(_images(channels, size))
    assert logit.shape == (BATCH,)
    assert z.dim() == 4 and z.shape == (BATCH, *D.feature_shape)
    assert D.feature_shape == (128, D.work_size // 4, D.work_size // 4)
    assert torch.isfinite(logit).all() and torch.isfinite(z).all()


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("channels", (1, 3))
@pytest.mark.parametrize("name", GENERATORS.keys())
def test_every_parameter_gets_a_gradient(name, channels):
    torch.manual_seed(0)
    size = 28  # exercises the pad/crop path too
    G = build_generator(name, in_channels=channels, image_size=size).train()
    D = build_discriminator(in_channels=channels, image_size=size).train()
    x_hat = G(_images(channels, size))
    logit, z = D(x_hat)
    (_probe_loss(x_hat, 1) + _probe_loss(logit, 2) + _probe_loss(z, 3)).backward()
    for net in (G, D):
        for pname, p in net.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{type(net).__name__}.{pname}"


def test_pix2pix_unet_style():
    torch.manual_seed(0)
    G = build_generator("unet", in_channels=1, image_size=28, style="pix2pix").train()
    assert G.work_size == 32 and len(G.body.down) == 5  # 5 downs for 32x32, down to 1x1
    assert count_parameters(G) == 16_652_929  # Skip-GANomaly's own U-Net: 2.1x the paper's 7.76M
    x = _images(1, 28)
    y = G(x)
    assert y.shape == x.shape and y.abs().max() <= 1.0
    _probe_loss(y).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())
    assert len(build_generator("unet", in_channels=1, image_size=128, style="pix2pix").body.down) == 7


# --------------------------------------------------------------------------- BN switches


@pytest.mark.parametrize("name", GENERATORS.keys())
def test_advprop_routes_pseudo_anomaly_pass_to_aux_bn(name):
    torch.manual_seed(0)
    G = build_generator(name, in_channels=1, image_size=32, advprop=True).train()
    layers = _switchable(G)
    assert layers and all(m.aux is not None for m in layers)
    x = _images(1, 32)
    main_before = [m.running_mean.clone() for m in layers]
    aux_before = [m.aux.running_mean.clone() for m in layers]

    with aux_bn(G):
        y = G(x)
    assert all(m.route == "main" for m in layers)  # restored
    _probe_loss(y).backward()
    for m, before in zip(layers, main_before):
        assert torch.equal(m.running_mean, before) and int(m.num_batches_tracked) == 0
    assert all(not torch.equal(m.aux.running_mean, b) for m, b in zip(layers, aux_before))
    assert all(p.grad is None for p in _main_bn_params(G))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in _aux_bn_params(G))
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in _conv_weights(G))

    G.zero_grad(set_to_none=True)
    _probe_loss(G(x)).backward()  # the normal pass: main BN only
    assert all(p.grad is None for p in _aux_bn_params(G))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in _main_bn_params(G))


@pytest.mark.parametrize("name", GENERATORS.keys())
def test_frozen_bn_uses_running_stats_without_training_them(name):
    torch.manual_seed(0)
    G = build_generator(name, in_channels=1, image_size=32).train()
    x = _images(1, 32)
    with torch.no_grad():
        G(_images(1, 32, seed=5))  # move the running stats away from (0, 1)
    state = {k: v.clone() for k, v in G.state_dict().items()}

    with frozen_bn(G):
        y = G(x)
    assert all(not m.frozen for m in _switchable(G))  # restored
    _probe_loss(y).backward()
    for k, v in G.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert all(p.grad is None for p in _main_bn_params(G))
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in _conv_weights(G))
    with torch.no_grad():
        expected = G.eval()(x)
    torch.testing.assert_close(y.detach(), expected)


def test_aux_bn_is_a_noop_without_advprop_and_contexts_nest():
    torch.manual_seed(0)
    bn = SwitchableBatchNorm2d(4).train()
    x = torch.randn(3, 4, 5, 5)
    with aux_bn(bn):
        y = bn(x)
    assert int(bn.num_batches_tracked) == 1
    torch.testing.assert_close(y, nn.functional.batch_norm(x, None, None, bn.weight, bn.bias, training=True))

    bn2 = SwitchableBatchNorm2d(4, advprop=True)
    with pytest.raises(RuntimeError):
        with aux_bn(bn2), frozen_bn(bn2):
            assert bn2.route == "aux" and bn2.frozen
            raise RuntimeError("boom")
    assert bn2.route == "main" and not bn2.frozen


def test_switchable_bn_state_dict_is_plain_bn_plus_aux():
    plain = set(nn.BatchNorm2d(4).state_dict())
    assert set(SwitchableBatchNorm2d(4).state_dict()) == plain
    assert set(SwitchableBatchNorm2d(4, advprop=True).state_dict()) == plain | {f"aux.{k}" for k in plain}
    G = build_generator("naive", in_channels=1, image_size=32)
    G.load_state_dict(build_generator("naive", in_channels=1, image_size=32, advprop=True).state_dict(), strict=False)


@pytest.mark.parametrize("name", GENERATORS.keys())
def test_channels_last_and_bf16_autocast(name):
    torch.manual_seed(0)
    G = build_generator(name, in_channels=3, image_size=28).train().to(memory_format=torch.channels_last)
    D = build_discriminator(in_channels=3, image_size=28).train().to(memory_format=torch.channels_last)
    x = _images(3, 28).contiguous(memory_format=torch.channels_last)  # 28: the pad/crop path too
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = G(x)
        logit, z = D(y)
    assert y.shape == x.shape and logit.shape == (BATCH,)
    (_probe_loss(y) + _probe_loss(logit)).backward()
    assert all(torch.isfinite(p.grad).all() for p in G.parameters())


# --------------------------------------------------------------------------- sizes, init, errors


PAPER_PARAMS = {"naive": 2.04e6, "unet": 7.76e6, "unetpp": 9.04e6}
EXACT_PARAMS = {"naive": 2_133_632, "unet": 7_762_465, "unetpp": 9_045_249}


@pytest.mark.parametrize("name", GENERATORS.keys())
def test_parameter_counts_match_the_paper(name):
    n = count_parameters(build_generator(name, in_channels=1, image_size=32))
    assert n == EXACT_PARAMS[name]
    assert abs(n - PAPER_PARAMS[name]) / PAPER_PARAMS[name] < 0.15
    n_aux = count_parameters(build_generator(name, in_channels=1, image_size=32, advprop=True))
    n_bn = sum(m.weight.numel() * 2 for m in _switchable(build_generator(name, in_channels=1, image_size=32)))
    assert n_aux == n + n_bn
    assert count_parameters(build_discriminator(in_channels=1, image_size=32)) == 661_376


def test_naive_is_the_dcgan_stack_at_32():
    G = build_generator("naive", in_channels=1, image_size=32)
    convs = [(m.in_channels, m.out_channels, m.stride[0]) for m in G.encoder if isinstance(m, nn.Conv2d)]
    assert convs == [(1, 64, 2), (64, 128, 2), (128, 256, 2), (256, 100, 1)]
    deconvs = [(m.in_channels, m.out_channels, m.stride[0]) for m in G.decoder if isinstance(m, nn.ConvTranspose2d)]
    assert deconvs == [(100, 256, 1), (256, 128, 2), (128, 64, 2), (64, 1, 2)]
    # depth follows the size: one more stage per doubling
    assert len([m for m in dcgan_encoder(1, 128) if isinstance(m, nn.Conv2d)]) == 6


def test_init_follows_ganomaly():
    torch.manual_seed(0)
    G = build_generator("unet", in_channels=1, image_size=32)
    w = torch.cat([p.detach().flatten() for p in _conv_weights(G)])
    assert abs(w.std().item() - 0.02) < 0.001 and abs(w.mean().item()) < 0.001
    bn_w = torch.cat([m.weight.detach() for m in _switchable(G)])
    assert abs(bn_w.mean().item() - 1.0) < 0.005 and abs(bn_w.std().item() - 0.02) < 0.005
    assert all(float(m.bias.detach().abs().sum()) == 0 for m in _switchable(G))
    D = init_weights(Discriminator(in_channels=1, image_size=32))
    assert abs(torch.cat([p.detach().flatten() for p in _conv_weights(D)]).std().item() - 0.02) < 0.001


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet'; choose one of: naive, unet, unetpp"):
        build_generator("resnet", in_channels=1, image_size=32)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_channels": 0, "image_size": 32}, r"in_channels must be a positive integer.*got 0"),
        ({"in_channels": 1.5, "image_size": 32}, r"in_channels .*got 1.5"),
        ({"in_channels": 1, "image_size": 8}, r"image_size must be an integer from 16 to 1024.*got 8"),
        ({"in_channels": 1, "image_size": 4096}, r"image_size .*got 4096"),
    ],
)
def test_bad_shape_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_generator("naive", **kwargs)
    with pytest.raises(ValueError, match=match):
        build_discriminator(**kwargs)


def test_wrong_input_shape_and_style_raise():
    G = build_generator("naive", in_channels=1, image_size=32)
    with pytest.raises(ValueError, match=r"expected a \(B, 1, 32, 32\) tensor; got shape \(2, 3, 32, 32\)"):
        G(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"unknown U-Net style 'vgg'; choose one of: zhou, pix2pix"):
        build_generator("unet", in_channels=1, image_size=32, style="vgg")
