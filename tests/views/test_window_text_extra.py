"""The window without the text extra: the text tool says `pip install samdesk[text]`
(and what it costs) before anything is typed and after Find, and File > Models does
not offer GroundingDINO, even with its checkpoint on disk, saying why on its row."""

from __future__ import annotations

import sys

import pytest
from PySide6.QtCore import QSettings, Qt

from samdesk.inference.engines.packages import TEXT_EXTRA
from samdesk.inference.models import checkpoints, registry
from samdesk.views.model_dialog import ModelChoice, ModelDialog, load_choice, save_choice
from tests.views.test_window import folder, make_window  # noqa: F401 - the folder fixture

LINE = TEXT_EXTRA + "; groundingdino-py is not installed"


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """A base install (no groundingdino-py) whose models folder holds a GroundingDINO file."""
    monkeypatch.setitem(sys.modules, "groundingdino", None)
    monkeypatch.setenv("SAMDESK_MODELS", str(tmp_path / "models"))
    path = checkpoints.default_path(registry.MODELS["groundingdino_swint_ogc"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"a checkpoint fetched before the extra was installed")
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def test_text_tool_says_the_extra_before_and_after_find(qtbot, settings, folder):  # noqa: F811
    window = make_window(qtbot, settings, folder)
    qtbot.keyClick(window.canvas, Qt.Key.Key_T)
    panel = window.text_panel
    assert panel.isVisible()
    assert panel.state.text() == LINE
    qtbot.keyClicks(panel.phrase, "ball")
    qtbot.keyClick(panel.phrase, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "Looking" not in panel.state.text(), timeout=20_000)
    assert panel.state.text() == f"Not found: {LINE}"
    assert window.project.annotations(window.session.image.id) == []
    window.close()


def test_models_dialog_does_not_offer_the_detector_and_says_why(qtbot, settings):
    save_choice(settings, ModelChoice("grabcut", "cpu", "groundingdino_swint_ogc"))
    assert load_choice(settings).detector is None  # the saved detector cannot load here
    dialog = ModelDialog(ModelChoice())
    qtbot.addWidget(dialog)
    assert dialog.detector.count() == 1  # "None (no text prompts)" only
    rows = {dialog.tree.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole):
            dialog.tree.topLevelItem(i) for i in range(dialog.tree.topLevelItemCount())}
    gdino = rows["groundingdino_swint_ogc"]
    assert gdino.text(2).endswith("; needs pip install samdesk[text]")
    assert gdino.toolTip(2) == LINE
    assert rows["grabcut"].text(2) == "built in"
    assert "samdesk[text]" not in rows["sam_vit_b"].text(2)
