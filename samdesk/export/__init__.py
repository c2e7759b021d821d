"""File formats: exporters from a project, and the COCO importer.

Exporters are looked up by name in :data:`FORMATS`; each is a function
``(project, ExportOptions) -> ExportSummary``. Adding a format is one entry
in the registry. docs/formats.md says what each one writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from samdesk.export.base import ExportError, ExportOptions, ExportSummary
from samdesk.export.coco import export_coco_polygon, export_coco_rle
from samdesk.export.coco_import import ImportSummary, import_coco
from samdesk.export.png import export_png_instance, export_png_semantic

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
    out = options.out
    if fmt.out_is_folder and out.exists() and not out.is_dir():
        raise ExportError(f"{out}: {format_name} writes a folder of PNGs, and this is a file")
    try:
        return fmt.writer(project, options)
    except OSError as exc:
        raise ExportError(f"{exc.filename or out}: cannot be written: "
                          f"{exc.strerror or exc}") from exc


__all__ = [
    "FORMATS",
    "ExportError",
    "ExportFormat",
    "ExportOptions",
    "ExportSummary",
    "ImportSummary",
    "export",
    "import_coco",
]
