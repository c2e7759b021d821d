"""File > Import… and the labelme offer when a folder first opens, as a person meets them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from samdesk.inference.worker.cache import EmbeddingCache
from samdesk.inference.worker.client import InferenceClient
from samdesk.project import Project
from samdesk.views.import_dialog import RECOGNISE, ImportDialog, LabelmeOffer, start_import
from samdesk.views.main_window import MainWindow

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def labelme_folder(root: Path, with_json: bool = True) -> Path:
    """Two images, each with a labelme JSON beside it (a polygon and a rectangle)."""
    root.mkdir(parents=True)
    for name in ("a", "b"):
        Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(root / f"{name}.jpg")
        if with_json:
            document = {"version": "5.4.1", "flags": {}, "imagePath": f"{name}.jpg",
                        "imageData": None, "imageHeight": 30, "imageWidth": 40,
                        "shapes": [{"label": "cat", "points": [[2, 2], [20, 2], [20, 20]],
                                    "group_id": None, "shape_type": "polygon", "flags": {}},
                                   {"label": "dog", "points": [[5, 5], [30, 25]],
                                    "group_id": None, "shape_type": "rectangle",
                                    "flags": {}}]}
            (root / f"{name}.json").write_text(json.dumps(document), encoding="utf-8")
    return root


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> QSettings:
    monkeypatch.setenv("SAMDESK_MODELS", str(tmp_path / "models"))  # nothing installed
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture(autouse=True)
def boxes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts the window would show in a (modal) message box, which a test cannot click."""
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "information",
                        lambda _parent, _title, text, *args: shown.append(text))
    return shown


def window_on(qtbot, settings: QSettings, folder: Path) -> MainWindow:
    window = MainWindow(settings, InferenceClient(EmbeddingCache(None)))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert window.open_folder(folder)
    return window


def offers(window: MainWindow) -> list[LabelmeOffer]:
    return [o for o in window.findChildren(LabelmeOffer) if o.isVisible()]


def settle(qtbot, window: MainWindow) -> None:
    """Wait until no background job of the window is running."""
    qtbot.waitUntil(lambda: not window.jobs, timeout=15000)


def test_a_new_folder_with_labelme_files_offers_to_import_them_once(qtbot, settings, boxes,
                                                                    tmp_path: Path) -> None:
    folder = labelme_folder(tmp_path / "photos")
    window = window_on(qtbot, settings, folder)
    qtbot.waitUntil(lambda: bool(offers(window)), timeout=15000)
    (offer,) = offers(window)
    assert not offer.isModal()
    assert offer.text().startswith("2 images of this folder have labelme JSON files")
    assert window.project is not None and window.project.annotations() == []  # asked first
    offer.import_button.click()
    settle(qtbot, window)
    qtbot.waitUntil(lambda: "import (labelme)" in window.status.currentMessage(),
                    timeout=15000)
    assert window.status.currentMessage().startswith(
        "import (labelme): photos: 2 labelme files, 2 images matched, 2 masks and 2 pending "
        "boxes added, 2 new labels")
    assert boxes and "2 rectangles added as pending boxes" in boxes[-1]
    project = window.project
    assert project is not None
    assert len(project.annotations()) == 2 and len(project.pending_boxes()) == 2
    window.close_project()
    offer.close()
    assert window.open_folder(folder)  # the project exists now: never asked again
    settle(qtbot, window)
    assert offers(window) == []


def test_not_now_is_an_answer_too(qtbot, settings, tmp_path: Path) -> None:
    folder = labelme_folder(tmp_path / "photos")
    window = window_on(qtbot, settings, folder)
    qtbot.waitUntil(lambda: bool(offers(window)), timeout=15000)
    (offer,) = offers(window)
    next(b for b in offer.buttons() if b.text() == "Not now").click()
    settle(qtbot, window)
    assert window.project is not None and window.project.annotations() == []
    window.close_project()
    assert window.open_folder(folder)
    settle(qtbot, window)
    assert offers(window) == []


def test_no_offer_without_labelme_files_or_for_an_existing_project(qtbot, settings,
                                                                   tmp_path: Path) -> None:
    plain = labelme_folder(tmp_path / "plain", with_json=False)
    window = window_on(qtbot, settings, plain)
    settle(qtbot, window)
    assert offers(window) == []
    existing = labelme_folder(tmp_path / "existing")
    Project.open(existing).close()  # a project made before the JSONs were looked at
    assert window.open_folder(existing)
    settle(qtbot, window)
    assert offers(window) == []


def test_file_import_recognises_the_format_or_says_why_not(qtbot, tmp_path: Path) -> None:
    folder = labelme_folder(tmp_path / "photos")
    with Project.open(folder) as project:
        dialog = ImportDialog(project)
        qtbot.addWidget(dialog)
        assert dialog.format_combo.currentText() == RECOGNISE
        assert not dialog.ok_button.isEnabled()
        dialog.path_edit.setText(str(folder / "a.json"))
        assert dialog.ok_button.isEnabled() and dialog.options() == (folder / "a.json", None)
        reports: list[str] = []
        start_import(None, project, folder / "a.json", None, reports.append)
        qtbot.waitUntil(lambda: bool(reports), timeout=15000)
        assert reports[0].startswith("import (labelme): a.json: 1 labelme files, 1 images "
                                     "matched, 1 masks and 1 pending boxes added")
        other = tmp_path / "notes.txt"
        other.write_text("hello", encoding="utf-8")
        reports.clear()
        start_import(None, project, other, None, reports.append)
        qtbot.waitUntil(lambda: bool(reports), timeout=15000)
        assert reports[0].startswith(f"Import failed: {other}: not a dataset samdesk "
                                     "recognises; give --format coco|labelme")
        assert len(reports) == 1 and "\n" not in reports[0]
