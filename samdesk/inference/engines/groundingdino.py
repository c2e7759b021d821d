"""The GroundingDINO text detector: a phrase in, boxes with phrases and scores out.

It reproduces ``groundingdino.util.inference.load_image`` + ``predict``:

- the image is resized so its short side is 800 pixels and its long side at
  most 1333 (PIL bilinear), scaled to [0, 1] and normalised with the ImageNet
  mean and std;
- the caption is lower-cased and ends with ``.`` (phrases separated by ``.``);
- a query is kept when its best token score is above ``box_threshold``; its
  phrase is the caption tokens scoring above ``text_threshold``.

Unlike the reference, boxes come back as XYXY image pixels clipped to the
image, sorted by score (best first), and phrases leave out BERT's special
tokens (``[CLS]``, ``[SEP]``) and extra spaces.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from samdesk.inference.engines._gdino_build import build_model
from samdesk.inference.engines.base import Detections, EngineError
from samdesk.inference.engines.device import resolve_device
from samdesk.inference.models.registry import ModelSpec

SHORT_SIDE = 800
"""Short side of the model input, in pixels, unless the long side would pass LONG_SIDE."""
LONG_SIDE = 1333
"""Longest side the model input may have, in pixels."""
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def input_size(height: int, width: int) -> tuple[int, int]:
    """The ``(height, width)`` the model sees for an image of ``height`` x ``width``."""
    short, long_side = min(height, width), max(height, width)
    target = SHORT_SIDE
    if long_side / short * target > LONG_SIDE:
        target = int(round(LONG_SIDE * short / long_side))
    if short == target:
        return height, width
    if width < height:
        return int(target * height / width), target
    return target, int(target * width / height)


def preprocess(rgb: np.ndarray) -> torch.Tensor:
    """An ``(H, W, 3)`` uint8 RGB image -> the float32 ``(3, h, w)`` model input."""
    height, width = rgb.shape[:2]
    out_h, out_w = input_size(height, width)
    image = Image.fromarray(np.ascontiguousarray(rgb))
    resized = np.asarray(image.resize((out_w, out_h), Image.Resampling.BILINEAR))
    tensor = torch.from_numpy(resized.copy()).permute(2, 0, 1).contiguous()
    tensor = tensor.to(torch.float32).div(255)
    mean = torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(STD, dtype=torch.float32)[:, None, None]
    return tensor.sub(mean).div(std)


def normalise_caption(text: str) -> str:
    """Lower-case ``text`` and end it with ``.``; EngineError when nothing is named."""
    caption = text.lower().strip()
    if not caption.strip(" .\t\r\n"):
        raise EngineError("text prompt is empty: type object names separated by '.'")
    return caption if caption.endswith(".") else caption + " ."


def cxcywh_to_xyxy(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normalised ``(N, 4)`` cx, cy, w, h -> float32 XYXY pixels, clipped to the image."""
    cx, cy, w, h = (boxes[:, i].astype(np.float64) for i in range(4))
    xyxy = np.stack([(cx - w / 2) * width, (cy - h / 2) * height,
                     (cx + w / 2) * width, (cy + h / 2) * height], axis=1)
    xyxy[:, 0::2] = np.clip(xyxy[:, 0::2], 0, width)
    xyxy[:, 1::2] = np.clip(xyxy[:, 1::2], 0, height)
    return xyxy.astype(np.float32).reshape(-1, 4)


def _check_inputs(rgb: np.ndarray, box_threshold: float, text_threshold: float) -> None:
    if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3
            and rgb.dtype == np.uint8 and rgb.shape[0] > 0 and rgb.shape[1] > 0):
        shape = getattr(rgb, "shape", None)
        raise EngineError(f"image must be an (H, W, 3) uint8 RGB array, got {shape}")
    for name, value in (("box_threshold", box_threshold), ("text_threshold", text_threshold)):
        if not 0.0 <= value <= 1.0:
            raise EngineError(f"{name} must be between 0 and 1, got {value}")


def _image_key(rgb: np.ndarray, caption: str) -> tuple[object, ...]:
    digest = hashlib.blake2b(np.ascontiguousarray(rgb).data, digest_size=16).hexdigest()
    return rgb.shape, digest, caption


class GroundingDinoDetector:
    """A loaded GroundingDINO on one device; see :class:`samdesk.inference.engines.base.Detector`.

    The model's outputs for the last image and caption are kept, so moving a
    threshold slider re-selects boxes without running the model again.
    """

    def __init__(self, model: torch.nn.Module, model_id: str, device: torch.device) -> None:
        self.model = model.to(device).eval()
        self.model_id = model_id
        self.device = device
        self.tokenizer: Any = model.tokenizer
        self._last: tuple[tuple[object, ...], np.ndarray, np.ndarray] | None = None

    def raw_outputs(self, rgb: np.ndarray, caption: str) -> tuple[np.ndarray, np.ndarray]:
        """Sigmoid token scores float32 ``(Q, 256)`` and normalised cxcywh ``(Q, 4)``.

        ``caption`` is used as given (see :func:`normalise_caption`).
        """
        key = _image_key(rgb, caption)
        if self._last is not None and self._last[0] == key:
            return self._last[1], self._last[2]
        image = preprocess(rgb).to(self.device)
        with torch.no_grad():
            outputs = self.model(image[None], captions=[caption])
        scores = outputs["pred_logits"][0].float().sigmoid().cpu().numpy()
        boxes = outputs["pred_boxes"][0].float().cpu().numpy()
        self._last = (key, scores, boxes)
        return scores, boxes

    def _phrase(self, token_scores: np.ndarray, input_ids: list[int], threshold: float) -> str:
        picked = [input_ids[i] for i in np.flatnonzero(token_scores > threshold)
                  if i < len(input_ids)]
        text = self.tokenizer.decode(picked, skip_special_tokens=True)
        return " ".join(str(text).replace(".", "").split())

    def detect(
        self,
        rgb: np.ndarray,
        text: str,
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
    ) -> Detections:
        """Find the objects named in ``text`` in an ``(H, W, 3)`` uint8 RGB image.

        Returns boxes XYXY float32 ``(N, 4)`` in image pixels, one phrase per box
        (the caption words that matched; may be empty when no token passes
        ``text_threshold``) and float32 ``(N,)`` scores, best first. N is 0
        when nothing scores above ``box_threshold``.
        """
        _check_inputs(rgb, box_threshold, text_threshold)
        caption = normalise_caption(text)
        token_scores, boxes = self.raw_outputs(rgb, caption)
        best = token_scores.max(axis=1)
        keep = np.flatnonzero(best > box_threshold)
        keep = keep[np.argsort(-best[keep], kind="stable")]
        input_ids = list(self.tokenizer(caption)["input_ids"])
        phrases = [self._phrase(token_scores[i], input_ids, text_threshold) for i in keep]
        height, width = rgb.shape[:2]
        return Detections(
            boxes=cxcywh_to_xyxy(boxes[keep], height, width),
            phrases=phrases,
            scores=best[keep].astype(np.float32),
        )


def load(spec: ModelSpec, checkpoint: Path | None, device: str = "cpu") -> GroundingDinoDetector:
    """Build the detector ``spec`` names from ``checkpoint`` on ``device``.

    Reads the config ``spec.config`` (a packaged name or a ``.py`` path) and
    the BERT tokenizer in :func:`samdesk.inference.models.paths.bert_dir`; never
    downloads anything.
    """
    torch_device = resolve_device(device)
    model = build_model(spec, checkpoint)
    return GroundingDinoDetector(model, spec.name, torch_device)
