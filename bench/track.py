"""Benchmark 8: propagating through 1080p frames with SAM 2.1 tiny (seeded random weights).

- ``track.per_frame``: the cost of one propagated frame, samdesk's
  :class:`VideoSession` (frames decoded and preprocessed lazily, as the model
  reaches them) against the stock ``SAM2VideoPredictor`` (every frame loaded by
  ``init_state`` beforehand, not counted), on the same JPEG frames, one
  object prompted by a point on frame 0. The two propagations run in
  lockstep in this process, frame by frame, so load from elsewhere falls on
  both; samdesk's prefetch thread is off here, so its decoding is charged to
  its own frame (the shipped engine does it while the model runs). Median
  over the frames after the prompted one; target 1.15. ``differing_px``
  counts mask pixels that differ between the two (0 expected).
- ``track.peak_rss``: peak resident memory of a child process that runs the
  whole sequence through samdesk's engine (``ru_maxrss``), and what it comes
  to at 1,000 frames (the peak measured plus the per-frame growth of the
  resident set after the first frames, times the frames left); ratio against
  the issue's 4 GB. ``track.stock_rss``: the stock predictor in a child of
  its own, which loads every frame in ``init_state`` and propagates the first
  12 (extrapolated the same way, plus one ``3 x 1024 x 1024`` float32 frame
  each); ratio: samdesk's peak over the stock one on the same frames.

``--quick``: 5 frames for the cost, 60 for the memory (the resident set
settles after about 34: a full frame cache and the trimmed state's bound). Run alone:
``python bench/track.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, Emit, Result, median, print_result, sam2_checkpoint, work_dir

MODEL = "sam2.1_hiera_tiny"
HEIGHT, WIDTH = 1080, 1920
TARGET_FRAMES = 1000
TARGET_GB = 4.0
POINT = ((WIDTH // 4, HEIGHT // 2),)
"""The click: on the moving disc's first position (see ``make_frame_folder``)."""


def frame_folder(count: int) -> list[Path]:
    """``count`` 1080p JPEG frames, made once and kept in the bench folder."""
    from tests.model_factories import make_frame_folder

    folder = work_dir() / f"track_{WIDTH}x{HEIGHT}_{count}"
    paths = [folder / f"{i:05d}.jpg" for i in range(count)]
    if not all(p.exists() for p in paths):
        make_frame_folder(folder, count, HEIGHT, WIDTH)
    return paths


def _engine(prefetch: bool = True):
    from samdesk.inference.engines.sam2_video import SAM2VideoEngine
    from samdesk.inference.models.registry import get_spec

    return SAM2VideoEngine(get_spec(MODEL), sam2_checkpoint(), "auto", prefetch=prefetch)


def _stock(device: str):
    from sam2.build_sam import build_sam2_video_predictor

    from samdesk.inference.engines.sam2 import sam2_hydra
    from samdesk.inference.models.registry import get_spec

    config = get_spec(MODEL).config
    with sam2_hydra(config):
        return build_sam2_video_predictor(config, ckpt_path=str(sam2_checkpoint()),
                                          device=device)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def per_frame(count: int) -> Result:
    """Lockstep propagation, samdesk vs stock, timing each frame of each."""
    import numpy as np

    from samdesk.inference.engines.sam2_video import ImageFileFrames

    paths = frame_folder(count)
    engine = _engine(prefetch=False)
    stock = _stock(str(engine.device))
    points, labels = np.array(POINT, np.float32), np.array([1], np.int32)
    start = time.perf_counter()
    state = stock.init_state(str(paths[0].parent))
    stock.add_new_points_or_box(state, 0, 1, points=points, labels=labels)
    stock_init = time.perf_counter() - start
    start = time.perf_counter()
    session = engine.start(ImageFileFrames(paths))
    session.add_prompt(0, 1, points=points, labels=labels)
    ours_init = time.perf_counter() - start
    theirs, mine = stock.propagate_in_video(state), session.propagate()
    stock_s, ours_s, differing = [], [], 0
    for _ in range(count):
        start = time.perf_counter()
        _, _, masks = next(theirs)
        ref = (masks[0, 0] > 0).cpu().numpy()
        _sync(engine.device)
        stock_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        frame = next(mine)
        _sync(engine.device)
        ours_s.append(time.perf_counter() - start)
        differing += int(np.count_nonzero(frame.masks[1] != ref))
    session.close()
    ours_ms, stock_ms = 1000 * median(ours_s[1:]), 1000 * median(stock_s[1:])
    return Result("track.per_frame", {
        "frames": count, "size": f"{WIDTH}x{HEIGHT}", "device": engine.device.type,
        "ours_ms": round(ours_ms, 1), "stock_ms": round(stock_ms, 1),
        "ours_start_s": round(ours_init, 2), "stock_init_state_s": round(stock_init, 2),
        "differing_px": differing},
        ours_ms / stock_ms, 1.15, "VideoSession.propagate vs SAM2VideoPredictor, lockstep")


