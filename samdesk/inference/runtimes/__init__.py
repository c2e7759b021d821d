"""CPU runtimes for the SAM and SAM 2 image encoders: torch, ONNX Runtime or OpenVINO.

The API the commands, the worker and the Models dialog use:

- :func:`available` ``-> list[str]``: the runtimes this machine can run:
  ``["torch"]``, plus ``"onnx"`` and ``"onnx-int8"`` when ``onnxruntime`` and
  ``onnx`` import, ``"openvino"`` when ``openvino`` and ``onnx`` import, and
  ``"openvino-bf16"`` where OpenVINO computes bf16 on this CPU (avx512_bf16 or
  AMX). :data:`RUNTIMES` is every name samdesk knows.
- ``loading.load_model(name, checkpoint, device, runtime="torch",
  progress=None)``: ``runtime`` one of :data:`RUNTIMES`; ``progress(done,
  total)`` is called per encoder chunk while the graphs are exported (first
  use of a checkpoint) or opened (later uses).
- ``engine.runtime``: the runtime the engine's encoder really runs
  (``"torch"`` after a fallback, and for every engine without an exported
  encoder: read it with ``getattr(engine, "runtime", "torch")``).
- ``engine.runtime_note``: ``""``, or one line saying why the runtime asked
  for is not the one running, e.g. ``"ONNX export of chunk 'neck' failed:
  <why>; using torch"``. Loading and clicks never fail because of it.
- ``engine.close()``: drops the ONNX Runtime sessions or OpenVINO compiled
  models (and their memory) now rather than when the engine is garbage
  collected; the worker and the server call it when they unload a model.

An exported encoder runs the same chunks as the torch ``embed_steps``
(preprocessing stays in torch/numpy; patch and position embedding; each
block's attention half and MLP half; the neck with the rest of the forward
pass), yields between them the same way, and returns the same
:class:`~samdesk.inference.engines.base.Embedding` tensors (names, float32,
shapes), so the decoder, the embedding cache and everything downstream are
unchanged. The graphs are exported from the loaded model (the user's
checkpoint) and cached on disk by the checkpoint's SHA-256
(:mod:`~samdesk.inference.runtimes.cache`). ``onnx`` graphs match torch
within the mask parity tolerance; ``onnx-int8`` (dynamic int8 quantisation)
is faster and moves masks more (see BENCHMARKS.md / bench/runtime_encode.py).
OpenVINO compiles the same ONNX graphs (:mod:`.openvino_encoder`):
``openvino`` at fp32 (within the tolerance), ``openvino-bf16`` in bf16
(faster, moves masks); its compiled models are cached beside the graphs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np

from samdesk.errors import EngineError
from samdesk.inference.runtimes.chunks import Chunk

TORCH = "torch"
ONNX = "onnx"
ONNX_INT8 = "onnx-int8"
OPENVINO = "openvino"
OPENVINO_BF16 = "openvino-bf16"
RUNTIMES = (TORCH, ONNX, ONNX_INT8, OPENVINO, OPENVINO_BF16)
"""Every runtime name samdesk knows, in the order a menu lists them."""
PRECISION = {ONNX: "fp32", ONNX_INT8: "int8", OPENVINO: "fp32", OPENVINO_BF16: "bf16"}
FP32 = (ONNX, OPENVINO)
"""The exported runtimes that keep torch's precision: the ones ``auto`` may pick."""
ENGINE = {ONNX: "ONNX Runtime", ONNX_INT8: "ONNX Runtime", OPENVINO: "OpenVINO",
          OPENVINO_BF16: "OpenVINO"}
"""The library that runs each exported runtime (as the notes name it)."""

log = logging.getLogger(__name__)

__all__ = ["RUNTIMES", "Chunk", "RuntimeChoice", "available", "check_runtime",
           "graph_versions"]


@functools.cache  # not `from functools import cache`: it would shadow the cache module
def available() -> list[str]:
    """The runtimes this machine can run: torch, the ONNX ones when onnxruntime imports,
    the OpenVINO ones when openvino imports (bf16 only on a CPU that has it)."""
    names = [TORCH]
    try:
        import onnx  # noqa: F401  (the exporter writes with it)
    except Exception:  # not installed, or a broken wheel: nothing can be exported
        return names
    try:
        import onnxruntime  # noqa: F401
    except Exception:
        pass
    else:
        names += [ONNX, ONNX_INT8]
    try:
        from samdesk.inference.runtimes import openvino_encoder

        openvino_encoder.core()
    except Exception:  # not installed, or its CPU plugin does not start
        return names
    names.append(OPENVINO)
    if openvino_encoder.has_bf16():
        names.append(OPENVINO_BF16)
    return names


def missing(runtime: str) -> str:
    """Why ``runtime`` is not available here, in one line (what to install, or the CPU)."""
    if runtime in (OPENVINO, OPENVINO_BF16):
        if OPENVINO in available():
            return "this CPU has no bf16 for OpenVINO (avx512_bf16 or AMX)"
        return "openvino is not installed (pip install openvino onnx)"
    return "onnxruntime is not installed (pip install onnxruntime onnx)"


