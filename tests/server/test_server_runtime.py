"""``samdesk serve --runtime onnx``: the scheduler loads the encoder in ONNX Runtime, says so
in the model list, and answers the masks the torch server answers, within the tolerance."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from samdesk import cli
from samdesk.commands.serve import settings_from
from samdesk.inference.engines import loading
from samdesk.inference.engines.runtime_choice import CHOICES
from samdesk.inference.runtimes.cache import ENV_VAR
from samdesk.server.app import create_app
from samdesk.server.settings import ServerSettings
from tests.mask_compare import assert_masks_close, full_logits
from tests.server.conftest import png_b64

SAM = "test_sam_tiny"
POINTS, LABELS = [[100, 100], [200, 150]], [1, 0]


@pytest.fixture(scope="module")
def onnx_client(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[TestClient]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, str(tmp_path_factory.mktemp("server-rt")))
        settings = ServerSettings(models={SAM: models[SAM]}, device="cpu", runtime="onnx")
        with TestClient(create_app(settings)) as client:
            yield client


def _mask(client: TestClient, photo: np.ndarray) -> np.ndarray:
    embed = client.post("/sam/embed_image", json={
        "image": {"type": "base64", "value": png_b64(photo)}, "image_id": "rt-photo"})
    assert embed.status_code == 200, embed.text
    answer = client.post("/sam/segment_image", json={
        "image_id": "rt-photo", "point_coords": POINTS, "point_labels": LABELS,
        "format": "binary"})
    assert answer.status_code == 200, answer.text
    with np.load(io.BytesIO(answer.content)) as data:
        return data["masks"][0].astype(bool)


def test_the_onnx_server_gives_the_torch_masks_within_the_tolerance(
        onnx_client: TestClient, models: dict[str, Path], photo: np.ndarray) -> None:
    from samdesk.inference.engines.base import Point, Prompts

    ours = _mask(onnx_client, photo)
    listed = {m["name"]: m for m in onnx_client.get("/samdesk/v1/models").json()["models"]}
    assert listed[SAM]["loaded"] and listed[SAM]["runtime"] == "onnx"
    reference = loading.load_model(SAM, models[SAM], "cpu")  # the torch server's engine
    prompts = Prompts(points=tuple(Point(x, y, bool(k)) for (x, y), k in
                                   zip(POINTS, LABELS, strict=True)))
    theirs = reference.predict(reference.embed(photo), prompts, multimask=False)
    frame = reference.frame(photo.shape[:2])
    assert ours.any()
    assert_masks_close(ours, theirs.masks[0, 0], full_logits(theirs.logits[0, 0], frame),
                       frame.threshold)


def test_serve_takes_runtime_and_refuses_an_unknown_one_in_one_line(capsys) -> None:
    args = cli.build_parser().parse_args(["serve", "--runtime", "onnx-int8"])
    assert settings_from(args).runtime == "onnx-int8"
    assert settings_from(cli.build_parser().parse_args(["serve"])).runtime is None
    assert cli.main(["serve", "--runtime", "tensorrt"]) == 2
    err = capsys.readouterr().err
    assert err == ("samdesk: error: --runtime tensorrt: unknown runtime; choose "
                   f"{', '.join(CHOICES)}\n")
