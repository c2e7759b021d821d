"""GrabCut engine: masks of drawn shapes on a textured background, from boxes and clicks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from samdesk.inference.engines.base import Embedding, Engine, EngineError, Point, Prompts
from samdesk.inference.engines.grabcut import GrabCutEngine
from samdesk.inference.engines.loading import load_model

RED = (215, 70, 55)
BLUE = (50, 90, 225)


def background(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A textured RGB uint8 background: smooth colour blotches (channels 20..150) plus noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(20, 150, (6, 8, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    noisy = smooth + rng.normal(0, 12, (height, width, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def paint(image: np.ndarray, shape: np.ndarray, colour: tuple[int, ...], seed: int = 1) -> None:
    """Fill ``shape`` (bool mask) with a noisy ``colour``, in place."""
    rng = np.random.default_rng(seed)
    values = np.asarray(colour, np.float32) + rng.normal(0, 12, (int(shape.sum()), 3))
    image[shape] = np.clip(values, 0, 255).astype(np.uint8)


def disk(height: int, width: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return (xx - cx) ** 2 + (yy - cy) ** 2 < r**2


def rect(height: int, width: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    out = np.zeros((height, width), bool)
    out[y0:y1, x0:x1] = True
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def best_masks(engine: GrabCutEngine, image: np.ndarray, prompts: Prompts) -> np.ndarray:
    """The best candidate of each object, bool ``(objects, H, W)``."""
    pred = engine.predict(engine.embed(image), prompts)
    assert pred.masks.dtype == bool and pred.masks.shape[2:] == image.shape[:2]
    assert pred.scores.shape == pred.masks.shape[:2] and pred.logits is None
    return pred.masks[np.arange(len(pred.masks)), pred.best()]


@pytest.fixture(scope="module")
def engine() -> GrabCutEngine:
    return GrabCutEngine()


def test_box_around_disk_gives_the_disk(engine: GrabCutEngine) -> None:
    image, shape = background(240, 320), disk(240, 320, 170, 115, 60)
    paint(image, shape, RED)
    mask = best_masks(engine, image, Prompts(boxes=((100, 45, 240, 185),)))[0]
    assert iou(mask, shape) >= 0.9


def test_box_around_rectangle_gives_the_rectangle(engine: GrabCutEngine) -> None:
    image, shape = background(240, 320, seed=3), rect(240, 320, 90, 60, 230, 170)
    paint(image, shape, BLUE)
    mask = best_masks(engine, image, Prompts(boxes=((80, 50, 240, 180),)))[0]
    assert iou(mask, shape) >= 0.9


def test_box_around_ring_keeps_its_hole(engine: GrabCutEngine) -> None:
    image = background(240, 320, seed=4)
    hole = disk(240, 320, 160, 120, 40)
    ring = disk(240, 320, 160, 120, 90) & ~hole
    paint(image, ring, RED)
    mask = best_masks(engine, image, Prompts(boxes=((60, 20, 260, 220),)))[0]
    assert iou(mask, ring) >= 0.9
    assert mask[hole].mean() < 0.1


def test_single_click_selects_the_object_under_it(engine: GrabCutEngine) -> None:
    image = background(240, 320, seed=5)
    clicked, twin = disk(240, 320, 100, 120, 55), disk(240, 320, 260, 120, 40)
    paint(image, clicked, RED)
    paint(image, twin, RED, seed=2)
    mask = best_masks(engine, image, Prompts(points=(Point(110, 110),)))[0]
    assert iou(mask, clicked) >= 0.8
    assert mask[twin].mean() < 0.05  # the same colour elsewhere is another object


def test_negative_click_removes_a_region(engine: GrabCutEngine) -> None:
    image = background(240, 320, seed=6)
    round_part = disk(240, 320, 120, 120, 60)
    square_part = rect(240, 320, 170, 70, 270, 170) & ~round_part
    paint(image, round_part, RED)
    paint(image, square_part, BLUE)
    box = (50, 50, 280, 190)
    both = best_masks(engine, image, Prompts(boxes=(box,)))[0]
    assert both[square_part].mean() > 0.9 and both[round_part].mean() > 0.9
    prompts = Prompts(points=(Point(120, 120), Point(230, 120, positive=False)), boxes=(box,))
    without = best_masks(engine, image, prompts)[0]
    assert without[square_part].mean() < 0.1
    assert iou(without, round_part) >= 0.9


def test_two_boxes_give_two_objects(engine: GrabCutEngine) -> None:
    image = background(240, 320, seed=7)
    left, right = disk(240, 320, 80, 120, 50), rect(240, 320, 180, 60, 290, 180)
    paint(image, left, RED)
    paint(image, right, BLUE)
    masks = best_masks(engine, image, Prompts(boxes=((20, 60, 140, 180), (170, 50, 300, 190))))
    assert masks.shape == (2, 240, 320)
    assert iou(masks[0], left) >= 0.9 and iou(masks[1], right) >= 0.9


def test_large_image_is_segmented_at_full_size_from_a_small_copy() -> None:
    engine = GrabCutEngine(max_side=512)
    height, width = 1500, 2000
    image, shape = background(height, width, seed=8), disk(height, width, 1100, 700, 380)
    paint(image, shape, RED)
    embedding = engine.embed(image)
    assert max(embedding.tensors["image"].shape[:2]) == 512
    assert embedding.image_size == (height, width)
    pred = engine.predict(embedding, Prompts(points=(Point(1100, 700),)), multimask=False)
    assert pred.masks.shape == (1, 1, height, width)
    assert iou(pred.masks[0, 0], shape) >= 0.9


def test_scores_rank_the_candidate_that_fits_the_colours(engine: GrabCutEngine) -> None:
    image = background(240, 320, seed=4)
    hole = disk(240, 320, 160, 120, 40)
    paint(image, disk(240, 320, 160, 120, 90) & ~hole, RED)
    pred = engine.predict(engine.embed(image), Prompts(boxes=((60, 20, 260, 220),)))
    assert pred.masks.shape[1] == 3  # labelling, largest part, holes filled
    assert np.all((pred.scores >= 0) & (pred.scores <= 1))
    filled = pred.masks[0, 2]
    assert filled[hole].mean() > 0.9  # the third candidate fills holes ...
    assert pred.scores[0, 2] < pred.scores[0, 0]  # ... and scores lower when the hole is real


@pytest.mark.parametrize(
    ("prompts", "words"),
    [
        (Prompts(), "click a point"),
        (Prompts(points=(Point(400, 10),)), "outside the 320x240 image"),
        (Prompts(points=(Point(10, 10, positive=False),)), "negative points"),
        (Prompts(boxes=((400, 300, 500, 400),)), "does not cover"),
    ],
)
def test_bad_prompts_are_reported_in_one_line(
    engine: GrabCutEngine, prompts: Prompts, words: str
) -> None:
    embedding = engine.embed(background(240, 320))
    with pytest.raises(EngineError, match=words) as info:
        engine.predict(embedding, prompts)
    assert "\n" not in str(info.value)


def test_embedding_of_another_model_is_refused(engine: GrabCutEngine) -> None:
    foreign = Embedding("sam_vit_b", (240, 320), {"features": np.zeros((1, 8), np.float32)})
    with pytest.raises(EngineError, match="sam_vit_b"):
        engine.predict(foreign, Prompts(points=(Point(5, 5),)))


def test_registry_builds_grabcut_without_a_checkpoint() -> None:
    engine = load_model("grabcut", None, "cpu")
    assert isinstance(engine, Engine) and engine.model_id == "grabcut"


def uniform_object_photo() -> tuple[np.ndarray, np.ndarray]:
    """A dark, nearly flat disk on a textured background (the flood fill of a
    negative click inside it covers the whole disk)."""
    image = background(240, 320, seed=9)
    shape = disk(240, 320, 160, 120, 70)
    rng = np.random.default_rng(3)
    image[shape] = np.clip(20 + rng.normal(0, 1, (int(shape.sum()), 3)), 0, 255).astype(np.uint8)
    return image, shape


@pytest.mark.parametrize("negative", [(160, 175), (200, 120)])
def test_negative_click_on_the_clicked_object_keeps_the_positive_click(
    engine: GrabCutEngine, negative: tuple[int, int]
) -> None:
    image, shape = uniform_object_photo()
    prompts = Prompts(points=(Point(140, 100), Point(*negative, positive=False)))
    pred = engine.predict(engine.embed(image), prompts)
    for cand in pred.masks[0]:
        assert cand[100, 140], "the positive click's own pixel is in every candidate"
        assert not cand[negative[1], negative[0]]
        assert cand.sum() > 50 and (cand & ~shape).sum() < 0.2 * cand.sum()


def test_box_candidates_keep_the_part_under_a_positive_click(engine: GrabCutEngine) -> None:
    image = background(240, 320, seed=10)
    big, small = disk(240, 320, 110, 120, 60), disk(240, 320, 250, 120, 20)
    paint(image, big, RED)
    paint(image, small, RED, seed=4)
    prompts = Prompts(points=(Point(250, 120),), boxes=((40, 50, 280, 190),))
    pred = engine.predict(engine.embed(image), prompts)
    assert all(cand[120, 250] for cand in pred.masks[0])


def test_a_prompt_grabcut_cannot_model_is_one_line_not_an_opencv_error() -> None:
    engine = GrabCutEngine()
    tiny = np.full((4, 4, 3), 90, np.uint8)  # the click's disk covers the whole image
    pred = engine.predict(engine.embed(tiny), Prompts(points=(Point(1, 1),)))
    assert pred.masks[0, :, 1, 1].all()


def test_the_worker_offers_only_distinct_candidates(engine: GrabCutEngine) -> None:
    from pathlib import Path

    from samdesk.inference.worker.answers import answer
    from samdesk.inference.worker.requests import ImageRef, Predict

    image = background(240, 320, seed=5)
    paint(image, disk(240, 320, 100, 120, 55), RED)
    embedding = engine.embed(image)
    prompts = Prompts(points=(Point(110, 110),))
    every = engine.predict(embedding, prompts)
    assert np.array_equal(every.masks[0, 0], every.masks[0, 1])  # GrabCut repeats itself here
    result, rest = answer(engine, embedding, Predict(1, ImageRef(Path("a.png"), "k"), prompts))
    assert rest == [] and result.complete
    shown = [result.masks[0, c] for c in range(result.scores.shape[1])]
    assert len({m.tobytes() for m in shown}) == len(shown) == 1
    assert result.scores[0, 0] == pytest.approx(every.scores[0, 0])
