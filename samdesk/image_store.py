"""Decoded images kept in memory between the GUI thread and the inference worker.

:class:`ImageStore` caches what a loader (by default
:func:`samdesk.images.load_rgb`) makes of each file, bounded in bytes and
least recently used first out, with one decode per image however many
threads ask. Qt-free, torch-free.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from samdesk.images import load_rgb

__all__ = ["ImageStore"]


class ImageStore:
    """Decoded images kept in memory, least recently used dropped past ``max_bytes``.

    ``get(path)`` returns what ``loader`` (default :func:`load_rgb`: upright
    ``(H, W, 3)`` uint8) makes of the file, decoding it only the first time;
    an image revisited while still cached is not read from disk again. Safe to
    share between the GUI thread and the inference worker: two threads asking
    for the same image at once wait for one decode. Cached arrays are shared,
    so they are read-only; copy one before drawing on it. A failed decode is
    not cached: the error is raised to every waiter and the next ``get``
    tries again. An image larger than ``max_bytes`` is returned but not kept.
    """

    def __init__(
        self,
        max_bytes: int = 1 << 30,
        loader: Callable[[Path], np.ndarray] = load_rgb,
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._loader = loader
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._pending: dict[str, Future[np.ndarray]] = {}
        self._nbytes = 0

    @staticmethod
    def _key(path: str | os.PathLike[str]) -> str:
        return os.path.abspath(os.fspath(path))

    def get(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The decoded image of ``path``; raises :class:`ImageReadError` naming it."""
        key = self._key(path)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            pending = self._pending.get(key)
            if pending is None:
                future: Future[np.ndarray] = Future()
                self._pending[key] = future
        if pending is not None:
            return pending.result()
        try:
            image = self._loader(Path(path))
            image.setflags(write=False)
        except BaseException as exc:
            with self._lock:
                if self._pending.get(key) is future:
                    del self._pending[key]
            future.set_exception(exc)
            raise
        with self._lock:
            # discard() or clear() during the decode means the file may have
            # changed: hand this result to its waiters but do not keep it.
            if self._pending.get(key) is future:
                del self._pending[key]
                self._insert(key, image)
        future.set_result(image)
        return image

    def _insert(self, key: str, image: np.ndarray) -> None:
        """Cache ``image`` and evict the least recently used past the bound (lock held)."""
        if image.nbytes > self.max_bytes:
            return
        self._cache[key] = image
        self._nbytes += image.nbytes
        while self._nbytes > self.max_bytes:
            _, evicted = self._cache.popitem(last=False)
            self._nbytes -= evicted.nbytes

    def peek(self, path: str | os.PathLike[str]) -> np.ndarray | None:
        """The cached image of ``path`` or ``None``; never decodes."""
        with self._lock:
            return self._cache.get(self._key(path))

    def discard(self, path: str | os.PathLike[str]) -> None:
        """Forget ``path`` (its file changed); the next ``get`` decodes it again."""
        key = self._key(path)
        with self._lock:
            image = self._cache.pop(key, None)
            if image is not None:
                self._nbytes -= image.nbytes
            self._pending.pop(key, None)

    def clear(self) -> None:
        """Forget every image."""
        with self._lock:
            self._cache.clear()
            self._pending.clear()
            self._nbytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes of pixel data held now (at most ``max_bytes``)."""
        with self._lock:
            return self._nbytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str | os.PathLike):
            return False
        with self._lock:
            return self._key(path) in self._cache
