"""Download one file over HTTP(S) with progress, resume and verification.

:func:`fetch` writes to ``DEST.part`` and renames to ``DEST`` only after the
size and sha256 of that file on disk check out, so a file at ``DEST`` is
always complete. One process at a time fetches a destination: each holds an
exclusive lock (``flock``) on ``DEST.lock``; a second fetch of the same file
waits for the first, then finds it installed. An
interrupted transfer leaves the ``.part`` file, and the next call asks the
server for the rest with an HTTP ``Range`` request; a server that ignores
``Range`` sends the whole file again, which is handled too. A download that
turns out to be wrong (size or hash) is deleted, never kept for resuming.

Only the standard library is used (urllib). Every failure is a
:class:`FetchError` with a one-line message naming the URL or the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from samdesk.errorlog import shorten
from samdesk.errors import SamdeskError

try:
    import fcntl
except ImportError:  # Windows: no flock; fetches of one file are not serialised there
    fcntl = None  # type: ignore[assignment]

ProgressFn = Callable[[int, int | None], None]
"""Called as ``progress(bytes_done, bytes_total_or_None)``: once where a run starts
(bytes already on disk from an earlier run count as done), then after each chunk."""

CHUNK = 1 << 20
USER_AGENT = "samdesk-model-fetch/1"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class FetchError(SamdeskError):
    """A download failed; the message is one line naming the URL or file."""


@dataclass(frozen=True)
class Downloaded:
    """What :func:`download` did: ``path`` is installed; ``downloaded`` False when
    another process installed it while this one waited for the lock."""

    path: Path
    downloaded: bool


def part_path(dest: Path) -> Path:
    """Where the partial download of ``dest`` lives: ``DEST.part``."""
    return dest.with_name(dest.name + ".part")


def lock_path(dest: Path) -> Path:
    """The file whose lock a fetch of ``dest`` holds: ``DEST.lock``."""
    return dest.with_name(dest.name + ".lock")


@contextlib.contextmanager
def destination_lock(dest: Path, on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
    """Hold the exclusive lock on ``DEST.lock`` while the block runs.

    Yields True when another process (or thread) held it first and this one
    waited; ``on_wait()`` is called once before waiting. The lock goes with
    the file descriptor, so a process that dies releases it. The holder
    removes the lock file before letting go; a waiter that then holds the
    lock of a removed file opens the path again, so two never both hold it.
    """
    if fcntl is None:
        yield False
        return
    path = lock_path(dest)
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None and not waited:
                on_wait()
            waited = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed that file as it let go: take the new one
    try:
        yield waited
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def check_url(url: str) -> None:
    """Refuse, in one line naming it, a URL that is not http(s) with a host."""
    if not url.lower().startswith(("http://", "https://")):
        raise FetchError(f"{url}: only http:// and https:// URLs can be fetched")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (parsing the port is the check)
    except ValueError as exc:
        raise FetchError(f"{url}: not a valid URL ({shorten(str(exc), 120)})") from None
    if not parts.hostname:
        raise FetchError(f"{url}: not a valid URL (no host name)")


def sha256_file(path: Path, chunk: int = CHUNK) -> str:
    """The sha256 of a file as lowercase hex, read in ``chunk``-byte blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fetch(
    url: str,
    dest: Path,
    expected_size: int | None = None,
    sha256: str | None = None,
    progress: ProgressFn | None = None,
    chunk: int = CHUNK,
    timeout: float = 30.0,
    on_wait: Callable[[], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``: :func:`download`'s path."""
    return download(url, dest, expected_size, sha256, progress, chunk, timeout, on_wait).path


def download(
    url: str,
    dest: Path,
    expected_size: int | None = None,
    sha256: str | None = None,
    progress: ProgressFn | None = None,
    chunk: int = CHUNK,
    timeout: float = 30.0,
    on_wait: Callable[[], None] | None = None,
) -> Downloaded:
    """Download ``url`` to ``dest`` under the destination's lock.

    ``expected_size`` (bytes) and ``sha256`` (hex) are checked when given,
    on the file as written. ``timeout`` (seconds) bounds connecting and each
    read. When another fetch of ``dest`` holds the lock, ``on_wait()`` is
    called and this one waits; if that fetch installed a file that checks
    out, nothing is downloaded. Raises :class:`FetchError`; on a lost
    connection ``DEST.part`` stays for resume.
    """
    check_url(url)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    want_hash = sha256.lower() if sha256 else None
    with destination_lock(dest, on_wait) as waited:
        if waited and dest.is_file() and _checks_out(dest, expected_size, want_hash, chunk):
            return Downloaded(dest, False)
        return Downloaded(_fetch_locked(url, dest, expected_size, want_hash, progress, chunk,
                                        timeout), True)


def _checks_out(path: Path, size: int | None, want_hash: str | None, chunk: int) -> bool:
    """Whether the file at ``path`` has ``size`` bytes and sha256 ``want_hash`` (when given)."""
    if size is not None and path.stat().st_size != size:
        return False
    return want_hash is None or sha256_file(path, chunk) == want_hash


def _fetch_locked(
    url: str,
    dest: Path,
    expected_size: int | None,
    want_hash: str | None,
    progress: ProgressFn | None,
    chunk: int,
    timeout: float,
) -> Path:
    """:func:`download`'s work, with the destination's lock held."""
    part = part_path(dest)
    have = part.stat().st_size if part.exists() else 0
    if expected_size is not None and have > expected_size:
        part.unlink()
        have = 0
    if expected_size is not None and have == expected_size and have > 0:
        # A complete .part left by a run that stopped before renaming it.
        if want_hash is None or sha256_file(part, chunk) == want_hash:
            os.replace(part, dest)
            return dest
        part.unlink()
        have = 0
    for attempt in range(2):
        try:
            return _download(url, part, dest, have, expected_size, want_hash,
                             progress, chunk, timeout)
        except _RangeRejected:
            # The server refused our Range: the .part is not a prefix it knows.
            part.unlink(missing_ok=True)
            have = 0
            if attempt:
                raise FetchError(f"{url}: server refused to resume the download") from None
    raise AssertionError("unreachable")


class _RangeRejected(Exception):
    """HTTP 416, or a 206 that does not start where our .part ends."""


def _download(
    url: str,
    part: Path,
    dest: Path,
    have: int,
    expected_size: int | None,
    want_hash: str | None,
    progress: ProgressFn | None,
    chunk: int,
    timeout: float,
) -> Path:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except ValueError as exc:  # http.client.InvalidURL and the like
        raise FetchError(f"{url}: not a valid URL ({shorten(str(exc), 120)})") from None
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            raise _RangeRejected from None
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except TimeoutError:
        raise FetchError(f"{url}: no answer within {timeout:g} s") from None
    except urllib.error.URLError as exc:
        raise FetchError(f"{url}: {_reason(exc.reason)}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError(f"{url}: {_reason(exc)}") from None
    with response:
        start, total = _plan(response, url, have)
        if expected_size is not None and total is not None and total != expected_size:
            raise FetchError(
                f"{url}: server offers {total} bytes but {dest.name} should be "
                f"{expected_size} bytes"
            )
        total = total if total is not None else expected_size
        with open(part, "ab" if start else "wb") as out:
            if progress is not None:
                progress(start, total)  # where this run starts (resumed bytes)
            done = _copy(response, out, start, total, url, progress, chunk, timeout)
    if total is not None and done < total:
        raise FetchError(
            f"{url}: connection closed after {done} of {total} bytes; "
            f"run again to resume"
        )
    return _finish(part, dest, url, expected_size, want_hash, chunk)


def _plan(response: http.client.HTTPResponse, url: str, have: int) -> tuple[int, int | None]:
    """Where the body starts in the file and the file's full size, if known."""
    length = response.headers.get("Content-Length")
    body = int(length) if length and length.isdigit() else None
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != have:
            raise _RangeRejected
        full = match.group(3)
        return have, int(full) if full != "*" else None
    if response.status != 200:
        raise FetchError(f"{url}: unexpected HTTP {response.status}")
    return 0, body  # no Range asked, or the server ignored it: a fresh start


def _copy(
    response: BinaryIO,
    out: IO[bytes],
    done: int,
    total: int | None,
    url: str,
    progress: ProgressFn | None,
    chunk: int,
    timeout: float,
) -> int:
    """Stream the body into ``out``; returns the bytes now in the file.

    Errors reading the network become :class:`FetchError`; errors writing
    the disk (full, read-only) propagate as ``OSError``.
    """
    try:
        while True:
            try:
                block = response.read(chunk)
            except TimeoutError:
                raise FetchError(
                    f"{url}: stalled for {timeout:g} s after {done} bytes; run again to resume"
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                raise FetchError(
                    f"{url}: connection lost after {done} bytes ({_reason(exc)}); "
                    f"run again to resume"
                ) from None
            if not block:
                return done
            out.write(block)
            done += len(block)
            if progress is not None:
                progress(done, total)
    finally:
        out.flush()
        os.fsync(out.fileno())


def _finish(
    part: Path, dest: Path, url: str, expected_size: int | None, want_hash: str | None,
    chunk: int,
) -> Path:
    """Verify the complete ``.part`` as it lies on disk (size, then sha256 read
    back from the file) and rename it to ``dest``, or delete it."""
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        part.unlink()
        raise FetchError(
            f"{dest.name}: downloaded {size} bytes but expected {expected_size} "
            f"from {url}; the download was removed"
        )
    got_hash = sha256_file(part, chunk) if want_hash is not None else None
    if want_hash is not None and got_hash != want_hash:
        part.unlink()
        raise FetchError(
            f"{dest.name}: sha256 mismatch (expected {want_hash}, got {got_hash}) "
            f"from {url}; the download was removed"
        )
    os.replace(part, dest)
    return dest


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return " ".join(str(text).split())


class ProgressPrinter:
    """A :data:`ProgressFn` that draws one self-updating line on a stream.

    Shows bytes done / total, percent and the rate of this session (bytes
    resumed from an earlier run are not counted in the rate). Redraws at most
    every ``interval`` seconds; call :meth:`close` to end the line.
    """

    def __init__(self, label: str, stream: IO[str] | None = None, interval: float = 0.2):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self._base: int | None = None
        self._start = 0.0
        self._last = 0.0
        self._drawn: tuple[int, int | None] | None = None
        self._state: tuple[int, int | None] = (0, None)

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if self._base is None:
            self._base, self._start = done, now
        self._state = (done, total)
        if now - self._last >= self.interval or (total is not None and done >= total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        done, total = self._state
        text = f"{self.label}: {format_bytes(done)}"
        if total:
            text += f" / {format_bytes(total)} {100.0 * done / total:5.1f}%"
        elapsed = now - self._start
        if done > (self._base or 0) and elapsed > 0:
            text += f"  {format_bytes(int((done - (self._base or 0)) / elapsed))}/s"
        self.stream.write("\r" + text.ljust(72))
        self.stream.flush()
        self._drawn = self._state

    def close(self) -> None:
        """Draw the final state (if not on screen yet) and end the line."""
        if self._drawn is not None:
            if self._drawn != self._state:
                self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()


def format_bytes(count: int) -> str:
    """``1234567`` -> ``'1.2 MB'`` (decimal units, as download sizes are given)."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
