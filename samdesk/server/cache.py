"""The server's memory caches: least recently used first out, bounded by bytes.

The window's cache (``samdesk.inference.worker.cache``) lives in the worker
package, which the server may not import; a server needs no disk copy
either, since a client that gets 404 for a forgotten ``image_id`` sends the
image again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class ByteLRU:
    """Values by key, at most ``max_bytes`` of them (by the size given to :meth:`put`).

    Thread-safe. A value larger than ``max_bytes`` is not kept at all.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        """The value, marked as just used; ``None`` when absent."""
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            self._items.move_to_end(key)
            return found[0]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: Hashable, value: Any, nbytes: int) -> bool:
        """Keep ``value`` (``nbytes`` big), evicting the least recently used; whether kept."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._used -= old[1]
            if nbytes > self.max_bytes:
                return False
            self._items[key] = (value, nbytes)
            self._used += nbytes
            while self._used > self.max_bytes:
                _, (_, size) = self._items.popitem(last=False)
                self._used -= size
            return True

    def discard(self, key: Hashable) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._used -= old[1]

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._used

    def __len__(self) -> int:
        return len(self._items)
