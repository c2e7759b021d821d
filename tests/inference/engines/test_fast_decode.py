"""The interactive path (``propose`` + the shown candidate) draws the reference's masks.

``Engine.propose`` decodes prompts and upsamples a candidate only when asked;
:class:`~samdesk.inference.engines.upsample.MaskUpsampler` writes into reused buffers.
Both must give, pixel for pixel, the masks of ``SamPredictor.predict`` /
``SAM2ImagePredictor.predict`` (whose state is set from the engine's own
embedding, so only decoding and upsampling are compared here; the embeddings
themselves are compared in the engines' parity tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sam2.sam2_image_predictor import SAM2ImagePredictor
from segment_anything import SamPredictor

from samdesk.inference.engines import loading
from samdesk.inference.engines.base import Prompts
from samdesk.inference.engines.upsample import Frame, MaskUpsampler
from tests.model_factories import (
    IMAGES,
    SAM21_TINY_CONFIG,
    TINY_SAM,
    make_sam2_checkpoint,
    make_sam_checkpoint,
    prompt_case,
    registered_test_model,
    textured_image,
)

Reference = Callable[[Prompts], tuple[np.ndarray, np.ndarray]]
"""prompts -> the reference's (masks, scores), shaped (objects, candidates, ...)."""

CASES = ["one_point", "points_with_negatives", "box", "box_and_points", "several_boxes"]


def _arguments(prompts: Prompts) -> tuple[np.ndarray | None, ...]:
    coords = labels = box = None
    if prompts.points:
        coords = np.array([[p.x, p.y] for p in prompts.points])
        labels = np.array([int(p.positive) for p in prompts.points])
    if prompts.boxes:
        box = np.array(prompts.boxes) if len(prompts.boxes) > 1 else np.array(prompts.boxes[0])
    return coords, labels, box


def sam_reference(engine: object, embedding: object) -> Reference:
    height, width = embedding.image_size  # type: ignore[attr-defined]
    ref = SamPredictor(engine.model)  # type: ignore[attr-defined]
    ref.original_size = (height, width)
    ref.input_size = ref.transform.get_preprocess_shape(height, width, 1024)
    ref.features = torch.from_numpy(embedding.tensors["image_embed"])  # type: ignore[attr-defined]
    ref.is_image_set = True

    def predict(prompts: Prompts) -> tuple[np.ndarray, np.ndarray]:
        coords, labels, box = _arguments(prompts)
        if box is not None and box.ndim == 2:  # several boxes: the batched torch call
            boxes = torch.as_tensor(ref.transform.apply_boxes(box, ref.original_size),
                                    dtype=torch.float)
            masks, scores, _ = ref.predict_torch(None, None, boxes=boxes)
            return masks.numpy(), scores.numpy()
        masks, scores, _ = ref.predict(coords, labels, box, None, True)
        return masks[None], scores[None]
    return predict


def sam2_reference(engine: object, embedding: object) -> Reference:
    tensors = {k: torch.from_numpy(v) for k, v in embedding.tensors.items()}  # type: ignore
    ref = SAM2ImagePredictor(engine.model)  # type: ignore[attr-defined]
    ref._orig_hw = [embedding.image_size]  # type: ignore[attr-defined]
    ref._features = {"image_embed": tensors["image_embed"],
                     "high_res_feats": [tensors["high_res_0"], tensors["high_res_1"]]}
    ref._is_image_set = True

    def predict(prompts: Prompts) -> tuple[np.ndarray, np.ndarray]:
        masks, scores, _ = ref.predict(*_arguments(prompts), None, True)
        if len(prompts.boxes) > 1:
            return masks, scores
        return masks[None], scores[None]
    return predict


