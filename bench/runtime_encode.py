"""Encoder runtimes: torch vs ONNX Runtime (fp32, int8) vs OpenVINO (fp32, bf16), one process.

For SAM 2.1 tiny and SAM ViT-B (seeded random weights, the official file
formats), on the 4000 x 3000 test photo, one runtime at a time beside torch
(never two big exported models alive at once): its first load (the ONNX
export, or OpenVINO's compile with its cache folder emptied first, both
cached by the checkpoint's hash) and the second (the cache found), then
encodes interleaved round by round with torch's (median of ``--rounds``), and
the best mask of one click against torch's (pixels differing, IoU).
``--runtimes`` picks which (default: every one this machine runs).
``--arena`` adds sessions that keep ONNX Runtime's CPU arena (measured on
SAM 2.1 tiny: 7.3 GB resident after an encode against 1.7 GB without, no
faster; with ViT-B it ran a 24 GB machine out of memory).
Peak RSS of one encode per runtime, and RSS once the engine is closed, are
read in a fresh process each (``--rss``), since a process's peak only grows.

Run: ``python bench/runtime_encode.py [--models sam2.1_hiera_tiny,sam_vit_b]
[--rounds 3]``; prints one JSON line per model and one per RSS reading.
Exports land in ``$SAMDESK_RUNTIME_CACHE`` (default: the bench work folder).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import interleaved, sam2_checkpoint, sam_checkpoint, work_dir  # noqa: E402

CHECKPOINTS = {"sam2.1_hiera_tiny": sam2_checkpoint, "sam_vit_b": sam_checkpoint}
IMAGE = (3000, 4000, 1)  # height, width, seed: tests.model_factories.IMAGES["4000x3000"]


def _image() -> Any:
    from tests.model_factories import textured_image

    return textured_image(*IMAGE)


def _best_mask(engine: Any, embedding: Any) -> Any:
    from tests.model_factories import prompt_case

    prediction = engine.predict(embedding, prompt_case("one_point", *IMAGE[:2]))
    return prediction.masks[0, int(prediction.best()[0])]


def _load(name: str, runtime: str) -> tuple[Any, float]:
    from samdesk.inference.engines import loading

    start = time.perf_counter()
    engine = loading.load_model(name, CHECKPOINTS[name](), "cpu", runtime=runtime)
    if engine.runtime != runtime:
        raise SystemExit(f"{name}: {runtime} did not start: {engine.runtime_note}")
    return engine, time.perf_counter() - start


def _forget_compiled(name: str, runtime: str) -> None:
    """Empty OpenVINO's compiled-model folder of ``name`` at ``runtime``'s precision, so
    the first load measures the compile."""
    import shutil

    from samdesk.inference.models.registry import get_spec
    from samdesk.inference.runtimes import PRECISION, graph_versions, openvino_encoder
    from samdesk.inference.runtimes.cache import checkpoint_digest, model_folder

    spec = get_spec(name)
    folder = model_folder(checkpoint_digest(CHECKPOINTS[name]()), spec.family,
                          spec.config or "", graph_versions())
    shutil.rmtree(openvino_encoder.cache_dir(folder, PRECISION[runtime]), ignore_errors=True)


def compare(name: str, rounds: int, arena: bool, runtimes: tuple[str, ...] | None = None,
            forget_compiled: bool = True) -> dict[str, Any]:
    """Load times, encode times interleaved with torch's and mask agreement of each runtime
    for ``name`` (one exported runtime alive at a time); ``forget_compiled``: empty
    OpenVINO's cache first, so the first load is a compile."""
    import numpy as np

    from samdesk.inference.runtimes import available, onnx_encoder

    image = _image()
    torch_engine, _ = _load(name, "torch")
    chosen = [r for r in (runtimes or available()) if r != "torch"]
    if arena:
        chosen.append("onnx+arena")
    reference = _best_mask(torch_engine, torch_engine.embed(image))
    line: dict[str, Any] = {"name": f"runtime_encode_{name}", "rounds": rounds,
                            "mask_pixels": int(reference.sum())}
    torch_ms: list[float] = []
    for variant in chosen:
        runtime = variant.removesuffix("+arena")
        onnx_encoder.MEMORY_ARENA = variant.endswith("+arena")
        key = variant.replace("+", "_")
        if runtime.startswith("openvino") and forget_compiled:
            _forget_compiled(name, runtime)
        first, line[f"{key}_first_load_s"] = _load(name, runtime)  # exports / compiles
        first.close()
        del first  # never two copies of the weights alive longer than needed
        engine, line[f"{key}_cached_load_s"] = _load(name, runtime)
        embeddings: dict[str, Any] = {}
        timings = _pair(torch_engine, engine, image, rounds, embeddings)
        torch_ms.append(timings.median_ms("torch"))
        line[f"{key}_torch_ms"] = round(torch_ms[-1], 1)  # torch's, in the same rounds
        line[f"{key}_ms"] = round(timings.median_ms("runtime"), 1)
        line[f"{key}_ratio"] = round(timings.median_ms("runtime") / timings.median_ms("torch"),
                                     3)
        mask = _best_mask(engine, embeddings["runtime"])
        union = int(np.count_nonzero(mask | reference))
        line[f"{key}_pixels_differing"] = int(np.count_nonzero(mask ^ reference))
        line[f"{key}_iou"] = round(int(np.count_nonzero(mask & reference)) / max(union, 1), 6)
        engine.close()
        del engine
        onnx_encoder.MEMORY_ARENA = False
    if torch_ms:
        line["torch_ms"] = round(sorted(torch_ms)[len(torch_ms) // 2], 1)
    torch_engine.close()
    return line


def _pair(torch_engine: Any, engine: Any, image: Any, rounds: int,
          embeddings: dict[str, Any]) -> Any:
    """Encodes of torch and ``engine`` interleaved (``runtime``'s embedding kept)."""
    return interleaved({"torch": lambda: torch_engine.embed(image),
                        "runtime": lambda: embeddings.__setitem__("runtime",
                                                                  engine.embed(image))},
                       rounds, warmup=1)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    with open("/proc/self/status") as fh:
        line = next(line for line in fh if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def rss(name: str, runtime: str) -> dict[str, Any]:
    """Peak RSS of one encode with ``runtime`` (graphs cached), and RSS once it is closed."""
    from samdesk.inference.runtimes import onnx_encoder

    arena = runtime.endswith("+arena")
    onnx_encoder.MEMORY_ARENA = arena  # OpenVINO: compiled models from the cache
    runtime = runtime.removesuffix("+arena")
    image = _image()
    before = _rss_mb()
    engine, _ = _load(name, runtime)
    engine.embed(image)
    engine.embed(image)
    peak = _peak_mb()  # ru_maxrss would carry the parent's peak across exec
    after_encode = _rss_mb()
    engine.close()
    del engine
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return {"name": f"runtime_rss_{name}", "runtime": runtime, "arena": arena,
            "before_load_mb": round(before), "peak_mb": round(peak),
            "after_encode_mb": round(after_encode), "after_close_mb": round(_rss_mb())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(CHECKPOINTS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--arena", action="store_true",
                        help="also time and measure sessions with ONNX Runtime's CPU arena")
    parser.add_argument("--runtimes", help="comma-separated (default: every one available)")
    parser.add_argument("--rss", nargs=2, metavar=("MODEL", "RUNTIME"),
                        help="(internal) one RSS reading in this process")
    args = parser.parse_args()
    os.environ.setdefault("SAMDESK_RUNTIME_CACHE", str(work_dir() / "runtimes"))
    if args.rss:
        print(json.dumps(rss(*args.rss)), flush=True)
        return
    from samdesk.inference.runtimes import available

    chosen = tuple(args.runtimes.split(",")) if args.runtimes else tuple(available())
    for name in args.models.split(","):
        print(json.dumps(compare(name, args.rounds, args.arena, chosen)), flush=True)
        runtimes = ("torch", *(r for r in chosen if r != "torch"),
                    *(("onnx+arena",) if args.arena else ()))
        for runtime in runtimes:
            subprocess.run([sys.executable, __file__, "--rss", name, runtime], check=True)


if __name__ == "__main__":
    main()
