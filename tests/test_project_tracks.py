"""Tracks of a frame sequence: one object across frames, its layers, absent marks, propagation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from samdesk import masks
from samdesk.errors import ProjectError
from samdesk.project import Project

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def write_frames(folder, count=6, size=(24, 16)):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        Image.fromarray(np.full((size[1], size[0], 3), 7 * k % 256, np.uint8)).save(
            folder / f"frame_{k}.png")
    return folder


def square(x, y, side=5, size=(24, 16)):
    mask = np.zeros((size[1], size[0]), bool)
    mask[y:y + side, x:x + side] = True
    return mask


@pytest.fixture
def project(tmp_path):
    with Project.open(write_frames(tmp_path / "clip")) as opened:
        yield opened


def test_frames_are_the_images_in_natural_order_and_a_sequence_mark_is_kept(tmp_path):
    folder = write_frames(tmp_path / "clip", count=12)
    with Project.open(folder) as project:
        paths = [project.image(i).path for i in project.frame_ids()]
        assert paths == [f"frame_{k}.png" for k in range(12)]  # frame_10 after frame_9
        assert [project.frame_index(i) for i in project.frame_ids()] == list(range(12))
        assert not project.is_sequence
        project.set_sequence(True)
    with Project.open(folder) as project:
        assert project.is_sequence
        project.set_sequence(False)
        assert not project.is_sequence
        with pytest.raises(ProjectError, match="no image with id 99"):
            project.frame_index(99)


def test_a_track_holds_one_layer_per_frame_with_the_track_label(project):
    car = project.add_label("car")
    frames = project.frame_ids()
    track = project.add_track(car.id, "car 1")
    assert project.tracks() == [track] and project.track(track.id).name == "car 1"
    first = project.add_annotation(frames[0], masks.encode(square(2, 2)), track_id=track.id)
    assert (first.track_id, first.edited, first.label_id) == (track.id, True, car.id)
    loose = project.add_annotation(frames[0], masks.encode(square(10, 8)))
    with pytest.raises(ProjectError, match=f"already has mask {first.id} of track {track.id}"):
        project.set_layer_track(loose.id, track.id)
    elsewhere = project.add_annotation(frames[1], masks.encode(square(3, 2)))
    moved = project.set_layer_track(elsewhere.id, track.id)
    assert (moved.track_id, moved.label_id) == (track.id, car.id)
    assert set(project.track_layers(track.id)) == {frames[0], frames[1]}


def test_propagation_fills_frames_and_never_overwrites_a_person_or_an_absent_mark(project):
    frames = project.frame_ids()
    track = project.add_track(project.add_label("dog").id)
    drawn = masks.encode(square(2, 2))
    person = project.add_annotation(frames[0], drawn, track_id=track.id)
    written = [project.write_propagated(i, track.id, masks.encode(square(4, 3)), 3.5)
               for i in frames]
    assert written[0] is None  # the person's own layer
    assert project.track_layers(track.id)[frames[0]].rle == person.rle
    assert all(layer.edited is False and layer.object_score == 3.5 for layer in written[1:])
    assert all(layer.prompts == {"propagated": True} for layer in written[1:])
    project.delete_annotations([written[2].id])  # "the object is not here"
    assert project.absent_frames(track.id) == {frames[2]}
    again = project.write_propagated(frames[2], track.id, masks.encode(square(5, 5)), 1.0)
    assert again is None and frames[2] not in project.track_layers(track.id)
    replaced = project.write_propagated(frames[3], track.id, masks.encode(square(9, 9)), -1.0)
    assert replaced.id == written[3].id and masks.decode(replaced.rle)[9:14, 9:14].all()
    gone = project.write_propagated(frames[4], track.id, masks.empty(16, 24), -9.0)
    assert gone is None and frames[4] not in project.track_layers(track.id)


def layer_state(project, track_id):
    """What a person sees of a track: per frame, its label, pixels and whether propagated."""
    return {image_id: (layer.label_id, layer.rle["counts"], layer.edited)
            for image_id, layer in project.track_layers(track_id).items()}


def test_every_track_edit_undoes_and_redoes_exactly(project):
    frames = project.frame_ids()
    car, bus = project.add_label("car"), project.add_label("bus")
    seen = []  # (description, tracks, per-track layers, absent marks) after each edit

    def snapshot():
        return (project.tracks(), {t.id: layer_state(project, t.id) for t in project.tracks()},
                {t.id: project.absent_frames(t.id) for t in project.tracks()},
                [(a.id, a.track_id, a.label_id) for a in project.annotations()])

    seen.append(snapshot())
    track = project.add_track(car.id, "car 1")
    seen.append(snapshot())
    project.add_annotation(frames[0], masks.encode(square(2, 2)), track_id=track.id)
    seen.append(snapshot())
    for image_id in frames[1:4]:
        project.write_propagated(image_id, track.id, masks.encode(square(3, 3)), 0.5)
    seen.append(snapshot())
    loose = project.add_annotation(frames[5], masks.encode(square(8, 8)), bus.id)
    seen.append(snapshot())
    project.set_layer_track(loose.id, track.id)
    seen.append(snapshot())
    project.delete_annotations([project.track_layers(track.id)[frames[2]].id])
    seen.append(snapshot())
    project.relabel_track(track.id, bus.id)
    seen.append(snapshot())
    project.add_annotation(frames[2], masks.encode(square(4, 4)), track_id=track.id)
    seen.append(snapshot())
    project.delete_track(track.id, layers="keep")
    seen.append(snapshot())
    for expected in reversed(seen[:-1]):
        assert project.undo() is not None
        assert snapshot() == expected
    for expected in seen[1:]:
        assert project.redo() is not None
        assert snapshot() == expected
    assert project.tracks() == [] and all(a.track_id is None for a in project.annotations())


def test_deleting_a_track_with_its_layers_leaves_the_other_masks(project):
    frames = project.frame_ids()
    track = project.add_track()
    other = project.add_annotation(frames[0], masks.encode(square(12, 8)))
    project.add_annotation(frames[0], masks.encode(square(2, 2)), track_id=track.id)
    project.write_propagated(frames[1], track.id, masks.encode(square(2, 3)), 1.0)
    project.delete_track(track.id, layers="delete")
    assert project.tracks() == [] and [a.id for a in project.annotations()] == [other.id]
    project.undo()
    assert set(project.track_layers(track.id)) == {frames[0], frames[1]}
    with pytest.raises(ProjectError, match="'keep' or 'delete'"):
        project.delete_track(track.id, layers="drop")


def test_relabelling_a_track_relabels_every_frame(project):
    frames = project.frame_ids()
    car, bus = project.add_label("car"), project.add_label("bus")
    track = project.add_track(car.id)
    project.add_annotation(frames[0], masks.encode(square(2, 2)), track_id=track.id)
    for image_id in frames[1:]:
        project.write_propagated(image_id, track.id, masks.encode(square(2, 3)), 2.0)
    untracked = project.add_annotation(frames[3], masks.encode(square(15, 8)), car.id)
    project.relabel_track(track.id, bus.id)
    assert project.track(track.id).label_id == bus.id
    assert {layer.label_id for layer in project.track_layers(track.id).values()} == {bus.id}
    assert len(project.track_layers(track.id)) == len(frames)
    assert project.annotation(untracked.id).label_id == car.id
    # a new label on one frame's layer (the layers dock) is the track's new label too
    project.update_annotation(project.track_layers(track.id)[frames[4]].id, label_id=car.id)
    assert {layer.label_id for layer in project.track_layers(track.id).values()} == {car.id}
    assert project.track(track.id).label_id == car.id


def test_a_brush_edit_makes_a_propagated_layer_the_persons_and_propagation_keeps_it(project):
    frames = project.frame_ids()
    track = project.add_track()
    project.add_annotation(frames[0], masks.encode(square(2, 2)), track_id=track.id)
    propagated = project.write_propagated(frames[1], track.id, masks.encode(square(3, 3)), 1.5)
    brushed = masks.encode(square(6, 6))
    edited = project.update_annotation(propagated.id, rle=brushed)
    assert edited.edited is True and edited.object_score is None
    assert project.write_propagated(frames[1], track.id, masks.encode(square(9, 9)), 4.0) is None
    assert project.track_layers(track.id)[frames[1]].rle == brushed
    locked = project.write_propagated(frames[2], track.id, masks.encode(square(3, 3)), 1.0)
    project.update_annotation(locked.id, locked=True)
    assert project.write_propagated(frames[2], track.id, masks.encode(square(9, 9)), 1.0) is None


def test_a_persons_mask_replaces_the_propagated_one_and_clears_an_absent_mark(project):
    frames = project.frame_ids()
    track = project.add_track(project.add_label("cat").id)
    project.add_annotation(frames[0], masks.encode(square(2, 2)), track_id=track.id)
    propagated = project.write_propagated(frames[1], track.id, masks.encode(square(3, 3)), 1.0)
    clicked = project.add_annotation(frames[1], masks.encode(square(4, 4)), track_id=track.id)
    [only] = project.annotations(frames[1])  # the propagated one gave way
    assert only.rle == clicked.rle != propagated.rle
    assert only.edited and only.label_id == track.label_id
    with pytest.raises(ProjectError, match="one mask of a track per image"):
        project.add_annotation(frames[1], masks.encode(square(9, 9)), track_id=track.id)
    project.delete_annotations([clicked.id])
    assert project.absent_frames(track.id) == {frames[1]}
    project.add_annotation(frames[1], masks.encode(square(5, 5)), track_id=track.id)
    assert project.absent_frames(track.id) == set()


def test_a_propagation_run_is_one_undo_step_and_keeps_earlier_edits_in_the_history(tmp_path):
    folder = write_frames(tmp_path / "long", count=30)
    with Project.open(folder) as project:
        project.history.limit = 4  # steps, not rows: the run's 29 commits are one
        frames = project.frame_ids()
        label = project.add_label("fish")
        track = project.add_track(label.id)
        project.add_annotation(frames[0], masks.encode(square(2, 2)), track_id=track.id)
        for image_id in frames[1:]:  # 29 commits, one run
            project.write_propagated(image_id, track.id, masks.encode(square(3, 3)), 1.0)
    with Project.open(folder) as project:  # the history is kept in the store
        project.history.limit = 4  # steps, not rows: the run's 29 commits are one
        assert project.history.undo_text == "Propagate"
        assert project.undo() == "Propagate"
        assert set(project.track_layers(track.id)) == {frames[0]}
        assert project.redo() == "Propagate"
        assert len(project.track_layers(track.id)) == 30
        project.undo()
        assert project.undo() == "Add mask"  # the edits before the run are still there
        assert project.undo() == "Add track"
        assert project.undo() == "Add label fish"
        assert project.undo() is None


def test_deleting_a_label_unlabels_its_tracks(project):
    frames = project.frame_ids()
    car, bus = project.add_label("car"), project.add_label("bus")
    track = project.add_track(car.id)
    project.add_annotation(frames[0], masks.encode(square(2, 2)), track_id=track.id)
    project.delete_label(car.id)
    assert project.track(track.id).label_id is None
    project.undo()
    project.delete_label(car.id, masks=bus.id)
    assert project.track(track.id).label_id == bus.id
    assert project.track_layers(track.id)[frames[0]].label_id == bus.id


def test_a_propagated_mask_of_another_size_is_refused_naming_the_frame(project):
    frames = project.frame_ids()
    track = project.add_track()
    project.ensure_image_info(frames[1])
    wrong = np.zeros((10, 12), bool)
    wrong[2:5, 2:5] = True
    with pytest.raises(ProjectError, match="frame_1.png: the mask is 12x10 but the image is "
                                           "24x16 now"):
        project.write_propagated(frames[1], track.id, masks.encode(wrong), 1.0)
    assert project.track_layers(track.id) == {}


def test_the_history_bound_drops_a_whole_run_never_half_of_it(project):
    import sqlite3

    project.history.limit = 2
    frames = project.frame_ids()
    track = project.add_track()
    for image_id in frames:
        project.write_propagated(image_id, track.id, masks.encode(square(3, 3)), 1.0)
    project.add_label("a")
    with sqlite3.connect(project.db_path) as conn:  # the run and the label: 2 steps kept
        assert conn.execute("SELECT COUNT(*) FROM history").fetchone()[0] == len(frames) + 1
    project.add_label("b")
    with sqlite3.connect(project.db_path) as conn:  # the run is gone whole
        assert conn.execute("SELECT COUNT(*) FROM history").fetchone()[0] == 2
    assert [project.undo(), project.undo(), project.undo()] == ["Add label b", "Add label a",
                                                                None]
    assert len(project.track_layers(track.id)) == len(frames)
