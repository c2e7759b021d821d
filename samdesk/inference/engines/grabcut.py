"""OpenCV GrabCut as an engine, so a fresh install with no checkpoint still segments.

``embed`` only stores a downscaled copy of the image (longest side at most
``max_side`` pixels); ``predict`` runs GrabCut on the region the prompts
cover, at most ``work_pixels`` pixels, and scales the result up to the full
image. Every object is segmented on its own:

* a box initialises GrabCut with ``GC_INIT_WITH_RECT`` (outside the box is
  definite background); points inside it then mark definite foreground
  (positive) or background (negative) disks and the mask is re-estimated;
* positive points without a box mark a small definite-foreground disk in a
  probable-foreground patch, the rest of the image is probable background,
  and only the connected parts that hold a positive point are kept;
* negative points mark definite-background disks, and the colour-uniform
  region around each one too unless that region holds a positive click (then
  the two clicks are on one region, and only the disk is background).

A positive click's own pixel is in every candidate and a negative click's
hole is never filled; a prompt GrabCut cannot model is one
:class:`EngineError` line, never an OpenCV traceback.

Scores are the colour models' own agreement with each candidate: the mean
posterior probability of foreground inside it and of background outside it,
within the region GrabCut worked on (0..1). ``mask_input`` is ignored: GrabCut
keeps no logits, and re-estimates its colour models from the prompts on every call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from samdesk.errorlog import shorten
from samdesk.inference.engines.base import Embedding, EngineError, Point, Prediction, Prompts
from samdesk.inference.models.registry import ModelSpec

MODEL_ID = "grabcut"
_COMPONENTS = 5  # OpenCV's GMM has five components per model


@dataclass(frozen=True)
class _Object:
    """One object's prompts in working-image pixels."""

    box: tuple[float, float, float, float] | None
    positives: tuple[tuple[float, float], ...]
    negatives: tuple[tuple[float, float], ...]