@pytest.fixture(scope="module", params=["sam", "sam2"])
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[object, dict[str, tuple[object, Reference]]]]:
    """(engine, {image name: (embedding, reference)}) for a tiny SAM and SAM 2.1 tiny."""
    folder = tmp_path_factory.mktemp("fast")
    if request.param == "sam":
        checkpoint: Path = make_sam_checkpoint(folder / "sam.pth", TINY_SAM)
        family, config, reference = "sam", TINY_SAM, sam_reference
    else:
        checkpoint = make_sam2_checkpoint(folder / "sam2.pt", SAM21_TINY_CONFIG)
        family, config, reference = "sam2", SAM21_TINY_CONFIG, sam2_reference
    with registered_test_model(family, config) as spec:
        engine = loading.load_model(spec.name, checkpoint, "cpu")
        images = {}
        for key, (height, width, seed) in IMAGES.items():
            embedding = engine.embed(textured_image(height, width, seed))
            images[key] = (embedding, reference(engine, embedding))
        yield engine, images


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("image", IMAGES)
def test_shown_candidate_is_the_references_best_mask(setup: tuple, image: str,
                                                     case: str) -> None:
    engine, images = setup
    embedding, reference = images[image]
    prompts = prompt_case(case, *embedding.image_size)
    ref_masks, ref_scores = reference(prompts)
    proposal = engine.propose(embedding, prompts)
    np.testing.assert_allclose(proposal.scores, ref_scores, atol=1e-4, rtol=0)
    shown = proposal.shown()
    assert shown.dtype == np.bool_ and shown.shape == (len(ref_masks), *embedding.image_size)
    for obj, best in enumerate(np.argmax(ref_scores, axis=1)):
        differing = int(np.count_nonzero(shown[obj] != ref_masks[obj, best]))
        assert differing == 0, f"object {obj}: {differing} pixels differ from the reference"


@pytest.mark.parametrize("image", IMAGES)
def test_every_candidate_asked_for_later_is_the_references(setup: tuple, image: str) -> None:
    engine, images = setup
    embedding, reference = images[image]
    prompts = prompt_case("box_and_points", *embedding.image_size)
    ref_masks, _ = reference(prompts)
    proposal = engine.propose(embedding, prompts)
    proposal.shown()
    for candidate in (2, 0, 1):  # Tab through the candidates in any order
        assert np.array_equal(proposal.mask(0, candidate), ref_masks[0, candidate])
    assert np.array_equal(proposal.prediction().masks, ref_masks)
    assert np.array_equal(engine.predict(embedding, prompts).masks, ref_masks)


def test_a_shown_mask_stays_as_it_was_after_later_clicks(setup: tuple) -> None:
    engine, images = setup
    embedding, reference = images["4000x3000"]
    first_prompts = prompt_case("one_point", *embedding.image_size)
    first = engine.propose(embedding, first_prompts).shown()
    kept = first.copy()
    later = engine.propose(embedding, prompt_case("box", *embedding.image_size)).shown()
    assert not np.array_equal(later, kept)  # the second click drew another mask...
    assert np.array_equal(first, kept)  # ...without touching the first one
    ref_masks, ref_scores = reference(first_prompts)
    assert np.array_equal(first[0], ref_masks[0, int(np.argmax(ref_scores[0]))])


@pytest.mark.parametrize(("size", "crop"), [
    ((3000, 4000), (768, 1024)),  # SAM, landscape: padded below
    ((1700, 600), (1024, 361)),  # SAM, portrait: padded right
    ((7, 5), (1024, 731)),  # an image smaller than the logits: bilinear shrinks
    ((1700, 600), None),  # SAM 2: the square stretched onto the image
])
def test_upsampler_equals_interpolate_and_threshold(size: tuple[int, int],
                                                    crop: tuple[int, int] | None) -> None:
    generator = torch.Generator().manual_seed(sum(size))
    logits = torch.randn(2, 3, 256, 256, generator=generator) * 8
    upsampler = MaskUpsampler()
    got = upsampler.masks(logits, Frame(size, crop, 1024, 0.0))
    expected = logits
    if crop is not None:
        expected = F.interpolate(expected, (1024, 1024), mode="bilinear", align_corners=False)
        expected = expected[..., : crop[0], : crop[1]]
    expected = F.interpolate(expected, size, mode="bilinear", align_corners=False) > 0.0
    assert got.shape == (2, 3, *size) and got.dtype == np.bool_
    assert np.array_equal(got, expected.numpy())
    again = upsampler.masks(-logits, Frame(size, crop, 1024, 0.0))  # buffers reused
    assert np.array_equal(got, expected.numpy())
    assert not np.array_equal(again, got)
