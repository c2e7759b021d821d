"""Which dataset format a source is, and the one table of importers.

:data:`IMPORTERS` maps a format name to an :class:`ImportFormat`: a
``recognise(source) -> bool`` that looks at a file or folder without
importing anything, and ``run(project, source, progress) -> summary``
that imports it. Adding an importer is one entry in that table; the
``samdesk import`` command and the window's File > Import… both read it.
Entries are tried in order and the first that recognises the source wins,
so a more specific format comes before a looser one (a folder of images
with labelme JSONs beside them is labelme, not a folder of PNGs).

An importer's summary is anything with ``lines() -> list[str]`` (short
lines for a person) and ``nothing_matched: str | None`` (set, and nothing
written, when no image of the source is in the project).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from samdesk.errors import FormatError
from samdesk.imagefiles import EXPORT_MARKER

if TYPE_CHECKING:
    from samdesk.project import Project

Progress = Callable[[int, int], None]

PEEK_FILES = 20
"""How many JSON files of a folder are looked into to recognise it."""


class ImportReport(Protocol):
    """What every importer returns."""

    nothing_matched: str | None

    def lines(self) -> list[str]: ...


Importer = Callable[["Project", Path, "Progress | None"], ImportReport]


@dataclass(frozen=True)
class ImportFormat:
    """One importable format: how it is recognised and how it is imported.

    ``looks_like`` says in a few words what ``recognise`` looks for; it is
    shown when no format recognises a source.
    """

    name: str
    recognise: Callable[[Path], bool]
    run: Importer
    looks_like: str


def read_json(path: Path) -> Any:
    """The parsed JSON of ``path``, or None when it cannot be read or parsed."""
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except (OSError, ValueError, RecursionError):
        return None


def json_files(folder: Path) -> Iterator[Path]:
    """``*.json`` files under ``folder`` (sorted, depth first), skipping hidden folders
    (``.samdesk`` too) and, when ``folder`` is not an export itself, the export
    folders in it (they hold :data:`EXPORT_MARKER`): a project folder's own
    exports are not its annotations."""
    inside_export = (folder / EXPORT_MARKER).exists()
    for root, dirs, files in os.walk(folder):
        if EXPORT_MARKER in files and not inside_export:
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.lower().endswith(".json") and not name.startswith("."):
                yield Path(root) / name


def is_coco(source: Path) -> bool:
    """A ``.json`` file holding an object with ``images`` and ``annotations`` lists."""
    if not (source.is_file() and source.suffix.lower() == ".json"):
        return False
    document = read_json(source)
    return (isinstance(document, dict) and isinstance(document.get("images"), list)
            and isinstance(document.get("annotations"), list))


def is_labelme_file(path: Path) -> bool:
    """A ``.json`` file holding an object with a ``shapes`` list (labelme, X-AnyLabeling)."""
    document = read_json(path)
    return isinstance(document, dict) and isinstance(document.get("shapes"), list)


def is_labelme(source: Path) -> bool:
    """A labelme JSON file, or a folder where one of the first :data:`PEEK_FILES`
    JSON files (subfolders included) is one."""
    if source.is_file():
        return source.suffix.lower() == ".json" and is_labelme_file(source)
    if not source.is_dir():
        return False
    for count, path in enumerate(json_files(source)):
        if count >= PEEK_FILES:
            return False
        if is_labelme_file(path):
            return True
    return False


def is_youtube_vis(source: Path) -> bool:
    from samdesk.export.youtube_vis_import import is_youtube_vis as recognised

    return recognised(source)


def _run_youtube_vis(project: Project, source: Path,
                     progress: Progress | None) -> ImportReport:
    from samdesk.export.youtube_vis_import import import_youtube_vis

    return import_youtube_vis(project, source, progress=progress)


def _run_coco(project: Project, source: Path, progress: Progress | None) -> ImportReport:
    from samdesk.export.coco_import import import_coco

    return import_coco(project, source, progress=progress)


def _run_labelme(project: Project, source: Path, progress: Progress | None) -> ImportReport:
    from samdesk.export.labelme_import import import_labelme

    return import_labelme(project, source, progress=progress)


def is_yolo(source: Path) -> bool:
    from samdesk.export.yolo_import import is_yolo as recognised

    return recognised(source)


def _run_yolo(project: Project, source: Path, progress: Progress | None) -> ImportReport:
    from samdesk.export.yolo_import import import_yolo

    return import_yolo(project, source, progress=progress)


def is_png(source: Path) -> bool:
    from samdesk.export.png_read import is_png_masks

    return is_png_masks(source)


def _run_png(project: Project, source: Path, progress: Progress | None) -> ImportReport:
    from samdesk.export.png_import import import_png

    return import_png(project, source, progress=progress)


IMPORTERS: dict[str, ImportFormat] = {
    fmt.name: fmt
    for fmt in (
        ImportFormat("coco", is_coco, _run_coco, "a .json with images and annotations"),
        ImportFormat("labelme", is_labelme, _run_labelme,
                     "a .json with shapes, or a folder of them"),
        ImportFormat("yolo", is_yolo, _run_yolo,
                     "a data.yaml, or a folder with one or with labels/*.txt"),
        ImportFormat("png", is_png, _run_png,
                     "a folder of one-channel mask PNGs (samdesk png-instance or "
                     "png-semantic, VOC SegmentationClass/SegmentationObject)"),
        ImportFormat("youtube-vis", is_youtube_vis, _run_youtube_vis,
                     "a .json with videos and annotations (each object a track)"),
    )
}
"""Every importer, in the order they are tried on a source."""


def recognise(source: str | Path) -> str:
    """The name of the format ``source`` is in (the first entry of :data:`IMPORTERS`
    that recognises it).

    Raises FormatError in one line naming the source and the formats when
    none does, or when the source does not exist.
    """
    source = Path(source)
    if not source.exists():
        raise FormatError(f"{source}: no such file or folder")
    for fmt in IMPORTERS.values():
        if fmt.recognise(source):
            return fmt.name
    kinds = "; ".join(f"{fmt.name}: {fmt.looks_like}" for fmt in IMPORTERS.values())
    raise FormatError(f"{source}: not a dataset samdesk recognises; give --format "
                      f"{'|'.join(IMPORTERS)} if it is one ({kinds})")


def import_source(project: Project, source: str | Path, format_name: str | None = None,
                  progress: Progress | None = None) -> tuple[str, ImportReport]:
    """Import ``source`` into ``project`` in the named format, or the one
    :func:`recognise` finds; returns the format name and the importer's summary."""
    source = Path(source)
    if format_name is None:
        format_name = recognise(source)
    fmt = IMPORTERS.get(format_name)
    if fmt is None:
        raise FormatError(f"unknown import format {format_name!r}; "
                          f"choose one of {', '.join(IMPORTERS)}")
    if not source.exists():
        raise FormatError(f"{source}: no such file or folder")
    return fmt.name, fmt.run(project, source, progress)
