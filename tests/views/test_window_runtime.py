"""The runtime in the window: the Models dialog's choice (with its measured cost, disabled
without onnxruntime) is kept in the settings and reaches the worker; the status bar shows
the model, the device and the runtime it runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest
from PySide6.QtCore import QSettings, Qt

from samdesk.inference.engines import runtime_choice
from samdesk.inference.models import checkpoints
from samdesk.inference.runtimes import verdicts
from samdesk.inference.runtimes.cache import ENV_VAR
from samdesk.inference.worker.cache import EmbeddingCache
from samdesk.inference.worker.client import InferenceClient
from samdesk.views import runtime_combo
from samdesk.views.main_window import MainWindow
from samdesk.views.model_dialog import ModelChoice, ModelDialog, load_choice, save_choice
from tests.model_factories import (
    TINY_SAM,
    make_sam_checkpoint,
    registered_test_model,
    textured_image,
)

WAIT_MS = 60_000


@pytest.fixture
def sam(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A tiny SAM installed as a model, with its own models folder and runtime cache."""
    monkeypatch.setenv("SAMDESK_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "runtime-cache"))
    checkpoint = make_sam_checkpoint(tmp_path / "tiny_sam.pth", TINY_SAM)
    with registered_test_model("sam", TINY_SAM) as spec:
        checkpoints.add(spec.name, checkpoint, force=True)
        yield spec.name, checkpoint


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def _texts(dialog: ModelDialog) -> dict[str, str]:
    combo = dialog.runtime
    return {combo.itemData(i): combo.itemText(i) for i in range(combo.count())}


def test_the_dialogs_runtime_is_kept_and_shows_the_measured_cost(qtbot, sam, settings) -> None:
    name, checkpoint = sam
    dialog = ModelDialog(ModelChoice(name, "cpu"))
    qtbot.addWidget(dialog)
    assert _texts(dialog).items() >= {"auto": "Auto", "torch": "Torch", "onnx": "ONNX fp32",
                                      "onnx-int8": "ONNX int8"}.items()
    assert dialog.runtime.currentData() == "auto"
    dialog.runtime.setCurrentIndex(dialog.runtime.findData("onnx-int8"))
    choice = dialog.choice()
    assert choice.runtime == "onnx-int8"
    save_choice(settings, choice)
    assert load_choice(settings).runtime == "onnx-int8"
    # once the probe has measured this checkpoint, the items say what each costs
    folder = runtime_choice.graph_folder(checkpoint, "sam", TINY_SAM)
    verdicts.write_verdict(folder, verdicts.Verdict("onnx-int8", 0.99621, 5321, 40, 2.0, 1.0))
    verdicts.write_verdict(folder, verdicts.Verdict("onnx", 1.0, 0, 0, 2.0, 1.6))
    again = ModelDialog(load_choice(settings))
    qtbot.addWidget(again)
    assert again.runtime.currentData() == "onnx-int8"
    assert _texts(again)["onnx-int8"] == "ONNX int8 (IoU 0.9962, 5321 px differ, 2.0x torch)"
    assert _texts(again)["onnx"] == "ONNX fp32 (IoU 1.0000, no pixel differs, 1.2x torch)"


def test_without_onnxruntime_the_onnx_runtimes_are_disabled_with_a_tooltip(
        qtbot, sam, monkeypatch: pytest.MonkeyPatch) -> None:
    name, _ = sam
    monkeypatch.setattr(runtime_combo, "onnx_installed", lambda: False)
    dialog = ModelDialog(ModelChoice(name, "cpu", runtime="onnx"))
    qtbot.addWidget(dialog)
    model = dialog.runtime.model()
    for runtime in ("onnx", "onnx-int8"):
        index = dialog.runtime.findData(runtime)
        assert not model.item(index).isEnabled()
        assert dialog.runtime.itemData(index, Qt.ItemDataRole.ToolTipRole) == (
            "needs onnxruntime: pip install onnxruntime onnx")
    assert model.item(dialog.runtime.findData("torch")).isEnabled()
    assert dialog.choice().runtime == "auto"  # a runtime that cannot run is not kept


def test_the_chosen_runtime_reaches_the_worker_and_the_status_bar_shows_it(
        qtbot, sam, settings, tmp_path: Path) -> None:
    name, _ = sam
    asked: list[Any] = []

    def loader(model: str, checkpoint: Path | None, device: str, runtime: str | None = None,
               progress: Any = None) -> Any:
        asked.append(runtime)
        return runtime_choice.load_engine(model, checkpoint, device, runtime, progress)

    images = tmp_path / "images"
    images.mkdir()
    rgb = textured_image(120, 160, seed=3)
    cv2.imwrite(str(images / "a.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    window = MainWindow(settings, InferenceClient(EmbeddingCache(None), loader=loader))
    qtbot.addWidget(window)
    try:
        progress: list[str] = []
        window.client.progress.connect(lambda p: progress.append(window.status.model.text()))
        with qtbot.waitSignal(window.client.model_loaded, timeout=WAIT_MS * 2,
                              check_params_cb=lambda m: m.name == name):
            window.apply_models(ModelChoice(name, "cpu", runtime="onnx"))
        assert asked[-1] == "onnx"
        assert window.status.model.text() == f"Model: {name} · cpu · ONNX fp32"
        assert any("(loading: preparing ONNX fp32" in text for text in progress)
        with qtbot.waitSignal(window.client.model_loaded, timeout=WAIT_MS,
                              check_params_cb=lambda m: m.name == name):
            window.apply_models(ModelChoice(name, "cpu", runtime="torch"))
        assert asked[-1] == "torch"
        assert window.status.model.text() == f"Model: {name} · cpu · Torch"
        with qtbot.waitSignal(window.client.model_loaded, timeout=WAIT_MS,
                              check_params_cb=lambda m: m.name == "grabcut"):
            window.apply_models(ModelChoice("grabcut", "cpu"))
        assert window.status.model.text() == "Model: grabcut · cpu"
    finally:
        window.client.stop()
