"""Tests for agad.data.fetch against a local HTTP server (no other network)."""

from __future__ import annotations

import gzip
import hashlib
import importlib
import re
import socket

import numpy as np
import pytest

from agad.data import load_dataset
from agad.data.fetch import Remote, fetch
from agad.errors import AgadError, DataError

# `agad.data.fetch` the attribute is the function (re-exported by the
# package); the module itself is reached through importlib.
fetch_mod = importlib.import_module("agad.data.fetch")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch, tmp_path):
    """Fail any connection that is not to this machine, and ignore proxies."""
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"test tried to reach {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("AGAD_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def idx_gz(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return gzip.compress(header + arr.astype(np.uint8).tobytes())


def serve(monkeypatch, handler, files: dict[str, bytes], *, name="mnist", size=True, digest=None):
    """Put `files` on the server and make them the checksum table of `name`."""
    handler.files = dict(files)
    remotes = tuple(
        Remote(f, len(b) if size else None, digest or hashlib.sha256(b).hexdigest())
        for f, b in files.items()
    )
    monkeypatch.setitem(fetch_mod.SOURCES, name, ("http://example.invalid/", remotes))


def test_download_then_load(server, monkeypatch, tmp_path):
    handler, url = server
    rng = np.random.default_rng(0)
    files = {}
    for prefix, n in (("train", 4), ("t10k", 2)):
        files[f"{prefix}-images-idx3-ubyte.gz"] = idx_gz(rng.integers(0, 256, (n, 28, 28)))
        files[f"{prefix}-labels-idx1-ubyte.gz"] = idx_gz(np.arange(n) % 10)
    serve(monkeypatch, handler, files)
    monkeypatch.setenv("AGAD_DATA_DIR", str(tmp_path / "data"))
    dest = fetch("mnist", base_url=url, progress=False)
    assert dest == tmp_path / "data" / "mnist"
    assert sorted(p.name for p in dest.iterdir()) == sorted(files)
    ds = load_dataset("mnist")  # fetch puts files where load_dataset looks
    assert ds.x_train.shape == (4, 1, 32, 32)
    # Verified files are not downloaded again.
    handler.requests.clear()
    fetch("mnist", base_url=url, progress=False)
    assert handler.requests == []


def test_resume_sends_range(server, monkeypatch, tmp_path):
    handler, url = server
    body = bytes(range(256)) * 40
    serve(monkeypatch, handler, {"a.bin": body})
    (tmp_path / "a.bin.part").write_bytes(body[:1000])
    fetch("mnist", tmp_path, base_url=url, progress=False)
    assert handler.requests == [("a.bin", "bytes=1000-")]
    assert (tmp_path / "a.bin").read_bytes() == body and not (tmp_path / "a.bin.part").exists()


def test_server_ignoring_range_restarts(server, monkeypatch, tmp_path):
    handler, url = server
    handler.honor_range = False
    body = b"0123456789" * 100
    serve(monkeypatch, handler, {"a.bin": body})
    (tmp_path / "a.bin.part").write_bytes(b"XXXX")  # wrong prefix: must be overwritten
    fetch("mnist", tmp_path, base_url=url, progress=False)
    assert handler.requests == [("a.bin", "bytes=4-")]
    assert (tmp_path / "a.bin").read_bytes() == body


def test_range_not_satisfiable_restarts(server, monkeypatch, tmp_path):
    handler, url = server
    body = b"abc" * 10
    serve(monkeypatch, handler, {"a.bin": body}, size=False)  # size unknown: only the server can tell
    (tmp_path / "a.bin.part").write_bytes(b"z" * 100)
    fetch("mnist", tmp_path, base_url=url, progress=False)
    assert handler.requests == [("a.bin", "bytes=100-"), ("a.bin", None)]
    assert (tmp_path / "a.bin").read_bytes() == body


def test_checksum_mismatch_leaves_nothing(server, monkeypatch, tmp_path):
    handler, url = server
    serve(monkeypatch, handler, {"a.bin": b"payload"}, digest="0" * 64)
    with pytest.raises(DataError, match="SHA-256 .* expected 0{64}") as e:
        fetch("mnist", tmp_path, base_url=url, progress=False)
    assert "\n" not in str(e.value) and "agad data fetch mnist" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_existing_corrupt_file_is_not_overwritten(server, monkeypatch, tmp_path):
    handler, url = server
    serve(monkeypatch, handler, {"a.bin": b"payload"})
    (tmp_path / "a.bin").write_bytes(b"paylo4d")
    with pytest.raises(DataError, match="exists but has SHA-256"):
        fetch("mnist", tmp_path, base_url=url, progress=False)
    assert (tmp_path / "a.bin").read_bytes() == b"paylo4d" and handler.requests == []


def test_http_and_network_errors(server, monkeypatch, tmp_path):
    handler, url = server
    serve(monkeypatch, handler, {"a.bin": b"x"})
    handler.files = {}  # the server now answers 404
    with pytest.raises(DataError, match="HTTP 404"):
        fetch("mnist", tmp_path, base_url=url, progress=False)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match="cannot reach"):
        fetch("mnist", tmp_path, base_url=f"http://127.0.0.1:{port}/", progress=False)


def test_unknown_name():
    with pytest.raises(AgadError, match="fetchable datasets are mnist, fashion-mnist, cifar10, cifar100"):
        fetch("mnist-sample")


def test_checksum_table_is_complete():
    # Every official file has a size and a full SHA-256 (none left as "size only").
    for name, (base, remotes) in fetch_mod.SOURCES.items():
        assert base.startswith(("https://", "http://")), name
        for r in remotes:
            assert r.size and r.sha256 and re.fullmatch(r"[0-9a-f]{64}", r.sha256), r
