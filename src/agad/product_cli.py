"""Sub-commands for using a trained model: ``agad predict``, ``agad export`` and ``agad data fetch``.

:func:`register` adds them to the ``agad`` parser (``agad.cli`` calls it).
Bad input prints one line on stderr and exits with code 2 (``agad.cli.main``
does that for every AgadError / FileNotFoundError raised here).

Examples::

    agad predict runs/demo photos/ scan.png --out scores.csv --overlays overlays/
    agad export runs/demo --format onnx --out demo.onnx
    agad data fetch fashion-mnist
"""

from __future__ import annotations

import argparse

from .config import DEVICES

__all__ = ["register"]


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict_images

    r = predict_images(args.run_dir, args.paths, out=args.out, overlays=args.overlays, batch_size=args.batch_size,
                       device=args.device, overwrite=args.force)
    n_anom = int(r.labels.sum())
    where = f"; overlays in {r.overlays}" if r.overlays is not None else ""
    print(f"scored {len(r.scores)} images: {n_anom} above the threshold {r.threshold:.4g} (label 1), "
          f"{len(r.scores) - n_anom} at or below it; scores written to {r.out}{where}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_model

    out = export_model(args.run_dir, args.out, format=args.format, overwrite=args.force, opset=args.opset)
    print(f"exported {args.run_dir} as {args.format} to {out} "
          "(input 'image': float (B, C, S, S) in [-1, 1]; outputs 'reconstruction', 'score')")
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from .data import fetch

    dest = fetch(args.name, args.dest, base_url=args.base_url, progress=not args.no_progress)
    hint = (f"`agad train --data {args.name}` finds it there" if args.dest is None
            else f"train on it with `agad train --data {dest}`")
    print(f"{args.name}: files downloaded and verified in {dest}; {hint}")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def register(sub) -> None:
    """Add ``predict``, ``export`` and ``data`` to the ``agad`` sub-command parser ``sub``."""
    from .cli import ArgumentParser
    from .data import FETCHABLE
    from .export import FORMATS, ONNX_OPSET

    p = sub.add_parser(
        "predict", help="score image files or folders with a trained model",
        description="Score images with a trained model. PATH may be image files or folders (searched recursively "
                    "for png/jpg/jpeg/bmp/tif/tiff). Images are converted to the model's channels and resized to "
                    "its input size. Writes a CSV with columns path, score, label (1 if score > the threshold "
                    "stored with the model).",
    )
    p.add_argument("run_dir", help="run directory from `agad train` or AGAD.save")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--overlays", metavar="DIR", help="also write one PNG per image: input, reconstruction, residual")
    p.add_argument("--batch-size", dest="batch_size", type=_positive_int, help="images per batch (default: the run's)")
    p.add_argument("--device", choices=DEVICES, help="default: the model's setting")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "export", help="export a trained model to ONNX or TorchScript",
        description="Export the model as a module mapping 'image' (float (B, C, S, S) in [-1, 1]) to "
                    "'reconstruction' and 'score' (||x - G(x)||_2); the batch axis is dynamic.",
    )
    p.add_argument("run_dir", help="run directory from `agad train` or AGAD.save")
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--out", required=True, help="file to write (e.g. model.onnx or model.pt)")
    p.add_argument("--opset", type=_positive_int, default=ONNX_OPSET, help=f"ONNX opset (default {ONNX_OPSET})")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("data", help="download datasets", description="Dataset utilities.")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", parser_class=ArgumentParser)
    data_sub.required = True
    f = data_sub.add_parser(
        "fetch", help="download a dataset's official files (resumable, checksum-verified)",
        description="Download a dataset where `agad train --data NAME` looks for it "
                    "($AGAD_DATA_DIR/NAME or ~/.cache/agad/NAME) or into --dest.",
    )
    f.add_argument("name", choices=FETCHABLE, metavar="NAME", help=f"one of {', '.join(FETCHABLE)}")
    f.add_argument("--dest", metavar="DIR", help="folder to put the files in")
    f.add_argument("--base-url", dest="base_url", metavar="URL", help="a mirror that serves the same file names")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    f.set_defaults(func=cmd_data_fetch)
