"""The SAM 2 video engine against the stock ``SAM2VideoPredictor`` (seeded random SAM 2.1 tiny).

The stock side is ``init_state(JPEG folder)`` with the same prompts and the
same propagation order; samdesk's side is a :class:`VideoSession` over an
:class:`ImageFileFrames` reading the same files. Both run the library's own
operations on the same preprocessed frames, so every mask is pixel-equal.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from samdesk.inference.engines.base import EngineError
from samdesk.inference.engines.sam2 import sam2_hydra
from samdesk.inference.engines.sam2_video import (
    FrameMasks,
    ImageFileFrames,
    SAM2VideoEngine,
    load_video_engine,
    widen_cond_memories,
)
from samdesk.inference.models.registry import ModelSpec
from tests.model_factories import (
    SAM21_TINY_CONFIG,
    VIDEO_TEST_SIDE,
    make_frame_folder,
    make_sam2_checkpoint,
    registered_test_model,
)

H, W, N = 120, 160, 8
POINTS = np.array([[44.0, 60.0], [120.0, 20.0]], np.float32)
LABELS = np.array([1, 0], np.int32)
BOX = np.array([50.0, 30.0, 110.0, 95.0], np.float32)


@pytest.fixture(scope="module")
def spec() -> Iterator[ModelSpec]:
    with registered_test_model("sam2", SAM21_TINY_CONFIG) as spec:
        yield spec


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sam2_checkpoint(tmp_path_factory.mktemp("ckpt") / "sam2.1_hiera_tiny.pt")


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_frame_folder(tmp_path_factory.mktemp("frames") / "video", N, H, W)


@pytest.fixture(scope="module")
def engine(spec: ModelSpec, checkpoint: Path) -> SAM2VideoEngine:
    return SAM2VideoEngine(spec, checkpoint, "cpu", image_size=VIDEO_TEST_SIDE)


@pytest.fixture(scope="module")
def stock(spec: ModelSpec, checkpoint: Path) -> torch.nn.Module:
    from sam2.build_sam import build_sam2_video_predictor

    with sam2_hydra(spec.config):
        return build_sam2_video_predictor(
            spec.config, ckpt_path=str(checkpoint), device="cpu",
            hydra_overrides_extra=[f"++model.image_size={VIDEO_TEST_SIDE}"])


FORWARD = [("points", 0, 1, POINTS, LABELS)]


@pytest.fixture(scope="module")
def forward_ref(stock: torch.nn.Module, frames: list[Path]) -> tuple:
    """The stock run of points on frame 0, forward over every frame (used thrice)."""
    return run_stock(stock, frames[0].parent, FORWARD, [(None, False, None)])


class Recorded(ImageFileFrames):
    """Image files that note which frames were read."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(paths)
        self.read: list[int] = []

    def rgb(self, index: int) -> np.ndarray:
        self.read.append(index)
        return super().rgb(index)


def disc(cx: int, cy: int, r: int) -> np.ndarray:
    """A brushed disc: ``(H, W)`` bool."""
    mask = np.zeros((H, W), np.uint8)
    cv2.circle(mask, (cx, cy), r, 1, -1)
    return mask.astype(bool)


Results = dict[int, dict[int, np.ndarray]]


