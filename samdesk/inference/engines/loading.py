"""A model name to a working engine or detector: the one way every caller loads a model.

The registry (:mod:`samdesk.inference.models.registry`) says what each model is;
this module knows which engine module builds each family. Engine modules are
imported only when a model of their family is loaded, so listing models never
imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from samdesk.inference.engines import packages
from samdesk.inference.models.checkpoints import resolve_checkpoint
from samdesk.inference.models.registry import get_spec
from samdesk.inference.runtimes import TORCH, check_runtime

# family -> "module:function"; the function takes (spec, checkpoint, device)
# and returns an Engine (segmenters) or a Detector (detectors). Imported
# lazily so that listing models never imports torch.
FAMILY_LOADERS: dict[str, str] = {
    "grabcut": "samdesk.inference.engines.grabcut:load",
    "sam": "samdesk.inference.engines.sam:load",
    "sam2": "samdesk.inference.engines.sam2:load",
    "groundingdino": "samdesk.inference.engines.groundingdino:load",
    "remote": "samdesk.inference.engines.remote:load",  # server:URL#MODEL names
}
RUNTIME_FAMILIES = frozenset({"sam", "sam2"})
"""Families whose loader takes ``runtime`` and ``progress`` (an exportable encoder)."""



def load_model(name: str, checkpoint: Path | None = None, device: str = "cpu",
               runtime: str = TORCH, progress: Callable[[int, int], None] | None = None
               ) -> Any:
    """Build the engine or detector ``name`` from ``checkpoint`` on ``device``.

    ``runtime`` (:data:`samdesk.inference.runtimes.RUNTIMES`) runs the SAM and
    SAM 2 encoders exported to ONNX Runtime, exporting them on first use with
    ``progress(done, total)`` per chunk; an unknown name is one EngineError
    line. A runtime that cannot start, or a family without one, runs torch:
    ``engine.runtime`` says which runs, ``engine.runtime_note`` why.

    With ``checkpoint`` None, a model that needs one uses its installed file
    (see :mod:`samdesk.inference.models.checkpoints`); a model that is not installed
    raises :class:`EngineError` naming the command that installs it, after a
    family whose optional packages are missing has said which (the text
    detector: ``pip install samdesk[text]``). Nothing is ever downloaded here.
    """
    check_runtime(runtime)
    spec = get_spec(name)
    packages.require(spec.family)
    if checkpoint is None and spec.needs_checkpoint:
        checkpoint = resolve_checkpoint(spec)
    module_name, func_name = FAMILY_LOADERS[spec.family].split(":")
    loader = getattr(importlib.import_module(module_name), func_name)
    if runtime == TORCH:
        return loader(spec, checkpoint, device)
    if spec.family in RUNTIME_FAMILIES:
        return loader(spec, checkpoint, device, runtime=runtime, progress=progress)
    engine = loader(spec, checkpoint, device)
    try:
        engine.runtime = TORCH
        engine.runtime_note = f"{spec.name} has no {runtime} runtime; using torch"
    except AttributeError:  # an engine with fixed attributes: callers read getattr(..., "torch")
        pass
    return engine
