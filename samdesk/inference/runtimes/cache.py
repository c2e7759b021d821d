"""Where exported encoder graphs live on disk, and the key that names them.

A folder per (checkpoint content, family, config, samdesk's export version,
onnxruntime and torch versions): ``<root>/<family>-<digest16>-<key12>/``,
holding one ``NNN-<chunk>.onnx`` per chunk and, for ``onnx-int8``, its
``NNN-<chunk>.int8.onnx`` beside it. The checkpoint enters the key by its
SHA-256, so a fine-tuned file never reuses another's graphs, and a renamed
copy of one file reuses them.

``<root>`` is ``$SAMDESK_RUNTIME_CACHE`` when set, else
``platformdirs.user_cache_dir("samdesk")/runtimes``. Digests are remembered
by (path, size, mtime) in memory and in ``<root>/digests.json``, so a 375 MB
checkpoint is hashed once, not on every start.

Every file is written to a temporary name and renamed into place
(:func:`atomic_target`): a killed export leaves no half graph that loads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import platformdirs

from samdesk.inference.models.fetch import sha256_file

EXPORT_VERSION = 1
"""Bumped whenever the chunking or the exported graphs change: old folders are not reused."""
ENV_VAR = "SAMDESK_RUNTIME_CACHE"
DIGESTS_FILE = "digests.json"

_DIGESTS: dict[tuple[str, int, int], str] = {}
_LOCK = threading.Lock()


def cache_root() -> Path:
    """The folder that holds every exported model (created on first write, not here)."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override)
    return Path(platformdirs.user_cache_dir("samdesk")) / "runtimes"


def checkpoint_digest(path: Path) -> str:
    """SHA-256 (hex) of the checkpoint file at ``path``, hashed once per (path, size, mtime)."""
    path = Path(path).resolve()
    stat = path.stat()
    stamp = (str(path), stat.st_size, stat.st_mtime_ns)
    with _LOCK:
        known = _DIGESTS.get(stamp)
        if known is None:
            known = _read_digests().get(_stamp_text(stamp))
    if known is not None:
        _DIGESTS[stamp] = known
        return known
    digest = sha256_file(path)
    with _LOCK:
        _DIGESTS[stamp] = digest
        stored = _read_digests()
        stored[_stamp_text(stamp)] = digest
        with contextlib.suppress(OSError):  # a read-only cache only costs a re-hash
            _write_json(cache_root() / DIGESTS_FILE, stored)
    return digest


def model_folder(digest: str, family: str, config: str, versions: dict[str, str]) -> Path:
    """The folder for one checkpoint's graphs; ``versions`` names the libraries that wrote them."""
    identity = json.dumps({"digest": digest, "family": family, "config": config,
                           "export_version": EXPORT_VERSION, **versions}, sort_keys=True)
    key = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return cache_root() / f"{family}-{digest[:16]}-{key}"


def chunk_path(folder: Path, index: int, name: str, precision: str = "fp32") -> Path:
    """The graph file of chunk ``index`` (``name``) at ``precision`` (``fp32`` or ``int8``)."""
    suffix = ".onnx" if precision == "fp32" else f".{precision}.onnx"
    return folder / f"{index:03d}-{name}{suffix}"


@contextlib.contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it when the block ends without error.

    On an error the temporary file is removed and ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _stamp_text(stamp: tuple[str, int, int]) -> str:
    return f"{stamp[0]}|{stamp[1]}|{stamp[2]}"


def _read_digests() -> dict[str, str]:
    try:
        content = json.loads((cache_root() / DIGESTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def _write_json(path: Path, content: dict) -> None:
    with atomic_target(path) as temporary:
        temporary.write_text(json.dumps(content, indent=0, sort_keys=True), encoding="utf-8")
