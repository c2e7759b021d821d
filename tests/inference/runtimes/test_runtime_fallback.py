"""A runtime that cannot start, or fails later, leaves torch running and says why in one line.

Never a failed load, never a failed click: the masks are torch's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samdesk.inference import runtimes
from samdesk.inference.engines import loading
from samdesk.inference.engines.base import EngineError
from samdesk.inference.engines.sam import SamEngine
from samdesk.inference.runtimes import onnx_encoder, onnx_export
from tests.model_factories import (
    TINY_SAM,
    make_sam_checkpoint,
    prompt_case,
    registered_test_model,
    textured_image,
)

IMAGE = textured_image(240, 320, seed=2)


@pytest.fixture
def spec():
    with registered_test_model("sam", TINY_SAM) as spec:
        yield spec


@pytest.fixture
def checkpoint(tmp_path):
    return make_sam_checkpoint(tmp_path / "sam.pth")


def _assert_torch_masks(engine, spec, checkpoint) -> None:
    """``engine`` encodes and clicks exactly as the torch engine (both run torch)."""
    reference = loading.load_model(spec.name, checkpoint, "cpu")
    prompts = prompt_case("points_with_negatives", *IMAGE.shape[:2])
    ours = engine.predict(engine.embed(IMAGE), prompts)
    theirs = reference.predict(reference.embed(IMAGE), prompts)
    np.testing.assert_array_equal(ours.masks, theirs.masks)  # the same torch path
    assert ours.masks.any()


def test_an_export_that_fails_falls_back_to_torch_with_its_line(spec, checkpoint, monkeypatch,
                                                                 runtime_cache):
    def unsupported(chunk, example, path):
        raise RuntimeError("Exporting the operator 'aten::_upsample_bicubic2d_aa' to ONNX "
                           "opset version 17 is not supported.\nPlease open a bug report.")

    monkeypatch.setattr(onnx_export, "export_chunk", unsupported)
    engine = loading.load_model(spec.name, checkpoint, "cpu", runtime="onnx")
    assert engine.runtime == "torch"
    assert engine.runtime_note == (
        "ONNX export of chunk 'patch' failed: RuntimeError: Exporting the operator "
        "'aten::_upsample_bicubic2d_aa' to ONNX opset version 17 is not supported. Please "
        "open a bug report; using torch")
    assert list(runtime_cache.glob("*/*.onnx")) == []
    _assert_torch_masks(engine, spec, checkpoint)


def test_without_onnxruntime_torch_runs_and_says_so(spec, checkpoint, monkeypatch):
    monkeypatch.setattr(runtimes, "available", lambda: ["torch"])
    engine = loading.load_model(spec.name, checkpoint, "cpu", runtime="onnx-int8")
    assert engine.runtime == "torch"
    assert engine.runtime_note == ("onnxruntime is not installed (pip install onnxruntime "
                                   "onnx); using torch")
    _assert_torch_masks(engine, spec, checkpoint)


def test_a_graph_that_does_not_load_falls_back(spec, checkpoint, monkeypatch):
    def refuses(path, threads, arena=None):
        raise RuntimeError("[ONNXRuntimeError] : 10 : INVALID_GRAPH : This is an invalid model")

    monkeypatch.setattr(onnx_encoder, "open_session", refuses)
    engine = loading.load_model(spec.name, checkpoint, "cpu", runtime="onnx")
    assert engine.runtime == "torch"
    assert engine.runtime_note.startswith("the ONNX graph of chunk 'patch' does not load: ")
    assert engine.runtime_note.endswith("This is an invalid model; using torch")
    _assert_torch_masks(engine, spec, checkpoint)


def test_an_architecture_that_cannot_be_split_falls_back(spec, checkpoint, monkeypatch):
    def unknown(self):
        raise AttributeError("'ImageEncoderViT' object has no attribute 'blocks'")

    monkeypatch.setattr(SamEngine, "encoder_chunks", unknown)
    engine = loading.load_model(spec.name, checkpoint, "cpu", runtime="onnx")
    assert engine.runtime == "torch"
    assert engine.runtime_note == (
        "this architecture cannot be split for export: AttributeError: 'ImageEncoderViT' "
        "object has no attribute 'blocks'; using torch")


def test_a_failure_while_encoding_gives_torch_embedding_and_says_so(spec, checkpoint):
    engine = loading.load_model(spec.name, checkpoint, "cpu", runtime="onnx")
    assert engine.runtime == "onnx"

    class Broken:
        def run(self, names, feed):
            raise RuntimeError("bad allocation")

    engine._encoder._sessions[3] = Broken()
    _assert_torch_masks(engine, spec, checkpoint)  # the encode that failed, then a click
    assert engine.runtime == "torch"
    assert engine.runtime_note == ("ONNX Runtime failed while encoding: RuntimeError: bad "
                                   "allocation; using torch")


def test_another_device_keeps_torch(spec, checkpoint):
    engine = loading.load_model(spec.name, checkpoint, "cpu")
    engine.device = torch.device("cuda")  # as a GPU engine would be (nothing runs here)
    engine.use_runtime("onnx", checkpoint, "sam", TINY_SAM)
    assert engine.runtime == "torch"
    assert engine.runtime_note == "the onnx runtime runs on the CPU, not cuda; using torch"


def test_close_releases_the_sessions_and_torch_answers_afterwards(spec, checkpoint):
    engine = loading.load_model(spec.name, checkpoint, "cpu", runtime="onnx")
    encoder = engine._encoder
    engine.close()
    assert engine.runtime == "torch" and encoder._sessions == []
    _assert_torch_masks(engine, spec, checkpoint)


def test_a_family_without_a_runtime_runs_as_before_and_says_so():
    engine = loading.load_model("grabcut", None, "cpu", runtime="onnx")
    assert engine.runtime == "torch"
    assert engine.runtime_note == "grabcut has no onnx runtime; using torch"


def test_an_unknown_runtime_is_one_line():
    with pytest.raises(EngineError, match=r"^unknown runtime 'tensorrt'; choose torch, onnx, "
                                          r"onnx-int8, openvino, openvino-bf16$"):
        loading.load_model("grabcut", None, "cpu", runtime="tensorrt")


def test_this_machine_can_run_every_runtime():
    from samdesk.inference.runtimes import openvino_encoder

    bf16 = ["openvino-bf16"] if openvino_encoder.has_bf16() else []
    assert runtimes.available() == ["torch", "onnx", "onnx-int8", "openvino", *bf16]


def test_without_openvino_its_runtimes_fall_back_and_say_what_to_install(
        spec, checkpoint, monkeypatch):
    monkeypatch.setattr(runtimes, "available", lambda: ["torch", "onnx", "onnx-int8"])
    for runtime in ("openvino", "openvino-bf16"):
        engine = loading.load_model(spec.name, checkpoint, "cpu", runtime=runtime)
        assert engine.runtime == "torch"
        assert engine.runtime_note == ("openvino is not installed (pip install openvino "
                                       "onnx); using torch")
