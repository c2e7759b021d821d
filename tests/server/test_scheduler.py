"""The scheduler: clicks between another client's encoder blocks, bounded memory, idle unload."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from samdesk.inference.engines.base import Embedding, Point, Prediction, Prompts
from samdesk.server.cache import ByteLRU
from samdesk.server.scheduler import Scheduler, UnknownImage
from samdesk.server.settings import ServerSettings


class BlockEngine:
    """An engine whose encode has four blocks; it records what ran, in order."""

    model_id = "grabcut"
    device = "cpu"

    def __init__(self, events: list[str], hold: threading.Event | None = None) -> None:
        self.events, self.hold = events, hold

    def embed_steps(self, rgb: np.ndarray):
        for block in range(4):
            self.events.append(f"block {block}")
            if block == 0 and self.hold is not None:
                assert self.hold.wait(30)
            yield
        return Embedding(self.model_id, rgb.shape[:2], {"x": np.zeros(1000, np.float32)})

    def embed(self, rgb: np.ndarray) -> Embedding:
        steps = self.embed_steps(rgb)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def predict(self, embedding, prompts, mask_input=None, multimask=True) -> Prediction:
        self.events.append("decode")
        height, width = embedding.image_size
        return Prediction(np.ones((1, 1, height, width), bool), np.ones((1, 1), np.float32))


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.005)


RGB = np.zeros((8, 10, 3), np.uint8)
CLICK = Prompts(points=(Point(2, 2),))


def test_a_click_is_answered_between_blocks_of_another_clients_encode():
    events: list[str] = []
    hold = threading.Event()
    engines = {"first": True}

    def loader(name: str, checkpoint: Path | None, device: str) -> BlockEngine:
        return BlockEngine(events, None if engines.pop("first", False) else hold)

    scheduler = Scheduler(ServerSettings(models={"grabcut": None}), loader)
    try:
        scheduler.embed("grabcut", RGB, "a", "client-1")  # loads the engine (no hold)
        scheduler._engines["grabcut"].engine.hold = hold  # the next encode waits in block 0
        events.clear()
        other = threading.Thread(target=scheduler.embed, args=("grabcut", RGB, "b", "client-2"))
        other.start()
        wait_until(lambda: events == ["block 0"], "the other encode started")
        answer: list = []
        click = threading.Thread(target=lambda: answer.append(
            scheduler.predict("grabcut", "a", CLICK, scope="client-1")))
        click.start()
        wait_until(lambda: len(scheduler._decodes) == 1, "the click is queued")
        hold.set()
        click.join(30)
        other.join(30)
        assert answer and answer[0].mask(0, 0).shape == (8, 10)
        assert events == ["block 0", "decode", "block 1", "block 2", "block 3"]
    finally:
        hold.set()
        scheduler.close()


def test_the_embedding_cache_is_bounded_by_bytes_and_evicts_the_oldest():
    scheduler = Scheduler(ServerSettings(models={"grabcut": None}, cache_mb=6000 / (1 << 20)),
                          lambda *a: BlockEngine([]))
    try:
        for image_id in ("a", "b", "c"):  # 4000 bytes each; 6000 hold one
            scheduler.embed("grabcut", RGB, image_id)
        assert scheduler.cache_nbytes == 4000
        with pytest.raises(UnknownImage, match="unknown image_id 'a'"):
            scheduler.predict("grabcut", "a", CLICK)
        assert scheduler.predict("grabcut", "c", CLICK).mask(0, 0).all()
    finally:
        scheduler.close()


def test_byte_lru_keeps_the_recently_used():
    cache = ByteLRU(100)
    cache.put("a", 1, 40)
    cache.put("b", 2, 40)
    assert cache.get("a") == 1  # a is now the newest
    cache.put("c", 3, 40)
    assert ("b" in cache, "a" in cache, "c" in cache) == (False, True, True)
    assert cache.put("huge", 4, 101) is False and cache.nbytes == 80


def test_a_model_unused_for_idle_unload_seconds_is_unloaded_and_loads_again():
    loads: list[str] = []

    def loader(name: str, checkpoint: Path | None, device: str) -> BlockEngine:
        loads.append(name)
        return BlockEngine([])

    scheduler = Scheduler(ServerSettings(models={"grabcut": None}, idle_unload_s=0.05), loader)
    try:
        scheduler.embed("grabcut", RGB, "a")
        assert scheduler.loaded() == ["grabcut"]
        wait_until(lambda: scheduler.loaded() == [], "the idle model was unloaded")
        assert scheduler.predict("grabcut", "a", CLICK).mask(0, 0).all()  # cache outlives it
        assert loads == ["grabcut", "grabcut"]
    finally:
        scheduler.close()


def test_two_requests_for_the_same_new_image_share_one_encode():
    events: list[str] = []
    hold = threading.Event()
    scheduler = Scheduler(ServerSettings(models={"grabcut": None}),
                          lambda *a: BlockEngine(events, hold))
    try:
        results: list = []
        threads = [threading.Thread(target=lambda: results.append(
            scheduler.embed("grabcut", RGB, "same"))) for _ in range(2)]
        for thread in threads:
            thread.start()
        wait_until(lambda: events == ["block 0"] and len(scheduler._pending) == 1,
                   "one encode runs")
        hold.set()
        for thread in threads:
            thread.join(30)
        assert len(results) == 2 and results[0] is results[1]
        assert events.count("block 0") == 1
    finally:
        hold.set()
        scheduler.close()
