"""The desktop's server engine against a local engine on the same weights and pixels.

The server runs in process (FastAPI's TestClient); the local engine loads the
same random-weight checkpoint file. Masks are the same operations on the same
machine, so they must be equal pixel for pixel; logits travel as float32, so they
and what is refined from them are equal too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from samdesk.imagefiles import content_hash
from samdesk.images import load_rgb
from samdesk.inference.engines import remote
from samdesk.inference.engines.base import EngineError, Point, Prompts
from samdesk.inference.engines.loading import load_model
from samdesk.inference.engines.remote import RemoteEngine, ServerUnreachable
from tests.model_factories import textured_image
from tests.server.remote_fixtures import Served, served_sam


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with served_sam(tmp_path) as server:
        yield server


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A JPEG with EXIF orientation 6 (rotated): the server must see it upright, as we do."""
    from PIL import Image

    rgb = textured_image(180, 260, seed=3)
    path = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(path, quality=90, exif=exif)
    return path


def engines(served: Served) -> tuple[RemoteEngine, object]:
    remote_engine = load_model(served.remote_name)
    local = load_model(served.model, served.checkpoint, "cpu")
    return remote_engine, local


def test_a_server_mask_equals_the_local_mask_pixel_for_pixel(served: Served, photo: Path) -> None:
    remote_engine, local = engines(served)
    rgb = load_rgb(photo)
    assert rgb.shape[:2] == (260, 180)  # upright
    embedding = remote_engine.embed_file(photo, content_hash(photo))
    assert embedding.image_size == (260, 180) and embedding.nbytes < 1000
    mine = local.embed(rgb)
    for prompts in (Prompts(points=(Point(90, 120), Point(40, 200, False))),
                    Prompts(boxes=((20, 30, 150, 200), (10, 10, 60, 80)))):
        theirs, ours = remote_engine.predict(embedding, prompts), local.predict(mine, prompts)
        assert theirs.masks.shape == ours.masks.shape
        assert np.array_equal(theirs.masks, ours.masks)
        assert np.allclose(theirs.scores, ours.scores, atol=1e-6)
        assert np.array_equal(theirs.logits, ours.logits)
    assert served.requests["POST images"] == 1  # the file went once


def test_propose_gives_the_best_mask_at_once_and_tab_candidates_in_one_more_request(
        served: Served, photo: Path) -> None:
    remote_engine, local = engines(served)
    embedding = remote_engine.embed_file(photo)
    prompts = Prompts(points=(Point(90, 120),))
    before = served.requests["POST predict"]
    proposal = remote_engine.propose(embedding, prompts)
    reference = local.propose(local.embed(load_rgb(photo)), prompts)
    best = int(proposal.best()[0])
    assert best == int(reference.best()[0])
    assert np.array_equal(proposal.mask(0, best), reference.mask(0, best))
    assert served.requests["POST predict"] == before + 1
    for candidate in range(proposal.scores.shape[1]):  # Tab through every candidate
        assert np.array_equal(proposal.mask(0, candidate), reference.mask(0, candidate))
    assert served.requests["POST predict"] == before + 2
    preview = proposal.preview(0, best, (130, 90))
    assert preview.shape == (130, 90) and preview.dtype == bool


def test_refining_with_the_previous_logits_matches_the_local_refinement(
        served: Served, photo: Path) -> None:
    remote_engine, local = engines(served)
    embedding, mine = remote_engine.embed_file(photo), local.embed(load_rgb(photo))
    first = Prompts(points=(Point(90, 120),))
    theirs, ours = remote_engine.predict(embedding, first), local.predict(mine, first)
    best = int(ours.best()[0])
    second = Prompts(points=(Point(90, 120), Point(60, 60, False)))
    refined = remote_engine.predict(embedding, second, theirs.logits[0, best:best + 1], False)
    expected = local.predict(mine, second, ours.logits[0, best:best + 1], False)
    assert np.array_equal(refined.scores, expected.scores)
    assert np.array_equal(refined.masks, expected.masks)  # mask_input went as float32


def test_a_server_that_forgot_the_image_gets_it_again_unasked(served: Served, photo: Path
                                                             ) -> None:
    remote_engine, local = engines(served)
    embedding = remote_engine.embed_file(photo)
    prompts = Prompts(points=(Point(90, 120),))
    served.forget_images()  # a restart, or an eviction
    prediction = remote_engine.predict(embedding, prompts)
    assert served.requests["POST images"] == 2  # a 404, then the file again
    expected = local.predict(local.embed(load_rgb(photo)), prompts)
    assert np.array_equal(prediction.masks, expected.masks)


