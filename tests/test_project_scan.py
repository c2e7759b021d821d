"""Listing a folder into a project: what the fast paths of opening must never get wrong."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samdesk import masks, storage
from samdesk.annotations import ImageStatus
from samdesk.errors import StoreFullError
from samdesk.imagefiles import image_names, is_image_name, list_images, natural_key, natural_sorted
from samdesk.project import Project


def write_png(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((30, 40, 3), value, np.uint8)).save(path)
    return path


def stored_paths(folder: Path, journal: str = "wal") -> list[str]:
    """The paths the store holds, read without samdesk; checks its journal mode."""
    with sqlite3.connect(folder / ".samdesk" / "project.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == journal
        return [p for (p,) in conn.execute("SELECT path FROM images ORDER BY id")]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for name in ("img10.png", "img2.png", "img1.png", "sub/a.png", "sub/deeper/b.png"):
        write_png(root / name)
    return root


def test_reopen_sees_files_added_and_removed_deep_in_subfolders(folder: Path) -> None:
    with Project.open(folder) as project:
        first = {i.path: i.id for i in project.images()}
    write_png(folder / "sub" / "deeper" / "c.png")  # the top folder itself is unchanged
    (folder / "sub" / "deeper" / "b.png").unlink()
    with Project.open(folder) as project:
        listed = [(i.path, i.id) for i in project.images()]
    assert [p for p, _ in listed] == ["img1.png", "img2.png", "img10.png", "sub/a.png",
                                      "sub/deeper/c.png"]
    assert all(first[p] == i for p, i in listed if p in first)  # ids kept
    with Project.open(folder) as project:  # and nothing changed since: the same list
        assert [(i.path, i.id) for i in project.images()] == listed


def test_first_open_numbers_images_in_natural_order(folder: Path) -> None:
    with Project.open(folder) as project:
        listed = [(i.id, i.path) for i in project.images()]
        assert listed == [(1, "img1.png"), (2, "img2.png"), (3, "img10.png"), (4, "sub/a.png"),
                          (5, "sub/deeper/b.png")]
        assert [project.image(i) for i, _ in listed] == project.images()
    assert stored_paths(folder) == [p for _, p in listed]


def test_reopened_list_is_what_the_store_holds(folder: Path) -> None:
    """The list built from the reopen's one read equals records read one by one."""
    with Project.open(folder) as project:
        project.ensure_image_infos([i.id for i in project.images()])
        img2 = project.image_by_path("img2.png")
        project.add_annotation(img2.id, masks.encode(np.ones((30, 40), bool)))
        project.set_status(project.image_by_path("sub/a.png").id, ImageStatus.DONE)
    write_png(folder / "img10.png", value=7)  # same name, other pixels
    with Project.open(folder) as project:
        listed = project.images()
        assert listed == [project.image(i.id) for i in listed]
        by_path = {i.path: i for i in listed}
        assert by_path["img2.png"].annotation_count == 1
        assert (by_path["img1.png"].width, by_path["img1.png"].height) == (40, 30)
        assert by_path["sub/a.png"].status == ImageStatus.DONE
        assert by_path["img10.png"].changed and not by_path["img1.png"].changed


