"""Headless project commands: ``info``, ``export``, ``import`` and ``import-coco``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from samdesk.commands.progress import Progress
from samdesk.errors import ProjectLockedError
from samdesk.imagefiles import display_path
from samdesk.project import Project


def register(sub: argparse._SubParsersAction) -> None:
    info = sub.add_parser("info", help="summarise a project: images, masks, labels, bad files")
    info.add_argument("folder", type=Path)
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=run_info)

    from samdesk.export import FORMATS

    export = sub.add_parser("export", help="export masks as COCO JSON or PNG")
    export.add_argument("folder", type=Path)
    export.add_argument("--format", required=True, choices=sorted(FORMATS))
    export.add_argument("--out", required=True, type=Path,
                        help="JSON file (COCO formats) or folder (PNG formats)")
    export.add_argument("--only-done", action="store_true", help="only images marked done")
    export.add_argument("--images", choices=("copy", "link", "none"), default="copy",
                        help="copy (default): write the images upright into images/ beside "
                             "the annotations, named relative to it; link: hard links where "
                             "no turning is needed, else copies; none: name the project's "
                             "files relative to its folder")
    export.add_argument("--polygons", action="store_true",
                        help="masks as polygons (every part, holes filled): labelme polygon "
                             "shapes instead of mask shapes, coco-rle as coco-polygon")
    export.set_defaults(func=run_export)

    fit = sub.add_parser("unfitting", help="masks that no longer fit a replaced image: "
                         "list them, drop them or keep them")
    fit.add_argument("folder", type=Path)
    choice = fit.add_mutually_exclusive_group()
    choice.add_argument("--drop", action="store_true", help="delete them (one undoable edit)")
    choice.add_argument("--keep", action="store_true",
                        help="keep them (e.g. to put the old file back) and stop listing the "
                             "images as changed")
    fit.set_defaults(func=run_unfitting)

    from samdesk.export.detect import IMPORTERS

    imp_any = sub.add_parser("import", help="add the masks and boxes of a dataset "
                             f"({', '.join(IMPORTERS)}; recognised from the source)")
    imp_any.add_argument("folder", type=Path)
    imp_any.add_argument("source", type=Path, help="a dataset file or folder")
    imp_any.add_argument("--format", choices=list(IMPORTERS), default=None,
                         help="the source's format (default: recognised from it)")
    imp_any.set_defaults(func=run_import_any)

    imp = sub.add_parser("import-coco", help="add the masks of a COCO instances JSON "
                         "(the same as: import FOLDER FILE --format coco)")
    imp.add_argument("folder", type=Path)
    imp.add_argument("coco_json", type=Path)
    imp.set_defaults(func=run_import)


def open_for_reading(folder: Path) -> Project:
    """Open for writing if we can, else read-only when another samdesk holds it.

    A folder with no project yet is read without writing anything into it.
    """
    try:
        return Project.open(folder, create=False)
    except ProjectLockedError as exc:
        print(f"samdesk: note: {exc}; reading it read-only", file=sys.stderr)
        return Project.open(folder, read_only=True)


def collect_info(project: Project, progress: Progress | None = None) -> dict[str, Any]:
    """The numbers ``samdesk info`` prints; reads (and records) every image once."""
    from samdesk import images as imageio
    from samdesk.errors import SamdeskError

    records = project.images()
    if not project.read_only:
        ids = [r.id for r in records]
        for start in range(0, len(ids), 256):
            project.ensure_image_infos(ids[start:start + 256], verify=True)
            if progress is not None:
                progress(min(start + 256, len(ids)), len(ids))
        records = project.images()
    errors = []
    for record in records:
        if project.read_only and record.error is None and record.width is None:
            try:
                imageio.load_display(project.image_file(record), max_side=512)
            except SamdeskError as exc:
                errors.append({"file": shown(record.path),
                               "error": getattr(exc, "reason", str(exc))})
        if record.error is not None:
            errors.append({"file": shown(record.path), "error": record.error})
    errors += [{"file": shown(path), "error": why} for path, why in project.scan_problems]
    by_id = {r.id: r for r in records}
    unfitting = [{"file": shown(by_id[i].path), "masks": len(ids),
                  "size": [by_id[i].width, by_id[i].height], "kept": not by_id[i].changed}
                 for i, ids in project.unfitting_masks().items() if i in by_id]
    names = {label.id: label.name for label in project.labels()}
    counts = project.annotation_counts()
    boxes = project.pending_box_counts()
    labels = {name: counts.get(label_id, 0) for label_id, name in names.items()}
    if counts.get(0):
        labels["(no label)"] = counts[0]
    return {
        "images": len(records),
        "annotated": sum(1 for r in project.images() if r.annotation_count),
        "annotations": sum(counts.values()),
        "labels": labels,
        "status": _status_counts(project),
        "changed": [shown(r.path) for r in project.images() if r.changed],
        "unfitting": unfitting,
        "errors": errors,
        "pending_boxes": sum(boxes.values()),
        "images_with_pending_boxes": len(boxes),
        "sequence": project.is_sequence,
        "tracks": len(project.tracks()),
    }


def shown(path: str) -> str:
    """An image path as ``info`` prints it: undecodable bytes as U+FFFD."""
    return display_path(path, one_line=False)


def _status_counts(project: Project) -> dict[str, int]:
    out: dict[str, int] = {}
    for record in project.images():
        out[record.status.value] = out.get(record.status.value, 0) + 1
    return out


def run_info(args: argparse.Namespace) -> int:
    with open_for_reading(args.folder) as project:
        info = collect_info(project, Progress("reading images"))
        if project.store_note:
            info["note"] = project.store_note
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    print(f"{args.folder}: {info['images']} images, {info['annotated']} annotated, "
          f"{info['annotations']} masks")
    for name, count in info["labels"].items():
        print(f"  {name}: {count}")
    for status, count in sorted(info["status"].items()):
        print(f"  status {status}: {count}")
    for path in info["changed"]:
        print(f"  changed on disk since annotated: {display_path(path)}")
    for item in info["unfitting"]:
        what = (f"{item['masks']} masks of {display_path(item['file'])} no longer fit its size "
                f"{item['size'][0]}x{item['size'][1]}")
        if item["kept"]:  # the person chose to keep them (unfitting --keep, or the window)
            print(f"  {what} (kept: not drawn nor exported while they do not fit)")
        else:
            print(f"  {what} (the file was replaced); 'samdesk unfitting {args.folder} --drop' "
                  "deletes them, '--keep' keeps them")
    for error in info["errors"]:
        print(f"  cannot read {display_path(error['file'])}: {error['error']}")
    if info["sequence"] or info["tracks"]:
        kind = "a sequence (the images are frames, in order)" if info["sequence"] else \
            "not marked a sequence"
        print(f"  {kind}; {info['tracks']} tracks")
    if info["pending_boxes"]:
        print(f"  pending boxes (no mask yet): {info['pending_boxes']} on "
              f"{info['images_with_pending_boxes']} images; 'samdesk batch {args.folder} "
              "--from-boxes' makes their masks")
    if "note" in info:
        print(f"  note: {info['note']}")
    return 0


POLYGON_FORMATS = {"labelme": "labelme-polygon", "coco-rle": "coco-polygon"}
"""What ``export --polygons`` turns a format into."""


def run_export(args: argparse.Namespace) -> int:
    from samdesk.export import ExportOptions, export

    fmt = args.format
    if args.polygons:
        fmt = POLYGON_FORMATS.get(fmt, fmt)
        if not fmt.endswith("-polygon"):
            from samdesk.errors import CliError

            raise CliError(f"--polygons: {fmt} writes no polygons; use it with "
                           f"{' or '.join(sorted(POLYGON_FORMATS))}")
    with open_for_reading(args.folder) as project:
        options = ExportOptions(out=args.out, only_done=args.only_done, images=args.images,
                                progress=Progress(f"export {fmt}"))
        summary = export(project, fmt, options)  # errors: one line naming the file
    for line in summary.lines():
        print(line)
    return 0


def run_unfitting(args: argparse.Namespace) -> int:
    """List, drop or keep the masks whose size is not their image's current size."""
    with Project.open(args.folder) as project:
        unfitting = project.unfitting_masks()
        for image_id, ids in unfitting.items():
            record = project.image(image_id)
            print(f"{display_path(record.path)}: {len(ids)} masks do not fit "
                  f"{record.width}x{record.height}")
        if args.drop:
            print(f"dropped {project.drop_unfitting_masks(list(unfitting))} masks")
        elif args.keep:
            project.keep_unfitting_masks(list(unfitting))
            print(f"kept the masks of {len(unfitting)} images")
        elif not unfitting:
            print("every mask fits its image")
    return 0


def run_import_any(args: argparse.Namespace) -> int:
    """``samdesk import FOLDER SOURCE [--format NAME]``: one line per problem, non-zero
    (and nothing written) when no image of the source is in the project."""
    from samdesk.export.detect import import_source, recognise

    fmt = args.format or recognise(args.source)  # before the project is opened or made
    with Project.open(args.folder) as project:
        _, summary = import_source(project, args.source, fmt, progress=Progress("import"))
    if summary.nothing_matched is not None:
        from samdesk.errors import CliError

        raise CliError(summary.nothing_matched)  # nothing was written
    print(f"import ({fmt}): " + summary.lines()[0])
    for line in summary.lines()[1:]:
        print(line)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from samdesk.export.coco_import import import_coco

    with Project.open(args.folder) as project:
        summary = import_coco(project, args.coco_json, progress=Progress("import"))
    if summary.nothing_matched is not None:
        from samdesk.errors import CliError

        raise CliError(summary.nothing_matched)  # nothing was written
    for line in summary.lines():
        print(line)
    return 0
