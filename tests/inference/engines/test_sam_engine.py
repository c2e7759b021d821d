"""The SAM engine gives the same masks as ``segment_anything.SamPredictor``.

Both sides load the same random-weight checkpoint file: the engine through
``loading.load_model`` (the path a user's file takes), the reference through
segment_anything's own builder. Images are not square (4000 x 3000 and
600 x 1700), so resizing, padding, coordinate scaling and the crop-and-upsample
of the masks are all exercised. Most tests use the small ``tiny`` ViT; one
slow test runs a full-size ViT-B.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor, sam_model_registry
from segment_anything.build_sam import _build_sam

from samdesk.inference.engines import loading
from samdesk.inference.engines.base import EngineError, Point, Prompts
from samdesk.inference.engines.sam import SAM_ARCHS, SamEngine
from tests.model_factories import (
    IMAGES,
    TINY_SAM,
    assert_same_prediction,
    make_sam_checkpoint,
    prompt_case,
    registered_test_model,
    textured_image,
)


def reference_predict(
    ref: SamPredictor, prompts: Prompts, mask_input: np.ndarray | None, multimask: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference's (masks, scores, logits), shaped (objects, candidates, ...)."""
    if len(prompts.boxes) > 1:
        # Scale the boxes in float64 as ``SamPredictor.predict`` does for one box
        # (``apply_boxes_torch`` rounds to float32 first: 1-ulp shifts of the box
        # corners flip a handful of near-zero-logit pixels of this random model).
        boxes = ref.transform.apply_boxes(np.array(prompts.boxes), ref.original_size)
        boxes = torch.as_tensor(boxes, dtype=torch.float)
        masks, scores, logits = ref.predict_torch(None, None, boxes=boxes,
                                                  multimask_output=multimask)
        return masks.numpy(), scores.numpy(), logits.numpy()
    coords = labels = box = None
    if prompts.points:
        coords = np.array([[p.x, p.y] for p in prompts.points])
        labels = np.array([int(p.positive) for p in prompts.points])
    if prompts.boxes:
        box = np.array(prompts.boxes[0])
    masks, scores, logits = ref.predict(coords, labels, box, mask_input, multimask)
    return masks[None], scores[None], logits[None]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sam_checkpoint(tmp_path_factory.mktemp("sam") / "tiny_sam.pth", TINY_SAM)


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path) -> Iterator[SamEngine]:
    with registered_test_model("sam", TINY_SAM) as spec:
        yield loading.load_model(spec.name, tiny_checkpoint, "cpu")


@pytest.fixture(scope="module")
def embedded(engine: SamEngine, tiny_checkpoint: Path) -> dict:
    """Per image: (image, engine embedding, reference predictor with the image set)."""
    arch = SAM_ARCHS[TINY_SAM]
    reference_model = _build_sam(arch.embed_dim, arch.depth, arch.num_heads,
                                 list(arch.global_attn_indexes), checkpoint=tiny_checkpoint)
    out = {}
    for key, (height, width, seed) in IMAGES.items():
        rgb = textured_image(height, width, seed)
        ref = SamPredictor(reference_model)
        ref.set_image(rgb)
        out[key] = (rgb, engine.embed(rgb), ref)
    return out


@pytest.mark.parametrize("image", IMAGES)
def test_embedding_equals_reference_features(embedded: dict, image: str) -> None:
    rgb, embedding, ref = embedded[image]
    assert embedding.image_size == rgb.shape[:2]
    features = embedding.tensors["image_embed"]
    assert features.shape == (1, 256, 64, 64) and features.dtype == np.float32
    np.testing.assert_allclose(features, ref.features.numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", ["one_point", "points_with_negatives", "box",
                                  "box_and_points", "several_boxes"])
@pytest.mark.parametrize("image", IMAGES)
def test_masks_match_reference(engine: SamEngine, embedded: dict, image: str, case: str) -> None:
    rgb, embedding, ref = embedded[image]
    prompts = prompt_case(case, *rgb.shape[:2])
    pred = engine.predict(embedding, prompts)
    objects = prompts.object_count
    assert pred.masks.shape == (objects, 3, *rgb.shape[:2])
    assert pred.scores.shape == (objects, 3)
    assert pred.logits.shape == (objects, 3, 256, 256)
    assert_same_prediction(pred.masks, pred.scores, pred.logits,
                           *reference_predict(ref, prompts, None, True))
    # The random model still draws real masks: neither empty nor the whole image.
    assert 0 < pred.masks.mean() < 1


@pytest.mark.parametrize("image", IMAGES)
def test_single_mask_output_matches_reference(engine: SamEngine, embedded: dict,
                                              image: str) -> None:
    rgb, embedding, ref = embedded[image]
    prompts = prompt_case("box_and_points", *rgb.shape[:2])
    pred = engine.predict(embedding, prompts, multimask=False)
    assert pred.masks.shape == (1, 1, *rgb.shape[:2])
    assert_same_prediction(pred.masks, pred.scores, pred.logits,
                           *reference_predict(ref, prompts, None, False))


