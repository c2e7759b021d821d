"""The embedding cache: an LRU in memory bounded by bytes, and fp16 files on disk.

Entries are keyed by a *model key* (which model, and which checkpoint file of
it, made the embedding) and an *image key* (the image file's content hash), so
a revisited image never runs the encoder again, in this session or the next.

On disk each entry is one ``.npz`` file in ``folder``: float tensors stored as
float16 (float32 where a value would overflow float16) and read back as
float32; other dtypes (GrabCut's uint8 image) are stored as they are. A file is
written under a temporary name, flushed, fsynced and renamed into place, so a
crash never leaves a half-written entry under a real name. A file that cannot be
read back (truncated, corrupt, someone else's) counts as a miss and is deleted.
The folder is kept under ``disk_bytes`` by deleting the least recently used
files; use is recorded in the file's modification time, because many file
systems do not keep access times.

One cache may be shared between threads: every method takes an internal lock
(``get_or_compute`` releases it while it computes).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from samdesk.inference.engines.base import Embedding

log = logging.getLogger(__name__)

Source = Literal["memory", "disk", "computed"]
_FP16_MAX = float(np.finfo(np.float16).max)
_STALE_TEMP_S = 600.0  # a temporary file this old belongs to a writer that died
_SUFFIX = ".npz"


class EmbeddingCache:
    """Embeddings by ``(model_key, image_key)``, in memory and optionally on disk.

    ``folder``: where the ``.npz`` files live (``None``: memory only).
    ``memory_bytes`` / ``disk_bytes``: the bounds, in bytes of tensor data
    (memory) and of files (disk). An embedding larger than ``memory_bytes`` is
    only kept on disk.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str] | None = None,
        memory_bytes: int = 2 << 30,
        disk_bytes: int = 8 << 30,
    ) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.memory_bytes = memory_bytes
        self.disk_bytes = disk_bytes
        self._memory: OrderedDict[tuple[str, str], Embedding] = OrderedDict()
        self._memory_used = 0
        self._lock = threading.RLock()
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temps()

    # -- queries -----------------------------------------------------------

    def get(self, model_key: str, image_key: str) -> Embedding | None:
        """The cached embedding, from memory or else from disk; ``None`` on a miss."""
        found = self.lookup(model_key, image_key)
        return found[0] if found else None

    def lookup(self, model_key: str, image_key: str) -> tuple[Embedding, Source] | None:
        """Like :meth:`get`, also saying where the embedding came from."""
        key = (model_key, image_key)
        with self._lock:
            embedding = self._memory.get(key)
            if embedding is not None:
                self._memory.move_to_end(key)
                return embedding, "memory"
            embedding = self._read(model_key, image_key)
            if embedding is None:
                return None
            self._remember(key, embedding)
            return embedding, "disk"

    def in_memory(self, model_key: str, image_key: str) -> bool:
        """Whether the embedding is in memory (no file is touched)."""
        with self._lock:
            return (model_key, image_key) in self._memory

    def contains(self, model_key: str, image_key: str) -> bool:
        """Whether the embedding is in memory or has a file on disk (not read)."""
        with self._lock:
            path = self._path(model_key, image_key)
            return self.in_memory(model_key, image_key) or (path is not None and path.exists())

    @property
    def memory_nbytes(self) -> int:
        """Bytes of tensor data held in memory."""
        return self._memory_used

    def disk_nbytes(self) -> int:
        """Bytes of the entry files on disk (0 without a folder)."""
        return sum(size for _, _, size in self._entries())

    # -- updates -----------------------------------------------------------

    def put(self, model_key: str, image_key: str, embedding: Embedding) -> None:
        """Keep ``embedding`` in memory and write it to disk (then trim both)."""
        with self._lock:
            self._remember((model_key, image_key), embedding)
            if self.folder is not None:
                self._write(model_key, image_key, embedding)
                self._trim_disk(keep=self._path(model_key, image_key))

    def get_or_compute(
        self, model_key: str, image_key: str, compute: Callable[[], Embedding]
    ) -> tuple[Embedding, Source]:
        """The cached embedding, or ``compute()``'s, stored; and where it came from.

        The lock is not held while ``compute`` runs.
        """
        found = self.lookup(model_key, image_key)
        if found is not None:
            return found
        embedding = compute()
        self.put(model_key, image_key, embedding)
        return embedding, "computed"

    def discard(self, model_key: str, image_key: str) -> None:
        """Forget one entry, in memory and on disk."""
        with self._lock:
            old = self._memory.pop((model_key, image_key), None)
            if old is not None:
                self._memory_used -= old.nbytes
            path = self._path(model_key, image_key)
            if path is not None:
                path.unlink(missing_ok=True)

    def clear_memory(self) -> None:
        """Drop every in-memory entry (files stay)."""
        with self._lock:
            self._memory.clear()
            self._memory_used = 0

    # -- memory ------------------------------------------------------------

    def _remember(self, key: tuple[str, str], embedding: Embedding) -> None:
        old = self._memory.pop(key, None)
        if old is not None:
            self._memory_used -= old.nbytes
        if embedding.nbytes > self.memory_bytes:
            return
        self._memory[key] = embedding
        self._memory_used += embedding.nbytes
        while self._memory_used > self.memory_bytes:
            _, evicted = self._memory.popitem(last=False)
            self._memory_used -= evicted.nbytes

    # -- disk --------------------------------------------------------------

    def _path(self, model_key: str, image_key: str) -> Path | None:
        """The entry's file: readable model name, then a digest of both keys."""
        if self.folder is None:
            return None
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_key)[:48]
        digest = hashlib.sha256(f"{model_key}\0{image_key}".encode()).hexdigest()[:40]
        return self.folder / f"{slug}__{digest}{_SUFFIX}"

    def _write(self, model_key: str, image_key: str, embedding: Embedding) -> None:
        path = self._path(model_key, image_key)
        assert path is not None and self.folder is not None
        arrays: dict[str, np.ndarray] = {
            "meta_key": np.asarray(f"{model_key}\n{image_key}"),
            "meta_model_id": np.asarray(embedding.model_id),
            "meta_image_size": np.asarray(embedding.image_size, dtype=np.int64),
        }
        for name, tensor in embedding.tensors.items():
            arrays[f"t_{name}"] = _to_disk(np.asarray(tensor))
        handle, temp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez(stream, **arrays)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temp, path)
        except OSError as exc:  # a full or read-only disk: keep working from memory
            log.warning("cannot write embedding %s: %s", path, exc)
            with contextlib.suppress(OSError):
                os.unlink(temp)

    def _read(self, model_key: str, image_key: str) -> Embedding | None:
        path = self._path(model_key, image_key)
        if path is None or not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["meta_key"]) != f"{model_key}\n{image_key}":
                    raise ValueError("entry belongs to another model or image")
                height, width = (int(v) for v in data["meta_image_size"])
                tensors = {
                    name[2:]: _from_disk(data[name]) for name in data.files if name[:2] == "t_"
                }
                embedding = Embedding(str(data["meta_model_id"]), (height, width), tensors)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a miss
            log.warning("dropping unreadable embedding %s: %s", path, exc)
            path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # record the use for least-recently-used trimming
        return embedding

    def _entries(self) -> list[tuple[float, Path, int]]:
        """``(last use, path, size)`` of every entry file."""
        if self.folder is None:
            return []
        found = []
        with contextlib.suppress(FileNotFoundError), os.scandir(self.folder) as it:
            for entry in it:
                if entry.name.endswith(_SUFFIX) and not entry.name.startswith("."):
                    with contextlib.suppress(OSError):
                        stat = entry.stat()
                        found.append((stat.st_mtime, Path(entry.path), stat.st_size))
        return found

    def _trim_disk(self, keep: Path | None) -> None:
        entries = sorted(self._entries(), key=lambda e: e[0])
        total = sum(size for _, _, size in entries)
        for _, path, size in entries:
            if total <= self.disk_bytes:
                break
            if path == keep:
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size

    def _remove_stale_temps(self) -> None:
        assert self.folder is not None
        now = time.time()
        for temp in self.folder.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                if now - temp.stat().st_mtime > _STALE_TEMP_S:
                    temp.unlink()


