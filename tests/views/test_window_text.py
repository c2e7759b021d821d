"""The text tool in the real window: a phrase finds objects through the worker's
GroundingDINO, each becomes a candidate labelled by its phrase, and accepting
turns them into mask layers (one undo step)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings, Qt

from samdesk.inference.engines.base import Prediction
from samdesk.inference.engines.loading import load_model
from samdesk.project import Project
from samdesk.views.model_dialog import ModelChoice
from tests.gdino_factory import install_tiny_gdino, shared_tiny_gdino
from tests.views.test_window import folder, make_window  # noqa: F401 - the folder fixture

PHRASE = "cat . red car"


def box_filling_loader(name, checkpoint, device):
    """The real engines, except that GrabCut fills each box: the random detector's
    boxes are too thin for GrabCut, whose masks would all be empty (and are never
    accepted)."""
    engine = load_model(name, checkpoint, device)
    if name != "grabcut":
        return engine
    predict = engine.predict

    def filled(embedding, prompts, *args, **kwargs):
        pred = predict(embedding, prompts, *args, **kwargs)
        masks = pred.masks.copy()
        height, width = masks.shape[2:]
        for i, (x0, y0, x1, y1) in enumerate(prompts.boxes):
            c0, r0 = min(int(x0), width - 1), min(int(y0), height - 1)
            masks[i, :, r0:max(int(y1), r0 + 1), c0:max(int(x1), c0 + 1)] = True
        return Prediction(masks, pred.scores, pred.logits)

    engine.predict = filled
    return engine


@pytest.fixture
def tiny_window(qtbot, tmp_path, folder, tmp_path_factory, monkeypatch):  # noqa: F811
    tiny = shared_tiny_gdino(tmp_path_factory)
    install_tiny_gdino(monkeypatch, tiny)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = make_window(qtbot, settings, folder, loader=box_filling_loader)
    with qtbot.waitSignals([window.client.model_loaded] * 2, timeout=60_000):
        window.apply_models(ModelChoice("grabcut", "cpu", tiny.spec.name))
    yield window
    window.close()


def test_phrase_to_labelled_layers_and_one_undo(qtbot, tiny_window):
    window = tiny_window
    qtbot.keyClick(window, Qt.Key.Key_T)
    panel = window.text_panel
    assert panel.isVisible()
    panel.box_threshold.setValue(0.0)  # a random model: let every usable box through
    panel.text_threshold.setValue(0.0)
    panel.phrase.setText(PHRASE)
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.results.count() > 0, timeout=120_000)
    found = [panel.results.item(i).text() for i in range(panel.results.count())]
    assert panel.accept_all.isEnabled()
    assert panel.state.text().startswith(f"Found {len(found)} objects")
    assert all(c.mask.any() for c in window.session.candidates)

    image_id = window.session.image.id
    qtbot.mouseClick(panel.accept_all, Qt.MouseButton.LeftButton)
    layers = window.project.annotations(image_id)
    assert len(layers) == len(found)
    names = {window.project.label(layer.label_id).name for layer in layers}
    assert names <= {"cat", "red car", "red", "car", "cat red car", PHRASE.strip(" .")}
    assert all(layer.prompts["text"] for layer in layers)
    assert window.layers_dock.tree.topLevelItemCount() == len(found)

    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.project.annotations(image_id) == []
    folder_path = window.project.folder
    redo = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    qtbot.keyClick(window, Qt.Key.Key_Z, redo)
    window.close()
    with Project.open(folder_path) as project:
        assert len(project.annotations(image_id)) == len(found)


def test_enter_in_the_phrase_box_runs_find_and_the_panel_says_the_outcome(
        qtbot, tmp_path, folder, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SAMDESK_MODELS", str(tmp_path / "models"))  # no detector installed
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = make_window(qtbot, settings, folder)
    qtbot.keyClick(window.canvas, Qt.Key.Key_T)
    panel = window.text_panel
    asked = []
    panel.run_requested.connect(lambda *args: asked.append(args))
    qtbot.keyClicks(panel.phrase, "ball . ring")
    qtbot.keyClick(panel.phrase, Qt.Key.Key_Return)
    assert [a[0] for a in asked] == ["ball . ring"]
    qtbot.waitUntil(lambda: "Looking" not in panel.state.text(), timeout=20_000)
    assert "no text detector is loaded" in panel.state.text()
    assert window.project.annotations(window.session.image.id) == []  # Enter accepted nothing
    window.step_image(1)  # another image: the last one's outcome is not shown for it
    assert "no text detector" not in panel.state.text()
    window.close()
