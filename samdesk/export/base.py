"""What every exporter shares: options, the summary, atomic writes, and the image walk.

An exporter is a function ``(project, options) -> ExportSummary``. It walks
the project's images with :func:`walk`, which applies the common rules once:

* ``only_done`` keeps images whose status is "done";
* an image that cannot be read (status "error", missing file) is skipped
  and named in the summary;
* a mask layer with no label, an empty mask, or a mask whose size is not the
  image's upright size is not exported and is counted in the summary;
* ``progress(done, total)`` is called after each image, and ``cancel()``
  returning True stops the walk before the next image.

Annotations are read one image at a time (one query per image, none per
annotation), so memory stays flat however large the project.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pycocotools import mask as cocomask

from samdesk import masks
from samdesk.annotations import ImageRecord, ImageStatus, Label, MaskLayer
from samdesk.errors import SamdeskError
from samdesk.imagefiles import EXPORT_MARKER, display_path

if TYPE_CHECKING:
    from samdesk.project import Project

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]


class ExportError(SamdeskError):
    """An export cannot be written as asked; the message says why in one line."""


@dataclass(frozen=True)
class ExportOptions:
    """Where and what to export.

    ``out`` is the JSON file for the COCO formats (a folder gets
    ``instances.json`` inside it) and the output folder for the PNG formats.
    """

    out: Path
    only_done: bool = False
    progress: Progress | None = None
    cancel: Cancel | None = None
    images: str = "copy"
    """``"copy"``: the images are written upright into ``images/`` beside the annotation
    file (COCO) or inside ``out`` (PNG), and named relative to it; ``"link"``: hard
    links where a file needs no turning, copies where it does; ``"none"``: no images,
    names relative to the project folder (see :mod:`samdesk.export.images_out`)."""


@dataclass
class ExportSummary:
    """What an export wrote and what it left out.

    ``skipped_images`` holds ``(image path, reason)``; ``skipped_annotations``
    counts left-out mask layers by reason ("no label", "empty mask", ...).
    ``cancelled`` is True when ``cancel()`` stopped the export: the COCO
    formats then write no file, the PNG formats keep the images already done.
    """

    format: str
    files: list[Path] = field(default_factory=list)
    images: int = 0
    annotations: int = 0
    skipped_images: list[tuple[str, str]] = field(default_factory=list)
    skipped_annotations: Counter[str] = field(default_factory=Counter)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Lines about the export as a whole (what its format cannot hold, and how much)."""
    cancelled: bool = False
    images_folder: Path | None = None
    """Where the images were written (``--images copy`` or ``link``); None with ``none``."""
    images_written: Counter[str] = field(default_factory=Counter)
    """Images written into :attr:`images_folder` by how: "copied", "linked", "turned
    upright" (written anew, upright, orientation removed; also counted as copied)."""
    turned: list[tuple[str, int]] = field(default_factory=list)
    """``(image path, EXIF orientation)`` of each image stored turned. With ``none``
    the export points at these files as they are: readers that ignore EXIF see them
    turned, unlike their masks."""

    def lines(self) -> list[str]:
        """The summary as short lines for a person (CLI output, a dialog)."""
        done = "cancelled" if self.cancelled else "done"
        out = [f"{self.format}: {done}, {self.images} images, {self.annotations} masks, "
               f"{len(self.files)} files written"]
        if self.images_folder is not None:
            how = ", ".join(f"{count} {what}" for what in ("copied", "linked", "turned upright")
                            if (count := self.images_written[what]))
            out.append(f"images in {self.images_folder}: {how or 'none'}")
        out += [f"skipped image {display_path(path)}: {reason}"
                for path, reason in self.skipped_images]
        out += [f"skipped {count} masks: {reason}"
                for reason, count in sorted(self.skipped_annotations.items())]
        out += [f"warning {display_path(path)}: {reason}" for path, reason in self.warnings]
        if self.images_folder is None and self.turned:
            out += [f"warning {display_path(path)}: stored turned (EXIF orientation "
                    f"{orientation}); the export describes it upright"
                    for path, orientation in self.turned]
            out.append(f"{len(self.turned)} images are stored turned: readers that ignore "
                       "EXIF orientation (torchvision, datumaro) see them turned and their "
                       "masks do not line up; export with --images copy for upright copies "
                       "every reader agrees on")
        out += [f"note: {note}" for note in self.notes]
        return out


