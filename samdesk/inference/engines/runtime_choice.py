"""Which runtime an engine's encoder runs: ``auto`` (the default everywhere) or a name the
person picked, and the probe that lets ``auto`` choose by measurement.

``auto``:

- on CUDA / MPS: torch (the engines' bf16 autocast where it holds parity);
- on a CPU: ONNX Runtime fp32 when, for this checkpoint, its masks matched
  torch fp32 under the parity rule (:mod:`samdesk.inference.runtimes.verdicts`)
  and it encoded faster on the probe; else torch, saying why in one line
  (``engine.runtime_note``). int8 is never picked by ``auto``.

The probe runs once per checkpoint (and runtime), when its graphs are first
made: a fixed synthetic textured image and a few prompts (a point, points
with negatives, a box, a refinement from the previous logits) through the
torch engine and the ONNX one, both encodes timed. The verdict is kept in
``probe.json`` beside the graphs, keyed by the same checkpoint hash, so later
starts read it instead of probing. A runtime the person picks (``onnx``,
``onnx-int8``) is probed too, so its measured accuracy cost can be shown.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

import samdesk.inference.runtimes.cache as cache  # `from runtimes import cache` is functools'
from samdesk.errors import EngineError
from samdesk.inference.engines import loading, packages
from samdesk.inference.engines.base import Point, Prompts
from samdesk.inference.models.checkpoints import resolve_checkpoint
from samdesk.inference.models.registry import get_spec
from samdesk.inference.runtimes import (
    ONNX,
    ONNX_INT8,
    PRECISION,
    RUNTIMES,
    TORCH,
    available,
    verdicts,
)
from samdesk.inference.runtimes.verdicts import Agreement, Verdict

if TYPE_CHECKING:
    from samdesk.inference.engines.upsample import Frame

AUTO = "auto"
CHOICES = (AUTO, *RUNTIMES)
"""Every ``--runtime`` a person may give, the default first."""
PROBE_SIZE = (480, 640)
"""``(H, W)`` of the probe image."""
PROBE_ROUNDS = 2
"""Timed encodes per runtime on the probe (interleaved; the fastest counts)."""

Progress = Callable[[int, int, str], None]
"""``progress(done, total, what)``: steps done of ``total`` in the phase named by ``what``."""

log = logging.getLogger(__name__)


ENV_VAR = "SAMDESK_RUNTIME"
"""The runtime used when none is given (``--runtime``, the Models dialog); unset: auto."""


def default_runtime() -> str:
    """``$SAMDESK_RUNTIME`` when set (checked), else ``auto``."""
    chosen = os.environ.get(ENV_VAR, "").strip()
    return check_choice(chosen, f"${ENV_VAR}") if chosen else AUTO


def check_choice(name: str, what: str = "--runtime") -> str:
    """``name`` if it is a runtime choice, else one :class:`EngineError` line naming ``what``."""
    if name not in CHOICES:
        raise EngineError(f"{what} {name}: unknown runtime; choose {', '.join(CHOICES)}")
    return name


def load_engine(name: str, checkpoint: Path | None = None, device: str = "auto",
                runtime: str | None = None, progress: Progress | None = None) -> Any:
    """``loading.load_model`` with the runtime chosen as the module says (``runtime``
    None: :func:`default_runtime`).

    The engine has ``runtime`` (what runs), ``runtime_note`` (why not what was
    asked, or ``""``) and ``runtime_reason`` (why ``auto`` chose it, or ``""``).
    Families without an exported encoder (GrabCut, detectors, server models)
    load as ever, in torch.
    """
    runtime = default_runtime() if runtime is None else check_choice(runtime)
    spec = get_spec(name)
    if spec.family not in loading.RUNTIME_FAMILIES:
        asked = TORCH if runtime == AUTO else runtime
        return _reasoned(loading.load_model(name, checkpoint, device, runtime=asked), "")
    packages.require(spec.family)
    if checkpoint is None and spec.needs_checkpoint:
        checkpoint = resolve_checkpoint(spec)
    from samdesk.inference.engines.device import resolve_device  # torch: only now

    where = resolve_device(device)
    if runtime == AUTO:
        return _load_auto(name, Path(checkpoint), str(where), spec, progress)
    engine = _load(name, checkpoint, str(where), runtime, progress)
    if runtime != TORCH and engine.runtime == runtime:
        folder = graph_folder(Path(checkpoint), spec.family, spec.config or "")
        if runtime not in verdicts.read_verdicts(folder):  # measure its cost once
            reference = _load(name, checkpoint, str(where), TORCH, None)
            _record(folder, probe(reference, engine, runtime, progress))
    return _reasoned(engine, "")


def graph_folder(checkpoint: Path, family: str, config: str) -> Path:
    """The cache folder of ``checkpoint``'s graphs (where the engines export them)."""
    from samdesk.inference import runtimes

    versions = getattr(runtimes, "graph_versions", None)
    if versions is not None:  # the runtimes' own key, when they name it
        return cache.model_folder(cache.checkpoint_digest(checkpoint), family, config,
                                  versions())
    import onnx
    import onnxruntime
    import torch

    from samdesk.inference.runtimes import onnx_export

    named = {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
             "torch": torch.__version__, "opset": str(onnx_export.OPSET)}
    return cache.model_folder(cache.checkpoint_digest(checkpoint), family, config, named)


