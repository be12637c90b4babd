"""Export a trained model for serving: ``agad export RUN_DIR --format {onnx,torchscript} --out FILE``.

The exported module maps a float image batch in [-1, 1], shape (B, C, S, S)
(input name ``image``; uint8 pixels become ``x / 127.5 - 1``), to, for the
methods that reconstruct:

- ``reconstruction``: G(x), (B, C, S, S);
- ``score``: the anomaly score ``||x - G(x)||_2`` per image, (B,);
- ``anomaly_map``: ``|x - G(x)|`` averaged over channels, (B, S, S), the map of
  :meth:`agad.AGAD.anomaly_map` at the model's input size (no smoothing);
- ``label``: int64 (B,), 1 where the score is above the threshold stored with
  the model (compared in float64, as :meth:`agad.AGAD.predict` does).

Methods that score without reconstructing give ``score`` and ``label``. The
batch axis is dynamic; C and S are the model's (see ``preprocessing`` in the
run's config.json, which the export also embeds: ONNX ``metadata_props`` / the
TorchScript extra file ``agad.json``, holding the threshold too).

The networks are exported in eval mode (BN running statistics) and fp32; the
auxiliary AdvProp BN is a training-time device and is not part of the
exported graph. ONNX uses PyTorch's TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``): the newer torch.export-based one
needs the ``onnxscript`` package and gains nothing for these plain conv
nets. Files are written to a temporary name and renamed, so a failed export
leaves nothing behind.

Example:
    >>> export_model("runs/demo", "demo.onnx", format="onnx")  # doctest: +SKIP
    >>> import onnxruntime as ort                                # doctest: +SKIP
    >>> recon, score, amap, label = ort.InferenceSession("demo.onnx").run(None, {"image": x})  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import AgadError
from .nets import SwitchableBatchNorm2d

__all__ = ["FORMATS", "ExportModule", "ScoringModule", "export_model"]

FORMATS = ("onnx", "torchscript")
ONNX_OPSET = 17  # widely supported by runtimes; every op here (conv, BN, reflect pad) is in it
INPUT_NAME = "image"
OUTPUT_NAMES = ("reconstruction", "score", "anomaly_map", "label")  # methods that reconstruct
SCORE_OUTPUT_NAMES = ("score", "label")  # methods that score without reconstructing


class ScoringModule(nn.Module):
    """(B, C, S, S) image in [-1, 1] -> (reconstruction (B, C, S, S), score (B,)), from a method's scorer
    (:mod:`agad.methods`); a scorer that does not reconstruct gives the score only.

    >>> from agad.methods import ReconstructionScorer
    >>> from agad.nets import build_generator
    >>> m = ScoringModule(ReconstructionScorer(build_generator("naive", in_channels=1, image_size=32))).eval()
    >>> [t.shape for t in m(torch.zeros(2, 1, 32, 32))]
    [torch.Size([2, 1, 32, 32]), torch.Size([2])]
    """

    def __init__(self, scorer: nn.Module):
        super().__init__()
        self.scorer = scorer
        self.reconstructs = hasattr(scorer, "score_and_reconstruct")

    def forward(self, image: Tensor):
        if self.reconstructs:
            score, recon = self.scorer.score_and_reconstruct(image)
            return recon, score
        return self.scorer(image)


class ExportModule(nn.Module):
    """What is exported: :class:`ScoringModule`'s outputs plus the anomaly map and the label at ``threshold``.

    (B, C, S, S) in [-1, 1] -> (reconstruction, score, anomaly_map (B, S, S), label (B,) int64) for a scorer
    that reconstructs, else (score, label).

    >>> from agad.methods import ReconstructionScorer
    >>> from agad.nets import build_generator
    >>> m = ExportModule(ReconstructionScorer(build_generator("naive", in_channels=1, image_size=32)), 0.5).eval()
    >>> [tuple(t.shape) for t in m(torch.zeros(2, 1, 32, 32))]
    [(2, 1, 32, 32), (2,), (2, 32, 32), (2,)]
    """

    def __init__(self, scorer: nn.Module, threshold: float):
        super().__init__()
        self.scoring = ScoringModule(scorer)
        self.reconstructs = self.scoring.reconstructs
        # float64: the label must be exactly ``score > threshold`` with the threshold as stored
        self.register_buffer("threshold", torch.tensor(float(threshold), dtype=torch.float64))

    def forward(self, image: Tensor):
        from .evaluation import residual_map

        if self.reconstructs:
            recon, score = self.scoring(image)
            label = (score.double() > self.threshold).long()
            return recon, score, residual_map(image, recon), label
        score = self.scoring(image)
        return score, (score.double() > self.threshold).long()


def _inference_copy(G: nn.Module) -> nn.Module:
    G = copy.deepcopy(G).to("cpu", torch.float32).to(memory_format=torch.contiguous_format).eval()
    for m in G.modules():  # main BN, running statistics: the inference path
        if isinstance(m, SwitchableBatchNorm2d):
            m.route, m.frozen = "main", False
            m.aux = None  # AdvProp's auxiliary BN serves training only: leave it out of the file
    for p in G.parameters():
        p.requires_grad_(False)
    return G


@contextlib.contextmanager
def _atomic_path(final: Path):
    """Yield a temporary file name beside ``final``; rename it into place on success, delete it on error."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; an exported model is meant to be shared
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def export_model(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    format: str = "onnx",
    overwrite: bool = False,
    opset: int = ONNX_OPSET,
) -> Path:
    """Export the scoring generator of ``run_dir`` to ``out``; returns ``out``.

    Raises AgadError for an unknown ``format``, an existing ``out`` (unless
    ``overwrite``) or a bad run directory; nothing is written then.

    >>> export_model("runs/demo", "demo.pt", format="torchscript")  # doctest: +SKIP
    PosixPath('demo.pt')
    """
    from .pipeline import load_run
    from .rundir import check_output_file

    if format not in FORMATS:
        raise AgadError(f"The 'format' parameter must be one of {', '.join(FORMATS)}. Got {format!r} instead.")
    out = check_output_file(out, overwrite=overwrite, example="model." + _suffix(format))
    run = load_run(run_dir)
    meta = run.meta
    channels, size = int(meta["model"]["in_channels"]), int(meta["model"]["image_size"])
    threshold = float(meta["threshold"])
    module = ExportModule(_inference_copy(run.scorer), threshold).eval()
    example = torch.zeros(2, channels, size, size)  # batch 2: nothing may specialise on a batch of 1
    info = {
        "input": f"{INPUT_NAME}: float32 (batch, {channels}, {size}, {size}) in [-1, 1] (uint8 x -> x / 127.5 - 1)",
        "outputs": ("reconstruction: G(x), same shape; score: ||x - G(x)||_2 per image (higher = more anomalous); "
                    f"anomaly_map: |x - G(x)| averaged over channels, (batch, {size}, {size}); label: int64, "
                    "1 where score > threshold" if module.reconstructs else
                    "score: per image (higher = more anomalous); label: int64, 1 where score > threshold"),
        "threshold": meta.get("threshold"),
        "preprocessing": meta.get("preprocessing"),
        "backbone": meta["model"].get("backbone"),
        "agad_version": meta.get("agad_version"),
    }
    with _atomic_path(out) as tmp, torch.no_grad(), warnings.catch_warnings():
        # The tracer notes that shape checks become constants: right, C and S are fixed by the model.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # TorchScript and the TorchScript-based ONNX exporter are deprecated upstream but still work and still
        # load in libtorch / every ONNX runtime; the user asked for them, so their notices are not repeated here.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.(jit|onnx)")
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
        if format == "onnx":
            _export_onnx(module, example, tmp, opset, info, OUTPUT_NAMES if module.reconstructs else SCORE_OUTPUT_NAMES)
        else:
            traced = torch.jit.trace(module, example)
            torch.jit.save(traced, str(tmp), _extra_files={"agad.json": json.dumps(info)})
    return out


def _suffix(format: str) -> str:
    return "onnx" if format == "onnx" else "pt"


def _export_onnx(module: nn.Module, example: Tensor, path: Path, opset: int, info: dict,
                 outputs: tuple[str, ...]) -> None:
    try:
        import onnx
    except ImportError:
        raise AgadError("ONNX export needs the onnx package: pip install 'agad[export]'") from None
    batch = {0: "batch"}
    torch.onnx.export(
        module, (example,), str(path), input_names=[INPUT_NAME], output_names=list(outputs),
        dynamic_axes={INPUT_NAME: batch, **{name: batch for name in outputs}},
        opset_version=opset, dynamo=False,
    )
    model = onnx.load(str(path))
    for key, value in info.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = f"agad.{key}", json.dumps(value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
