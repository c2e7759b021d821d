"""The Models dialog's runtime choice: Auto, Torch, ONNX fp32, ONNX int8.

Each ONNX item shows its measured accuracy cost for the chosen segmenter's
checkpoint once the probe has run (``ONNX int8 (IoU 0.9962, 5321 px differ,
2.1x torch)``), read from the runtime cache on the GUI thread without hashing
the checkpoint or importing torch. Without onnxruntime the ONNX items are
disabled, their tooltip saying what to install.
"""

from __future__ import annotations

import importlib.util

from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import QComboBox

from samdesk.inference.models import checkpoints, registry
from samdesk.inference.runtimes import ONNX, ONNX_INT8, TORCH, verdicts

AUTO = "auto"
RUNTIME_ITEMS = (("Auto", AUTO), ("Torch", TORCH), ("ONNX fp32", ONNX), ("ONNX int8", ONNX_INT8))
"""(shown text, runtime name) in menu order; ``auto`` is the default."""
RUNTIME_FAMILIES = ("sam", "sam2")
INSTALL_HINT = "needs onnxruntime: pip install onnxruntime onnx"
AUTO_TIP = ("On a GPU: torch. On a CPU: ONNX fp32 where, for this checkpoint, its masks "
            "matched torch and it encoded faster (measured once, on first use); else torch.")
INT8_TIP = "Faster; masks move a little (never chosen by Auto)."


def onnx_installed() -> bool:
    """Whether onnxruntime and onnx can be imported (found, not imported: cheap)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def fill_runtimes(combo: QComboBox, segmenter: str | None, chosen: str) -> None:
    """Fill ``combo`` with the runtimes, the costs measured for ``segmenter``'s checkpoint,
    and select ``chosen`` (``auto`` when it cannot be chosen)."""
    known = _verdicts(segmenter)
    installed = onnx_installed()
    combo.blockSignals(True)
    combo.clear()
    for text, name in RUNTIME_ITEMS:
        verdict = known.get(name)
        shown = text if verdict is None else (
            f"{text} ({verdict.cost()}, {verdict.speedup:.1f}x torch)")
        combo.addItem(shown, name)
        index = combo.count() - 1
        tip = AUTO_TIP if name == AUTO else INT8_TIP if name == ONNX_INT8 else ""
        if name in (ONNX, ONNX_INT8) and not installed:
            item = combo.model().item(index) if isinstance(combo.model(),
                                                           QStandardItemModel) else None
            if item is not None:
                item.setEnabled(False)
            tip = INSTALL_HINT
        elif verdict is None and name in (ONNX, ONNX_INT8):
            tip = (tip + " " if tip else "") + "Its accuracy is measured on first use."
        if tip:
            combo.setItemData(index, tip, Qt.ItemDataRole.ToolTipRole)
    index = combo.findData(chosen)
    if index < 0 or not _enabled(combo, index):
        index = 0
    combo.setCurrentIndex(index)
    combo.blockSignals(False)


def runtime_shown(model: str, runtime: str) -> str:
    """The status bar's runtime for ``model`` running ``runtime`` (``ONNX fp32``, ``Torch``),
    or ``""`` for a model without an encoder runtime (GrabCut, a server's)."""
    spec = registry.MODELS.get(model)
    if spec is None or spec.family not in RUNTIME_FAMILIES:
        return ""
    return verdicts.label(runtime)


def _enabled(combo: QComboBox, index: int) -> bool:
    model = combo.model()
    if isinstance(model, QStandardItemModel):
        item = model.item(index)
        return item is None or item.isEnabled()
    return True


def _verdicts(segmenter: str | None) -> dict[str, verdicts.Verdict]:
    spec = registry.MODELS.get(segmenter or "")
    if spec is None or spec.family not in RUNTIME_FAMILIES:
        return {}
    return verdicts.known_verdicts(checkpoints.installed(spec.name), spec.family)
