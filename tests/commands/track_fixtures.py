"""Shared set-up of the ``samdesk track`` tests: a seeded random SAM 2.1 tiny model run at
the video tests' small input side, and a project of small frames marked a sequence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from samdesk.project import Project
from tests.model_factories import (
    SAM21_TINY_CONFIG,
    VIDEO_TEST_SIDE,
    make_frame_folder,
    make_sam2_checkpoint,
    registered_test_model,
)

H, W, N = 48, 64, 8
MODEL = "test_sam2_video"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sam2_checkpoint(tmp_path_factory.mktemp("ckpt") / "sam2.1_hiera_tiny.pt")


def small_engine_loader(checkpoint: Path):
    """``load_video_engine`` at :data:`VIDEO_TEST_SIDE` on the CPU (a sixteenth of the
    encoder's work at 1024), whatever the command asks."""
    from samdesk.inference.engines.sam2_video import SAM2VideoEngine

    def load(spec, _checkpoint, _device="auto"):
        return SAM2VideoEngine(spec, checkpoint, "cpu", image_size=VIDEO_TEST_SIDE)

    return load


@pytest.fixture
def model(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from samdesk.inference.engines import sam2_video

    monkeypatch.setattr(sam2_video, "load_video_engine", small_engine_loader(checkpoint))
    with registered_test_model("sam2", SAM21_TINY_CONFIG, MODEL):
        yield MODEL


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Eight 64x48 JPEG frames of a disc moving right, opened once and marked a sequence."""
    root = tmp_path / "frames"
    make_frame_folder(root, N, H, W)
    with Project.open(root) as project:
        project.set_sequence(True)
    return root


def stored(folder: Path, track_id: int) -> dict[int, tuple[str, bool]]:
    """frame index -> (RLE counts, edited) of the track's layers, as the store holds them."""
    with Project.open(folder, read_only=True) as project:
        ids = project.frame_ids()
        return {ids.index(image_id): (layer.rle["counts"], layer.edited)
                for image_id, layer in project.track_layers(track_id).items()}
