"""Benchmark: ``samdesk serve`` over loopback against the same engine in process.

A real uvicorn server on 127.0.0.1 (a free port, in this process, on its own
thread) serves SAM 2.1 hiera-tiny with seeded random weights (the real
model's cost). Three lines:

- ``serve.click_loopback``: one point prompt on an embedded 4000 x 3000
  photo, ``POST /sam2/segment_image`` with ``format: rle`` over loopback
  (httpx, one kept-alive connection) vs the same engine in process doing the
  same work (decode, best candidate upsampled, RLE encoded); interleaved call
  by call; target 1.15x. ``bytes_per_click``: request plus answer, bodies and
  headers as sent (gzip), target under 50 kB; random weights give a ragged
  mask, so ``bytes_per_click_object_mask`` is the same exchange with the
  answer's mask replaced by an object-like ellipse of the photo's size.
- ``serve.concurrent``: 8 loopback clients at once, each embedding 2 images
  of its own and sending 25 clicks on them: errors, p50 and p99 click
  latency, and click throughput against one client doing the same alone
  (``ratio``: 8-client clicks/s over 1-client clicks/s, no target).
  Its ``p99_over_decode`` includes clicks queued behind other clients' clicks.
- ``serve.click_p99_under_load``: one client clicks (every 50 ms) on its
  embedded image while 7 other clients embed 2 new images each; the p99 of
  the clicks sent while an encode ran, over one decode in process (target 3x:
  a click waits for at most one encoder chunk, half a block, of another
  client's encode).

Run alone: ``python bench/serve.py [--quick]`` (quick: 1280 x 960 images for
the clients and fewer timed clicks). Loopback only; every request bounded by
a timeout.
"""

from __future__ import annotations

import argparse
import base64
import io
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, bench/ is first on sys.path and its click.py would hide the
# click package uvicorn imports: import from the repository root instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.common import Emit, Result, interleaved, print_result, sam2_checkpoint  # noqa: E402

MODEL = "sam2.1_hiera_tiny"
CLIENTS, EMBEDS, CLICKS = 8, 2, 25
TIMEOUT_S = 600.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _jpeg_b64(rgb: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=90)
    return base64.b64encode(out.getvalue()).decode("ascii")


