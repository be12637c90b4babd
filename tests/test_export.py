"""ONNX / TorchScript export: parity with PyTorch, dynamic batch, atomic writes, one-line CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agad import AGAD
from agad.cli import main
from agad.data import load_dataset
from agad.errors import AgadError
from agad.export import export_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = 1e-4


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny saved model: one training step on 16 digits (AdvProp on, to check the export ignores aux BN)."""
    ds = load_dataset("mnist-sample")
    det = AGAD(epochs=1, batch_size=16, device="cpu", precision="fp32", advprop=True)
    det.fit(ds.x_train[ds.y_train == 0][:16])
    return det.save(tmp_path_factory.mktemp("export") / "model")


@pytest.fixture(scope="module")
def reference(run_dir):
    model = AGAD.load(run_dir, device="cpu")
    ds = load_dataset("mnist-sample")
    x = ds.x_test[:8]  # uint8 (8, 1, 32, 32), digits of several classes
    return x, model.decision_function(x), model


def run_main(argv: list[str]) -> int:
    """The CLI's exit code, whether main returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def as_input(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float32) / 127.5 - 1.0)  # uint8 -> [-1, 1], the exported input


def test_onnx_matches_pytorch_for_two_batch_sizes(run_dir, reference, tmp_path):
    x, scores, model = reference
    out = export_model(run_dir, tmp_path / "m.onnx", format="onnx")
    proto = onnx.load(str(out))
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["reconstruction", "score"]
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta["agad.threshold"] == model.threshold_
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for b in (3, 5):  # dynamic batch axis
        recon, s = session.run(None, {"image": as_input(x[:b])})
        assert recon.shape == (b, 1, 32, 32) and s.shape == (b,)
        assert np.abs(s - scores[:b]).max() < TOL
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary file left


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_matches_pytorch(run_dir, reference, tmp_path):
    x, scores, model = reference
    out = export_model(run_dir, tmp_path / "m.pt", format="torchscript")
    extra = {"agad.json": ""}
    module = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["agad.json"])["threshold"] == model.threshold_
    for b in (3, 5):
        with torch.no_grad():
            recon, s = module(torch.from_numpy(as_input(x[:b])))
        assert recon.shape == (b, 1, 32, 32)
        assert np.abs(s.numpy() - scores[:b]).max() < TOL
    # the auxiliary AdvProp BN is a training-time device: not in the exported file
    assert not [k for k in module.state_dict() if ".aux." in k]


def test_export_cli(run_dir, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out)]) == 0
    assert out.is_file() and "cli.onnx" in capsys.readouterr().out
    # existing output: refused without --force, replaced with it
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "already exists" in err and "--force" in err
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out), "--force"]) == 0


@pytest.mark.parametrize("case", ["missing_run", "not_a_run", "bad_format", "corrupt_weights"])
def test_failed_export_is_one_line_and_writes_nothing(run_dir, tmp_path, capsys, case):
    import shutil

    src = run_dir
    fmt = "onnx"
    if case == "missing_run":
        src = tmp_path / "nothing"
    elif case == "not_a_run":
        src = tmp_path / "empty"
        src.mkdir()
    elif case == "bad_format":
        fmt = "tflite"
    elif case == "corrupt_weights":
        src = tmp_path / "copy"
        shutil.copytree(run_dir, src)
        (src / "generator.safetensors").write_bytes(b"garbage")
    out = tmp_path / "out" / "model.onnx"
    code = run_main(["export", str(src), "--format", fmt, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and not (out.parent.exists() and list(out.parent.iterdir()))


def test_export_api_rejects_unknown_format(run_dir, tmp_path):
    with pytest.raises(AgadError, match="The 'format' parameter must be one of onnx, torchscript. Got 'tf'"):
        export_model(run_dir, tmp_path / "m", format="tf")


def test_export_interrupted_midway_leaves_no_file(run_dir, tmp_path, monkeypatch):
    import agad.export as export_mod

    def half_written(module, example, path, opset, info):
        path.write_bytes(b"partial")
        raise AgadError("simulated failure while writing")

    monkeypatch.setattr(export_mod, "_export_onnx", half_written)
    with pytest.raises(AgadError, match="simulated"):
        export_model(run_dir, tmp_path / "m.onnx", format="onnx")
    assert list(tmp_path.iterdir()) == []
