"""The worker's first answer to a prediction: the mask shown at once, the rest later.

Qt-free, so the benchmarks time exactly what the worker runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from samdesk.inference.base import Embedding
from samdesk.inference.requests import Predict, PredictResult, UpsampleCandidate


def answer(engine: Any, embedding: Embedding,
           job: Predict) -> tuple[PredictResult, list[UpsampleCandidate]]:
    """The first answer to ``job`` and the upsampling jobs for the candidates it lacks.

    With ``engine.propose``: every score and logit, each object's best
    candidate upsampled (pixel for pixel ``engine.predict``'s), and one job per
    other candidate, best scores first (the order Tab shows them). Without it
    (GrabCut): ``engine.predict``'s whole answer and no jobs.
    """
    if not hasattr(engine, "propose"):
        prediction = engine.predict(embedding, job.prompts, job.mask_input, job.multimask)
        return PredictResult.of(job.request_id, job.image.key, job.prompts, prediction), []
    proposal = engine.propose(embedding, job.prompts, job.mask_input, job.multimask)
    best = proposal.best()
    shown = {(i, int(c)): proposal.mask(i, int(c)) for i, c in enumerate(best)}
    result = PredictResult(job.request_id, job.image.key, job.prompts, proposal.scores,
                           proposal.logits, shown)
    rest = [UpsampleCandidate(job.request_id, job.image, proposal, i, int(c))
            for i in range(proposal.scores.shape[0])
            for c in np.argsort(-proposal.scores[i], kind="stable") if (i, int(c)) not in shown]
    return result, rest
