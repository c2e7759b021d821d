"""``samdesk import-video VIDEO FOLDER``: a video's frames as a frame-sequence project.

The frames are written as ``frame_000000.jpg``… (see :mod:`samdesk.video_import`),
then FOLDER opens as a project marked a sequence, ready for ``samdesk track``
and the window's propagation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser("import-video", help="extract a video's frames into a folder and "
                            "open it as a frame sequence")
    parser.add_argument("video", type=Path, help="a video file OpenCV reads (mp4, avi, mov…)")
    parser.add_argument("folder", type=Path, help="a new or empty folder for the frames")
    parser.add_argument("--fps", type=float, help="frames per second to keep (default: every "
                        "frame of the video)")
    parser.add_argument("--start", type=float, default=0.0, metavar="S",
                        help="first second to keep (default 0)")
    parser.add_argument("--end", type=float, metavar="E",
                        help="keep frames before this second (default: to the end)")
    parser.set_defaults(func=run_import_video)


def run_import_video(args: argparse.Namespace) -> int:
    from samdesk.commands.progress import Progress
    from samdesk.project import Project
    from samdesk.video_import import extract_frames

    done = extract_frames(args.video, args.folder, fps=args.fps, start=args.start,
                          end=args.end, progress=Progress("frames"))
    with Project.open(args.folder) as project:
        project.set_sequence(True)
        count = len(project.frame_ids())
    info = done.info
    rate = f"{args.fps:g}" if args.fps is not None and args.fps < info.fps else f"{info.fps:g}"
    print(f"{args.folder}: {len(done.files)} frames of {args.video.name} "
          f"({done.first_time:.2f} s to {done.last_time:.2f} s at {rate} fps, "
          f"{info.width}x{info.height}), {done.files[0].name} to {done.files[-1].name}; "
          f"the project has {count} frames and is marked a sequence")
    sys.stdout.flush()
    return 0