def run_stock(stock: torch.nn.Module, folder: Path, prompts: list[tuple],
              runs: list[tuple[int | None, bool, int | None]], widen: bool = False
              ) -> tuple[list[np.ndarray], list[tuple[int, Results]], list[dict]]:
    """Stock predictor: the prompt masks, then (frame, {obj: mask}) per propagated frame,
    with the object score logits it stored for each. ``widen``: hold the prompted
    frames' memories in float32 first, as the engine does (see the second-object test)."""
    state = stock.init_state(str(folder))
    shown = []
    for kind, frame, obj, *args in prompts:
        if kind == "points":
            _, ids, masks = stock.add_new_points_or_box(state, frame, obj, points=args[0],
                                                        labels=args[1])
        elif kind == "box":
            _, ids, masks = stock.add_new_points_or_box(state, frame, obj, box=args[0])
        else:
            _, ids, masks = stock.add_new_mask(state, frame, obj, args[0])
        shown.append((masks[ids.index(obj), 0] > 0).numpy())
    got, scores = [], []
    if widen:
        stock.propagate_in_video_preflight(state)
        widen_cond_memories(state)
    for start, reverse, count in runs:
        track = None if count is None else count - 1
        for frame, ids, masks in stock.propagate_in_video(
                state, start_frame_idx=start, max_frame_num_to_track=track, reverse=reverse):
            got.append((frame, {i: (masks[k, 0] > 0).numpy() for k, i in enumerate(ids)}))
            per = {}
            for idx, obj in state["obj_idx_to_id"].items():
                outs = state["output_dict_per_obj"][idx]
                out = outs["cond_frame_outputs"].get(frame) or outs["non_cond_frame_outputs"][frame]
                per[obj] = float(out["object_score_logits"].reshape(-1)[0])
            scores.append(per)
    return shown, got, scores


def run_ours(engine: SAM2VideoEngine, source: ImageFileFrames, prompts: list[tuple],
             runs: list[tuple[int | None, bool, int | None]]
             ) -> tuple[list[np.ndarray], list[FrameMasks]]:
    with engine.start(source) as session:
        shown = []
        for kind, frame, obj, *args in prompts:
            if kind == "points":
                shown.append(session.add_prompt(frame, obj, points=args[0], labels=args[1]))
            elif kind == "box":
                shown.append(session.add_prompt(frame, obj, box=args[0]))
            else:
                shown.append(session.add_mask(frame, obj, args[0]))
        got = []
        for start, reverse, count in runs:
            got.extend(session.propagate(start, reverse=reverse, max_frames=count))
    return shown, got


def assert_same(ours: tuple, ref: tuple) -> None:
    shown, got = ours
    ref_shown, ref_got, ref_scores = ref
    for mine, theirs in zip(shown, ref_shown, strict=True):
        assert mine.dtype == np.bool_ and mine.shape == (H, W)
        assert np.array_equal(mine, theirs), "the prompted frame's mask differs"
    assert [fm.frame for fm in got] == [frame for frame, _ in ref_got]
    for fm, (frame, masks), scores in zip(got, ref_got, ref_scores, strict=True):
        assert sorted(fm.masks) == sorted(masks), f"frame {frame}: objects differ"
        for obj, mask in masks.items():
            differing = int(np.count_nonzero(fm.masks[obj] != mask))
            assert differing == 0, f"frame {frame} object {obj}: {differing} pixels differ"
        assert sorted(fm.object_scores) == sorted(scores)
        for obj, score in scores.items():
            assert fm.object_scores[obj] == pytest.approx(score, abs=1e-5)


def test_points_on_frame_0_propagate_forward_pixel_equal(engine, forward_ref, frames):
    ours = run_ours(engine, ImageFileFrames(frames), FORWARD, [(None, False, None)])
    assert [fm.frame for fm in ours[1]] == list(range(N))
    assert_same(ours, forward_ref)
    assert any(fm.masks[1].any() for fm in ours[1])  # a mask a person would see


def test_box_on_last_frame_propagates_backward(engine, stock, frames):
    prompts = [("box", N - 1, 5, BOX)]
    runs = [(None, True, None)]
    ref = run_stock(stock, frames[0].parent, prompts, runs)
    ours = run_ours(engine, ImageFileFrames(frames), prompts, runs)
    assert [fm.frame for fm in ours[1]] == list(range(N - 1, -1, -1))
    assert_same(ours, ref)


