"""Shared fixtures: a small HTTP server on 127.0.0.1 for the download tests; one CPU thread per test worker."""

from __future__ import annotations

import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def pytest_configure(config):
    """Under `pytest -n N` (pytest-xdist, as `make test` runs), each worker and the commands it starts use one
    CPU thread: N workers at PyTorch's default of one thread per core each would oversubscribe the cores."""
    if hasattr(config, "workerinput"):
        import torch

        os.environ.setdefault("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)


class RangeHandler(BaseHTTPRequestHandler):
    """Serves `files`; honours `Range: bytes=N-` unless `honor_range` is False."""

    files: dict[str, bytes] = {}
    honor_range = True
    requests: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        name = self.path.lstrip("/")
        rng = self.headers.get("Range")
        type(self).requests.append((name, rng))
        body = self.files.get(name)
        if body is None:
            self.send_error(404)
            return
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and self.honor_range:
            start = int(m.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            body = body[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def server():
    RangeHandler.files, RangeHandler.requests, RangeHandler.honor_range = {}, [], True
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield RangeHandler, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
