"""The encoder exported to ONNX Runtime gives the masks torch gives, as a person sees them.

Per family (a random-weight tiny SAM ViT, SAM 2.1 tiny at its real size):
the same checkpoint loaded with ``runtime="torch"`` and ``runtime="onnx"``,
the same image, the same prompts (points, negatives, a box, a box with
points, refinement from the previous logits). Two float paths: masks must
agree within :func:`tests.mask_compare.assert_masks_close` (IoU >= 0.999,
differing pixels only at logits within a hair of the threshold), never bit
for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from samdesk.inference.engines import loading
from samdesk.inference.engines.base import Embedding, Prediction
from samdesk.inference.runtimes import cache
from tests.mask_compare import SCORE_TOL, assert_predictions_close
from tests.model_factories import (
    SAM21_TINY_CONFIG,
    TINY_SAM,
    make_sam2_checkpoint,
    make_sam_checkpoint,
    prompt_case,
    registered_test_model,
    textured_image,
)

HEIGHT, WIDTH = 700, 1100


@dataclass
class Pair:
    """One checkpoint loaded twice: torch and ONNX Runtime, each with its embedding."""

    torch: Any
    onnx: Any
    torch_embedding: Embedding
    onnx_embedding: Embedding
    progress: list[tuple[int, int]]


@pytest.fixture(scope="module", params=["sam", "sam2"])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Pair]:
    family = request.param
    folder = tmp_path_factory.mktemp(f"onnx-{family}")
    if family == "sam":
        checkpoint, config = make_sam_checkpoint(folder / "sam.pth", TINY_SAM), TINY_SAM
    else:
        checkpoint = make_sam2_checkpoint(folder / "sam2.pt")
        config = SAM21_TINY_CONFIG
    image = textured_image(HEIGHT, WIDTH, seed=3)
    progress: list[tuple[int, int]] = []
    with pytest.MonkeyPatch.context() as patch, registered_test_model(family, config) as spec:
        patch.setenv(cache.ENV_VAR, str(folder / "cache"))
        onnx = loading.load_model(spec.name, checkpoint, "cpu", runtime="onnx",
                                  progress=lambda done, total: progress.append((done, total)))
        reference = loading.load_model(spec.name, checkpoint, "cpu")
        yield Pair(reference, onnx, reference.embed(image), onnx.embed(image), progress)
        onnx.close()


def test_the_onnx_engine_says_it_runs_onnx(pair: Pair) -> None:
    assert (pair.onnx.runtime, pair.onnx.runtime_note) == ("onnx", "")
    assert (pair.torch.runtime, pair.torch.runtime_note) == ("torch", "")
    total = len(pair.onnx.encoder_chunks())
    assert pair.progress == [(done, total) for done in range(1, total + 1)]


def test_the_embedding_has_torch_names_dtypes_and_shapes(pair: Pair) -> None:
    ours, theirs = pair.onnx_embedding, pair.torch_embedding
    assert ours.model_id == theirs.model_id and ours.image_size == theirs.image_size
    assert list(ours.tensors) == list(theirs.tensors)
    for name, array in theirs.tensors.items():
        assert ours.tensors[name].dtype == array.dtype == np.float32, name
        assert ours.tensors[name].shape == array.shape, name
        np.testing.assert_allclose(ours.tensors[name], array, atol=1e-4, rtol=0)


def _assert_same_masks(pair: Pair, ours: Prediction, theirs: Prediction) -> None:
    frame = pair.torch.frame((HEIGHT, WIDTH))
    assert_predictions_close(ours.masks, theirs.masks, theirs.logits, frame)
    np.testing.assert_allclose(ours.scores, theirs.scores, atol=SCORE_TOL, rtol=0)
    assert ours.masks.any(), "a mask with nothing in it proves nothing"


@pytest.mark.parametrize("case", ["one_point", "points_with_negatives", "box",
                                  "box_and_points", "several_boxes"])
def test_masks_match_torch(pair: Pair, case: str) -> None:
    prompts = prompt_case(case, HEIGHT, WIDTH)
    ours = pair.onnx.predict(pair.onnx_embedding, prompts)
    theirs = pair.torch.predict(pair.torch_embedding, prompts)
    _assert_same_masks(pair, ours, theirs)


def test_refining_from_the_previous_logits_matches_torch(pair: Pair) -> None:
    first = prompt_case("one_point", HEIGHT, WIDTH)
    second = prompt_case("points_with_negatives", HEIGHT, WIDTH)
    results = []
    for engine, embedding in ((pair.onnx, pair.onnx_embedding),
                              (pair.torch, pair.torch_embedding)):
        previous = engine.predict(embedding, first)
        best = int(previous.best()[0])
        mask_input = previous.logits[0, best][None]  # each path refines its own answer
        results.append(engine.predict(embedding, second, mask_input, multimask=False))
    _assert_same_masks(pair, *results)


def _pauses(steps: Any) -> int:
    count = 0
    while True:
        try:
            next(steps)
        except StopIteration:
            return count
        count += 1


def test_the_encode_pauses_between_the_same_chunks_as_torch(pair: Pair) -> None:
    image = textured_image(120, 160, seed=5)
    assert _pauses(pair.onnx.embed_steps(image)) == _pauses(pair.torch.embed_steps(image))
