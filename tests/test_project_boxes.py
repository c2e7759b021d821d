"""Pending boxes: imported detection boxes wait on their image, become masks, undo like edits."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from PIL import Image

from samdesk import masks, storage
from samdesk.errors import ProjectError
from samdesk.project import Project
from samdesk.project_boxes import PendingBox, box_problem, mask_in_box


def write_png(path, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), 90, np.uint8)).save(path)
    return path


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "photos"
    write_png(folder / "a.png")
    write_png(folder / "b.png")
    with Project.open(folder) as opened:
        yield opened


def full_mask(h=30, w=40):
    return masks.encode(np.ones((h, w), bool))


def test_boxes_are_kept_with_label_and_source_and_survive_reopening(project):
    image = project.image_by_path("a.png")
    car = project.add_label("car")
    ids = project.add_pending_boxes(image.id, [((2, 3, 20, 15), car.id), ((5, 5, 9, 9), None)],
                                    "boxes.json")
    assert len(ids) == 2
    folder = project.folder
    project.close()
    with Project.open(folder) as again:
        boxes = again.pending_boxes(image.id)
        assert boxes == [PendingBox(ids[0], image.id, (2.0, 3.0, 20.0, 15.0), car.id,
                                    "boxes.json"),
                         PendingBox(ids[1], image.id, (5.0, 5.0, 9.0, 9.0), None, "boxes.json")]
        assert again.pending_boxes(again.image_by_path("b.png").id) == []
        assert again.pending_box_counts() == {image.id: 2}


def test_a_box_past_the_border_is_clipped_and_a_bad_one_adds_none(project):
    image = project.ensure_image_info(project.image_by_path("a.png").id)
    [box_id] = project.add_pending_boxes(image.id, [((-5, -2, 50, 12), None)], "x")
    assert project.pending_box(box_id).box == (0.0, 0.0, 40.0, 12.0)
    with pytest.raises(ProjectError, match=r"a.png: box \[9, 9, 3, 20\] has no area"):
        project.add_pending_boxes(image.id, [((1, 1, 5, 5), None), ((9, 9, 3, 20), None)], "x")
    assert len(project.pending_boxes()) == 1
    assert box_problem((50, 50, 60, 60), 40, 30) == \
        "box [50, 50, 60, 60] lies outside the 40x30 image"
    assert box_problem((1, 2, float("nan"), 4)) == "a box coordinate is not a finite number"


def test_adding_the_same_boxes_twice_adds_them_once(project):
    image = project.image_by_path("a.png")
    box = ((2, 3, 20, 15), None)
    assert len(project.add_pending_boxes(image.id, [box], "f.json")) == 1
    assert project.add_pending_boxes(image.id, [box], "f.json") == []
    [pending] = project.pending_boxes()
    project.resolve_pending_box(pending.id, full_mask())
    assert project.add_pending_boxes(image.id, [box], "f.json") == []  # made into a mask already
    assert project.pending_boxes() == []


def test_resolving_adds_the_mask_inside_its_box_with_its_label_in_one_undo_step(project):
    image = project.image_by_path("a.png")
    dog = project.add_label("dog")
    [box_id] = project.add_pending_boxes(image.id, [((4.5, 3, 20, 15.2), dog.id)], "f.json")
    ann_id = project.resolve_pending_box(box_id, full_mask(), score=0.8,
                                         prompts={"model": "grabcut"})
    layer = project.annotation(ann_id)
    assert layer.label_id == dog.id and layer.score == 0.8
    assert layer.prompts["model"] == "grabcut" and layer.prompts["box"] == [4.5, 3, 20, 15.2]
    pixels = masks.decode(layer.rle)
    expected = np.zeros((30, 40), bool)
    expected[3:16, 4:20] = True  # pixels the box overlaps
    assert np.array_equal(pixels, expected)
    assert project.pending_boxes() == []
    assert project.undo() == "Mask from box"
    assert project.annotations(image.id) == []
    assert [b.id for b in project.pending_boxes()] == [box_id]
    project.redo()
    assert len(project.annotations(image.id)) == 1 and project.pending_boxes() == []


def test_an_empty_result_keeps_the_box(project):
    image = project.image_by_path("a.png")
    [box_id] = project.add_pending_boxes(image.id, [((2, 2, 10, 10), None)], "f")
    outside = np.zeros((30, 40), bool)
    outside[20:, 30:] = True
    with pytest.raises(ProjectError, match="empty mask; the box is kept"):
        project.resolve_pending_box(box_id, masks.encode(outside))
    assert [b.id for b in project.pending_boxes()] == [box_id]
    assert project.annotations(image.id) == []


def test_adding_and_deleting_boxes_undo(project):
    image = project.image_by_path("a.png")
    [box_id] = project.add_pending_boxes(image.id, [((2, 2, 10, 10), None)], "f")
    project.delete_pending_box(box_id)
    assert project.pending_boxes() == []
    project.undo()
    assert [b.id for b in project.pending_boxes()] == [box_id]
    project.undo()
    assert project.pending_boxes() == []
    with pytest.raises(ProjectError, match=f"no pending box with id {box_id}"):
        project.delete_pending_box(box_id)


def test_listeners_hear_of_boxes_on_their_image(project):
    image = project.image_by_path("a.png")
    heard = []
    project.subscribe(heard.append)
    project.add_pending_boxes(image.id, [((2, 2, 10, 10), None)], "f")
    assert heard[-1].kinds == {"pending_boxes"} and heard[-1].image_ids == {image.id}


def test_deleting_a_label_treats_its_boxes_as_its_masks(project):
    image = project.image_by_path("a.png")
    cat, dog = project.add_label("cat"), project.add_label("dog")
    project.add_pending_boxes(image.id, [((2, 2, 10, 10), cat.id), ((3, 3, 9, 9), dog.id)], "f")
    project.delete_label(cat.id)
    assert [b.label_id for b in project.pending_boxes()] == [None, dog.id]
    project.delete_label(dog.id, masks="delete")
    assert [b.label_id for b in project.pending_boxes()] == [None]
    project.undo()
    assert [b.label_id for b in project.pending_boxes()] == [None, dog.id]


def test_a_store_of_schema_2_gets_the_table_and_a_read_only_one_opens(tmp_path):
    folder = tmp_path / "old"
    write_png(folder / "a.png")
    with Project.open(folder):
        pass
    db = folder / ".samdesk" / "project.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript("DROP TABLE pending_boxes; UPDATE meta SET value='2' "
                       "WHERE key='schema_version';")
    conn.close()
    with Project.open(folder, read_only=True) as old:
        assert old.pending_boxes() == [] and old.pending_box_counts() == {}
    with Project.open(folder) as migrated:
        image = migrated.image_by_path("a.png")
        migrated.add_pending_boxes(image.id, [((1, 1, 5, 5), None)], "f")
    conn = sqlite3.connect(db)
    version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    conn.close()
    assert int(version) == storage.SCHEMA_VERSION


def test_mask_in_box_keeps_the_pixels_the_box_overlaps():
    clipped = masks.decode(mask_in_box(full_mask(), (0.5, 0.5, 2.5, 1.0)))
    assert clipped.sum() == 3 and clipped[0, :3].all()


def test_boxes_kept_in_a_spare_store_are_merged_with_their_labels(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    folder, other = tmp_path / "shots", tmp_path / "elsewhere"
    for root in (folder, other):
        write_png(root / "a.png")
    with Project.open(folder) as project:
        project.add_label("person")
    with Project.open(other) as project:
        car = project.add_label("car")
        project.add_pending_boxes(project.image_by_path("a.png").id,
                                  [((1, 2, 10, 12), car.id), ((3, 3, 8, 8), None)], "f.json")
    spare = storage.spare_store(folder)
    spare.parent.mkdir(parents=True)
    shutil.copyfile(other / ".samdesk" / "project.sqlite", spare)
    with Project.open(folder) as project:
        names = {lab.id: lab.name for lab in project.labels()}
        got = [(b.box, names.get(b.label_id), b.source) for b in project.pending_boxes()]
        assert got == [((1.0, 2.0, 10.0, 12.0), "car", "f.json"),
                       ((3.0, 3.0, 8.0, 8.0), None, "f.json")]
        assert project.undo() is not None  # one undoable edit with the labels
        assert project.pending_boxes() == []
