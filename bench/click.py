"""Benchmark 1: click to mask on a 4000 x 3000 image whose embedding is ready.

For SAM ViT-B and SAM 2.1 hiera-tiny (seeded random weights: the real
models' cost), a point prompt and a box prompt, it times the path from the
request to the candidate mask the window draws: the worker's own
:func:`samdesk.inference.worker.answers.answer` for a ``Predict`` request from a
window whose canvas shows the photo fitted in 1600 x 1000 (``SCREEN``: the
image drawn at 1333 x 1000), so the best candidate comes as a preview at that
size (:func:`shown_mask`); its full-resolution mask is the next job, then the
other candidates, one low-priority job each, for Tab. Against:

- ``vs_predictor`` (a): the reference ``SamPredictor.predict`` /
  ``SAM2ImagePredictor.predict`` with ``multimask_output=True`` on the same
  model object, its image state set from the same embedding; target 0.5x;
- ``vs_onnx`` (b): an ONNX Runtime decoder that returns the best mask at full
  resolution (see :mod:`bench.onnx_decoders`), thresholded; target 0.8x;
- ``vs_floor`` (c): the prompt encoder and mask decoder forward alone, on
  prompts already in model coordinates; target 1.25x.

Each line also says whether samdesk's full-resolution mask (the one saved)
equals the reference predictor's best candidate pixel for pixel
(``same_mask``); ``full_res_ms`` times the answer with the shown candidate at
full resolution (a window showing the image at 1:1, no preview),
``preview_then_full_ms`` the preview plus the full-resolution job that
follows it, and ``all_candidates_ms`` ``engine.predict`` (every candidate at
full resolution).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import (
    Emit,
    Result,
    interleaved,
    sam2_checkpoint,
    sam_checkpoint,
    work_dir,
)
from samdesk.inference.worker.answers import answer

HEIGHT, WIDTH = 3000, 4000
PROMPTS = {"point": "one_point", "box": "box"}
"""Benchmark prompt name -> ``tests.model_factories.prompt_case`` name."""
TARGETS = {"vs_predictor": 0.5, "vs_onnx": 0.8, "vs_floor": 1.25}
SCREEN = (1000, 1333)
"""(h, w) screen pixels of the photo fitted in a 1600 x 1000 canvas."""


@dataclass
class Case:
    """One model, ready to decode: the engine, its embedding and the three references."""

    name: str
    engine: Any
    embedding: Any
    reference: Callable[[Any], np.ndarray]  # prompts -> best mask (H, W) bool
    onnx: Callable[[Any], np.ndarray] | None  # prompts -> best mask (H, W) bool
    floor: Callable[[Any], Callable[[], object]]  # prompts -> call of the bare forward


def shown_mask(engine: Any, embedding: Any, prompts: Any,
               preview: tuple[int, int] | None = SCREEN) -> np.ndarray:
    """samdesk's interactive path: the best candidate, the mask the window draws first.

    Exactly what the inference worker runs for a click before it answers:
    ``propose`` decodes the three candidates at low resolution and only the
    shown one is upsampled, to ``preview`` (the screen size) or, with None,
    to full resolution.
    """
    result, _ = answer(engine, embedding, _job(prompts, preview))
    best = (0, int(result.best()[0]))
    return result.previews[best] if best in result.previews else result.masks[best]


def preview_then_full(engine: Any, embedding: Any, prompts: Any) -> np.ndarray:
    """The preview, then the worker's next job: the shown candidate at full resolution."""
    _, rest = answer(engine, embedding, _job(prompts, SCREEN))
    return rest[0].proposal.mask(rest[0].obj, rest[0].candidate)


def _job(prompts: Any, preview: tuple[int, int] | None) -> Any:
    from samdesk.inference.worker.requests import ImageRef, Predict

    return Predict(0, ImageRef(Path("bench.png"), "bench"), prompts, None, True, preview)


def all_masks(engine: Any, embedding: Any, prompts: Any) -> np.ndarray:
    """``engine.predict``: every candidate at full resolution."""
    return engine.predict(embedding, prompts, None, True).masks


