"""Propagation on the worker thread: masks come back frame by frame, cancel keeps them.

The real client, worker thread, SAM 2 video engine and runner, on a tiny
random-weight SAM 2.1 (run at the video tests' input side) over 6 small
frames of a tmp sequence project. A gate
on one frame's decode makes "cancel pressed while the run is mid-way"
certain without timing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from samdesk import masks
from samdesk.images import load_rgb
from samdesk.inference.worker.cache import EmbeddingCache
from samdesk.inference.worker.client import InferenceClient
from samdesk.inference.worker.propagate import propagation_refusal
from samdesk.inference.worker.request_queue import RequestQueue
from samdesk.inference.worker.requests import Propagate, PropagationDone, TrackFrame
from samdesk.project import Project
from samdesk.tracking import build_plan

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning",
                                        "ignore:cannot import name '_C':UserWarning")

N_FRAMES, H, W = 6, 96, 128
WAIT_MS = 240_000


def disk(cx: float, cy: float, r: float = 22) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r


def centre(i: int) -> tuple[float, float]:
    return 40 + 8 * i, 48


def write_frames(folder: Path) -> Path:
    """``N_FRAMES`` frames of a bright disk moving right over a textured background."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    coarse = rng.uniform(20, 90, (6, 8, 3)).astype(np.float32)
    back = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC)
    for i in range(N_FRAMES):
        img = np.clip(back + rng.normal(0, 4, back.shape), 0, 255).astype(np.uint8)
        img[disk(*centre(i))] = (230, 200, 60)
        cv2.imwrite(str(folder / f"frame_{i:03d}.png"), img)
    return folder


def sequence_project(folder: Path) -> tuple[int, list[int]]:
    """Mark ``folder`` a sequence with one track: a person's disk mask on frame 0."""
    with Project.open(folder) as project:
        project.set_sequence(True)
        label = project.add_label("ball")
        ids = project.frame_ids()
        project.ensure_image_infos(ids)
        layer = project.add_annotation(ids[0], masks.encode(disk(*centre(0))), label.id)
        track = project.add_track(label.id)
        project.set_layer_track(layer.id, track.id)
        return track.id, ids


@pytest.fixture(scope="module")
def sam2_tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    from model_factories import SAM21_TINY_CONFIG, make_sam2_checkpoint, registered_test_model

    checkpoint = make_sam2_checkpoint(tmp_path_factory.mktemp("sam2") / "sam2.1_tiny.pt")
    with registered_test_model("sam2", SAM21_TINY_CONFIG) as spec:
        yield spec.name, checkpoint


class Gate:
    """An image loader that holds the decode of one file until :meth:`open`."""

    def __init__(self, held: Path | None = None) -> None:
        self.held, self.opened = held, threading.Event()
        self.reached = threading.Event()

    def open(self) -> None:
        self.opened.set()

    def __call__(self, path: Path) -> np.ndarray:
        if self.held is not None and Path(path) == self.held:
            self.reached.set()
            self.opened.wait(WAIT_MS / 1000)
        return load_rgb(path)


def small_video(spec: Any, checkpoint: Path, device: str) -> Any:
    """The real video engine of the tiny model at the video tests' input side (fast)."""
    from model_factories import VIDEO_TEST_SIDE

    from samdesk.inference.engines.sam2_video import SAM2VideoEngine

    return SAM2VideoEngine(spec, checkpoint, device, image_size=VIDEO_TEST_SIDE)


def start_client(gate: Any) -> InferenceClient:
    client = InferenceClient(EmbeddingCache(None), image_loader=gate, video_loader=small_video)
    client.start()
    return client


