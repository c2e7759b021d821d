"""Image files on disk: which files are images, in what order, and their hashes.

Nothing here decodes or even opens an image for reading pixels: listing a
folder of 100,000 files costs one ``scandir`` per folder, so a project opens
at once. Decoding lives in :mod:`samdesk.images`.
"""

from __future__ import annotations

import errno
import hashlib
import operator
import os
import re
import urllib.parse
from collections.abc import Iterable
from itertools import compress, repeat
from pathlib import Path

from samdesk.errors import ImageReadError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
)
"""Lower-case suffixes (with the dot) of the files a project lists as images."""

EXPORT_MARKER = ".samdesk-export"
"""A file samdesk writes into every folder an export creates: the scan skips such a
folder and everything below it, so a project never lists samdesk's own outputs."""

_DIGIT_RUNS = re.compile(r"([0-9]+)")
_DIGITS_TO_ZERO = str.maketrans("123456789", "000000000")
_PAD_WIDTH = 32
"""Digit runs are compared as if zero-padded to this many places (longer runs as they are)."""
_HASH_CHUNK = 1 << 20
_KEY_END = "\0"
"""Ends the key part of :func:`natural_key`: below every character the key part holds."""
_SUFFIXES = tuple(sorted(IMAGE_EXTENSIONS, key=lambda ext: (ext not in (".jpg", ".png"), ext)))
""":data:`IMAGE_EXTENSIONS`, the most common first (``str.endswith`` tries them in order)."""
_SUFFIXES_AS_TYPED = tuple(case for ext in _SUFFIXES for case in (ext, ext.upper()))
""":data:`_SUFFIXES` in lower and in upper case: most folders spell every suffix so."""
_NAME = operator.attrgetter("name")
_STORE_MARK = "/"
"""Starts a stored path that holds escaped bytes: a relative path never starts with ``/``."""
_STORE_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")
"""Bytes :func:`store_path` writes as they are: printable ASCII but ``%`` (and space)."""
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""Surrogate escapes of undecodable bytes, and control characters (a newline, a tab)."""
_SURROGATES = re.compile("[\ud800-\udfff]")


def store_path(path: str) -> str:
    """The text a project store keeps for the relative ``path``, losslessly.

    A name that is valid UTF-8 is kept as it is. One that is not (Python
    lists it with surrogate escapes, ``bad\\udcffname.png``) cannot be SQLite
    text, so it is kept as ``/`` and its bytes percent-escaped
    (``/bad%FFname.png``); :func:`stored_path` turns it back into the name
    that opens the exact file.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return _STORE_MARK + urllib.parse.quote(os.fsencode(path), safe=_STORE_SAFE)
    return path


def stored_path(text: str) -> str:
    """The relative path :func:`store_path` made ``text`` from."""
    if text.startswith(_STORE_MARK):
        return os.fsdecode(urllib.parse.unquote_to_bytes(text[1:]))
    return text


def store_paths(paths: list[str]) -> list[str]:
    """:func:`store_path` of each path; ``paths`` itself when all are UTF-8 (one C-level check)."""
    try:
        "\0".join(paths).encode("utf-8")
    except UnicodeEncodeError:
        return list(map(store_path, paths))
    return paths


def stored_paths(texts: list[str]) -> list[str]:
    """:func:`stored_path` of each text; ``texts`` itself when none is escaped."""
    if "\0" + _STORE_MARK in "\0" + "\0".join(texts):
        return list(map(stored_path, texts))
    return texts


def display_path(path: str, one_line: bool = True) -> str:
    """``path`` as a person is shown it: undecodable bytes as U+FFFD (\ufffd).

    ``one_line`` also shows control characters (a newline in a file name)
    as U+FFFD, so that the name stays on one line of text. Only for showing
    and for exported names: it is not the name that opens the file.
    """
    return (_UNPRINTABLE if one_line else _SURROGATES).sub("\ufffd", path)


def is_image_name(name: str) -> bool:
    """True when ``name`` ends with one of :data:`IMAGE_EXTENSIONS`, in any case."""
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS


def image_names(names: list[str]) -> list[str]:
    """The names of image files among ``names`` (one folder's file names), in their order.

    Those :func:`is_image_name` accepts that do not start with ``.`` (hidden
    files: ``._IMG_1.jpg`` is a macOS resource fork, not an image). Made by
    C-level passes, with no Python code run per name: lower-casing keeps
    every ``.`` and makes one only from a ``.``, so a lower-cased name ends
    with a suffix exactly when its last ``.`` starts that suffix. Names that
    end with a suffix in lower or upper case (most, in most folders) are not
    lower-cased at all.
    """
    flags = list(map(str.endswith, names, repeat(_SUFFIXES_AS_TYPED)))
    others = flags.count(False)
    if others > len(names) // 8:  # many other files: lower-case every name
        flags = list(map(str.endswith, map(str.lower, names), repeat(_SUFFIXES)))
    else:  # the usual big folder: a few names to look at again, found by C-level searches
        k = -1
        for _ in range(others):
            k = flags.index(False, k + 1)
            flags[k] = names[k].lower().endswith(_SUFFIXES)
    found = list(compress(names, flags))
    if "\0." in "\0" + "\0".join(found):  # one search instead of a call per name
        found = [name for name in found if name[0] != "."]
    return found


