"""Candidate masks of one prediction, as the session shows them.

A prediction offers several candidates (SAM's multimask output, GrabCut's
variants). Two of them are often the very same mask; Tab must never seem to
do nothing, so :func:`distinct` keeps the first of equal masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Candidate:
    """One proposed mask: ``mask`` bool ``(H, W)`` in image pixels, or None while
    the worker still upsamples it; ``logits`` float32 ``(1, 256, 256)`` for
    refining (None for GrabCut); ``phrase`` for text-prompt candidates (the
    label they get); ``index``: the model's candidate number (for late masks);
    ``preview``: bool ``(h, w)``, the mask at screen size, drawn until ``mask``
    arrives (never saved)."""

    mask: np.ndarray | None
    score: float
    logits: np.ndarray | None = None
    phrase: str | None = None
    index: int = 0
    preview: np.ndarray | None = None


def distinct(candidates: list[Candidate], index: int, wanted: int | None
             ) -> tuple[list[Candidate], int, int | None]:
    """``candidates`` without repeated masks, with the shown ``index`` and Tab's
    ``wanted`` pick mapped into the shorter list.

    A candidate whose mask is still upsampling (``mask`` None) is kept until its
    mask arrives; masks are compared pixel for pixel (bool ``(H, W)``).
    """
    kept: list[Candidate] = []
    moved: dict[int, int] = {}
    for old, cand in enumerate(candidates):
        same = next((k for k, other in enumerate(kept) if cand.mask is not None
                     and other.mask is not None and cand.mask.shape == other.mask.shape
                     and np.array_equal(cand.mask, other.mask)), None)
        if same is None:
            moved[old] = len(kept)
            kept.append(cand)
        else:
            moved[old] = same
    if len(kept) == len(candidates):
        return candidates, index, wanted
    return kept, moved.get(index, 0), None if wanted is None else moved.get(wanted)
