"""``samdesk import-video VIDEO FOLDER``: a video's frames become a frame-sequence project."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from samdesk.cli import main
from samdesk.project import Project
from samdesk.video_import import PARTIAL, extract_frames

FPS, COUNT, H, W = 10, 30, 48, 64


def frame_picture(i: int) -> np.ndarray:
    """Frame ``i`` (BGR): a white bar 2 + 2 i pixels wide, so a frame can be told back."""
    picture = np.full((H, W, 3), 40, np.uint8)
    picture[:, : 2 + 2 * i] = 250
    return picture


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames at 10 fps (3 s), Motion-JPEG in an .avi: what OpenCV always writes."""
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H))
    assert writer.isOpened()
    for i in range(COUNT):
        writer.write(frame_picture(i))
    writer.release()
    return path


def bar_width(path: Path) -> int:
    """The white bar's width in a written frame: ``2 + 2 * source index``."""
    rgb = cv2.imread(str(path))
    return int(np.count_nonzero(rgb[H // 2, :, 1] > 145))


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(["import-video", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


def test_every_frame_becomes_a_sequence_in_time_order(video, tmp_path, capsys):
    folder = tmp_path / "clip"
    code, out, err = run(capsys, video, folder)
    assert code == 0, err
    names = sorted(p.name for p in folder.glob("*.jpg"))
    assert names == [f"frame_{i:06d}.jpg" for i in range(COUNT)]
    assert [bar_width(folder / n) for n in names[:3]] == [2, 4, 6]
    assert out == (f"{folder}: 30 frames of clip.avi (0.00 s to 2.90 s at 10 fps, 64x48), "
                   "frame_000000.jpg to frame_000029.jpg; the project has 30 frames and is "
                   "marked a sequence")
    assert "frames: 30/30" in err  # progress
    with Project.open(folder, read_only=True) as project:
        assert project.is_sequence
        assert [im.path for im in project.images()] == names
    assert not (folder / PARTIAL).exists()


def test_fps_and_a_time_range_keep_the_frames_asked_for(video, tmp_path, capsys):
    code, out, err = run(capsys, video, tmp_path / "half", "--fps", 5)
    assert code == 0, err
    kept = sorted((tmp_path / "half").glob("*.jpg"))
    assert len(kept) == 15  # every other frame
    assert [bar_width(p) for p in kept[:3]] == [2, 6, 10]  # source frames 0, 2, 4

    code, out, err = run(capsys, video, tmp_path / "range", "--start", 1, "--end", 2)
    assert code == 0, err
    kept = sorted((tmp_path / "range").glob("*.jpg"))
    assert len(kept) == 10 and bar_width(kept[0]) == 22 and bar_width(kept[-1]) == 40
    assert "(1.00 s to 1.90 s at 10 fps" in out

    code, out, err = run(capsys, video, tmp_path / "both", "--start", 1, "--end", 2,
                         "--fps", 2.5)
    assert code == 0, err
    kept = sorted((tmp_path / "both").glob("*.jpg"))
    assert [bar_width(p) for p in kept] == [22, 30, 38]  # 1.0 s, 1.4 s, 1.8 s


@pytest.mark.parametrize("make, line", [
    (lambda d: d / "nothing.mp4", "nothing.mp4: no such file"),
    (lambda d: (d / "notes.mp4").write_bytes(b"not a video") and d / "notes.mp4",
     "notes.mp4: not a video OpenCV can read"),
])
def test_a_missing_or_unreadable_video_is_one_line_and_exit_2(tmp_path, capsys, make, line):
    source = make(tmp_path)
    code, out, err = run(capsys, source, tmp_path / "out")
    assert code == 2 and len(err.splitlines()) == 1 and line in err, err
    assert not (tmp_path / "out").exists()  # nothing made


def test_a_folder_that_already_holds_images_is_refused_and_left_alone(video, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "holiday.jpg"), frame_picture(3))
    before = (folder / "holiday.jpg").read_bytes()
    code, _, err = run(capsys, video, folder)
    assert code == 2 and len(err.splitlines()) == 1
    assert f"{folder} already holds 1 images (such as holiday.jpg)" in err
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.jpg"]
    assert (folder / "holiday.jpg").read_bytes() == before


def test_bad_ranges_are_refused_before_anything_is_written(video, tmp_path, capsys):
    for args, line in ((["--fps", "0"], "--fps 0.0: give a number of frames per second"),
                       (["--start", "2", "--end", "1"], "--end 1.0: give seconds after "
                                                         "--start (2)"),
                       (["--start", "9"], "--start 9: the video ends at 3.00 s")):
        code, _, err = run(capsys, video, tmp_path / "x", *args)
        assert code == 2 and line in err, err
        assert not list((tmp_path / "x").glob("**/*.jpg"))


def test_an_interrupted_import_leaves_no_frames_behind(video, tmp_path):
    def stop(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_frames(video, tmp_path / "cut", progress=stop)
    assert list((tmp_path / "cut").iterdir()) == []  # not a half sequence
    done = extract_frames(video, tmp_path / "cut")  # and a second try works
    assert len(done.files) == COUNT
