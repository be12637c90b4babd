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
from agad.export import ScoringModule, export_model
from agad.methods import ReconstructionScorer
from agad.nets import build_generator

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
    names = [o.name for o in proto.graph.output]
    assert names[:2] == ["reconstruction", "score"]  # first; further outputs may follow
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta["agad.threshold"] == model.threshold_
    onnx_model = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for b in (3, 5):  # dynamic batch axis
        got = dict(zip(names, onnx_model.run(None, {"image": as_input(x[:b])})))
        recon, s = got["reconstruction"], got["score"]
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
            recon, s = module(torch.from_numpy(as_input(x[:b])))[:2]  # (reconstruction, score, ...)
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

    def half_written(module, example, path, *rest):
        path.write_bytes(b"partial")
        raise AgadError("simulated failure while writing")

    monkeypatch.setattr(export_mod, "_export_onnx", half_written)
    with pytest.raises(AgadError, match="simulated"):
        export_model(run_dir, tmp_path / "m.onnx", format="onnx")
    assert list(tmp_path.iterdir()) == []


def test_scoring_module_wraps_a_method_scorer():
    torch.manual_seed(0)
    G = build_generator("naive", in_channels=1, image_size=32).eval()
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        recon, score = ScoringModule(ReconstructionScorer(G)).eval()(x)
        torch.testing.assert_close(recon, G(x))
        torch.testing.assert_close(score, (x - G(x)).flatten(1).norm(dim=1))

    class ScoreOnly(torch.nn.Module):  # a scorer that does not reconstruct (e.g. a classifier's logit)
        def forward(self, image):
            return image.flatten(1).mean(1)

    m = ScoringModule(ScoreOnly())
    assert not m.reconstructs
    torch.testing.assert_close(m(x), x.flatten(1).mean(1))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_export_gives_the_anomaly_map_and_the_label(run_dir, reference, tmp_path):
    """Both formats: anomaly_map is AGAD.anomaly_map at the model's size, label is score > stored threshold."""
    x, scores, model = reference
    maps = model.anomaly_map(x)  # (8, 32, 32): the inputs are at the model's size
    labels = model.predict(x)
    onnx_file = export_model(run_dir, tmp_path / "m.onnx", format="onnx")
    names = [o.name for o in onnx.load(str(onnx_file)).graph.output]
    assert names == ["reconstruction", "score", "anomaly_map", "label"]
    onnx_model = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    _, s, amap, label = onnx_model.run(None, {"image": as_input(x[:5])})
    assert amap.shape == (5, 32, 32) and label.dtype == np.int64
    assert np.abs(amap - maps[:5]).max() < TOL and np.abs(s - scores[:5]).max() < TOL
    np.testing.assert_array_equal(label, labels[:5])
    module = torch.jit.load(str(export_model(run_dir, tmp_path / "m.pt", format="torchscript")))
    with torch.no_grad():
        _, s, amap, label = module(torch.from_numpy(as_input(x)))
    assert np.abs(amap.numpy() - maps).max() < TOL
    np.testing.assert_array_equal(label.numpy(), labels)


def test_export_module_labels_with_the_threshold_in_float64():
    from agad.export import ExportModule
    from agad.methods import ReconstructionScorer
    from agad.nets import build_generator

    torch.manual_seed(0)
    scorer = ReconstructionScorer(build_generator("naive", in_channels=1, image_size=32).eval())
    x = torch.rand(6, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        score = scorer(x)
        t = float(score.double().median())  # some images above it, some not
        recon, s, amap, label = ExportModule(scorer, t).eval()(x)
    torch.testing.assert_close(amap, (x - recon).abs().mean(dim=1))
    assert label.dtype == torch.int64 and label.tolist() == (s.double() > t).long().tolist()
    assert 0 < int(label.sum()) < 6

    class ScoreOnly(torch.nn.Module):  # a method that does not reconstruct: score and label only
        def forward(self, image):
            return image.flatten(1).mean(1)

    s, label = ExportModule(ScoreOnly(), 0.0)(x)
    assert label.tolist() == (s > 0).long().tolist()
