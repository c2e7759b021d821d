"""The images of an export: upright copies, hard links, or none (``ExportOptions.images``).

Annotations are in each image's upright frame (EXIF orientation applied).
A reader that ignores EXIF (torchvision's ``CocoDetection``, datumaro) opens
a phone photo stored sideways as it is stored, so the image and its masks
disagree. So by default an export carries its images:

* ``"copy"``: every exported image is written to ``images/<relative path>``
  beside the annotation file (COCO) or inside the output folder (PNG), the
  project's sub-folders kept, so images of one name in two folders never
  collide; annotation files name it relative to ``images/``. A file stored
  upright is copied byte for byte (a copy already there with the source's
  size and modification time is kept). One with an EXIF orientation other
  than 1 is written upright with the orientation removed: PNG, TIFF and BMP
  losslessly, WebP as lossless WebP, JPEG re-encoded at quality 95 with the
  source's chroma subsampling (Pillow has no lossless JPEG transpose); its
  ICC profile and the rest of its EXIF are kept. Multi-frame files keep
  their first frame when turned.
* ``"link"``: a hard link to the project's file where it needs no turning,
  a copy where it does, or where no link can be made (another file system).
* ``"none"``: no images; names are relative to the project folder, and
  every image stored turned is named in the summary.

Nothing is ever written into the project's images: an images folder that is
the project folder, holds it, or holds images of the project is refused
before anything is written.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, JpegImagePlugin

from samdesk import images
from samdesk.annotations import ImageRecord
from samdesk.errors import ImageReadError
from samdesk.export.base import (
    ExportError,
    ExportOptions,
    ExportSummary,
    atomic_file,
    export_images,
    make_folder,
    mark_export_folder,
    write_error,
)
from samdesk.imagefiles import EXPORT_MARKER, display_path

if TYPE_CHECKING:
    from samdesk.project import Project

IMAGE_MODES = ("copy", "link", "none")
IMAGES_FOLDER = "images"
JPEG_QUALITY = 95
"""Quality of a JPEG written anew because it had to be turned upright."""
_ORIENTATION_TAG = 0x0112
_COPY_CHUNK = 1 << 20
_LOSSLESS_TIFF = {"raw", "tiff_lzw", "tiff_adobe_deflate", "packbits", "tiff_deflate"}


def check_mode(mode: str) -> None:
    """Refuse an unknown ``images`` mode in one line."""
    if mode not in IMAGE_MODES:
        raise ExportError(f"unknown images mode {mode!r}; choose one of {', '.join(IMAGE_MODES)}")


def image_name(record: ImageRecord) -> str:
    """The name an export gives an image, relative to ``images/`` (copy, link) or to the
    project folder (none): the same text, ``/`` separators, undecodable bytes as U+FFFD."""
    return display_path(record.path, one_line=False)


class ImagesOut:
    """Writes (or, with ``none``, checks) the images of one export into ``folder``.

    ``reserved`` holds paths relative to ``folder``'s parent that the export
    writes itself (a PNG export's masks): an image copy landing on one is
    refused before anything is written.
    """

    def __init__(self, project: Project, options: ExportOptions, folder: Path,
                 summary: ExportSummary, reserved: Iterable[str] = ()) -> None:
        check_mode(options.images)
        self.project = project
        self.mode = options.images
        self.folder = Path(folder)
        self.summary = summary
        self.created: list[Path] = []
        self._made = False
        self._existed = self.folder.exists()
        if self.mode != "none":
            self._refuse_clashes(reserved)
            summary.images_folder = self.folder

    def _refuse_clashes(self, reserved: Iterable[str]) -> None:
        """Refuse an images folder that would write over, hide or be the project's images,
        or over a file of the export itself."""
        folder = self.folder.resolve()
        project = self.project.folder.resolve()
        hint = "write the export elsewhere (e.g. beside the project) or use --images none"
        if folder == project or folder in project.parents:
            raise ExportError(f"{self.folder}: the export's images would go into the project "
                              f"folder {self.project.folder}; {hint}")
        records = export_images(self.project, ExportOptions(out=self.folder))  # unmarked only
        try:
            inside = folder.relative_to(project).as_posix() + "/"
        except ValueError:
            inside = None
        if inside is not None:
            held = next((r.path for r in records if r.path.startswith(inside)), None)
            if held is not None:
                raise ExportError(f"{self.folder}: holds images of the project "
                                  f"({display_path(held)}); {hint}")
        taken = {name.lower() for name in reserved}
        for record in records:
            name = f"{self.folder.name}/{image_name(record)}"
            if name.lower() in taken:
                raise ExportError(f"{self.folder.parent / name}: would be both a file of the "
                                  f"export and the copy of {display_path(record.path)}; "
                                  "rename one, or use --images none")

    def put(self, record: ImageRecord) -> bool:
        """Write (copy, link) or check (none) one image; False when it cannot be read now
        (it is then named in ``summary.skipped_images`` and left out of the export)."""
        source = self.project.image_file(record)
        target = self.folder / image_name(record)
        try:
            with images.opened(source) as image:
                orientation = images.recorded_orientation(image)
                turned = None
                if orientation != 1 and self.mode != "none" and not _made_from(target, source):
                    turned = _upright_file(image)
        except ImageReadError as exc:
            self.summary.skipped_images.append((record.path, exc.reason))
            return False
        if orientation != 1:
            self.summary.turned.append((record.path, orientation))
        if self.mode == "none":
            return True
        self._folder_ready(target.parent)
        fresh = not target.exists()
        if orientation != 1:
            if turned is not None:  # else the upright copy of an earlier export is current
                self._write_turned(turned, target)
                _same_time(source, target)
            self.summary.images_written["copied"] += 1
            self.summary.images_written["turned upright"] += 1
        else:
            try:
                linked = self.mode == "link" and self._link(source, target)
                if not linked:
                    self._copy(source, target)
            except FileNotFoundError:  # gone since it was opened
                self.summary.skipped_images.append((record.path, "file not found"))
                return False
            self.summary.images_written["linked" if linked else "copied"] += 1
        if fresh:
            self.created.append(target)
        return True

    def discard(self) -> None:
        """Remove the images this export created (a cancelled COCO export writes nothing)."""
        folders = set()
        for path in self.created:
            path.unlink(missing_ok=True)
            folders.update(p for p in path.parents if self.folder in p.parents)
        self.created.clear()
        if not self._existed:
            (self.folder / EXPORT_MARKER).unlink(missing_ok=True)
            folders.add(self.folder)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            try:
                folder.rmdir()  # only when empty: never what another wrote there
            except OSError:
                pass

    def _folder_ready(self, folder: Path) -> None:
        try:
            if not self._made:
                make_folder(self.folder)
                mark_export_folder(self.folder)  # also an existing one: never listed as images
                self._made = True
            folder.mkdir(parents=True, exist_ok=True)  # below the marked folder: no marker
        except OSError as exc:
            raise write_error(exc, folder) from exc

    def _write_turned(self, turned: tuple[Image.Image, str, dict[str, Any]], target: Path) -> None:
        picture, fmt, params = turned
        with atomic_file(target, "wb", durable=False) as stream:
            picture.save(stream, format=fmt, **params)

    def _copy(self, source: Path, target: Path) -> None:
        """Byte copy, kept when the copy there has the source's size and time already."""
        if _made_from(target, source) and os.path.getsize(target) == os.path.getsize(source):
            return
        with open(source, "rb") as reading, atomic_file(target, "wb", durable=False) as stream:
            shutil.copyfileobj(reading, stream, _COPY_CHUNK)
        _same_time(source, target)

    def _link(self, source: Path, target: Path) -> bool:
        """Hard-link ``target`` to ``source``; False when no link can be made here."""
        try:
            if os.path.samefile(source, target):
                return True  # linked by an earlier export
        except OSError:
            pass
        temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.link(source, temp)
        except FileNotFoundError:
            if source.exists():  # the folder of the target vanished: say so naming it
                raise write_error(FileNotFoundError(errno.ENOENT, "folder gone"), target) from None
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EROFS):
                raise write_error(exc, target) from exc
            return False  # another file system, or none that links: copy instead
        try:
            os.replace(temp, target)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise write_error(exc, target) from exc
        return True


