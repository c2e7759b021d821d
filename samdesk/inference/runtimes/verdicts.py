"""The probe's verdict on an ONNX runtime for one checkpoint: how its masks and speed compare
with torch fp32, kept beside that checkpoint's graphs.

The runtime-side copy of the mask parity rule (the tests keep theirs in
``tests/mask_compare.py``): two masks of one object agree when their IoU is
at least :data:`MIN_IOU` and every pixel where they differ has a torch logit
within :data:`LOGIT_TOL` of the threshold (a pixel a hair from the edge may
fall either way; one deep inside may not).

A verdict is written as ``probe.json`` in the checkpoint's graph folder
(:func:`samdesk.inference.runtimes.cache.model_folder`), one entry per runtime
probed, so the same checkpoint hash that names the graphs names the verdict.
:func:`known_verdicts` finds it again without hashing the checkpoint or
importing torch (the Models dialog reads it on the GUI thread).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import samdesk.inference.runtimes.cache as cache  # not `from ... import cache`: functools'
from samdesk.inference.runtimes import ENGINE, PRECISION

PROBE_FILE = "probe.json"
PROBE_VERSION = 1
"""Bumped when the probe's image, prompts or rule change: older verdicts are probed again."""
MIN_IOU = 0.999
"""A probe mask's IoU with torch's must be at least this."""
LOGIT_TOL = 1e-3
"""A pixel may differ from torch's mask only where torch's logit is this close to the
threshold. Wider than the tests' 1e-4 (tiny random models): a full-size encoder in fp32
moves logits by up to ~1e-3, and a differing pixel's logit is never farther from the
threshold than that difference."""


@dataclass(frozen=True)
class Verdict:
    """How ``runtime``'s masks and encode time compared with torch fp32 on the probe.

    ``iou``: the lowest IoU over every probe mask; ``differing``: pixels that
    differ, summed over them; ``far``: differing pixels whose logit is not
    near the threshold; ``torch_s`` / ``runtime_s``: seconds of one encode.
    """

    runtime: str
    iou: float
    differing: int
    far: int
    torch_s: float
    runtime_s: float
    version: int = PROBE_VERSION

    @property
    def matched(self) -> bool:
        """Whether the masks agree with torch's under the parity rule."""
        return self.iou >= MIN_IOU and self.far == 0

    @property
    def speedup(self) -> float:
        """torch's encode seconds / the runtime's (above 1: the runtime is faster)."""
        return self.torch_s / self.runtime_s if self.runtime_s > 0 else 0.0

    @property
    def faster(self) -> bool:
        """Whether the runtime encoded faster than torch on the probe."""
        return self.speedup > 1.0

    def cost(self) -> str:
        """Its measured accuracy cost in a few words, e.g. ``IoU 0.9987, 412 px differ``."""
        pixels = "no pixel differs" if not self.differing else (
            f"{self.differing} px differ{'s' if self.differing == 1 else ''}")
        return f"IoU {self.iou:.4f}, {pixels}"


@dataclass
class Agreement:
    """The parity rule's tally over several masks (see :func:`compare_masks`)."""

    iou: float = 1.0
    differing: int = 0
    far: int = 0

    def add(self, ours: np.ndarray, theirs: np.ndarray, logits: np.ndarray,
            threshold: float = 0.0) -> None:
        """Count one pair of bool ``(H, W)`` masks; ``logits`` float ``(H, W)`` torch's,
        in image pixels, before ``threshold``."""
        iou, differing, far = compare_masks(ours, theirs, logits, threshold)
        self.iou = min(self.iou, iou)
        self.differing += differing
        self.far += far


def compare_masks(ours: np.ndarray, theirs: np.ndarray, logits: np.ndarray,
                  threshold: float = 0.0) -> tuple[float, int, int]:
    """``(iou, differing pixels, differing pixels not near the threshold)`` of two bool
    ``(H, W)`` masks; two empty masks have IoU 1."""
    a, b = np.asarray(ours, bool), np.asarray(theirs, bool)
    differ = a ^ b
    count = int(differ.sum())
    if not count:
        return 1.0, 0, 0
    iou = int((a & b).sum()) / int((a | b).sum())
    margin = np.abs(np.asarray(logits, np.float64)[differ] - threshold)
    return iou, count, int((margin >= LOGIT_TOL).sum())


def read_verdicts(folder: Path) -> dict[str, Verdict]:
    """The verdicts in ``folder/probe.json`` by runtime (none for a missing, unreadable or
    older-version file)."""
    try:
        content = json.loads((Path(folder) / PROBE_FILE).read_text(encoding="utf-8"))
        verdicts = {name: Verdict(**entry) for name, entry in content.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}
    return {name: v for name, v in verdicts.items() if v.version == PROBE_VERSION}


def write_verdict(folder: Path, verdict: Verdict) -> None:
    """Add ``verdict`` to ``folder/probe.json`` (written whole, then renamed into place)."""
    stored = {name: asdict(v) for name, v in read_verdicts(folder).items()}
    stored[verdict.runtime] = asdict(verdict)
    with cache.atomic_target(Path(folder) / PROBE_FILE) as temporary:
        temporary.write_text(json.dumps(stored, indent=1, sort_keys=True), encoding="utf-8")


def known_verdicts(checkpoint: Path | None, family: str) -> dict[str, Verdict]:
    """The newest verdicts recorded for ``checkpoint`` of ``family`` (``sam``, ``sam2``),
    or none when it was never probed (or its digest is not remembered yet).

    Cheap: reads the remembered digest and a small JSON file; never hashes the
    checkpoint and never imports torch.
    """
    if checkpoint is None:
        return {}
    try:
        path = Path(checkpoint).resolve()
        stat = path.stat()
    except OSError:
        return {}
    stamp = (str(path), stat.st_size, stat.st_mtime_ns)
    digest = cache._DIGESTS.get(stamp) or cache._read_digests().get(cache._stamp_text(stamp))
    if not digest:
        return {}
    probes = sorted(cache.cache_root().glob(f"{family}-{digest[:16]}-*/{PROBE_FILE}"),
                    key=lambda p: _mtime(p))
    return read_verdicts(probes[-1].parent) if probes else {}


def label(runtime: str) -> str:
    """How a person reads a runtime's name: ``Torch``, ``ONNX fp32``, ``OpenVINO bf16``..."""
    if runtime in PRECISION:
        library = "ONNX" if ENGINE[runtime] == "ONNX Runtime" else ENGINE[runtime]
        return f"{library} {PRECISION[runtime]}"
    return "Torch" if runtime == "torch" else runtime


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