def test_an_image_the_server_knows_is_never_sent_again(served: Served, photo: Path) -> None:
    remote_engine, _ = engines(served)
    remote_engine.embed_file(photo)
    again = load_model(served.remote_name)  # another desktop, or the next session
    again.embed_file(photo)
    assert served.requests["POST images"] == 1
    known = served.client.head(f"/samdesk/v1/images/{content_hash(photo)}")
    assert known.status_code == 200
    assert served.client.get("/samdesk/v1/images/" + "0" * 64).json()["error"] == (
        "unknown image_id")


def test_an_image_without_a_file_goes_as_a_png_with_the_same_pixels(served: Served) -> None:
    remote_engine, local = engines(served)
    rgb = textured_image(150, 210, seed=5)
    prompts = Prompts(boxes=((30, 20, 160, 120),))
    theirs = remote_engine.predict(remote_engine.embed(rgb), prompts)
    ours = local.predict(local.embed(rgb), prompts)
    assert np.array_equal(theirs.masks, ours.masks)


def test_a_server_that_is_gone_is_one_line(tmp_path: Path, photo: Path) -> None:
    url = "http://127.0.0.1:9"  # discard port: nothing listens
    remote.set_api_key(url, None)
    engine = RemoteEngine(f"server:{url}#sam_vit_b", url, "sam_vit_b")
    with pytest.raises(ServerUnreachable) as caught:
        engine.embed_file(photo)
    line = str(caught.value)
    assert "\n" not in line and url in line and "cannot connect" in line


def test_a_wrong_api_key_is_one_line_naming_where_to_set_it(tmp_path: Path, photo: Path
                                                            ) -> None:
    with served_sam(tmp_path, api_key="right") as served:
        served.client.headers["x-api-key"] = "wrong"
        with pytest.raises(EngineError) as caught:
            load_model(served.remote_name)
        assert "API key was refused" in str(caught.value) and "--api-key" in str(caught.value)


def test_the_models_list_and_a_model_the_server_lacks(served: Served) -> None:
    names = [m["name"] for m in remote.Connection("http://testserver").models()]
    assert names == [served.model]
    with pytest.raises(EngineError, match="does not serve 'sam_vit_h'"):
        load_model("server:http://testserver#sam_vit_h")
    with pytest.raises(EngineError, match="server:URL#MODEL"):
        load_model("server:nonsense")


def test_a_click_sends_the_prompt_and_gets_rle_masks_and_float32_logits(
        served: Served, tmp_path: Path) -> None:
    """Bytes per click: the prompt (under 1 kB), then the best mask as COCO RLE and
    every candidate's logits as float32 (3 x 262,144 bytes), nothing else."""
    from samdesk import masks as rle

    rgb = textured_image(1200, 1600, seed=7)
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    remote_engine, _ = engines(served)
    embedding = remote_engine.embed_file(path)
    served.sent_bytes.clear()
    served.received_bytes.clear()
    proposal = remote_engine.propose(embedding, Prompts(points=(Point(800, 600),)))
    assert len(served.sent_bytes) == 1 and served.sent_bytes[0] < 1000
    counts = len(rle.encode(proposal.mask(0, int(proposal.best()[0])))["counts"])
    logits = 3 * 256 * 256 * 4
    assert logits + counts < served.received_bytes[0] < logits + counts + 2000


def test_the_native_routes_refuse_bad_bodies_in_one_line(served: Served, photo: Path) -> None:
    data = photo.read_bytes()
    wrong = served.client.post("/samdesk/v1/images/" + "ab" * 32, content=data)
    assert wrong.status_code == 422
    assert wrong.json() == {"error": f"image_id {'ab' * 32}: not the SHA-256 of the bytes sent"}
    image_id = content_hash(photo)
    assert served.client.post(f"/samdesk/v1/images/{image_id}", content=data).json() == {
        "image_id": image_id, "width": 180, "height": 260}
    body = {"model": served.model, "image_id": image_id,
            "prompts": {"points": [{"x": 1, "y": 1}] * 65}}
    many = served.client.post("/samdesk/v1/predict", json=body)
    assert many.status_code == 413 and "prompts.points: 65 points" in many.json()["error"]
    body["prompts"] = {"points": [{"x": 1, "y": 1}]}
    body["masks"] = [[0, 7]]
    outside = served.client.post("/samdesk/v1/predict", json=body)
    assert outside.status_code == 422 and "(0, 7)" in outside.json()["error"]
    gone = served.client.post("/samdesk/v1/predict", json={**body, "image_id": "f" * 64})
    assert gone.status_code == 404 and gone.json()["error"] == "unknown image_id"
