"""Benchmark 6: encoders on a GPU (bf16 autocast against the fp32 reference).

Runs only where CUDA is available: SAM ViT-H and SAM 2.1 hiera-large encode
time under samdesk's bf16 autocast against the reference predictor's fp32
``set_image``, and the peak GPU memory. Without a GPU it prints one line
saying it was skipped and why.
"""

from __future__ import annotations

import time

from bench.common import Emit, Result, median, sam_checkpoint


def run(quick: bool, emit: Emit) -> None:
    import torch

    if not torch.cuda.is_available():
        emit(Result("gpu.encoders", {}, None, None,
                    skipped="no CUDA GPU on this machine (no GPU was lent to this run)"))
        return
    from segment_anything import SamPredictor

    from samdesk.inference.engines.loading import load_model
    from tests.model_factories import textured_image

    calls = 3 if quick else 10
    rgb = textured_image(3000, 4000, 1)
    engine = load_model("sam_vit_h", sam_checkpoint("vit_h"), "cuda")
    reference = SamPredictor(engine.model)
    ours, ref = [], []
    for _ in range(calls + 1):
        torch.cuda.synchronize()
        start = time.perf_counter()
        engine.embed(rgb)
        torch.cuda.synchronize()
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference.set_image(rgb)
        torch.cuda.synchronize()
        ref.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30
    emit(Result("gpu.sam_vit_h_encode", {
        "bf16_ms": round(1000 * median(ours[1:]), 1), "fp32_ms": round(1000 * median(ref[1:]), 1),
        "peak_gib": round(peak, 2), "device": torch.cuda.get_device_name(0)},
        median(ours[1:]) / median(ref[1:]), None, "samdesk bf16 encode vs SamPredictor fp32"))
