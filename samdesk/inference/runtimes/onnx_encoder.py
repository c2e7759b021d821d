"""Run a chunked encoder with ONNX Runtime, one session per chunk.

:func:`prepare` finds each chunk's graph in the cache or exports it from the
loaded torch model (running the torch chunks on a fixed example input to
trace them, and checking each new fp32 graph against torch on that input),
then opens one ``InferenceSession`` per chunk: ``CPUExecutionProvider``,
``intra_op_num_threads`` = torch's thread count, graph optimisation level
ALL, no spinning between runs (each session's threads would otherwise spin
while the next chunk runs). :meth:`OnnxEncoder.steps` runs the sessions in
order and yields between them, as the torch ``embed_steps`` does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samdesk.inference.runtimes import onnx_export
from samdesk.inference.runtimes.cache import chunk_path
from samdesk.inference.runtimes.chunks import INPUT, Chunk, graph_input, graph_output

Progress = Callable[[int, int], None]
"""``progress(done, total)``: chunks ready of all chunks."""
CHECK_TOLERANCE = 1e-3
"""A fresh fp32 graph may differ from torch by this times max(1, max |torch output|)."""
MEMORY_ARENA = False
"""ONNX Runtime's CPU arena keeps what each session once used; off (see bench/runtime_encode.py)."""


class RuntimeFailure(Exception):
    """Why a runtime cannot run this encoder: one line, said before falling back to torch."""


class BrokenGraph(RuntimeFailure):
    """A cached graph did not load; it was removed, so preparing again exports it anew."""


class OnnxEncoder:
    """Sessions of the chunks of one encoder, run in order; ``steps`` yields between them."""

    def __init__(self, chunks: Sequence[Chunk], sessions: list[Any]) -> None:
        self.chunks = list(chunks)
        self._sessions = sessions

    def steps(self, image: np.ndarray) -> Generator[None, None, dict[str, np.ndarray]]:
        """Encode the preprocessed float32 ``image`` ``(1, 3, S, S)``; returns the last
        chunk's outputs by name. Yields after every chunk but the last."""
        if not self._sessions:
            raise RuntimeFailure("the ONNX sessions were released")
        values: dict[str, np.ndarray] = {INPUT: np.ascontiguousarray(image, np.float32)}
        last = len(self.chunks) - 1
        for index, (chunk, session) in enumerate(zip(self.chunks, self._sessions, strict=True)):
            feed = {graph_input(name): values[name] for name in chunk.inputs}
            results = session.run([graph_output(name) for name in chunk.outputs], feed)
            for name, value in zip(chunk.outputs, results, strict=True):
                values[name] = value
            if chunk.keep:
                values[chunk.keep] = values[chunk.outputs[0]]
            if index < last:
                yield
        return {name: values[name] for name in self.chunks[-1].outputs}

    def close(self) -> None:
        """Drop the sessions (and the memory they hold); ``steps`` refuses afterwards."""
        self._sessions.clear()


def session_options(threads: int, arena: bool | None = None) -> Any:
    """ONNX Runtime options for one chunk: ``threads`` intra-op threads, optimisation ALL;
    ``arena`` None: :data:`MEMORY_ARENA`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = MEMORY_ARENA if arena is None else arena
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def open_session(path: Path, threads: int, arena: bool | None = None) -> Any:
    """An ``InferenceSession`` of the graph at ``path`` on the CPU."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), sess_options=session_options(threads, arena),
                                providers=["CPUExecutionProvider"])


