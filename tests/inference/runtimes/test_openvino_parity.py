"""OpenVINO runs the same cached ONNX graphs: fp32 gives torch's masks, bf16 close to them.

Per family (a random-weight tiny SAM ViT, SAM 2.1 tiny at its real size):
one checkpoint loaded with ``runtime="torch"``, ``"openvino"`` and
``"openvino-bf16"``, the same image and prompts. fp32 masks agree within
:func:`tests.mask_compare.assert_predictions_close`; bf16 masks keep IoU >=
0.99 with torch's (it moves logits by design). The compiled models are cached
beside the graphs, by the checkpoint's hash.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from samdesk.inference import runtimes
from samdesk.inference.engines import loading
from samdesk.inference.engines.base import Embedding, Prediction
from samdesk.inference.runtimes import cache, openvino_encoder
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
CASES = ["one_point", "points_with_negatives", "box", "box_and_points", "several_boxes"]
BF16_MIN_IOU = 0.99

pytestmark = pytest.mark.skipif("openvino" not in runtimes.available(),
                                reason="openvino is not installed")


@dataclass
class Trio:
    """One checkpoint loaded as torch, OpenVINO fp32 and OpenVINO bf16, with embeddings."""

    torch: Any
    fp32: Any
    bf16: Any
    embeddings: dict[str, Embedding]
    folder: Path


@pytest.fixture(scope="module", params=["sam", "sam2"])
def trio(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Trio]:
    family = request.param
    folder = tmp_path_factory.mktemp(f"openvino-{family}")
    if family == "sam":
        checkpoint, config = make_sam_checkpoint(folder / "sam.pth", TINY_SAM), TINY_SAM
    else:
        checkpoint, config = make_sam2_checkpoint(folder / "sam2.pt"), SAM21_TINY_CONFIG
    image = textured_image(HEIGHT, WIDTH, seed=3)
    with pytest.MonkeyPatch.context() as patch, registered_test_model(family, config) as spec:
        patch.setenv(cache.ENV_VAR, str(folder / "cache"))
        reference = loading.load_model(spec.name, checkpoint, "cpu")
        fp32 = loading.load_model(spec.name, checkpoint, "cpu", runtime="openvino")
        bf16 = (loading.load_model(spec.name, checkpoint, "cpu", runtime="openvino-bf16")
                if "openvino-bf16" in runtimes.available() else None)
        embeddings = {"torch": reference.embed(image), "fp32": fp32.embed(image)}
        if bf16 is not None:
            embeddings["bf16"] = bf16.embed(image)
        yield Trio(reference, fp32, bf16, embeddings, folder / "cache")
        fp32.close()
        if bf16 is not None:
            bf16.close()


def test_the_openvino_engines_say_what_they_run(trio: Trio) -> None:
    assert (trio.fp32.runtime, trio.fp32.runtime_note) == ("openvino", "")
    if trio.bf16 is not None:
        assert (trio.bf16.runtime, trio.bf16.runtime_note) == ("openvino-bf16", "")


def test_the_fp32_embedding_has_torch_names_dtypes_and_shapes(trio: Trio) -> None:
    ours, theirs = trio.embeddings["fp32"], trio.embeddings["torch"]
    assert list(ours.tensors) == list(theirs.tensors)
    for name, array in theirs.tensors.items():
        assert ours.tensors[name].dtype == array.dtype == np.float32, name
        assert ours.tensors[name].shape == array.shape, name
        np.testing.assert_allclose(ours.tensors[name], array, atol=1e-4, rtol=0)


def _assert_same_masks(trio: Trio, ours: Prediction, theirs: Prediction) -> None:
    frame = trio.torch.frame((HEIGHT, WIDTH))
    assert_predictions_close(ours.masks, theirs.masks, theirs.logits, frame)
    np.testing.assert_allclose(ours.scores, theirs.scores, atol=SCORE_TOL, rtol=0)
    assert ours.masks.any(), "a mask with nothing in it proves nothing"


@pytest.mark.parametrize("case", CASES)
def test_fp32_masks_match_torch(trio: Trio, case: str) -> None:
    prompts = prompt_case(case, HEIGHT, WIDTH)
    ours = trio.fp32.predict(trio.embeddings["fp32"], prompts)
    theirs = trio.torch.predict(trio.embeddings["torch"], prompts)
    _assert_same_masks(trio, ours, theirs)


def _refined(engine: Any, embedding: Embedding) -> Prediction:
    previous = engine.predict(embedding, prompt_case("one_point", HEIGHT, WIDTH))
    mask_input = previous.logits[0, int(previous.best()[0])][None]
    return engine.predict(embedding, prompt_case("points_with_negatives", HEIGHT, WIDTH),
                          mask_input, multimask=False)


def test_fp32_refining_from_the_previous_logits_matches_torch(trio: Trio) -> None:
    _assert_same_masks(trio, _refined(trio.fp32, trio.embeddings["fp32"]),
                       _refined(trio.torch, trio.embeddings["torch"]))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return 1.0 if not union else int((a & b).sum()) / union


@pytest.mark.parametrize("case", [*CASES, "refined"])
def test_bf16_masks_keep_iou_with_torch(trio: Trio, case: str) -> None:
    if trio.bf16 is None:
        pytest.skip("this CPU has no bf16 for OpenVINO")
    if case == "refined":
        ours = _refined(trio.bf16, trio.embeddings["bf16"])
        theirs = _refined(trio.torch, trio.embeddings["torch"])
    else:
        prompts = prompt_case(case, HEIGHT, WIDTH)
        ours = trio.bf16.predict(trio.embeddings["bf16"], prompts)
        theirs = trio.torch.predict(trio.embeddings["torch"], prompts)
    a = np.asarray(ours.masks, bool).reshape(-1, HEIGHT, WIDTH)
    b = np.asarray(theirs.masks, bool).reshape(-1, HEIGHT, WIDTH)
    assert b.any()
    for one, other in zip(a, b, strict=True):
        assert _iou(one, other) >= BF16_MIN_IOU


def test_the_encode_pauses_between_the_same_chunks_as_torch(trio: Trio) -> None:
    def pauses(steps: Any) -> int:
        count = 0
        for _ in steps:
            count += 1
        return count

    image = textured_image(120, 160, seed=5)
    assert pauses(trio.fp32.embed_steps(image)) == pauses(trio.torch.embed_steps(image))


def test_the_compiled_models_live_in_the_runtime_cache(trio: Trio) -> None:
    (graphs,) = [p for p in trio.folder.iterdir() if p.is_dir()]
    chunks = len(trio.fp32.encoder_chunks())
    assert len(list(graphs.glob("*.onnx"))) == chunks  # one set of graphs for both
    assert len(list(openvino_encoder.cache_dir(graphs, "fp32").glob("*.blob"))) == chunks