def runtime_label(engine: Any) -> str:
    """What the engine's encoder runs, as a person reads it: ``Torch``, ``ONNX fp32``..."""
    return verdicts.label(getattr(engine, "runtime", TORCH))


def runtime_line(name: str, engine: Any) -> str:
    """One line for stderr: ``samdesk: NAME on cpu, runtime onnx (fp32)``, then the
    fallback note or ``auto``'s reason; ``""`` for an engine without a runtime (GrabCut,
    a server's model)."""
    if not hasattr(engine, "runtime"):
        return ""
    runtime = engine.runtime
    where = str(getattr(engine, "device", "cpu"))
    precision = f" ({PRECISION[runtime]})" if runtime in PRECISION else ""
    line = f"samdesk: {name} on {where}, runtime {runtime}{precision}"
    why = getattr(engine, "runtime_note", "") or getattr(engine, "runtime_reason", "")
    return f"{line}; {why}" if why else line


# -- auto ------------------------------------------------------------------


def auto_candidates() -> list[str]:
    """The exported runtimes ``auto`` may pick here: those at torch's precision (fp32)
    that this machine runs, in the runtimes' menu order."""
    from samdesk.inference import runtimes

    fp32 = getattr(runtimes, "FP32", (ONNX,))
    return [name for name in fp32 if name in available()]


def _load_auto(name: str, checkpoint: Path, device: str, spec: Any,
               progress: Progress | None) -> Any:
    if device.split(":")[0] != "cpu":
        return _reasoned(_load(name, checkpoint, device, TORCH, None),
                         f"auto: a GPU ({device}) keeps torch")
    candidates = auto_candidates()
    if not candidates:
        return _reasoned(_load(name, checkpoint, device, TORCH, None),
                         "auto: onnxruntime is not installed, so torch")
    folder = graph_folder(checkpoint, spec.family, spec.config or "")
    known = {r: v for r, v in verdicts.read_verdicts(folder).items() if r in candidates}
    loaded: dict[str, Any] = {}
    failures: list[str] = []
    reference = None
    for runtime in candidates:  # first use: export each and probe it against torch
        if runtime in known:
            continue
        engine = _load(name, checkpoint, device, runtime, progress)
        if engine.runtime != runtime:  # did not start: not a candidate this time
            failures.append(engine.runtime_note)
            continue
        if reference is None:
            reference = _load(name, checkpoint, device, TORCH, None)
        known[runtime] = probe(reference, engine, runtime, progress)
        _record(folder, known[runtime])
        if runtime != candidates[-1] or _best(known) != runtime:
            engine.close()  # one candidate alive at a time (ViT-B: GBs each): the chosen
            continue  # one loads again from its cache in seconds
        loaded[runtime] = engine
    best = _best(known)
    engine = loaded.pop(best, None) if best else None
    for other in loaded.values():
        other.close()
    if engine is None:
        engine = (reference if best is None and reference is not None
                  else _load(name, checkpoint, device, best or TORCH, progress))
    if best is None and not known and failures and not engine.runtime_note:
        engine._runtime_note = failures[0]  # why no exported runtime runs, as a fallback says
    return _decided(engine, best, [known[r] for r in candidates if r in known])


