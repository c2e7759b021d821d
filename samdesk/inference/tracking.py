"""Run a :class:`~samdesk.tracking.TrackPlan` on a SAM 2 video session.

No Qt and no project: the caller (``samdesk track``, the window's worker)
builds the plan from the project, gives the frames, and writes each
:class:`~samdesk.tracking.FrameResult` as it arrives (``project.write_propagated``),
so a killed run keeps every frame already written.

Every conditioning input is added before propagation starts (all objects,
whichever frame each was first prompted on, tracked together in one session);
then the session propagates forward, backward, or both (forward, then backward
from the same start in the same session, as SAM 2's own demo does). A result is
never given for a frame on which a person conditioned that track.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from samdesk import masks
from samdesk.annotations import RLE
from samdesk.tracking import Conditioning, FrameResult, TrackPlan

__all__ = ["run_plan"]


def _add(session: Any, item: Conditioning) -> np.ndarray:
    """Give ``item`` to the session; returns the ``(H, W)`` bool mask it makes there."""
    if item.is_prompt:
        points = np.asarray(item.points, dtype=np.float32).reshape(-1, 2) if item.points else None
        labels = np.asarray(item.labels, dtype=np.int32) if item.points else None
        box = np.asarray(item.box, dtype=np.float32) if item.box is not None else None
        return session.add_prompt(item.frame, item.track_id, points=points, labels=labels,
                                  box=box)
    assert item.mask is not None
    return session.add_mask(item.frame, item.track_id, masks.decode(item.mask))


def run_plan(engine: Any, plan: TrackPlan, frames: Any,
             on_frame: Callable[[FrameResult], None],
             progress: Callable[[int, int], None] = lambda done, total: None,
             cancelled: Callable[[], bool] = lambda: False, *,
             on_prompted: Callable[[Conditioning, RLE], None] | None = None) -> int:
    """Carry out ``plan`` with ``engine`` (a ``SAM2VideoEngine``) over ``frames`` (a
    ``FrameSource``: ``len`` and ``rgb(i) -> (H, W, 3) uint8``).

    ``on_frame`` gets each track's propagated mask on each frame visited (COCO RLE
    and the object score logit), except on frames that condition that track.
    ``progress(done, total)`` follows each frame visited (``total`` =
    ``len(plan.order())``). ``cancelled`` is asked before each frame; a cancelled
    run returns what it gave so far. ``on_prompted(item, rle)`` gets the mask each
    new prompt (points or a box with no stored layer, ``layer_id`` None) makes on
    its frame, before propagation starts, so the caller can keep it as a
    person-made layer. Returns the number of results given to ``on_frame``.
    """
    total = len(plan.order())
    skip = plan.conditioned()
    session = engine.start(frames)
    given = done = 0
    try:
        for item in plan.conditioning:
            made = _add(session, item)
            if on_prompted is not None and item.is_prompt and item.layer_id is None:
                on_prompted(item, masks.encode(made))
        phases = {"forward": (False,), "backward": (True,), "both": (False, True)}
        # the engine counts the start frame in max_frames; the plan counts frames past it
        span = None if plan.max_frames is None else plan.max_frames + 1
        for reverse in phases[plan.direction]:
            if cancelled():
                break
            for found in session.propagate(plan.start, reverse=reverse, max_frames=span,
                                           cancelled=cancelled):
                image_id = plan.frame_ids[found.frame]
                for track_id, mask in sorted(found.masks.items()):
                    if (found.frame, track_id) in skip:
                        continue
                    score = found.object_scores.get(track_id, float("nan"))
                    on_frame(FrameResult(image_id, track_id, masks.encode(mask), float(score)))
                    given += 1
                done += 1
                progress(done, total)
    finally:
        session.close()
    return given
