"""CPU encoder runtimes vs torch, for ``bench/run.py`` (``--only runtime``).

A short version of ``bench/runtime_encode.py``: SAM 2.1 tiny (``--quick``;
ViT-B too otherwise) on the 4000 x 3000 photo, each runtime's encode
interleaved with torch's, the best mask of one click against torch's. One
line per runtime (ratio: its encode time / torch's), then the two targets:

- ``runtime_default_<model>``: the fastest fp32 runtime whose mask keeps IoU
  >= 0.999 with torch's (what ``--runtime auto`` picks when its probe agrees):
  ratio <= 0.6;
- ``runtime_reduced_<model>``: the fastest reduced precision one (bf16, int8)
  with IoU >= 0.995: ratio <= 0.3, its differing pixels and IoU printed.

The quick run reuses compiled models from earlier runs (a first OpenVINO
compile of SAM 2 takes minutes); the full run measures the first compile.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.common import Result, work_dir  # noqa: E402

DEFAULT_TARGET = 0.6
REDUCED_TARGET = 0.3
FP32_MIN_IOU = 0.999
REDUCED_MIN_IOU = 0.995
REDUCED = ("onnx-int8", "openvino-bf16")

Emit = Callable[[Result], None]


def lines(model: str, measured: dict) -> list[Result]:
    """The benchmark lines of one ``runtime_encode.compare`` result."""
    from samdesk.inference.runtimes import RUNTIMES

    results: list[Result] = []
    best: dict[str, tuple[float, str] | None] = {"default": None, "reduced": None}
    for runtime in RUNTIMES:
        key = runtime.replace("+", "_")
        if f"{key}_ratio" not in measured:
            continue
        ratio, iou = measured[f"{key}_ratio"], measured[f"{key}_iou"]
        reduced = runtime in REDUCED
        figures = {"ms": measured[f"{key}_ms"], "torch_ms": measured[f"{key}_torch_ms"],
                   "pixels_differing": measured[f"{key}_pixels_differing"], "iou": iou,
                   "first_load_s": measured[f"{key}_first_load_s"],
                   "cached_load_s": measured[f"{key}_cached_load_s"]}
        results.append(Result(f"runtime_{model}_{runtime}", figures, ratio,
                              REDUCED_TARGET if reduced else DEFAULT_TARGET,
                              f"encode vs torch's, interleaved; mask of "
                              f"{measured['mask_pixels']} px"))
        kind = "reduced" if reduced else "default"
        if iou >= (REDUCED_MIN_IOU if reduced else FP32_MIN_IOU) and (
                best[kind] is None or ratio < best[kind][0]):
            best[kind] = (ratio, runtime)
    for kind, target in (("default", DEFAULT_TARGET), ("reduced", REDUCED_TARGET)):
        chosen = best[kind]
        name = f"runtime_{kind}_{model}"
        if chosen is None:
            results.append(Result(name, {}, None, target, skipped="no runtime kept the IoU"))
            continue
        key = chosen[1]
        results.append(Result(name, {"runtime": key,
                                     "pixels_differing": measured[f"{key}_pixels_differing"],
                                     "iou": measured[f"{key}_iou"]}, chosen[0], target,
                              f"fastest {'bf16/int8' if kind == 'reduced' else 'fp32'} "
                              f"runtime with IoU >= "
                              f"{REDUCED_MIN_IOU if kind == 'reduced' else FP32_MIN_IOU}"))
    return results


def run(quick: bool, emit: Emit) -> None:
    import runtime_encode  # bench/ is on the path (above)

    os.environ.setdefault("SAMDESK_RUNTIME_CACHE", str(work_dir() / "runtimes"))
    models = ("sam2.1_hiera_tiny",) if quick else ("sam2.1_hiera_tiny", "sam_vit_b")
    for model in models:
        measured = runtime_encode.compare(model, 2 if quick else 3, False,
                                          forget_compiled=not quick)
        for result in lines(model, measured):
            emit(result)
