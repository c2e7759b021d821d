"""ONNX Runtime mask decoders, the way X-AnyLabeling and CVAT decode SAM prompts.

Bench-only (``pip install -e .[bench]``: onnxruntime, onnx). The image
embedding comes from samdesk's engine; only the prompt encoder, the mask
decoder and the upsampling to the image size run in ONNX Runtime:

- SAM: ``segment_anything.utils.onnx.SamOnnxModel`` with
  ``return_single_mask=True`` (the mask a window draws), exported with
  ``torch.onnx.export`` as ``scripts/export_onnx_model.py`` does. The
  TorchScript exporter of torch 2.x freezes the crop to the unpadded part at
  the example image size, so the graph is exported for the benchmark's image
  size (checked: its mask then differs from the reference's in a few pixels).
- SAM 2: no exporter ships with ``sam2``, so :class:`Sam2OnnxModel` wraps its
  prompt encoder and mask decoder the same way (one best mask, bilinear
  upsampling to the image size inside the graph).

Inputs follow the SAM ONNX convention: point coordinates ``(1, N, 2)`` float32
``(x, y)`` in pixels of the 1024-pixel model input, labels ``(1, N)`` float32
(1 positive, 0 negative, 2 / 3 box corners, -1 padding), ``orig_im_size``
``(2,)`` float32 ``(height, width)``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Sam2OnnxModel(nn.Module):
    """SAM 2's prompt encoder + mask decoder + upsampling as one traceable module.

    Outputs: ``masks`` float32 ``(1, 1, H, W)`` logits of the best of the three
    multimask candidates, ``scores`` ``(1, 1)``, ``low_res_masks`` ``(1, 1, 256, 256)``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder = model.sam_prompt_encoder
        self.mask_decoder = model.sam_mask_decoder

    def forward(
        self,
        image_embed: torch.Tensor,
        high_res_0: torch.Tensor,
        high_res_1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        encoder = self.prompt_encoder
        sparse = encoder._embed_points(point_coords, point_labels, pad=False)
        dense = has_mask_input * encoder.mask_downscaling(mask_input)
        dense = dense + (1 - has_mask_input) * encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        low, scores, _, _ = self.mask_decoder(
            image_embeddings=image_embed,
            image_pe=encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
            repeat_image=False,
            high_res_features=[high_res_0, high_res_1],
        )
        best = torch.argmax(scores, dim=1)
        low = low[:, best]
        scores = scores[:, best]
        size = orig_im_size.to(torch.int64)
        masks = F.interpolate(low, size=(size[0], size[1]), mode="bilinear", align_corners=False)
        return masks, scores, low


def _export(module: nn.Module, dummy: dict[str, torch.Tensor], path: Path,
            outputs: list[str]) -> Path:
    dynamic = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, tuple(dummy.values()), str(path), export_params=True, opset_version=17,
            do_constant_folding=True, input_names=list(dummy), output_names=outputs,
            dynamic_axes=dynamic, dynamo=False,
        )
    return path


def export_sam(model: nn.Module, path: Path, image_size: tuple[int, int]) -> Path:
    """Export a ``Sam``'s decoder to ``path`` for ``(H, W)`` images (single best mask)."""
    from segment_anything.utils.onnx import SamOnnxModel

    wrapper = SamOnnxModel(model, return_single_mask=True).eval()
    embed = model.prompt_encoder.embed_dim
    grid = model.prompt_encoder.image_embedding_size
    dummy = {
        "image_embeddings": torch.randn(1, embed, *grid),
        "point_coords": torch.randint(0, 1024, (1, 5, 2)).float(),
        "point_labels": torch.randint(0, 4, (1, 5)).float(),
        "mask_input": torch.randn(1, 1, 4 * grid[0], 4 * grid[1]),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor([float(image_size[0]), float(image_size[1])]),
    }
    return _export(wrapper, dummy, path, ["masks", "iou_predictions", "low_res_masks"])


def export_sam2(model: nn.Module, embedding: dict[str, np.ndarray], path: Path) -> Path:
    """Export SAM 2's decoder to ``path``; ``embedding`` gives the feature shapes."""
    wrapper = Sam2OnnxModel(model).eval()
    dummy = {
        "image_embed": torch.from_numpy(embedding["image_embed"]),
        "high_res_0": torch.from_numpy(embedding["high_res_0"]),
        "high_res_1": torch.from_numpy(embedding["high_res_1"]),
        "point_coords": torch.randint(0, 1024, (1, 5, 2)).float(),
        "point_labels": torch.randint(0, 4, (1, 5)).float(),
        "mask_input": torch.randn(1, 1, 256, 256),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor([1500.0, 2250.0]),
    }
    with torch.no_grad():
        return _export(wrapper, dummy, path, ["masks", "scores", "low_res_masks"])


def session(path: Path, threads: int) -> object:
    """An ONNX Runtime CPU session for ``path`` with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
