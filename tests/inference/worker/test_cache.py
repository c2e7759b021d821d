"""Embedding cache: LRU by bytes in memory, fp16 files on disk that survive restarts and damage."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from samdesk.inference.engines.base import Embedding, Point, Prompts
from samdesk.inference.engines.grabcut import GrabCutEngine
from samdesk.inference.worker.cache import EmbeddingCache

MODEL = "sam2.1_hiera_tiny@0123abcd"


def features(seed: int, nbytes: int = 4000) -> Embedding:
    """A float32 embedding of ``nbytes`` bytes with values in -3..3."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(-3, 3, nbytes // 4).astype(np.float32)
    return Embedding("sam2.1_hiera_tiny", (480, 640), {"image_embed": values})


def entry_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.npz"))


def test_memory_keeps_the_most_recently_used_within_its_byte_bound() -> None:
    cache = EmbeddingCache(None, memory_bytes=12_000)  # room for three
    for name in "abc":
        cache.put(MODEL, name, features(ord(name)))
    assert cache.get(MODEL, "a") is not None  # a is now the most recent
    cache.put(MODEL, "d", features(4))
    assert [cache.in_memory(MODEL, k) for k in "abcd"] == [True, False, True, True]
    assert cache.memory_nbytes == 12_000


def test_entry_larger_than_memory_bound_is_served_from_disk(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, memory_bytes=1000)
    cache.put(MODEL, "big", features(1, nbytes=8000))
    assert not cache.in_memory(MODEL, "big") and cache.memory_nbytes == 0
    found = cache.lookup(MODEL, "big")
    assert found is not None and found[1] == "disk"


def test_disk_entry_survives_a_restart_as_float16(tmp_path: Path) -> None:
    original = features(7)
    original.tensors["count"] = np.arange(5, dtype=np.uint8)
    EmbeddingCache(tmp_path).put(MODEL, "img1", original)
    (path,) = entry_files(tmp_path)
    with np.load(path) as data:
        assert data["t_image_embed"].dtype == np.float16
        assert data["t_count"].dtype == np.uint8

    reopened = EmbeddingCache(tmp_path)
    found = reopened.lookup(MODEL, "img1")
    assert found is not None and found[1] == "disk"
    embedding = found[0]
    assert embedding.model_id == "sam2.1_hiera_tiny" and embedding.image_size == (480, 640)
    assert embedding.tensors["image_embed"].dtype == np.float32
    np.testing.assert_allclose(
        embedding.tensors["image_embed"], original.tensors["image_embed"], atol=3e-3
    )
    np.testing.assert_array_equal(embedding.tensors["count"], np.arange(5, dtype=np.uint8))
    assert reopened.lookup(MODEL, "img1")[1] == "memory"  # type: ignore[index]


def test_values_too_large_for_float16_are_kept_exactly(tmp_path: Path) -> None:
    big = Embedding("m", (2, 2), {"x": np.array([1e6, -3.5], np.float32)})
    EmbeddingCache(tmp_path).put(MODEL, "img", big)
    loaded = EmbeddingCache(tmp_path).get(MODEL, "img")
    assert loaded is not None
    np.testing.assert_array_equal(loaded.tensors["x"], [1e6, -3.5])


def test_other_model_or_image_is_a_miss(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put(MODEL, "img1", features(1))
    reopened = EmbeddingCache(tmp_path)
    assert reopened.get("sam_vit_b@feedbeef", "img1") is None
    assert reopened.get(MODEL, "img2") is None
    assert reopened.contains(MODEL, "img1") and not reopened.contains(MODEL, "img2")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_damaged_file_is_a_miss_and_is_deleted(tmp_path: Path, damage: str) -> None:
    EmbeddingCache(tmp_path).put(MODEL, "img1", features(1))
    (path,) = entry_files(tmp_path)
    data = path.read_bytes()
    damaged = {"garbage": os.urandom(len(data)), "truncated": data[: len(data) // 2], "empty": b""}
    path.write_bytes(damaged[damage])
    assert EmbeddingCache(tmp_path).get(MODEL, "img1") is None
    assert not path.exists()


def test_failed_write_leaves_no_entry_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    cache = EmbeddingCache(tmp_path)
    monkeypatch.setattr(os, "replace", crash)
    cache.put(MODEL, "img1", features(1))  # no exception: the session goes on
    monkeypatch.undo()
    assert cache.get(MODEL, "img1") is not None  # still served from memory
    assert list(tmp_path.iterdir()) == []
    assert EmbeddingCache(tmp_path).get(MODEL, "img1") is None


def test_temporary_file_of_a_dead_writer_is_never_read_and_is_cleaned(tmp_path: Path) -> None:
    leftover = tmp_path / ".half-written.tmp"
    leftover.write_bytes(b"PK\x03\x04 half a zip")
    old = time.time() - 3600
    os.utime(leftover, (old, old))
    cache = EmbeddingCache(tmp_path)
    assert not leftover.exists()
    assert cache.disk_nbytes() == 0


def test_disk_bound_deletes_the_least_recently_used_file(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put(MODEL, "a", features(1))
    one_file = cache.disk_nbytes()
    cache.put(MODEL, "b", features(2))
    base = time.time() - 1000
    for offset, key in ((0, "a"), (10, "b")):  # a written long ago, b later
        path = cache._path(MODEL, key)
        assert path is not None
        os.utime(path, (base + offset, base + offset))

    bounded = EmbeddingCache(tmp_path, disk_bytes=int(2.5 * one_file))
    assert bounded.get(MODEL, "a") is not None  # reading a counts as a use
    bounded.put(MODEL, "c", features(3))
    assert bounded.disk_nbytes() <= bounded.disk_bytes
    fresh = EmbeddingCache(tmp_path)
    assert [fresh.contains(MODEL, k) for k in "abc"] == [True, False, True]


def test_revisited_image_never_runs_the_encoder_again(tmp_path: Path) -> None:
    engine = GrabCutEngine()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 90, (200, 300, 3), dtype=np.uint8)
    image[60:140, 100:200] = (220, 60, 50)
    encodes: list[int] = []

    def encode() -> Embedding:
        encodes.append(1)
        return engine.embed(image)

    cache = EmbeddingCache(tmp_path)
    first, source = cache.get_or_compute("grabcut", "img1", encode)
    assert source == "computed"
    assert cache.get_or_compute("grabcut", "img1", encode)[1] == "memory"
    after_restart, source = EmbeddingCache(tmp_path).get_or_compute("grabcut", "img1", encode)
    assert source == "disk" and len(encodes) == 1

    prompts = Prompts(points=(Point(150, 100),))
    fresh = engine.predict(first, prompts).masks
    np.testing.assert_array_equal(engine.predict(after_restart, prompts).masks, fresh)
    assert fresh[0, 0, 60:140, 100:200].mean() > 0.9