def _made_from(target: Path, source: Path) -> bool:
    """Whether ``target`` is a file an earlier export wrote from ``source`` as it is now:
    another file (not a link to it) with the source's modification time."""
    try:
        there, stat = os.stat(target), os.stat(source)
    except OSError:
        return False
    return there.st_mtime_ns == stat.st_mtime_ns and (there.st_dev, there.st_ino) != (
        stat.st_dev, stat.st_ino)


def _same_time(source: Path, target: Path) -> None:
    """Give ``target`` the source's times: the next export's quick check."""
    try:
        stat = os.stat(source)
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    except OSError:
        pass  # the copy is good; only the quick check of the next export is lost


def _upright_file(image: Image.Image) -> tuple[Image.Image, str, dict[str, Any]]:
    """The opened ``image`` decoded and turned upright, the format to write it in
    (its own) and the save options: lossless where the format allows, the
    orientation tag removed, ICC profile and other EXIF kept."""
    fmt = image.format or "PNG"
    pending = images.pending_orientation(image)
    image.load()  # first: a TIFF this Pillow turns itself reads its own tag while loading
    params: dict[str, Any] = {}
    if icc := image.info.get("icc_profile"):
        params["icc_profile"] = icc
    if dpi := image.info.get("dpi"):
        params["dpi"] = dpi
    exif = Image.Exif()  # a copy: the image's own is left as it is
    exif.load(image.getexif().tobytes())
    exif.pop(_ORIENTATION_TAG, None)
    if fmt in ("JPEG", "MPO"):
        fmt = "JPEG"
        params["quality"] = JPEG_QUALITY
        sampling = JpegImagePlugin.get_sampling(image)
        if sampling >= 0:
            params["subsampling"] = sampling
    elif fmt == "WEBP":
        params.update(lossless=True, exact=True)
    elif fmt == "TIFF":
        compression = image.info.get("compression")
        params["compression"] = compression if compression in _LOSSLESS_TIFF else "tiff_lzw"
    elif fmt == "PNG" and "transparency" in image.info:
        params["transparency"] = image.info["transparency"]
    if fmt != "TIFF" and len(exif):
        params["exif"] = exif.tobytes()
    picture = images.turn_upright(image, pending)
    return (image.copy() if picture is image else picture), fmt, params
