"""Masks of an EXIF-rotated photo are in its upright frame and equal the reference's.

A phone photo stored landscape with orientation 6 ("rotate 90° clockwise to
view") is shown portrait. samdesk decodes it upright once (``load_rgb``); the
engines then see exactly what the reference predictors see when given the
upright picture, so the masks match pixel for pixel and the prompts, made on
the upright view, land where the person clicked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from sam2.build_sam import build_sam2
from sam2.sam2_image_predictor import SAM2ImagePredictor
from segment_anything import SamPredictor
from segment_anything.build_sam import _build_sam

from samdesk import images
from samdesk.inference.engines import loading
from samdesk.inference.engines.base import Point, Prompts
from samdesk.inference.engines.sam import SAM_ARCHS
from tests.model_factories import (
    SAM21_TINY_CONFIG,
    TINY_SAM,
    make_sam2_checkpoint,
    make_sam_checkpoint,
    registered_test_model,
    textured_image,
)

STORED = (480, 720)  # (height, width) of the pixels in the file
PROMPTS = Prompts(points=(Point(300.5, 500.25), Point(100, 80, positive=False)))


@pytest.fixture(scope="module")
def rotated_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path_factory.mktemp("exif") / "phone.jpg"
    Image.fromarray(textured_image(*STORED, seed=5)).save(path, exif=exif, quality=92)
    return path


def upright_reference_rgb(path: Path) -> np.ndarray:
    """The upright picture as Pillow's own EXIF transpose gives it."""
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def test_loader_gives_the_upright_picture(rotated_photo: Path) -> None:
    rgb = images.load_rgb(rotated_photo)
    assert rgb.shape == (STORED[1], STORED[0], 3)
    assert images.read_size(rotated_photo) == (STORED[0], STORED[1])
    assert np.array_equal(rgb, upright_reference_rgb(rotated_photo))


def test_sam_masks_on_a_rotated_photo_match_the_reference(rotated_photo: Path,
                                                          tmp_path: Path) -> None:
    checkpoint = make_sam_checkpoint(tmp_path / "tiny.pth", TINY_SAM)
    with registered_test_model("sam", TINY_SAM) as spec:
        engine = loading.load_model(spec.name, checkpoint, "cpu")
    prediction = engine.predict(engine.embed(images.load_rgb(rotated_photo)), PROMPTS)
    arch = SAM_ARCHS[TINY_SAM]
    reference = SamPredictor(_build_sam(arch.embed_dim, arch.depth, arch.num_heads,
                                        list(arch.global_attn_indexes), checkpoint=checkpoint))
    reference.set_image(upright_reference_rgb(rotated_photo))
    masks, scores, _ = reference.predict(np.array([[300.5, 500.25], [100, 80]]),
                                         np.array([1, 0]), multimask_output=True)
    assert prediction.masks.shape == (1, 3, STORED[1], STORED[0])
    assert np.array_equal(prediction.masks[0], masks)
    np.testing.assert_allclose(prediction.scores[0], scores, atol=1e-4)


def test_sam2_masks_on_a_rotated_photo_match_the_reference(rotated_photo: Path,
                                                           tmp_path: Path) -> None:
    checkpoint = make_sam2_checkpoint(tmp_path / "sam2.1_hiera_tiny.pt")
    engine = loading.load_model("sam2.1_hiera_tiny", checkpoint, "cpu")
    prediction = engine.predict(engine.embed(images.load_rgb(rotated_photo)), PROMPTS)
    reference = SAM2ImagePredictor(build_sam2(SAM21_TINY_CONFIG, str(checkpoint), device="cpu"))
    reference.set_image(upright_reference_rgb(rotated_photo))
    masks, scores, _ = reference.predict(np.array([[300.5, 500.25], [100, 80]]),
                                         np.array([1, 0]), multimask_output=True)
    assert prediction.masks.shape == (1, 3, STORED[1], STORED[0])
    assert np.array_equal(prediction.masks[0], masks.astype(bool))
    np.testing.assert_allclose(prediction.scores[0], scores, atol=1e-4)
