"""A folder opened as a project: images listed, labels and masks kept, edits undoable."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from PIL import Image

from samdesk import masks
from samdesk.annotations import ImageStatus
from samdesk.errors import ProjectError, ProjectLockedError
from samdesk.project import Project


def write_png(path, size=(40, 30), value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def disk(h=30, w=40, cy=15, cx=20, r=8):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    for name in ("img10.png", "img2.png", "img1.png", "sub/a.png"):
        write_png(root / name)
    (root / "notes.txt").write_text("not an image")
    return root


def test_open_lists_images_naturally_and_stores_in_folder(folder):
    with Project.open(folder) as project:
        paths = [i.path for i in project.images()]
        assert paths == ["img1.png", "img2.png", "img10.png", "sub/a.png"]
        assert project.db_path == folder / ".samdesk" / "project.sqlite"
        assert all(i.status == ImageStatus.TODO and i.width is None for i in project.images())
    assert (folder / ".samdesk" / "project.sqlite").exists()


def test_masks_and_labels_survive_reopening(folder):
    mask = disk()
    mask[14:17, 19:22] = False  # a hole
    mask[0:3, 0:3] = True  # a second part touching the border
    with Project.open(folder) as project:
        image = project.image_by_path("img2.png")
        car = project.add_label("car")
        layer = project.add_annotation(image.id, masks.encode(mask), car.id, score=0.9,
                                       prompts={"points": [[20, 15, 1]]})
        assert layer.z == 0
    with Project.open(folder) as project:
        [layer] = project.annotations(project.image_by_path("img2.png").id)
        assert np.array_equal(masks.decode(layer.rle), mask)
        assert project.label(layer.label_id).name == "car"
        assert layer.score == pytest.approx(0.9)
        assert layer.prompts == {"points": [[20, 15, 1]]}
        assert project.image_by_path("img2.png").status == ImageStatus.IN_PROGRESS
        assert project.image_by_path("img2.png").annotation_count == 1


def test_undo_and_redo_every_kind_of_edit(folder):
    with Project.open(folder) as project:
        image = project.images()[0]
        cat, dog = project.add_label("cat"), project.add_label("dog")
        a = project.add_annotation(image.id, masks.encode(disk(r=5)), cat.id)
        b = project.add_annotation(image.id, masks.encode(disk(cx=8, r=4)), cat.id)

        project.update_annotation(a.id, label_id=dog.id)
        project.update_annotation(a.id, visible=False)
        project.update_annotation(a.id, locked=True)
        project.move_annotation(a.id, +1)
        brushed = masks.union(a.rle, masks.encode(disk(cy=5, cx=30, r=3)))
        project.update_annotation(a.id, locked=False)
        project.update_annotation(a.id, rle=brushed)
        project.delete_annotations([b.id])

        final = project.annotations(image.id)
        assert [x.id for x in final] == [a.id]
        for _ in range(7):
            assert project.undo() is not None
        [x, y] = project.annotations(image.id)
        assert (x.id, y.id) == (a.id, b.id)
        assert x.label_id == cat.id and x.visible and not x.locked
        assert np.array_equal(masks.decode(x.rle), disk(r=5))
        for _ in range(7):
            assert project.redo() is not None
        [x] = project.annotations(image.id)
        assert x.label_id == dog.id and not x.visible and np.array_equal(
            masks.decode(x.rle), masks.decode(brushed))
        assert project.redo() is None


def test_merge_is_one_undo_step_and_keeps_holes(folder):
    with Project.open(folder) as project:
        image = project.images()[0]
        ring = disk(r=10) & ~disk(r=4)
        left = np.zeros_like(ring)
        left[0:5, 0:5] = True
        a = project.add_annotation(image.id, masks.encode(ring))
        b = project.add_annotation(image.id, masks.encode(left))
        merged = project.merge_annotations([a.id, b.id])
        assert merged.id == b.id  # the front-most layer stays
        assert np.array_equal(masks.decode(merged.rle), ring | left)
        assert masks.decode(merged.rle)[15, 20] == 0  # the hole is still a hole
        project.undo()
        assert [x.id for x in project.annotations(image.id)] == [a.id, b.id]


def test_delete_label_keeps_or_deletes_masks_as_asked(folder):
    with Project.open(folder) as project:
        image = project.images()[0]
        cat, dog = project.add_label("cat"), project.add_label("dog")
        a = project.add_annotation(image.id, masks.encode(disk()), cat.id)
        b = project.add_annotation(image.id, masks.encode(disk(r=3)), dog.id)
        project.delete_label(cat.id)
        assert project.annotation(a.id).label_id is None
        project.delete_label(dog.id, masks="delete")
        assert [x.id for x in project.annotations(image.id)] == [a.id]
        project.undo()
        project.undo()
        assert {lab.name for lab in project.labels()} == {"cat", "dog"}
        assert project.annotation(a.id).label_id == cat.id
        assert project.annotation(b.id).label_id == dog.id


def test_labels_get_distinct_colours_hotkeys_and_stable_ids(folder):
    with Project.open(folder) as project:
        first = [project.add_label(n) for n in ("a", "b", "c")]
        assert [lab.id for lab in first] == [1, 2, 3]
        assert [lab.hotkey for lab in first] == ["1", "2", "3"]
        assert len({lab.color for lab in first}) == 3
        project.update_label(2, name="bee", color="#00FF00")
        with pytest.raises(ProjectError, match="already"):
            project.add_label("a")
        with pytest.raises(ProjectError, match="#rrggbb"):
            project.update_label(1, color="green")
    with Project.open(folder) as project:
        assert [(lab.id, lab.name, lab.color) for lab in project.labels()] == [
            (1, "a", first[0].color), (2, "bee", "#00ff00"), (3, "c", first[2].color)]


def test_locked_mask_refuses_edits(folder):
    with Project.open(folder) as project:
        image = project.images()[0]
        layer = project.add_annotation(image.id, masks.encode(disk()))
        project.update_annotation(layer.id, locked=True)
        with pytest.raises(ProjectError, match="locked"):
            project.update_annotation(layer.id, rle=masks.encode(disk(r=2)))
        with pytest.raises(ProjectError, match="locked"):
            project.delete_annotations([layer.id])
        assert np.array_equal(masks.decode(project.annotation(layer.id).rle), disk())


def test_second_writer_is_refused_and_read_only_works(folder):
    with Project.open(folder) as project:
        project.add_label("car")
        with pytest.raises(ProjectLockedError, match=f"pid {os.getpid()}"):
            Project.open(folder)
        with Project.open(folder, read_only=True) as viewer:
            assert [lab.name for lab in viewer.labels()] == ["car"]
            with pytest.raises(ProjectError, match="read-only"):
                viewer.add_label("bus")
    with Project.open(folder) as again:  # the lock is released on close
        assert again.label_by_name("car") is not None


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_folder_keeps_its_store_in_user_data(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with Project.open(folder) as project:
            assert project.db_path.is_relative_to(tmp_path / "data")
            assert "not writable" in project.store_note
            project.add_label("car")
        with Project.open(folder) as project:
            assert project.label_by_name("car") is not None
    finally:
        folder.chmod(stat.S_IRWXU)


def test_read_only_folder_detection_without_permissions(folder, tmp_path, monkeypatch):
    """As root, chmod cannot make a folder read-only; simulate the failed write."""
    from samdesk import store_location

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr(store_location, "_folder_writable", lambda f: False)
    with Project.open(folder) as project:
        assert project.db_path.is_relative_to(tmp_path / "data")
        assert str(folder) in project.store_note and "not writable" in project.store_note
    assert not (folder / ".samdesk" / "project.sqlite").exists()


def test_image_info_errors_and_changed_files(folder):
    (folder / "broken.png").write_bytes(b"")
    write_png(folder / "big.png", size=(64, 48))
    with Project.open(folder) as project:
        broken = project.ensure_image_info(project.image_by_path("broken.png").id)
        assert broken.status == ImageStatus.ERROR and broken.error
        big = project.ensure_image_info(project.image_by_path("big.png").id)
        assert (big.width, big.height) == (64, 48) and big.content_hash
        project.add_annotation(big.id, masks.encode(np.ones((48, 64), bool)))
        assert len(project.images()) == 6  # broken files are listed, not hidden
    write_png(folder / "big.png", size=(64, 48), value=7)
    with Project.open(folder) as project:
        assert project.image_by_path("big.png").changed
        assert not project.image_by_path("img1.png").changed


def test_rescan_finds_new_files_and_keeps_masks_of_missing_ones(folder):
    with Project.open(folder) as project:
        first = project.image_by_path("img1.png")
        project.add_annotation(first.id, masks.encode(disk()))
        (folder / "img1.png").unlink()
        (folder / "img2.png").unlink()
        write_png(folder / "img3.png")
        assert project.rescan() == 1
        paths = [i.path for i in project.images()]
        assert paths == ["img1.png", "img3.png", "img10.png", "sub/a.png"]
        assert project.image_by_path("img1.png").error == "file is missing"


def test_subscribers_hear_edits_undo_and_redo(folder):
    with Project.open(folder) as project:
        events = []
        project.subscribe(events.append)
        image = project.images()[0]
        project.add_annotation(image.id, masks.encode(disk()))
        project.undo()
        project.redo()
        assert [sorted(e.kinds) for e in events] == [["annotations", "images"]] * 3
        assert all(e.image_ids == {image.id} for e in events)


def test_failed_batch_changes_nothing(folder):
    with Project.open(folder) as project:
        image = project.images()[0]
        with pytest.raises(RuntimeError):
            with project.batch("Import"):
                project.add_annotation(image.id, masks.encode(disk()))
                raise RuntimeError("stop half-way")
        assert project.annotations(image.id) == []
        assert not project.history.can_undo


def test_not_a_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ProjectError, match="not a folder"):
        Project.open(tmp_path / "nope")


def test_image_infos_in_bulk_fill_sizes_and_report_bad_files(folder):
    (folder / "text.png").write_text("not a picture")
    write_png(folder / "wide.png", size=(90, 10))
    with Project.open(folder) as project:
        project.ensure_image_infos([i.id for i in project.images()])
        by_path = {i.path: i for i in project.images()}
        assert (by_path["wide.png"].width, by_path["wide.png"].height) == (90, 10)
        assert by_path["text.png"].status == ImageStatus.ERROR and by_path["text.png"].error
        assert all(i.content_hash for p, i in by_path.items() if p != "text.png")


def test_reopen_keeps_ids_and_order_and_finds_what_changed(folder):
    with Project.open(folder) as project:
        first = [(i.id, i.path) for i in project.images()]
    with Project.open(folder) as project:  # nothing changed on disk
        assert [(i.id, i.path) for i in project.images()] == first
    write_png(folder / "img3.png")
    (folder / "img10.png").unlink()
    with Project.open(folder) as project:
        paths = [i.path for i in project.images()]
        assert paths == ["img1.png", "img2.png", "img3.png", "sub/a.png"]
        assert project.image_by_path("img10.png") is not None  # kept, flagged missing
    with Project.open(folder) as project:  # rows no longer stored in position order
        assert [i.path for i in project.images()] == paths


def test_position_restored_by_undo_is_put_right_on_reopen(folder):
    with Project.open(folder) as project:
        img10 = project.image_by_path("img10.png")
        project.set_status(img10.id, ImageStatus.DONE)  # the undo step keeps img10's position
        write_png(folder / "img0.png")
        assert project.rescan() == 1  # img0 comes first: every other image moves down
        project.undo()  # writes img10's old row back, old position included
    with Project.open(folder) as project:
        paths = [i.path for i in project.images()]
        assert paths == ["img0.png", "img1.png", "img2.png", "img10.png", "sub/a.png"]


def test_project_without_a_recorded_listing_still_rescans(folder):
    import sqlite3

    with Project.open(folder):
        pass
    with sqlite3.connect(folder / ".samdesk" / "project.sqlite") as conn:  # as older versions
        conn.execute("DELETE FROM meta WHERE key != 'schema_version'")
    write_png(folder / "img5.png")
    with Project.open(folder) as project:
        paths = [i.path for i in project.images()]
        assert paths == ["img1.png", "img2.png", "img5.png", "img10.png", "sub/a.png"]


def test_image_list_follows_every_change(folder):
    with Project.open(folder) as project:
        image = project.image_by_path("img2.png")
        project.add_annotation(image.id, masks.encode(disk()))
        assert project.image_by_path("img2.png") == project.images()[1]
        assert project.images()[1].annotation_count == 1
        project.set_status(image.id, ImageStatus.DONE)
        assert [i.path for i in project.images(ImageStatus.DONE)] == ["img2.png"]
        project.undo()
        assert project.images(ImageStatus.DONE) == []
        project.ensure_image_infos([image.id])
        assert (project.images()[1].width, project.images()[1].height) == (40, 30)
        listed = project.images()
        listed.clear()  # a caller's copy: the project's list is not touched
        assert len(project.images()) == 4
        with pytest.raises(RuntimeError):
            with project.batch("fails"):
                project.add_annotation(image.id, masks.encode(disk()))
                assert project.images()[1].annotation_count == 2
                raise RuntimeError("roll back")
        assert project.images()[1].annotation_count == 1


def test_records_in_the_list_equal_records_read_one_by_one(folder):
    (folder / "broken.png").write_bytes(b"")
    with Project.open(folder) as project:
        project.ensure_image_infos([i.id for i in project.images()])
        img1 = project.image_by_path("img1.png")
        project.add_annotation(img1.id, masks.encode(disk()))
        project.set_status(project.image_by_path("img2.png").id, ImageStatus.IN_PROGRESS)
    (folder / "img1.png").unlink()  # missing, but kept for its mask
    write_png(folder / "img10.png", value=9)  # changed since it was read
    with Project.open(folder) as project:
        listed = project.images()
        assert listed == [project.image(i.id) for i in listed]
        by_path = {i.path: i for i in listed}
        assert by_path["img1.png"].error == "file is missing"
        assert by_path["img1.png"].annotation_count == 1
        assert by_path["img10.png"].changed and by_path["broken.png"].status == ImageStatus.ERROR
        assert by_path["img2.png"].status == ImageStatus.IN_PROGRESS


def test_read_only_project_sees_another_writers_new_images(folder):
    with Project.open(folder) as writer:
        with Project.open(folder, read_only=True) as reader:
            assert len(reader.images()) == 4
            write_png(folder / "img3.png")
            writer.rescan()
            assert [i.path for i in reader.images()][:3] == ["img1.png", "img2.png", "img3.png"]


def test_reopen_rewrites_positions_changed_behind_its_back(folder):
    import sqlite3

    with Project.open(folder):
        pass
    db = folder / ".samdesk" / "project.sqlite"
    with sqlite3.connect(db) as conn:  # same order of paths, but not at 0..n-1 any more
        conn.execute("UPDATE images SET position=99 WHERE path='sub/a.png'")
    with Project.open(folder) as project:
        assert [i.path for i in project.images()][-1] == "sub/a.png"
    with sqlite3.connect(db) as conn:
        positions = conn.execute("SELECT position FROM images ORDER BY position").fetchall()
    assert [p for (p,) in positions] == [0, 1, 2, 3]