def test_second_object_added_on_frame_3_both_tracked(engine, stock, frames):
    prompts = [("points", 0, 1, POINTS, LABELS), ("box", 3, 2, BOX)]
    runs = [(None, False, None)]
    # the stock predictor, in float32, cannot track object 2 on frames 0-2: its
    # bf16 memory meets float32 weights (it works only under bf16 autocast)
    with pytest.raises(RuntimeError, match="same dtype"):
        run_stock(stock, frames[0].parent, prompts, runs)
    ref = run_stock(stock, frames[0].parent, prompts, runs, widen=True)
    ours = run_ours(engine, ImageFileFrames(frames), prompts, runs)
    assert_same(ours, ref)
    for fm in ours[1]:  # none lost: both objects on every frame, with a score
        assert set(fm.masks) == {1, 2} and set(fm.object_scores) == {1, 2}
    assert np.array_equal(ours[1][3].masks[2], ours[0][1])  # the prompted frame as shown


def test_brushed_mask_start_propagates_both_ways(engine, stock, frames):
    prompts = [("mask", 2, 7, disc(60, 60, 22))]
    runs = [(2, False, None), (2, True, None)]
    ref = run_stock(stock, frames[0].parent, prompts, runs)
    ours = run_ours(engine, ImageFileFrames(frames), prompts, runs)
    assert [fm.frame for fm in ours[1]] == [2, 3, 4, 5, 6, 7, 2, 1, 0]
    assert_same(ours, ref)


def test_middle_start_touches_only_later_frames(engine, stock, frames):
    prompts = [("points", 0, 1, POINTS, LABELS)]
    runs = [(4, False, None)]
    ref = run_stock(stock, frames[0].parent, prompts, runs)
    source = Recorded(frames)
    ours = run_ours(engine, source, prompts, runs)
    assert [fm.frame for fm in ours[1]] == [4, 5, 6, 7]
    assert_same(ours, ref)
    assert set(source.read) == {0, 4, 5, 6, 7}  # frames 1-3 never decoded


def test_max_frames_counts_the_start_frame(engine, stock, frames):
    prompts = [("points", 0, 1, POINTS, LABELS)]
    runs = [(1, False, 3)]
    ref = run_stock(stock, frames[0].parent, prompts, runs)
    ours = run_ours(engine, ImageFileFrames(frames), prompts, runs)
    assert [fm.frame for fm in ours[1]] == [1, 2, 3]
    assert_same(ours, ref)


def test_cancelled_stops_after_k_frames(engine, forward_ref, frames):
    _, ref_got, _ = forward_ref
    source = Recorded(frames)
    got: list[FrameMasks] = []
    with engine.start(source) as session:
        session.add_prompt(0, 1, points=POINTS, labels=LABELS)
        for fm in session.propagate(cancelled=lambda: len(got) >= 3):
            got.append(fm)
    assert [fm.frame for fm in got] == [0, 1, 2]
    for fm, (_, masks) in zip(got, ref_got[:3], strict=False):
        assert np.array_equal(fm.masks[1], masks[1])
    assert max(source.read) <= 3  # nothing past the next frame was decoded


def test_frame_cache_never_holds_more_than_its_bound(spec, checkpoint, forward_ref, frames):
    _, ref_got, _ = forward_ref
    small = SAM2VideoEngine(spec, checkpoint, "cpu", frame_cache=2,
                            image_size=VIDEO_TEST_SIDE)
    with small.start(ImageFileFrames(frames)) as session:
        held = [session.frames.held]
        session.add_prompt(0, 1, points=POINTS, labels=LABELS)
        got = []
        for fm in session.propagate():
            held.append(session.frames.held)
            assert len(session.frames.cached) <= 2
            got.append(fm)
        session.add_prompt(7, 1, points=POINTS, labels=LABELS)  # a correction far back
        held.append(session.frames.held)
    assert max(held) <= 2
    for fm, (_, masks) in zip(got, ref_got, strict=True):  # the bound changes no pixel
        assert np.array_equal(fm.masks[1], masks[1])


