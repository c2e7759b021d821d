"""``samdesk batch FOLDER --from-boxes``: every pending box becomes a mask.

Pending boxes are the detection boxes an import brought without a mask
(:mod:`samdesk.project_boxes`). Each image with boxes is read and encoded
once, all its boxes are decoded in batched calls on that one embedding
(:func:`samdesk.inference.engines.boxes.segment_boxes`), and its masks are
added, each with its box's label, while its boxes are removed, in one
transaction per image. So the run is resumable: a box done is gone, and a
killed run loses at most the image it was on; running it again does the
rest. It only adds masks: a person's masks are never changed.

A box whose mask comes out empty (nothing inside the box) is kept and
counted; an image that cannot be read is skipped with one line, its boxes
kept.
"""

from __future__ import annotations

import argparse
import sys

from samdesk.commands.segment import default_segmenter, load_with_runtime


def run_from_boxes(args: argparse.Namespace) -> int:
    from samdesk import images, masks
    from samdesk.commands.progress import Progress, Steps
    from samdesk.errors import ImageReadError, ProjectError
    from samdesk.imagefiles import display_path
    from samdesk.inference.engines.boxes import segment_boxes
    from samdesk.project import Project
    from samdesk.project_boxes import mask_in_box

    if getattr(args, "server", None):  # the server's segmenter; each image file sent once
        from samdesk.commands.segment import server_model

        model = server_model(args, "segmenter", args.model)
    else:
        model = args.model or default_segmenter()
    steps = Steps()
    with Project.open(args.folder) as project:
        pending = project.pending_boxes()
        if not pending:
            print(f"{args.folder}: no pending boxes; import a dataset with box-only "
                  "annotations first (samdesk import-coco)")
            return 0
        engine = load_with_runtime(args, model, args.checkpoint, steps)
        by_image: dict[int, list] = {}
        for box in pending:
            by_image.setdefault(box.image_id, []).append(box)
        progress = Progress("boxes")
        made = kept = unreadable = done = 0
        for image_id, boxes in by_image.items():
            record = project.image(image_id)
            name = display_path(record.path)
            try:
                rgb = images.load_rgb(project.image_file(record))
            except ImageReadError as exc:
                project.mark_error(image_id, exc.reason)
                print(f"samdesk: skipped {name}: {exc.reason} ({len(boxes)} boxes kept)",
                      file=sys.stderr)
                unreadable += len(boxes)
                done += len(boxes)
                progress(done, len(pending))
                continue
            with steps.step(f"encoding {name}"):
                embed_file = getattr(engine, "embed_file", None)
                embedding = (embed_file(project.image_file(record)) if embed_file is not None
                             else engine.embed(rgb))
            results = segment_boxes(engine, embedding, [b.box for b in boxes])
            empty = 0
            try:
                with project.batch(f"Masks from {len(boxes)} boxes"):
                    for box, result in zip(boxes, results, strict=True):
                        rle = mask_in_box(masks.encode(result.mask), box.box)
                        if masks.is_empty(rle):
                            empty += 1
                            continue
                        project.resolve_pending_box(box.id, rle, score=result.score,
                                                    prompts={"model": model})
            except ProjectError as exc:  # e.g. the file was replaced by one of another size
                print(f"samdesk: skipped {name}: {exc} ({len(boxes)} boxes kept)",
                      file=sys.stderr)
                unreadable += len(boxes)
            else:
                made, kept = made + len(boxes) - empty, kept + empty
            done += len(boxes)
            progress(done, len(pending))
        left = len(project.pending_boxes())
    print(f"{args.folder}: {made} masks made from boxes on {len(by_image)} images; "
          f"{kept} boxes gave an empty mask and {unreadable} are on images that could not "
          f"be used; {left} boxes still pending")
    return 0
