"""One chunk of a chunked encoder, as a runtime exports and runs it.

An engine describes its encoder as a list of :class:`Chunk` in the order its
torch ``embed_steps`` runs them. A chunk reads named values (``inputs``) and
writes named values (``outputs``); the runner keeps every value by name, so
the SAM 2 neck can read the stage outputs the trunk kept on the way
(``keep``). The first chunk reads ``"image"``, the preprocessed float32
``(1, 3, 1024, 1024)`` input; the last chunk's outputs are the
:class:`~samdesk.inference.engines.base.Embedding`'s tensors, by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

INPUT = "image"
"""Name of the preprocessed image the first chunk reads."""


@dataclass(frozen=True)
class Chunk:
    """``fn(owner, *inputs) -> output or tuple of outputs``, run on torch tensors.

    ``owner``: the ``torch.nn.Module`` whose weights the chunk uses (a block,
    the trunk, the whole model); the exported graph holds them. ``keep``: a
    second name the first output is also kept under (a stage output).
    """

    name: str
    owner: Any
    fn: Callable[..., Any]
    inputs: tuple[str, ...] = ("x",)
    outputs: tuple[str, ...] = ("x",)
    keep: str | None = None

    def run(self, *tensors: Any) -> tuple[Any, ...]:
        """The chunk in torch: its outputs as a tuple, in ``outputs`` order."""
        result = self.fn(self.owner, *tensors)
        return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def graph_input(name: str) -> str:
    """The exported graph's name for input ``name`` (an input and an output may share one)."""
    return f"in.{name}"


def graph_output(name: str) -> str:
    """The exported graph's name for output ``name``."""
    return f"out.{name}"
