"""Text prompt -> masks: the tiny GroundingDINO finds boxes, a mask engine segments them.

The mask engines are GrabCut (no weights) and a tiny random-weight SAM
(tests/model_factories.py), both loaded through ``loading.load_model``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from samdesk.inference.engines import loading
from samdesk.inference.engines.base import Embedding, Engine, EngineError, Prediction, Prompts
from samdesk.inference.engines.groundingdino import GroundingDinoDetector, normalise_caption
from samdesk.inference.engines.text import segment_text
from tests.gdino_factory import TinyGdino, install_tiny_gdino, scene_image, shared_tiny_gdino
from tests.mask_compare import LOGIT_TOL, SCORE_TOL, assert_masks_close, full_logits
from tests.model_factories import make_sam_checkpoint, registered_test_model

TEXT = "Cat. red car. Dog"
# A wide image keeps the detector's input small (200 x 1333).
RGB = scene_image(150, 1000, seed=3)


class CountingEngine:
    """Wraps an engine and records every call the pipeline makes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.model_id = engine.model_id
        self.embeds = 0
        self.predicts: list[tuple[Prompts, bool]] = []

    def embed(self, rgb: np.ndarray) -> Embedding:
        self.embeds += 1
        return self.engine.embed(rgb)

    def predict(self, embedding: Embedding, prompts: Prompts,
                mask_input: np.ndarray | None = None, multimask: bool = True) -> Prediction:
        self.predicts.append((prompts, multimask))
        return self.engine.predict(embedding, prompts, mask_input, multimask)


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GroundingDinoDetector]:
    tiny: TinyGdino = shared_tiny_gdino(tmp_path_factory)
    with pytest.MonkeyPatch.context() as mp:
        install_tiny_gdino(mp, tiny)
        yield loading.load_model(tiny.spec.name, tiny.checkpoint, "cpu")


@pytest.fixture(scope="module")
def thresholds(detector: GroundingDinoDetector) -> tuple[float, float]:
    """A box threshold that lets 3 to 6 boxes through, and a median text threshold."""
    token_scores, _ = detector.raw_outputs(RGB, normalise_caption(TEXT))
    best = np.unique(token_scores.max(axis=1).astype(np.float64))[::-1]
    box_threshold = float((best[3] + best[4]) / 2) if len(best) > 4 else 0.0
    kept = token_scores[token_scores.max(axis=1) > box_threshold]
    return box_threshold, float(np.median(kept[:, 1:8]))


@pytest.fixture(scope="module")
def grabcut() -> Engine:
    return loading.load_model("grabcut", None, "cpu")


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path = make_sam_checkpoint(tmp_path_factory.mktemp("sam") / "sam.pth")
    with registered_test_model("sam", "tiny") as spec:
        yield loading.load_model(spec.name, path, "cpu")


def test_each_box_gets_one_grabcut_mask_labelled_by_its_phrase(
    detector: GroundingDinoDetector, grabcut: Engine, thresholds: tuple[float, float]
) -> None:
    engine = CountingEngine(grabcut)
    objects = segment_text(detector, engine, RGB, TEXT, *thresholds)
    found = detector.detect(RGB, TEXT, *thresholds)

    assert 3 <= len(objects) == len(found)
    assert engine.embeds == 1 and len(engine.predicts) == 1
    prompts, multimask = engine.predicts[0]
    assert not multimask
    np.testing.assert_allclose(np.array(prompts.boxes), found.boxes, atol=1e-4)
    assert [o.phrase for o in objects] == found.phrases
    np.testing.assert_allclose([o.score for o in objects], found.scores, atol=1e-6)
    height, width = RGB.shape[:2]
    for obj in objects:
        assert obj.mask.shape == (height, width) and obj.mask.dtype == bool
        x0, y0, x1, y1 = obj.box
        outside = obj.mask.copy()
        outside[max(0, int(y0) - 1):int(np.ceil(y1)) + 1,
                max(0, int(x0) - 1):int(np.ceil(x1)) + 1] = False
        assert not outside.any(), "GrabCut mask leaks out of its box"
        assert 0.0 <= obj.mask_score <= 1.0 and obj.logits is None


def test_sam_masks_match_one_box_at_a_time(
    detector: GroundingDinoDetector, tiny_sam: Engine, thresholds: tuple[float, float]
) -> None:
    embedding = tiny_sam.embed(RGB)
    engine = CountingEngine(tiny_sam)
    objects = segment_text(detector, engine, RGB, TEXT, *thresholds, embedding=embedding)

    assert engine.embeds == 0, "the given embedding was not reused"
    assert len(engine.predicts) == 1 and len(objects) >= 3
    frame = tiny_sam.frame(RGB.shape[:2])
    for obj in objects:
        # batched and single-box decoding are two float paths: equal as a person sees them
        alone = tiny_sam.predict(embedding, Prompts(boxes=(obj.box,)), multimask=False)
        assert obj.logits is not None and obj.logits.shape == (1, 256, 256)
        assert_masks_close(obj.mask, alone.masks[0, 0], full_logits(alone.logits[0, 0], frame))
        np.testing.assert_allclose(obj.logits, alone.logits[0, :1], atol=LOGIT_TOL)
        assert obj.mask_score == pytest.approx(float(alone.scores[0, 0]), abs=SCORE_TOL)
    assert any(obj.mask.any() for obj in objects)
    assert len({obj.mask.tobytes() for obj in objects}) == len(objects), "masks repeat"


def test_no_detection_gives_no_objects_and_no_engine_call(
    detector: GroundingDinoDetector, grabcut: Engine
) -> None:
    token_scores, _ = detector.raw_outputs(RGB, normalise_caption(TEXT))
    ceiling = min(1.0, float(token_scores.max()) + 1e-6)
    engine = CountingEngine(grabcut)
    assert segment_text(detector, engine, RGB, TEXT, box_threshold=ceiling) == []
    assert engine.embeds == 0 and engine.predicts == []


def test_embedding_of_another_image_is_refused(
    detector: GroundingDinoDetector, grabcut: Engine, thresholds: tuple[float, float]
) -> None:
    other = grabcut.embed(scene_image(100, 1000, seed=4))
    with pytest.raises(EngineError, match="1000x100"):
        segment_text(detector, grabcut, RGB, TEXT, *thresholds, embedding=other)

