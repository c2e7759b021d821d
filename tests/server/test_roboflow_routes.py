"""Roboflow's /sam/* and /sam2/* bodies, as the seed service's own examples send them.

The masks must equal the reference predictors (``SAM2ImagePredictor``,
``SamPredictor``) on the same random weights and pixels: the server runs the
same operations on the same machine, so pixel for pixel.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from samdesk import masks as rle
from samdesk.server.app import create_app
from samdesk.server.settings import ServerSettings
from tests.model_factories import SAM21_TINY_CONFIG, TINY_SAM
from tests.server.conftest import png_b64

SAM2 = "test_sam2_sam2_1_hiera_t"
SAM = "test_sam_tiny"


@pytest.fixture(scope="module")
def client(models: dict[str, Path]) -> Iterator[TestClient]:
    app = create_app(ServerSettings(models=dict(models), device="cpu"))
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def sam2_reference(models: dict[str, Path], photo: np.ndarray):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from samdesk.inference.engines.sam2 import build_sam2_model

    model = build_sam2_model(SAM21_TINY_CONFIG, torch.device("cpu"))
    model.load_state_dict(torch.load(models[SAM2], weights_only=True)["model"])
    predictor = SAM2ImagePredictor(model)
    predictor.set_image(photo)
    return predictor


@pytest.fixture(scope="module")
def sam_reference(models: dict[str, Path], photo: np.ndarray):
    from segment_anything import SamPredictor

    from samdesk.inference.engines.sam import SAM_ARCHS, build_sam

    model = build_sam(SAM_ARCHS[TINY_SAM])
    model.load_state_dict(torch.load(models[SAM], weights_only=True))
    predictor = SamPredictor(model.eval())
    predictor.set_image(photo)
    return predictor


@pytest.fixture(scope="module")
def embedded(client: TestClient, photo: np.ndarray) -> str:
    """The photo embedded with SAM 2 under the id ``photo``."""
    body = {"image": {"type": "base64", "value": png_b64(photo)}, "image_id": "photo",
            "sam2_version_id": "hiera_tiny"}
    answer = client.post("/sam2/embed_image", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["image_id"] == "photo"
    return "photo"


def best_reference(predictor, points=None, labels=None, box=None) -> np.ndarray:
    masks, scores, _ = predictor.predict(
        point_coords=None if points is None else np.asarray(points, np.float32),
        point_labels=None if labels is None else np.asarray(labels),
        box=None if box is None else np.asarray(box, np.float32), multimask_output=True)
    return masks[int(np.argmax(scores))].astype(bool)


def rle_masks(answer) -> list[np.ndarray]:
    assert answer.status_code == 200, answer.text
    return [rle.decode(p["masks"]) for p in answer.json()["predictions"]]


def test_the_seed_example_point_equals_sam2_image_predictor(client, embedded, sam2_reference):
    body = {"image_id": embedded, "format": "rle", "sam2_version_id": "hiera_tiny",
            "prompts": {"prompts": [{"points": [{"x": 100, "y": 100, "positive": True}]}]}}
    (mask,) = rle_masks(client.post("/sam2/segment_image", json=body))
    reference = best_reference(sam2_reference, [[100, 100]], [1])
    assert mask.any()
    assert np.array_equal(mask, reference)


def test_a_centre_anchored_box_with_points_equals_the_reference(client, embedded,
                                                                sam2_reference):
    prompt = {"box": {"x": 160, "y": 120, "width": 120, "height": 90},
              "points": [{"x": 150, "y": 110, "positive": True},
                         {"x": 200, "y": 150, "positive": False}]}
    body = {"image_id": embedded, "format": "rle", "prompts": {"prompts": [prompt]}}
    (mask,) = rle_masks(client.post("/sam2/segment_image", json=body))
    reference = best_reference(sam2_reference, [[150, 110], [200, 150]], [1, 0],
                               box=[100, 75, 220, 165])
    assert np.array_equal(mask, reference)


def test_the_flat_list_form_and_the_single_prompt_form_give_the_same_masks(client, embedded,
                                                                          sam2_reference):
    corner = {"box": {"x0": 40, "y0": 30, "x1": 200, "y1": 150}}
    point = {"points": [{"x": 250, "y": 60, "positive": True}]}
    flat = rle_masks(client.post("/sam2/segment_image", json={
        "image_id": embedded, "format": "rle", "prompts": [corner, point]}))
    single = rle_masks(client.post("/sam2/segment_image", json={
        "image_id": embedded, "format": "rle", "prompts": point}))
    assert len(flat) == 2
    assert np.array_equal(flat[0], best_reference(sam2_reference, box=[40, 30, 200, 150]))
    assert np.array_equal(flat[1], best_reference(sam2_reference, [[250, 60]], [1]))
    assert np.array_equal(single[0], flat[1])


def test_json_format_answers_outer_polygons_around_every_part_of_the_mask(client, embedded):
    body = {"image_id": embedded, "prompts": {"prompts": [
        {"points": [{"x": 100, "y": 100, "positive": True}]}]}}
    answer = client.post("/sam2/segment_image", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-encoding"] == "gzip"  # answers over 1 kB are compressed
    assert int(answer.headers["content-length"]) < len(answer.content)
    prediction = answer.json()["predictions"][0]
    assert prediction["format"] == "json"
    assert 0.0 <= prediction["confidence"] <= 1.5
    polygons = prediction["masks"]
    assert polygons and all(len(pt) == 2 for pt in polygons[0])
    body["format"] = "rle"
    (mask,) = rle_masks(client.post("/sam2/segment_image", json=body))
    drawn = rle.decode(rle.from_polygons([np.ravel(p).tolist() for p in polygons], *mask.shape))
    # outer contours: every part of the mask is inside a polygon (holes are filled)
    assert (drawn & mask).sum() / mask.sum() > 0.97


def test_binary_format_is_npz_with_the_masks(client, embedded):
    body = {"image_id": embedded, "format": "binary",
            "prompts": [{"points": [{"x": 100, "y": 100}]}]}
    answer = client.post("/sam2/segment_image", json=body)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/octet-stream"
    with np.load(io.BytesIO(answer.content)) as data:
        masks, logits = data["masks"], data["low_res_logits"]
    assert masks.shape == (1, 240, 320)
    assert logits.shape == (1, 256, 256)
    body["format"] = "rle"
    (mask,) = rle_masks(client.post("/sam2/segment_image", json=body))
    assert np.array_equal(masks[0], mask)


def test_unknown_image_id_is_404_then_the_resent_image_is_segmented(client, photo,
                                                                   sam2_reference):
    body = {"image_id": "never-sent", "format": "rle",
            "prompts": [{"points": [{"x": 100, "y": 100}]}]}
    answer = client.post("/sam2/segment_image", json=body)
    assert answer.status_code == 404
    assert answer.json()["error"] == "unknown image_id"
    assert answer.json()["image_id"] == "never-sent"
    body["image"] = {"type": "base64", "value": png_b64(photo)}
    (mask,) = rle_masks(client.post("/sam2/segment_image", json=body))
    assert np.array_equal(mask, best_reference(sam2_reference, [[100, 100]], [1]))
    del body["image"]  # now cached under the id it was sent with
    assert np.array_equal(rle_masks(client.post("/sam2/segment_image", json=body))[0], mask)


def test_unknown_fields_are_ignored_with_a_warning(client, embedded):
    body = {"image_id": embedded, "format": "rle", "confidence_threshold": 0.5,
            "prompts": [{"points": [{"x": 100, "y": 100, "positive": True, "weight": 2}]}]}
    answer = client.post("/sam2/segment_image", json=body)
    assert answer.status_code == 200
    warning = answer.headers["warning"]
    assert "confidence_threshold" in warning and "prompts.prompts.0.points.0.weight" in warning


def test_saved_logits_seed_the_next_prompt_on_the_same_object(client, embedded,
                                                             sam2_reference):
    first = [{"points": [{"x": 100, "y": 100, "positive": True}]}]
    more = [{"points": [{"x": 100, "y": 100, "positive": True},
                        {"x": 130, "y": 90, "positive": True}]}]
    client.post("/sam2/segment_image", json={"image_id": embedded, "prompts": first,
                                             "save_logits_to_cache": True})
    (seeded,) = rle_masks(client.post("/sam2/segment_image", json={
        "image_id": embedded, "format": "rle", "prompts": more,
        "load_logits_from_cache": True}))
    masks, scores, logits = sam2_reference.predict(
        point_coords=np.array([[100, 100]], np.float32), point_labels=np.array([1]),
        multimask_output=True)
    best = int(np.argmax(scores))
    masks2, scores2, _ = sam2_reference.predict(
        point_coords=np.array([[100, 100], [130, 90]], np.float32),
        point_labels=np.array([1, 1]), mask_input=logits[best][None], multimask_output=True)
    assert np.array_equal(seeded, masks2[int(np.argmax(scores2))].astype(bool))


def test_sam_embed_and_segment_equal_sam_predictor(client, photo, sam_reference):
    embed = client.post("/sam/embed_image", json={
        "image": {"type": "base64", "value": png_b64(photo)}, "image_id": "sam-photo",
        "format": "binary"})
    assert embed.status_code == 200
    assert embed.headers["x-image-id"] == "sam-photo"
    embedding = np.load(io.BytesIO(embed.content))
    assert embedding.shape == (1, 256, 64, 64)
    expected = sam_reference.get_image_embedding().numpy()
    np.testing.assert_allclose(embedding, expected, atol=1e-4, rtol=0)
    answer = client.post("/sam/segment_image", json={
        "image_id": "sam-photo", "point_coords": [[100, 100], [200, 150]],
        "point_labels": [1, 0], "format": "binary"})
    assert answer.status_code == 200, answer.text
    with np.load(io.BytesIO(answer.content)) as data:
        masks = data["masks"]
    reference, _, _ = sam_reference.predict(point_coords=np.array([[100, 100], [200, 150]]),
                                            point_labels=np.array([1, 0]),
                                            multimask_output=False)
    assert masks.shape == (1, 240, 320)
    assert np.array_equal(masks, reference.astype(bool))
    polygons = client.post("/sam/segment_image", json={
        "image_id": "sam-photo", "point_coords": [[100, 100]], "point_labels": [1]}).json()
    assert len(polygons["masks"]) == 1 and len(polygons["scores"]) == 1


def test_a_version_not_served_is_a_404_naming_what_is(client, embedded):
    answer = client.post("/sam2/segment_image", json={
        "image_id": embedded, "sam2_version_id": "hiera_large",
        "prompts": [{"points": [{"x": 1, "y": 1}]}]})
    assert answer.status_code == 404
    assert "hiera_large" in answer.json()["error"] and SAM2 in answer.json()["error"]


def test_a_bad_prompt_is_one_line_naming_the_field(client, embedded):
    answer = client.post("/sam2/segment_image", json={
        "image_id": embedded, "prompts": [{"box": {"x": 10, "y": 10}}]})
    assert answer.status_code == 422
    assert answer.json()["error"].startswith("prompts")
    assert "\n" not in answer.json()["error"]


def test_the_openapi_page_lists_every_route(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for route in ("/sam/embed_image", "/sam/segment_image", "/sam2/embed_image",
                  "/sam2/segment_image", "/v1/sam-v2-image", "/grounded_sam/segment_image"):
        assert route in paths


def test_a_cached_image_id_wins_over_the_image_sent_with_it(client, embedded, sam2_reference):
    other = np.zeros((50, 60, 3), np.uint8)  # never encoded: the cached photo answers
    body = {"image": {"type": "base64", "value": png_b64(other)}, "image_id": embedded,
            "format": "rle", "prompts": [{"points": [{"x": 100, "y": 100}]}]}
    (mask,) = rle_masks(client.post("/sam2/segment_image", json=body))
    assert mask.shape == (240, 320)
    assert np.array_equal(mask, best_reference(sam2_reference, [[100, 100]], [1]))
