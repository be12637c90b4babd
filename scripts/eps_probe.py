"""Probe for issue 7's open γ > 0 problem: does a larger ε (bounded reciprocals) calm the labelled-anomaly
branch? Validation only (held-out training normals + other-class training images); one class, one seed."""

from agad.config import TrainConfig
from agad.experiments.grid import run_grid

cfgs = [TrainConfig(data="fashion-mnist", normal_class=5, gamma=0.05, val_fraction=0.1, eps=eps,
                    advprop=False, detach_pseudo=True, ema_decay=0.995)  # the defaults of session 1
        for eps in (1e-3, 1.0)]
run_grid(cfgs, "results/fmnist-cpu", jobs=2, keep_weights=False)
