"""The worker's first answer to a prediction: the mask shown at once, the rest later.

Qt-free, so the benchmarks time exactly what the worker runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from samdesk.inference.engines.base import Embedding
from samdesk.inference.engines.upsample import preview_size
from samdesk.inference.worker.requests import Predict, PredictResult, UpsampleCandidate
from samdesk.inference.worker.results import distinct


def answer(engine: Any, embedding: Embedding,
           job: Predict) -> tuple[PredictResult, list[UpsampleCandidate]]:
    """The first answer to ``job`` and the upsampling jobs for the candidates it lacks.

    With ``engine.propose``: every score and logit and each object's best
    candidate, upsampled pixel for pixel as ``engine.predict`` does; or, when
    ``job.preview`` is much smaller than the image, previewed at that size,
    with the full-resolution jobs of those best candidates first in the list.
    Then one job per other candidate, best scores first (the order Tab shows
    them). Without ``propose`` (GrabCut): ``engine.predict``'s whole answer and
    no jobs, repeated candidate masks dropped (:func:`distinct`).
    """
    if not hasattr(engine, "propose"):
        prediction = distinct(
            engine.predict(embedding, job.prompts, job.mask_input, job.multimask))
        return PredictResult.of(job.request_id, job.image.key, job.prompts, prediction), []
    proposal = engine.propose(embedding, job.prompts, job.mask_input, job.multimask)
    best = [(i, int(c)) for i, c in enumerate(proposal.best())]
    size = preview_size(job.preview, proposal.image_size)
    shown: dict[tuple[int, int], np.ndarray] = {}
    previews: dict[tuple[int, int], np.ndarray] = {}
    for key in best:
        if size is None:
            shown[key] = proposal.mask(*key)
        else:
            previews[key] = proposal.preview(*key, size)
    result = PredictResult(job.request_id, job.image.key, job.prompts, proposal.scores,
                           proposal.logits, shown, previews)
    others = [(i, int(c)) for i in range(proposal.scores.shape[0])
              for c in np.argsort(-proposal.scores[i], kind="stable")]
    order = [key for key in best + others if key not in shown]
    rest = [UpsampleCandidate(job.request_id, job.image, proposal, i, c, (i, c) in previews)
            for i, c in dict.fromkeys(order)]
    return result, rest
