"""The SAM 2 engine gives the same masks as ``sam2``'s ``SAM2ImagePredictor``.

Both sides load one random-weight SAM 2.1 tiny checkpoint file (the smallest
official config): the engine through ``loading.load_model``, the reference
through ``sam2.build_sam.build_sam2``. Images are not square (4000 x 3000 and
600 x 1700), so the non-uniform resize to 1024 x 1024 and the coordinate
normalisation are exercised. Each image is encoded once per side.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from sam2.build_sam import build_sam2
from sam2.sam2_image_predictor import SAM2ImagePredictor

from samdesk.inference.engines import loading
from samdesk.inference.engines.base import EngineError, Point, Prompts
from samdesk.inference.engines.sam2 import Sam2Engine, build_sam2_model
from tests.model_factories import (
    IMAGES,
    SAM21_TINY_CONFIG,
    assert_same_prediction,
    make_sam2_checkpoint,
    prompt_case,
    registered_test_model,
    textured_image,
)


def reference_predict(
    ref: SAM2ImagePredictor, prompts: Prompts, mask_input: np.ndarray | None, multimask: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference's (masks, scores, logits), shaped (objects, candidates, ...)."""
    coords = labels = box = None
    if prompts.points:
        coords = np.array([[p.x, p.y] for p in prompts.points])
        labels = np.array([int(p.positive) for p in prompts.points])
    if prompts.boxes:
        box = np.array(prompts.boxes) if len(prompts.boxes) > 1 else np.array(prompts.boxes[0])
    masks, scores, logits = ref.predict(coords, labels, box, mask_input, multimask)
    if len(prompts.boxes) > 1:  # batched objects come back as (objects, candidates, ...)
        return masks, scores, logits
    return masks[None], scores[None], logits[None]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sam2_checkpoint(tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny.pt",
                                SAM21_TINY_CONFIG)


@pytest.fixture(scope="module")
def engine(checkpoint: Path) -> Iterator[Sam2Engine]:
    with registered_test_model("sam2", SAM21_TINY_CONFIG) as spec:
        yield loading.load_model(spec.name, checkpoint, "cpu")


@pytest.fixture(scope="module")
def embedded(engine: Sam2Engine, checkpoint: Path) -> dict:
    """Per image: (image, engine embedding, reference predictor with the image set)."""
    reference_model = build_sam2(SAM21_TINY_CONFIG, ckpt_path=str(checkpoint), device="cpu")
    out = {}
    for key, (height, width, seed) in IMAGES.items():
        rgb = textured_image(height, width, seed)
        ref = SAM2ImagePredictor(reference_model)
        ref.set_image(rgb)
        out[key] = (rgb, engine.embed(rgb), ref)
    return out


@pytest.mark.parametrize("image", IMAGES)
def test_embedding_equals_reference_features(embedded: dict, image: str) -> None:
    rgb, embedding, ref = embedded[image]
    assert embedding.image_size == rgb.shape[:2]
    tensors = embedding.tensors
    assert tensors["image_embed"].shape == (1, 256, 64, 64)
    np.testing.assert_allclose(tensors["image_embed"], ref._features["image_embed"].numpy(),
                               atol=1e-5, rtol=0)
    for i, feature in enumerate(ref._features["high_res_feats"]):
        assert tensors[f"high_res_{i}"].dtype == np.float32
        np.testing.assert_allclose(tensors[f"high_res_{i}"], feature.numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", ["one_point", "points_with_negatives", "box",
                                  "box_and_points", "several_boxes"])
@pytest.mark.parametrize("image", IMAGES)
def test_masks_match_reference(engine: Sam2Engine, embedded: dict, image: str,
                               case: str) -> None:
    rgb, embedding, ref = embedded[image]
    prompts = prompt_case(case, *rgb.shape[:2])
    pred = engine.predict(embedding, prompts)
    objects = prompts.object_count
    assert pred.masks.shape == (objects, 3, *rgb.shape[:2])
    assert pred.scores.shape == (objects, 3)
    assert pred.logits.shape == (objects, 3, 256, 256)
    assert_same_prediction(pred.masks, pred.scores, pred.logits,
                           *reference_predict(ref, prompts, None, True))
    assert 0 < pred.masks.mean() < 1


