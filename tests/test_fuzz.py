"""Property-based fuzz of the IDX and CIFAR readers: any bytes give an array of the declared shape or one
DataError line, never another exception, a hang or an unbounded read (the run-record readers are fuzzed in
tests/test_rundir.py)."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from agad.data.cifar import CIFAR_DIRS, load_cifar  # noqa: E402
from agad.data.idx import read_idx  # noqa: E402
from agad.errors import AgadError  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _idx_bytes(dtype_code: int, dims: list[int], body: bytes) -> bytes:
    return struct.pack(">BBBB", 0, 0, dtype_code, len(dims)) + b"".join(struct.pack(">I", d) for d in dims) + body


@FUZZ
@given(dtype_code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x42]),
       dims=st.lists(st.integers(0, 70_000), min_size=0, max_size=4),
       body=st.binary(max_size=512), squeeze=st.booleans(), zipped=st.booleans())
def test_idx_reader_returns_the_declared_array_or_one_line(tmp_path, dtype_code, dims, body, squeeze, zipped):
    data = _idx_bytes(dtype_code, dims, body)
    if squeeze:  # a header cut short
        data = data[: len(data) // 2]
    path = tmp_path / ("x.idx.gz" if zipped else "x.idx")
    path.write_bytes(gzip.compress(data) if zipped else data)
    try:
        arr = read_idx(path)
    except AgadError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert tuple(arr.shape) == tuple(dims) and arr.size * arr.itemsize <= len(body)


@FUZZ
@given(payload=st.one_of(
    st.binary(max_size=256),
    st.builds(lambda d: pickle.dumps(d, protocol=2), st.dictionaries(
        st.sampled_from([b"data", b"labels", b"coarse_labels", b"fine_labels", "data", "labels"]),
        st.one_of(st.integers(-5, 5), st.lists(st.integers(0, 255), max_size=8), st.binary(max_size=16)),
        max_size=4)),
))
def test_cifar_reader_never_raises_anything_but_one_line(tmp_path, payload):
    root = tmp_path / CIFAR_DIRS["cifar10"]
    root.mkdir(exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (root / name).write_bytes(payload)
    try:
        x_train, *_ = load_cifar(root)
    except AgadError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert x_train.dtype == np.uint8 and x_train.shape[1:] == (3, 32, 32)