def test_frames_of_another_size_give_one_error_line(engine, frames, tmp_path):
    odd = tmp_path / "odd.jpg"
    cv2.imwrite(str(odd), np.zeros((100, 200, 3), np.uint8))
    source = ImageFileFrames([*frames[:5], odd, *frames[6:]])
    got: list[int] = []
    with engine.start(source) as session:
        session.add_prompt(0, 1, points=POINTS, labels=LABELS)
        with pytest.raises(EngineError) as caught:
            for fm in session.propagate():
                got.append(fm.frame)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("frame 5 is 200x100 pixels but frame 0 is 160x120")
    assert got == [0, 1, 2, 3, 4]  # the frames before it came through


def test_bad_prompts_and_a_closed_session_are_one_line_errors(engine, frames):
    session = engine.start(ImageFileFrames(frames))
    with pytest.raises(EngineError, match="no object has a prompt yet"):
        session.propagate()
    with pytest.raises(EngineError, match=r"points must be \(N, 2\)"):
        session.add_prompt(0, 1, points=np.array([1.0, 2.0, 3.0]), labels=np.array([1]))
    with pytest.raises(EngineError, match="points and labels go together"):
        session.add_prompt(0, 1, points=POINTS)
    with pytest.raises(EngineError, match="outside the sequence"):
        session.add_prompt(N, 1, box=BOX)
    with pytest.raises(EngineError, match="mask for object 1 on frame 0 is 10x10"):
        session.add_mask(0, 1, np.ones((10, 10), bool))
    assert session._state["storage_device"].type == "cpu"  # state kept on the CPU
    session.close()
    assert session.frames.held == 0
    with pytest.raises(EngineError, match="closed"):
        session.add_prompt(0, 1, box=BOX)


def test_user_checkpoint_path_loads_and_a_wrong_file_is_named(spec, checkpoint, tmp_path):
    video = load_video_engine(spec, checkpoint, "cpu")
    assert video.model_id == spec.name and video.predictor.image_size == 1024
    wrong = tmp_path / "sam_vit_b.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(1)}, wrong)
    with pytest.raises(EngineError) as caught:
        load_video_engine(spec, wrong, "cpu")
    assert str(caught.value) == (f"{spec.name}: {wrong} is not a SAM 2 checkpoint "
                                 "(no 'model' state dict; it looks like a SAM (v1) file)")


def test_far_frames_forgotten_without_changing_a_mask(spec, checkpoint, stock, tmp_path):
    paths = make_frame_folder(tmp_path / "long", 24, H, W, seed=2)
    prompts = [("points", 1, 1, POINTS, LABELS)]
    # forward from an unprompted frame, then backward from it: the backward run
    # reads the forward run's memories of frames 6-12
    runs = [(5, False, None), (5, True, None)]
    trimmed = SAM2VideoEngine(spec, checkpoint, "cpu", image_size=VIDEO_TEST_SIDE)
    saved = stock.max_obj_ptrs_in_encoder
    # 3 object pointers: the memory reach is 7 frames (num_maskmem), so 24 frames trim
    stock.max_obj_ptrs_in_encoder = trimmed.predictor.max_obj_ptrs_in_encoder = 3
    try:
        ref = run_stock(stock, paths[0].parent, prompts, runs)
    finally:
        stock.max_obj_ptrs_in_encoder = saved
    held = []
    with trimmed.start(ImageFileFrames(paths)) as session:
        shown = [session.add_prompt(1, 1, points=POINTS, labels=LABELS)]
        got = []
        for start, reverse, _ in runs:
            for fm in session.propagate(start, reverse=reverse):
                got.append(fm)
                held.append(len(session._state["output_dict_per_obj"][0]
                                ["non_cond_frame_outputs"]))
    assert [fm.frame for fm in got] == [*range(5, 24), 5, 4, 3, 2, 1, 0]
    assert_same((shown, got), ref)
    assert max(held) < 19  # frames 13-15 were forgotten by frame 23 (19 were tracked)