WRITER_KILLED_BEFORE_COMMIT = textwrap.dedent(
    """
    import os, sys
    from samdesk import storage
    from samdesk.project import Project

    insert = storage.insert_new_images

    def insert_then_die(conn, new):  # the rows are in, the commit is next
        insert(conn, new)
        print(conn.execute("SELECT COUNT(*) FROM images").fetchone()[0], flush=True)
        os._exit(3)

    storage.insert_new_images = insert_then_die
    Project.open(sys.argv[1])
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="os._exit from a thread is POSIX-tested")
def test_first_scan_killed_before_its_commit_leaves_no_rows(folder: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, "-c", WRITER_KILLED_BEFORE_COMMIT, str(folder)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 3, done.stderr
    assert done.stdout.split() == ["5"]  # the rows were there, uncommitted
    assert stored_paths(folder, journal="delete") == []  # all of the first scan or none of it
    with Project.open(folder) as project:  # the next open lists the folder again
        assert [(i.id, i.path) for i in project.images()][::2] == [
            (1, "img1.png"), (3, "img10.png"), (5, "sub/deeper/b.png")]
    assert len(stored_paths(folder)) == 5


def test_failed_first_scan_write_is_raised_and_leaves_nothing(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_insert = storage.insert_new_images

    def full_disk(conn: sqlite3.Connection, new: storage.NewImages) -> None:
        real_insert(conn, new)
        raise sqlite3.OperationalError("database or disk is full")

    with Project.open(folder, scan=False) as project:
        monkeypatch.setattr(storage, "insert_new_images", full_disk)
        with pytest.raises(StoreFullError, match="disk full: the image list was not saved"):
            project.rescan()
        assert project.images() == []
        monkeypatch.setattr(storage, "insert_new_images", real_insert)
        assert project.rescan() == 5
        assert [i.id for i in project.images()] == [1, 2, 3, 4, 5]
    assert len(stored_paths(folder)) == 5


def test_listing_skips_what_is_not_an_image_file(tmp_path: Path) -> None:
    (tmp_path / "album.jpg").mkdir()  # a folder named like an image is searched, not listed
    write_png(tmp_path / "album.jpg" / "inside.png")
    write_png(tmp_path / "real.png")
    (tmp_path / "link.png").symlink_to(tmp_path / "real.png")  # a link to an image counts
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")  # cannot be followed at all
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / ".hidden").mkdir()
    write_png(tmp_path / ".hidden" / "x.png")
    assert list_images(tmp_path) == ["album.jpg/inside.png", "link.png", "real.png"]


def test_image_names_agree_with_is_image_name() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    odd = ["İ", "ı", "K", "ſ", "ß", "Ｊ", "\u0307", "\n", "\0"]  # letters that case-map oddly
    pieces = st.sampled_from(["a", ".", "..", "jpg", "JPG", "Jpeg", "png", "tif", "TIFF", "f",
                              "webp", "bmp", "txt", " ", *odd])
    names = st.lists(st.lists(pieces, min_size=1, max_size=5).map("".join), max_size=30)

    @settings(max_examples=400, deadline=None)
    @given(names)
    def check(items: list[str]) -> None:
        assert image_names(items) == [n for n in items if n[0] != "." and is_image_name(n)]

    check()
    many = [f"IMG_{k:04d}.JPG" for k in range(60)]  # a big folder with a few other names
    for k, odd in enumerate(["x.Jpg", "readme.txt", ".hidden.jpg", "y.tİf", "z.jpg.bak"]):
        many.insert(7 * k + 3, odd)
    assert image_names(many) == [n for n in many if n[0] != "." and is_image_name(n)]
    assert "x.Jpg" in image_names(many) and "readme.txt" not in image_names(many)
    for ext in ("jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp"):  # each letter swapped
        for k in range(len(ext)):
            for char in {chr(c) for c in range(0x250)} | set(odd) | {"K", "İ"}:
                name = f"x.{ext[:k]}{char}{ext[k + 1:]}"
                assert image_names([name]) == ([name] if is_image_name(name) else [])


def test_natural_order_does_not_depend_on_how_long_the_digit_runs_are() -> None:
    """Keys made together pad digit runs only as far as needed: same order as 32 places."""
    import random

    rng = random.Random(5)
    uniform = [f"IMG_{rng.randrange(10**6):06d}.jpg" for _ in range(300)]
    mixed = [f"frame_{rng.randrange(10**k)}.png" for k in range(1, 8) for _ in range(40)]
    long_runs = [f"scan{'7' * n}{tail}.png" for n in (30, 31, 32, 33, 40) for tail in "0123"]
    for items in (uniform, mixed, long_runs, uniform + mixed, mixed + long_runs,
                  [*uniform, "IMG_12345.jpg"], [*uniform, "img_0000001.jpg", "Img_000001.jpg"],
                  ["a/b10.png", "a/b9.png", "a1/b.png", "a-1/b.png", "A/B9.PNG"]):
        rng.shuffle(items)
        assert natural_sorted(items) == sorted(items, key=natural_key)


def test_store_written_by_a_newer_samdesk_is_refused(folder: Path) -> None:
    from samdesk.errors import ProjectError

    with Project.open(folder):
        pass
    with sqlite3.connect(folder / ".samdesk" / "project.sqlite") as conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(ProjectError, match="newer samdesk"):
        Project.open(folder)


def test_reopen_after_a_rename_lists_the_new_name(folder: Path) -> None:
    with Project.open(folder) as project:
        img2 = project.image_by_path("img2.png")
        project.add_annotation(img2.id, masks.encode(np.ones((30, 40), bool)))
    (folder / "img2.png").rename(folder / "img3.png")  # as many files as before
    with Project.open(folder) as project:
        assert [i.path for i in project.images()] == [
            "img1.png", "img2.png", "img3.png", "img10.png", "sub/a.png", "sub/deeper/b.png"]
        assert project.image_by_path("img2.png").error == "file is missing"  # kept: masked


def _digests(conn: sqlite3.Connection) -> tuple[str | None, ...]:
    return tuple(conn.execute(f"SELECT {storage.LISTING_DIGESTS_SQL}").fetchone())


def test_listing_matches_only_the_recorded_paths_in_any_folder_order() -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(storage.SCHEMA)
    storage.record_listing(conn, storage.listing_digests(["a.png", "b.png", "c.png"],
                                                        ["c.png", "a.png", "b.png"]))
    recorded = (["a.png", "b.png", "c.png"], [0, 1, 2], _digests(conn))
    assert storage.listing_matches(*recorded, ["c.png", "a.png", "b.png"])  # as scanned
    assert storage.listing_matches(*recorded, ["b.png", "c.png", "a.png"])  # other order
    assert not storage.listing_matches(*recorded, ["c.png", "a.png", "d.png"])
    assert not storage.listing_matches(*recorded, ["c.png", "a.png"])
    assert not storage.listing_matches(["a.png", "c.png", "b.png"], [0, 1, 2], recorded[2],
                                       ["c.png", "a.png", "b.png"])  # stored out of order
    assert storage.listing_matches(["c.png", "a.png", "b.png"], [2, 0, 1], recorded[2],
                                   ["c.png", "a.png", "b.png"])  # rows in another order

    # A samdesk that writes only the listing digest records a.png, d.png, c.png;
    # the scan digest left from before must not vouch for the old files.
    stale_scan = recorded[2][1]
    storage.record_listing(conn, storage.listing_digests(["a.png", "c.png", "d.png"],
                                                        ["d.png", "a.png", "c.png"]))
    conn.execute("UPDATE meta SET value=? WHERE key='scan_digest'", (stale_scan,))
    now = (["a.png", "c.png", "d.png"], [0, 1, 2], _digests(conn))
    assert not storage.listing_matches(*now, ["c.png", "a.png", "b.png"])
    assert storage.listing_matches(*now, ["d.png", "c.png", "a.png"])


def test_names_that_json_escapes_are_stored_as_they_are(tmp_path: Path) -> None:
    names = ['say "hi".png', "back\\slash.png", "tab\there.png", "données 画像.png", "plain.png"]
    for name in names:
        write_png(tmp_path / name)
    with Project.open(tmp_path) as project:
        listed = [i.path for i in project.images()]
        assert sorted(listed) == sorted(names)
        assert [project.image(i.id).path for i in project.images()] == listed
    assert stored_paths(tmp_path) == listed


@pytest.mark.parametrize("raw", [b"bad\xff\xfename.png", b"sub/caf\xe9.png", b"100%\x80 sure.png",
                                 b"\xc3\xa9t\xe9/x.png"])
def test_a_name_that_is_not_utf8_is_stored_as_text_and_read_back_exactly(raw: bytes) -> None:
    from samdesk.imagefiles import store_path, stored_path, stored_paths

    path = os.fsdecode(raw)
    text = store_path(path)
    text.encode("utf-8")  # SQLite text: strict UTF-8
    assert text.startswith("/") and stored_path(text) == path
    assert os.fsencode(stored_path(text)) == raw
    assert store_path("sub/plain é.png") == "sub/plain é.png"  # UTF-8 names are kept as they are
    names = ["a.png", "b.png"]
    assert stored_paths(names) is names  # nothing to decode: the same list, no copy


@pytest.mark.skipif(sys.platform != "linux", reason="Linux file names are bytes")
def test_a_folder_with_odd_names_reopens_on_the_fast_path(tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    write_png(folder / "a.png")
    bad = os.fsencode(folder) + b"/b\xff.png"
    with open(bad, "wb") as stream:
        stream.write((folder / "a.png").read_bytes())
    write_png(folder / "c\nd.png")
    with Project.open(folder) as project:
        first = project.images()
    before = stored_paths(folder)
    with Project.open(folder) as project:
        assert project.images() == first
        assert project._conn.total_changes == 0  # matched the recorded listing: nothing written
    assert stored_paths(folder) == before == ["a.png", "/b%FF.png", "c\nd.png"]
    assert [record.path for record in first] == ["a.png", os.fsdecode(b"b\xff.png"), "c\nd.png"]
