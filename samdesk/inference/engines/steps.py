"""Image encoders run in chunks, so the worker can answer clicks in between.

An engine with ``embed_steps(rgb)`` (SAM, SAM 2) returns a generator,
:data:`EmbedSteps`, that runs the same computation as its ``embed(rgb)`` one
chunk at a time (preprocessing, patch embedding, each transformer block, the
neck) and yields between chunks; the :class:`~samdesk.inference.engines.base.Embedding`
is the generator's return value (``StopIteration.value``). ``embed`` itself is
:func:`run_to_end` of ``embed_steps``, so there is one implementation.

Nothing of torch's thread-local state (inference mode, autocast) is held
across a yield: each chunk enters its own :func:`encoding` context, so work
run between chunks (a mask decode) sees the caller's state, never the
encoder's bf16 autocast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator

import torch

from samdesk.inference.engines.base import Embedding
from samdesk.inference.engines.device import encoder_autocast

EmbedSteps = Generator[None, None, Embedding]
"""Yields ``None`` between chunks of an encode; returns the finished embedding."""


def run_to_end(steps: EmbedSteps) -> Embedding:
    """Run every chunk of ``steps`` without pausing; the embedding it returns."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


@contextlib.contextmanager
def encoding(device: torch.device, bf16: bool, autocast: bool = True) -> Iterator[None]:
    """Inference mode plus, when ``autocast``, the encoder's autocast (bf16 on CUDA only).

    Entered around each chunk, exactly as the one-piece encoder ran inside them.
    """
    with torch.inference_mode():
        if autocast:
            with encoder_autocast(device, bf16):
                yield
        else:
            yield