@dataclass(frozen=True)
class ImageWork:
    """One image to export: its record (upright size filled in), its kept layers
    (back to front), each layer's pixel count and tight ``[x, y, w, h]`` box
    (COCO convention, pixels, floats)."""

    image: ImageRecord
    width: int
    height: int
    layers: list[MaskLayer]
    areas: list[int]
    boxes: list[list[float]] = field(default_factory=list)


def write_error(exc: OSError, target: Path) -> ExportError:
    """One line for an OSError met while writing ``target`` (the file the person asked
    for, never a temporary file beside it), saying what to do where it can."""
    if exc.errno == errno.ENOSPC:
        return ExportError(f"disk full: could not write {target}; free some space "
                           "or export to another disk")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ExportError(f"{target}: cannot be written (permission denied or read-only); "
                           "choose another place to export to")
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        blocking = _file_in_the_way(target)
        if blocking is not None:
            return ExportError(f"{target}: {blocking} is a file, not a folder; "
                               "remove it or choose another place to export to")
    if exc.errno == errno.EISDIR:
        return ExportError(f"{target}: is a folder; give a file name")
    return ExportError(f"{target}: cannot be written: {exc.strerror or exc}")


def _file_in_the_way(target: Path) -> Path | None:
    """``target`` or the first folder above it that exists as something else than a folder."""
    for place in (*reversed(target.parents), target):
        if place.exists() and not place.is_dir():
            return place
    return None


def make_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents); the top-most folder made gets :data:`EXPORT_MARKER`.

    The marker is written before anything else goes in, so a project folder
    that holds the export never lists the exported files as images, even
    after an export that stopped half way (the scan skips everything below
    a marked folder). An existing folder is marked only by
    :func:`mark_export_folder`.
    """
    if folder.is_dir():
        return
    top = folder
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    folder.mkdir(parents=True, exist_ok=True)
    mark_export_folder(top)


def mark_export_folder(folder: Path) -> None:
    """Write :data:`EXPORT_MARKER` into ``folder`` (kept if it is already there)."""
    marker = folder / EXPORT_MARKER
    if not marker.exists():
        marker.write_text("Written by samdesk: this folder holds an export. A samdesk "
                          "project never lists the images in it.\n", encoding="utf-8")


def _create_temp(path: Path) -> tuple[int, Path]:
    """Create a new temporary file beside ``path``, opened for writing.

    Made with ``os.open(..., 0o666)`` so the umask applies as for any new file
    (``tempfile.mkstemp`` makes every file 0600).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path))


@contextmanager
def atomic_file(path: Path, mode: str = "w", durable: bool = True) -> Iterator[IO]:
    """Write ``path`` through a temporary file in the same folder, then ``os.replace``.

    Readers never see a half-written file; on an exception the temporary
    file is removed and ``path`` is left as it was. ``durable`` also flushes
    the data to disk before the rename (one fsync: worth it for one big JSON,
    too slow for thousands of PNGs that can be written again). The file gets
    the mode a plainly created file would (the umask applies: 0644 under 022).
    An OSError raises :class:`ExportError` naming ``path``.
    """
    try:
        make_folder(path.parent)
        handle, temp = _create_temp(path)
    except OSError as exc:
        raise write_error(exc, path) from exc
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(handle, mode, encoding=encoding) as stream:
            yield stream
            stream.flush()
            if durable:
                os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(exc, path) from exc
        raise


def labels_by_id(project: Project) -> dict[int, Label]:
    return {label.id: label for label in project.labels()}