def _points(prompts: Any) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Reference predictor arguments: coords (N, 2), labels (N,), box (4,), image pixels."""
    coords = labels = box = None
    if prompts.points:
        coords = np.array([[p.x, p.y] for p in prompts.points])
        labels = np.array([int(p.positive) for p in prompts.points])
    if prompts.boxes:
        box = np.array(prompts.boxes[0])
    return coords, labels, box


def _best(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return masks[int(np.argmax(scores))]


# -- SAM ---------------------------------------------------------------------


def sam_case(threads: int) -> Case:
    from segment_anything import SamPredictor

    from bench import onnx_decoders
    from samdesk.inference.engines.loading import load_model
    from tests.model_factories import textured_image

    engine = load_model("sam_vit_b", sam_checkpoint("vit_b"), "cpu")
    embedding = engine.embed(textured_image(HEIGHT, WIDTH, 1))
    model = engine.model
    predictor = SamPredictor(model)
    predictor.original_size = (HEIGHT, WIDTH)
    predictor.input_size = predictor.transform.get_preprocess_shape(HEIGHT, WIDTH, 1024)
    predictor.features = torch.from_numpy(embedding.tensors["image_embed"])
    predictor.is_image_set = True

    def reference(prompts: Any) -> np.ndarray:
        coords, labels, box = _points(prompts)
        masks, scores, _ = predictor.predict(coords, labels, box, None, True)
        return _best(masks, scores)

    onnx_path = work_dir() / f"sam_vit_b_seed0_decoder_{WIDTH}x{HEIGHT}.onnx"
    if not onnx_path.exists():
        onnx_decoders.export_sam(model, onnx_path, (HEIGHT, WIDTH))
    session = onnx_decoders.session(onnx_path, threads)
    image_embeddings = embedding.tensors["image_embed"]
    size = np.array([HEIGHT, WIDTH], dtype=np.float32)

    def onnx(prompts: Any) -> np.ndarray:
        coords, labels, box = _points(prompts)
        xy = np.zeros((0, 2)) if coords is None else coords
        lab = np.zeros((0,)) if labels is None else labels
        if box is None:  # a padding point, as the SAM ONNX example does
            xy, lab = np.concatenate([xy, [[0.0, 0.0]]]), np.concatenate([lab, [-1]])
        else:
            xy, lab = np.concatenate([xy, box.reshape(2, 2)]), np.concatenate([lab, [2, 3]])
        xy = predictor.transform.apply_coords(xy, (HEIGHT, WIDTH))
        inputs = {
            "image_embeddings": image_embeddings,
            "point_coords": xy[None].astype(np.float32),
            "point_labels": lab[None].astype(np.float32),
            "mask_input": np.zeros((1, 1, 256, 256), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": size,
        }
        masks = session.run(None, inputs)[0]  # type: ignore[attr-defined]
        return masks[0, 0] > model.mask_threshold

    features = torch.from_numpy(image_embeddings)

    def floor(prompts: Any) -> Callable[[], object]:
        coords, labels, box = _points(prompts)
        points = boxes = None
        if coords is not None:
            xy = predictor.transform.apply_coords(coords, (HEIGHT, WIDTH))
            points = (torch.as_tensor(xy, dtype=torch.float)[None],
                      torch.as_tensor(labels, dtype=torch.int)[None])
        if box is not None:
            boxes = torch.as_tensor(predictor.transform.apply_boxes(box, (HEIGHT, WIDTH)),
                                    dtype=torch.float)

        @torch.inference_mode()
        def forward() -> object:
            sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=None)
            return model.mask_decoder(
                image_embeddings=features, image_pe=model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                multimask_output=True,
            )
        return forward

    return Case("sam_vit_b", engine, embedding, reference, onnx, floor)


# -- SAM 2 -------------------------------------------------------------------


def sam2_case(threads: int) -> Case:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from bench import onnx_decoders
    from samdesk.inference.engines.loading import load_model
    from tests.model_factories import textured_image

    engine = load_model("sam2.1_hiera_tiny", sam2_checkpoint(), "cpu")
    embedding = engine.embed(textured_image(HEIGHT, WIDTH, 1))
    model = engine.model
    tensors = {k: torch.from_numpy(v) for k, v in embedding.tensors.items()}
    predictor = SAM2ImagePredictor(model)
    predictor._orig_hw = [(HEIGHT, WIDTH)]
    predictor._features = {"image_embed": tensors["image_embed"],
                           "high_res_feats": [tensors["high_res_0"], tensors["high_res_1"]]}
    predictor._is_image_set = True
    predictor._is_batch = False

    def reference(prompts: Any) -> np.ndarray:
        coords, labels, box = _points(prompts)
        masks, scores, _ = predictor.predict(coords, labels, box, None, True)
        return _best(masks, scores)

    onnx_path = work_dir() / "sam2.1_hiera_tiny_seed0_decoder.onnx"
    if not onnx_path.exists():
        onnx_decoders.export_sam2(model, embedding.tensors, onnx_path)
    session = onnx_decoders.session(onnx_path, threads)
    scale = np.array([1024.0 / WIDTH, 1024.0 / HEIGHT])

    def model_points(prompts: Any) -> tuple[np.ndarray, np.ndarray]:
        """Box corners (labels 2, 3), then clicks, then the padding point, in 1024 pixels."""
        coords, labels, box = _points(prompts)
        xy, lab = np.zeros((0, 2)), np.zeros((0,))
        if box is not None:
            xy, lab = box.reshape(2, 2) * scale, np.array([2.0, 3.0])
        if coords is not None:
            xy, lab = np.concatenate([xy, coords * scale]), np.concatenate([lab, labels])
        return np.concatenate([xy, [[0.0, 0.0]]]), np.concatenate([lab, [-1.0]])

    size = np.array([HEIGHT, WIDTH], dtype=np.float32)

    def onnx(prompts: Any) -> np.ndarray:
        xy, lab = model_points(prompts)
        inputs = {
            "image_embed": embedding.tensors["image_embed"],
            "high_res_0": embedding.tensors["high_res_0"],
            "high_res_1": embedding.tensors["high_res_1"],
            "point_coords": xy[None].astype(np.float32),
            "point_labels": lab[None].astype(np.float32),
            "mask_input": np.zeros((1, 1, 256, 256), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": size,
        }
        masks = session.run(None, inputs)[0]  # type: ignore[attr-defined]
        return masks[0, 0] > 0.0

    def floor(prompts: Any) -> Callable[[], object]:
        coords, labels, box = _points(prompts)
        unnorm_coords, point_labels = None, None
        if coords is not None:
            unnorm_coords = torch.as_tensor(coords * scale, dtype=torch.float)[None]
            point_labels = torch.as_tensor(labels, dtype=torch.int)[None]
        if box is not None:
            corners = torch.as_tensor(box.reshape(1, 2, 2) * scale, dtype=torch.float)
            corner_labels = torch.tensor([[2, 3]], dtype=torch.int)
            if unnorm_coords is None:
                unnorm_coords, point_labels = corners, corner_labels
            else:
                unnorm_coords = torch.cat([corners, unnorm_coords], dim=1)
                point_labels = torch.cat([corner_labels, point_labels], dim=1)
        high_res = [tensors["high_res_0"], tensors["high_res_1"]]

        @torch.inference_mode()
        def forward() -> object:
            sparse, dense = model.sam_prompt_encoder(
                points=(unnorm_coords, point_labels), boxes=None, masks=None)
            return model.sam_mask_decoder(
                image_embeddings=tensors["image_embed"],
                image_pe=model.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                multimask_output=True, repeat_image=False, high_res_features=high_res,
            )
        return forward

    return Case("sam2.1_hiera_tiny", engine, embedding, reference, onnx, floor)


# -- the benchmark -----------------------------------------------------------


def run_case(case: Case, calls: int, warmup: int, emit: Emit) -> None:
    from tests.model_factories import prompt_case

    for prompt_name, factory_name in PROMPTS.items():
        prompts = prompt_case(factory_name, HEIGHT, WIDTH)
        best = case.reference(prompts)
        same = bool(np.array_equal(preview_then_full(case.engine, case.embedding, prompts), best)
                    and np.array_equal(shown_mask(case.engine, case.embedding, prompts, None),
                                       best))
        onnx_differing = None if case.onnx is None else int(np.count_nonzero(
            case.onnx(prompts) != best))
        variants: dict[str, Callable[[], object]] = {
            "samdesk": lambda p=prompts: shown_mask(case.engine, case.embedding, p),
            "full": lambda p=prompts: shown_mask(case.engine, case.embedding, p, None),
            "then_full": lambda p=prompts: preview_then_full(case.engine, case.embedding, p),
            "all": lambda p=prompts: all_masks(case.engine, case.embedding, p),
            "vs_predictor": lambda p=prompts: case.reference(p),
            "vs_floor": case.floor(prompts),
        }
        if case.onnx is not None:
            variants["vs_onnx"] = lambda p=prompts: case.onnx(p)  # type: ignore[misc]
        timings = interleaved(variants, calls, warmup)
        ours_ms = timings.median_ms("samdesk")
        for reference in ("vs_predictor", "vs_onnx", "vs_floor"):
            name = f"click.{case.name}.{prompt_name}.{reference}"
            if reference not in variants:
                emit(Result(name, {}, None, TARGETS[reference], skipped="no ONNX decoder"))
                continue
            ref_ms = timings.median_ms(reference)
            figures = {"samdesk_ms": round(ours_ms, 1), "reference_ms": round(ref_ms, 1),
                       "calls": timings.calls("samdesk"), "same_mask": same,
                       "full_res_ms": round(timings.median_ms("full"), 1),
                       "preview_then_full_ms": round(timings.median_ms("then_full"), 1),
                       "all_candidates_ms": round(timings.median_ms("all"), 1)}
            if reference == "vs_onnx":
                figures["onnx_differing_px"] = onnx_differing
            emit(Result(name, figures, ours_ms / ref_ms, TARGETS[reference]))


def run(quick: bool, emit: Emit) -> None:
    """Emit one line per model, prompt and reference (12 lines)."""
    calls, warmup = (5, 1) if quick else (25, 2)
    threads = torch.get_num_threads()
    for build in (sam_case, sam2_case):
        run_case(build(threads), calls, warmup, emit)