def _rss_now() -> int:
    """Resident bytes now (Linux /proc; ``psutil`` elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            import os

            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return int(psutil.Process().memory_info().rss)


def _peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux: KiB


def child(variant: str, count: int, steps: int | None = None) -> dict:
    """Open ``count`` frames and propagate ``steps`` of them (all when None) in this
    process; resident memory figures (bytes)."""
    import numpy as np

    from samdesk.inference.engines.sam2_video import ImageFileFrames

    paths = frame_folder(count)
    points, labels = np.array(POINT, np.float32), np.array([1], np.int32)
    if variant == "ours":
        engine = _engine()
        model_rss = _rss_now()
        session = engine.start(ImageFileFrames(paths))
        session.add_prompt(0, 1, points=points, labels=labels)
        frames = (fm.masks[1] for fm in session.propagate(max_frames=steps))
    else:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        stock = _stock(device)
        model_rss = _rss_now()
        state = stock.init_state(str(paths[0].parent), offload_video_to_cpu=True,
                                 offload_state_to_cpu=True)
        stock.add_new_points_or_box(state, 0, 1, points=points, labels=labels)
        track = None if steps is None else steps - 1
        frames = ((m[0, 0] > 0).cpu().numpy()
                  for _, _, m in stock.propagate_in_video(state, max_frame_num_to_track=track))
    samples = []
    start = time.perf_counter()
    for mask in frames:
        del mask
        samples.append(_rss_now())
    return {"variant": variant, "frames": count, "steps": len(samples), "model_rss": model_rss,
            "peak_rss": _peak_rss(), "samples": samples,
            "seconds": round(time.perf_counter() - start, 1)}


def _run_child(variant: str, count: int, steps: int | None = None) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", variant,
               "--frames", str(count)]
    if steps is not None:
        command += ["--steps", str(steps)]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"track child {variant} failed ({out.returncode}): {tail}")
    (work_dir() / f"track_child_{variant}_{count}.json").write_text(lines[-1])  # samples
    return json.loads(lines[-1])


def _extrapolate(figures: dict, extra_per_frame: float = 0.0, settled: int = 4
                 ) -> tuple[float, float]:
    """(peak bytes at TARGET_FRAMES, growth bytes per frame) from a child's samples.

    The growth is the slope of a least-squares line through the resident set
    after each frame, from sample ``settled`` on (for samdesk's engine: once
    its frame cache is full and its trimmed state has reached its bound,
    neither of which it passes); a line, because a frame's transient buffers
    move the resident set up and down by about 100 MB.
    """
    import numpy as np

    samples, count = figures["samples"], figures["frames"]
    first = min(settled, len(samples) - 2)
    tail = np.asarray(samples[first:], dtype=np.float64)
    slope = float(np.polyfit(np.arange(len(tail)), tail, 1)[0]) if len(tail) > 1 else 0.0
    growth = max(slope, 0.0) + extra_per_frame
    return figures["peak_rss"] + growth * max(TARGET_FRAMES - count, 0), growth


def _frame_cache() -> int:
    import inspect

    from samdesk.inference.engines.sam2_video import SAM2VideoEngine

    return int(inspect.signature(SAM2VideoEngine).parameters["frame_cache"].default)


def _reach() -> int:
    """SAM 2.1's memory reach in frames (``memory_reach``: 16 for every size)."""
    return 16


def memory(count: int, stock_steps: int = 12) -> list[Result]:
    """Peak RSS of ``count`` frames through samdesk's engine, and of the stock predictor
    with all ``count`` frames loaded and the first ``stock_steps`` propagated (its
    peak is the frames ``init_state`` holds; propagating the rest only adds time)."""
    ours = _run_child("ours", count)
    stock = _run_child("stock", count, min(stock_steps, count))
    gb = 2**30
    settled = max(_frame_cache(), 2 * _reach()) + 2
    ours_at, ours_growth = _extrapolate(ours, settled=settled)
    frame_bytes = 3 * 1024 * 1024 * 4
    stock_at, stock_growth = _extrapolate(stock, frame_bytes)
    figures = {"frames": count, "size": f"{WIDTH}x{HEIGHT}"}
    return [
        Result("track.peak_rss", {
            **figures, "model_gb": round(ours["model_rss"] / gb, 2),
            "peak_gb": round(ours["peak_rss"] / gb, 2),
            "growth_kb_per_frame": round(ours_growth / 1024, 1),
            f"at_{TARGET_FRAMES}_frames_gb": round(ours_at / gb, 2),
            "propagate_s": ours["seconds"]},
            ours_at / gb / TARGET_GB, 1.0,
            f"VideoSession peak RSS extrapolated to {TARGET_FRAMES} frames / {TARGET_GB:g} GB"),
        Result("track.stock_rss", {
            **figures, "propagated": stock["steps"], "peak_gb": round(stock["peak_rss"] / gb, 2),
            "growth_kb_per_frame": round(stock_growth / 1024, 1),
            f"at_{TARGET_FRAMES}_frames_gb": round(stock_at / gb, 2),
            "propagate_s": stock["seconds"]},
            ours["peak_rss"] / stock["peak_rss"], None,
            "ours / stock peak RSS at the frames run (stock init_state, frames on CPU)"),
    ]


def run(quick: bool, emit: Emit) -> None:
    import torch

    cuda = torch.cuda.is_available()
    emit(per_frame(5 if quick else 16))
    for result in memory(60 if quick else (TARGET_FRAMES if cuda else 120)):
        emit(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", choices=("ours", "stock"), help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=40, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.frames, args.steps)), flush=True)
        return 0
    run(args.quick, print_result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
