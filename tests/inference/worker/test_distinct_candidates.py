"""Candidates a person can cycle with Tab are distinct masks, scores and logits kept with them."""

from __future__ import annotations

import numpy as np

from samdesk.inference.engines.base import Prediction
from samdesk.inference.worker.results import distinct, distinct_candidates


def blob(x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((8, 10), bool)
    mask[2:6, x0:x1] = True
    return mask


def test_repeated_masks_keep_the_best_scored_copy_in_candidate_order() -> None:
    a, b = blob(1, 4), blob(3, 9)
    masks = np.stack([a, b, a.copy(), b.copy()])
    assert distinct_candidates(masks, np.array([0.5, 0.7, 0.9, 0.6])) == [1, 2]
    assert distinct_candidates(masks, np.array([0.5, 0.5, 0.5, 0.5])) == [0, 1]


def test_distinct_prediction_slices_masks_scores_and_logits_together() -> None:
    a, b = blob(1, 4), blob(3, 9)
    logits = np.arange(3 * 4, dtype=np.float32).reshape(1, 3, 2, 2)
    pred = Prediction(np.stack([a, a, b])[None], np.array([[0.8, 0.9, 0.3]], np.float32),
                      logits)
    out = distinct(pred)
    assert out.masks.shape == (1, 2, 8, 10)
    assert np.array_equal(out.masks[0, 0], a) and np.array_equal(out.masks[0, 1], b)
    assert out.scores.tolist() == [[np.float32(0.9), np.float32(0.3)]]
    assert np.array_equal(out.logits, logits[:, 1:])


def test_with_several_objects_a_candidate_stays_while_any_object_needs_it() -> None:
    a, b, c = blob(1, 4), blob(3, 9), blob(0, 2)
    masks = np.stack([np.stack([a, a, a]), np.stack([b, c, b])])
    scores = np.array([[0.9, 0.8, 0.7], [0.9, 0.8, 0.7]], np.float32)
    out = distinct(Prediction(masks, scores))
    assert out.masks.shape[:2] == (2, 2)  # candidate 2 repeats candidate 0 for both objects
    assert np.array_equal(out.masks[1, 1], c)
    unchanged = Prediction(np.stack([a, b])[None], np.array([[0.4, 0.6]], np.float32))
    assert distinct(unchanged) is unchanged
