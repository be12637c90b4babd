"""Reference detectors for runs with labelled anomalies, trained and scored in AGAD's own harness.

They answer one question: what do plain supervision and the best
semi-supervised peer make of the same labels, on the same splits, seeds,
images and protocol?

- ``logreg``: scikit-learn's LogisticRegression on raw pixels (scaled to
  [0, 1]), trained on the normal class (label 0) plus the labelled anomalies
  (label 1), ``C=1``, ``class_weight="balanced"``. Its ``coef_`` and
  ``intercept_`` are copied into an ``nn.Linear``; the score is the logit.
- ``cnn``: a small CNN (two 3x3 conv layers, 32 and 64 channels, ReLU, max
  pooling, a 128-unit hidden layer) trained as a binary classifier: 8 epochs
  of Adam (lr 1e-3, batch 64), BCE with ``pos_weight = n_normal / n_anomaly``.
  The score is the logit.
- ``deep-sad``: Deep SAD (Ruff et al., ICLR 2020, "Deep Semi-Supervised
  Anomaly Detection") with the LeNet-type network of its paper for
  MNIST/Fashion-MNIST (conv 5x5, 8 channels -> BN without affine -> leaky
  ReLU -> max pool; conv 5x5, 4 channels -> BN -> leaky ReLU -> max pool;
  linear to a 32-dim code; no bias anywhere). Autoencoder pre-training with
  the mirrored decoder, then the centre c = mean code of the training images
  (coordinates nearer 0 than 0.1 pushed to +-0.1), then the loss
  ``mean over the batch of ||phi(x) - c||^2`` for unlabelled (normal) images
  and ``eta * (||phi(x) - c||^2 + 1e-6)^-1`` for labelled anomalies, eta = 1.
  The score is ``||phi(x) - c||^2``. Settings are the authors' published
  command for (Fashion-)MNIST: Adam, batch 128; pre-training 150 epochs at
  lr 1e-4, weight decay 0.5e-3; training 150 epochs at lr 1e-4, dropped to
  1e-5 after epoch 50, weight decay 0.5e-6. Pixels are scaled to [0, 1] as the
  authors' code does (``ToTensor``). Works with and without labelled
  anomalies; logreg and cnn need them.

Every detector is an ``nn.Module`` whose ``forward(x)`` maps a [-1, 1] batch
(B, C, S, S) to (B,) scores, higher = more anomalous, in eval mode
independently of the rest of the batch. All learned state is in parameters
and buffers, so the modules save and load as safetensors state dicts and
export to ONNX (``anomaly_score`` is an alias of ``forward``).

Example:
    >>> import torch
    >>> m = build_reference("logreg", in_channels=1, image_size=32, seed=0)
    >>> xn = torch.randint(0, 100, (40, 1, 32, 32), dtype=torch.uint8)
    >>> xa = torch.randint(150, 255, (10, 1, 32, 32), dtype=torch.uint8)
    >>> history = fit_reference("logreg", m, xn, xa, seed=0)
    >>> bool(m(torch.full((1, 1, 32, 32), 0.9)) > m(torch.full((1, 1, 32, 32), -0.9)))
    True
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import AgadError
from .nets._common import check_image_args
from .runtime import resolve_device
from .scoring import to_unit_range

__all__ = ["REFERENCE_METHODS", "build_reference", "deep_sad_loss", "fit_reference", "needs_labels"]

REFERENCE_METHODS = ("logreg", "cnn", "deep-sad")

# --- logreg
LOGREG_C = 1.0  # scikit-learn's default regularisation: a reference, so no tuning on anyone's test data
LOGREG_CLASS_WEIGHT = "balanced"  # a few labelled anomalies against thousands of normals: weigh classes equally
# lbfgs on the 1024 pixels of Fashion-MNIST converged within 255 iterations for every class at gamma 0.01-0.2;
# the cap leaves four times that, so fits end converged, not cut off (the record says which: ref/converged)
LOGREG_MAX_ITER = 1000
LOGREG_TOL = 1e-4  # scikit-learn's default

# --- cnn
CNN_EPOCHS = 8  # a fixed budget (no selection on test data); about 5 s an epoch on a Fashion-MNIST class, one thread
CNN_LR = 1e-3  # Adam's usual default
CNN_BATCH = 64
CNN_CHANNELS = (32, 64)
CNN_HIDDEN = 128

# --- deep-sad: the authors' (Fashion-)MNIST command (Deep-SAD-PyTorch README) and paper
SAD_REP_DIM = 32  # code size of the MNIST LeNet
SAD_CHANNELS = (8, 4)
SAD_BN_EPS = 1e-4  # the authors' BatchNorm2d(eps=1e-04, affine=False)
SAD_ETA = 1.0  # weight of the labelled-anomaly term; the paper's default
SAD_EPS = 1e-6  # keeps (||phi(x) - c||^2 + eps)^-1 finite
SAD_CENTER_EPS = 0.1  # centre coordinates within this of 0 are pushed to +-this: a zero coordinate is trivially
#                      matched by zero weights
SAD_BATCH = 128
# 150 + 150 epochs: on one Fashion-MNIST class (6,000 images of 32x32) at one thread, about 3.5 s a pre-training
# epoch and 1.5 s a training epoch, some 13 minutes in all on an AMD EPYC core, 16 on an Intel Xeon core beside
# other jobs (class 0, seed 0, gamma 0: 89.14 test AUROC, docs/results/fmnist_deep_sad_class0.md)
SAD_AE_EPOCHS = 150
SAD_AE_LR = 1e-4
SAD_AE_WEIGHT_DECAY = 0.5e-3
SAD_EPOCHS = 150
SAD_LR = 1e-4
SAD_WEIGHT_DECAY = 0.5e-6
SAD_LR_DROP_FRACTION = 1 / 3  # lr x 0.1 after the first third of training (epoch 50 of 150, --lr_milestone 50)
SAD_CENTER_BATCH = 1024  # eval mode: the batch size does not change the centre, only the speed

EpochCallback = Callable[[nn.Module, dict[str, float]], None]


def _check_name(name: object) -> str:
    if name not in REFERENCE_METHODS:
        raise AgadError(f"unknown reference method {name!r}; use one of {', '.join(REFERENCE_METHODS)}")
    return str(name)


def needs_labels(name: str) -> bool:
    """Whether the reference method trains only with labelled anomalies (logreg, cnn) or also without (deep-sad).

    >>> [needs_labels(n) for n in REFERENCE_METHODS]
    [True, True, False]
    """
    return _check_name(name) != "deep-sad"


# ------------------------------------------------------------------ modules
class ReferenceDetector(nn.Module):
    """Common shape: [-1, 1] images (B, C, S, S) -> (B,) anomaly scores."""

    method = ""

    def __init__(self, in_channels: int, image_size: int):
        super().__init__()
        self.in_channels, self.image_size = in_channels, image_size

    def anomaly_score(self, x: Tensor) -> Tensor:
        """The score, as ``forward`` (for callers that ask scorers for ``anomaly_score``)."""
        return self.forward(x)


class LogRegDetector(ReferenceDetector):
    """Logistic regression on [0, 1] pixels; the score is the logit of "anomaly"."""

    method = "logreg"

    def __init__(self, in_channels: int, image_size: int):
        super().__init__(in_channels, image_size)
        self.linear = nn.Linear(in_channels * image_size * image_size, 1)
        nn.init.zeros_(self.linear.weight)  # unfitted: every image scores 0
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        pixels = (x.float() + 1.0) * 0.5  # the [0, 1] pixels the regression was fitted on
        return self.linear(pixels.flatten(1)).squeeze(1)


class CNNDetector(ReferenceDetector):
    """Two conv layers and a small classifier head; the score is the logit of "anomaly"."""

    method = "cnn"

    def __init__(self, in_channels: int, image_size: int):
        super().__init__(in_channels, image_size)
        c1, c2 = CNN_CHANNELS
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c2 * side * side, CNN_HIDDEN), nn.ReLU(),
                                  nn.Linear(CNN_HIDDEN, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x.float())).squeeze(1)


class DeepSADDetector(ReferenceDetector):
    """Deep SAD's LeNet encoder phi and its centre c (a buffer); the score is ||phi(x) - c||^2."""

    method = "deep-sad"

    def __init__(self, in_channels: int, image_size: int):
        super().__init__(in_channels, image_size)
        c1, c2 = SAD_CHANNELS
        self.conv1 = nn.Conv2d(in_channels, c1, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(c1, eps=SAD_BN_EPS, affine=False)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2, bias=False)
        self.bn2 = nn.BatchNorm2d(c2, eps=SAD_BN_EPS, affine=False)
        side = image_size // 4
        self.fc1 = nn.Linear(c2 * side * side, SAD_REP_DIM, bias=False)
        self.register_buffer("c", torch.zeros(SAD_REP_DIM))  # set after pre-training

    def encode(self, x: Tensor) -> Tensor:
        """phi(x): (B, 32) codes of [-1, 1] images (scaled to [0, 1] first, as the authors' data)."""
        h = (x.float() + 1.0) * 0.5
        h = F.max_pool2d(F.leaky_relu(self.bn1(self.conv1(h))), 2)
        h = F.max_pool2d(F.leaky_relu(self.bn2(self.conv2(h))), 2)
        return self.fc1(h.flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        return (self.encode(x) - self.c).pow(2).sum(1)


class DeepSADDecoder(nn.Module):
    """The encoder's mirror, for pre-training only: the code as a (2, 4, 4) map, upsampled to S/4, S/2 and S
    with a 5x5 transposed conv after each (at S = 32 exactly the authors' decoder; at 28 their last-but-one
    conv crops 16 to 14 where this one upsamples 7 -> 14), then a sigmoid for [0, 1] pixels."""

    def __init__(self, out_channels: int, image_size: int):
        super().__init__()
        c1, c2 = SAD_CHANNELS
        self.sizes = (image_size // 4, image_size // 2, image_size)
        self.deconv1 = nn.ConvTranspose2d(SAD_REP_DIM // 16, c2, 5, padding=2, bias=False)
        self.bn3 = nn.BatchNorm2d(c2, eps=SAD_BN_EPS, affine=False)
        self.deconv2 = nn.ConvTranspose2d(c2, c1, 5, padding=2, bias=False)
        self.bn4 = nn.BatchNorm2d(c1, eps=SAD_BN_EPS, affine=False)
        self.deconv3 = nn.ConvTranspose2d(c1, out_channels, 5, padding=2, bias=False)
        for m in (self.deconv1, self.deconv2, self.deconv3):  # the authors' initialisation
            nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain("leaky_relu"))

    def forward(self, z: Tensor) -> Tensor:
        h = z.view(len(z), SAD_REP_DIM // 16, 4, 4)
        h = self.deconv1(F.interpolate(F.leaky_relu(h), size=self.sizes[0]))
        h = self.deconv2(F.interpolate(F.leaky_relu(self.bn3(h)), size=self.sizes[1]))
        h = self.deconv3(F.interpolate(F.leaky_relu(self.bn4(h)), size=self.sizes[2]))
        return torch.sigmoid(h)


_MODULES = {"logreg": LogRegDetector, "cnn": CNNDetector, "deep-sad": DeepSADDetector}


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise AgadError(f"seed must be an integer in [0, 2**32); got {seed!r}")
    return int(seed)


def _seeded(seed: int, make: Callable[[], nn.Module]) -> nn.Module:
    """Build a module from PyTorch's RNG seeded with ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def build_reference(name: str, *, in_channels: int, image_size: int, seed: int) -> nn.Module:
    """The scoring module of reference method ``name``, freshly initialised from ``seed`` (not yet trained).

    >>> m = build_reference("deep-sad", in_channels=1, image_size=32, seed=0).eval()
    >>> m(torch.zeros(3, 1, 32, 32)).shape
    torch.Size([3])
    """
    name = _check_name(name)
    in_channels, image_size = check_image_args(in_channels, image_size)
    seed = _check_seed(seed)
    return _seeded(seed, lambda: _MODULES[name](in_channels, image_size))


# ---------------------------------------------------------------- training
def _as_images(x, module: ReferenceDetector, what: str, device: torch.device) -> Tensor:
    """uint8 or [-1, 1] float images (tensor or array) -> float [-1, 1] tensor on ``device``; shape checked."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise AgadError(f"{what} must be a tensor or numpy array of images (N, C, S, S); got {type(x).__name__}")
    want = (module.in_channels, module.image_size, module.image_size)
    if x.dim() != 4 or tuple(x.shape[1:]) != want:
        raise AgadError(f"{what} must have shape (N, {', '.join(map(str, want))}) for this {module.method} "
                        f"module; got {tuple(x.shape)}")
    return to_unit_range(x.to(device))


def _check_epochs(epochs: object) -> int | None:
    if epochs is None:
        return None
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise AgadError(f"epochs must be a positive integer or None (the method's default); got {epochs!r}")
    return int(epochs)


def _report(progress: bool, name: str, record: dict[str, float]) -> None:
    if progress:
        from tqdm.auto import tqdm

        terms = " ".join(f"{k}={v:.4g}" for k, v in record.items() if k.startswith("ref/"))
        tqdm.write(f"{name} epoch {int(record['epoch'])}: {terms} ({record['seconds']:.1f}s)")


def _end_epoch(module: nn.Module, record: dict[str, float], history: list, on_epoch: EpochCallback | None,
               progress: bool, name: str) -> None:
    """Record the epoch; the callback sees the module in eval mode (how it scores) and it trains on after."""
    history.append(record)
    _report(progress, name, record)
    if on_epoch is not None:
        was_training = module.training
        module.eval()
        try:
            on_epoch(module, record)
        finally:
            module.train(was_training)


def fit_reference(
    name: str,
    module: nn.Module,
    x_normal,
    x_anomaly=None,
    *,
    seed: int,
    epochs: int | None = None,
    progress: bool = False,
    on_epoch: EpochCallback | None = None,
    device: str | torch.device = "cpu",
) -> list[dict[str, float]]:
    """Train ``module`` (from :func:`build_reference`) in place; one history record per epoch.

    ``x_normal`` and ``x_anomaly`` are (N, C, S, S) uint8 or [-1, 1] float
    images (tensors or arrays); ``x_anomaly`` may be None or empty for
    deep-sad only. ``epochs`` (None: the method's default) sets cnn's epochs,
    and both deep-sad's pre-training and training epochs; logreg is one
    convex fit run to convergence and takes none. Records hold ``epoch``,
    ``seconds`` and loss terms: ``ref/bce`` (logreg, cnn), ``ref/ae``
    (deep-sad pre-training epochs, where the centre is still 0) and
    ``ref/sad`` (deep-sad training epochs). ``on_epoch(module, record)`` runs
    after each epoch with the module in eval mode. The module ends on
    ``device`` in eval mode. The same seed gives the same scores.
    """
    name = _check_name(name)
    if not isinstance(module, _MODULES[name]):
        raise AgadError(f"fit_reference({name!r}) needs the module that build_reference({name!r}, ...) returns; "
                        f"got {type(module).__name__}")
    seed = _check_seed(seed)
    epochs = _check_epochs(epochs)
    dev = resolve_device(device) if device == "auto" else torch.device(device)
    xn = _as_images(x_normal, module, "x_normal", dev)
    if len(xn) < 2:
        raise AgadError(f"{name} needs at least 2 normal training images; got {len(xn)}")
    has_labels = x_anomaly is not None and len(x_anomaly) > 0
    if needs_labels(name) and not has_labels:
        raise AgadError(f"{name} is a supervised reference and needs labelled anomalies (gamma > 0); "
                        "use gamma > 0, or deep-sad, which also trains without them")
    xa = _as_images(x_anomaly, module, "x_anomaly", dev) if has_labels else xn[:0]
    module.to(dev)
    if name == "logreg":
        if epochs is not None:
            raise AgadError("logreg is one convex fit run to convergence and takes no epochs; leave epochs unset")
        history = _fit_logreg(module, xn, xa, on_epoch, progress)
    elif name == "cnn":
        history = _fit_cnn(module, xn, xa, seed, epochs or CNN_EPOCHS, on_epoch, progress)
    else:
        ae_epochs = SAD_AE_EPOCHS if epochs is None else epochs
        sad_epochs = SAD_EPOCHS if epochs is None else epochs
        history = _fit_deep_sad(module, xn, xa, seed, ae_epochs, sad_epochs, on_epoch, progress)
    module.eval()
    return history


def _fit_logreg(module: LogRegDetector, xn: Tensor, xa: Tensor, on_epoch, progress) -> list[dict[str, float]]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    t0 = time.perf_counter()
    x = ((torch.cat([xn, xa]).flatten(1).double() + 1.0) * 0.5).cpu().numpy()  # [0, 1] pixels
    y = np.concatenate([np.zeros(len(xn)), np.ones(len(xa))])
    clf = LogisticRegression(C=LOGREG_C, class_weight=LOGREG_CLASS_WEIGHT, max_iter=LOGREG_MAX_ITER, tol=LOGREG_TOL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(x, y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    with torch.no_grad():
        module.linear.weight.copy_(torch.from_numpy(clf.coef_).to(module.linear.weight))
        module.linear.bias.copy_(torch.from_numpy(clf.intercept_).to(module.linear.bias))
    record = {
        "epoch": 1,
        "ref/bce": float(log_loss(y, clf.predict_proba(x)[:, 1], labels=[0, 1])),
        "ref/iterations": float(np.max(clf.n_iter_)),
        "ref/converged": float(converged),
        "seconds": time.perf_counter() - t0,
    }
    history: list[dict[str, float]] = []
    _end_epoch(module, record, history, on_epoch, progress, "logreg")
    return history


def _batches(n: int, size: int, gen: torch.Generator) -> list[Tensor]:
    order = torch.randperm(n, generator=gen)
    return [order[i : i + size] for i in range(0, n, size)]


def _fit_cnn(module: CNNDetector, xn: Tensor, xa: Tensor, seed: int, epochs: int, on_epoch,
             progress) -> list[dict[str, float]]:
    x = torch.cat([xn, xa])
    y = torch.cat([torch.zeros(len(xn)), torch.ones(len(xa))]).to(x.device)
    pos_weight = torch.tensor(len(xn) / len(xa), device=x.device)  # balances the few anomalies against the normals
    opt = torch.optim.Adam(module.parameters(), lr=CNN_LR)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        module.train()
        total, count = 0.0, 0
        for idx in _batches(len(x), CNN_BATCH, gen):
            idx = idx.to(x.device)
            loss = F.binary_cross_entropy_with_logits(module(x[idx]), y[idx], pos_weight=pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        record = {"epoch": epoch, "ref/bce": total / count, "seconds": time.perf_counter() - t0}
        _end_epoch(module, record, history, on_epoch, progress, "cnn")
    return history


def deep_sad_loss(dist: Tensor, labelled: Tensor, *, eta: float = SAD_ETA, eps: float = SAD_EPS) -> Tensor:
    """Deep SAD's objective on a batch: ``dist`` for unlabelled images, ``eta / (dist + eps)`` for labelled
    anomalies, one mean over the batch (the paper's 1/(n + m), as the authors' code).

    >>> float(deep_sad_loss(torch.tensor([1.0, 4.0]), torch.tensor([False, True]), eps=0.0))
    0.625
    """
    return torch.where(labelled, eta / (dist + eps), dist).mean()


@torch.no_grad()
def _init_center(module: DeepSADDetector, x: Tensor) -> Tensor:
    """Mean code of the training images in eval mode, coordinates within SAD_CENTER_EPS of 0 pushed away."""
    module.eval()
    c = torch.zeros(SAD_REP_DIM, device=x.device)
    for i in range(0, len(x), SAD_CENTER_BATCH):
        c += module.encode(x[i : i + SAD_CENTER_BATCH]).sum(0)
    c /= len(x)
    small = c.abs() < SAD_CENTER_EPS
    c[small & (c < 0)] = -SAD_CENTER_EPS
    c[small & (c > 0)] = SAD_CENTER_EPS
    return c


def _fit_deep_sad(module: DeepSADDetector, xn: Tensor, xa: Tensor, seed: int, ae_epochs: int, sad_epochs: int,
                  on_epoch, progress) -> list[dict[str, float]]:
    # Labelled anomalies join the training set, as in the authors' code: the autoencoder and the centre see
    # them as unlabelled images; only the Deep SAD loss uses their label.
    x = torch.cat([xn, xa])
    labelled = torch.cat([torch.zeros(len(xn), dtype=torch.bool), torch.ones(len(xa), dtype=torch.bool)]).to(x.device)
    decoder = _seeded(seed + 1, lambda: DeepSADDecoder(module.in_channels, module.image_size)).to(x.device)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []

    # -- autoencoder pre-training of phi (MSE on [0, 1] pixels)
    params = list(module.parameters()) + list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=SAD_AE_LR, weight_decay=SAD_AE_WEIGHT_DECAY)
    module.train()
    decoder.train()
    for epoch in range(1, ae_epochs + 1):
        t0 = time.perf_counter()
        total, count = 0.0, 0
        for idx in _batches(len(x), SAD_BATCH, gen):
            xb = x[idx.to(x.device)]
            loss = F.mse_loss(decoder(module.encode(xb)), (xb + 1.0) * 0.5)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        record = {"epoch": epoch, "ref/ae": total / count, "seconds": time.perf_counter() - t0}
        _end_epoch(module, record, history, on_epoch, progress, "deep-sad")

    # -- the centre, then the Deep SAD objective
    module.c.copy_(_init_center(module, x))
    opt = torch.optim.Adam(module.parameters(), lr=SAD_LR, weight_decay=SAD_WEIGHT_DECAY)
    drop_at = max(1, round(sad_epochs * SAD_LR_DROP_FRACTION))
    module.train()
    for epoch in range(1, sad_epochs + 1):
        t0 = time.perf_counter()
        if epoch == drop_at + 1:
            for group in opt.param_groups:
                group["lr"] = SAD_LR * 0.1
        total, dist_sum, n_unlabelled, count = 0.0, 0.0, 0, 0
        for idx in _batches(len(x), SAD_BATCH, gen):
            idx = idx.to(x.device)
            dist = (module.encode(x[idx]) - module.c).pow(2).sum(1)
            is_a = labelled[idx]
            loss = deep_sad_loss(dist, is_a)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            dist_sum += float(dist.detach()[~is_a].sum())
            n_unlabelled += int((~is_a).sum())
            count += len(idx)
        record = {"epoch": ae_epochs + epoch, "ref/sad": total / count,
                  "ref/dist": dist_sum / max(1, n_unlabelled), "seconds": time.perf_counter() - t0}
        if not math.isfinite(record["ref/sad"]):
            record["nonfinite"] = 1.0
        _end_epoch(module, record, history, on_epoch, progress, "deep-sad")
    return history
