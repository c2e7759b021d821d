"""File formats: exporters from a project, and the COCO importer.

Exporters are looked up by name in :data:`FORMATS`; each is a function
``(project, ExportOptions) -> ExportSummary``. Adding a format is one entry
in the registry. docs/formats.md says what each one writes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from samdesk.export.base import (
    ExportError,
    ExportOptions,
    ExportSummary,
    export_images,
    mark_export_folder,
    write_error,
)
from samdesk.export.coco import coco_path, export_coco_polygon, export_coco_rle
from samdesk.export.coco_import import ImportSummary, import_coco
from samdesk.export.labelme import export_labelme, export_labelme_polygon
from samdesk.export.png import export_png_instance, export_png_semantic
from samdesk.export.yolo import export_yolo
from samdesk.export.youtube_vis import export_youtube_vis

if TYPE_CHECKING:
    from samdesk.project import Project

Writer = Callable[["Project", ExportOptions], ExportSummary]


@dataclass(frozen=True)
class ExportFormat:
    """One export format: its writer, a one-line description, and what ``out`` names."""

    name: str
    writer: Writer
    description: str
    out_is_folder: bool


FORMATS: dict[str, ExportFormat] = {
    fmt.name: fmt
    for fmt in (
        ExportFormat("coco-rle", export_coco_rle,
                     "COCO instances JSON, masks as compressed RLE (exact, holes kept)", False),
        ExportFormat("coco-polygon", export_coco_polygon,
                     "COCO instances JSON, masks as polygons (every part, holes filled)", False),
        ExportFormat("png-instance", export_png_instance,
                     "16-bit PNG per image, pixel = instance index, JSON sidecar", True),
        ExportFormat("png-semantic", export_png_semantic,
                     "8-bit palette PNG per image, pixel = label id, labels.txt", True),
        ExportFormat("labelme", export_labelme,
                     "labelme JSON per image, masks as mask shapes (exact, holes kept)", True),
        ExportFormat("labelme-polygon", export_labelme_polygon,
                     "labelme JSON per image, masks as polygons (every part, holes filled)",
                     True),
        ExportFormat("yolo", export_yolo,
                     "YOLO segmentation (Ultralytics): data.yaml, images/, labels/*.txt "
                     "polygons (parts joined, holes filled)", True),
        ExportFormat("youtube-vis", export_youtube_vis,
                     "YouTube-VIS video instance JSON: videos of frames, one object per "
                     "track, RLE per frame (null where absent)", False),
    )
}


def export(project: Project, format_name: str, options: ExportOptions) -> ExportSummary:
    """Export ``project`` in the named format (a key of :data:`FORMATS`).

    A file that cannot be written raises :class:`ExportError` naming it.
    """
    fmt = FORMATS.get(format_name)
    if fmt is None:
        raise ExportError(f"unknown export format {format_name!r}; "
                          f"choose one of {', '.join(FORMATS)}")
    out = Path(options.out)
    if fmt.out_is_folder:
        if out.exists() and not out.is_dir():
            files = "JSON files" if format_name.startswith("labelme") else "PNGs"
            raise ExportError(f"{out}: is a file, and {format_name} writes a folder of {files}; "
                              "give a folder path (a new or an existing folder)")
    target = out if fmt.out_is_folder else coco_path(out)
    try:
        if fmt.out_is_folder:
            _refuse_folder_of_project_images(project, out)
        return fmt.writer(project, options)
    except OSError as exc:
        named = target
        if fmt.out_is_folder and exc.filename is not None:  # the PNG being written
            named = Path(os.fsdecode(exc.filename))
            if named.name.startswith(".") and named.name.endswith(".tmp"):
                named = target  # never a temporary file: the person did not ask for it
        raise write_error(exc, named) from exc


def _refuse_folder_of_project_images(project: Project, out: Path) -> None:
    """A folder export into a folder that holds images of the project would hide them
    (the export marker) or overwrite them (``a.png``): refuse before writing."""
    folder = project.folder.resolve()
    try:
        inside = out.resolve().relative_to(folder).as_posix()
    except ValueError:
        return  # outside the project: the usual case
    prefix = "" if inside == "." else inside + "/"
    records = export_images(project, ExportOptions(out=out))
    held = next((r.path for r in records if r.path.startswith(prefix)), None)
    if held is not None and prefix and _earlier_png_export(out):
        mark_export_folder(out)  # an export from before markers: its PNGs are not images
        held = None
    if held is not None:
        raise ExportError(f"{out}: holds images of the project ({held}); export into a new "
                          f"folder, e.g. beside the project: {default_export_folder(project)}")


def _earlier_png_export(folder: Path) -> bool:
    """Whether ``folder`` holds a samdesk PNG export written before export folders
    were marked: ``labels.json`` and a ``labels.txt`` whose first line is the background."""
    try:
        with open(folder / "labels.txt", encoding="utf-8") as table:
            first = table.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return first == "_background_\n" and (folder / "labels.json").is_file()


def default_export_folder(project: Project) -> Path:
    """Where exports go unless a person says otherwise: ``FOLDER-export`` beside the
    project folder, never inside it."""
    folder = project.folder.resolve()
    return folder.with_name(f"{folder.name}-export")


__all__ = [
    "FORMATS",
    "ExportError",
    "ExportFormat",
    "ExportOptions",
    "ExportSummary",
    "ImportSummary",
    "default_export_folder",
    "export",
    "import_coco",
]
