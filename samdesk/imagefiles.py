"""Image files on disk: which files are images, in what order, and their hashes.

Nothing here decodes or even opens an image for reading pixels: listing a
folder of 100,000 files costs one ``scandir`` per folder, so a project opens
at once. Decoding lives in :mod:`samdesk.images`.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from samdesk.errors import ImageReadError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
)
"""Lower-case suffixes (with the dot) of the files a project lists as images."""

_DIGITS = re.compile(r"[0-9]+")
_DIGIT_WIDTH = 32
_HASH_CHUNK = 1 << 20


def is_image_name(name: str) -> bool:
    """True when ``name`` ends with one of :data:`IMAGE_EXTENSIONS`, in any case."""
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS


def _pad_digits(match: re.Match[str]) -> str:
    return match.group().rjust(_DIGIT_WIDTH, "0")


def natural_key(text: str) -> tuple[str, str]:
    """Sort key that orders runs of digits by value: ``img2`` before ``img10``.

    Digit runs are zero-padded to 32 places so plain string comparison orders
    them by value; letters compare case-insensitively; ``/`` becomes ``\\0`` so
    paths compare folder by folder. The text itself breaks ties (``img01``
    against ``img1``, ``A`` against ``a``), so the order is total and stable.
    """
    return (_DIGITS.sub(_pad_digits, text.casefold().replace("/", "\0")), text)


def list_images(folder: str | os.PathLike[str]) -> list[str]:
    """Every image file under ``folder``, as relative POSIX paths in natural order.

    Subfolders are searched; folders and files whose name starts with ``.``
    are skipped (``.samdesk`` holds the project store; ``._IMG_1.jpg`` files
    are macOS resource forks, not images). Symbolic links are followed, each
    real folder is visited once, so a link loop cannot hang the listing. Files
    are recognised by extension only: none is opened, so a broken file is
    listed like any other and reported when it is decoded.

    Raises ``NotADirectoryError`` / ``FileNotFoundError`` when ``folder`` is
    not a readable folder; unreadable subfolders are skipped.
    """
    root = os.fspath(folder)
    found: list[str] = []
    seen: set[tuple[int, int]] = set()
    root_stat = os.stat(root)
    seen.add((root_stat.st_dev, root_stat.st_ino))
    stack: list[tuple[str, str]] = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            if not prefix:
                raise
            continue
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    st = entry.stat()
                    ident = (st.st_dev, st.st_ino)
                    if ident not in seen:
                        seen.add(ident)
                        stack.append((entry.path, prefix + name + "/"))
                elif is_image_name(name) and entry.is_file():
                    found.append(prefix + name)
            except OSError:
                continue  # a dangling link or a file removed while listing
    found.sort(key=natural_key)
    return found


def content_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of the file's bytes, read in 1 MiB chunks.

    Two files with equal bytes hash equal whatever their names; any change to
    the bytes changes the digest, which is how a project notices an image that
    was replaced after it was annotated. Raises :class:`ImageReadError`
    ("file not found", "permission denied", ...) when the file cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(_HASH_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        raise ImageReadError(Path(path), "file not found") from None
    except IsADirectoryError:
        raise ImageReadError(Path(path), "is a folder, not a file") from None
    except PermissionError:
        raise ImageReadError(Path(path), "permission denied") from None
    except OSError as exc:
        raise ImageReadError(Path(path), f"cannot read ({exc.strerror or exc})") from None
    return digest.hexdigest()
