"""The SAM 2 / SAM 2.1 video engine: objects prompted on any frame, propagated both ways.

Runs the library's own ``SAM2VideoPredictor`` (built from the same hydra
config and checkpoint file as the image engine) with two changes to what
``init_state`` sets up, neither of which changes a mask:

- the frames are a :class:`~samdesk.inference.engines.video_frames.LazyFrames`
  instead of one all-frames tensor: decoded and preprocessed when the model
  reaches them, at most ``frame_cache`` kept;
- the per-frame state (memories, low-res masks) is kept on the CPU
  (``offload_state_to_cpu``) when the model runs on a GPU, and the state of
  frames beyond the model's memory reach is dropped as propagation moves on
  (:func:`forget_far_frames`), so a long sequence's state stays bounded.

Coordinates are frame pixels: points ``(N, 2)`` as ``x, y``, boxes XYXY.
Masks are ``(H, W)`` bool at the frame's size. Object ids are the caller's
(samdesk's track ids).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from samdesk.inference.engines.base import EngineError
from samdesk.inference.engines.device import load_weights, release_memory, resolve_device
from samdesk.inference.engines.sam2 import read_sam2_state, sam2_hydra
from samdesk.inference.engines.video_frames import FrameSource, ImageFileFrames, LazyFrames
from samdesk.inference.models.registry import ModelSpec

__all__ = ["FrameMasks", "FrameSource", "ImageFileFrames", "SAM2VideoEngine", "VideoSession",
           "build_video_predictor", "load_video_engine"]


@dataclass(frozen=True)
class FrameMasks:
    """Every object's mask on one frame, as propagation yields them.

    ``masks``: obj_id -> ``(H, W)`` bool at the frame's size;
    ``object_scores``: obj_id -> the model's object score logit (> 0: the
    model thinks the object is on this frame).
    """

    frame: int
    masks: dict[int, np.ndarray]
    object_scores: dict[int, float]


def build_video_predictor(spec: ModelSpec, checkpoint: Path, device: torch.device,
                          image_size: int | None = None) -> torch.nn.Module:
    """``SAM2VideoPredictor`` for ``spec`` with the weights of ``checkpoint``, in eval mode.

    Built by ``sam2.build_sam.build_sam2_video_predictor`` (its default
    post-processing: multimask fallback, hole filling) on the CPU, loaded
    strictly from the official ``{"model": state}`` file, then moved to
    ``device``. ``image_size`` overrides the config's input side (1024).
    """
    from sam2.build_sam import build_sam2_video_predictor

    if spec.family != "sam2" or not spec.config:
        raise EngineError(f"{spec.name} is not a SAM 2 model: video propagation needs SAM 2 "
                          "or SAM 2.1")
    path = Path(checkpoint)
    state = read_sam2_state(spec, path)
    extra = [] if image_size is None else [f"++model.image_size={int(image_size)}"]
    with sam2_hydra(spec.config):
        model = build_sam2_video_predictor(spec.config, ckpt_path=None, device="cpu",
                                           mode="eval", hydra_overrides_extra=extra)
    load_weights(model, state, spec.name, path, "SAM 2")
    return model.to(device)


class SAM2VideoEngine:
    """SAM 2's video predictor behind samdesk's names; one :class:`VideoSession` per run.

    ``frame_cache``: preprocessed frames a session keeps (12 MB each at 1024:
    16 hold 200 MB; propagation reads each frame once, the cache serves
    prompts on frames visited again); ``offload_state``: keep the session's
    state on the CPU when the model is on a GPU; ``prefetch``: prepare the next frame on a helper
    thread while the model runs; ``trim_state``: drop the state of frames no
    later step can read (:func:`forget_far_frames`); ``image_size``: the
    model's input side, the config's when None.
    """

    def __init__(self, spec: ModelSpec, checkpoint: Path, device: str = "auto", *,
                 frame_cache: int = 16, offload_state: bool = True, prefetch: bool = True,
                 trim_state: bool = True, image_size: int | None = None) -> None:
        if frame_cache < 1:
            raise EngineError(f"frame cache must hold at least 1 frame, not {frame_cache}")
        self.model_id = spec.name
        self.device = resolve_device(device)
        self.frame_cache = int(frame_cache)
        self.offload_state = bool(offload_state)
        self.prefetch = bool(prefetch)
        self.trim_state = bool(trim_state)
        self.predictor = build_video_predictor(spec, checkpoint, self.device, image_size)

    def start(self, frames: FrameSource) -> VideoSession:
        """A fresh session over ``frames`` (reads frame 0 for the size)."""
        return VideoSession(self, frames)


def load_video_engine(spec: ModelSpec, checkpoint: Path | None,
                      device: str = "auto") -> SAM2VideoEngine:
    """The video engine of a SAM 2 model, from ``checkpoint`` or the installed file."""
    from samdesk.inference.engines import packages
    from samdesk.inference.models.checkpoints import resolve_checkpoint

    packages.require(spec.family)
    if spec.family != "sam2":
        raise EngineError(f"{spec.name} is not a SAM 2 model: video propagation needs SAM 2 "
                          "or SAM 2.1")
    if checkpoint is None:
        checkpoint = resolve_checkpoint(spec)
    return SAM2VideoEngine(spec, Path(checkpoint), device)


class VideoSession:
    """One propagation session: prompts on frames, then :meth:`propagate`.

    ``n_frames``, ``height``, ``width``: the sequence's length and frame size.
    ``frames`` is the lazy frame store (``frames.held`` <= ``frame_cache``).
    Not thread-safe: use a session on one thread.
    """

    def __init__(self, engine: SAM2VideoEngine, source: FrameSource) -> None:
        self._predictor = engine.predictor
        self._trim = engine.trim_state
        self._starts: set[int] = set()  # frames propagation started from, kept near
        device = engine.device
        self.frames = LazyFrames(source, self._predictor.image_size, device,
                                 cache=engine.frame_cache, prefetch=engine.prefetch)
        self.n_frames = len(self.frames)
        self.height, self.width = self.frames.height, self.frames.width
        storage = torch.device("cpu") if engine.offload_state else device
        self._state: dict | None = _inference_state(self.frames, device, storage)

    # -- prompts ----------------------------------------------------------------------------

    def add_prompt(self, frame: int, obj_id: int, *, points: np.ndarray | None = None,
                   labels: np.ndarray | None = None, box: np.ndarray | None = None
                   ) -> np.ndarray:
        """Prompt object ``obj_id`` on ``frame``; returns its ``(H, W)`` bool mask there.

        ``points`` ``(N, 2)`` float x, y frame pixels with ``labels`` ``(N,)``
        1 (object) / 0 (background); ``box`` ``(4,)`` XYXY pixels. They
        replace that object's earlier prompts on that frame.
        """
        state = self._open()
        frame, obj_id = self._frame(frame), _obj(obj_id)
        points, labels, box = _prompt_arrays(points, labels, box)
        _, obj_ids, masks = self._predictor.add_new_points_or_box(
            state, frame, obj_id, points=points, labels=labels, box=box)
        return _masks_of(obj_ids, masks)[obj_id]

    def add_mask(self, frame: int, obj_id: int, mask: np.ndarray) -> np.ndarray:
        """Start or correct ``obj_id`` on ``frame`` from a ``(H, W)`` mask (``add_new_mask``).

        An empty mask says the object is not on that frame. Returns the
        object's mask as the model now sees it, ``(H, W)`` bool.
        """
        state = self._open()
        frame, obj_id = self._frame(frame), _obj(obj_id)
        mask = np.asarray(mask)
        if mask.shape != (self.height, self.width):
            raise EngineError(f"mask for object {obj_id} on frame {frame} is "
                              f"{'x'.join(map(str, mask.shape[::-1]))} but the frames are "
                              f"{self.width}x{self.height}")
        _, obj_ids, masks = self._predictor.add_new_mask(state, frame, obj_id, mask != 0)
        return _masks_of(obj_ids, masks)[obj_id]

    # -- propagation ------------------------------------------------------------------------

    def propagate(self, start: int | None = None, *, reverse: bool = False,
                  max_frames: int | None = None,
                  cancelled: Callable[[], bool] = lambda: False) -> Iterator[FrameMasks]:
        """Carry every object from ``start`` forward (or backward with ``reverse``).

        ``start``: the first frame yielded (default: the earliest prompted
        frame); ``max_frames``: at most this many frames are yielded, the start
        frame included (default: to the end; a backward run from frame 0
        yields nothing, as the library does). Frames come in processing order;
        ``cancelled`` is asked before each frame and stops the run. Argument
        errors are raised here, before the first frame.
        """
        state = self._open()
        if start is not None:
            start = self._frame(start)
        if max_frames is not None and int(max_frames) < 0:
            raise EngineError(f"max_frames must be 0 or more, not {max_frames}")
        if not state["obj_ids"]:
            raise EngineError("no object has a prompt yet: give points, a box or a mask first")
        try:
            self._predictor.propagate_in_video_preflight(state)
        except RuntimeError as exc:
            raise EngineError(str(exc).strip().splitlines()[0]) from None
        widen_cond_memories(state)
        if max_frames is not None and int(max_frames) == 0:
            return iter(())
        track = None if max_frames is None else int(max_frames) - 1
        if start is not None:
            self._starts.add(start)
        return self._run(state, start, reverse, track, cancelled)

    def _run(self, state: dict, start: int | None, reverse: bool, track: int | None,
             cancelled: Callable[[], bool]) -> Iterator[FrameMasks]:
        frames = self._predictor.propagate_in_video(
            state, start_frame_idx=start, max_frame_num_to_track=track, reverse=reverse)
        try:
            first = True
            while not cancelled():
                try:
                    frame, obj_ids, masks = _quiet_next(frames) if first else next(frames)
                except StopIteration:
                    return
                first = False
                result = FrameMasks(frame, _masks_of(obj_ids, masks),
                                    _object_scores(state, frame))
                if self._trim:
                    forget_far_frames(state, frame, memory_reach(self._predictor),
                                      self._starts)
                yield result
        finally:
            frames.close()

    def close(self) -> None:
        """Free the state and the frames; later calls raise EngineError."""
        if self._state is not None:
            self._state.clear()
            self._state = None
            self.frames.close()
            release_memory(self.frames.device)

    def __enter__(self) -> VideoSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> dict:
        if self._state is None:
            raise EngineError("the video session is closed")
        return self._state

    def _frame(self, frame: int) -> int:
        index = int(frame)
        if not 0 <= index < self.n_frames:
            raise EngineError(f"frame {frame} is outside the sequence (0..{self.n_frames - 1})")
        return index


def _inference_state(frames: LazyFrames, device: torch.device, storage: torch.device) -> dict:
    """What ``SAM2VideoPredictor.init_state`` builds, over lazy frames.

    The same keys and containers; frame 0's features are not computed ahead
    (the stock warm-up), they are computed when a prompt or propagation needs
    them.
    """
    from collections import OrderedDict

    return {
        "images": frames,
        "num_frames": len(frames),
        "offload_video_to_cpu": frames.device.type == "cpu",
        "offload_state_to_cpu": storage.type == "cpu",
        "video_height": frames.height,
        "video_width": frames.width,
        "device": device,
        "storage_device": storage,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }


def widen_cond_memories(state: dict) -> None:
    """Hold the conditioning frames' memories in float32 (the same values) instead of bf16.

    The library stores every frame's memory in bf16 and relies on
    ``torch.cat`` promoting it to float32 next to the float32 object
    pointers. An object whose only prompt lies ahead of the frame being
    tracked (a second object first prompted on frame 3, tracked from frame 0)
    has no pointer to attend to, its memory stays bf16, and the float32
    memory attention fails ("mat1 and mat2 must have the same dtype") unless
    everything runs under bf16 autocast. Every frame attends to the
    conditioning frames, so widening those (a few tensors; bf16 -> float32 is
    exact) makes the concatenation float32 with the very numbers the library
    uses where it works.
    """
    for outputs in state["output_dict_per_obj"].values():
        for out in outputs["cond_frame_outputs"].values():
            memory = out.get("maskmem_features")
            if memory is not None and memory.dtype == torch.bfloat16:
                out["maskmem_features"] = memory.float()


def memory_reach(model: torch.nn.Module) -> int:
    """How many frames away from the frame being tracked the model reads state.

    Mask memories: the ``num_maskmem - 1`` previous frames, ``stride`` apart;
    object pointers: up to ``max_obj_ptrs_in_encoder - 1`` previous frames.
    """
    stride = max(int(model.memory_temporal_stride_for_eval), 1)
    return max(int(model.num_maskmem) * stride, int(model.max_obj_ptrs_in_encoder))


def forget_far_frames(state: dict, frame: int, reach: int, keep: Collection[int] = ()) -> int:
    """Drop the tracked (non-conditioning) outputs no later step can read; returns how many.

    Kept: every conditioning frame, and every frame within ``reach`` of
    ``frame`` (where tracking goes on), of any conditioning frame or of a
    frame in ``keep`` (the starts of this session's runs: where a new run
    starts, and where a backward run after a forward one reads the forward
    run's memories). A dropped frame is also no longer "tracked", so a prompt
    there later starts that object afresh on it. The one difference from the
    stock predictor: a later run started on another frame far from all of
    those reads no memories of its neighbours from the earlier run.
    """
    cond = sorted({t for outputs in state["output_dict_per_obj"].values()
                   for t in outputs["cond_frame_outputs"]} | set(keep))
    dropped = 0
    for obj_idx, outputs in state["output_dict_per_obj"].items():
        tracked = outputs["non_cond_frame_outputs"]
        for t in [t for t in tracked if abs(t - frame) > reach]:
            if all(abs(t - c) > reach for c in cond):
                del tracked[t]
                state["frames_tracked_per_obj"][obj_idx].pop(t, None)
                dropped += 1
    return dropped


_QUIET = threading.Lock()


def _quiet_next(frames: Iterator) -> tuple:
    """The library generator's first item, with its tqdm bar off.

    ``propagate_in_video`` wraps its frame order in ``tqdm`` on its first
    step; samdesk reports progress itself, so the bar would only be noise on
    the terminal of ``samdesk track``.
    """
    import sam2.sam2_video_predictor as library

    with _QUIET:
        bar = library.tqdm
        library.tqdm = functools.partial(bar, disable=True)
        try:
            return next(frames)
        finally:
            library.tqdm = bar


def _obj(obj_id: int) -> int:
    if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)):
        raise EngineError(f"object id must be an integer, not {obj_id!r}")
    return int(obj_id)


def _prompt_arrays(points: np.ndarray | None, labels: np.ndarray | None,
                   box: np.ndarray | None
                   ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Checked float32 points ``(N, 2)``, int32 labels ``(N,)``, float32 box ``(4,)``."""
    if points is None and box is None:
        raise EngineError("a prompt needs points or a box")
    if (points is None) != (labels is None):
        raise EngineError("points and labels go together: give both or neither")
    if points is not None:
        points = np.asarray(points, dtype=np.float32)
        labels = np.asarray(labels)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
            raise EngineError(f"points must be (N, 2) x, y pixels, got shape {points.shape}")
        if labels.shape != (len(points),):
            raise EngineError(f"labels must be ({len(points)},) for {len(points)} points, "
                              f"got shape {labels.shape}")
        if not np.isfinite(points).all():
            raise EngineError("points must be finite pixel coordinates")
        if not np.isin(labels, (0, 1)).all():
            raise EngineError("labels must be 1 (object) or 0 (background)")
        labels = labels.astype(np.int32)
    if box is not None:
        box = np.asarray(box, dtype=np.float32).reshape(-1)
        if box.shape != (4,) or not np.isfinite(box).all():
            raise EngineError("box must be 4 finite numbers x0, y0, x1, y1 in pixels")
    return points, labels, box


def _masks_of(obj_ids: list[int], masks: torch.Tensor) -> dict[int, np.ndarray]:
    """obj_id -> ``(H, W)`` bool from the predictor's ``(objects, 1, H, W)`` logits."""
    binary = (masks[:, 0] > 0.0).cpu().numpy()
    return {int(obj_id): binary[i] for i, obj_id in enumerate(obj_ids)}


def _object_scores(state: dict, frame: int) -> dict[int, float]:
    """obj_id -> the object score logit the predictor stored for ``frame``."""
    scores: dict[int, float] = {}
    for obj_idx, obj_id in state["obj_idx_to_id"].items():
        outputs = state["output_dict_per_obj"][obj_idx]
        out = outputs["cond_frame_outputs"].get(frame)
        if out is None:
            out = outputs["non_cond_frame_outputs"].get(frame)
        if out is not None and out.get("object_score_logits") is not None:
            scores[int(obj_id)] = float(out["object_score_logits"].reshape(-1)[0])
    return scores
