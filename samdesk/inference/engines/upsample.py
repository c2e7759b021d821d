"""Low-resolution mask logits to boolean masks in image pixels, fast and exact.

The reference predictors upsample every candidate's ``(256, 256)`` logits to
the full image with ``F.interpolate`` (SAM: first to the 1024-pixel square,
cropped to the unpadded part, then to the image; SAM 2: straight to the
image) and threshold them. On a 12 MP image that is a fresh 48 MB float
tensor per candidate, and most of its cost is the page faults of memory
allocated, touched once and freed on every click.

:class:`MaskUpsampler` calls the very same ATen kernel (``upsample_bilinear2d``)
with the same input, sizes and scales, so every logit, hence every mask pixel,
is bit-identical to the reference's; it only writes into float buffers kept
between calls and thresholds one candidate at a time. :class:`Proposal`
holds a request's candidates decoded but not upsampled, so the window can
draw the one it shows and upsample the others only if the person asks; and
:func:`preview_size` picks the smaller size at which the shown candidate is
first drawn when the window shows the image zoomed out (the full-resolution
mask follows at once, and only it is ever saved).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from samdesk.inference.engines.base import Prediction


@dataclass(frozen=True)
class Frame:
    """Where the low-resolution logits sit relative to the image.

    ``image_size``: ``(H, W)`` of the image, the masks' shape.
    ``crop``: ``(h, w)`` of the part of the ``square`` model input that
    holds the image (SAM pads the resized image to the square), or ``None``
    when the whole square is the image, stretched (SAM 2).
    ``threshold``: logits above it are inside the mask.
    """

    image_size: tuple[int, int]
    crop: tuple[int, int] | None = None
    square: int = 1024
    threshold: float = 0.0


def _same_scale(low: int, square: int) -> bool:
    """Whether ATen's source scale for ``low -> square`` is the same float32 whether
    computed from the sizes (``low / square``) or from a scale factor (``1 / (square / low)``)."""
    from_sizes = np.float32(low) / np.float32(square)
    from_factor = np.float32(1.0 / (square / low))
    return bool(from_sizes == from_factor)


class MaskUpsampler:
    """Upsamples ``(256, 256)`` logits to ``bool`` masks, reusing its float buffers.

    Thread-safe (one lock): an engine's upsampler may serve the worker thread
    and, for a candidate asked for later, another thread.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[int, int], torch.Tensor] = {}
        self._lock = threading.Lock()

    def _buffer(self, size: tuple[int, int]) -> torch.Tensor:
        """A float32 ``(1, 1, h, w)`` scratch tensor; one per size, the latest four kept.

        A click on a zoomed-out SAM image uses three: the padded square's
        crop, the preview and the full image; with fewer kept, every click
        would allocate (and page-fault) a 48 MB buffer for a 12 MP photo.
        """
        buffer = self._buffers.get(size)
        if buffer is None:
            if len(self._buffers) >= 4:
                self._buffers.pop(next(iter(self._buffers)))
            buffer = torch.empty((1, 1, *size), dtype=torch.float32)
            self._buffers[size] = buffer
        return buffer

    def _logits(self, low: torch.Tensor, frame: Frame,
                size: tuple[int, int]) -> torch.Tensor:
        """Float logits ``(1, 1, h, w)`` of one ``(256, 256)`` plane at ``size`` ``(h, w)``
        (``frame.image_size`` for the reference's full-resolution logits).

        The result is a reused buffer: read it before the next call.
        """
        plane = low.float().reshape(1, 1, *low.shape[-2:])
        if frame.crop is not None:
            side = plane.shape[-1]
            if _same_scale(side, frame.square):
                # Only the kept corner of the square: the same kernel with the
                # square's scale gives its pixels bit for bit (output index 0
                # is the square's index 0), a quarter less work for SAM.
                square = self._buffer(frame.crop)
                factor = frame.square / side
                torch._C._nn.upsample_bilinear2d(plane, list(frame.crop), False, factor, factor,
                                                 out=square)
                plane = square
            else:
                square = self._buffer((frame.square, frame.square))
                torch._C._nn.upsample_bilinear2d(plane, [frame.square] * 2, False, out=square)
                plane = square[..., : frame.crop[0], : frame.crop[1]]
        full = self._buffer(size)
        torch._C._nn.upsample_bilinear2d(plane, list(size), False, out=full)
        return full

    @torch.inference_mode()
    def masks(self, logits: torch.Tensor, frame: Frame,
              size: tuple[int, int] | None = None) -> np.ndarray:
        """``bool (N, H, W)`` masks of ``logits`` ``(N, 256, 256)`` (any leading shape).

        Equal, pixel for pixel, to ``F.interpolate`` of the same logits as the
        reference predictor does it, thresholded at ``frame.threshold``. With
        ``size`` ``(h, w)``: the same pipeline with its last step sized to
        ``size`` instead of the image, a preview of the mask on a screen that
        shows the image at ``h x w`` pixels (not the reference's pixels).
        """
        size = frame.image_size if size is None else size
        planes = logits.detach().to("cpu").reshape(-1, *logits.shape[-2:])
        out = np.empty((planes.shape[0], *size), dtype=np.bool_)
        with self._lock:
            for i, plane in enumerate(planes):
                full = self._logits(plane, frame, size)
                torch.gt(full[0, 0], frame.threshold, out=torch.from_numpy(out[i]))
        return out.reshape(*logits.shape[:-2], *size)