def _upright_size(project: Project, image: ImageRecord) -> tuple[ImageRecord, str | None]:
    """The record with width/height filled, or a reason it cannot be exported."""
    if image.error is None and image.width is None:
        image = project.ensure_image_info(image.id)
    if image.error is not None or image.status == ImageStatus.ERROR:
        return image, image.error or "cannot be read"
    if image.width is None or image.height is None:
        from samdesk import images  # read-only projects cannot store the size

        try:
            width, height = images.read_size(project.image_file(image))
        except SamdeskError as exc:
            return image, str(getattr(exc, "reason", exc))
        image = replace(image, width=width, height=height)
    return image, None


def export_images(project: Project, options: ExportOptions) -> list[ImageRecord]:
    """The images an export writes: all (or those marked done), less any that lie in a
    folder holding :data:`EXPORT_MARKER` (an earlier export the store still lists:
    the project has not been rescanned since)."""
    records = project.images(ImageStatus.DONE if options.only_done else None)
    marked: dict[str, bool] = {"": False}

    def in_export(folder: str) -> bool:
        if folder not in marked:
            parent = folder.rpartition("/")[0]
            marked[folder] = (in_export(parent)
                              or (project.folder / folder / EXPORT_MARKER).exists())
        return marked[folder]

    return [r for r in records if not in_export(r.path.rpartition("/")[0])]


def walk(project: Project, options: ExportOptions, summary: ExportSummary,
         labels: dict[int, Label]) -> Iterator[ImageWork]:
    """Yield each image to export with the layers that go into it, back to front.

    Updates ``summary`` (skips, counts of left-out layers, ``cancelled``);
    the caller adds ``summary.images`` / ``summary.annotations`` for what it
    actually writes.
    """
    records = export_images(project, options)
    unknown = [r.id for r in records if r.error is None and r.width is None]
    if unknown and not project.read_only:  # read every new header first, few commits
        project.ensure_image_infos(unknown)
        records = export_images(project, options)
    total = len(records)
    for done, record in enumerate(records):
        if options.cancel is not None and options.cancel():
            summary.cancelled = True
            return
        image, reason = _upright_size(project, record)
        if reason is not None:
            summary.skipped_images.append((record.path, reason))
        else:
            if image.changed:
                summary.warnings.append((image.path, "file changed on disk since it was read"))
            assert image.width is not None and image.height is not None
            kept, unfit = [], 0
            for layer in project.annotations(image.id):
                problem = _layer_problem(layer, image.width, image.height, labels)
                if problem is None:
                    kept.append(layer)
                else:
                    summary.skipped_annotations[problem] += 1
                    unfit += problem == _UNFIT
            if unfit:
                summary.warnings.append((image.path, f"{unfit} masks not exported: they do not "
                                         f"fit its size {image.width}x{image.height} (file "
                                         "replaced; see samdesk unfitting)"))
            areas, boxes = _measure(kept)
            empty = [k for k, pixels in enumerate(areas) if pixels == 0]
            if empty:
                summary.skipped_annotations["empty mask"] += len(empty)
                keep = [k for k, pixels in enumerate(areas) if pixels]
                kept = [kept[k] for k in keep]
                areas = [areas[k] for k in keep]
                boxes = [boxes[k] for k in keep]
            yield ImageWork(image, image.width, image.height, kept, areas, boxes)
        if options.progress is not None:
            options.progress(done + 1, total)


_UNFIT = "mask size differs from the image's upright size"


def _layer_problem(layer: MaskLayer, width: int, height: int,
                   labels: dict[int, Label]) -> str | None:
    """Why a layer is left out before its pixels are counted (None if it is not)."""
    if layer.label_id is None or layer.label_id not in labels:
        return "no label"
    if list(layer.rle["size"]) != [height, width]:
        return _UNFIT
    return None


def _measure(layers: list[MaskLayer]) -> tuple[list[int], list[list[float]]]:
    """Pixel count and tight ``[x, y, w, h]`` box of each layer, one pycocotools call each
    for all of an image's layers (not one per layer)."""
    if not layers:
        return [], []
    coco = []
    for layer in layers:
        rle = masks.normalize(layer.rle)
        coco.append({"size": rle["size"], "counts": rle["counts"].encode("ascii")})
    return cocomask.area(coco).tolist(), cocomask.toBbox(coco).tolist()