@pytest.mark.parametrize("image", IMAGES)
def test_single_mask_output_matches_reference(engine: Sam2Engine, embedded: dict,
                                              image: str) -> None:
    rgb, embedding, ref = embedded[image]
    prompts = prompt_case("box_and_points", *rgb.shape[:2])
    pred = engine.predict(embedding, prompts, multimask=False)
    assert pred.masks.shape == (1, 1, *rgb.shape[:2])
    assert_same_prediction(pred.masks, pred.scores, pred.logits,
                           *reference_predict(ref, prompts, None, False))


@pytest.mark.parametrize("image", IMAGES)
def test_second_click_refines_with_previous_logits(engine: Sam2Engine, embedded: dict,
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


def test_different_prompts_give_different_masks(engine: Sam2Engine, embedded: dict) -> None:
    rgb, embedding, _ = embedded["600x1700"]
    a = engine.predict(embedding, prompt_case("one_point", *rgb.shape[:2]))
    b = engine.predict(embedding, prompt_case("box", *rgb.shape[:2]))
    assert not np.array_equal(a.masks, b.masks)


@pytest.fixture
def sam2_hydra_restored() -> Iterator[None]:
    """Put sam2's own hydra set-up back after a test that changed it."""
    yield
    GlobalHydra.instance().clear()
    initialize_config_module("sam2", version_base="1.2")


def test_loads_after_hydra_state_was_cleared(
    engine: Sam2Engine, checkpoint: Path, sam2_hydra_restored: None
) -> None:
    """Another library clearing hydra's global state must not break a model switch."""
    GlobalHydra.instance().clear()
    with registered_test_model("sam2", SAM21_TINY_CONFIG, name="test_sam2_again") as spec:
        again = loading.load_model(spec.name, checkpoint, "cpu")
    for name, tensor in engine.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name


def test_loading_keeps_another_librarys_hydra_setup(
    tmp_path: Path, sam2_hydra_restored: None
) -> None:
    (tmp_path / "other_app.yaml").write_text("answer: 42\n")
    GlobalHydra.instance().clear()
    initialize_config_dir(config_dir=str(tmp_path), version_base="1.2")
    model = build_sam2_model(SAM21_TINY_CONFIG, torch.device("cpu"))
    assert model.image_size == 1024
    assert compose(config_name="other_app").answer == 42


def test_unknown_config_is_reported(checkpoint: Path) -> None:
    with registered_test_model("sam2", "configs/sam2.1/no_such_model.yaml") as spec:
        with pytest.raises(EngineError, match="no_such_model"):
            loading.load_model(spec.name, checkpoint, "cpu")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"\x00garbage\xff" * 10, "not a readable checkpoint"),
        ("truncated", "not a readable checkpoint"),
        ({"image_encoder.patch_embed.proj.weight": torch.zeros(1)}, "looks like a SAM \\(v1\\)"),
        ({"model": {"image_encoder.trunk.pos_embed": torch.zeros(1)}}, "missing key"),
    ],
    ids=["missing", "garbage", "truncated", "sam1-file", "wrong-keys"],
)
def test_broken_checkpoint_names_file_and_model(
    tmp_path: Path, checkpoint: Path, content: object, message: str
) -> None:
    path = tmp_path / "sam2_broken.pt"
    if content == "truncated":
        with checkpoint.open("rb") as source:
            path.write_bytes(source.read(checkpoint.stat().st_size - 4096))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with registered_test_model("sam2", SAM21_TINY_CONFIG) as spec:
        with pytest.raises(EngineError, match=message) as info:
            loading.load_model(spec.name, path, "cpu")
    text = str(info.value)
    assert str(path) in text and spec.name in text and "\n" not in text


def test_checkpoint_of_another_size_is_refused(checkpoint: Path) -> None:
    with pytest.raises(EngineError, match="sam2.1_hiera_small: .* another model") as info:
        loading.load_model("sam2.1_hiera_small", checkpoint, "cpu")
    assert str(checkpoint) in str(info.value)
