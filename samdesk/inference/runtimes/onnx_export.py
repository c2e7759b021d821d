"""Export one encoder chunk from the loaded torch model to an ONNX graph.

``torch.onnx.export`` with ``dynamo=False`` (the TorchScript exporter: the
dynamo one needs ``onnxscript``, which samdesk does not install) at opset
:data:`OPSET`, with the fixed shapes of the example inputs (the 1024 x 1024
input of SAM and SAM 2). The weights the chunk's ``owner`` holds become the
graph's initialisers, so the user's checkpoint, fine-tuned included, is what
is exported. ``onnx-int8`` graphs are ``quantize_dynamic`` of the fp32 ones
(int8 weights of the MatMuls, activations quantised per call).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from samdesk.inference.runtimes.cache import atomic_target
from samdesk.inference.runtimes.chunks import Chunk, graph_input, graph_output

OPSET = 17


class _Traced(torch.nn.Module):
    """A chunk as a module: its owner registered (the weights), its function as ``forward``."""

    def __init__(self, chunk: Chunk) -> None:
        super().__init__()
        self.owner = chunk.owner
        self._fn = chunk.fn

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        return self._fn(self.owner, *tensors)


def export_chunk(chunk: Chunk, example: tuple[torch.Tensor, ...], path: Path) -> None:
    """Write ``chunk`` traced on ``example`` (its inputs, in order) to ``path``, atomically."""
    module = _Traced(chunk).eval()
    with atomic_target(Path(path)) as temporary, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation, tracer notes
        with torch.no_grad():
            torch.onnx.export(module, example, str(temporary),
                              input_names=[graph_input(n) for n in chunk.inputs],
                              output_names=[graph_output(n) for n in chunk.outputs],
                              opset_version=OPSET, do_constant_folding=True, dynamo=False)


def quantize_chunk(fp32: Path, path: Path) -> None:
    """Write the dynamic int8 quantisation of the graph ``fp32`` to ``path``, atomically."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    root.addFilter(_no_preprocessing_advice)
    try:
        with atomic_target(Path(path)) as temporary:
            quantize_dynamic(str(fp32), str(temporary), weight_type=QuantType.QInt8)
    finally:
        root.removeFilter(_no_preprocessing_advice)


def _no_preprocessing_advice(record: logging.LogRecord) -> bool:
    """Drop the quantiser's advice to pre-process, logged on the root logger per graph."""
    return not str(record.msg).startswith("Please consider to run pre-processing")
