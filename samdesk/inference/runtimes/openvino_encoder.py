"""Run a chunked encoder with OpenVINO on the CPU, one compiled model per chunk.

OpenVINO reads the *same* cached ONNX graphs ONNX Runtime runs (its ONNX
frontend: ``ov.Core().compile_model(path, "CPU", config)``): they are
exported from the loaded checkpoint on first use exactly as for ``onnx``
(:func:`samdesk.inference.runtimes.onnx_encoder.prepare` does the export and
the fp32 check against torch). Each chunk is compiled with

- ``INFERENCE_PRECISION_HINT``: ``f32`` (``openvino``) or ``bf16``
  (``openvino-bf16``; only where the CPU has bf16, see :func:`has_bf16`),
- ``INFERENCE_NUM_THREADS``: torch's thread count, one stream, latency hint,
- ``CACHE_DIR``: ``<graph folder>/openvino-<precision>/``, inside samdesk's
  runtime cache and keyed as the graphs are (by the checkpoint's SHA-256), so
  the minutes of a first compile are paid once per checkpoint.

:class:`OvRunner` gives a compiled model ONNX Runtime's ``run(names, feed)``,
so :class:`~samdesk.inference.runtimes.onnx_encoder.OnnxEncoder` runs the
chunks, yields between them and returns the same Embedding tensors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samdesk.inference.runtimes import onnx_encoder
from samdesk.inference.runtimes.chunks import Chunk

HINTS = {"fp32": "f32", "bf16": "bf16"}
"""OpenVINO's ``INFERENCE_PRECISION_HINT`` per samdesk precision."""

Progress = Callable[[int, int], None]


class OvRunner:
    """One compiled chunk with ONNX Runtime's session interface: ``run(names, feed)``.

    Each call makes its own infer request and drops it: a request kept per chunk
    holds that chunk's intermediate tensors between encodes (measured on SAM 2.1
    tiny at 1024: 3.65 GB resident after an encode against 3.1 GB, no faster).
    """

    def __init__(self, compiled: Any) -> None:
        self._compiled = compiled
        # a port has several names (the graph's and a fused node's): index them all
        self._index = {name: index for index, port in enumerate(compiled.outputs)
                       for name in port.get_names()}

    def run(self, names: Sequence[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The outputs ``names`` (float32 arrays, owned by the caller) for inputs ``feed``."""
        if self._compiled is None:
            raise RuntimeError("the compiled model was released")
        request = self._compiled.create_infer_request()
        results = request.infer(feed, share_outputs=False)
        return [np.asarray(results[self._index[name]], np.float32) for name in names]

    def close(self) -> None:
        """Drop the compiled model (its memory goes with the last reference)."""
        self._compiled = None


@functools.cache
def core() -> Any:
    """The process's ``openvino.Core`` (one per process: it holds the plugin)."""
    import openvino as ov

    return ov.Core()


@functools.cache
def has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes in bf16 here (avx512_bf16 or AMX)."""
    try:
        return "BF16" in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # no plugin, an old OpenVINO: no bf16
        return False


def compile_config(precision: str, threads: int, cache_dir: Path) -> dict[str, str]:
    """OpenVINO CPU properties for one chunk at ``precision`` (``fp32`` / ``bf16``)."""
    return {"INFERENCE_PRECISION_HINT": HINTS[precision],
            "INFERENCE_NUM_THREADS": str(max(1, int(threads))),
            "NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY",
            "CACHE_DIR": str(cache_dir)}


def cache_dir(folder: Path, precision: str) -> Path:
    """Where OpenVINO keeps the compiled chunks of ``folder``'s graphs at ``precision``."""
    return Path(folder) / f"openvino-{precision}"


def opener(precision: str, folder: Path) -> Callable[[Path, int], OvRunner]:
    """``open(path, threads)``: the graph at ``path`` compiled for the CPU at ``precision``."""
    if precision not in HINTS:
        raise onnx_encoder.RuntimeFailure(f"OpenVINO has no {precision} precision here")
    target = cache_dir(folder, precision)

    def open_graph(path: Path, threads: int) -> OvRunner:
        target.mkdir(parents=True, exist_ok=True)
        config = compile_config(precision, threads, target)
        return OvRunner(core().compile_model(str(path), "CPU", config))
    return open_graph


def prepare(chunks: Sequence[Chunk], folder: Path, precision: str, example: Any,
            threads: int, progress: Progress | None = None) -> onnx_encoder.OnnxEncoder:
    """Compiled chunks of ``chunks`` at ``precision`` (``fp32`` or ``bf16``), exporting the
    ONNX graphs that are missing; raises ``RuntimeFailure`` (one line) as ``onnx`` does.
    Fresh graphs are checked against torch at fp32 only (bf16 moves them by design)."""
    if precision == "bf16" and not has_bf16():
        raise onnx_encoder.RuntimeFailure("this CPU has no bf16 for OpenVINO "
                                          "(avx512_bf16 or AMX)")
    return onnx_encoder.prepare(chunks, folder, "fp32", example, threads, progress,
                                opener=opener(precision, folder),
                                check=precision == "fp32")