def _key_part(text: str, width: int = _PAD_WIDTH) -> str:
    """``text`` casefolded, digit runs zero-padded, ``/`` the lowest character.

    ``/`` becomes ``"\\1\\1"`` and a literal ``"\\1"`` becomes ``"\\1\\2"``: the order is
    that of "``/`` below everything", while ``"\\0"`` (passed through unchanged)
    stays free to end a key part or to join many texts.

    Digit runs are padded to ``width`` places; ``width=0`` pads them to the
    longest run in ``text`` (at most :data:`_PAD_WIDTH`), which orders keys
    made together exactly as padding to :data:`_PAD_WIDTH` does: runs no
    longer than the width compare by value either way, a run against any
    other character compares like any digit, and equal runs stay equal, so
    the first difference between two keys decides the same way. The keys are
    shorter, so quicker to build and to sort, and when every run has the
    same length (``IMG_0001`` ... ``IMG_9999``) there is nothing to pad.
    """
    folded = text.casefold()
    if "\1" in folded:
        folded = folded.replace("\1", "\1\2")
    folded = folded.replace("/", "\1\1")
    if not width and _runs_of_one_length(folded):
        return folded
    parts = _DIGIT_RUNS.split(folded)
    runs = parts[1::2]
    if runs:
        if not width:
            width = min(max(map(len, runs)), _PAD_WIDTH)
        parts[1::2] = map(str.zfill, runs, repeat(width))
    return "".join(parts)


def _runs_of_one_length(text: str) -> bool:
    """True when every run of digits in ``text`` has the same length (or there is none).

    A few C-level passes: with every digit turned into ``0``, no run is longer
    than the first one, and removing runs of its length leaves no digit.
    """
    first = _DIGIT_RUNS.search(text)
    if first is None:
        return True
    run = "0" * len(first.group())
    shape = text.translate(_DIGITS_TO_ZERO)
    return run + "0" not in shape and "0" not in shape.replace(run, "")


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
    parts made in a few passes over one long string, digit runs padded only
    to the longest run present (same order, see :func:`_key_part`); text
    that does hold ``\\0`` is sorted one key at a time (same order).
    """
    items = list(paths)
    joined = _KEY_END.join(items)
    if len(items) < 2 or joined.count(_KEY_END) != len(items) - 1:
        return sorted(items, key=natural_key)
    keys = _key_part(joined, width=0).split(_KEY_END)
    tagged = list(map(_KEY_END.join, zip(keys, items, strict=True)))  # natural_key of each
    tagged.sort()
    return _KEY_END.join(tagged).split(_KEY_END)[1::2]


def _folder_entries(entries: list[os.DirEntry[str]]) -> tuple[list[str], list[os.DirEntry[str]]]:
    """The image names and the subfolders, hidden ones left out, among one folder's entries.

    Symbolic links count as what they point to. The entries are filtered by
    C-level calls (their types come with the listing); if one cannot be
    looked at, they are looked at one by one and that one is left out.
    """
    try:
        files = list(filter(os.DirEntry.is_file, entries))
        folders = [] if len(files) == len(entries) else [
            entry for entry in filter(os.DirEntry.is_dir, entries) if entry.name[0] != "."]
    except OSError:
        return _folder_entries_one_by_one(entries)
    return image_names(list(map(_NAME, files))), folders


def broken_links(entries: list[os.DirEntry[str]]) -> list[tuple[str, str]]:
    """``(name, "broken link" | "link loop")`` of the image-named symbolic links among
    ``entries`` that lead nowhere; hidden names are left out, as the listing leaves them."""
    found = []
    for entry in entries:
        name = entry.name
        if name[0] == "." or not is_image_name(name):
            continue
        try:
            if not entry.is_symlink() or entry.is_file() or entry.is_dir():
                continue
            os.stat(entry.path)
        except OSError as exc:
            found.append((name, "link loop" if exc.errno == errno.ELOOP else "broken link"))
    return found


def _folder_entries_one_by_one(
        entries: list[os.DirEntry[str]]) -> tuple[list[str], list[os.DirEntry[str]]]:
    names: list[str] = []
    folders: list[os.DirEntry[str]] = []
    for entry in entries:
        name = entry.name
        if name[0] == ".":
            continue
        try:
            if is_image_name(name) and entry.is_file():
                names.append(name)
            elif entry.is_dir():
                folders.append(entry)
        except OSError:
            continue  # a link that cannot be followed, a file removed while listing
    return names, folders


def scan_images(folder: str | os.PathLike[str],
                problems: list[tuple[str, str]] | None = None) -> list[str]:
    """Every image file under ``folder``, as relative POSIX paths in no set order.

    See :func:`list_images`, which sorts them. ``problems``, when given, gets
    ``(relative path, reason)`` for each image-named symbolic link that leads
    nowhere ("broken link") or to itself ("link loop"); such links are not listed.
    """
    root = os.fspath(folder)
    found: list[str] = []
    root_stat = os.stat(root)
    seen = {(root_stat.st_dev, root_stat.st_ino)}
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
        names, folders = _folder_entries(entries)
        if problems is not None and len(names) < len(entries):  # links: known from the listing
            links = list(filter(os.DirEntry.is_symlink, entries))
            problems.extend((prefix + name, why) for name, why in broken_links(links))
        found.extend(map(prefix.__add__, names) if prefix else names)
        for entry in folders:
            try:
                st = entry.stat()
            except OSError:
                continue  # removed while listing
            ident = (st.st_dev, st.st_ino)
            if ident not in seen:
                seen.add(ident)
                if not os.path.lexists(os.path.join(entry.path, EXPORT_MARKER)):
                    stack.append((entry.path, f"{prefix}{entry.name}/"))
    return found


def list_images(folder: str | os.PathLike[str]) -> list[str]:
    """Every image file under ``folder``, as relative POSIX paths in natural order.

    Subfolders are searched; folders and files whose name starts with ``.``
    are skipped (``.samdesk`` holds the project store; ``._IMG_1.jpg`` files
    are macOS resource forks, not images), and so are subfolders holding
    :data:`EXPORT_MARKER` (samdesk's own exports). Symbolic links are followed, each
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
