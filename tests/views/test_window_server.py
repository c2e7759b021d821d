"""The window on a server's model: File > Models > Server, clicks, and a server that goes away.

The server runs in process (FastAPI's TestClient) with a random-weight tiny
SAM; the local engine on the same checkpoint file is the reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from PySide6.QtCore import QPointF, QSettings, Qt

from samdesk.images import load_rgb
from samdesk.inference.engines import remote
from samdesk.inference.engines.base import Point, Prompts
from samdesk.inference.engines.loading import load_model
from samdesk.inference.models.registry import remote_name
from samdesk.inference.worker.cache import EmbeddingCache
from samdesk.inference.worker.client import InferenceClient
from samdesk.views.main_window import MainWindow
from samdesk.views.model_dialog import ModelChoice, ModelDialog, load_choice, save_choice
from tests.model_factories import textured_image
from tests.server.remote_fixtures import URL, Served, served_sam

WAIT_MS = 60_000


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with served_sam(tmp_path / "server") as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> QSettings:
    monkeypatch.setenv("SAMDESK_MODELS", str(tmp_path / "models"))
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        rgb = textured_image(240, 320, seed=20 + i)
        cv2.imwrite(str(images / f"scene{i}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return images


def open_window(qtbot, settings: QSettings, folder: Path, served: Served) -> MainWindow:
    window = MainWindow(settings, InferenceClient(EmbeddingCache(None)))
    qtbot.addWidget(window)
    window.resize(1200, 800)
    window.show()
    qtbot.waitExposed(window)
    assert window.open_folder(folder)
    qtbot.waitUntil(lambda: window.session is not None and not window.session.loading,
                    timeout=WAIT_MS)
    loaded: list[str] = []
    window.client.model_loaded.connect(lambda m: loaded.append(m.name))
    window.apply_models(ModelChoice(remote_name(URL, served.model), "cpu", server_url=URL))
    qtbot.waitUntil(lambda: remote_name(URL, served.model) in loaded, timeout=WAIT_MS)
    return window


def click(qtbot, window: MainWindow, x: float, y: float) -> None:
    pos = window.canvas.mapFromScene(QPointF(x, y))
    qtbot.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def test_a_click_on_a_server_model_shows_the_local_mask(qtbot, settings, folder, served) -> None:
    window = open_window(qtbot, settings, folder, served)
    try:
        click(qtbot, window, 160, 120)
        qtbot.waitUntil(lambda: bool(window.session.candidates)
                        and window.session.candidates[0].mask is not None, timeout=WAIT_MS)
        shown = window.session.shown_candidate().mask
        local = load_model(served.model, served.checkpoint, "cpu")
        rgb = load_rgb(window.session.ref.path)
        [point] = window.session.points
        expected = local.predict(local.embed(rgb), Prompts(points=(Point(point.x, point.y),)))
        assert np.array_equal(shown, expected.masks[0, expected.best()[0]])
        assert served.requests["POST images"] >= 1
        assert window.status.currentMessage() == "" or "Error" not in \
            window.status.currentMessage()
    finally:
        window.close()


def test_a_lost_connection_is_one_status_line_and_the_prompt_stays(
        qtbot, settings, folder, served) -> None:
    window = open_window(qtbot, settings, folder, served)
    try:
        qtbot.waitUntil(lambda: window.session.embedding == "ready", timeout=WAIT_MS)

        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        remote.use_client(URL, httpx.Client(base_url=URL,
                                            transport=httpx.MockTransport(refuse)))
        failures: list[str] = []
        window.client.failed.connect(lambda failure: failures.append(failure.message))
        shown: list[str] = []
        window.status.messageChanged.connect(lambda text: text and shown.append(text))
        click(qtbot, window, 160, 120)
        qtbot.waitUntil(lambda: bool(failures), timeout=WAIT_MS)
        qtbot.waitUntil(window.client.is_idle, timeout=WAIT_MS)
        [line] = shown  # one line, however many requests failed
        assert "cannot connect" in line and URL in line and "\n" not in line
        assert window.status.currentMessage() == line
        assert len(window.session.points) == 1  # the click is still there, to retry
        before = len(failures)
        click(qtbot, window, 150, 110)  # the next click fails the same way: still that line
        qtbot.waitUntil(lambda: len(failures) > before, timeout=WAIT_MS)
        assert window.status.currentMessage() == line
        assert len(window.session.points) == 2
    finally:
        window.close()


def test_file_models_server_lists_the_servers_models_and_keeps_the_choice(
        qtbot, settings, served) -> None:
    dialog = ModelDialog(ModelChoice())
    qtbot.addWidget(dialog)
    dialog.server_url.setText(URL + "/")
    dialog.api_key.setText("secret")
    dialog.list_server_models()
    name = remote_name(URL, served.model)
    qtbot.waitUntil(lambda: dialog.segmenter.findData(name) >= 0, timeout=WAIT_MS)
    assert served.model in dialog.state.text()
    dialog.segmenter.setCurrentIndex(dialog.segmenter.findData(name))
    choice = dialog.choice()
    assert (choice.segmenter, choice.server_url, choice.api_key) == (name, URL, "secret")
    save_choice(settings, choice)
    assert load_choice(settings) == choice
    again = ModelDialog(load_choice(settings))  # reopened: the server's model still chosen
    qtbot.addWidget(again)
    assert again.segmenter.currentData() == name


def test_a_server_url_without_a_scheme_is_one_line(qtbot) -> None:
    dialog = ModelDialog(ModelChoice())
    qtbot.addWidget(dialog)
    dialog.server_url.setText("gpu-box:9001")
    dialog.list_server_models()
    assert dialog.state.text() == "Server: give its URL, e.g. http://gpu-box:9001"