class Proposal:
    """A request's candidate masks, decoded but upsampled only when asked for.

    ``scores``: float32 ``(objects, candidates)``; ``logits``: float32
    ``(objects, candidates, 256, 256)``, what :class:`Prediction` returns for
    refining (SAM 2 clamps them; the masks come from the unclamped ones).
    :meth:`mask` gives exactly the mask :meth:`Engine.predict` would have
    returned for that object and candidate, computed once and kept.
    """

    def __init__(self, raw: torch.Tensor, scores: np.ndarray, logits: np.ndarray, frame: Frame,
                 upsampler: MaskUpsampler) -> None:
        self._raw = raw.detach().to("cpu")
        self.scores = scores
        self.logits = logits
        self.frame = frame
        self._upsampler = upsampler
        self._masks: dict[tuple[int, int], np.ndarray] = {}

    @property
    def image_size(self) -> tuple[int, int]:
        return self.frame.image_size

    def best(self) -> np.ndarray:
        """Index of the best-scoring candidate per object, shape ``(objects,)``."""
        return np.argmax(self.scores, axis=1)

    def mask(self, obj: int, candidate: int) -> np.ndarray:
        """``bool (H, W)`` mask of one candidate in image pixels."""
        key = (obj, candidate)
        found = self._masks.get(key)
        if found is None:
            found = self._upsampler.masks(self._raw[obj, candidate][None], self.frame)[0]
            self._masks[key] = found
        return found

    def preview(self, obj: int, candidate: int, size: tuple[int, int]) -> np.ndarray:
        """``bool`` ``size`` ``(h, w)`` mask of one candidate, for drawing the image at
        ``h x w`` screen pixels; :meth:`mask` is the full-resolution one."""
        return self._upsampler.masks(self._raw[obj, candidate][None], self.frame, size)[0]

    def shown(self) -> np.ndarray:
        """``bool (objects, H, W)``: each object's best candidate, the one a window draws."""
        best = self.best()
        return np.stack([self.mask(i, int(c)) for i, c in enumerate(best)])

    def prediction(self) -> Prediction:
        """Every candidate upsampled: what ``Engine.predict`` returns."""
        objects, candidates = self.scores.shape
        masks = np.empty((objects, candidates, *self.frame.image_size), dtype=np.bool_)
        for i in range(objects):
            for c in range(candidates):
                known = self._masks.get((i, c))
                masks[i, c] = known if known is not None else self._upsampler.masks(
                    self._raw[i, c][None], self.frame)[0]
        return Prediction(masks=masks, scores=self.scores, logits=self.logits)


PREVIEW_MAX_AREA = 0.5
"""A preview is made only when it has at most this fraction of the image's pixels."""


def preview_size(shown: tuple[int, int] | None,
                 image_size: tuple[int, int]) -> tuple[int, int] | None:
    """The ``(h, w)`` to preview a mask at when the window draws an ``image_size``
    ``(H, W)`` image at ``shown`` ``(h, w)`` screen pixels, or None for the full
    resolution (no size given, or the screen shows at least half the pixels)."""
    if shown is None:
        return None
    height, width = image_size
    h, w = min(int(shown[0]), height), min(int(shown[1]), width)
    if h < 1 or w < 1 or h * w > PREVIEW_MAX_AREA * height * width:
        return None
    return h, w
