"""The Models dialog's runtime choice: Auto, Torch, ONNX fp32 / int8, OpenVINO fp32 / bf16.

Each ONNX item shows its measured accuracy cost for the chosen segmenter's
checkpoint once the probe has run (``ONNX int8 (IoU 0.9962, 5321 px differ,
2.1x torch)``), read from the runtime cache on the GUI thread without hashing
the checkpoint or importing torch. Without onnxruntime the ONNX items are
disabled, their tooltip saying what to install; the same for OpenVINO.
"""

from __future__ import annotations

import importlib.util

from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import QComboBox

from samdesk.inference.models import checkpoints, registry
from samdesk.inference.runtimes import (
    ONNX,
    ONNX_INT8,
    OPENVINO,
    OPENVINO_BF16,
    PRECISION,
    RUNTIMES,
    verdicts,
)

AUTO = "auto"
RUNTIME_ITEMS = (("Auto", AUTO), *((verdicts.label(name), name) for name in RUNTIMES))
"""(shown text, runtime name) in menu order; ``auto`` is the default."""
RUNTIME_FAMILIES = ("sam", "sam2")
INSTALL_HINT = "needs onnxruntime: pip install onnxruntime onnx"
OPENVINO_HINT = "needs openvino: pip install openvino onnx"
AUTO_TIP = ("On a GPU: torch. On a CPU: the fastest fp32 runtime (ONNX or OpenVINO) whose "
            "masks, for this checkpoint, matched torch's and that encoded faster (measured "
            "once, on first use); else torch.")
INT8_TIP = "Faster; masks move a little (never chosen by Auto)."
BF16_TIP = ("Faster on a CPU with bf16 (avx512_bf16 or AMX); masks move a little (never "
            "chosen by Auto).")
REDUCED_TIPS = {ONNX_INT8: INT8_TIP, OPENVINO_BF16: BF16_TIP}


def onnx_installed() -> bool:
    """Whether onnxruntime and onnx can be imported (found, not imported: cheap)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def openvino_installed() -> bool:
    """Whether openvino and onnx can be imported (found, not imported: cheap)."""
    return all(importlib.util.find_spec(name) is not None for name in ("openvino", "onnx"))


def fill_runtimes(combo: QComboBox, segmenter: str | None, chosen: str) -> None:
    """Fill ``combo`` with the runtimes, the costs measured for ``segmenter``'s checkpoint,
    and select ``chosen`` (``auto`` when it cannot be chosen)."""
    known = _verdicts(segmenter)
    installed = {ONNX: onnx_installed(), OPENVINO: openvino_installed()}
    installed.update({ONNX_INT8: installed[ONNX], OPENVINO_BF16: installed[OPENVINO]})
    combo.blockSignals(True)
    combo.clear()
    for text, name in RUNTIME_ITEMS:
        verdict = known.get(name)
        shown = text if verdict is None else (
            f"{text} ({verdict.cost()}, {verdict.speedup:.1f}x torch)")
        combo.addItem(shown, name)
        index = combo.count() - 1
        tip = AUTO_TIP if name == AUTO else REDUCED_TIPS.get(name, "")
        if name in PRECISION and not installed[name]:
            item = combo.model().item(index) if isinstance(combo.model(),
                                                           QStandardItemModel) else None
            if item is not None:
                item.setEnabled(False)
            tip = INSTALL_HINT if name in (ONNX, ONNX_INT8) else OPENVINO_HINT
        elif verdict is None and name in PRECISION:
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
