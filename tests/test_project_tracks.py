"""Tracks of a frame sequence: one object across frames, its layers, absent marks, propagation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from samdesk import masks
from samdesk.errors import ProjectError
from samdesk.project import Project


def write_frames(folder, count=6, size=(24, 16)):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        Image.fromarray(np.full((size[1], size[0], 3), 10 * k, np.uint8)).save(
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
