"""What the SAM and SAM 2 engines share: the decoder's low-resolution output,
the checks of a request before it is decoded, and ``predict`` on top of
``propose``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from samdesk.inference.engines.base import Embedding, EngineError, Prediction, Prompts

LOW_RES = 256
"""Side of the decoder's square logits."""


@dataclass
class LowRes:
    """The decoder's output before upsampling.

    ``logits``: float32 ``(objects, candidates, 256, 256)``, unclamped, in the
    1024-square input frame / 4 (SAM: of the padded square); ``scores``:
    float32 ``(objects, candidates)``.
    """

    logits: torch.Tensor
    scores: torch.Tensor


def check_request(embedding: Embedding, prompts: Prompts, model_id: str) -> None:
    """Refuse an embedding made by another model, or no prompt at all."""
    if embedding.model_id != model_id:
        raise EngineError(
            f"embedding was made by {embedding.model_id}, not {model_id}; re-encode"
        )
    if prompts.is_empty:
        raise EngineError("no prompt: add a point or a box")


def mask_input_tensor(
    mask_input: np.ndarray | None, objects: int, device: torch.device
) -> torch.Tensor | None:
    """``mask_input`` as a float32 ``(objects, 1, 256, 256)`` tensor, checked."""
    if mask_input is None:
        return None
    array = np.asarray(mask_input, dtype=np.float32)
    if array.ndim == 2:
        array = array[None]
    if array.shape != (objects, LOW_RES, LOW_RES):
        raise EngineError(
            f"mask_input has shape {array.shape}; expected ({objects}, {LOW_RES}, {LOW_RES})"
        )
    return torch.as_tensor(array, device=device)[:, None]


class Proposes:
    """For an engine with ``propose(embedding, prompts, mask_input, multimask)``
    returning a :class:`~samdesk.inference.engines.upsample.Proposal`: its ``predict``."""

    def predict(
        self,
        embedding: Embedding,
        prompts: Prompts,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> Prediction:
        """Masks for ``prompts`` on the embedded image; see :class:`Prediction`.

        Every candidate of ``propose`` upsampled, with the logits ``propose``
        returns for refining (SAM 2 clamps them to +-32, as its reference
        does; the masks come from the unclamped ones).
        """
        proposal = self.propose(embedding, prompts, mask_input, multimask)  # type: ignore[attr-defined]
        return proposal.prediction()