def _best(known: dict[str, Verdict]) -> str | None:
    """The fastest runtime whose probe matched torch and beat it; None: torch."""
    fit = [v for v in known.values() if v.matched and v.faster]
    return max(fit, key=lambda v: v.speedup).runtime if fit else None


def _decided(engine: Any, best: str | None, probed: list[Verdict]) -> Any:
    """``engine`` with the line saying why ``auto`` runs what it runs."""
    if best is not None:
        if engine.runtime != best:  # chosen, but it did not start: its note says why
            return _reasoned(engine, "")
        verdict = next(v for v in probed if v.runtime == best)
        return _reasoned(engine, f"auto: {verdicts.label(best)} matched torch on the probe "
                                 f"({verdict.cost()}) at {verdict.speedup:.2f}x torch's speed")
    whys = []
    for verdict in probed:
        if not verdict.matched:
            whys.append(f"{verdicts.label(verdict.runtime)} did not match torch on the probe "
                        f"({verdict.cost()}, {verdict.far} px far from the edge)")
        else:
            whys.append(f"{verdicts.label(verdict.runtime)} was not faster than torch on "
                        f"the probe ({verdict.speedup:.2f}x torch's speed)")
    if not whys:  # no runtime started: the engine's note (or the log) says why
        return _reasoned(engine, "")
    line = f"auto: {'; '.join(whys)}; using torch"
    engine._runtime_note = line  # RuntimeChoice's note: the line a fallback shows
    return _reasoned(engine, line)


def _reasoned(engine: Any, reason: str) -> Any:
    try:
        engine.runtime_reason = reason
    except AttributeError:  # an engine with fixed attributes: read with getattr(..., "")
        pass
    return engine


def _load(name: str, checkpoint: Path | None, device: str, runtime: str,
          progress: Progress | None) -> Any:
    chunks = None
    if progress is not None and runtime != TORCH:
        what = f"preparing {verdicts.label(runtime)} (exported on a checkpoint's first use)"

        def chunks(done: int, total: int) -> None:
            progress(done, total, what)
    return loading.load_model(name, checkpoint, device, runtime=runtime, progress=chunks)


def _record(folder: Path, verdict: Verdict) -> None:
    try:
        verdicts.write_verdict(folder, verdict)
    except OSError as exc:  # a read-only cache: the probe runs again next time, nothing lost
        log.warning("could not keep the runtime probe's verdict in %s: %s", folder, exc)
    log.info("probe %s: %s, %.2fx torch", verdict.runtime, verdict.cost(), verdict.speedup)


# -- the probe -------------------------------------------------------------