def prepare(chunks: Sequence[Chunk], folder: Path, precision: str, example: Any,
            threads: int, progress: Progress | None = None,
            exporter: Callable[[Chunk, tuple, Path], None] | None = None,
            opener: Callable[[Path, int], Any] | None = None,
            check: bool | None = None) -> OnnxEncoder:
    """Sessions for ``chunks`` from ``folder``, exporting the graphs that are missing.

    ``precision``: ``fp32`` or ``int8``. ``example``: a float32 torch tensor
    ``(1, 3, S, S)`` the chunks are traced on (any values; only the shapes
    matter). ``progress(done, total)`` after each chunk is ready. Raises
    :class:`RuntimeFailure` (one line) when a chunk does not export, does not
    load or an fp32 graph disagrees with torch. ``opener(path, threads)``: the
    runner of one graph (anything with ONNX Runtime's ``run(names, feed)``;
    None: an ONNX Runtime session). ``check``: compare each fresh graph's
    runner with torch (None: for ``fp32``).
    """
    export = exporter or onnx_export.export_chunk
    paths = [chunk_path(folder, i, c.name) for i, c in enumerate(chunks)]
    targets = paths if precision == "fp32" else [
        chunk_path(folder, i, c.name, precision) for i, c in enumerate(chunks)]
    missing = {i for i, path in enumerate(targets) if not path.is_file()}
    unexported = [i for i, path in enumerate(paths) if not path.is_file()]
    traced = unexported[-1] if unexported else -1  # torch runs the chunks up to this one
    values: dict[str, Any] = {INPUT: example}
    sessions: list[Any] = []
    for index, chunk in enumerate(chunks):
        inputs = outputs = ()
        if index <= traced:  # trace on torch's input to this chunk; its outputs feed the next
            inputs = tuple(values[name] for name in chunk.inputs)
            outputs = _run_torch(chunk, inputs)
            values.update(zip(chunk.outputs, outputs, strict=True))
            if chunk.keep:
                values[chunk.keep] = outputs[0]
        if index in missing:
            _export_one(chunk, inputs, paths[index], targets[index], precision, export)
            sessions.append(_open(targets[index], chunk, threads, opener=opener))
            if (precision == "fp32") if check is None else check:
                _check(sessions[-1], chunk, inputs, outputs, targets[index])
        else:
            sessions.append(_open(targets[index], chunk, threads, cached=True, opener=opener))
        if progress is not None:
            progress(index + 1, len(chunks))
    return OnnxEncoder(chunks, sessions)


def _run_torch(chunk: Chunk, inputs: tuple) -> tuple:
    """``chunk``'s outputs in torch, without autograd."""
    import torch

    with torch.no_grad():
        return chunk.run(*inputs)


def _export_one(chunk: Chunk, inputs: tuple, fp32: Path, target: Path, precision: str,
                export: Callable[[Chunk, tuple, Path], None]) -> None:
    from samdesk.errorlog import describe, shorten

    try:
        if not fp32.is_file():
            export(chunk, inputs, fp32)
        if precision == "int8":
            onnx_export.quantize_chunk(fp32, target)
    except Exception as exc:  # an op the exporter lacks, a full disk...: say it, use torch
        step = "quantisation" if fp32.is_file() and precision == "int8" else "export"
        raise RuntimeFailure(f"ONNX {step} of chunk {chunk.name!r} failed: "
                             f"{shorten(describe(exc), 200)}") from exc


def _open(path: Path, chunk: Chunk, threads: int, cached: bool = False,
          opener: Callable[[Path, int], Any] | None = None) -> Any:
    """The session of ``chunk``'s graph at ``path``; a graph that does not load is removed
    (raising :class:`BrokenGraph` when it came from the cache, to be exported again)."""
    from samdesk.errorlog import describe, shorten

    try:
        return (opener or open_session)(path, threads)
    except Exception as exc:
        with contextlib.suppress(OSError):
            path.unlink()
        error = BrokenGraph if cached else RuntimeFailure
        raise error(f"the ONNX graph of chunk {chunk.name!r} does not load: "
                    f"{shorten(describe(exc), 200)}") from exc


def _check(session: Any, chunk: Chunk, inputs: tuple, outputs: tuple, path: Path) -> None:
    """Raise (and remove the graph at ``path``) when a fresh fp32 graph's outputs stray
    from torch's on the example."""
    from samdesk.errorlog import describe

    feed = {graph_input(name): tensor.numpy()
            for name, tensor in zip(chunk.inputs, inputs, strict=True)}
    try:
        results = session.run([graph_output(name) for name in chunk.outputs], feed)
        for name, got, expected in zip(chunk.outputs, results, outputs, strict=True):
            want = expected.numpy()
            scale = max(1.0, float(np.abs(want).max()))
            error = float(np.abs(got - want).max()) if got.shape == want.shape else np.inf
            if not error <= CHECK_TOLERANCE * scale:
                raise RuntimeFailure(f"the ONNX graph of chunk {chunk.name!r} differs from "
                                     f"torch by {error:.3g} (output {name!r})")
    except Exception as exc:  # a graph torch's check cannot trust is exported again next time
        with contextlib.suppress(OSError):
            path.unlink()
        if isinstance(exc, RuntimeFailure):
            raise
        raise RuntimeFailure(f"the ONNX graph of chunk {chunk.name!r} does not run: "
                             f"{describe(exc)}") from exc
