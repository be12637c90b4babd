"""The one place that says how an AGAD run is set up.

Every field has a default and a short *why*. A config is plain data: it can be
written to JSON next to a run, read back, overridden from a TOML file and from
the command line, and it fully describes how to rebuild the run's data and
networks (no outside state needed).

>>> cfg = TrainConfig(normal_class=3, epochs=2)
>>> TrainConfig.from_dict(cfg.to_dict()) == cfg
True
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import AgadError

BACKBONES = ("naive", "unet", "unetpp")
METHODS = ("agad", "ganomaly", "skip-ganomaly")
BASELINE_BACKBONES = {"ganomaly": "naive", "skip-ganomaly": "unet"}  # fixed by the method: what each really builds
UNET_STYLES = ("auto", "zhou", "pix2pix")  # agad.nets.unet; auto: pix2pix for Skip-GANomaly, zhou otherwise
PROTOCOLS = ("one-vs-rest", "one-anomalous")
ANOMALY_DISTANCES = ("input", "pseudo")
ADCON_FORMS = ("linear", "reciprocal", "bounded")
SELECT_EPOCHS = ("auto", "last", "val-recon", "val-ratio")
SCORING_BNS = ("running", "recomputed")
HELD_OUT_RULES = ("val-recon", "val-ratio")  # epoch rules that score held-out normal training images
LR_SCHEDULES = ("constant", "cosine")
AUTO_VAL_FRACTION = 0.1  # held out when labelled anomalies make the default val-ratio (docs/STABILITY.md)
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    # --- data and protocol (SPEC §5) ---
    data: str = "mnist-sample"  # dataset name or a directory
    normal_class: int = 0  # the class treated as normal (or as the anomaly with protocol one-anomalous)
    gamma: float = 0.0  # fraction of labelled anomalies among training images, in [0, 1)
    known_classes: int | None = None  # draw labelled anomalies from this many classes only (Deep SAD's harder variant)
    protocol: str = "one-vs-rest"  # the paper's text; "one-anomalous" is GANomaly's / the Fig. 2 caption
    image_size: int | None = None  # None: the dataset's default (32 for MNIST-like and CIFAR, 128 for folders)

    # --- model (SPEC §2) ---
    method: str = "agad"  # agad, or a baseline in the same harness
    backbone: str = "naive"  # naive | unet | unetpp
    # the U-Net: "zhou" (Zhou et al.'s plain U-Net, the paper's 7.76M parameters; AGAD's unet backbone) or
    # "pix2pix" (Skip-GANomaly's own generator, 16.65M). "auto": pix2pix for method skip-ganomaly, else zhou
    unet_style: str = "auto"

    # --- optimisation (SPEC §4) ---
    epochs: int = 15  # the paper gives none; GANomaly uses 15. Fixed, never chosen on test data.
    batch_size: int = 64  # normal images per step (paper: 256 in all). 64 gives 4x more updates per epoch
    #                       at the same per-image cost; labelled anomalies come on top of these
    lr: float = 2e-4  # Adam, as in GANomaly
    # constant (GANomaly, the paper) or cosine: G's and D's learning rate falls per step from lr to 0 at the
    # end of the budget (issue 7 probe: damp the late-epoch swings)
    lr_schedule: str = "constant"
    beta1: float = 0.5
    beta2: float = 0.999
    min_anomalies_per_batch: int = 32  # Algorithm 1: every mini-batch holds at least 32 labelled anomalies when gamma > 0

    # --- loss weights (SPEC §3) ---
    w_adv: float = 1.0
    w_con: float = 50.0
    w_adcon: float = 15.0
    w_lat: float = 5.0
    ca: bool = True  # contextual adversarial term on normal images; False is the paper's "w/o C.A." ablation
    anomaly_distance: str = "input"  # d_a = |x - G(x)| ("input", SPEC decision) or |x̂ - G(x̂)| ("pseudo", literal Algorithm 1)
    eps: float = 1e-3  # keeps the reciprocal terms finite
    delta: float = 1e-5  # re-initialise D when its loss falls below this (GANomaly's trick)

    # --- batch-norm switches (paper Table 5) ---
    advprop: bool = True  # auxiliary BN for the pseudo-anomaly pass G(x̂) (default since session 2, see below)
    freeze_bn_anomalies: bool = False  # BN neither updates statistics nor trains affine params on labelled anomalies
    # False: labelled anomalies are normalised with their own batch statistics but do not update the running
    # statistics, which then describe normal images only (issue 7, session 6; True is the paper: shared BN)
    track_bn_anomalies: bool = True
    # the same for the pseudo-anomaly pass G(x̂) when it runs through the main BN (advprop=False); with AdvProp
    # it runs through the auxiliary BN, whose statistics never score
    track_bn_pseudo: bool = True
    # which BN statistics score images: "running" (the averages kept during training, as the paper) or
    # "recomputed": after each epoch, on a copy of the scoring generator, the plain averages of one training-
    # mode pass over the normal training images and one over the labelled anomalies, mixed (1 - w) : w with
    # w = scoring_bn_anomaly_weight (w has no effect without labelled anomalies). Training is unchanged
    # (issue 7, session 7; docs/STABILITY.md)
    scoring_bn: str = "running"
    scoring_bn_anomaly_weight: float = 0.25

    # --- stability options (issue 7) ---
    # Defaults chosen on validation data carved from *training* images (docs/STABILITY.md): AdvProp's
    # auxiliary BN for the pseudo-anomaly pass and scoring with an EMA of G. The paper-literal recipe is
    # advprop=False, ema_decay=0.
    detach_pseudo: bool = False  # feed x̂.detach() to the pseudo-anomaly pass: no gradient through the first pass
    adcon_form: str = "linear"  # linear: -|x̂ - G(x̂)| (paper); reciprocal: 1/(|.|+eps); bounded: -min(|.|, margin)
    adcon_margin: float = 0.5  # only for adcon_form="bounded": distance beyond which no more push
    adcon_warmup_epochs: float = 0.0  # λadcon ramps linearly from 0 over this many epochs
    ema_decay: float = 0.995  # > 0: keep an exponential moving average of G and score with it (0 = off)
    grad_clip: float = 0.0  # > 0: clip G's gradient norm
    # > 0: the labelled-anomaly push stops, per image, once d_a (and the latent distance) exceed this
    # many times the same batch's normal value (|x - x̂| and the normals' latent loss; with
    # anomaly_distance="pseudo" d_a is |x̂ - G(x̂)|, still measured against the normals' |x - x̂|);
    # 0 = unbounded, as the paper
    anomaly_margin: float = 0.0

    # --- runtime ---
    seed: int = 0
    device: str = "auto"  # auto picks CUDA when present
    precision: str = "auto"  # auto: bf16 autocast where the CPU/GPU supports it fast, else fp32
    channels_last: bool = True
    compile: bool = False  # torch.compile the networks (helps on GPU; slow to start)
    num_threads: int = 0  # 0: leave PyTorch's default
    eval_batch_size: int = 256
    # > 0: hold out this fraction of normal *training* images (+ as many other-class training images as
    # anomalies) to measure validation AUROC per epoch; never test data. None: AUTO_VAL_FRACTION when there are
    # labelled anomalies (gamma > 0), else 0 -- see resolved()
    val_fraction: float | None = None
    track_test_auroc: bool = False  # diagnostics only (Fig. 6): logged per epoch, never used to pick anything
    # which epoch's (EMA) weights to keep: "last" (fixed budget), or "val-recon": the epoch with the lowest
    # mean score of the held-out normal *training* images (needs val_fraction > 0; no anomaly label used), or
    # "val-ratio" (needs gamma > 0): the lowest held-out normal score divided by the labelled anomalies' mean
    # reconstruction distance that epoch -- val-recon guarded against a generator that drifts toward
    # reconstructing everything, anomalies included. "auto": with labelled anomalies (gamma > 0), where late
    # collapses happen, val-ratio (session 5; val-recon in sessions 3-4), else last (docs/STABILITY.md)
    select_epoch: str = "auto"

    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes recorded with the run

    def __post_init__(self) -> None:
        self.validate()

    # -- validation: one line naming the field, the allowed values and what was given
    def validate(self) -> None:
        def choice(name: str, allowed: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in allowed:
                raise AgadError(f"The '{name}' parameter must be one of {', '.join(allowed)}. Got {value!r} instead.")

        def number(name: str, lo: float, hi: float, *, lo_open=False, hi_open=False, integer=False) -> None:
            value = getattr(self, name)
            ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok_type or (not integer and not math.isfinite(value)):
                kind = "an integer" if integer else "a number"
                raise AgadError(f"The '{name}' parameter must be {kind}. Got {value!r} instead.")
            bad = (value <= lo if lo_open else value < lo) or (value >= hi if hi_open else value > hi)
            if bad:
                lb = "(" if lo_open else "["
                rb = ")" if hi_open else "]"
                raise AgadError(f"The '{name}' parameter must be in {lb}{lo}, {hi}{rb}. Got {value!r} instead.")

        if not isinstance(self.data, str) or not self.data:
            raise AgadError(f"The 'data' parameter must be a dataset name or a directory. Got {self.data!r} instead.")
        for flag in ("ca", "advprop", "freeze_bn_anomalies", "track_bn_anomalies", "track_bn_pseudo", "detach_pseudo",
                     "channels_last", "compile", "track_test_auroc"):
            if not isinstance(getattr(self, flag), bool):
                raise AgadError(f"The '{flag}' parameter must be true or false. Got {getattr(self, flag)!r} instead.")
        choice("method", METHODS)
        choice("backbone", BACKBONES)
        choice("unet_style", UNET_STYLES)
        if self.unet_style != "auto" and not self.uses_unet():
            raise AgadError(f"unet_style {self.unet_style!r} sets the U-Net of the unet backbone or of "
                            f"Skip-GANomaly; this run has none (method {self.method}, backbone {self.backbone}): "
                            "drop unet_style or use --backbone unet")
        choice("protocol", PROTOCOLS)
        choice("anomaly_distance", ANOMALY_DISTANCES)
        choice("adcon_form", ADCON_FORMS)
        choice("precision", PRECISIONS)
        choice("device", DEVICES)
        number("gamma", 0, 1, hi_open=True)
        number("normal_class", 0, 10_000, integer=True)
        number("epochs", 1, 100_000, integer=True)
        number("batch_size", 2, 1 << 20, integer=True)
        number("eval_batch_size", 1, 1 << 20, integer=True)
        number("min_anomalies_per_batch", 1, 1 << 20, integer=True)
        number("lr", 0, 1, lo_open=True)
        number("beta1", 0, 1, hi_open=True)
        number("beta2", 0, 1, hi_open=True)
        for w in ("w_adv", "w_con", "w_adcon", "w_lat", "delta", "adcon_warmup_epochs", "grad_clip",
                  "anomaly_margin"):
            number(w, 0, math.inf, hi_open=True)
        number("eps", 0, 1, lo_open=True)
        number("adcon_margin", 0, math.inf, lo_open=True, hi_open=True)
        number("ema_decay", 0, 1, hi_open=True)
        if self.val_fraction is not None:
            number("val_fraction", 0, 1, hi_open=True)
        choice("select_epoch", SELECT_EPOCHS)
        choice("scoring_bn", SCORING_BNS)
        number("scoring_bn_anomaly_weight", 0, 1)
        choice("lr_schedule", LR_SCHEDULES)
        if self.select_epoch == "val-ratio" and self.gamma <= 0:
            raise AgadError("select_epoch 'val-ratio' weighs the held-out normal score against the labelled "
                            "anomalies' reconstruction distance: it needs labelled anomalies (gamma > 0); "
                            "use val-recon or last without them")
        if self.select_epoch in HELD_OUT_RULES and self.resolved_val_fraction() <= 0:
            raise AgadError(f"select_epoch '{self.select_epoch}' scores held-out normal training images: "
                            "set val_fraction > 0 (e.g. --val-fraction 0.1)")
        number("seed", 0, 2**32 - 1, integer=True)
        number("num_threads", 0, 4096, integer=True)
        if self.method != "agad" and self.gamma > 0:
            raise AgadError(
                f"method {self.method} is semi-supervised and ignores labelled anomalies; use gamma 0 "
                f"(got {self.gamma}) or method agad"
            )
        if self.known_classes is not None:
            number("known_classes", 1, 10_000, integer=True)
        if self.image_size is not None:
            number("image_size", 16, 1024, integer=True)

    # -- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> "TrainConfig":
        """Build a config, rejecting keys it does not know (a typo must not pass silently)."""
        known = set(cls.field_names())
        unknown = sorted(set(values) - known)
        if unknown:
            raise AgadError(
                f"{source}: unknown key {unknown[0]!r}; valid keys are: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    # -- "auto" values, made concrete for one run
    def resolved_val_fraction(self) -> float:
        if self.val_fraction is not None:
            return float(self.val_fraction)
        return AUTO_VAL_FRACTION if self.gamma > 0 else 0.0

    def uses_unet(self) -> bool:
        """Whether the generator is a U-Net (the unet backbone, or Skip-GANomaly's)."""
        return self.method == "skip-ganomaly" or (self.method == "agad" and self.backbone == "unet")

    def resolved_unet_style(self) -> str:
        """The U-Net style a run builds: Skip-GANomaly's own pix2pix U-Net for that baseline, else Zhou's.

        >>> TrainConfig(method="skip-ganomaly").resolved_unet_style(), TrainConfig().resolved_unet_style()
        ('pix2pix', 'zhou')
        """
        if self.unet_style != "auto":
            return self.unet_style
        return "pix2pix" if self.method == "skip-ganomaly" else "zhou"

    def resolved(self) -> "TrainConfig":
        """The config with its "auto" values made concrete: what a run records and what names it.

        With labelled anomalies (gamma > 0) the default holds out 10% of the normal training images and keeps
        the epoch that scores them lowest relative to the labelled anomalies' reconstruction distance; without,
        it trains on all of them and keeps the last epoch.

        >>> c = TrainConfig(gamma=0.05).resolved()
        >>> (c.val_fraction, c.select_epoch)
        (0.1, 'val-ratio')
        >>> c = TrainConfig().resolved()
        >>> (c.val_fraction, c.select_epoch)
        (0.0, 'last')
        >>> TrainConfig(gamma=0.05, val_fraction=0.0).resolved().select_epoch
        'last'
        >>> TrainConfig(method="skip-ganomaly").resolved().backbone
        'unet'
        """
        val_fraction = self.resolved_val_fraction()
        select = self.select_epoch
        if select == "auto":
            select = "val-ratio" if self.gamma > 0 and val_fraction > 0 else "last"
        unet_style = self.resolved_unet_style() if self.uses_unet() else self.unet_style
        backbone = BASELINE_BACKBONES.get(self.method, self.backbone)  # a baseline's --backbone changes nothing
        return dataclasses.replace(self, val_fraction=val_fraction, select_epoch=select, unet_style=unet_style,
                                   backbone=backbone)