def probe_image(height: int = PROBE_SIZE[0], width: int = PROBE_SIZE[1]) -> np.ndarray:
    """A fixed ``(H, W, 3)`` uint8 RGB image: smooth colour blobs plus grain (seeded)."""
    rng = np.random.default_rng(15)
    coarse = rng.uniform(0, 255, size=(12, 16, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0, 12, size=(height, width, 1)).astype(np.float32)
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def probe_prompts(height: int, width: int) -> list[Prompts]:
    """The probe's prompts: a point, points with negatives, a box (image pixels)."""
    def pt(fx: float, fy: float, positive: bool = True) -> Point:
        return Point(fx * width, fy * height, positive)

    box = (0.2 * width, 0.15 * height, 0.7 * width, 0.6 * height)
    return [Prompts(points=(pt(0.3, 0.4),)),
            Prompts(points=(pt(0.3, 0.4), pt(0.62, 0.55), pt(0.5, 0.8, False))),
            Prompts(boxes=(box,))]


def timed_embed(engine: Any, image: np.ndarray) -> tuple[Any, float]:
    """``engine.embed(image)`` and its seconds."""
    start = time.perf_counter()
    embedding = engine.embed(image)
    return embedding, time.perf_counter() - start


def probe(reference: Any, candidate: Any, runtime: str,
          progress: Progress | None = None) -> Verdict:
    """Compare ``candidate`` (running ``runtime``) with the torch ``reference`` engine on
    the probe image and prompts; the masks by the parity rule, the encodes by time."""
    image = probe_image()
    height, width = image.shape[:2]
    seconds: dict[str, list[float]] = {TORCH: [], runtime: []}
    embeddings: dict[str, Any] = {}
    total = 2 * PROBE_ROUNDS + 1
    what = f"comparing {verdicts.label(runtime)} with torch (first use of this checkpoint)"
    step = 0
    for _ in range(PROBE_ROUNDS):
        for key, engine in ((TORCH, reference), (runtime, candidate)):
            if progress is not None:
                progress(step, total, what)
            embeddings[key], spent = timed_embed(engine, image)
            seconds[key].append(spent)
            step += 1
    if progress is not None:
        progress(step, total, what)
    agreement = Agreement()
    frame = reference.frame((height, width))
    ours_embedding, theirs_embedding = embeddings[runtime], embeddings[TORCH]
    for prompts in probe_prompts(height, width):
        _tally(agreement, candidate.predict(ours_embedding, prompts),
               reference.predict(theirs_embedding, prompts), frame)
    first, second = probe_prompts(height, width)[:2]
    refined = []
    for engine, embedding in ((candidate, ours_embedding), (reference, theirs_embedding)):
        previous = engine.predict(embedding, first)
        mask_input = previous.logits[0, int(previous.best()[0])][None]
        refined.append(engine.predict(embedding, second, mask_input, multimask=False))
    _tally(agreement, *refined, frame)
    if progress is not None:
        progress(total, total, what)
    return Verdict(runtime, agreement.iou, agreement.differing, agreement.far,
                   min(seconds[TORCH]), min(seconds[runtime]))


def _tally(agreement: Agreement, ours: Any, theirs: Any, frame: Frame) -> None:
    """Count every candidate mask of two predictions, torch's logits at full size."""
    a = np.asarray(ours.masks, bool).reshape(-1, *frame.image_size)
    b = np.asarray(theirs.masks, bool).reshape(-1, *frame.image_size)
    planes = np.asarray(theirs.logits).reshape(-1, *np.shape(theirs.logits)[-2:])
    for index, (one, other) in enumerate(zip(a, b, strict=True)):
        if np.array_equal(one, other):
            agreement.add(one, other, np.zeros(0), frame.threshold)
            continue
        agreement.add(one, other, full_logits(planes[index], frame), frame.threshold)


def full_logits(low: np.ndarray, frame: Frame) -> np.ndarray:
    """float32 ``(H, W)`` logits of one ``(256, 256)`` plane in image pixels, upsampled as
    the reference predictors do (SAM's padded square, SAM 2's stretched one)."""
    import torch
    import torch.nn.functional as F

    plane = torch.as_tensor(np.asarray(low, np.float32)).reshape(1, 1, *low.shape[-2:])
    if frame.crop is not None:
        plane = F.interpolate(plane, (frame.square, frame.square), mode="bilinear",
                              align_corners=False)[..., : frame.crop[0], : frame.crop[1]]
    full = F.interpolate(plane, frame.image_size, mode="bilinear", align_corners=False)
    return full[0, 0].numpy()


__all__ = ["AUTO", "CHOICES", "ENV_VAR", "ONNX_INT8", "TORCH", "check_choice",
           "default_runtime", "load_engine", "probe", "runtime_label", "runtime_line"]
