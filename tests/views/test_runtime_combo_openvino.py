"""The Models dialog lists the OpenVINO runtimes, with their measured cost once probed, and
disables them with a tooltip where openvino is not installed."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from samdesk.inference.engines import runtime_choice
from samdesk.inference.runtimes import verdicts
from samdesk.views import runtime_combo
from samdesk.views.model_dialog import ModelChoice, ModelDialog
from tests.model_factories import TINY_SAM
from tests.views.test_window_runtime import sam  # noqa: F401  (the fixture)


def _texts(dialog: ModelDialog) -> dict[str, str]:
    combo = dialog.runtime
    return {combo.itemData(i): combo.itemText(i) for i in range(combo.count())}


def test_the_openvino_runtimes_are_listed_with_their_measured_cost(qtbot, sam) -> None:  # noqa: F811
    name, checkpoint = sam
    dialog = ModelDialog(ModelChoice(name, "cpu"))
    qtbot.addWidget(dialog)
    assert list(_texts(dialog).items()) == [
        ("auto", "Auto"), ("torch", "Torch"), ("onnx", "ONNX fp32"), ("onnx-int8", "ONNX int8"),
        ("openvino", "OpenVINO fp32"), ("openvino-bf16", "OpenVINO bf16")]
    folder = runtime_choice.graph_folder(checkpoint, "sam", TINY_SAM)
    verdicts.write_verdict(folder, verdicts.Verdict("openvino-bf16", 0.99713, 15612, 900,
                                                    4.4, 1.0))
    again = ModelDialog(ModelChoice(name, "cpu", runtime="openvino-bf16"))
    qtbot.addWidget(again)
    assert again.runtime.currentData() == "openvino-bf16"
    assert _texts(again)["openvino-bf16"] == (
        "OpenVINO bf16 (IoU 0.9971, 15612 px differ, 4.4x torch)")
    tip = again.runtime.itemData(again.runtime.findData("openvino-bf16"),
                                 Qt.ItemDataRole.ToolTipRole)
    assert "never chosen by Auto" in tip
    assert again.choice().runtime == "openvino-bf16"


def test_without_openvino_its_runtimes_are_disabled_with_a_tooltip(
        qtbot, sam, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    name, _ = sam
    monkeypatch.setattr(runtime_combo, "openvino_installed", lambda: False)
    dialog = ModelDialog(ModelChoice(name, "cpu", runtime="openvino"))
    qtbot.addWidget(dialog)
    model = dialog.runtime.model()
    for runtime in ("openvino", "openvino-bf16"):
        index = dialog.runtime.findData(runtime)
        assert not model.item(index).isEnabled()
        assert dialog.runtime.itemData(index, Qt.ItemDataRole.ToolTipRole) == (
            "needs openvino: pip install openvino onnx")
    assert model.item(dialog.runtime.findData("onnx")).isEnabled()
    assert dialog.choice().runtime == "auto"  # a runtime that cannot run is not kept