def _to_disk(tensor: np.ndarray) -> np.ndarray:
    """float16 for float tensors whose values fit; other dtypes unchanged."""
    if not np.issubdtype(tensor.dtype, np.floating):
        return tensor
    finite = tensor[np.isfinite(tensor)]
    if finite.size and float(np.abs(finite).max()) > _FP16_MAX:
        return tensor.astype(np.float32)
    return tensor.astype(np.float16)


def _from_disk(tensor: np.ndarray) -> np.ndarray:
    """float32 for float tensors; other dtypes unchanged."""
    return tensor.astype(np.float32) if np.issubdtype(tensor.dtype, np.floating) else tensor


def model_key(name: str, checkpoint: Path | None) -> str:
    """Cache key of a model: its name plus a fingerprint of the checkpoint's bytes.

    The fingerprint hashes the size and the first and last MiB, so a replaced
    (fine-tuned) checkpoint never reuses another's embeddings, while a copy
    of the same file does.
    """
    if checkpoint is None or not Path(checkpoint).is_file():
        return name
    digest = hashlib.sha256()
    with open(checkpoint, "rb") as stream:
        size = stream.seek(0, 2)
        digest.update(str(size).encode())
        for offset in (0, max(0, size - (1 << 20))):
            stream.seek(offset)
            digest.update(stream.read(1 << 20))
    return f"{name}@{digest.hexdigest()[:16]}"
