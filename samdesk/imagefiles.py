"""Image files on disk: which files are images, in what order, and their hashes.

Nothing here decodes or even opens an image for reading pixels: listing a
folder of 100,000 files costs one ``scandir`` per folder, so a project opens
at once. Decoding lives in :mod:`samdesk.images`.
"""

from __future__ import annotations

import hashlib
import operator
import os
import re
from collections.abc import Iterable
from pathlib import Path

from samdesk.errors import ImageReadError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
)
"""Lower-case suffixes (with the dot) of the files a project lists as images."""

_DIGIT_RUNS = re.compile(r"([0-9]+)")
_ZERO_PAD = operator.methodcaller("zfill", 32)
_HASH_CHUNK = 1 << 20
_KEY_END = "\0"
"""Ends the key part of :func:`natural_key`: below every character the key part holds."""


def is_image_name(name: str) -> bool:
    """True when ``name`` ends with one of :data:`IMAGE_EXTENSIONS`, in any case."""
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS


def _key_part(text: str) -> str:
    """``text`` casefolded, digit runs zero-padded to 32 places, ``/`` the lowest character.

    ``/`` becomes ``"\\1\\1"`` and a literal ``"\\1"`` becomes ``"\\1\\2"``: the order is
    that of "``/`` below everything", while ``"\\0"`` (passed through unchanged)
    stays free to end a key part or to join many texts.
    """
    folded = text.casefold()
    if "\1" in folded:
        folded = folded.replace("\1", "\1\2")
    parts = _DIGIT_RUNS.split(folded.replace("/", "\1\1"))
    parts[1::2] = map(_ZERO_PAD, parts[1::2])
    return "".join(parts)


def natural_key(text: str) -> str:
    """Sort key that orders runs of digits by value: ``img2`` before ``img10``.

    One string, so a list sorts by plain string comparison in C: the
    casefolded text with digit runs zero-padded to 32 places (compared by
    value) and ``/`` as the lowest character (paths compare folder by
    folder), then ``\\0`` and the text itself, which breaks ties (``img01``
    against ``img1``, ``A`` against ``a``), so the order is total and stable.
    """
    return _key_part(text.replace("\0", "/")) + _KEY_END + text


def natural_sorted(paths: Iterable[str]) -> list[str]:
    """``sorted(paths, key=natural_key)``, with the keys made for all paths at once.

    File paths never hold ``\\0``, so the paths are joined by it and the key
    parts made in a few passes over one long string; text that does hold
    ``\\0`` is sorted one key at a time (same order).
    """
    items = list(paths)
    joined = _KEY_END.join(items)
    if len(items) < 2 or joined.count(_KEY_END) != len(items) - 1:
        return sorted(items, key=natural_key)
    keys = _key_part(joined).split(_KEY_END)
    tagged = list(map(_KEY_END.join, zip(keys, items, strict=True)))  # natural_key of each
    tagged.sort()
    return _KEY_END.join(tagged).split(_KEY_END)[1::2]


def scan_images(folder: str | os.PathLike[str]) -> list[str]:
    """Every image file under ``folder``, as relative POSIX paths in no set order.

    See :func:`list_images`, which sorts them.
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
            with os.scandir(directory) as listing:
                entries = list(listing)
        except OSError:
            if not prefix:
                raise
            continue
        names = found if not prefix else []
        for entry in entries:
            name = entry.name
            if name[0] == ".":
                continue
            try:
                dot = name.rfind(".")
                if dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS and entry.is_file():
                    names.append(name)
                elif entry.is_dir():
                    st = entry.stat()
                    ident = (st.st_dev, st.st_ino)
                    if ident not in seen:
                        seen.add(ident)
                        stack.append((entry.path, prefix + name + "/"))
            except OSError:
                continue  # a dangling link or a file removed while listing
        if prefix:
            found.extend(map(prefix.__add__, names))
    return found


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
    return natural_sorted(scan_images(folder))


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
