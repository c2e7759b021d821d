"""Fixtures for the server tests: tiny random-weight SAM 2.1 and SAM, an app, images.

The models are the real library classes with seeded random weights, saved in
the official file formats (``tests/model_factories.py``) and registered under
test names for the whole session.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.model_factories import (
    SAM21_TINY_CONFIG,
    TINY_SAM,
    make_sam2_checkpoint,
    make_sam_checkpoint,
    registered_test_model,
    textured_image,
)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """``{model name: checkpoint}`` of one tiny SAM 2.1 (``hiera_t``) and one tiny SAM."""
    folder = tmp_path_factory.mktemp("server-models")
    sam2 = make_sam2_checkpoint(folder / "sam2.1_tiny.pt")
    sam = make_sam_checkpoint(folder / "sam_tiny.pth", arch=TINY_SAM)
    with registered_test_model("sam2", SAM21_TINY_CONFIG) as spec2, \
            registered_test_model("sam", TINY_SAM) as spec1:
        yield {spec2.name: sam2, spec1.name: sam}


def png_b64(rgb: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A 240 x 320 textured RGB image."""
    return textured_image(240, 320, seed=3)
