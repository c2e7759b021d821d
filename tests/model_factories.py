"""Random-weight SAM and SAM 2 checkpoints for tests, in the official file formats.

No checkpoint can be downloaded in tests, so these build the real library
classes with seeded random weights and save them the way Meta ships them:

- SAM: a plain state dict (``sam_vit_b_01ec64.pth``);
- SAM 2 / 2.1: ``{"model": state_dict}`` (``sam2.1_hiera_tiny.pt``).

Load them through ``loading.load_model`` like a user's file. For SAM, the
``"tiny"`` architecture (a 2-block ViT, same 256 x 64 x 64 embedding) keeps
encoding fast; register it with :func:`registered_test_model`::

    path = make_sam_checkpoint(tmp / "sam.pth", arch="tiny")
    with registered_test_model("sam", "tiny") as spec:
        engine = loading.load_model(spec.name, path, "cpu")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch

from samdesk.inference.engines.base import Point, Prompts
from samdesk.inference.models import registry
from samdesk.inference.models.registry import SEGMENTER, ModelSpec

TINY_SAM = "tiny"
"""Key of the small test architecture in ``samdesk.inference.engines.sam.SAM_ARCHS``."""
SAM21_TINY_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def ensure_tiny_sam_arch() -> str:
    """Add the ``tiny`` SAM architecture (embed 128, 2 blocks, 4 heads) to the table."""
    from samdesk.inference.engines.sam import SAM_ARCHS, SamArch

    SAM_ARCHS.setdefault(TINY_SAM, SamArch(embed_dim=128, depth=2, num_heads=4,
                                           global_attn_indexes=(1,)))
    return TINY_SAM


def make_sam_checkpoint(path: Path, arch: str = TINY_SAM, seed: int = 0) -> Path:
    """Save a seeded random SAM of ``arch`` (``tiny``, ``vit_b``...) as a state dict."""
    from samdesk.inference.engines.sam import SAM_ARCHS, build_sam

    if arch == TINY_SAM:
        ensure_tiny_sam_arch()
    torch.manual_seed(seed)
    model = build_sam(SAM_ARCHS[arch])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def make_sam2_checkpoint(path: Path, config: str = SAM21_TINY_CONFIG, seed: int = 0) -> Path:
    """Save a seeded random SAM 2 built from hydra ``config`` as ``{"model": state}``."""
    from samdesk.inference.engines.sam2 import build_sam2_model

    torch.manual_seed(seed)
    model = build_sam2_model(config, torch.device("cpu"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, path)
    return path


@contextlib.contextmanager
def registered_test_model(family: str, config: str, name: str | None = None
                          ) -> Iterator[ModelSpec]:
    """Register a test ModelSpec of ``family`` (``sam``/``sam2``) while in the block.

    ``config`` is the family's config (a ``SAM_ARCHS`` key or a hydra config
    name). On exit the name is removed from ``registry.MODELS``, or given back the
    spec it had before (a session fixture's registered under the same name).
    """
    if family == "sam" and config == TINY_SAM:
        ensure_tiny_sam_arch()
    name = name or f"test_{family}_{Path(config).stem}".replace(".", "_")
    spec = ModelSpec(name=name, family=family, kind=SEGMENTER, title=f"test {family} {config}",
                     config=config, filename=f"{name}.pt")
    previous = registry.MODELS.get(name)  # a session fixture may hold the same name
    registry.MODELS[name] = spec
    try:
        yield spec
    finally:
        if previous is None:
            registry.MODELS.pop(name, None)
        else:
            registry.MODELS[name] = previous


def textured_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A seeded ``(height, width, 3)`` uint8 RGB image: smooth colour blobs plus grain.

    Smooth regions give the models object-like structure; the grain keeps
    resampling from being trivial.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(12, 16, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0, 12, size=(height, width, 1)).astype(np.float32)
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


IMAGES = {"4000x3000": (3000, 4000, 1), "600x1700": (1700, 600, 2)}
"""Parity test images: name -> (height, width, seed) for :func:`textured_image`."""


def prompt_case(name: str, height: int, width: int) -> Prompts:
    """A named prompt set, placed as fractions of the image size."""
    def pt(fx: float, fy: float, positive: bool = True) -> Point:
        return Point(fx * width, fy * height, positive)

    def box(fx0: float, fy0: float, fx1: float, fy1: float) -> tuple[float, ...]:
        return (fx0 * width, fy0 * height, fx1 * width, fy1 * height)

    cases = {
        "one_point": Prompts(points=(pt(0.3, 0.4),)),
        "points_with_negatives": Prompts(
            points=(pt(0.3, 0.4), pt(0.62, 0.55), pt(0.5, 0.8, False), pt(0.1, 0.1, False))
        ),
        "box": Prompts(boxes=(box(0.2, 0.15, 0.7, 0.6),)),
        "box_and_points": Prompts(points=(pt(0.4, 0.4), pt(0.65, 0.55, False)),
                                  boxes=(box(0.2, 0.15, 0.7, 0.6),)),
        "several_boxes": Prompts(boxes=(box(0.05, 0.1, 0.45, 0.5), box(0.5, 0.55, 0.95, 0.9))),
    }
    return cases[name]


def assert_same_prediction(
    masks: np.ndarray,
    scores: np.ndarray,
    logits: np.ndarray,
    ref_masks: np.ndarray,
    ref_scores: np.ndarray,
    ref_logits: np.ndarray,
    tol: float = 1e-4,
) -> None:
    """Assert an engine's output equals a reference predictor's.

    All arrays are ``(objects, candidates, ...)``; masks must agree pixel for
    pixel, scores and low-res logits within ``tol``. On the CPU the engines
    run the very same float operations as the references, so the masks are
    bit-identical; any difference is a bug in pre- or post-processing.
    """
    assert masks.dtype == np.bool_
    assert masks.shape == ref_masks.shape, (masks.shape, ref_masks.shape)
    differing = int(np.count_nonzero(masks != ref_masks.astype(bool)))
    assert differing == 0, f"{differing} of {masks.size} mask pixels differ from the reference"
    assert scores.shape == ref_scores.shape
    np.testing.assert_allclose(scores, ref_scores, atol=tol, rtol=0)
    assert logits.shape == ref_logits.shape
    np.testing.assert_allclose(logits, ref_logits, atol=tol, rtol=0)


VIDEO_TEST_SIDE = 128
"""SAM 2 input side the video tests run the tiny model at (the config's is 1024):
the same weights, a sixty-fourth of the encoder's pixels."""


def make_frame_folder(folder: Path, count: int = 8, height: int = 120, width: int = 160,
                      seed: int = 0) -> list[Path]:
    """Write ``count`` JPEG frames ``00000.jpg``... of a textured disc moving right.

    The names are what ``SAM2VideoPredictor.init_state`` reads (integer stems,
    sorted by number). Returns the paths in frame order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    background = textured_image(height, width, seed=seed)
    disc = textured_image(height, width, seed=seed + 1) // 2 + 128
    paths = []
    for i in range(count):
        frame = background.copy()
        inside = np.zeros((height, width), np.uint8)
        cv2.circle(inside, (width // 4 + 4 * i, height // 2), height // 5, 1, -1)
        frame[inside > 0] = disc[inside > 0]
        path = folder / f"{i:05d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        paths.append(path)
    return paths