@pytest.mark.parametrize("image", IMAGES)
def test_second_click_refines_with_previous_logits(engine: SamEngine, embedded: dict,
                                                   image: str) -> None:
    rgb, embedding, ref = embedded[image]
    height, width = rgb.shape[:2]
    first = Prompts(points=(Point(0.3 * width, 0.4 * height),))
    pred = engine.predict(embedding, first)
    _, ref_scores, ref_logits = reference_predict(ref, first, None, True)
    best = int(pred.best()[0])
    assert best == int(np.argmax(ref_scores[0]))
    second = Prompts(points=(*first.points, Point(0.55 * width, 0.3 * height, False)))
    refined = engine.predict(embedding, second, mask_input=pred.logits[0, best][None],
                             multimask=False)
    assert_same_prediction(refined.masks, refined.scores, refined.logits,
                           *reference_predict(ref, second, ref_logits[0, best][None], False))
    unrefined = engine.predict(embedding, second, multimask=False)
    assert not np.array_equal(refined.masks, unrefined.masks), "mask_input was ignored"


def test_different_prompts_give_different_masks(engine: SamEngine, embedded: dict) -> None:
    rgb, embedding, _ = embedded["600x1700"]
    a = engine.predict(embedding, prompt_case("one_point", *rgb.shape[:2]))
    b = engine.predict(embedding, prompt_case("box", *rgb.shape[:2]))
    assert not np.array_equal(a.masks, b.masks)


def test_embedding_from_another_model_is_refused(engine: SamEngine, embedded: dict) -> None:
    _, embedding, _ = embedded["600x1700"]
    foreign = type(embedding)("sam2.1_hiera_tiny", embedding.image_size, embedding.tensors)
    with pytest.raises(EngineError, match="sam2.1_hiera_tiny"):
        engine.predict(foreign, Prompts(points=(Point(10, 10),)))


def test_bad_mask_input_and_empty_prompts_are_refused(engine: SamEngine,
                                                      embedded: dict) -> None:
    _, embedding, _ = embedded["600x1700"]
    with pytest.raises(EngineError, match="mask_input has shape"):
        engine.predict(embedding, Prompts(points=(Point(10, 10),)),
                       mask_input=np.zeros((1, 64, 64), np.float32))
    with pytest.raises(EngineError, match="no prompt"):
        engine.predict(embedding, Prompts())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"certainly not a torch file", "not a readable checkpoint"),
        ("truncated", "not a readable checkpoint"),
        ({"foo": torch.zeros(2)}, "not a SAM checkpoint \\(missing key image_encoder"),
        ({"model": {"x": torch.zeros(1)}}, "looks like a SAM 2 file"),
    ],
    ids=["missing", "garbage", "truncated", "other-state-dict", "sam2-file"],
)
def test_broken_checkpoint_names_file_and_model(
    tmp_path: Path, tiny_checkpoint: Path, content: object, message: str
) -> None:
    path = tmp_path / "sam_broken.pth"
    if content == "truncated":
        data = tiny_checkpoint.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with registered_test_model("sam", TINY_SAM) as spec:
        with pytest.raises(EngineError, match=message) as info:
            loading.load_model(spec.name, path, "cpu")
    text = str(info.value)
    assert str(path) in text and spec.name in text and "\n" not in text


def test_checkpoint_of_another_size_is_refused(tiny_checkpoint: Path) -> None:
    with pytest.raises(EngineError, match="sam_vit_b: .* holds another model size") as info:
        loading.load_model("sam_vit_b", tiny_checkpoint, "cpu")
    assert str(tiny_checkpoint) in str(info.value)


@pytest.mark.slow
def test_vit_b_matches_reference(tmp_path: Path) -> None:
    """Full-size ViT-B, loaded through the built-in ``sam_vit_b`` entry."""
    path = make_sam_checkpoint(tmp_path / "sam_vit_b_01ec64.pth", "vit_b", seed=3)
    engine = loading.load_model("sam_vit_b", path, "cpu")
    ref = SamPredictor(sam_model_registry["vit_b"](checkpoint=str(path)))
    height, width, seed = IMAGES["4000x3000"]
    rgb = textured_image(height, width, seed)
    embedding = engine.embed(rgb)
    ref.set_image(rgb)
    for case in ("points_with_negatives", "box"):
        prompts = prompt_case(case, height, width)
        pred = engine.predict(embedding, prompts)
        assert_same_prediction(pred.masks, pred.scores, pred.logits,
                               *reference_predict(ref, prompts, None, True))
        assert 0 < pred.masks.mean() < 1
