"""Benchmark 2: moving to the next image without waiting for the encoder.

A scripted session through the real :class:`InferenceClient` and its worker
thread, with SAM 2.1 hiera-tiny (seeded random weights) on 4000 x 3000 JPEG
files. On each image the script does what a person does: arrive (``focus``,
and ``prefetch`` of the next two images, as the window does), click at once
(``predict``), wait for the mask, click again at once, then look at the image
for a while. Meanwhile the worker encodes the next images in the background.

The person stays 1.2 encodes on each image, counted from its first mask: the
time they work on it once it answers (``session.next_image``), or, in the
stricter reading where waiting counts as time spent on the image, from
arriving (``session.next_image_from_arrival``).

"One encode" is what a person waits for on an image nothing has encoded: the
worker's time from ``focus`` to the embedding being ready, reading and
decoding the JPEG file included (``encode_ms``, the median of a few images
after a first one that warms up, timed before the session through a client
of its own; ``encodes_ms`` lists them); ``encoder_only_ms`` is
``engine.embed`` alone on a decoded image, for comparison. The "mask" waited
for is the client's first ``predicted`` answer to a click from a window that
shows the photo fitted in 1600 x 1000 (``bench.click.SCREEN``): the shown
candidate's preview, what the window draws first (its full-resolution mask
and the other candidates follow as worker jobs a newer click supersedes).

- ``session.next_image`` and ``session.next_image_from_arrival``: arrival ->
  first mask, as a fraction of one encode; target 5%. Image 1 is encoded on
  arrival. Counted from arrival, that wait uses up the dwell on image 1, so
  the prefetch of image 2 starts about one encode late and catches up only by
  the slack of each image (0.2 encode less the clicks' own work). ``click_idle_ms``
  is a click on an encoded image with the worker idle (the decode alone,
  through the worker); ``embedding_wait`` = first mask - idle click, the part
  of the wait that came from the embedding not being ready.
- ``session.click_after_arrival``: the second click's wait against an idle
  click: how much background encoding delays a click (no target in issue 5).
- ``session.revisit_disk``: arrival -> first mask with a new client (an app
  restarted) whose embeddings come from the disk cache; target 2%.
- ``session.click_during_prefetch``: a click on an encoded image made while
  the worker encodes another image in the background, at 20% to 80% into
  that encode; against an idle click. The worker answers it between encoder
  blocks, so it waits for one block, not for the rest of the encode (no
  target in issue 5).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Emit, Result, median, qt_app, sam2_checkpoint, scratch

MODEL = "sam2.1_hiera_tiny"
HEIGHT, WIDTH = 3000, 4000
DWELL = 1.2  # encodes spent on each image
PREFETCH_AHEAD = 2  # as samdesk.views.session does
TIMEOUT_S = 600.0
SCREEN = (1000, 1333)  # as bench.click: the photo fitted in a 1600 x 1000 canvas
INTO_ENCODE = (0.2, 0.4, 0.6, 0.8)  # where in a background encode the click comes


def spin(seconds: float) -> None:
    """Run the Qt event loop for ``seconds`` (results keep arriving meanwhile)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(max(0, int(seconds * 1000)), loop.quit)
    loop.exec()