def test_forward_run_sends_every_frame_then_its_end(qtbot: QtBot, tmp_path: Path,
                                                    sam2_tiny: tuple[str, Path]) -> None:
    folder = write_frames(tmp_path / "frames")
    track_id, ids = sequence_project(folder)
    client = start_client(Gate())
    frames: list[TrackFrame] = []
    progress: list[tuple[int, int]] = []
    client.track_frame.connect(frames.append)
    client.propagation_progress.connect(lambda p: progress.append((p.done, p.total)))
    try:
        with Project.open(folder) as project:
            plan = build_plan(project, [track_id], ids[0], "forward")
        name, checkpoint = sam2_tiny
        with qtbot.waitSignal(client.propagation_done, timeout=WAIT_MS) as ended:
            request = client.propagate(plan, name, checkpoint, "cpu")
        done: PropagationDone = ended.args[0]
        assert done.request_id == request and not done.cancelled
        assert [f.frame.image_id for f in frames] == ids[1:]  # frame 0 is the person's
        assert all(f.frame.track_id == track_id for f in frames)
        assert all(f.frame.rle["size"] == [H, W] for f in frames)
        assert all(np.isfinite(f.frame.object_score) for f in frames)
        assert progress[-1] == (N_FRAMES, N_FRAMES)
        assert done.frames == N_FRAMES - 1 and "5 masks over 6 frames" in done.message
        assert not client.propagating(request)
    finally:
        client.stop()


def test_cancel_mid_run_stops_after_the_frame_in_progress(qtbot: QtBot, tmp_path: Path,
                                                          sam2_tiny: tuple[str, Path]) -> None:
    folder = write_frames(tmp_path / "frames")
    track_id, ids = sequence_project(folder)
    gate = Gate(held=folder / "frame_003.png")
    client = start_client(gate)
    frames: list[TrackFrame] = []
    client.track_frame.connect(frames.append)
    try:
        with Project.open(folder) as project:
            plan = build_plan(project, [track_id], ids[0], "forward")
        name, checkpoint = sam2_tiny
        request = client.propagate(plan, name, checkpoint, "cpu")
        qtbot.waitUntil(lambda: bool(frames), timeout=WAIT_MS)  # frame 1 is back
        with qtbot.waitSignal(client.propagation_done, timeout=WAIT_MS) as ended:
            assert client.cancel(request)  # while frame 3 cannot be decoded yet
            gate.open()
        done: PropagationDone = ended.args[0]
        assert done.cancelled and "cancelled after" in done.message
        got = [f.frame.image_id for f in frames]
        assert got[:2] == ids[1:3]  # every frame made before the cancel came back
        assert ids[4] not in got and ids[5] not in got
        assert f"the {len(got)} mask" in done.message
    finally:
        gate.open()
        client.stop()


def test_a_grabcut_or_sam_model_cannot_propagate(qtbot: QtBot, tmp_path: Path) -> None:
    assert "GrabCut" in (propagation_refusal("grabcut") or "")
    assert "SAM 2" in (propagation_refusal("sam_vit_b") or "")
    assert "server" in (propagation_refusal("server:http://gpu:9001#sam2.1_hiera_tiny") or "")
    assert propagation_refusal("sam2.1_hiera_tiny") is None
    folder = write_frames(tmp_path / "frames")
    track_id, ids = sequence_project(folder)
    client = start_client(Gate())
    failures: list[Any] = []
    client.failed.connect(failures.append)
    try:
        with qtbot.waitSignal(client.model_loaded, timeout=WAIT_MS):
            client.set_model("grabcut")
        with Project.open(folder) as project:
            plan = build_plan(project, [track_id], ids[0], "forward")
        request = client.propagate(plan)  # the loaded model: GrabCut
        qtbot.waitUntil(lambda: bool(failures), timeout=WAIT_MS)
        assert failures[0].request_id == request
        assert "propagation needs a SAM 2 or SAM 2.1 model" in failures[0].message
        assert not client.propagating(request)
    finally:
        client.stop()


