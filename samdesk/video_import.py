"""Frames of a video as image files, the start of a frame sequence (``samdesk import-video``).

OpenCV reads the video frame by frame (bounded memory: one frame at a time)
and each kept frame is written as ``frame_000000.jpg``, ``frame_000001.jpg``…
(zero-padded, so every listing sorts them in time order; at least 6 digits).
Frames are first written into a hidden folder beside them and moved in only
when the whole range is done, so an interrupted import leaves no half
sequence behind (the hidden folder is cleared by the next import).

Times are seconds from the start of the video; a frame's time is its index
over the video's frame rate. ``start``/``end`` keep the frames with
``start <= time < end``; ``fps`` keeps one frame per ``1 / fps`` seconds (the
first frame at or past each tick), never more than the video has.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from samdesk.errors import SamdeskError
from samdesk.imagefiles import list_images

PARTIAL = ".samdesk-import-video.partial"
"""The hidden folder frames are written into before they are moved into place."""
JPEG_QUALITY = 95


class VideoImportError(SamdeskError):
    """The video cannot be read, or the folder cannot take its frames; the message says which."""


@dataclass(frozen=True)
class VideoInfo:
    """What OpenCV says of a video: frame rate (frames per second), frame count (an
    estimate for some containers), and the frame size in pixels."""

    fps: float
    frame_count: int
    width: int
    height: int


@dataclass(frozen=True)
class Imported:
    """The frames written: their files in time order, the video's info, and the times
    (seconds) of the first and last frame kept."""

    files: tuple[Path, ...]
    info: VideoInfo
    first_time: float
    last_time: float


def _open(video: Path):  # -> cv2.VideoCapture
    import cv2

    if not video.is_file():
        raise VideoImportError(f"{video}: no such file" if not video.exists()
                               else f"{video}: not a file")
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        capture.release()
        raise VideoImportError(f"{video}: not a video OpenCV can read")
    return capture


def probe(video: Path) -> VideoInfo:
    """The frame rate, frame count and size of ``video``; :class:`VideoImportError` if
    OpenCV cannot open it."""
    import cv2

    capture = _open(Path(video))
    try:
        return _info(capture, cv2)
    finally:
        capture.release()


def _info(capture, cv2) -> VideoInfo:  # noqa: ANN001 - cv2 types
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    if not math.isfinite(fps) or fps <= 0:
        fps = 25.0  # a stream without a rate: say 25, as ffmpeg does
    return VideoInfo(fps, max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0),
                     int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
                     int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0))


def images_in(folder: Path) -> list[str]:
    """Image files in ``folder`` and its subfolders, as its project would list them."""
    return list_images(folder) if folder.is_dir() else []


def frame_name(index: int, digits: int = 6) -> str:
    """``frame_000123.jpg``: the file name of output frame ``index``."""
    return f"frame_{index:0{digits}d}.jpg"


def extract_frames(video: Path, folder: Path, *, fps: float | None = None,
                   start: float = 0.0, end: float | None = None,
                   progress: Callable[[int, int], None] = lambda done, total: None
                   ) -> Imported:
    """Write the frames of ``video`` from ``start`` to ``end`` seconds, at ``fps`` (None:
    every frame), into ``folder`` (made if missing).

    Refuses, with :class:`VideoImportError` and nothing written, a folder that
    already holds images (two videos' frames would mix into one sequence), a
    range with no frame, and a video OpenCV cannot read. ``progress(done,
    total)`` follows the frames read (``total`` from the video's frame count
    within the range, an estimate for some containers).
    """
    import cv2

    video, folder = Path(video), Path(folder)
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise VideoImportError(f"--fps {fps}: give a number of frames per second above 0")
    if not math.isfinite(start) or start < 0:
        raise VideoImportError(f"--start {start}: give seconds, 0 or more")
    if end is not None and not (math.isfinite(end) and end > start):
        raise VideoImportError(f"--end {end}: give seconds after --start ({start:g})")
    already = images_in(folder)
    if already:
        raise VideoImportError(f"{folder} already holds {len(already)} images (such as "
                               f"{already[0]}); import the video into a new or empty "
                               "folder, so frames of different videos do not mix")
    if folder.exists() and not folder.is_dir():
        raise VideoImportError(f"{folder}: not a folder")
    capture = _open(video)
    try:
        info = _info(capture, cv2)
        first = math.ceil(start * info.fps - 1e-9)
        stop = info.frame_count if end is None else min(math.ceil(end * info.fps - 1e-9),
                                                        info.frame_count or 1 << 62)
        if info.frame_count and first >= info.frame_count:
            raise VideoImportError(f"--start {start:g}: the video ends at "
                                   f"{info.frame_count / info.fps:.2f} s")
        total = max(stop - first, 0) if stop else 0
        digits = max(6, len(str(max(total, info.frame_count))))
        partial = folder / PARTIAL
        shutil.rmtree(partial, ignore_errors=True)  # what an interrupted import left
        partial.mkdir(parents=True)
        written: list[str] = []
        times: list[float] = []
        step = None if fps is None or fps >= info.fps else 1.0 / fps
        next_time = start
        index = 0
        while index < first:  # grab without decoding up to the start
            if not capture.grab():
                break
            index += 1
        while stop == 0 or index < stop:
            if not capture.grab():
                break
            time = index / info.fps
            if step is None or time >= next_time - 0.5 / info.fps:
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    raise VideoImportError(f"{video}: frame {index} ({time:.2f} s) cannot be "
                                           "decoded")
                name = frame_name(len(written), digits)
                if not cv2.imwrite(str(partial / name), frame,
                                   [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                    raise VideoImportError(f"{partial / name}: cannot be written")
                written.append(name)
                times.append(time)
                if step is not None:
                    while next_time <= time + 0.5 / info.fps:
                        next_time += step
            index += 1
            progress(index - first, max(total, index - first))
    except BaseException:
        shutil.rmtree(folder / PARTIAL, ignore_errors=True)
        raise
    finally:
        capture.release()
    if not written:
        shutil.rmtree(partial, ignore_errors=True)
        raise VideoImportError(f"{video}: no frame between {start:g} s and "
                               f"{'the end' if end is None else f'{end:g} s'}")
    for name in written:
        (partial / name).replace(folder / name)
    shutil.rmtree(partial, ignore_errors=True)
    return Imported(tuple(folder / n for n in written), info, times[0], times[-1])
