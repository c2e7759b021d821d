"""Exported graphs are cached by the checkpoint's content: found again, never shared.

A random-weight tiny SAM (2 blocks: 6 chunks) keeps each export to seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from samdesk.inference.engines import loading
from samdesk.inference.runtimes import cache
from tests.model_factories import (
    TINY_SAM,
    make_sam_checkpoint,
    registered_test_model,
    textured_image,
)

IMAGE = textured_image(240, 320, seed=1)
CHUNKS = ["patch", "block00-attention", "block00-mlp", "block01-attention", "block01-mlp",
          "neck"]


@pytest.fixture
def spec():
    with registered_test_model("sam", TINY_SAM) as spec:
        yield spec


def _graphs(folder: Path, pattern: str = "*.onnx") -> list[Path]:
    return sorted(folder.glob(f"*/{pattern}"))


def test_a_second_load_finds_the_graphs_and_exports_nothing(tmp_path, spec, exports,
                                                            runtime_cache):
    checkpoint = make_sam_checkpoint(tmp_path / "sam.pth")
    first = loading.load_model(spec.name, checkpoint, "cpu", runtime="onnx")
    assert exports.chunks == CHUNKS
    assert [p.name for p in _graphs(runtime_cache)] == [
        f"{i:03d}-{name}.onnx" for i, name in enumerate(CHUNKS)]
    progress = []
    second = loading.load_model(spec.name, checkpoint, "cpu", runtime="onnx",
                                progress=lambda done, total: progress.append((done, total)))
    assert exports.chunks == CHUNKS, "the second load exported again"
    assert progress == [(i, 6) for i in range(1, 7)]
    assert second.runtime == "onnx" and second.runtime_note == ""
    a, b = first.embed(IMAGE), second.embed(IMAGE)
    np.testing.assert_array_equal(a.tensors["image_embed"], b.tensors["image_embed"])


def test_a_copy_of_the_same_checkpoint_reuses_its_graphs(tmp_path, spec, exports):
    checkpoint = make_sam_checkpoint(tmp_path / "sam.pth")
    loading.load_model(spec.name, checkpoint, "cpu", runtime="onnx")
    copy = shutil.copy(checkpoint, tmp_path / "renamed.pth")
    engine = loading.load_model(spec.name, Path(copy), "cpu", runtime="onnx")
    assert engine.runtime == "onnx" and exports.chunks == CHUNKS


def test_two_checkpoints_of_one_config_never_share_graphs(tmp_path, spec, runtime_cache):
    embeddings = []
    for seed in (0, 1):  # a "fine-tuned" file: same architecture, other weights
        checkpoint = make_sam_checkpoint(tmp_path / f"sam{seed}.pth", seed=seed)
        onnx = loading.load_model(spec.name, checkpoint, "cpu", runtime="onnx")
        reference = loading.load_model(spec.name, checkpoint, "cpu")
        ours = onnx.embed(IMAGE).tensors["image_embed"]
        np.testing.assert_allclose(ours, reference.embed(IMAGE).tensors["image_embed"],
                                   atol=1e-4, rtol=0)
        embeddings.append(ours)
    folders = sorted(p.name for p in runtime_cache.iterdir() if p.is_dir())
    assert len(folders) == 2 and folders[0] != folders[1]
    assert np.abs(embeddings[0] - embeddings[1]).max() > 0.1


def test_the_checkpoint_is_hashed_once_per_size_and_mtime(tmp_path, monkeypatch):
    checkpoint = tmp_path / "weights.pth"
    checkpoint.write_bytes(b"weights" * 1000)
    hashed = []
    real = cache.sha256_file
    monkeypatch.setattr(cache, "sha256_file", lambda path: hashed.append(path) or real(path))
    digest = cache.checkpoint_digest(checkpoint)
    assert cache.checkpoint_digest(checkpoint) == digest and len(hashed) == 1
    monkeypatch.setattr(cache, "_DIGESTS", {})  # a new process: the digest file remembers
    assert cache.checkpoint_digest(checkpoint) == digest and len(hashed) == 1
    checkpoint.write_bytes(b"tuned!!" * 1000)  # same size, new content and mtime
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache.checkpoint_digest(checkpoint) != digest and len(hashed) == 2


def test_a_killed_export_leaves_no_graph_that_loads(tmp_path, spec, monkeypatch,
                                                    runtime_cache):
    checkpoint = make_sam_checkpoint(tmp_path / "sam.pth")

    def dies_half_way(module, args, path, **kwargs):
        Path(path).write_bytes(b"\x08\x07half a protobuf")
        raise KeyboardInterrupt  # the person pressed Ctrl+C, or the process was killed

    real_export = torch.onnx.export
    monkeypatch.setattr(torch.onnx, "export", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        loading.load_model(spec.name, checkpoint, "cpu", runtime="onnx")
    assert list(runtime_cache.glob("*/*")) == [], "a half-written graph was left behind"
    monkeypatch.setattr(torch.onnx, "export", real_export)
    engine = loading.load_model(spec.name, checkpoint, "cpu", runtime="onnx")
    assert engine.runtime == "onnx"


def test_a_corrupt_cached_graph_is_exported_again(tmp_path, spec, exports, runtime_cache):
    checkpoint = make_sam_checkpoint(tmp_path / "sam.pth")
    loading.load_model(spec.name, checkpoint, "cpu", runtime="onnx")
    _graphs(runtime_cache)[3].write_bytes(b"not a graph")
    engine = loading.load_model(spec.name, checkpoint, "cpu", runtime="onnx")
    assert (engine.runtime, engine.runtime_note) == ("onnx", "")
    assert exports.chunks == [*CHUNKS, CHUNKS[3]]


def test_int8_graphs_are_cached_beside_the_fp32_ones(tmp_path, spec, exports, runtime_cache):
    checkpoint = make_sam_checkpoint(tmp_path / "sam.pth")
    engine = loading.load_model(spec.name, checkpoint, "cpu", runtime="onnx-int8")
    assert (engine.runtime, engine.runtime_note) == ("onnx-int8", "")
    assert [p.name for p in _graphs(runtime_cache, "*.int8.onnx")] == [
        f"{i:03d}-{name}.int8.onnx" for i, name in enumerate(CHUNKS)]
    fp32 = [p for p in _graphs(runtime_cache) if not p.name.endswith(".int8.onnx")]
    assert len(fp32) == 6  # the fp32 graphs it was quantised from, kept
    reference = loading.load_model(spec.name, checkpoint, "cpu").embed(IMAGE)
    ours = engine.embed(IMAGE)
    assert ours.tensors["image_embed"].shape == reference.tensors["image_embed"].shape
    assert ours.tensors["image_embed"].dtype == np.float32
    again = loading.load_model(spec.name, checkpoint, "cpu", runtime="onnx-int8")
    assert again.runtime == "onnx-int8" and exports.chunks == CHUNKS



def test_a_fresh_process_finds_the_cache_module_not_functools_cache():
    """``from samdesk.inference.runtimes import cache`` (as the runtime's own start does)
    before anything imported the submodule: the module, not ``functools.cache``."""
    code = ("from samdesk.inference.runtimes import cache;"
            "print(cache.__name__, callable(getattr(cache, 'checkpoint_digest', None)))")
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, check=True)
    assert done.stdout.split() == ["samdesk.inference.runtimes.cache", "True"], done.stdout