def graph_versions() -> dict[str, str]:
    """The libraries that write the cached graphs, as their folder's key names them."""
    import onnx
    import torch

    from samdesk.inference.runtimes import onnx_export

    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except Exception:  # OpenVINO alone: the graphs do not depend on onnxruntime
        ort = "none"
    return {"onnxruntime": ort, "onnx": onnx.__version__, "torch": torch.__version__,
            "opset": str(onnx_export.OPSET)}


def check_runtime(name: str) -> str:
    """``name`` if samdesk knows that runtime, else one :class:`EngineError` line."""
    if name not in RUNTIMES:
        raise EngineError(f"unknown runtime {name!r}; choose {', '.join(RUNTIMES)}")
    return name


class RuntimeChoice:
    """Mixed into an engine whose encoder can run as exported chunks.

    The engine provides ``encoder_chunks() -> list[Chunk]``, ``device``
    (a ``torch.device``) and ``resolution`` (the square input side); its
    ``embed_steps`` hands the preprocessed input to :meth:`runtime_steps`
    and runs torch when that returns ``None``.
    """

    _runtime: str = TORCH
    _runtime_note: str = ""
    _encoder: Any = None

    @property
    def runtime(self) -> str:
        """The runtime the encoder runs now: ``torch`` or one of :data:`RUNTIMES`."""
        return self._runtime

    @property
    def runtime_note(self) -> str:
        """Why the runtime asked for is not running (one line), or ``""``."""
        return self._runtime_note

    def use_runtime(self, runtime: str, checkpoint: Path, family: str, config: str,
                    progress: Callable[[int, int], None] | None = None) -> None:
        """Run the encoder with ``runtime`` from now on, exporting it on first use.

        Any failure leaves the engine on torch with :attr:`runtime_note` saying why.
        """
        check_runtime(runtime)
        self.close()
        self._runtime_note = ""
        if runtime == TORCH:
            return
        from samdesk.inference.runtimes.onnx_encoder import RuntimeFailure

        try:
            self._encoder = self._open_encoder(runtime, Path(checkpoint), family, config,
                                               progress)
        except RuntimeFailure as exc:
            self._fall_back(str(exc))
        except Exception as exc:  # an unforeseen failure still never fails the load
            from samdesk.errorlog import describe

            self._fall_back(f"{ENGINE[runtime]} could not start: {describe(exc)}")
        else:
            self._runtime = runtime

    def runtime_steps(self, image: Any) -> Generator[None, None, dict[str, np.ndarray] | None]:
        """Encode the preprocessed ``image`` (float32 torch ``(1, 3, S, S)``) with the
        exported chunks, yielding between them; ``None`` when torch must do it
        (no exported encoder, or it failed now: the engine stays on torch)."""
        if self._encoder is None:
            return None
        try:
            return (yield from self._encoder.steps(image.detach().cpu().numpy()))
        except Exception as exc:  # never fail a click: say so once and use torch
            from samdesk.errorlog import describe

            library = ENGINE.get(self._runtime, "ONNX Runtime")
            self.close()
            self._fall_back(f"{library} failed while encoding: {describe(exc)}")
            return None

    def close(self) -> None:
        """Release the exported encoder's sessions or compiled models; torch runs afterwards."""
        encoder, self._encoder = self._encoder, None
        self._runtime = TORCH
        if encoder is not None:
            encoder.close()

    def _fall_back(self, why: str) -> None:
        self._runtime = TORCH
        self._runtime_note = f"{why.rstrip('.')}; using torch"
        log.warning("%s", self._runtime_note)

    def _open_encoder(self, runtime: str, checkpoint: Path, family: str, config: str,
                      progress: Callable[[int, int], None] | None) -> Any:
        from samdesk.inference.runtimes.onnx_encoder import RuntimeFailure

        if runtime not in available():
            raise RuntimeFailure(missing(runtime))
        device = getattr(self, "device", None)
        if getattr(device, "type", "cpu") != "cpu":
            raise RuntimeFailure(f"the {runtime} runtime runs on the CPU, not {device}")
        chunks_of = getattr(self, "encoder_chunks", None)
        if chunks_of is None:
            raise RuntimeFailure(f"{type(self).__name__} has no exportable encoder")
        try:
            chunks = chunks_of()
        except Exception as exc:
            from samdesk.errorlog import describe

            raise RuntimeFailure(f"this architecture cannot be split for export: "
                                 f"{describe(exc)}") from exc
        import torch

        from samdesk.inference.runtimes import cache, onnx_encoder, openvino_encoder

        folder = cache.model_folder(cache.checkpoint_digest(checkpoint), family, config,
                                    graph_versions())
        if runtime in (OPENVINO, OPENVINO_BF16):
            prepare = openvino_encoder.prepare
        else:
            prepare = onnx_encoder.prepare
        side = int(getattr(self, "resolution", 1024))
        generator = torch.Generator().manual_seed(0)
        example = torch.randn(1, 3, side, side, generator=generator)
        threads = torch.get_num_threads()
        try:
            return prepare(chunks, folder, PRECISION[runtime], example, threads, progress)
        except onnx_encoder.BrokenGraph as exc:  # removed: export it again, once
            log.warning("%s; exporting it again", exc)
            return prepare(chunks, folder, PRECISION[runtime], example, threads, progress)
