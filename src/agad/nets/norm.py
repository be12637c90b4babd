"""Batch norm with the paper's two switches (AGAD Table 5), AdvProp and freeze, and one of ours.

`SwitchableBatchNorm2d` *is* an `nn.BatchNorm2d` (its main statistics and
affine parameters live under the usual names ``weight``, ``bias``,
``running_mean``, ``running_var``, ``num_batches_tracked``), so a model built
with it has the same state_dict as one built with plain BN, plus ``aux.*``
entries when ``advprop=True``.

Two switches, set through context managers so that the training loop never
touches layers one by one:

* ``aux_bn(G)``: route every switchable layer to its auxiliary BN (AdvProp,
  Xie et al. 2020). Used for the pseudo-anomaly pass ``G(x_hat)`` so that the
  statistics of reconstructions-of-reconstructions do not pollute the
  statistics of real images. Layers built with ``advprop=False`` have no
  auxiliary BN and keep using the main one (the context is then a no-op).
* ``frozen_bn(G)``: normalise with the running statistics (as in eval mode),
  leave them untouched and use the affine parameters detached. Used for the
  labelled-anomaly batches, whose statistics must not shift the normal-data
  statistics and whose reciprocal losses must not train the BN affine terms.
* ``untracked_bn(G)``: normalise with the batch's own statistics, as in
  training, but leave the running statistics untouched (``track_bn_anomalies
  =False``, ``track_bn_pseudo=False``). The (pseudo-)anomaly batches then
  cannot pull the running statistics -- which score *every* image at test
  time -- toward theirs.

And one function that replaces the running statistics outright,
:func:`recompute_bn_statistics` (``scoring_bn="recomputed"``): one pass over
the normal training images, one over the labelled anomalies, mixed with a
fixed weight -- what the running averages hold during training, minus their
drift.

>>> import torch
>>> bn = SwitchableBatchNorm2d(8, advprop=True).train()
>>> x = torch.randn(4, 8, 5, 5)
>>> with aux_bn(bn):
...     y = bn(x)          # aux statistics updated, main ones untouched
>>> int(bn.num_batches_tracked), int(bn.aux.num_batches_tracked)
(0, 1)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


__all__ = ["SwitchableBatchNorm2d", "aux_bn", "frozen_bn", "has_aux_bn", "recompute_bn_statistics", "untracked_bn"]

MAIN = "main"
AUX = "aux"


class SwitchableBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with an optional auxiliary BN and a freeze switch.

    Args:
        num_features: channels C of the (B, C, H, W) input.
        advprop: own a second BN, ``aux``, used while ``route == "aux"``.
        eps, momentum: as in ``nn.BatchNorm2d``.

    Attributes (plain Python state, not saved in the state_dict):
        route: ``"main"`` or ``"aux"``; set by :func:`aux_bn`.
        frozen: bool; set by :func:`frozen_bn`.
        untracked: bool; set by :func:`untracked_bn` (``frozen`` wins when both are set).

    >>> SwitchableBatchNorm2d(4)(torch.randn(2, 4, 3, 3)).shape
    torch.Size([2, 4, 3, 3])
    """

    def __init__(self, num_features: int, *, advprop: bool = False, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.advprop = bool(advprop)
        self.aux: nn.BatchNorm2d | None = (
            nn.BatchNorm2d(num_features, eps=eps, momentum=momentum) if advprop else None
        )
        self.route = MAIN
        self.frozen = False
        self.untracked = False

    def _active(self) -> nn.BatchNorm2d:
        if self.route == AUX and self.aux is not None:
            return self.aux
        return self

    def forward(self, x: Tensor) -> Tensor:
        bn = self._active()
        if self.frozen:
            # Eval-mode normalisation; no statistics update, no gradient to the affine terms.
            return F.batch_norm(
                x, bn.running_mean, bn.running_var, bn.weight.detach(), bn.bias.detach(),
                training=False, momentum=0.0, eps=bn.eps,
            )
        if self.untracked and self.training:
            # Batch statistics, as in training, with no running statistics to update.
            return F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, momentum=0.0, eps=bn.eps)
        if bn is self:
            return super().forward(x)  # the common path: exactly nn.BatchNorm2d
        return bn(x)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", advprop={self.advprop}"


def _switchable(module: nn.Module) -> list[SwitchableBatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, SwitchableBatchNorm2d)]


@contextmanager
def _switched(module: nn.Module, attr: str, value) -> Iterator[nn.Module]:
    """Set ``attr`` on every switchable layer of ``module``; restore the previous values on exit."""
    layers = _switchable(module)
    saved = [getattr(m, attr) for m in layers]
    for m in layers:
        setattr(m, attr, value)
    try:
        yield module
    finally:
        for m, old in zip(layers, saved):
            setattr(m, attr, old)


