"""A store written before tracks (schema 3) opens read-only as it is, and migrates intact."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from PIL import Image

from samdesk import masks, storage
from samdesk.project import Project

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def schema_3_store(folder, mask):
    """A project store as samdesk with schema 3 wrote it: its tables (schema 1, the
    history, the pending boxes), two frames, a label and one mask on the first frame."""
    folder.mkdir(parents=True)
    for k in range(2):
        Image.fromarray(np.full((16, 24, 3), 40 * k, np.uint8)).save(folder / f"f{k}.png")
    (folder / ".samdesk").mkdir()
    db = folder / ".samdesk" / "project.sqlite"
    rle = masks.encode(mask)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(f"BEGIN;{storage.SCHEMA}{storage.HISTORY_TABLE}"
                       f"{storage.PENDING_BOXES_TABLE}"
                       "INSERT INTO meta VALUES ('schema_version', '3');COMMIT;")
    conn.executemany("INSERT INTO images (id, path, position, width, height) "
                     "VALUES (?, ?, ?, 24, 16)", [(1, "f0.png", 0), (2, "f1.png", 1)])
    conn.execute("INSERT INTO labels VALUES (1, 'car', '#e69f00', '1')")
    conn.execute("INSERT INTO annotations (id, image_id, label_id, height, width, counts, z, "
                 "score, prompts, created, updated) VALUES (1, 1, 1, 16, 24, ?, 0, 0.9, "
                 "'{\"points\":[[4,4]]}', 1.0, 2.0)", (rle["counts"],))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    return db, rle


def schema_version(db):
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT value FROM meta WHERE key='schema_version'"
                                ).fetchone()[0])


def test_a_schema_3_store_opens_read_only_unchanged_and_migrates_with_its_masks(tmp_path):
    mask = np.zeros((16, 24), bool)
    mask[3:9, 4:12] = True
    mask[5, 6] = False  # a hole
    db, rle = schema_3_store(tmp_path / "clip", mask)
    with Project.open(tmp_path / "clip", read_only=True) as old:
        [layer] = old.annotations()
        assert np.array_equal(masks.decode(layer.rle), mask)
        assert (layer.track_id, layer.edited, layer.object_score) == (None, True, None)
        assert old.tracks() == [] and old.track_layers(1) == {} and old.absent_frames(1) == set()
        assert not old.is_sequence
    assert schema_version(db) == 3  # read-only: not migrated
    with Project.open(tmp_path / "clip") as project:
        [layer] = project.annotations()
        assert layer.rle["counts"] == rle["counts"] and layer.score == 0.9
        assert layer.prompts == {"points": [[4, 4]]} and layer.edited
        track = project.add_track(1)
        project.set_layer_track(layer.id, track.id)
        frames = project.frame_ids()
        project.write_propagated(frames[1], track.id, masks.encode(mask), 2.0)
        project.set_sequence(True)
    assert schema_version(db) == storage.SCHEMA_VERSION == 4
    with Project.open(tmp_path / "clip", read_only=True) as reopened:
        assert reopened.is_sequence and len(reopened.track_layers(track.id)) == 2
        assert np.array_equal(masks.decode(reopened.annotation(1).rle), mask)


def test_a_store_migrated_once_migrates_again_without_adding_columns_twice(tmp_path):
    """A store whose version was set back by hand (as older tests fake an old store) still
    opens: the columns schema 4 adds are not added a second time."""
    folder = tmp_path / "clip"
    folder.mkdir()
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(folder / "f0.png")
    with Project.open(folder):
        pass
    db = folder / ".samdesk" / "project.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    with Project.open(folder) as project:
        assert project.add_track().id == 1
    assert schema_version(db) == 4


def test_a_spare_store_with_tracks_merges_its_masks_in_no_track(tmp_path, monkeypatch):
    """A spare store (kept while the folder was read-only) whose masks are in tracks: its
    masks are merged in, out of any track (its tracks are not the folder's)."""
    import shutil

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    folder, other = tmp_path / "shots", tmp_path / "elsewhere"
    for root in (folder, other):
        root.mkdir()
        Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(root / "f0.png")
    with Project.open(folder):
        pass
    mask = np.zeros((16, 24), bool)
    mask[2:6, 3:9] = True
    with Project.open(other) as project:
        track = project.add_track(project.add_label("car").id)
        project.add_annotation(project.frame_ids()[0], masks.encode(mask), track_id=track.id)
    spare = storage.spare_store(folder)
    spare.parent.mkdir(parents=True)
    shutil.copyfile(other / ".samdesk" / "project.sqlite", spare)
    with Project.open(folder) as project:
        [layer] = project.annotations()
        assert np.array_equal(masks.decode(layer.rle), mask) and layer.track_id is None
        assert project.tracks() == []
