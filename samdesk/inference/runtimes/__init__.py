"""CPU runtimes for the SAM and SAM 2 image encoders: torch, or ONNX Runtime graphs.

The API the commands, the worker and the Models dialog use:

- :func:`available` ``-> list[str]``: the runtimes this machine can run:
  ``["torch"]``, plus ``"onnx"`` and ``"onnx-int8"`` when ``onnxruntime`` and
  ``onnx`` import. :data:`RUNTIMES` is every name samdesk knows.
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
- ``engine.close()``: drops the ONNX Runtime sessions (and their memory) now
  rather than when the engine is garbage collected.

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
RUNTIMES = (TORCH, ONNX, ONNX_INT8)
"""Every runtime name samdesk knows, in the order a menu lists them."""
PRECISION = {ONNX: "fp32", ONNX_INT8: "int8"}

log = logging.getLogger(__name__)

__all__ = ["RUNTIMES", "Chunk", "RuntimeChoice", "available", "check_runtime"]


@functools.cache  # not `from functools import cache`: it would shadow the cache module
def available() -> list[str]:
    """The runtimes this machine can run: torch, and the ONNX ones when onnxruntime imports."""
    try:
        import onnx  # noqa: F401  (the exporter writes with it)
        import onnxruntime  # noqa: F401
    except Exception:  # not installed, or a broken wheel: torch only
        return [TORCH]
    return [TORCH, ONNX, ONNX_INT8]


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
        """The runtime the encoder runs now: ``torch``, ``onnx`` or ``onnx-int8``."""
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

            self._fall_back(f"ONNX runtime could not start: {describe(exc)}")
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

            self.close()
            self._fall_back(f"ONNX Runtime failed while encoding: {describe(exc)}")
            return None

    def close(self) -> None:
        """Release the exported encoder's sessions; the engine runs torch afterwards."""
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
            raise RuntimeFailure("onnxruntime is not installed (pip install onnxruntime onnx)")
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
        import onnx
        import onnxruntime
        import torch

        from samdesk.inference.runtimes import cache, onnx_encoder, onnx_export

        versions = {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
                    "torch": torch.__version__, "opset": str(onnx_export.OPSET)}
        folder = cache.model_folder(cache.checkpoint_digest(checkpoint), family, config,
                                    versions)
        side = int(getattr(self, "resolution", 1024))
        generator = torch.Generator().manual_seed(0)
        example = torch.randn(1, 3, side, side, generator=generator)
        threads = torch.get_num_threads()
        try:
            return onnx_encoder.prepare(chunks, folder, PRECISION[runtime], example, threads,
                                        progress)
        except onnx_encoder.BrokenGraph as exc:  # removed: export it again, once
            log.warning("%s; exporting it again", exc)
            return onnx_encoder.prepare(chunks, folder, PRECISION[runtime], example, threads,
                                        progress)
