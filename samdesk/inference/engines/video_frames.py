"""Video frames for SAM 2's video predictor, decoded and preprocessed only when asked.

The stock ``SAM2VideoPredictor.init_state`` loads every frame of a video into
one ``(frames, 3, 1024, 1024)`` float32 tensor (12 GB for 1,000 frames). Here
the predictor's ``inference_state["images"]`` is a :class:`LazyFrames`: an
indexable object that asks a :class:`FrameSource` for one frame, preprocesses
it exactly as ``sam2.utils.misc._load_img_as_tensor`` and
``load_video_frames_from_jpg_images`` do (so the masks are pixel-equal), and
keeps at most ``cache`` preprocessed frames (least recently used goes first).
While the model works on frame ``t`` the next frame in the direction of travel
is prepared on a helper thread.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from samdesk.images import load_rgb
from samdesk.inference.engines.base import EngineError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
"""The ImageNet mean / std ``load_video_frames`` normalises with."""


@runtime_checkable
class FrameSource(Protocol):
    """The frames of one sequence, in order; Qt-free and torch-free callers give this.

    ``rgb(index)`` returns frame ``index`` (0-based) as ``(H, W, 3)`` uint8 RGB,
    upright; every frame has one size. It may be called from a helper
    thread, never from two threads at once.
    """

    def __len__(self) -> int: ...

    def rgb(self, index: int) -> np.ndarray: ...


class ImageFileFrames:
    """A :class:`FrameSource` over image files (samdesk's decoder: EXIF upright, RGB8)."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        self.paths = tuple(Path(p) for p in paths)

    def __len__(self) -> int:
        return len(self.paths)

    def rgb(self, index: int) -> np.ndarray:
        """Frame ``index`` decoded by :func:`samdesk.images.load_rgb`."""
        return load_rgb(self.paths[index])


def preprocess(rgb: np.ndarray, image_size: int) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, S, S)`` float32, normalised, as the stock loader.

    PIL's default ``resize`` to ``S x S`` (aspect not kept), ``/ 255.0`` in
    float64, cast to float32, then ``-= mean`` and ``/= std`` in float32: the
    same operations in the same order as ``load_video_frames_from_jpg_images``.
    """
    resized = np.array(Image.fromarray(np.ascontiguousarray(rgb)).resize((image_size, image_size)))
    img = torch.from_numpy(resized / 255.0).permute(2, 0, 1).to(torch.float32)
    img -= torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
    img /= torch.tensor(STD, dtype=torch.float32)[:, None, None]
    return img


class LazyFrames:
    """``inference_state["images"]`` that preprocesses frames on demand.

    ``lazy[i]`` is frame ``i`` as a ``(3, S, S)`` float32 tensor on ``device``.
    At most ``cache`` frames are kept (:attr:`cached` says which); a frame
    being prepared ahead counts against that bound. Frames of another size
    than frame 0's (``height`` x ``width``) raise one :class:`EngineError`.
    """

    def __init__(self, source: FrameSource, image_size: int, device: torch.device, *,
                 cache: int = 16, prefetch: bool = True) -> None:
        if cache < 1:
            raise EngineError(f"frame cache must hold at least 1 frame, not {cache}")
        self.source = source
        self.image_size = int(image_size)
        self.device = device
        self.cache = int(cache)
        self._count = len(source)
        if self._count == 0:
            raise EngineError("the sequence has no frames")
        self._frames: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()  # guards _frames and _ahead
        self._source_lock = threading.Lock()  # one source.rgb call at a time
        self._ahead: tuple[int, Future[torch.Tensor]] | None = None
        self._pool = (ThreadPoolExecutor(1, thread_name_prefix="samdesk-frames")
                      if prefetch and cache > 1 else None)
        self._last: int | None = None
        first = self._read(0)
        self.height, self.width = int(first.shape[0]), int(first.shape[1])
        self._store(0, self._prepare(0, first))

    def __len__(self) -> int:
        return self._count

    @property
    def cached(self) -> list[int]:
        """Indices of the frames held now, least recently used first."""
        with self._lock:
            return list(self._frames)

    @property
    def held(self) -> int:
        """Frames held now, counting one being prepared ahead."""
        with self._lock:
            return len(self._frames) + (self._ahead is not None)

    def __getitem__(self, index: int) -> torch.Tensor:
        index = int(index)
        if not 0 <= index < self._count:
            raise IndexError(f"frame {index} is outside 0..{self._count - 1}")
        with self._lock:
            frame = self._frames.get(index)
            if frame is not None:
                self._frames.move_to_end(index)
            ahead, self._ahead = self._ahead, None  # a frame ahead not asked for is dropped
            if ahead is not None and (frame is not None or ahead[0] != index):
                ahead[1].cancel()
                ahead = None
        if frame is None:
            if ahead is not None:
                frame = ahead[1].result()  # re-raises the helper thread's error
            else:
                frame = self._prepare(index, self._read(index))
            self._store(index, frame)
        self._look_ahead(index)
        return frame

    def _read(self, index: int) -> np.ndarray:
        with self._source_lock:
            rgb = self.source.rgb(index)
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 \
                or rgb.dtype != np.uint8:
            got = (f"{rgb.shape} {rgb.dtype}" if isinstance(rgb, np.ndarray)
                   else type(rgb).__name__)
            raise EngineError(f"frame {index} is not (H, W, 3) uint8 RGB: {got}")
        return rgb

    def _prepare(self, index: int, rgb: np.ndarray) -> torch.Tensor:
        if index and rgb.shape[:2] != (self.height, self.width):
            raise EngineError(
                f"frame {index} is {rgb.shape[1]}x{rgb.shape[0]} pixels but frame 0 is "
                f"{self.width}x{self.height}: all frames of a sequence must be one size")
        return preprocess(rgb, self.image_size).to(self.device)

    def _store(self, index: int, frame: torch.Tensor) -> None:
        with self._lock:
            self._frames[index] = frame
            self._frames.move_to_end(index)
            self._trim()

    def _trim(self) -> None:
        room = self.cache - (self._ahead is not None)
        while len(self._frames) > max(room, 0):
            self._frames.popitem(last=False)

    def _look_ahead(self, index: int) -> None:
        """Prepare the next frame in the direction the last two requests went."""
        last, self._last = self._last, index
        if self._pool is None or last is None or abs(index - last) != 1:
            return
        target = index + (index - last)
        if not 0 <= target < self._count:
            return
        with self._lock:
            if target in self._frames or self._ahead is not None:
                return
            future = self._pool.submit(lambda: self._prepare(target, self._read(target)))
            self._ahead = (target, future)
            self._trim()

    def close(self) -> None:
        """Drop every held frame and stop the helper thread."""
        with self._lock:
            self._frames.clear()
            self._ahead = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
