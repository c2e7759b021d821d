"""OpenVINO's compiled models are cached by checkpoint; a failure falls back to torch.

A random-weight tiny SAM (2 blocks: 6 chunks) keeps each compile to a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from samdesk.inference import runtimes
from samdesk.inference.engines import loading
from samdesk.inference.runtimes import openvino_encoder
from tests.model_factories import (
    TINY_SAM,
    make_sam_checkpoint,
    prompt_case,
    registered_test_model,
    textured_image,
)

IMAGE = textured_image(240, 320, seed=1)

pytestmark = pytest.mark.skipif("openvino" not in runtimes.available(),
                                reason="openvino is not installed")


@pytest.fixture
def spec():
    with registered_test_model("sam", TINY_SAM) as spec:
        yield spec


def _blobs(root: Path) -> dict[Path, int]:
    """Every compiled-model file under ``root`` with its modification time."""
    return {p: p.stat().st_mtime_ns for p in root.glob("*/openvino-*/*.blob")}


class CompileCounter:
    """Wraps ``openvino_encoder.core()`` to count compile_model calls by graph."""

    def __init__(self, fail: bool = False) -> None:
        self.graphs: list[str] = []
        self._core = openvino_encoder.core()
        self._fail = fail

    def compile_model(self, path: str, device: str, config: dict) -> object:
        self.graphs.append(Path(path).name)
        if self._fail:
            raise RuntimeError("Cannot create Interpolate layer: unsupported mode")
        return self._core.compile_model(path, device, config)

    def get_property(self, *args: object) -> object:
        return self._core.get_property(*args)


def test_a_second_load_reads_the_compiled_cache_and_exports_nothing(
        tmp_path, spec, exports, runtime_cache, monkeypatch):
    checkpoint = make_sam_checkpoint(tmp_path / "sam.pth")
    first = loading.load_model(spec.name, checkpoint, "cpu", runtime="openvino")
    assert first.runtime == "openvino" and first.runtime_note == ""
    exported = list(exports.chunks)
    blobs = _blobs(runtime_cache)
    assert len(exported) == len(blobs) == 6
    first.close()
    second = loading.load_model(spec.name, checkpoint, "cpu", runtime="openvino")
    assert exports.chunks == exported, "the second load exported again"
    assert _blobs(runtime_cache) == blobs, "the second load compiled anew"
    assert second.runtime == "openvino"
    np.testing.assert_allclose(second.embed(IMAGE).tensors["image_embed"],
                               loading.load_model(spec.name, checkpoint, "cpu")
                               .embed(IMAGE).tensors["image_embed"], atol=1e-4, rtol=0)


def test_onnx_and_openvino_share_the_graphs(tmp_path, spec, exports, runtime_cache):
    checkpoint = make_sam_checkpoint(tmp_path / "sam.pth")
    loading.load_model(spec.name, checkpoint, "cpu", runtime="onnx").close()
    exported = list(exports.chunks)
    engine = loading.load_model(spec.name, checkpoint, "cpu", runtime="openvino")
    assert engine.runtime == "openvino"
    assert exports.chunks == exported, "OpenVINO exported graphs ONNX Runtime already had"


def test_a_fine_tuned_checkpoint_never_reuses_another_compiled_model(
        tmp_path, spec, runtime_cache):
    base = make_sam_checkpoint(tmp_path / "base.pth", seed=0)
    tuned = make_sam_checkpoint(tmp_path / "tuned.pth", seed=1)
    loading.load_model(spec.name, base, "cpu", runtime="openvino").close()
    before = set(_blobs(runtime_cache))
    engine = loading.load_model(spec.name, tuned, "cpu", runtime="openvino")
    after = set(_blobs(runtime_cache))
    new = after - before
    assert len(new) == 6 and {p.parent for p in new}.isdisjoint({p.parent for p in before})
    reference = loading.load_model(spec.name, tuned, "cpu")
    prompts = prompt_case("points_with_negatives", *IMAGE.shape[:2])
    ours = engine.predict(engine.embed(IMAGE), prompts)
    theirs = reference.predict(reference.embed(IMAGE), prompts)
    assert (ours.masks != theirs.masks).mean() < 1e-3  # the tuned weights, not the base's


def test_a_compile_that_fails_falls_back_to_torch_with_its_line(
        tmp_path, spec, monkeypatch):
    checkpoint = make_sam_checkpoint(tmp_path / "sam.pth")
    counter = CompileCounter(fail=True)
    monkeypatch.setattr(openvino_encoder, "core", lambda: counter)
    engine = loading.load_model(spec.name, checkpoint, "cpu", runtime="openvino")
    assert engine.runtime == "torch"
    assert engine.runtime_note == (
        "the ONNX graph of chunk 'patch' does not load: RuntimeError: Cannot create "
        "Interpolate layer: unsupported mode; using torch")
    reference = loading.load_model(spec.name, checkpoint, "cpu")
    prompts = prompt_case("box", *IMAGE.shape[:2])
    np.testing.assert_array_equal(engine.predict(engine.embed(IMAGE), prompts).masks,
                                  reference.predict(reference.embed(IMAGE), prompts).masks)


def test_a_failure_while_encoding_gives_torch_embedding_and_says_so(tmp_path, spec):
    checkpoint = make_sam_checkpoint(tmp_path / "sam.pth")
    engine = loading.load_model(spec.name, checkpoint, "cpu", runtime="openvino")

    def broken(names, feed):
        raise RuntimeError("Infer request failed")

    engine._encoder._sessions[2].run = broken
    embedding = engine.embed(IMAGE)
    assert engine.runtime == "torch"
    assert engine.runtime_note == ("OpenVINO failed while encoding: RuntimeError: Infer "
                                   "request failed; using torch")
    reference = loading.load_model(spec.name, checkpoint, "cpu")
    np.testing.assert_array_equal(embedding.tensors["image_embed"],
                                  reference.embed(IMAGE).tensors["image_embed"])


def test_without_bf16_the_bf16_runtime_is_not_offered_and_says_why(
        tmp_path, spec, monkeypatch):
    monkeypatch.setattr(openvino_encoder, "has_bf16", lambda: False)
    runtimes.available.cache_clear()
    try:
        assert "openvino-bf16" not in runtimes.available()
        assert "openvino" in runtimes.available()
        checkpoint = make_sam_checkpoint(tmp_path / "sam.pth")
        engine = loading.load_model(spec.name, checkpoint, "cpu", runtime="openvino-bf16")
        assert engine.runtime == "torch"
        assert engine.runtime_note == ("this CPU has no bf16 for OpenVINO (avx512_bf16 or "
                                       "AMX); using torch")
    finally:
        runtimes.available.cache_clear()


def test_close_drops_the_compiled_models(tmp_path, spec):
    checkpoint = make_sam_checkpoint(tmp_path / "sam.pth")
    engine = loading.load_model(spec.name, checkpoint, "cpu", runtime="openvino")
    sessions = engine._encoder._sessions
    assert len(sessions) == 6
    engine.close()
    assert engine.runtime == "torch" and engine._encoder is None and sessions == []
    assert engine.embed(IMAGE).tensors["image_embed"].dtype == np.float32
