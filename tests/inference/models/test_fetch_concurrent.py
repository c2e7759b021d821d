"""Two samdesk processes fetching one model at once install one verified file.

A throttled HTTP server on 127.0.0.1 (started by the test, a bounded number of
requests, each bounded in time) holds the first download half-way until a
second process either asks for the file too or says it is waiting for the
first; nothing else is contacted.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SIZE = 2 * 1024 * 1024 + 77
BLOCK = 64 * 1024
HOLD_S = 20.0  # the longest the server holds a response (bounds the test, is never reached)
MAX_REQUESTS = 6

SCRIPT = """
import dataclasses, sys
from samdesk.cli import main
from samdesk.inference.models import registry
spec = dataclasses.replace(registry.MODELS["sam_vit_b"], name="mirror_sam",
                           size=int(sys.argv[1]), sha256=sys.argv[2])
registry.MODELS[spec.name] = spec
sys.exit(main(["models", "fetch", "mirror_sam", "--url", sys.argv[3]]))
"""


class ThrottledServer:
    """Serves ``data`` in ``BLOCK``-byte pieces; the first response stops after
    one piece until :attr:`release` is set (or ``HOLD_S`` passes)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.release = threading.Event()
        self.first_started = threading.Event()
        self.requests: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                server.answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/model.pth"

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        asked = handler.headers.get("Range")
        self.requests.append(asked)
        if len(self.requests) > MAX_REQUESTS:
            handler.send_error(503, "too many requests")
            return
        first = len(self.requests) == 1
        if not first:
            self.release.set()  # a second download: let both run, as the fault needs
        start = int(asked.removeprefix("bytes=").split("-")[0]) if asked else 0
        body = self.data[start:]
        handler.send_response(206 if start else 200)
        handler.send_header("Content-Length", str(len(body)))
        if start:
            handler.send_header("Content-Range",
                                f"bytes {start}-{len(self.data) - 1}/{len(self.data)}")
        handler.end_headers()
        try:
            for at in range(0, len(body), BLOCK):
                handler.wfile.write(body[at:at + BLOCK])
                handler.wfile.flush()
                if first and at == 0:
                    self.first_started.set()
                    self.release.wait(HOLD_S)
                time.sleep(0.002)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def served() -> Iterator[tuple[ThrottledServer, bytes]]:
    data = random.Random(11).randbytes(SIZE)
    srv = ThrottledServer(data)
    srv.thread.start()
    yield srv, data
    srv.release.set()
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_fetches_of_one_model_install_one_verified_file(
    served: tuple[ThrottledServer, bytes], tmp_path: Path
) -> None:
    server, data = served
    digest = hashlib.sha256(data).hexdigest()
    models_dir = tmp_path / "models"
    root = str(Path(__file__).resolve().parents[3])
    env = {**os.environ, "SAMDESK_MODELS": str(models_dir),
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    args = [str(SIZE), digest, server.url]
    first = _start(args, env)
    assert server.first_started.wait(60), "the first fetch never reached the server"
    second = _start(args, env)
    err_lines: list[str] = []

    def watch() -> None:  # the second says it waits: the first may go on
        assert second.stderr is not None
        for line in iter(second.stderr.readline, ""):
            err_lines.append(line)
            if "waiting" in line:
                server.release.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out1, err1 = first.communicate(timeout=120)
    second.wait(timeout=120)
    watcher.join(timeout=10)
    out2 = second.stdout.read() if second.stdout else ""
    assert (first.returncode, second.returncode) == (0, 0), (err1, "".join(err_lines))
    installed = models_dir / "sam_vit_b_01ec64.pth"
    assert installed.stat().st_size == SIZE
    assert hashlib.sha256(installed.read_bytes()).hexdigest() == digest
    assert not (models_dir / "sam_vit_b_01ec64.pth.part").exists()
    assert not (models_dir / "sam_vit_b_01ec64.pth.lock").exists()
    assert f"fetched {installed}" in out1
    assert f"already installed: {installed}" in out2
    assert any("waiting for another download" in line for line in err_lines)
    assert server.requests == [None]  # the second fetch downloaded nothing
