"""``samdesk batch``: label a whole project from a phrase with GroundingDINO + a mask model,
or (``--from-boxes``, :mod:`samdesk.commands.batch_boxes`) make a mask of every pending box.

Resumable: each image is one transaction that adds its masks and notes the
image as done for this run's signature (phrase, thresholds, models), so an
interrupted run continues where it stopped and a finished one adds nothing.
It only adds mask layers; a person's masks are never changed, and images
marked done are left alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from samdesk.commands.segment import (
    UsageError,
    _add_model_args,
    default_segmenter,
    load_with_runtime,
    on_file,
    server_model,
)


def register(sub: Any) -> None:
    parser = sub.add_parser("batch", help="label every image of a project from a phrase, "
                            "or make a mask of every pending box")
    parser.add_argument("folder", type=Path)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help='objects to find, e.g. "car . person"')
    what.add_argument("--from-boxes", action="store_true",
                      help="turn every pending box (imported without a mask) into a mask")
    parser.add_argument("--threshold", type=float, default=0.3, help="box threshold")
    parser.add_argument("--text-threshold", type=float, default=0.25)
    parser.add_argument("--detector", help="GroundingDINO model name")
    parser.add_argument("--detector-checkpoint", type=Path)
    _add_model_args(parser)
    parser.add_argument("--include-done", action="store_true",
                        help="also add masks to images marked done")
    parser.set_defaults(func=run_batch)


def signature(args: argparse.Namespace, model: str, detector: str) -> str:
    """What makes two runs the same run (and so resumable)."""
    key = {"text": args.text.strip().lower(), "box": args.threshold,
           "text_threshold": args.text_threshold, "model": model, "detector": detector}
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def run_batch(args: argparse.Namespace) -> int:
    from samdesk import images, masks
    from samdesk.annotations import ImageStatus
    from samdesk.commands.progress import Progress, Steps
    from samdesk.errors import ImageReadError
    from samdesk.inference.engines import loading, packages
    from samdesk.inference.engines.text import segment_text
    from samdesk.inference.models import checkpoints, registry
    from samdesk.project import Project

    if args.from_boxes:
        if args.checkpoint is not None and args.model is None:
            raise UsageError("--checkpoint needs --model to say which architecture it is")
        from samdesk.commands.batch_boxes import run_from_boxes

        return run_from_boxes(args)
    if not args.text.strip():
        raise UsageError("--text is empty: name the objects, e.g. \"car . person\"")
    if args.checkpoint is not None and args.model is None:
        raise UsageError("--checkpoint needs --model to say which architecture it is")
    if args.server:  # both models run on the server; each image file is sent once
        model, detector_path = server_model(args, "segmenter", args.model), None
        detector_name = server_model(args, "detector", args.detector)
    elif args.detector_checkpoint is not None:
        detector_name, detector_path = (args.detector or checkpoints.DEFAULT_DETECTOR,
                                        args.detector_checkpoint)
    else:  # the text extra missing is said before a missing checkpoint (no 700 MB fetch first)
        packages.require(registry.get_spec(args.detector or checkpoints.DEFAULT_DETECTOR).family)
        spec, detector_path = checkpoints.resolve_detector(args.detector)
        detector_name = spec.name
    if not args.server:
        model = args.model or default_segmenter()
        packages.require(registry.get_spec(detector_name).family)
    steps = Steps()
    with Project.open(args.folder) as project:
        engine = load_with_runtime(args, model, args.checkpoint, steps)
        with steps.step(f"loading {detector_name}"):
            detector = loading.load_model(detector_name, detector_path, args.device)
        run = signature(args, model, detector_name)
        finished = project.batch_done(run)
        todo = [im for im in project.images() if im.id not in finished
                and (args.include_done or im.status != ImageStatus.DONE)]
        progress = Progress("batch")
        added = failed = 0
        for done, image in enumerate(todo, 1):
            try:
                rgb = images.load_rgb(project.image_file(image))
            except ImageReadError as exc:
                project.mark_error(image.id, exc.reason)
                print(f"samdesk: skipped {image.path}: {exc.reason}", file=sys.stderr)
                failed += 1
                continue
            path = project.image_file(image)
            found = segment_text(on_file(detector, path), on_file(engine, path), rgb, args.text,
                                 args.threshold, args.text_threshold)
            with project.batch(f"Batch {args.text}"):
                for obj in found:
                    # a box can pass with no word over --text-threshold: name it by the text
                    name = obj.phrase.strip() or args.text.strip(" .")
                    label = project.label_by_name(name) or project.add_label(name)
                    project.add_annotation(
                        image.id, masks.encode(obj.mask), label.id, score=float(obj.mask_score),
                        prompts={"text": args.text, "box": [float(v) for v in obj.box],
                                 "model": model, "detector": detector_name})
                project.record_batch_run(run, image.id, len(found))
            added += len(found)
            progress(done, len(todo))
    print(f"{args.folder}: {len(todo) - failed} images labelled, {added} masks added, "
          f"{len(finished)} already done by an earlier run, {failed} unreadable")
    return 0
