"""``samdesk track`` gives the masks the stock ``SAM2VideoPredictor`` gives.

The stock side is ``init_state`` on the same JPEG frames with the same prompts
and the same propagation order; samdesk's side is the whole command: the plan
read from the project (a stored prompt given again as points, a brushed mask as
a mask), the runner, and the masks the store holds afterwards. The same
library operations run on both sides, so every mask is pixel-equal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from samdesk import masks
from samdesk.cli import main
from samdesk.inference.engines.sam2_video import widen_cond_memories
from samdesk.project import Project
from tests.commands.track_fixtures import MODEL, N, checkpoint, folder, model
from tests.model_factories import SAM21_TINY_CONFIG, VIDEO_TEST_SIDE

__all__ = ["checkpoint", "folder", "model"]  # fixtures

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


@pytest.fixture(scope="module")
def stock(checkpoint: Path) -> torch.nn.Module:
    from sam2.build_sam import build_sam2_video_predictor

    from samdesk.inference.engines.sam2 import sam2_hydra

    with sam2_hydra(SAM21_TINY_CONFIG):  # hydra's global state, under samdesk's lock
        return build_sam2_video_predictor(
            SAM21_TINY_CONFIG, ckpt_path=str(checkpoint), device="cpu",
            hydra_overrides_extra=[f"++model.image_size={VIDEO_TEST_SIDE}"])


def stock_run(predictor, folder: Path, prompts, start: int, reverse: bool = False,
              frames: int | None = None) -> dict[tuple[int, int], np.ndarray]:
    """(frame, obj_id) -> mask from the stock predictor: ``prompts`` is a list of
    ``(frame, obj_id, kind, value)`` with kind ``points`` ((xy, labels)), ``box`` or
    ``mask``; the prompt frames' masks come from the add calls."""
    state = predictor.init_state(str(folder))
    found = {}
    with torch.inference_mode():
        for frame, obj_id, kind, value in prompts:
            if kind == "mask":
                _, ids, logits = predictor.add_new_mask(state, frame, obj_id, value)
            elif kind == "box":
                _, ids, logits = predictor.add_new_points_or_box(state, frame, obj_id,
                                                                 box=np.float32(value))
            else:
                _, ids, logits = predictor.add_new_points_or_box(
                    state, frame, obj_id, points=np.float32(value[0]),
                    labels=np.int32(value[1]))
            found[frame, obj_id] = (logits[list(ids).index(obj_id), 0] > 0).numpy()
        # float32 prompt-frame memories (exactly the same values), as the engine holds them:
        # the stock bf16 ones fail outside bf16 autocast when an object's prompt lies ahead
        predictor.propagate_in_video_preflight(state)
        widen_cond_memories(state)
        for frame, ids, logits in predictor.propagate_in_video(
                state, start_frame_idx=start, reverse=reverse, max_frame_num_to_track=frames):
            for k, obj_id in enumerate(ids):
                found.setdefault((frame, obj_id), (logits[k, 0] > 0).numpy())
    return found


def layers(folder: Path, track_id: int) -> dict[int, np.ndarray]:
    with Project.open(folder, read_only=True) as project:
        ids = project.frame_ids()
        return {ids.index(i): masks.decode(layer.rle)
                for i, layer in project.track_layers(track_id).items()}


def assert_same(ours: dict[int, np.ndarray], theirs: dict[tuple[int, int], np.ndarray],
                track_id: int, frames) -> None:
    for frame in frames:
        differing = int(np.count_nonzero(ours[frame] != theirs[frame, track_id]))
        assert differing == 0, f"track {track_id} frame {frame}: {differing} pixels differ"


def test_points_on_frame_0_forward_over_8_frames(folder, model, stock, capsys):
    points = ([[16.0, 24.0], [50.0, 8.0]], [1, 0])
    assert main(["track", str(folder), "--frame", "0", "--points", "16,24", "--negative",
                 "50,8", "--model", MODEL]) == 0, capsys.readouterr().err
    theirs = stock_run(stock, folder, [(0, 1, "points", points)], 0)
    assert_same(layers(folder, 1), theirs, 1, range(N))


def test_a_box_on_the_last_frame_backward_then_a_second_object_on_frame_3(folder, model,
                                                                          stock, capsys):
    box = [36.0, 10.0, 62.0, 40.0]
    assert main(["track", str(folder), "--frame", str(N - 1), "--box", "36,10,62,40",
                 "--direction", "backward", "--model", MODEL]) == 0, capsys.readouterr().err
    theirs = stock_run(stock, folder, [(N - 1, 1, "box", box)], N - 1, reverse=True)
    assert_same(layers(folder, 1), theirs, 1, range(N))

    # a second object on frame 3, run with the first (its box on frame 7 given again)
    assert main(["track", str(folder), "--frame", "3", "--points", "28,24", "--all",
                 "--model", MODEL]) == 0, capsys.readouterr().err
    both = stock_run(stock, folder, [(N - 1, 1, "box", box),
                                     (3, 2, "points", ([[28.0, 24.0]], [1]))], 3)
    assert_same(layers(folder, 1), both, 1, range(3, N))
    assert_same(layers(folder, 2), both, 2, range(3, N))


def test_a_brushed_mask_as_the_start(folder, model, stock, capsys):
    brushed = np.zeros((48, 64), bool)
    brushed[14:34, 8:26] = True
    with Project.open(folder) as project:
        layer = project.add_annotation(project.frame_ids()[0], masks.encode(brushed))
    assert main(["track", str(folder), "--frame", "0", "--layer", str(layer.id), "--frames",
                 "4", "--model", MODEL]) == 0, capsys.readouterr().err
    theirs = stock_run(stock, folder, [(0, 1, "mask", brushed)], 0, frames=4)
    ours = layers(folder, 1)
    assert sorted(ours) == [0, 1, 2, 3, 4]
    assert np.array_equal(ours[0], brushed)  # the person's mask, kept as drawn
    assert_same(ours, theirs, 1, range(1, 5))
