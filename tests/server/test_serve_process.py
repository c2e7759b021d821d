"""One real ``samdesk serve`` process on 127.0.0.1: start, answer, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np

from tests.model_factories import textured_image
from tests.server.conftest import png_b64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_samdesk_serve_answers_over_loopback_then_stops(tmp_path):
    port = free_port()
    env = {**os.environ, "SAMDESK_LOG_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "samdesk.cli", "serve", "--port", str(port),
         "--model", "grabcut", "--api-key", "k", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # at most a minute for the process to listen
            if process.poll() is not None:
                break
            try:
                if httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        assert process.poll() is None, process.stdout.read().decode()
        rgb = textured_image(60, 80, seed=4)
        headers = {"x-api-key": "k"}
        denied = httpx.post(f"{url}/v1/sam-v2-image", json={"image": png_b64(rgb)}, timeout=30)
        assert denied.status_code == 401
        answer = httpx.post(f"{url}/v1/sam-v2-image", headers=headers, timeout=60, json={
            "image": png_b64(rgb), "coordinates": "[40,30]", "overlay_mask": False})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "image/jpeg"
        assert np.frombuffer(answer.content[:2], np.uint8).tolist() == [0xFF, 0xD8]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output = process.communicate(timeout=30)[0].decode()
        except subprocess.TimeoutExpired:
            process.kill()
            output = process.communicate()[0].decode()
    assert process.returncode == 0, output
    assert f"samdesk serve: http://127.0.0.1:{port} (OpenAPI at /docs); models: grabcut" in output
