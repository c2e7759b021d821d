"""Encoders run in chunks (``embed_steps``) give the library's own embedding, bit for bit.

SAM: a random-weight tiny ViT loaded through the registry, against
``SamPredictor.set_image`` on the library's own model built from the same
file. SAM 2.1 tiny: against ``SAM2Base.forward_image`` (the library's image
encoder with its FPN and the decoder's projections) on the very input tensor
the engine fed its trunk. Between chunks nothing of the encoder's torch state
is left on, and a decode run there equals one run alone (what the worker does
when a click arrives during a background encode).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.build_sam import _build_sam

from samdesk.inference.engines import loading
from samdesk.inference.engines.base import Embedding, EngineError
from samdesk.inference.engines.sam import SAM_ARCHS, SamEngine
from samdesk.inference.engines.sam2 import Sam2Engine
from samdesk.inference.engines.steps import EmbedSteps
from tests.model_factories import (
    SAM21_TINY_CONFIG,
    TINY_SAM,
    make_sam2_checkpoint,
    make_sam_checkpoint,
    prompt_case,
    registered_test_model,
    textured_image,
)

SHAPE = (300, 420)  # not square: padding (SAM) and stretching (SAM 2) are exercised


def run_counting(steps: EmbedSteps) -> tuple[Embedding, int, list[bool]]:
    """Run ``steps`` to the end: its embedding, how many times it paused, and whether
    inference mode was on in the caller at each pause."""
    pauses, modes = 0, []
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value, pauses, modes
        pauses += 1
        modes.append(torch.is_inference_mode_enabled())


@pytest.fixture(scope="module")
def sam_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sam_checkpoint(tmp_path_factory.mktemp("sam") / "tiny_sam.pth", TINY_SAM)


@pytest.fixture(scope="module")
def sam(sam_checkpoint: Path) -> Iterator[SamEngine]:
    with registered_test_model("sam", TINY_SAM) as spec:
        yield loading.load_model(spec.name, sam_checkpoint, "cpu")


@pytest.fixture(scope="module")
def sam2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sam2Engine]:
    path = make_sam2_checkpoint(tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny.pt")
    with registered_test_model("sam2", SAM21_TINY_CONFIG) as spec:
        yield loading.load_model(spec.name, path, "cpu")


def test_sam_steps_equal_the_reference_predictor_bit_for_bit(
    sam: SamEngine, sam_checkpoint: Path
) -> None:
    rgb = textured_image(*SHAPE, seed=3)
    embedding, pauses, modes = run_counting(sam.embed_steps(rgb))
    arch = SAM_ARCHS[TINY_SAM]
    reference = SamPredictor(_build_sam(arch.embed_dim, arch.depth, arch.num_heads,
                                        list(arch.global_attn_indexes),
                                        checkpoint=sam_checkpoint))
    reference.set_image(rgb)
    assert embedding.image_size == SHAPE
    assert np.array_equal(embedding.tensors["image_embed"], reference.features.numpy())
    # preprocessing, patch embedding, then a pause after each block's attention and its MLP
    assert pauses == 2 + 2 * len(sam.model.image_encoder.blocks)
    assert modes == [False] * pauses  # the encoder's inference mode is not left on
    assert np.array_equal(sam.embed(rgb).tensors["image_embed"],
                          embedding.tensors["image_embed"])


def test_sam2_steps_equal_the_librarys_forward_image_bit_for_bit(sam2: Sam2Engine) -> None:
    rgb = textured_image(*SHAPE, seed=4)
    model = sam2.model
    trunk = model.image_encoder.trunk
    fed: list[torch.Tensor] = []
    hook = trunk.patch_embed.register_forward_pre_hook(lambda _m, args: fed.append(args[0]))
    try:
        embedding, pauses, modes = run_counting(sam2.embed_steps(rgb))
    finally:
        hook.remove()
    assert len(fed) == 1 and fed[0].shape == (1, 3, 1024, 1024)
    with torch.inference_mode():
        levels = model.forward_image(fed[0])["backbone_fpn"][-model.num_feature_levels:]
        image_embed = levels[-1] + model.no_mem_embed.view(1, -1, 1, 1)
    assert model.directly_add_no_mem_embed
    tensors = embedding.tensors
    assert sorted(tensors) == ["high_res_0", "high_res_1", "image_embed"]
    assert np.array_equal(tensors["image_embed"], image_embed.numpy())
    assert np.array_equal(tensors["high_res_0"], levels[0].numpy())
    assert np.array_equal(tensors["high_res_1"], levels[1].numpy())
    assert tensors["high_res_0"].shape == (1, 32, 256, 256)
    assert pauses == 2 + 2 * len(trunk.blocks)  # attention and MLP of each block apart
    assert modes == [False] * pauses


def test_a_decode_between_chunks_equals_one_run_alone(sam: SamEngine) -> None:
    first, second = textured_image(*SHAPE, seed=5), textured_image(400, 260, seed=6)
    embedded = sam.embed(first)
    prompts = prompt_case("box_and_points", *SHAPE)
    alone = sam.predict(embedded, prompts)
    whole = sam.embed(second).tensors["image_embed"]

    steps = sam.embed_steps(second)
    next(steps)
    next(steps)  # paused inside the encoder, after the patch embedding
    between = sam.predict(embedded, prompts)
    finished, _, _ = run_counting(steps)

    assert np.array_equal(between.masks, alone.masks)
    assert np.array_equal(between.scores, alone.scores)
    assert np.array_equal(finished.tensors["image_embed"], whole)


def test_a_bad_image_is_refused_before_any_encoder_work(sam: SamEngine) -> None:
    steps = sam.embed_steps(np.zeros((10, 10), np.uint8))
    with pytest.raises(EngineError, match=r"\(H, W, 3\) uint8"):
        next(steps)
