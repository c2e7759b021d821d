"""What keeps a server safe: keys, limits, no URL fetches unless allowed, 503 when full.

The routes run against GrabCut standing in for the SAM 2 test model (the
loader builds GrabCut for any name), so no request here waits for an encoder.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from samdesk import cli
from samdesk.errors import CliError
from samdesk.inference.engines.loading import load_model
from samdesk.server.app import create_app
from samdesk.server.settings import ServerSettings
from tests.model_factories import SAM21_TINY_CONFIG, registered_test_model, textured_image
from tests.server.conftest import png_b64

KEY = "key-of-team-a"


def grabcut_loader(name: str, checkpoint: Path | None, device: str):
    return load_model("grabcut")


@pytest.fixture(scope="module")
def sam2_name() -> Iterator[str]:
    with registered_test_model("sam2", SAM21_TINY_CONFIG) as spec:
        yield spec.name


def make_client(sam2_name: str, **options) -> TestClient:
    settings = ServerSettings(models={sam2_name: None}, device="cpu", **options)
    return TestClient(create_app(settings, loader=grabcut_loader))


@pytest.fixture(scope="module")
def small_png() -> str:
    return png_b64(textured_image(60, 80, seed=1))


def segment_body(image_id: str, **more) -> dict:
    return {"image_id": image_id, "format": "rle",
            "prompts": [{"points": [{"x": 30, "y": 20, "positive": True}]}], **more}


def test_a_non_loopback_bind_without_a_key_refuses_to_start(capsys):
    with pytest.raises(CliError, match="--api-key"):
        ServerSettings(host="0.0.0.0").check()
    ServerSettings(host="0.0.0.0", api_keys=("k",)).check()
    ServerSettings(host="::1").check()
    assert cli.main(["serve", "--host", "192.168.1.20", "--port", "9001"]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("samdesk: error: --host 192.168.1.20:") and "--api-key" in line
    assert "\n" not in line


def test_missing_or_wrong_key_is_401_and_every_seed_way_of_sending_it_works(sam2_name,
                                                                         small_png):
    body = {"image": {"type": "base64", "value": small_png}, "image_id": "a"}
    with make_client(sam2_name, api_keys=(KEY,)) as client:
        missing = client.post("/sam2/embed_image", json=body)
        assert missing.status_code == 401
        assert missing.json()["error"].startswith("missing API key")
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = client.post("/sam2/embed_image", json=body, headers={"x-api-key": "nope"})
        assert (wrong.status_code, wrong.json()) == (401, {"error": "wrong API key"})
        assert client.post("/sam2/embed_image", json=body,
                           headers={"x-api-key": KEY}).status_code == 200
        assert client.post("/sam2/embed_image", json=body,
                           headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert client.post(f"/sam2/embed_image?api_key={KEY}", json=body).status_code == 200
        assert client.post("/sam2/embed_image",
                           json={**body, "api_key": KEY}).status_code == 200


def test_image_ids_of_different_keys_never_collide(sam2_name, small_png):
    other = "key-of-team-b"
    with make_client(sam2_name, api_keys=(KEY, other)) as client:
        sent = client.post("/sam2/embed_image", headers={"x-api-key": KEY}, json={
            "image": {"type": "base64", "value": small_png}, "image_id": "photo-1"})
        assert sent.status_code == 200
        theirs = client.post("/sam2/segment_image", headers={"x-api-key": other},
                             json=segment_body("photo-1"))
        assert theirs.status_code == 404
        assert theirs.json()["error"] == "unknown image_id"
        ours = client.post("/sam2/segment_image", headers={"x-api-key": KEY},
                           json=segment_body("photo-1"))
        assert ours.status_code == 200 and len(ours.json()["predictions"]) == 1


def test_a_body_over_the_limit_is_413_before_any_route(sam2_name):
    with make_client(sam2_name, max_body_mb=0.01) as client:
        big = "A" * 20_000
        answer = client.post("/sam2/embed_image", json={"image": big})
        assert answer.status_code == 413
        assert "0.01 MB" in answer.json()["error"] and "--max-body-mb" in answer.json()["error"]


def test_too_many_pixels_prompts_or_points_are_refused_with_the_field(sam2_name, small_png):
    with make_client(sam2_name, max_pixels=1000, max_prompts=2, max_points=3) as client:
        pixels = client.post("/sam2/embed_image", json={"image": small_png})
        assert pixels.status_code == 413
        assert pixels.json()["error"] == ("image: 80x60 is 4800 pixels, more than the "
                                          "server's limit of 1000")
        prompts = [{"points": [{"x": 1, "y": 1}]}] * 3
        many = client.post("/sam2/segment_image", json={"image_id": "x", "prompts": prompts})
        assert many.status_code == 422
        assert many.json()["error"] == ("prompts: 3 prompts; the server takes at most 2 "
                                        "per request")
        points = [{"x": i, "y": i} for i in range(4)]
        crowded = client.post("/sam2/segment_image",
                              json={"image_id": "x", "prompts": [{"points": points}]})
        assert crowded.status_code == 422
        assert crowded.json()["error"].startswith("prompts.0.points: 4 points")


class _Files(http.server.BaseHTTPRequestHandler):
    payload = b""

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def image_host(small_png) -> Iterator[str]:
    import base64

    _Files.payload = base64.b64decode(small_png)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/photo.png"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_image_urls_are_refused_unless_the_host_is_allowed(sam2_name, image_host):
    body = {"image": {"type": "url", "value": image_host}, "image_id": "u"}
    with make_client(sam2_name) as client:
        refused = client.post("/sam2/embed_image", json=body)
        assert refused.status_code == 403
        assert refused.json()["error"] == (
            "image.value: fetching images from 127.0.0.1 is not allowed "
            "(start the server with --allow-url-host 127.0.0.1)")
        segmind = client.post("/v1/sam-v2-image", json={"image": image_host,
                                                        "coordinates": "[10,10]"})
        assert segmind.status_code == 403 and "--allow-url-host" in segmind.json()["error"]
    with make_client(sam2_name, allow_url_hosts=("127.0.0.1",)) as client:
        fetched = client.post("/sam2/embed_image", json=body)
        assert fetched.status_code == 200, fetched.text
        assert client.post("/sam2/segment_image", json=segment_body("u")).status_code == 200
    with make_client(sam2_name, allow_url_hosts=("127.0.0.1",), max_body_mb=0.001) as client:
        capped = client.post("/sam2/embed_image", json=body)
        assert capped.status_code == 413
        assert "larger than 0.001 MB" in capped.json()["error"]


def test_a_full_queue_answers_503_with_retry_after(sam2_name, small_png):
    with make_client(sam2_name, max_queue=1, retry_after_s=2) as client:
        scheduler = client.app.state.scheduler
        release, running = threading.Event(), threading.Event()

        def hold(engine) -> None:
            running.set()
            release.wait(30)

        blocker = scheduler.submit(sam2_name, hold, "encode")
        assert running.wait(30)
        waiting = scheduler.submit(sam2_name, lambda engine: "queued", "decode")
        try:
            answer = client.post("/sam2/embed_image", json={"image": small_png})
            assert answer.status_code == 503
            assert answer.headers["retry-after"] == "2"
            assert answer.json() == {"error": "server busy: 1 requests wait; retry shortly"}
        finally:
            release.set()
        assert blocker.result(30) is None and waiting.result(30) == "queued"
        again = client.post("/sam2/embed_image", json={"image": small_png})
        assert again.status_code == 200


def test_an_unexpected_failure_is_one_line_naming_the_log(sam2_name, small_png):
    def broken(name, checkpoint, device):
        raise RuntimeError("weights on fire")

    settings = ServerSettings(models={sam2_name: None}, device="cpu")
    with TestClient(create_app(settings, loader=broken), raise_server_exceptions=False) as client:
        answer = client.post("/sam2/embed_image", json={"image": small_png})
    assert answer.status_code == 500
    line = answer.json()["error"]
    assert line.startswith("RuntimeError: weights on fire (details in ")
    assert "\n" not in line and np.char.count(line, "samdesk.log") == 1