def wait_until(done: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> None:
    """Run the event loop until ``done()``, checking every 2 ms.

    The loop sleeps between events (no busy polling, which on a 2-core machine
    would take a core from the worker's torch threads); results are stamped
    by their slots when delivered, so the check interval does not bias timings.
    """
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.perf_counter() + timeout_s
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(2)

    def check() -> None:
        if done() or time.perf_counter() > deadline:
            loop.quit()

    timer.timeout.connect(check)
    while not done():
        if time.perf_counter() > deadline:
            raise TimeoutError("the inference worker did not answer in time")
        timer.start()
        loop.exec()
        timer.stop()


class Script:
    """Drives one :class:`InferenceClient` like a person and records waits (seconds)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.results: dict[int, float] = {}
        self.failures: list[str] = []
        client.predicted.connect(lambda r: self.results.__setitem__(r.request_id,
                                                                    time.perf_counter()))
        client.failed.connect(lambda f: self.failures.append(f.message))

    def click(self, image: Any, prompts: Any, start: float) -> float:
        """Ask for a mask and wait for it; seconds from ``start`` to the mask."""
        request = self.client.predict(image, prompts, preview=SCREEN)
        wait_until(lambda: request in self.results or bool(self.failures))
        if self.failures:
            raise RuntimeError(f"inference failed: {self.failures[0]}")
        return self.results[request] - start

    def arrive(self, image: Any, ahead: list[Any], prompts: Any) -> tuple[float, float, float]:
        """Open ``image``, click at once and again; (start, first mask wait, second wait)."""
        start = time.perf_counter()
        self.client.focus(image)
        if ahead:
            self.client.prefetch(ahead)
        first = self.click(image, prompts, start)
        second = self.click(image, prompts, time.perf_counter())
        return start, first, second

    def idle_clicks(self, image: Any, prompts: Any, times: int) -> list[float]:
        """Waits of ``times`` clicks on an encoded image once the worker is idle."""
        wait_until(self.client.is_idle)
        return [self.click(image, prompts, time.perf_counter()) for _ in range(times)]


def write_images(folder: Path, count: int) -> list[Path]:
    """``count`` distinct 4000 x 3000 JPEG files."""
    from PIL import Image

    from tests.model_factories import textured_image

    paths = []
    for i in range(count):
        path = folder / f"photo_{i:03d}.jpg"
        Image.fromarray(textured_image(HEIGHT, WIDTH, seed=100 + i)).save(path, quality=90)
        paths.append(path)
    return paths


def encode_seconds(checkpoint: Path, path: Path, times: int) -> float:
    """Median seconds of ``engine.embed`` on the decoded ``path`` (one encode)."""
    from samdesk.images import load_rgb
    from samdesk.inference.engines.loading import load_model

    engine = load_model(MODEL, checkpoint, "cpu")
    rgb = load_rgb(path)
    seconds = []
    for _ in range(times):
        start = time.perf_counter()
        engine.embed(rgb)
        seconds.append(time.perf_counter() - start)
    return median(seconds)


def scripted_session(script: Script, refs: list[Any], prompts: Any, encode_s: float,
                     from_mask: bool) -> tuple[list[float], list[float]]:
    """Visit ``refs`` in order; the (first mask, second click) waits on each image, seconds.

    The person stays ``DWELL`` encodes on each image, counted from its first
    mask (``from_mask``: the time they work on it) or from arriving.
    """
    firsts, seconds = [], []
    for i, ref in enumerate(refs):
        start, first, second = script.arrive(ref, refs[i + 1:i + 1 + PREFETCH_AHEAD], prompts)
        firsts.append(first)
        seconds.append(second)
        spin(start + (first if from_mask else 0.0) + DWELL * encode_s - time.perf_counter())
    return firsts, seconds


def cold_encode_seconds(client: Any, refs: list[Any]) -> list[float]:
    """Seconds from ``focus`` on each never-encoded image to its embedding ready.

    The first image warms the engine up (its first forward pass allocates) and
    is not counted.
    """
    ready: dict[str, float] = {}

    def on_state(state: Any) -> None:
        if state.status == "ready":
            ready.setdefault(state.image_key, time.perf_counter())

    client.embedding_state.connect(on_state)
    seconds = []
    for ref in refs:
        wait_until(client.is_idle)
        start = time.perf_counter()
        client.focus(ref)
        wait_until(lambda key=ref.key: key in ready)
        seconds.append(ready[ref.key] - start)
    client.embedding_state.disconnect(on_state)
    return seconds[1:]


def _client(cache_folder: Path, checkpoint: Path) -> Any:
    from samdesk.inference.worker.cache import EmbeddingCache
    from samdesk.inference.worker.client import InferenceClient

    client = InferenceClient(EmbeddingCache(cache_folder))
    client.start()
    loaded: list[Any] = []
    client.model_loaded.connect(loaded.append)
    client.set_model(MODEL, checkpoint, "cpu")
    wait_until(lambda: bool(loaded))
    return client


def run(quick: bool, emit: Emit) -> None:
    from samdesk.inference.worker.requests import ImageRef
    from tests.model_factories import prompt_case

    qt_app()
    count, revisits = (10, 4) if quick else (20, 10)
    checkpoint = sam2_checkpoint()
    prompts = prompt_case("one_point", HEIGHT, WIDTH)
    with scratch("session") as folder:
        trials = INTO_ENCODE[1::2] if quick else INTO_ENCODE
        cold = 3 if quick else 4
        paths = write_images(folder, count + 1 + len(trials) + cold)
        encoder_s = encode_seconds(checkpoint, paths[count], 2 if quick else 3)
        refs = [ImageRef.from_path(p) for p in paths[:count]]
        cache = folder / "cache"
        client = _client(folder / "cold-cache", checkpoint)
        try:
            colds = cold_encode_seconds(client, [ImageRef.from_path(p) for p in paths[-cold:]])
            encode_s = median(colds)
        finally:
            client.stop()

        client = _client(cache, checkpoint)
        try:
            firsts, seconds = scripted_session(Script(client), refs, prompts, encode_s, True)
            idle = median(Script(client).idle_clicks(refs[-1], prompts, 3 if quick else 5))
        finally:
            client.stop()
        emit(_line("session.next_image", firsts, idle, encode_s, 0.05, encoder_s,
                   "arrival -> first mask / one encode; 1.2 encodes of work after the "
                   "first mask; image 1 has nothing prefetched", colds))
        client = _client(folder / "cache-arrival", checkpoint)
        try:
            strict, _ = scripted_session(Script(client), refs, prompts, encode_s, False)
        finally:
            client.stop()
        emit(_line("session.next_image_from_arrival", strict, idle, encode_s, 0.05, encoder_s,
                   "the same with 1.2 encodes counted from arrival (waiting counts as time "
                   "spent on the image)", colds))
        emit(Result("session.click_after_arrival", {
            "click_idle_ms": round(1000 * idle, 1),
            "second_click_ms_median": round(1000 * median(seconds), 1),
            "second_click_ms_max": round(1000 * max(seconds), 1),
        }, median(seconds) / idle, None,
            "a click right after the first mask vs a click with the worker idle"))

        client = _client(cache, checkpoint)  # a restarted app: memory empty, disk kept
        script = Script(client)
        order = random.Random(0).sample(refs, min(revisits, len(refs)))
        firsts = []
        try:
            for ref in order:
                wait_until(client.is_idle)
                firsts.append(script.arrive(ref, [], prompts)[1])
        finally:
            client.stop()
        emit(_line("session.revisit_disk", firsts, idle, encode_s, 0.02, encoder_s,
                   "new client, embeddings from the disk cache; arrival -> first mask", colds))

        client = _client(cache, checkpoint)
        try:
            waits = clicks_during_prefetch(Script(client), refs[0], paths[count + 1:-cold], trials,
                                           encode_s, prompts)
        finally:
            client.stop()
        emit(Result("session.click_during_prefetch", {
            "into_encode": list(trials),
            "encode_ms": round(1000 * encode_s, 1),
            "click_idle_ms": round(1000 * idle, 1),
            "click_ms_median": round(1000 * median(waits), 1),
            "click_ms_max": round(1000 * max(waits), 1),
            "clicks_ms": [round(1000 * w) for w in waits],
        }, median(waits) / idle, None,
            "a click on an encoded image during another image's encode vs an idle click"))


def clicks_during_prefetch(script: Script, encoded: Any, fresh: list[Path],
                           trials: tuple[float, ...], encode_s: float,
                           prompts: Any) -> list[float]:
    """Seconds from each click on ``encoded`` to its mask, each made ``trials[i]`` of an
    encode into the background encode of the new image ``fresh[i]``."""
    from samdesk.inference.worker.requests import ImageRef

    client = script.client
    client.focus(encoded)
    wait_until(client.is_idle)
    waits = []
    for into, path in zip(trials, fresh, strict=False):
        client.prefetch([ImageRef.from_path(path)])
        spin(0.1 + into * encode_s)  # the prefetch starts after 0.08 s of quiet
        waits.append(script.click(encoded, prompts, time.perf_counter()))
        wait_until(client.is_idle)
    return waits


def _line(name: str, firsts: list[float], idle_click: float, encode_s: float,
          target: float, encoder_s: float, note: str, colds: list[float]) -> Result:
    wait = max(0.0, statistics.median(firsts) - idle_click)
    figures = {
        "images": len(firsts),
        "encode_ms": round(1000 * encode_s, 1),
        "encodes_ms": [round(1000 * c) for c in colds],
        "encoder_only_ms": round(1000 * encoder_s, 1),
        "first_mask_ms_median": round(1000 * statistics.median(firsts), 1),
        "first_mask_ms_max": round(1000 * max(firsts), 1),
        "click_idle_ms": round(1000 * idle_click, 1),
        "embedding_wait_ms": round(1000 * wait, 1),
        "embedding_wait_ratio": round(wait / encode_s, 4),
        "first_masks_ms": [round(1000 * f) for f in firsts],
    }
    return Result(name, figures, statistics.median(firsts) / encode_s, target, note)