class LoopbackServer:
    """uvicorn serving ``create_app(settings)`` on a thread; ``url``; ``stop()``."""

    def __init__(self, settings: Any) -> None:
        import uvicorn

        from samdesk.server.app import create_app

        self.app = create_app(settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=settings.port,
                                log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the loopback server did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{settings.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def _wire_bytes(answer: Any) -> int:
    """Bytes of one exchange: request and answer bodies plus their header lines."""
    request = answer.request
    head = sum(len(k) + len(v) + 4 for k, v in request.headers.raw)
    head += sum(len(k) + len(v) + 4 for k, v in answer.headers.raw)
    body = int(answer.headers.get("content-length", len(answer.content)))  # as sent (gzip)
    return len(request.content) + body + head + 64  # + the start lines


def _gzip_len(data: bytes) -> int:
    import gzip

    return len(gzip.compress(data, compresslevel=5))


def _answer_body(answer: dict) -> int:
    """Bytes the JSON ``answer`` took on the wire (gzip, as the server sends it)."""
    import json

    return _gzip_len(json.dumps(answer, separators=(",", ":")).encode())


def _object_answer_bytes(size: tuple[int, int], answer: dict) -> int:
    """Wire bytes of ``answer`` with its mask replaced by an object-like ellipse."""
    import copy

    import cv2

    from samdesk import masks

    height, width = size
    mask = np.zeros(size, np.uint8)
    cv2.ellipse(mask, (width // 2, height // 2), (width // 5, height // 4), 20, 0, 360, 1, -1)
    smooth = copy.deepcopy(answer)
    smooth["predictions"][0]["masks"] = masks.encode(mask.astype(bool))
    return _answer_body(smooth)


def _click_line(server: LoopbackServer, engine: Any, calls: int) -> tuple[Result, float]:
    """Loopback click vs the same engine in process on a 12 MP photo; and one decode's ms."""
    import httpx

    from samdesk import masks
    from samdesk.inference.engines.base import Point, Prompts
    from samdesk.server.images import decode
    from tests.model_factories import textured_image

    photo = textured_image(3000, 4000, seed=11)
    data = _jpeg_b64(photo)
    settings = server.app.state.settings
    rgb = decode(base64.b64decode(data), settings)  # the pixels the server decodes
    client = httpx.Client(base_url=server.url, timeout=TIMEOUT_S)
    sent = client.post("/sam2/embed_image", json={
        "image": {"type": "base64", "value": data}, "image_id": "photo",
        "sam2_version_id": "hiera_tiny"})
    sent.raise_for_status()
    embedding = engine.embed(rgb)
    body = {"image_id": "photo", "format": "rle", "sam2_version_id": "hiera_tiny",
            "prompts": [{"points": [{"x": 1200, "y": 1200, "positive": True}]}]}
    prompts = Prompts(points=(Point(1200, 1200),))
    sizes: list[int] = []
    answers: list[Any] = []

    def loopback() -> None:
        answer = client.post("/sam2/segment_image", json=body)
        answer.raise_for_status()
        sizes.append(_wire_bytes(answer))
        answers.append(answer.json())

    def in_process() -> None:
        proposal = engine.propose(embedding, prompts)
        masks.encode(proposal.mask(0, int(proposal.best()[0])))

    def decode_only() -> None:
        engine.decode(embedding, prompts)

    timings = interleaved({"loopback": loopback, "in_process": in_process,
                           "decode": decode_only}, calls)
    remote = masks.decode(answers[-1]["predictions"][0]["masks"])
    proposal = engine.propose(embedding, prompts)
    same = bool(np.array_equal(remote, proposal.mask(0, int(proposal.best()[0]))))
    client.close()
    # Random weights make a ragged mask (many runs); a real object's mask is one smooth
    # region. What its answer would weigh: the same answer with an ellipse's RLE, gzipped.
    object_bytes = (sizes[-1] - _answer_body(answers[-1])
                    + _object_answer_bytes(photo.shape[:2], answers[-1]))
    loop_ms, local_ms = timings.median_ms("loopback"), timings.median_ms("in_process")
    figures = {"loopback_ms": round(loop_ms, 1), "in_process_ms": round(local_ms, 1),
               "bytes_per_click": int(statistics.median(sizes)),
               "bytes_target": 50_000, "bytes_per_click_object_mask": int(object_bytes),
               "same_mask": same, "calls": calls,
               "image": "4000x3000"}
    line = Result("serve.click_loopback", figures, loop_ms / local_ms, 1.15,
                  "segment_image (rle) over loopback vs the engine in process")
    return line, timings.median_ms("decode")


def _client(server: LoopbackServer, index: int, size: tuple[int, int], latencies: list[float],
            errors: list[str], start: threading.Barrier) -> None:
    import httpx

    from tests.model_factories import textured_image

    height, width = size
    images = [_jpeg_b64(textured_image(height, width, seed=100 + index * EMBEDS + i))
              for i in range(EMBEDS)]
    rng = np.random.default_rng(index)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT_S) as client:
        start.wait()
        for i, data in enumerate(images):
            answer = client.post("/sam2/embed_image", json={
                "image": {"type": "base64", "value": data}, "image_id": f"c{index}-{i}"})
            if answer.status_code != 200:
                errors.append(f"embed {answer.status_code}: {answer.text[:100]}")
        for click in range(CLICKS):
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            body = {"image_id": f"c{index}-{click % EMBEDS}", "format": "rle",
                    "prompts": [{"points": [{"x": float(x), "y": float(y)}]}]}
            began = time.perf_counter()
            answer = client.post("/sam2/segment_image", json=body)
            latencies.append(time.perf_counter() - began)
            if answer.status_code != 200:
                errors.append(f"click {answer.status_code}: {answer.text[:100]}")


def _encoder(server: LoopbackServer, index: int, size: tuple[int, int], errors: list[str],
             start: threading.Barrier) -> None:
    """A client that only embeds: ``EMBEDS`` new images of its own, one after another."""
    import httpx

    from tests.model_factories import textured_image

    images = [_jpeg_b64(textured_image(*size, seed=500 + index * EMBEDS + i))
              for i in range(EMBEDS)]
    with httpx.Client(base_url=server.url, timeout=TIMEOUT_S) as client:
        start.wait()
        for i, data in enumerate(images):
            answer = client.post("/sam2/embed_image", json={
                "image": {"type": "base64", "value": data}, "image_id": f"e{index}-{i}"})
            if answer.status_code != 200:
                errors.append(f"embed {answer.status_code}: {answer.text[:100]}")


def _clicks_during_encodes(server: LoopbackServer, size: tuple[int, int]
                           ) -> tuple[list[float], list[str], int]:
    """One client clicks on its embedded image while the other clients' encodes run.

    The clicker's image is embedded first; then ``CLIENTS - 1`` clients each
    embed ``EMBEDS`` new images while it sends a click every 50 ms. Only
    clicks sent while an encode was still going count. Returns their
    latencies (s), the errors, and how many encodes ran.
    """
    import httpx

    from tests.model_factories import textured_image

    height, width = size
    errors: list[str] = []
    latencies: list[float] = []
    rng = np.random.default_rng(7)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT_S) as client:
        answer = client.post("/sam2/embed_image", json={
            "image": {"type": "base64", "value": _jpeg_b64(textured_image(*size, seed=499))},
            "image_id": "clicker"})
        answer.raise_for_status()
        barrier = threading.Barrier(CLIENTS)
        encoders = [threading.Thread(target=_encoder, args=(server, i, size, errors, barrier))
                    for i in range(CLIENTS - 1)]
        for thread in encoders:
            thread.start()
        barrier.wait()
        while any(thread.is_alive() for thread in encoders):
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            body = {"image_id": "clicker", "format": "rle",
                    "prompts": [{"points": [{"x": float(x), "y": float(y)}]}]}
            began = time.perf_counter()
            answer = client.post("/sam2/segment_image", json=body)
            took = time.perf_counter() - began
            if any(thread.is_alive() for thread in encoders):
                latencies.append(took)
            if answer.status_code != 200:
                errors.append(f"click {answer.status_code}: {answer.text[:100]}")
            time.sleep(0.05)
        for thread in encoders:
            thread.join(TIMEOUT_S)
    return latencies, errors, (CLIENTS - 1) * EMBEDS


def _percentile(seconds: list[float], q: float) -> float:
    """The ``q`` quantile of ``seconds``, in ms (nearest rank)."""
    ms = sorted(1000 * s for s in seconds)
    return ms[min(len(ms) - 1, int(round(q * (len(ms) - 1))))]


def _load(server: LoopbackServer, clients: int, size: tuple[int, int]
          ) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)
    threads = [threading.Thread(target=_client, args=(server, i, size, latencies, errors,
                                                      barrier)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join(TIMEOUT_S)
    return latencies, errors, time.perf_counter() - began


def run(quick: bool, emit: Emit) -> None:
    from samdesk.inference.engines.loading import load_model
    from samdesk.server.settings import ServerSettings

    checkpoint = sam2_checkpoint()
    settings = ServerSettings(port=_free_port(), models={MODEL: checkpoint}, device="cpu",
                              max_queue=256)
    server = LoopbackServer(settings)
    try:
        engine = load_model(MODEL, checkpoint, "cpu")
        line, decode_ms = _click_line(server, engine, 6 if quick else 20)
        emit(line)
        size = (960, 1280) if quick else (3000, 4000)
        _, alone_errors, alone_s = _load(server, 1, size)
        latencies, errors, together_s = _load(server, CLIENTS, size)
        alone_rate = CLICKS / alone_s
        together_rate = CLIENTS * CLICKS / together_s
        p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
        emit(Result("serve.concurrent", {
            "clients": CLIENTS, "embeds_each": EMBEDS, "clicks_each": CLICKS,
            "errors": len(errors) + len(alone_errors), "p50_ms": round(p50, 1),
            "p99_ms": round(p99, 1), "p99_over_decode": round(p99 / decode_ms, 2),
            "clicks_per_s": round(together_rate, 2),
            "one_client_clicks_per_s": round(alone_rate, 2),
            "image": f"{size[1]}x{size[0]}", "first_error": (errors or [""])[0]},
            together_rate / alone_rate, None,
            "8 loopback clients (2 embeds + 25 clicks each) vs 1 client; wall time "
            "includes the encodes; a click also waits for other clients' clicks"))
        during, during_errors, encodes = _clicks_during_encodes(server, size)
        p99 = _percentile(during, 0.99) if during else float("nan")
        emit(Result("serve.click_p99_under_load", {
            "p99_ms": round(p99, 1), "p50_ms": round(_percentile(during, 0.5), 1) if during
            else None, "decode_ms": round(decode_ms, 1), "clicks": len(during),
            "encodes": encodes, "errors": len(during_errors),
            "first_error": (during_errors or [""])[0], "image": f"{size[1]}x{size[0]}"},
                    p99 / decode_ms, 3.0,
                    "p99 of one client's clicks while 7 clients' encodes run, vs one decode "
                    "in process"))
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller client images")
    args = parser.parse_args(argv)
    run(args.quick, print_result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
