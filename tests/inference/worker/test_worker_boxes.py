"""Pending boxes made into masks on the worker thread: one embedding, every box, never dropped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from samdesk import masks
from samdesk.inference.worker.request_queue import RequestQueue
from samdesk.inference.worker.requests import FocusImage, ImageRef, SegmentBoxes
from tests.inference.worker.test_worker import WAIT_MS, Harness, scene

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture
def held(qtbot: QtBot, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(qtbot, tmp_path / "embeddings", hold=True)
    yield h
    h.close()


def disk_box(disk: np.ndarray, pad: int = 6) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(disk)
    return (float(xs.min() - pad), float(ys.min() - pad), float(xs.max() + 1 + pad),
            float(ys.max() + 1 + pad))


def test_boxes_of_two_images_come_back_even_after_focus_moved(held: Harness,
                                                             tmp_path: Path) -> None:
    (ref_a, disk_a), (ref_b, disk_b) = (scene(tmp_path / "a.png", 200, 260, 1),
                                        scene(tmp_path / "b.png", 180, 240, 2))
    got: list[Any] = []
    held.client.box_masks.connect(got.append)
    held.use_grabcut()
    held.client.focus(ref_a)
    held.qtbot.waitUntil(held.engine.busy.is_set, timeout=WAIT_MS)  # the encode holds it
    corner = (0.0, 0.0, 30.0, 30.0)
    first = held.client.segment_boxes(ref_a, [disk_box(disk_a), corner])
    second = held.client.segment_boxes(ref_b, [disk_box(disk_b)])
    held.client.focus(ref_b)  # the person moves on: box work is kept
    held.engine.release()
    held.qtbot.waitUntil(lambda: len(got) == 2, timeout=WAIT_MS)
    held.until_idle()
    by_id = {r.request_id: r for r in got}
    assert set(by_id) == {first, second}
    a, b = by_id[first], by_id[second]
    assert a.image_key == ref_a.key and len(a.masks) == 2 and len(a.scores) == 2
    for rle, disk in ((a.masks[0], disk_a), (b.masks[0], disk_b)):
        mask = masks.decode(rle)
        assert (mask & disk).sum() / (mask | disk).sum() >= 0.8
    corner_mask = a.masks[1]
    assert corner_mask is None or not masks.decode(corner_mask)[30:, :].any()
    assert held.engine.embedded.count((200, 260)) == 1  # one encode for both boxes of a.png
    box_calls = [len(p.boxes) for p in held.engine.prompts]
    assert box_calls == [2, 1]


def test_the_queue_keeps_box_jobs_past_a_refocus_and_runs_them_before_prefetch() -> None:
    queue = RequestQueue()
    a, b = ImageRef(Path("a.png"), "ka"), ImageRef(Path("b.png"), "kb")
    queue.put(SegmentBoxes(1, a, ((0, 0, 5, 5),)))
    queue.put(SegmentBoxes(2, a, ((1, 1, 5, 5),)))  # not superseded
    queue.put(FocusImage(3, b))
    assert queue.pending_ids() == [1, 2, 3]
    assert queue.take(lambda key: True).reason == "focus"
    assert [queue.take(lambda key: True).request_id for _ in range(2)] == [1, 2]
    queue.put(SegmentBoxes(4, a, ((0, 0, 5, 5),)))
    assert queue.cancel(4) and queue.pending_ids() == []
