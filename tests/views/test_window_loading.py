# ruff: noqa: F811 - pytest fixtures imported from test_window are parameters here
"""The window while an image loads, when a file is broken, and when a slot fails.

A decode runs on a pool thread: a timer on the GUI thread keeps firing
while it runs (counted, never timed), the canvas says "Loading…", and a
decode the person no longer waits for is dropped. A slot that raises shows
one line in the status bar and the window goes on working.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication

from samdesk.errors import ProjectError
from samdesk.views import session as session_module
from tests.views.test_window import (  # noqa: F401 - the fixtures
    click_image,
    folder,
    key,
    make_window,
    settings,
    wait_candidate,
    wait_loaded,
)

BIG_H, BIG_W = 3000, 4000


@pytest.fixture
def gated_decode(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Decodes of files named big*.png wait for the returned event."""
    gate = threading.Event()
    real = session_module.load_display

    def load(path, max_side=4096):
        if Path(path).name.startswith("big"):
            assert threading.current_thread() is not threading.main_thread()
            gate.wait(30)
        return real(path, max_side)

    monkeypatch.setattr(session_module, "load_display", load)
    return gate


def write_big(folder: Path) -> Path:
    rng = np.random.default_rng(1)
    big = rng.integers(0, 255, (BIG_H // 8, BIG_W // 8, 3), dtype=np.uint8)
    path = folder / "big.png"  # sorted before scene*.png: the first image opened
    cv2.imwrite(str(path), cv2.resize(big, (BIG_W, BIG_H), interpolation=cv2.INTER_NEAREST))
    return path


def test_a_big_image_loads_off_the_gui_thread_and_appears_after(
        qtbot, settings: QSettings, folder: Path, gated_decode: threading.Event) -> None:
    write_big(folder)
    window = make_window(qtbot, settings)
    ticks: list[int] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(5)
    assert window.open_folder(folder)
    session = window.session
    assert session.image.path == "big.png" and session.loading
    qtbot.waitUntil(lambda: len(ticks) >= 20, timeout=10_000)  # the GUI thread runs
    assert session.rgb is None and window.canvas.image_size is None
    assert "Loading big.png" in window.canvas.message_text()
    assert window.status.embedding.text() == "Embedding: waiting for the image file"
    window.canvas.point_added.emit(10.0, 10.0, True)  # a click meanwhile is not lost silently
    assert "still loading" in window.status.currentMessage()
    window.text_panel.phrase.setText("cat")
    window.text_panel.run_button.click()
    assert "still loading" in window.text_panel.state.text()
    gated_decode.set()
    wait_loaded(qtbot, window)
    timer.stop()
    assert window.canvas.image_size == (BIG_W, BIG_H)
    assert window.canvas.message_text() == ""
    assert session.ref is not None  # the worker is asked for its embedding
    window.close()


def test_a_decode_the_person_moved_on_from_is_dropped(
        qtbot, settings: QSettings, folder: Path, gated_decode: threading.Event) -> None:
    write_big(folder)
    window = make_window(qtbot, settings)
    assert window.open_folder(folder)
    session = window.session
    assert session.loading and session.image.path == "big.png"
    qtbot.waitUntil(window.isActiveWindow)  # window shortcuts need an active window
    key(qtbot, window, Qt.Key.Key_D)  # on to scene1.png before big.png is decoded
    wait_loaded(qtbot, window)
    assert session.image.path == "scene1.png"
    assert window.canvas.image_size == (320, 240)
    loaded: list[int] = []
    session.image_loaded.connect(loaded.append)
    gated_decode.set()
    qtbot.wait(300)  # the big decode ends and its result is thrown away
    session._loader.wait()
    qtbot.wait(50)
    assert loaded == [] and session.image.path == "scene1.png"
    assert window.canvas.image_size == (320, 240)
    click_image(qtbot, window, 160, 120)  # the shown image is the one prompted
    wait_candidate(qtbot, window)
    window.close()


def test_a_broken_file_shows_its_error_on_an_empty_canvas(
        qtbot, settings: QSettings, folder: Path) -> None:
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    window = make_window(qtbot, settings, folder)  # opens broken.png, sorted first
    session = window.session
    assert session.image.path == "broken.png"
    shown = window.canvas.message_text()
    assert shown.startswith("broken.png: ") and len(shown) > len("broken.png: ")
    assert window.canvas.image_size is None  # no black picture pretending to be the image
    assert "broken.png" in window.status.currentMessage()
    assert window.status.embedding.text() == "Embedding: no image"
    key(qtbot, window, Qt.Key.Key_D)
    wait_loaded(qtbot, window)
    assert window.canvas.message_text() == "" and window.canvas.image_size == (320, 240)
    qtbot.waitUntil(lambda: "ready" in window.status.embedding.text(), timeout=15000)
    key(qtbot, window, Qt.Key.Key_A)  # back to the broken file: no stale "ready"
    wait_loaded(qtbot, window)
    assert window.canvas.message_text().startswith("broken.png: ")
    assert window.status.embedding.text() == "Embedding: no image"
    window.close()


def test_a_slot_that_raises_shows_one_line_and_the_window_goes_on(
        qtbot, settings: QSettings, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    window = make_window(qtbot, settings, folder)
    project = window.project

    def locked(*args, **kwargs):
        raise ProjectError(f"{project.folder}/.samdesk/project.sqlite: the project is locked "
                           "by another program; try again")

    monkeypatch.setattr(project, "add_annotation", locked)
    click_image(qtbot, window, 160, 120)
    wait_candidate(qtbot, window)
    key(qtbot, window, Qt.Key.Key_Return)  # the store refuses the edit
    line = window.status.currentMessage()
    assert "locked by another program" in line and "\n" not in line
    assert QApplication.activeModalWidget() is None
    assert window._error_box is None  # an expected failure: the line alone
    monkeypatch.undo()
    key(qtbot, window, Qt.Key.Key_Return)  # the window still works: the same candidate goes in
    assert len(project.annotations(window.session.image.id)) == 1
    window.close()


def test_an_unexpected_exception_in_a_slot_names_the_log_file(
        qtbot, settings: QSettings, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    window = make_window(qtbot, settings, folder)

    def bug(*args, **kwargs):
        raise KeyError("layer 7")

    monkeypatch.setattr(window.session, "mark_done", bug)
    key(qtbot, window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    line = window.status.currentMessage()
    assert "KeyError" in line and "samdesk.log" in line
    box = window._error_box
    assert box is not None and box.isVisible() and not box.isModal()
    assert "KeyError" in box.detailedText()
    assert QApplication.activeModalWidget() is None
    box.close()
    key(qtbot, window, Qt.Key.Key_D)
    wait_loaded(qtbot, window)
    assert window.session.image.path == "scene2.png"
    window.close()


def test_the_cursor_text_follows_a_relabel_and_an_image_change(
        qtbot, settings: QSettings, folder: Path) -> None:
    window = make_window(qtbot, settings, folder)
    project = window.project
    project.add_label("cell")
    project.add_label("disk")
    click_image(qtbot, window, 160, 120)
    wait_candidate(qtbot, window)
    key(qtbot, window, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.layers_dock.tree.topLevelItemCount() == 1)
    window.canvas.cursor_moved.emit(160.0, 120.0)
    assert "(cell)" in window.status.cursor.text()
    key(qtbot, window, Qt.Key.Key_2)  # relabel the selected layer
    qtbot.waitUntil(lambda: "(disk)" in window.status.cursor.text(), timeout=5000)
    key(qtbot, window, Qt.Key.Key_D)  # the next image has no mask under the cursor
    wait_loaded(qtbot, window)
    assert window.status.cursor.text() == "x 160, y 120"
    window.close()


def test_a_folder_that_fails_to_open_for_any_reason_says_one_line(
        qtbot, settings: QSettings, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from samdesk.views import main_window

    def damaged(*args, **kwargs):
        raise sqlite3.DatabaseError("file is not a database")

    window = make_window(qtbot, settings)
    shown: list[str] = []
    monkeypatch.setattr(main_window.Project, "open", damaged)
    monkeypatch.setattr(main_window.QMessageBox, "warning",
                        lambda parent, title, text: shown.append(text))
    assert window.open_folder(folder) is False
    [line] = shown
    assert line.startswith("project store: file is not a database") and "samdesk.log" in line
    assert window.project is None
    window.close()


def test_running_out_of_memory_while_decoding_names_the_file(
        qtbot, settings: QSettings, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = session_module.load_display

    def load(path, max_side=4096):
        if Path(path).name == "scene2.png":
            raise MemoryError()
        return real(path, max_side)

    monkeypatch.setattr(session_module, "load_display", load)
    window = make_window(qtbot, settings, folder)
    key(qtbot, window, Qt.Key.Key_D)
    wait_loaded(qtbot, window)
    shown = window.canvas.message_text()
    assert shown.startswith("scene2.png: out of memory") and "samdesk.log" in shown
    assert window._error_box is None  # a decode failure is the image's, no dialog
    key(qtbot, window, Qt.Key.Key_D)  # the window goes on to the next image
    wait_loaded(qtbot, window)
    assert window.canvas.message_text() == "" and window.session.image.path == "scene3.png"
    window.close()