def test_queue_cancels_a_waiting_run_and_stops_a_running_one(tmp_path: Path) -> None:
    queue = RequestQueue()
    plan: Any = object()
    first, second = Propagate(1, plan), Propagate(2, plan)
    queue.put(first)
    queue.put(second)
    assert queue.pending_ids() == [1, 2]
    assert queue.take(lambda key: False) is first
    assert not queue.stopping(1)
    assert queue.cancel(2) and queue.pending_ids() == []  # never started
    assert queue.cancel(1) and queue.stopping(1)  # running: asked to stop
    queue.propagation_ended(1)
    assert not queue.stopping(1) and not queue.cancel(1)


class Gates:
    """An image loader that holds the decode of each of some files until it is opened."""

    def __init__(self, *held: Path) -> None:
        self.opened = {Path(p): threading.Event() for p in held}
        self.reached = {Path(p): threading.Event() for p in held}

    def open(self, path: Path | None = None) -> None:
        for p in ([Path(path)] if path is not None else list(self.opened)):
            self.opened[p].set()

    def __call__(self, path: Path) -> np.ndarray:
        if Path(path) in self.opened:
            self.reached[Path(path)].set()
            self.opened[Path(path)].wait(WAIT_MS / 1000)
        return load_rgb(path)


def test_a_click_is_answered_between_frames_of_a_run(qtbot: QtBot, tmp_path: Path,
                                                    sam2_tiny: tuple[str, Path]) -> None:
    from samdesk.inference.engines.base import Point, Prompts
    from samdesk.inference.worker.requests import ImageRef

    folder = write_frames(tmp_path / "frames")
    track_id, ids = sequence_project(folder)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), cv2.imread(str(folder / "frame_000.png")))
    frame2, frame3 = folder / "frame_002.png", folder / "frame_003.png"
    gates = Gates(frame2, frame3)
    client = start_client(gates)
    answered: list[Any] = []
    client.predicted.connect(answered.append)
    try:
        with qtbot.waitSignal(client.model_loaded, timeout=WAIT_MS):
            client.set_model("grabcut")  # the click's model; the run names its own
        with Project.open(folder) as project:
            plan = build_plan(project, [track_id], ids[0], "forward")
        name, checkpoint = sam2_tiny
        request = client.propagate(plan, name, checkpoint, "cpu")
        qtbot.waitUntil(gates.reached[frame2].is_set, timeout=WAIT_MS)  # the run is going
        ref = ImageRef.from_path(photo)
        client.focus(ref)
        click = client.predict(ref, Prompts(points=(Point(40, 48),)))
        gates.open(frame2)  # after frame 2 the worker answers the click; frame 3 waits
        qtbot.waitUntil(lambda: bool(answered), timeout=WAIT_MS)
        assert answered[0].request_id == click
        assert client.propagating(request)  # still running: frame 3 is not decoded yet
        with qtbot.waitSignal(client.propagation_done, timeout=WAIT_MS) as ended:
            gates.open()
        assert not ended.args[0].cancelled
    finally:
        gates.open()
        client.stop()


def test_the_video_engine_is_kept_for_the_next_run_of_its_model_only(tmp_path: Path) -> None:
    from samdesk.inference.worker.propagate import VideoEngines

    built: list[tuple[str, Path, str]] = []
    engines = VideoEngines(lambda spec, checkpoint, device: built.append(
        (spec.name, checkpoint, device)) or object())
    checkpoint = tmp_path / "sam2.1_hiera_tiny.pt"
    first = engines.get("sam2.1_hiera_tiny", checkpoint, "cpu")
    assert engines.get("sam2.1_hiera_tiny", checkpoint, "cpu") is first and len(built) == 1
    engines.keep_only("sam2.1_hiera_tiny")
    assert engines.loaded == "sam2.1_hiera_tiny"
    engines.keep_only("grabcut")  # the person chose another segmenter: memory given back
    assert engines.loaded is None
    with pytest.raises(Exception, match="propagation needs a SAM 2 or SAM 2.1 model"):
        engines.get("grabcut", None, "cpu")
