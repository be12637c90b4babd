"""The one place that says how an AGAD run is set up.

:class:`TrainConfig` holds every option of a run, each with its default and a
short *why*. :data:`OPTIONS` is the one table of what each option allows: it
drives validation (:meth:`TrainConfig.validate`), the ``agad train`` and
``agad bench`` flags (:func:`agad.cli.add_config_flags`), the parameters of the
estimator (:class:`agad.AGAD`) and a test over every option. Options marked
``runtime`` (device, precision, threads...) change how fast a run goes, not
what it computes, and are not part of a run's identity.

A config is plain data: it is written to JSON beside a run, read back,
overridden by a recipe, a TOML file and command-line flags, and it fully
describes how to rebuild the run's data and networks.

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
# Every method of the harness (agad.methods holds how each builds, trains and scores) and what it does with
# labelled anomalies: "uses" them when there are any, "ignores" them (semi-supervised baselines: gamma must
# be 0) or "needs" them (supervised references: gamma must be > 0).
METHOD_LABELS = {"agad": "uses", "ganomaly": "ignores", "skip-ganomaly": "ignores", "logreg": "needs", "cnn": "needs",
                 "deep-sad": "uses"}
METHODS = tuple(METHOD_LABELS)
BASELINE_BACKBONES = {"ganomaly": "naive", "skip-ganomaly": "unet"}  # fixed by the method: what each really builds
UNET_STYLES = ("auto", "zhou", "pix2pix")  # agad.nets.unet; auto: pix2pix for Skip-GANomaly, zhou otherwise
PROTOCOLS = ("one-vs-rest", "one-anomalous")
ANOMALY_DISTANCES = ("input", "pseudo")
SELECT_EPOCHS = ("auto", "last", "val-recon", "val-ratio")
SCORING_BNS = ("running", "recomputed")
HELD_OUT_RULES = ("val-recon", "val-ratio")  # epoch rules that score held-out normal training images
AUTO_VAL_FRACTION = 0.1  # held out when labelled anomalies make the default val-ratio (docs/STABILITY.md)
AUTO_EPOCHS = 15  # the paper gives none; GANomaly uses 15
# the default budget's floor in optimizer steps: chosen on validation data from the training split of the MNIST
# sample, first against 15 epochs alone (~75-105 steps on a 400-image class), then 1,200 against 600 for
# steadier curves (docs/STABILITY.md); Fashion-MNIST's 15 epochs are ~1,300-1,400 steps, so it keeps its epochs
AUTO_MIN_STEPS = 1200
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
LOGGERS = ("none", "tensorboard")

# Options that lost their selection. A run record written before they went still loads when it used the
# value below (the behaviour that remains); any other value names the option. docs/DECISIONS.md says what
# each was and why it went.
# Options whose default changed after runs were recorded without them: a run record (config.json) that lacks
# the key was trained with this value (TrainConfig.from_dict(..., record=True)).
RECORD_DEFAULTS: dict[str, Any] = {"d_spectral_norm": False, "adcon_cap": 0.0, "label_head": False}
REMOVED_OPTIONS: dict[str, Any] = {
    "detach_pseudo": False,
    "adcon_form": "linear",
    "adcon_margin": 0.5,
    "adcon_warmup_epochs": 0.0,
    "grad_clip": 0.0,
    "anomaly_margin": 0.0,
    "lr_schedule": "constant",
    "g_norm": "batch",
    "ema_warmup": 10.0,
}


@dataclass
class TrainConfig:
    # --- data and protocol ---
    data: str = "mnist-sample"  # dataset name or a directory
    # the class treated as normal (or as the anomaly with protocol one-anomalous): an index, or for a folder of
    # class folders its name (case-insensitive, e.g. "NORMAL"); 0 for a folder means "find it by its name"
    normal_class: int | str = 0
    gamma: float = 0.0  # fraction of labelled anomalies among training images, in [0, 1)
    known_classes: int | None = None  # draw labelled anomalies from this many classes only (Deep SAD's harder variant)
    protocol: str = "one-vs-rest"  # the paper's text; "one-anomalous" is GANomaly's / the Fig. 2 caption
    image_size: int | None = None  # None: the dataset's default (32 for MNIST-like and CIFAR; folders: the size rule)
    # folders laid out in their own way (anomalib style): the folders of normal (training) images, of anomalies,
    # of normal test images, and of ground-truth masks; each may be given several times
    normal_dirs: list[str] = field(default_factory=list)
    abnormal_dirs: list[str] = field(default_factory=list)
    normal_test_dirs: list[str] = field(default_factory=list)
    mask_dirs: list[str] = field(default_factory=list)

    # --- model ---
    method: str = "agad"  # agad, or a baseline in the same harness
    backbone: str = "naive"  # naive | unet | unetpp
    # the U-Net: "zhou" (Zhou et al.'s plain U-Net, the paper's 7.76M parameters; AGAD's unet backbone) or
    # "pix2pix" (Skip-GANomaly's own generator, 16.65M). "auto": pix2pix for method skip-ganomaly, else zhou
    unet_style: str = "auto"

    # --- optimisation ---
    # The budget, fixed in advance and never chosen on test data. None (auto): AUTO_EPOCHS epochs and at least
    # AUTO_MIN_STEPS optimizer steps, epochs added as needed, so that a small dataset (400 images: ~6 steps an
    # epoch) gets as many updates as it needs while a large one keeps its epochs. Given epochs mean exactly
    # that many (min_steps then defaults to 0); min_steps > 0 adds epochs up to that many steps.
    epochs: int | None = None
    min_steps: int | None = None
    batch_size: int = 64  # normal images per step (paper: 256 in all). 64 gives 4x more updates per epoch
    #                       at the same per-image cost; labelled anomalies come on top of these
    lr: float = 2e-4  # Adam, as in GANomaly
    beta1: float = 0.5
    beta2: float = 0.999
    min_anomalies_per_batch: int = 32  # Algorithm 1: every mini-batch holds at least 32 labelled anomalies when gamma > 0

    # --- loss (paper eqs. 5-11) ---
    w_adv: float = 1.0
    w_con: float = 50.0
    w_adcon: float = 15.0
    # > 0: each image's pseudo-anomaly distance |x̂ - x̂₂| counts up to this value only, so the C.A. push
    # stops there (0: unbounded, the paper's); with d_spectral_norm, chosen against mid-training collapses
    # on validation data (docs/STABILITY.md)
    adcon_cap: float = 1.0
    w_lat: float = 5.0
    ca: bool = True  # contextual adversarial term on normal images; False is the paper's "w/o C.A." ablation
    anomaly_distance: str = "input"  # d_a = |x - G(x)| ("input") or |x̂ - G(x̂)| ("pseudo", Algorithm 1 read literally)
    eps: float = 1e-3  # keeps the reciprocal terms finite
    delta: float = 1e-5  # re-initialise D when its loss falls below this (GANomaly's trick)
    d_spectral_norm: bool = True  # spectral normalisation of AGAD's D (False: the paper's plain convolutions)
    # with labelled anomalies: train a small classifier (normal vs labelled anomaly) beside G and add its
    # logit to the score, each part standardised on normal training images (held-out ones when there are).
    # No effect without labelled anomalies or for another method (resolved() records False there).
    label_head: bool = True

    # --- normalisation (paper Table 5, and the statistics that score) ---
    # auxiliary BN for the pseudo-anomaly pass G(x̂): its statistics never score (chosen on validation data,
    # docs/STABILITY.md; False is the paper's shared BN)
    advprop: bool = True
    freeze_bn_anomalies: bool = False  # BN neither updates statistics nor trains affine params on labelled anomalies
    # False: labelled anomalies are normalised with their own batch statistics but do not update the running
    # statistics, which then describe normal images only (chosen on validation data, docs/STABILITY.md; True
    # is the paper: shared BN). No effect without labelled anomalies: resolved() records True there, the
    # value every run had before the default changed, so that runs without them keep their identity.
    track_bn_anomalies: bool = False
    track_bn_pseudo: bool = True  # the same for the pseudo-anomaly pass when it runs through the main BN
    # which BN statistics score images: "running" (the averages kept during training, as the paper) or
    # "recomputed" after each epoch from one pass over the normal training images and one over the labelled
    # anomalies, mixed (1 - w) : w with w = scoring_bn_anomaly_weight. Training is unchanged.
    scoring_bn: str = "running"
    scoring_bn_anomaly_weight: float = 0.25
    ema_decay: float = 0.995  # > 0: score with an exponential moving average of G (0 = off, the paper)

    # --- epoch selection (training data only, never test data) ---
    # > 0: hold out this fraction of normal *training* images (+ as many other-class training images as
    # anomalies) for validation. None: AUTO_VAL_FRACTION with labelled anomalies (gamma > 0), else 0
    val_fraction: float | None = None
    # which epoch's weights to keep: "last"; "val-recon": the lowest mean score of the held-out normal images;
    # "val-ratio" (needs gamma > 0): that score divided by the labelled anomalies' reconstruction distance, so
    # a generator that drifts toward reconstructing everything does not look best. "auto": val-ratio with
    # labelled anomalies, where late collapses happen, else last (docs/STABILITY.md)
    select_epoch: str = "auto"
    track_test_auroc: bool = False  # diagnostics only (paper Fig. 6): logged per epoch, never used to pick anything

    # --- runtime: how fast, not what ---
    seed: int = 0
    device: str = "auto"  # auto picks CUDA when present
    precision: str = "auto"  # auto: bf16 autocast where the CPU/GPU supports it fast, else fp32
    channels_last: bool = True
    compile: bool = False  # torch.compile the networks (helps on GPU; slow to start)
    num_threads: int = 0  # 0: leave PyTorch's default
    eval_batch_size: int = 256
    # "tensorboard": per-term losses, validation numbers and reconstructions of a few training images per epoch,
    # written into the run directory's tensorboard/ (needs the tensorboard package: pip install 'agad[tensorboard]')
    logger: str = "none"

    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes recorded with the run

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every option against :data:`OPTIONS`, then the rules that tie options together."""
        for name, opt in OPTIONS.items():
            opt.check(name, getattr(self, name))
        if self.unet_style != "auto" and not self.uses_unet():
            raise AgadError(f"unet_style {self.unet_style!r} sets the U-Net of the unet backbone or of "
                            f"Skip-GANomaly; this run has none (method {self.method}, backbone {self.backbone}): "
                            "drop unet_style or use --backbone unet")
        if self.select_epoch in HELD_OUT_RULES and self.method != "agad":
            raise AgadError(f"select_epoch '{self.select_epoch}' reads AGAD's reconstruction terms; method "
                            f"{self.method} keeps its last epoch: use select_epoch last (or auto)")
        if self.select_epoch == "val-ratio" and self.gamma <= 0:
            raise AgadError("select_epoch 'val-ratio' weighs the held-out normal score against the labelled "
                            "anomalies' reconstruction distance: it needs labelled anomalies (gamma > 0); "
                            "use val-recon or last without them")
        if self.select_epoch in HELD_OUT_RULES and self.resolved_val_fraction() <= 0:
            raise AgadError(f"select_epoch '{self.select_epoch}' scores held-out normal training images: "
                            "set val_fraction > 0 (e.g. --val-fraction 0.1)")
        check_labels(self.method, self.gamma)

    # -- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config", record: bool = False) -> "TrainConfig":
        """Build a config, rejecting keys it does not know (a typo must not pass silently).

        Keys of :data:`REMOVED_OPTIONS` are accepted at the value that remains the behaviour, so records
        written before an option went still load. With ``record`` (a run's config.json), a key of
        :data:`RECORD_DEFAULTS` that is missing takes the value runs had before its default changed:

        >>> TrainConfig.from_dict({"epochs": 2, "grad_clip": 0.0}).epochs
        2
        >>> TrainConfig.from_dict({}, record=True).d_spectral_norm, TrainConfig.from_dict({}).d_spectral_norm
        (False, True)
        """
        if not isinstance(values, dict):
            raise AgadError(f"{source}: the config must be a table of options, got {type(values).__name__}")
        values = dict(values)
        if record:
            values = {**RECORD_DEFAULTS, **values}
        for name, kept in REMOVED_OPTIONS.items():
            if name in values:
                value = values.pop(name)
                if value != kept:
                    raise AgadError(f"{source}: option {name!r} = {value!r} was removed (only {kept!r}, today's "
                                    "behaviour, remains; docs/DECISIONS.md says why); drop the key")
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
    def resolved_epochs(self) -> int:
        return AUTO_EPOCHS if self.epochs is None else int(self.epochs)

    def resolved_min_steps(self) -> int:
        """The step floor: as given, else AUTO_MIN_STEPS for the auto budget and 0 when epochs are given.

        >>> TrainConfig().resolved_min_steps(), TrainConfig(epochs=10).resolved_min_steps()
        (1200, 0)
        """
        if self.min_steps is not None:
            return int(self.min_steps)
        return AUTO_MIN_STEPS if self.epochs is None else 0

    def resolved_val_fraction(self) -> float:
        if self.val_fraction is not None:
            return float(self.val_fraction)
        return AUTO_VAL_FRACTION if self.gamma > 0 else 0.0

    def uses_label_head(self) -> bool:
        """Whether a run trains the label head: asked for, AGAD, and labelled anomalies to learn from.

        >>> TrainConfig(gamma=0.05).uses_label_head(), TrainConfig().uses_label_head()
        (True, False)
        >>> TrainConfig(gamma=0.05, method="cnn").uses_label_head()
        False
        """
        return bool(self.label_head) and self.uses_labels()

    def uses_labels(self) -> bool:
        """Whether AGAD trains on labelled anomalies here (the options that act on them have an effect)."""
        return self.method == "agad" and self.gamma > 0

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
        >>> TrainConfig(gamma=0.05).resolved().track_bn_anomalies, TrainConfig().resolved().track_bn_anomalies
        (False, True)
        >>> TrainConfig(method="skip-ganomaly").resolved().backbone
        'unet'
        """
        val_fraction = self.resolved_val_fraction()
        select = self.select_epoch
        if select == "auto":  # the held-out rules read AGAD's own loss terms; other methods keep their last epoch
            select = "val-ratio" if self.gamma > 0 and val_fraction > 0 and self.method == "agad" else "last"
        unet_style = self.resolved_unet_style() if self.uses_unet() else self.unet_style
        backbone = BASELINE_BACKBONES.get(self.method, self.backbone)  # a baseline's --backbone changes nothing
        return dataclasses.replace(self, val_fraction=val_fraction, select_epoch=select, unet_style=unet_style,
                                   backbone=backbone, label_head=self.uses_label_head(),
                                   track_bn_anomalies=self.track_bn_anomalies or not self.uses_labels(),
                                   epochs=self.resolved_epochs(), min_steps=self.resolved_min_steps())


def check_labels(method: str, gamma: float) -> None:
    """One line when ``method`` cannot train with (or without) labelled anomalies.

    >>> check_labels("logreg", 0.0)
    Traceback (most recent call last):
    ...
    agad.errors.AgadError: method logreg is a supervised reference: it needs labelled anomalies (gamma > 0, or y with 1s); use method agad or deep-sad without them
    """
    rule = METHOD_LABELS[method]
    if rule == "ignores" and gamma > 0:
        raise AgadError(f"method {method} is semi-supervised and ignores labelled anomalies; use gamma 0 "
                        f"(got {gamma}) or method agad")
    if rule == "needs" and gamma <= 0:
        raise AgadError(f"method {method} is a supervised reference: it needs labelled anomalies "
                        "(gamma > 0, or y with 1s); use method agad or deep-sad without them")


# ---------------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Option:
    """What one option allows, and where it shows.

    ``kind`` is bool, int, float, choice, str or dict; ``lo``/``hi`` bound numbers (open ends with
    ``lo_open``/``hi_open``); ``optional`` allows None. ``runtime`` options are not part of a run's
    identity; ``estimator`` ones are parameters of :class:`agad.AGAD`; ``cli`` ones are flags.
    """

    kind: str
    help: str
    group: str
    choices: tuple[str, ...] = ()
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    optional: bool = False
    runtime: bool = False
    estimator: bool = True
    cli: bool = True

    def check(self, name: str, value: Any) -> None:
        """Raise one line naming the option, what it allows and what it got."""
        if value is None and self.optional:
            return
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise AgadError(f"The '{name}' parameter must be true or false. Got {value!r} instead.")
            return
        if self.kind == "choice":
            if value not in self.choices:
                raise AgadError(f"The '{name}' parameter must be one of {', '.join(self.choices)}. "
                                f"Got {value!r} instead.")
            return
        if self.kind == "str":
            if not isinstance(value, str) or not value:
                raise AgadError(f"The '{name}' parameter must be a non-empty string. Got {value!r} instead.")
            return
        if self.kind == "paths":
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise AgadError(f"The '{name}' parameter must be a list of folder paths. Got {value!r} instead.")
            return
        if self.kind == "class":
            if isinstance(value, str) and value.strip():
                return
            if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
                raise AgadError(f"The '{name}' parameter must be a class index in [0, {self.hi:g}] or a class "
                                f"folder's name. Got {value!r} instead.")
            return
        if self.kind == "dict":
            if not isinstance(value, dict):
                raise AgadError(f"The '{name}' parameter must be a table. Got {value!r} instead.")
            return
        integer = self.kind == "int"
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or (not integer and not math.isfinite(value)):
            what = "an integer" if integer else "a number"
            raise AgadError(f"The '{name}' parameter must be {what}. Got {value!r} instead.")
        if (value <= self.lo if self.lo_open else value < self.lo) or (value >= self.hi if self.hi_open
                                                                       else value > self.hi):
            raise AgadError(f"The '{name}' parameter must be in {self.range_text()}. Got {value!r} instead.")

    def range_text(self) -> str:
        def num(v: float) -> str:
            return "inf" if v == math.inf else f"{v:g}" if isinstance(v, float) else str(v)

        return f"{'(' if self.lo_open else '['}{num(self.lo)}, {num(self.hi)}{')' if self.hi_open else ']'}"


def _o(kind: str, help: str, group: str, **kw: Any) -> Option:
    return Option(kind=kind, help=help, group=group, **kw)


_POS = {"lo": 0.0, "hi": math.inf, "hi_open": True}  # a weight: >= 0 and finite
OPTIONS: dict[str, Option] = {
    # data and protocol
    "data": _o("str", "dataset name (mnist-sample, mnist, fashion-mnist, cifar10, cifar100) or a directory",
               "data", estimator=False),
    "normal_class": _o("class", "the normal class: its index, or for a folder of class folders its name "
                       "(case-insensitive)", "data", lo=0, hi=10_000, estimator=False),
    "gamma": _o("float", "fraction of labelled anomalies among training images", "data", lo=0, hi=1,
                hi_open=True, estimator=False),
    "known_classes": _o("int", "draw labelled anomalies from this many anomaly classes only (Deep SAD's variant)",
                        "data", lo=1, hi=10_000, optional=True, estimator=False),
    "protocol": _o("choice", "one-vs-rest (the paper's text) or one-anomalous (GANomaly's)", "data",
                   choices=PROTOCOLS, estimator=False),
    "image_size": _o("int", "resize images to this square size (auto: the dataset's size rule)", "data", lo=16,
                     hi=1024, optional=True),
    "normal_dirs": _o("paths", "a folder of normal training images (repeatable)", "data", estimator=False),
    "abnormal_dirs": _o("paths", "a folder of anomalous images: test images (repeatable)", "data", estimator=False),
    "normal_test_dirs": _o("paths", "a folder of normal test images (repeatable)", "data", estimator=False),
    "mask_dirs": _o("paths", "a folder of ground-truth masks of the anomalous images (repeatable)", "data",
                    estimator=False),
    # model
    "method": _o("choice", "agad, a baseline (ganomaly, skip-ganomaly) or a reference detector (logreg, cnn, "
                 "deep-sad) in the same harness", "model", choices=METHODS, estimator=False),
    "backbone": _o("choice", "generator backbone", "model", choices=BACKBONES),
    "unet_style": _o("choice", "the U-Net of --backbone unet or of Skip-GANomaly: zhou (7.76M, the paper's "
                     "count) or pix2pix (Skip-GANomaly's own, 16.65M); auto = pix2pix for skip-ganomaly, else zhou",
                     "model", choices=UNET_STYLES),
    # optimisation
    "epochs": _o("int", "training epochs over the normal images, exactly (auto: 15, and at least 1,200 optimizer "
                 "steps)", "optimisation", lo=1, hi=100_000, optional=True),
    "min_steps": _o("int", "train at least this many optimizer steps, adding epochs as needed (auto: 1,200 with "
                    "the auto budget, 0 when --epochs is given)", "optimisation", lo=0, hi=10_000_000,
                    optional=True),
    "batch_size": _o("int", "normal images per step; labelled anomalies ride on top", "optimisation", lo=2,
                     hi=1 << 16),
    "lr": _o("float", "Adam's learning rate for G and D", "optimisation", lo=0, hi=1, lo_open=True),
    "beta1": _o("float", "Adam's beta1", "optimisation", lo=0, hi=1, hi_open=True),
    "beta2": _o("float", "Adam's beta2", "optimisation", lo=0, hi=1, hi_open=True),
    "min_anomalies_per_batch": _o("int", "labelled anomalies in every batch when gamma > 0 (Algorithm 1)",
                                  "optimisation", lo=1, hi=4096),
    # loss
    "w_adv": _o("float", "λadv, weight of the adversarial term", "loss", **_POS),
    "w_con": _o("float", "λcon, weight of the reconstruction term", "loss", **_POS),
    "w_adcon": _o("float", "λadcon, weight of the contextual adversarial (pseudo-anomaly) term", "loss", **_POS),
    "adcon_cap": _o("float", "the C.A. term counts each image's |x̂ - x̂₂| up to this value (0: unbounded, "
                    "the paper's)", "loss", lo=0, hi=2),
    "w_lat": _o("float", "λlat, weight of the latent term", "loss", **_POS),
    "ca": _o("bool", "the contextual adversarial term; --no-ca is the paper's 'w/o C.A.' ablation", "loss"),
    "anomaly_distance": _o("choice", "labelled-anomaly distance: input |x-G(x)| or pseudo |x̂-G(x̂)|", "loss",
                           choices=ANOMALY_DISTANCES),
    "eps": _o("float", "epsilon of the reciprocal terms", "loss", lo=0, hi=1, lo_open=True),
    "delta": _o("float", "re-initialise D when its loss falls below this", "loss", **_POS),
    "d_spectral_norm": _o("bool", "spectral normalisation of AGAD's D (Miyato et al. 2018): bounds how sharply "
                          "D can change (--no-d-spectral-norm: the paper's D)", "loss"),
    "label_head": _o("bool", "with labelled anomalies: add a small classifier's logit (normal vs labelled "
                     "anomaly, trained beside G) to the score, both standardised on normal training images; no "
                     "effect without them (--no-label-head: the paper's score)", "loss"),
    # normalisation
    "advprop": _o("bool", "auxiliary BN for the pseudo-anomaly pass (--no-advprop: the paper's shared BN)",
                  "batch norm"),
    "freeze_bn_anomalies": _o("bool", "BN neither updates statistics nor trains on labelled anomalies",
                              "batch norm"),
    "track_bn_anomalies": _o("bool", "labelled anomalies update BN's running statistics (the paper's shared "
                             "statistics; by default they describe normal images only)", "batch norm"),
    "track_bn_pseudo": _o("bool", "the pseudo-anomaly pass through the main BN (--no-advprop) updates them",
                          "batch norm"),
    "scoring_bn": _o("choice", "BN statistics that score: running (as the paper) or recomputed after each "
                     "epoch from the training data", "batch norm", choices=SCORING_BNS),
    "scoring_bn_anomaly_weight": _o("float", "weight of the labelled anomalies in recomputed statistics",
                                    "batch norm", lo=0, hi=1),
    "ema_decay": _o("float", "score with an EMA of G's weights with this decay (0 = off, the paper)",
                    "batch norm", lo=0, hi=1, hi_open=True),
    # epoch selection
    "val_fraction": _o("float", "hold out this fraction of normal training images for validation (auto: 0.1 "
                       "with labelled anomalies, else 0)", "selection", lo=0, hi=1, hi_open=True,
                       optional=True),
    "select_epoch": _o("choice", "keep the last epoch, the lowest held-out normal score (val-recon), or that "
                       "score over the labelled anomalies' distance (val-ratio); auto: val-ratio with labelled "
                       "anomalies, else last", "selection", choices=SELECT_EPOCHS),
    "track_test_auroc": _o("bool", "log test AUROC per epoch (diagnostics only; never picks anything)",
                           "selection", estimator=False),
    # runtime
    "seed": _o("int", "seed of weights, batch order and the labelled-anomaly draw", "runtime", lo=0,
               hi=2**32 - 1, estimator=False),
    "device": _o("choice", "auto picks CUDA when present", "runtime", choices=DEVICES, runtime=True),
    "precision": _o("choice", "auto: bf16 autocast where the hardware runs it fast, else fp32 (changes the "
                    "numbers, so it is part of a run's identity)", "runtime", choices=PRECISIONS),
    "channels_last": _o("bool", "channels-last memory format", "runtime", runtime=True, estimator=False),
    "compile": _o("bool", "torch.compile the networks (helps on GPU; slow to start)", "runtime", runtime=True,
                  estimator=False),
    "num_threads": _o("int", "CPU threads (0: PyTorch's default)", "runtime", lo=0, hi=4096, runtime=True,
                      estimator=False),
    "eval_batch_size": _o("int", "images per scoring batch", "runtime", lo=1, hi=1 << 16, runtime=True,
                          estimator=False),
    "logger": _o("choice", "none, or tensorboard: losses and reconstructions per epoch in RUN_DIR/tensorboard",
                 "runtime", choices=LOGGERS, runtime=True, estimator=False),
    "extra": _o("dict", "free-form notes recorded with the run", "runtime", estimator=False, cli=False),
}
RUNTIME_FIELDS = frozenset(name for name, opt in OPTIONS.items() if opt.runtime)
DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(TrainConfig)
                            if f.default is not dataclasses.MISSING}
