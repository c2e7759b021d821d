"""The propagation plan (samdesk/tracking.py): what conditions a run, the frames it visits,
and what a resume does. No model here: the plan is read from the project alone."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from samdesk import masks
from samdesk.errors import ImageReadError, ProjectError
from samdesk.project import Project
from samdesk.tracking import (
    Conditioning,
    PathFrames,
    RunState,
    build_plan,
    clear_run,
    frames_of,
    load_run,
    prompt_record,
    resume_plans,
    save_run,
    visit_order,
)

H, W, N = 24, 32, 8


def square(x0: int, y0: int, side: int = 6) -> dict:
    mask = np.zeros((H, W), bool)
    mask[y0:y0 + side, x0:x0 + side] = True
    return masks.encode(mask)


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "frames"
    root.mkdir()
    for i in range(N):
        Image.fromarray(np.full((H, W, 3), 20 * i, np.uint8)).save(root / f"frame_{i:06d}.png")
    with Project.open(root) as project:
        project.set_sequence(True)
        yield project


def test_visit_order_matches_sam2s_propagation():
    assert visit_order(2, "forward", None, 5) == [2, 3, 4]
    assert visit_order(2, "forward", 1, 5) == [2, 3]
    assert visit_order(3, "backward", None, 5) == [3, 2, 1, 0]
    assert visit_order(3, "backward", 2, 5) == [3, 2, 1]
    assert visit_order(0, "backward", None, 5) == []  # nothing before the first frame
    assert visit_order(2, "both", 1, 5) == [2, 3, 2, 1]
    with pytest.raises(ProjectError, match="sideways"):
        visit_order(0, "sideways", None, 5)


def test_plan_conditions_on_person_made_layers_absent_marks_and_the_new_prompt(project):
    ids = project.frame_ids()
    car = project.add_track(project.add_label("car").id)
    brushed = project.add_annotation(ids[0], square(2, 2), track_id=car.id)
    project.write_propagated(ids[1], car.id, square(3, 2), 1.5)  # the model's: not a condition
    on_five = project.add_annotation(ids[5], square(9, 9), track_id=car.id)
    project.delete_annotations([on_five.id])  # "not here": an absent mark on frame 5
    boat = project.add_track()
    made = square(20, 10)
    prompted = project.add_annotation(ids[3], made, track_id=boat.id, prompts=prompt_record(
        [(22.0, 12.0)], [1], None, "sam2.1_hiera_tiny", made))
    plan = build_plan(project, [car.id, boat.id], ids[2], "both", 3)
    by_key = {(c.frame, c.track_id): c for c in plan.conditioning}
    assert set(by_key) == {(0, car.id), (5, car.id), (3, boat.id)}
    assert by_key[0, car.id].mask == brushed.rle and by_key[0, car.id].layer_id == brushed.id
    assert masks.is_empty(by_key[5, car.id].mask)
    assert by_key[3, boat.id].points == ((22.0, 12.0),) and by_key[3, boat.id].mask is None
    assert by_key[3, boat.id].layer_id == prompted.id
    assert (plan.start, plan.direction, plan.max_frames) == (2, "both", 3)
    assert plan.frame_ids == tuple(ids) and plan.frame_size == (H, W)
    assert [p.name for p in plan.frame_paths] == [f"frame_{i:06d}.png" for i in range(N)]
    assert plan.track_ids == (car.id, boat.id)

    # a new prompt on a frame replaces what is stored there for that track
    extra = Conditioning(3, boat.id, ((25.0, 15.0),), (1,))
    again = build_plan(project, [car.id], ids[3], extra=[extra])
    assert [c for c in again.conditioning if c.track_id == boat.id] == [extra]


def test_a_prompted_layer_that_a_person_then_changed_conditions_with_its_mask(project):
    ids = project.frame_ids()
    track = project.add_track()
    made = square(4, 4)
    layer = project.add_annotation(ids[0], made, track_id=track.id, prompts=prompt_record(
        [(6.0, 6.0)], [1], None, "m", made))
    brushed = project.update_annotation(layer.id, rle=square(4, 4, side=9))  # a brush stroke
    (item,) = build_plan(project, [track.id], ids[0]).conditioning
    assert item.mask == brushed.rle and item.points == ()


def test_bad_plans_are_refused_with_one_line_naming_what(project, tmp_path):
    ids = project.frame_ids()
    empty = project.add_track()
    with pytest.raises(ProjectError, match=f"track {empty.id} has no mask a person made"):
        build_plan(project, [empty.id], ids[0])
    with pytest.raises(ProjectError, match="no track with id 99"):
        build_plan(project, [99], ids[0])
    with pytest.raises(ProjectError, match="direction 'up'"):
        build_plan(project, [empty.id], ids[0], "up")
    with pytest.raises(ProjectError, match="frame 12: the sequence has frames 0 to 7"):
        build_plan(project, [], ids[0], extra=[Conditioning(12, empty.id, ((1.0, 1.0),), (1,))])
    # a frame of another size cannot be in one video
    Image.fromarray(np.zeros((H + 2, W, 3), np.uint8)).save(project.folder / "frame_000008.png")
    project.rescan()
    project.add_annotation(ids[0], square(1, 1), track_id=empty.id)
    with pytest.raises(ProjectError, match="frame_000008.png: 32x26, but the frames are 32x24"):
        build_plan(project, [empty.id], ids[0])


def test_frames_are_read_lazily_upright_and_of_one_size(project):
    track = project.add_track()
    ids = project.frame_ids()
    project.add_annotation(ids[0], square(1, 1), track_id=track.id)
    frames = frames_of(build_plan(project, [track.id], ids[0]))
    assert len(frames) == N and frames._recent == {}  # nothing decoded up front
    rgb = frames.rgb(3)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8 and int(rgb[0, 0, 0]) == 60
    for i in range(N):
        frames.rgb(i)
    assert len(frames._recent) <= 2  # bounded
    odd = project.folder / "odd.png"
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(odd)
    mixed = PathFrames([frames.paths[0], odd])
    mixed.rgb(0)
    with pytest.raises(ImageReadError, match="5x5, but the frames are 32x24"):
        mixed.rgb(1)


def test_the_run_state_survives_a_reopen_and_resumes_from_the_last_frame(project):
    ids = project.frame_ids()
    track = project.add_track()
    project.add_annotation(ids[1], square(2, 2), track_id=track.id)
    for i in (2, 3, 4):
        project.write_propagated(ids[i], track.id, square(2 + i, 2), 0.5)
    state = RunState([track.id], [{"start": ids[1], "direction": "both", "frames": None}],
                     "sam2.1_hiera_tiny", None, "cpu", visited=4)
    save_run(project, state)
    folder = project.folder
    project.close()
    with Project.open(folder) as again:
        kept = load_run(again)
        assert kept == state
        forward, backward = resume_plans(again, kept)
        # forward goes on from frame 4 (the last visited), conditioned on its mask too
        assert (forward.start, forward.direction, forward.max_frames) == (4, "forward", 3)
        resumed = {(c.frame, c.track_id): c for c in forward.conditioning}
        assert resumed[4, track.id].mask == again.track_layers(track.id)[ids[4]].rle
        assert (backward.start, backward.direction, backward.max_frames) == (1, "backward", None)
        assert (4, track.id) not in backward.conditioned()
        # in the backward half: it goes on backward from the frame it reached
        state.visited = len(visit_order(1, "forward", None, N)) + 1
        (only,) = resume_plans(again, state)
        assert (only.start, only.direction, only.max_frames) == (1, "backward", 1)
        assert only.order() == [1, 0]
        clear_run(again)
        assert load_run(again) is None