class GrabCutEngine:
    """GrabCut behind the :class:`~samdesk.inference.engines.base.Engine` protocol.

    ``max_side``: longest side of the copy ``embed`` keeps (pixels).
    ``work_pixels``: the most pixels one GrabCut run works on.
    ``iterations``: GrabCut iterations per object.
    """

    model_id = MODEL_ID

    def __init__(
        self, max_side: int = 1024, work_pixels: int = 400 * 400, iterations: int = 5
    ) -> None:
        if max_side < 16 or work_pixels < 256 or iterations < 1:
            raise EngineError("grabcut: max_side >= 16, work_pixels >= 256, iterations >= 1")
        self.max_side = max_side
        self.work_pixels = work_pixels
        self.iterations = iterations

    def embed(self, rgb: np.ndarray) -> Embedding:
        """Keep a copy of the ``(H, W, 3)`` uint8 RGB image, longest side <= ``max_side``.

        The embedding's ``tensors["image"]`` is that uint8 copy (BGR order, as
        OpenCV wants it); ``image_size`` is the full ``(H, W)``.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise EngineError(
                f"grabcut: image must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}"
            )
        height, width = rgb.shape[:2]
        factor = min(1.0, self.max_side / max(height, width))
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if factor < 1.0:
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        return Embedding(self.model_id, (height, width), {"image": np.ascontiguousarray(bgr)})

    def predict(
        self,
        embedding: Embedding,
        prompts: Prompts,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> Prediction:
        """Segment each object of ``prompts``; ``mask_input`` is ignored (see module doc).

        Returns masks bool ``(objects, candidates, H, W)`` and scores float32
        ``(objects, candidates)``; ``logits`` is ``None``. Candidates (with
        ``multimask``; else only the first): for a box, GrabCut's labelling,
        its largest connected part, and the labelling with holes filled; for
        clicks alone, the connected parts under the positive clicks and those
        parts with holes filled.
        """
        if embedding.model_id != self.model_id:
            raise EngineError(f"grabcut: embedding was made by {embedding.model_id!r}")
        if prompts.is_empty:
            raise EngineError("prompts: click a point or draw a box first")
        image = np.asarray(embedding.tensors["image"])
        if image.dtype != np.uint8:  # e.g. a float copy from a cache
            image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        full_h, full_w = embedding.image_size
        sy, sx = image.shape[0] / full_h, image.shape[1] / full_w
        masks, scores = [], []
        for obj in _objects(prompts, full_w, full_h, sx, sy):
            cands, cand_scores = self._segment(image, obj, (full_h, full_w), multimask)
            masks.append(cands)
            scores.append(cand_scores)
        return Prediction(np.stack(masks), np.asarray(scores, dtype=np.float32), None)

    def _segment(
        self, image: np.ndarray, obj: _Object, full_size: tuple[int, int], multimask: bool
    ) -> tuple[np.ndarray, list[float]]:
        """Candidates ``(C, H, W)`` bool at full size and their scores for one object."""
        small_h, small_w = image.shape[:2]
        x0, y0, x1, y1 = _region(obj, small_w, small_h)
        factor = min(1.0, math.sqrt(self.work_pixels / ((x1 - x0) * (y1 - y0))))
        work_w, work_h = max(2, round((x1 - x0) * factor)), max(2, round((y1 - y0) * factor))
        work = cv2.resize(image[y0:y1, x0:x1], (work_w, work_h), interpolation=cv2.INTER_AREA)

        def to_work(x: float, y: float) -> tuple[float, float]:
            return (x - x0) * work_w / (x1 - x0), (y - y0) * work_h / (y1 - y0)

        gc_mask, rect = _initial_mask(obj, (work_h, work_w), to_work)
        seeds = [to_work(x, y) for x, y in obj.positives]
        negatives = [to_work(x, y) for x, y in obj.negatives]
        for point in negatives:
            region = _uniform_region(work, point)
            if not any(region[_pixel(seed, region.shape)] for seed in seeds):
                gc_mask[region] = cv2.GC_BGD  # a region holding a positive click is not all bg
        if obj.negatives:
            rect = None
            _mark_clicks(gc_mask, obj, to_work)  # the clicks' own disks win over any region
        bgd, fgd = np.zeros((1, 13 * _COMPONENTS)), np.zeros((1, 13 * _COMPONENTS))
        self._grabcut(work, gc_mask, rect, bgd, fgd)
        raw = (gc_mask == cv2.GC_FGD) | (gc_mask == cv2.GC_PR_FGD)
        if obj.box is None:
            main = _parts_at(raw, seeds)
            others = [_fill_holes(main, negatives)]
        else:
            largest = _largest_part(raw) | _parts_at(raw, seeds)
            main, others = raw, [largest, _fill_holes(raw, negatives)]
        cands = [main, *others] if multimask else [main]
        p_fg = _posterior_fg(work, fgd, bgd)
        scores = [_agreement(c, p_fg) for c in cands]
        full = np.zeros((len(cands), *full_size), dtype=bool)
        fx0, fy0 = round(x0 * full_size[1] / small_w), round(y0 * full_size[0] / small_h)
        fx1, fy1 = round(x1 * full_size[1] / small_w), round(y1 * full_size[0] / small_h)
        for i, cand in enumerate(cands):
            up = cv2.resize(cand.astype(np.float32), (fx1 - fx0, fy1 - fy0),
                            interpolation=cv2.INTER_LINEAR)
            full[i, fy0:fy1, fx0:fx1] = up >= 0.5
        for x, y in obj.positives:  # a positive click's own pixel is always in the mask
            px = min(full_size[1] - 1, int(x * full_size[1] / small_w))
            py = min(full_size[0] - 1, int(y * full_size[0] / small_h))
            full[:, py, px] = True
        return full, scores

    def _grabcut(self, work: np.ndarray, gc_mask: np.ndarray,
                 rect: tuple[int, int, int, int] | None, bgd: np.ndarray,
                 fgd: np.ndarray) -> None:
        """Run GrabCut on ``gc_mask`` in place (colour models into ``bgd``, ``fgd``).

        GrabCut needs pixels of both kinds to fit its colour models; when the
        prompts leave none of one kind (a click whose disk covers a tiny
        image), the labels stand as drawn and the models stay empty. OpenCV's
        random generator (this thread's) is seeded first, so the result
        depends on the prompts only.
        """
        if rect is None:
            fg = np.isin(gc_mask, (cv2.GC_FGD, cv2.GC_PR_FGD))
            if fg.all() or not fg.any():
                return
        mode = cv2.GC_INIT_WITH_RECT if rect is not None else cv2.GC_INIT_WITH_MASK
        cv2.setRNGSeed(0)  # GrabCut's k-means draws from it: the same prompts, the same mask
        try:
            cv2.grabCut(work, gc_mask, rect or (0, 0, 1, 1), bgd, fgd, self.iterations, mode)
        except cv2.error as exc:
            reason = getattr(exc, "err", None) or str(exc)
            raise EngineError(
                f"grabcut: cannot segment these prompts ({shorten(str(reason), 160)}); "
                f"try a box or other points"
            ) from None


def load(spec: ModelSpec, checkpoint: Path | None, device: str = "cpu") -> GrabCutEngine:
    """The registry's loader: GrabCut needs no checkpoint and runs on the CPU."""
    return GrabCutEngine()


def _objects(prompts: Prompts, width: int, height: int, sx: float, sy: float) -> list[_Object]:
    """Split ``prompts`` into objects, in working pixels; check they lie on the image."""
    for p in prompts.points:
        if not (0 <= p.x < width and 0 <= p.y < height):
            raise EngineError(f"prompts: point ({p.x:g}, {p.y:g}) is outside the "
                              f"{width}x{height} image")
    boxes = []
    for box in prompts.boxes:
        bx0, by0 = max(0.0, box[0]), max(0.0, box[1])
        bx1, by1 = min(float(width), box[2]), min(float(height), box[3])
        if bx1 - bx0 < 1 or by1 - by0 < 1:
            raise EngineError(f"prompts: box {box} does not cover the {width}x{height} image")
        boxes.append((bx0 * sx, by0 * sy, bx1 * sx, by1 * sy))

    def scaled(points: tuple[Point, ...], positive: bool) -> tuple[tuple[float, float], ...]:
        return tuple((p.x * sx, p.y * sy) for p in points if p.positive == positive)

    pos, neg = scaled(prompts.points, True), scaled(prompts.points, False)
    if not boxes and not pos:
        raise EngineError("prompts: negative points need a positive point or a box")
    if len(boxes) > 1:
        return [_Object(box, (), ()) for box in boxes]
    return [_Object(boxes[0] if boxes else None, pos, neg)]


def _region(obj: _Object, width: int, height: int) -> tuple[int, int, int, int]:
    """The working region XYXY (ints): the box plus a margin, or the whole image."""
    if obj.box is None:
        return 0, 0, width, height
    bx0, by0, bx1, by1 = obj.box
    margin = max(8.0, 0.25 * max(bx1 - bx0, by1 - by0))
    x0, y0 = max(0, math.floor(bx0 - margin)), max(0, math.floor(by0 - margin))
    x1, y1 = min(width, math.ceil(bx1 + margin)), min(height, math.ceil(by1 + margin))
    return x0, y0, max(x1, x0 + 2), max(y1, y0 + 2)


def _initial_mask(
    obj: _Object, shape: tuple[int, int], to_work: Callable[[float, float], tuple[float, float]]
) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """GrabCut's label mask uint8 ``shape`` and the rect for ``GC_INIT_WITH_RECT`` (or None)."""
    h, w = shape
    radius = max(1, round(0.01 * max(h, w)))
    rect = None
    if obj.box is not None:
        (ax, ay), (bx, by) = to_work(obj.box[0], obj.box[1]), to_work(obj.box[2], obj.box[3])
        ax, ay = min(max(0, math.floor(ax)), w - 1), min(max(0, math.floor(ay)), h - 1)
        bx, by = max(ax + 1, min(w, math.ceil(bx))), max(ay + 1, min(h, math.ceil(by)))
        mask = np.full(shape, cv2.GC_BGD, np.uint8)
        mask[ay:by, ax:bx] = cv2.GC_PR_FGD
        if ax == 0 and ay == 0 and bx == w and by == h:  # box is the whole image:
            mask[[0, -1], :] = cv2.GC_PR_BGD  # let the frame seed the background
            mask[:, [0, -1]] = cv2.GC_PR_BGD
        elif not obj.positives and not obj.negatives:
            rect = (ax, ay, bx - ax, by - ay)
    else:
        mask = np.full(shape, cv2.GC_PR_BGD, np.uint8)
        for x, y in obj.positives:
            centre = (int(to_work(x, y)[0]), int(to_work(x, y)[1]))
            cv2.circle(mask, centre, 3 * radius, cv2.GC_PR_FGD, -1)
    _mark_clicks(mask, obj, to_work)
    return mask, rect


def _mark_clicks(
    mask: np.ndarray, obj: _Object, to_work: Callable[[float, float], tuple[float, float]]
) -> None:
    """Draw each click's small disk into GrabCut's label ``mask``: definite
    background for negatives, then definite foreground for positives (a
    positive click wins where the two overlap)."""
    radius = max(1, round(0.01 * max(mask.shape)))
    for points, value in ((obj.negatives, cv2.GC_BGD), (obj.positives, cv2.GC_FGD)):
        for x, y in points:
            wx, wy = to_work(x, y)
            cv2.circle(mask, (int(wx), int(wy)), radius, value, -1)


def _pixel(point: tuple[float, float], shape: tuple[int, ...]) -> tuple[int, int]:
    """The ``(row, column)`` index of ``point`` (x, y) in an array of ``shape``, clipped."""
    return min(shape[0] - 1, max(0, int(point[1]))), min(shape[1] - 1, max(0, int(point[0])))


def _uniform_region(image: np.ndarray, seed: tuple[float, float]) -> np.ndarray:
    """Bool ``(h, w)``: the smooth region of like colour around ``seed`` (x, y).

    A negative click means "not this region", so the whole colour-uniform
    patch around it (found by a flood fill on a blurred copy, tolerance from
    the local spread of colours) becomes definite background. A fill that
    leaks over more than a third of the image is not trusted: empty then.
    """
    h, w = image.shape[:2]
    radius = max(1, round(0.01 * max(h, w)))
    smooth = cv2.GaussianBlur(image, (0, 0), sigmaX=radius)
    x, y = min(w - 1, int(seed[0])), min(h - 1, int(seed[1]))
    reach = 2 * radius
    patch = smooth[max(0, y - reach):y + reach + 1, max(0, x - reach):x + reach + 1]
    tol = float(np.clip(3.0 * patch.reshape(-1, 3).std(axis=0).max(), 10.0, 40.0))
    fill = np.zeros((h + 2, w + 2), np.uint8)
    flags = 8 | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (1 << 8)
    cv2.floodFill(smooth, fill, (x, y), (0, 0, 0), (tol,) * 3, (tol,) * 3, flags)
    region = fill[1:-1, 1:-1].astype(bool)
    return region if region.sum() <= h * w / 3 else np.zeros_like(region)


def _parts_at(mask: np.ndarray, seeds: list[tuple[float, float]]) -> np.ndarray:
    """The 8-connected parts of ``mask`` that hold one of ``seeds`` (x, y)."""
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    h, w = mask.shape
    keep = {int(labels[min(h - 1, int(y)), min(w - 1, int(x))]) for x, y in seeds} - {0}
    return np.isin(labels, list(keep))


def _largest_part(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected part of ``mask`` (empty if ``mask`` is)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), 8)
    if count < 2:
        return mask.copy()
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _fill_holes(mask: np.ndarray, keep_out: Sequence[tuple[float, float]] = ()) -> np.ndarray:
    """``mask`` with every background region that does not reach the border
    filled, except the holes under a ``keep_out`` point (x, y: negative clicks)."""
    padded = np.pad(~mask, 1, constant_values=True).astype(np.uint8)
    _, labels = cv2.connectedComponents(padded, connectivity=4)
    inner = labels[1:-1, 1:-1]
    outside = {int(labels[0, 0])} | {int(inner[_pixel(p, inner.shape)]) for p in keep_out}
    return mask | ~np.isin(inner, sorted(outside))


