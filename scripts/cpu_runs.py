"""CPU runs made in the session that produced docs/RESULTS.md (resumable; see agad.experiments.grid).

1. bf16 vs fp32 parity of the default recipe on one Fashion-MNIST class (issue 4's 0.5-point check);
2. the MNIST sample with the new default and w/o C.A. (all digits, seed 0).
"""

from agad.config import TrainConfig
from agad.experiments.grid import run_grid

DETACH_EMA = {"advprop": False, "detach_pseudo": True, "ema_decay": 0.995}  # the defaults of session 1
parity = [TrainConfig(data="fashion-mnist", normal_class=1, precision=p, track_test_auroc=True, **DETACH_EMA)
          for p in ("bf16", "fp32")]
run_grid(parity, "results/fmnist-cpu", jobs=2, keep_weights=False)
mnist = [TrainConfig(data="mnist-sample", normal_class=c, track_test_auroc=True, **opts)
         for opts in (DETACH_EMA, {"ca": False, "advprop": False, "detach_pseudo": False, "ema_decay": 0.0})
         for c in range(10)]
run_grid(mnist, "results/mnist-sample", jobs=2, keep_weights=True)