def has_aux_bn(module: nn.Module) -> bool:
    """True when ``module`` holds at least one auxiliary BN (it was built with ``advprop=True``)."""
    return any(m.aux is not None for m in _switchable(module))


@contextmanager
def aux_bn(module: nn.Module) -> Iterator[nn.Module]:
    """Route every ``SwitchableBatchNorm2d`` in ``module`` to its auxiliary BN.

    The previous routes are restored on exit (also on error), so contexts nest.
    Layers without an auxiliary BN keep using their main BN.

    >>> g = nn.Sequential(nn.Conv2d(1, 4, 3), SwitchableBatchNorm2d(4, advprop=True))
    >>> with aux_bn(g):
    ...     g[1].route
    'aux'
    >>> g[1].route
    'main'
    """
    with _switched(module, "route", AUX):
        yield module


@contextmanager
def frozen_bn(module: nn.Module) -> Iterator[nn.Module]:
    """Freeze every ``SwitchableBatchNorm2d`` in ``module`` for the duration.

    Frozen layers normalise with their running statistics, do not update them
    and pass no gradient to their affine weight/bias (the input still gets its
    gradient). Previous states are restored on exit.

    >>> bn = SwitchableBatchNorm2d(3).train()
    >>> with frozen_bn(bn):
    ...     _ = bn(torch.randn(2, 3, 4, 4))
    >>> int(bn.num_batches_tracked)
    0
    """
    with _switched(module, "frozen", True):
        yield module


@contextmanager
def untracked_bn(module: nn.Module) -> Iterator[nn.Module]:
    """Normalise with batch statistics but update no running statistics, for the duration.

    The affine weight/bias still train. In eval mode layers behave as usual (running statistics).

    >>> bn = SwitchableBatchNorm2d(3).train()
    >>> with untracked_bn(bn):
    ...     y = bn(torch.randn(8, 3, 4, 4) * 5 + 2)
    >>> int(bn.num_batches_tracked), float(bn.running_mean.abs().max()), round(abs(float(y.mean().detach())), 4)
    (0, 0.0, 0.0)
    """
    with _switched(module, "untracked", True):
        yield module


def _scoring_bn_layers(module: nn.Module) -> list[_BatchNorm]:
    """The BN layers that normalise in eval mode: every one but the auxiliary BNs of AdvProp."""
    aux = {id(m.aux) for m in _switchable(module) if m.aux is not None}
    return [m for m in module.modules()
            if isinstance(m, _BatchNorm) and m.track_running_stats and id(m) not in aux]


@torch.no_grad()
def _averaged_statistics(module: nn.Module, layers: list[_BatchNorm], batches: Iterable[Tensor]) -> int:
    """Set ``layers``' running statistics to their plain average over ``batches`` (one training-mode pass)."""
    momenta = [m.momentum for m in layers]
    was_training = module.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average, as torch.optim.swa_utils.update_bn
    module.train()
    n = 0
    try:
        for x in batches:
            module(x)
            n += 1
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        module.train(was_training)
    return n


@torch.no_grad()
def recompute_bn_statistics(module: nn.Module, normal: Iterable[Tensor], anomalies: Iterable[Tensor] | None = None,
                            anomaly_weight: float = 0.0) -> nn.Module:
    """Replace the running statistics of ``module``'s scoring BN layers (in place; returns ``module``).

    Each layer's running mean and variance become ``(1 - w) * normal + w * anomaly``: their averages over one
    training-mode pass of the ``normal`` batches and, when ``w = anomaly_weight > 0``, one of the ``anomalies``
    batches. Batch norm in training mode never reads them, so this changes only how images are scored.
    AdvProp's auxiliary BNs are left as they are.

    >>> bn = nn.BatchNorm2d(1)
    >>> _ = recompute_bn_statistics(bn, [torch.zeros(4, 1, 2, 2)], [torch.full((4, 1, 2, 2), 8.0)], 0.25)
    >>> float(bn.running_mean), bn.training
    (2.0, True)
    """
    if not 0.0 <= anomaly_weight <= 1.0:
        raise ValueError(f"anomaly_weight must lie in [0, 1]; got {anomaly_weight}")
    layers = _scoring_bn_layers(module)
    if not layers:
        return module
    if _averaged_statistics(module, layers, normal) == 0:
        raise ValueError("recompute_bn_statistics needs at least one batch of normal images")
    if anomalies is None or anomaly_weight == 0.0:
        return module
    normal_stats = [(m.running_mean.clone(), m.running_var.clone()) for m in layers]
    if _averaged_statistics(module, layers, anomalies) == 0:
        raise ValueError("recompute_bn_statistics got an anomaly weight but no anomaly batches")
    for m, (mean, var) in zip(layers, normal_stats):
        m.running_mean.lerp_(mean, 1.0 - anomaly_weight)  # = (1 - w) * normal + w * anomaly
        m.running_var.lerp_(var, 1.0 - anomaly_weight)
    return module