def _gmm_density(model: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Density of OpenCV's packed 5-component GMM (weights, means, covs) at ``pixels`` (N, 3)."""
    flat = model.ravel()
    weights = flat[:_COMPONENTS]
    means = flat[_COMPONENTS:4 * _COMPONENTS].reshape(_COMPONENTS, 3)
    covs = flat[4 * _COMPONENTS:].reshape(_COMPONENTS, 3, 3) + 0.01 * np.eye(3)
    total = np.zeros(len(pixels))
    for weight, mean, cov in zip(weights, means, covs, strict=True):
        if weight <= 0:
            continue
        diff = pixels - mean
        maha = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
        norm = weight / math.sqrt(((2 * math.pi) ** 3) * max(np.linalg.det(cov), 1e-12))
        total += norm * np.exp(-0.5 * np.minimum(maha, 700.0))
    return total


def _posterior_fg(image: np.ndarray, fgd: np.ndarray, bgd: np.ndarray) -> np.ndarray:
    """Per-pixel P(foreground) float64 ``(h, w)`` under GrabCut's colour models (equal priors)."""
    pixels = image.reshape(-1, 3).astype(np.float64)
    f, b = _gmm_density(fgd, pixels), _gmm_density(bgd, pixels)
    return (f / np.maximum(f + b, 1e-300)).reshape(image.shape[:2])


def _agreement(mask: np.ndarray, p_fg: np.ndarray) -> float:
    """Mean P(fg) inside ``mask`` and P(bg) outside, averaged; 0 for an empty mask."""
    if not mask.any():
        return 0.0
    inside = float(p_fg[mask].mean())
    outside = float(1.0 - p_fg[~mask].mean()) if (~mask).any() else 0.0
    return 0.5 * (inside + outside)
