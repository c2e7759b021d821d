"""``samdesk track FOLDER``: carry objects through a frame sequence with SAM 2, headless.

The same code as the window's propagation: :func:`samdesk.tracking.build_plan`
plans the run from the project, :func:`samdesk.inference.tracking.run_plan`
runs it, and each frame's mask is written (``project.write_propagated``) as it
arrives, so a killed run keeps every frame already written. What a resume
needs is kept in the project's meta under ``track_run`` from the start of the
run until its end; ``samdesk track FOLDER --resume`` finishes the rest.

A new prompt (``--points``/``--negative``/``--box``) on ``--frame K`` becomes a
person-made layer of its track there; ``--layer ID`` makes a layer already on
that frame the start. Person-made layers and absent marks of the run's tracks
are never overwritten: they condition the run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from samdesk.commands.segment import SEGMENTER_PREFERENCE, UsageError, parse_xy


def register(sub: Any) -> None:
    parser = sub.add_parser("track", help="propagate objects through a frame sequence (SAM 2)")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--frame", metavar="K", help="the frame to start from: its index "
                        "(0 = the first frame in name order) or its file name")
    parser.add_argument("--points", nargs="+", action="extend", default=[], metavar="X,Y",
                        help="positive clicks on frame K (upright pixels)")
    parser.add_argument("--negative", nargs="+", action="extend", default=[], metavar="X,Y",
                        help="negative (background) clicks on frame K")
    parser.add_argument("--box", metavar="X0,Y0,X1,Y1", help="a box around the object on frame K")
    parser.add_argument("--layer", type=int, metavar="ID",
                        help="start from this mask layer on frame K (any mask: a brushed, "
                        "imported or GrabCut one)")
    parser.add_argument("--track", type=int, action="append", default=[], metavar="ID",
                        help="a track to propagate (repeatable; all go in one run); the new "
                        "prompt is for the first one given, else for a new track")
    parser.add_argument("--all", action="store_true", help="propagate every track of the "
                        "project together with the new one")
    parser.add_argument("--label", help="label of the new track (made if missing), or the new "
                        "label of the track prompted")
    parser.add_argument("--direction", choices=("forward", "backward", "both"),
                        default="forward")
    parser.add_argument("--frames", type=int, metavar="N",
                        help="propagate N frames past frame K (default: to the end)")
    parser.add_argument("--model", help="a SAM 2 or 2.1 model (default: the best installed)")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file for --model")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "gpu", "mps"))
    parser.add_argument("--runtime", metavar="NAME", default=None,
                        help="accepted as on every command; propagation runs in torch")
    parser.add_argument("--resume", action="store_true",
                        help="finish the run that was interrupted in FOLDER")
    parser.add_argument("--mark-sequence", action="store_true",
                        help="mark FOLDER a frame sequence first, if it is not one yet")
    parser.set_defaults(func=run_track)


def video_model(args: argparse.Namespace) -> tuple[Any, Path | None]:
    """The ``--model`` spec (default: the best installed SAM 2) and its checkpoint file."""
    from samdesk.inference.models import checkpoints, registry

    if args.checkpoint is not None and args.model is None:
        raise UsageError("--checkpoint needs --model to say which architecture it is")
    if args.model is None:
        name = next((n for n in SEGMENTER_PREFERENCE if n.startswith("sam2")
                     and checkpoints.installed(n)), None)
        if name is None:
            raise UsageError("no SAM 2 model is installed: samdesk models fetch "
                             "sam2.1_hiera_tiny, or give --model NAME --checkpoint FILE")
        args.model = name
    spec = registry.get_spec(args.model)
    if spec.family != "sam2":
        raise UsageError(f"--model {args.model}: propagation needs a SAM 2 or 2.1 model")
    return spec, args.checkpoint


def frame_number(text: str, project: Any, frame_ids: list[int]) -> int:
    """``--frame``: an index into the frames, or a frame's file name (relative path)."""
    try:
        index = int(text)
    except ValueError:
        record = project.image_by_path(text)
        if record is None or record.id not in frame_ids:
            raise UsageError(f"--frame {text}: no such frame in {project.folder}") from None
        return frame_ids.index(record.id)
    if not 0 <= index < len(frame_ids):
        raise UsageError(f"--frame {text}: out of range; the sequence has frames 0 to "
                         f"{len(frame_ids) - 1}")
    return index


def new_prompt(args: argparse.Namespace, height: int, width: int
               ) -> tuple[tuple[tuple[float, float], ...], tuple[int, ...],
                          tuple[float, float, float, float] | None]:
    """``--points``/``--negative``/``--box`` as points, labels and a box, checked to lie
    inside the ``width`` x ``height`` frame."""
    points, labels = [], []
    for flag, items, label in (("--points", args.points, 1), ("--negative", args.negative, 0)):
        for text in items:
            x, y = parse_xy(text, flag, 2)
            if not (0 <= x <= width and 0 <= y <= height):
                raise UsageError(f"{flag} {text}: outside the {width}x{height} frame")
            points.append((x, y))
            labels.append(label)
    box = None
    if args.box is not None:
        box = parse_xy(args.box, "--box", 4)
        if min(box) < 0 or max(box[0::2]) > width or max(box[1::2]) > height:
            raise UsageError(f"--box {args.box}: outside the {width}x{height} frame")
        if not (box[2] > box[0] and box[3] > box[1]):
            raise UsageError(f"--box {args.box}: needs X1 > X0 and Y1 > Y0")
    if labels and not any(labels) and box is None:
        raise UsageError("--negative alone says only where the object is not: add --points "
                         "or --box")
    return tuple(points), tuple(labels), box  # type: ignore[return-value]


def run_track(args: argparse.Namespace) -> int:
    from samdesk.commands.track_run import resume, start_run
    from samdesk.project import Project

    if args.runtime is not None:
        from samdesk.inference.engines.runtime_choice import AUTO, TORCH, check_choice

        if check_choice(args.runtime) not in (AUTO, TORCH):
            say("propagation runs in torch (the video predictor has no ONNX export)")
    with Project.open(args.folder) as project:
        if args.resume:
            return resume(args, project)
        return start_run(args, project)


def refuse_other_args(args: argparse.Namespace) -> None:
    """``--resume`` takes the interrupted run as it was: no other prompt or range."""
    given = [flag for flag, value in (("--frame", args.frame), ("--points", args.points),
                                      ("--negative", args.negative), ("--box", args.box),
                                      ("--layer", args.layer), ("--track", args.track),
                                      ("--all", args.all), ("--label", args.label),
                                      ("--frames", args.frames)) if value]
    if given:
        raise UsageError(f"--resume finishes the interrupted run as it was; leave out "
                         f"{', '.join(given)}")


def say(line: str) -> None:
    """A note on stderr (the summary line is the one line on stdout)."""
    print(f"samdesk: {line}", file=sys.stderr)
