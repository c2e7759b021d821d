"""Segmind's /v1/sam-v2-image and the text route /grounded_sam/segment_image.

GrabCut stands in for the SAM 2 test model (the loader builds it for that
name); the text route uses the tiny random-weight GroundingDINO.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from samdesk import masks as rle
from samdesk.inference.engines.loading import load_model
from samdesk.server import routes_text
from samdesk.server.app import create_app
from samdesk.server.settings import ServerSettings
from tests.gdino_factory import install_tiny_gdino, shared_tiny_gdino
from tests.model_factories import SAM21_TINY_CONFIG, registered_test_model, textured_image
from tests.server.conftest import png_b64


@pytest.fixture(scope="module")
def sam2_name() -> Iterator[str]:
    with registered_test_model("sam2", SAM21_TINY_CONFIG) as spec:
        yield spec.name


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return textured_image(90, 120, seed=5)


def loader(name: str, checkpoint: Path | None, device: str):
    if name.startswith("test_sam2"):
        return load_model("grabcut")
    return load_model(name, checkpoint, device)


@pytest.fixture
def client(sam2_name) -> Iterator[TestClient]:
    settings = ServerSettings(models={sam2_name: None}, device="cpu")
    with TestClient(create_app(settings, loader=loader)) as test_client:
        yield test_client


def jpeg(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)))


def roboflow_mask(client: TestClient, rgb: np.ndarray, points: list[dict]) -> np.ndarray:
    answer = client.post("/sam2/segment_image", json={
        "image": {"type": "base64", "value": png_b64(rgb)}, "format": "rle",
        "prompts": [{"points": points}]})
    assert answer.status_code == 200, answer.text
    return rle.decode(answer.json()["predictions"][0]["masks"])


def test_segmind_mask_jpeg_is_the_mask_of_the_same_points(client, rgb):
    body = {"image": png_b64(rgb), "coordinates": "[[40,30],[60,40]]",
            "remove_coordinates": "[100,80]", "overlay_mask": False}
    answer = client.post("/v1/sam-v2-image", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/jpeg"
    picture = jpeg(answer.content)
    assert picture.shape == (90, 120)
    expected = roboflow_mask(client, rgb, [{"x": 40, "y": 30}, {"x": 60, "y": 40},
                                           {"x": 100, "y": 80, "positive": False}])
    assert expected.any()
    differing = np.count_nonzero((picture > 127) != expected)
    assert differing <= 0.01 * expected.size  # JPEG rings at the edges only


def test_segmind_overlay_and_base64_answers(client, rgb):
    body = {"image": png_b64(rgb), "coordinates": "[40,30]"}
    overlay = client.post("/v1/sam-v2-image", json=body)
    assert overlay.status_code == 200
    drawn = jpeg(overlay.content)
    assert drawn.shape == (90, 120, 3)
    assert np.abs(drawn.astype(int) - rgb).mean() > 3  # the mask is drawn on the picture
    wrapped = client.post("/v1/sam-v2-image", json={**body, "base64": True})
    assert wrapped.headers["content-type"] == "application/json"
    decoded = jpeg(base64.b64decode(wrapped.json()["image"]))
    assert decoded.shape == (90, 120, 3)


def test_segmind_bad_coordinates_are_one_line(client, rgb):
    answer = client.post("/v1/sam-v2-image", json={"image": png_b64(rgb),
                                                   "coordinates": "forty,thirty"})
    assert answer.status_code == 422
    assert answer.json() == {"error": 'coordinates: expected "[x,y]" or "[[x,y],...]"'}


def test_text_route_without_groundingdino_says_so(client, rgb, monkeypatch):
    monkeypatch.setattr(routes_text, "detector_missing",
                        lambda: "the text detector needs `pip install samdesk[text]` "
                                "(GroundingDINO); groundingdino-py is not installed")
    answer = client.post("/grounded_sam/segment_image",
                         json={"image": png_b64(rgb), "prompt": "cat"})
    assert answer.status_code == 501
    assert answer.json() == {"error": "this server cannot read text prompts: the text detector "
                                      "needs `pip install samdesk[text]` (GroundingDINO); "
                                      "groundingdino-py is not installed"}


@pytest.fixture
def text_client(sam2_name, monkeypatch, tmp_path_factory) -> Iterator[TestClient]:
    pytest.importorskip("groundingdino")
    tiny = shared_tiny_gdino(tmp_path_factory)
    install_tiny_gdino(monkeypatch, tiny)
    settings = ServerSettings(models={sam2_name: None, tiny.spec.name: tiny.checkpoint},
                              device="cpu")
    with TestClient(create_app(settings, loader=loader)) as test_client:
        yield test_client


def test_text_route_finds_objects_or_answers_an_empty_list(text_client):
    from tests.gdino_factory import scene_image

    image = png_b64(scene_image(96, 128, seed=2))
    nothing = text_client.post("/grounded_sam/segment_image", json={
        "image": image, "prompt": "cat . dog", "threshold": 1.0, "text_threshold": 1.0})
    assert nothing.status_code == 200, nothing.text
    assert nothing.json()["predictions"] == []
    found = text_client.post("/grounded_sam/segment_image", json={
        "image": image, "prompt": "cat . dog", "threshold": 0.0, "text_threshold": 0.0,
        "format": "rle"})
    assert found.status_code == 200, found.text
    predictions = found.json()["predictions"]
    assert predictions
    for prediction in predictions:
        x0, y0, x1, y1 = prediction["box"]
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 96
        assert rle.decode(prediction["masks"]).shape == (96, 128)
        assert isinstance(prediction["phrase"], str) and prediction["score"] > 0
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True)
