"""``samdesk track``: a prompt on one frame carried through the sequence, corrections, hand
edits kept, several objects in one run, and one line with exit 2 for bad input.

The model is a seeded random SAM 2.1 tiny run at a small input side
(:mod:`tests.commands.track_fixtures`); the assertions are on the masks the
store holds afterwards."""

from __future__ import annotations

import numpy as np
import pytest

from samdesk import masks
from samdesk.cli import main
from samdesk.project import Project
from samdesk.tracking import RUN_KEY, load_run
from tests.commands.track_fixtures import H, N, W, checkpoint, folder, model, stored

__all__ = ["checkpoint", "folder", "model"]  # fixtures

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


def track(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["track", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


def test_points_on_one_frame_carry_the_object_to_the_end(folder, model, capsys):
    code, out, err = track(capsys, folder, "--frame", 0, "--points", "16,24", "--label", "disc",
                           "--model", model)
    assert code == 0, err
    assert out.splitlines()[-1] == (f"{folder}: track 1: 7 frames written, 1 skipped "
                                    "(person-made), 0 without the object")
    assert "frame: 8/8" in err  # progress, frame by frame (the last line always)
    layers = stored(folder, 1)
    assert sorted(layers) == list(range(N))
    assert layers[0][1] is True and all(not layers[i][1] for i in range(1, N))
    with Project.open(folder, read_only=True) as project:
        first = project.track_layers(1)[project.frame_ids()[0]]
        assert first.prompts["points"] == [[16.0, 24.0, 1]] and first.prompts["video"]
        assert project.label(project.track(1).label_id).name == "disc"
        later = project.track_layers(1)[project.frame_ids()[5]]
        assert later.object_score is not None and later.label_id == project.track(1).label_id
        assert load_run(project) is None  # the run ended: nothing to resume


def test_a_correction_on_frame_4_changes_only_the_frames_after_it(folder, model, capsys):
    assert track(capsys, folder, "--frame", 0, "--points", "16,24", "--model", model)[0] == 0
    before = stored(folder, 1)
    brushed = np.zeros((H, W), bool)
    brushed[30:46, 2:20] = True  # a person's brush stroke replaces the mask on frame 4
    with Project.open(folder) as project:
        layer = project.track_layers(1)[project.frame_ids()[4]]
        project.update_annotation(layer.id, rle=masks.encode(brushed))
    code, out, err = track(capsys, folder, "--frame", 4, "--track", 1, "--model", model)
    assert code == 0, err
    assert out.endswith("track 1: 3 frames written, 1 skipped (person-made), "
                        "0 without the object")
    after = stored(folder, 1)
    assert all(after[i] == before[i] for i in range(4))  # frames 0-3 untouched
    assert after[4] == (masks.encode(brushed)["counts"], True)  # the person's, kept
    assert all(after[i][0] != before[i][0] and not after[i][1] for i in (5, 6, 7))


def test_a_hand_edited_mask_survives_propagating_again(folder, model, capsys):
    assert track(capsys, folder, "--frame", 0, "--points", "16,24", "--model", model)[0] == 0
    mine = np.zeros((H, W), bool)
    mine[5:15, 40:60] = True
    with Project.open(folder) as project:
        ids = project.frame_ids()
        project.update_annotation(project.track_layers(1)[ids[6]].id, rle=masks.encode(mine))
        project.delete_annotations([project.track_layers(1)[ids[2]].id])  # "not here"
    code, out, err = track(capsys, folder, "--frame", 0, "--track", 1, "--model", model)
    assert code == 0, err
    assert out.endswith("track 1: 5 frames written, 3 skipped (person-made), "
                        "0 without the object")
    after = stored(folder, 1)
    assert after[6] == (masks.encode(mine)["counts"], True)
    assert 2 not in after  # the absent mark holds: nothing written there
    assert sorted(after) == [0, 1, 3, 4, 5, 6, 7]


def test_a_second_object_on_a_later_frame_runs_with_the_first_both_ways(folder, model,
                                                                        capsys):
    assert track(capsys, folder, "--frame", 0, "--box", "4,12,30,36", "--frames", 2,
                 "--model", model)[0] == 0
    assert sorted(stored(folder, 1)) == [0, 1, 2]  # --frames 2: two frames past frame 0
    code, out, err = track(capsys, folder, "--frame", 3, "--points", "40,10", "--negative",
                           "28,24", "--all", "--direction", "both", "--model", model)
    assert code == 0, err
    assert "tracks 1, 2:" in out
    first, second = stored(folder, 1), stored(folder, 2)
    assert sorted(first) == sorted(second) == list(range(N))  # none lost, both ways
    assert first[0][1] and second[3][1]  # each one's prompt frame is person-made
    with Project.open(folder, read_only=True) as project:
        made = project.track_layers(2)[project.frame_ids()[3]].prompts
        assert made["points"] == [[40.0, 10.0, 1], [28.0, 24.0, 0]]


@pytest.mark.parametrize("args, line", [
    (["--frame", "8", "--points", "1,1"], "--frame 8: out of range; the sequence has frames "
                                          "0 to 7"),
    (["--frame", "0", "--points", "99,1"], "--points 99,1: outside the 64x48 frame"),
    (["--frame", "0", "--box", "9,9,1,1"], "--box 9,9,1,1: needs X1 > X0 and Y1 > Y0"),
    (["--frame", "0"], "give --points, --box or --layer for the object on frame 0"),
    (["--points", "1,1"], "--frame K: say which frame to start from"),
    (["--frame", "0", "--track", "7"], "no track with id 7"),
    (["--frame", "0", "--layer", "1", "--points", "1,1"], "--layer starts from a mask"),
    (["--frame", "2", "--layer", "1"], "--layer 1: mask 1 is on frame 0, not on frame 2"),
    (["--frame", "0", "--layer", "5"], "--layer 5: no mask with that id in"),
    (["--frame", "0", "--points", "1,1", "--model", "sam_vit_b"],
     "--model sam_vit_b: propagation needs a SAM 2 or 2.1 model"),
    (["--resume", "--frame", "1"], "--resume finishes the interrupted run as it was; leave "
                                   "out --frame"),
])
def test_bad_input_is_one_line_and_exit_2_and_changes_nothing(folder, capsys, args, line):
    with Project.open(folder) as project:
        project.add_annotation(project.frame_ids()[0], masks.encode(np.ones((H, W), bool)))
    code, out, err = track(capsys, folder, *args)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert line in err
    with Project.open(folder, read_only=True) as project:
        assert project.tracks() == [] and len(project.annotations()) == 1
        assert project._conn.execute("SELECT 1 FROM meta WHERE key=?", (RUN_KEY,)
                                     ).fetchone() is None


def test_a_folder_not_marked_a_sequence_is_refused_unless_asked_to_mark_it(tmp_path, model,
                                                                           capsys):
    from tests.model_factories import make_frame_folder

    root = tmp_path / "plain"
    make_frame_folder(root, 3, H, W)
    code, _, err = track(capsys, root, "--frame", 0, "--points", "16,24", "--model", model)
    assert code == 2 and "is not marked a frame sequence: make one with samdesk import-video" \
        in err and "--mark-sequence" in err
    code, out, err = track(capsys, root, "--frame", 0, "--points", "16,24", "--model", model,
                           "--mark-sequence")
    assert code == 0, err
    assert "marked a frame sequence (3 frames in name order)" in err
    with Project.open(root, read_only=True) as project:
        assert project.is_sequence and len(project.track_layers(1)) == 3


def test_resume_with_nothing_interrupted_says_so(folder, capsys):
    code, out, _ = track(capsys, folder, "--resume")
    assert code == 0 and out == f"{folder}: no interrupted track run to resume"
