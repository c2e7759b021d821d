"""The annotation window, driven with the mouse and keyboard as a person would.

Every test opens the real :class:`MainWindow` offscreen on a folder of
synthetic images (a bright disk on a dark background) with the GrabCut engine
(no checkpoint installed), so the whole path runs: canvas click, inference
client, worker thread, candidate, project edit, docks, status bar.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPointF, QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication

from samdesk import masks
from samdesk.annotations import ImageStatus
from samdesk.inference.engines.loading import load_model
from samdesk.inference.worker.cache import EmbeddingCache
from samdesk.inference.worker.client import InferenceClient
from samdesk.project import Project
from samdesk.views.canvas import Tool
from samdesk.views.main_window import MainWindow

H, W, R = 240, 320, 50
CENTRES = [(160, 120), (120, 110), (200, 130)]


def disk_mask(cx: int, cy: int, r: int = R) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / max(1, np.logical_or(a, b).sum()))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i, (cx, cy) in enumerate(CENTRES):
        img = rng.integers(10, 40, (H, W, 3), dtype=np.uint8)
        img[disk_mask(cx, cy)] = (225, 220, 210)
        cv2.imwrite(str(images / f"scene{i + 1}.png"), img)
    return images


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> QSettings:
    monkeypatch.setenv("SAMDESK_MODELS", str(tmp_path / "models"))  # nothing installed
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def make_window(qtbot, settings: QSettings, folder: Path | None = None,
                loader=load_model) -> MainWindow:
    window = MainWindow(settings, InferenceClient(EmbeddingCache(None), loader=loader))
    qtbot.addWidget(window)
    window.resize(1200, 800)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    if folder is not None:
        assert window.open_folder(folder)
        wait_loaded(qtbot, window)
    return window


def wait_loaded(qtbot, window: MainWindow, timeout: int = 15000) -> None:
    """Wait until the open image is decoded (it is read on a pool thread)."""
    qtbot.waitUntil(lambda: window.session is not None and not window.session.loading,
                    timeout=timeout)


@pytest.fixture
def window(qtbot, settings: QSettings, folder: Path):
    win = make_window(qtbot, settings, folder)
    yield win
    win.close()


def click_image(qtbot, window: MainWindow, x: float, y: float,
                button: Qt.MouseButton = Qt.MouseButton.LeftButton) -> None:
    """Click the canvas at image pixel (x, y)."""
    pos = window.canvas.mapFromScene(QPointF(x, y))
    qtbot.mouseClick(window.canvas.viewport(), button, pos=pos)


def drag_image(qtbot, window: MainWindow, start: tuple[float, float],
               end: tuple[float, float]) -> None:
    viewport = window.canvas.viewport()
    a = window.canvas.mapFromScene(QPointF(*start))
    b = window.canvas.mapFromScene(QPointF(*end))
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=a)
    for t in np.linspace(0, 1, 6)[1:]:
        qtbot.mouseMove(viewport, pos=a + (b - a) * float(t))
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=b)


def key(qtbot, window: MainWindow, k: Qt.Key,
        mods: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.keyClick(window.canvas, k, mods)


def wait_candidate(qtbot, window: MainWindow, timeout: int = 15000) -> None:
    qtbot.waitUntil(lambda: window.session is not None and bool(window.session.candidates),
                    timeout=timeout)


def layer_masks(project: Project, image_id: int) -> list[np.ndarray]:
    return [masks.decode(a.rle) for a in project.annotations(image_id)]


def test_click_enter_relabel_brush_undo_navigate_and_reopen(
        qtbot, settings: QSettings, folder: Path) -> None:
    window = make_window(qtbot, settings, folder)
    project, session = window.project, window.session
    first = session.image.id
    project.add_label("cell")
    project.add_label("disk")  # hotkey 2
    click_image(qtbot, window, 160, 120)
    wait_candidate(qtbot, window)
    assert "Score" in window.status.score.text()
    key(qtbot, window, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.layers_dock.tree.topLevelItemCount() == 1)
    [mask] = layer_masks(project, first)
    assert iou(mask, disk_mask(160, 120)) > 0.8
    assert "disk" not in window.layers_dock.tree.topLevelItem(0).text(0)

    key(qtbot, window, Qt.Key.Key_2)  # the new layer is selected: relabel it
    [layer] = project.annotations(first)
    assert project.label(layer.label_id).name == "disk"
    assert "disk" in window.layers_dock.tree.topLevelItem(0).text(0)

    key(qtbot, window, Qt.Key.Key_B)
    assert window.canvas.tool is Tool.BRUSH
    drag_image(qtbot, window, (20, 20), (60, 20))
    brushed = layer_masks(project, first)[0]
    assert brushed[20, 40] and not mask[20, 40]
    assert brushed.sum() > mask.sum()

    key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(layer_masks(project, first)[0], mask)
    key(qtbot, window, Qt.Key.Key_Z,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert np.array_equal(layer_masks(project, first)[0], brushed)

    key(qtbot, window, Qt.Key.Key_D)
    assert session.image.id != first
    assert window.layers_dock.tree.topLevelItemCount() == 0
    key(qtbot, window, Qt.Key.Key_A)
    assert session.image.id == first
    assert window.layers_dock.tree.topLevelItemCount() == 1
    row = next(i for i in range(window.images_dock.tree.topLevelItemCount())
               if window.images_dock.tree.topLevelItem(i).text(0) == "scene1.png")
    assert window.images_dock.tree.topLevelItem(row).text(2) == "1"
    window.canvas.zoom_by(2.0)
    zoom = window.canvas.zoom
    window.close()

    again = make_window(qtbot, settings, folder)
    assert again.session.image.id == first  # the last image comes back, as it was zoomed
    assert again.canvas.zoom == pytest.approx(zoom, rel=1e-3)
    [reopened] = layer_masks(again.project, first)
    assert np.array_equal(reopened, brushed)
    assert again.project.label(again.project.annotations(first)[0].label_id).name == "disk"
    again.close()


def test_clicks_wait_for_the_embedding_and_the_gui_keeps_running(
        qtbot, settings: QSettings, folder: Path) -> None:
    gate = threading.Event()

    def slow_loader(name, checkpoint, device):
        engine = load_model(name, checkpoint, device)
        embed = engine.embed

        def gated(rgb):
            gate.wait(20)
            return embed(rgb)

        engine.embed = gated
        return engine

    window = make_window(qtbot, settings, folder, loader=slow_loader)
    qtbot.waitUntil(lambda: window.session.embedding == "computing", timeout=10000)
    assert "computing" in window.status.embedding.text()
    click_image(qtbot, window, 160, 120)  # made before the embedding is ready
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    qtbot.waitUntil(lambda: len(ticks) >= 10, timeout=5000)
    assert window.session.candidates == []  # still encoding, and the GUI kept running
    assert window.session.embedding == "computing"
    gate.set()
    wait_candidate(qtbot, window)
    timer.stop()
    assert iou(window.session.candidates[0].mask, disk_mask(160, 120)) > 0.8
    assert "ready" in window.status.embedding.text()
    window.close()


def test_tab_cycles_distinct_candidates_and_escape_clears(
        qtbot, settings: QSettings, tmp_path: Path) -> None:
    ring = tmp_path / "ring"
    ring.mkdir()
    img = np.random.default_rng(2).integers(10, 40, (H, W, 3), dtype=np.uint8)
    img[disk_mask(160, 120) & ~disk_mask(160, 120, 20)] = (225, 220, 210)
    cv2.imwrite(str(ring / "ring.png"), img)
    window = make_window(qtbot, settings, ring)
    click_image(qtbot, window, 195, 120)  # on the ring: the ring, and the ring filled
    wait_candidate(qtbot, window)
    session = window.session
    shown = [c.mask for c in session.candidates]
    assert len(shown) >= 2
    assert all(not np.array_equal(a, b) for i, a in enumerate(shown) for b in shown[i + 1:])
    key(qtbot, window, Qt.Key.Key_Tab)
    assert session.candidate_index == 1
    assert "(2/" in window.status.score.text()
    key(qtbot, window, Qt.Key.Key_Escape)
    assert session.candidates == [] and session.points == []
    assert window.project.annotations(session.image.id) == []
    window.close()


def test_box_drag_then_accept(qtbot, window: MainWindow) -> None:
    key(qtbot, window, Qt.Key.Key_R)
    assert window.canvas.tool is Tool.BOX
    drag_image(qtbot, window, (100, 60), (220, 180))
    wait_candidate(qtbot, window)
    assert window.session.box is not None
    key(qtbot, window, Qt.Key.Key_Enter)
    [mask] = layer_masks(window.project, window.session.image.id)
    assert iou(mask, disk_mask(160, 120)) > 0.8


def test_clicking_a_mask_selects_its_layer_and_delete_removes_it(
        qtbot, window: MainWindow) -> None:
    click_image(qtbot, window, 160, 120)
    wait_candidate(qtbot, window)
    key(qtbot, window, Qt.Key.Key_Return)
    window.session.select([])
    key(qtbot, window, Qt.Key.Key_H)  # pan tool: a click picks the layer under it
    click_image(qtbot, window, 160, 120)
    [layer] = window.project.annotations(window.session.image.id)
    assert window.session.selected == [layer.id]
    assert window.layers_dock.selected() == [layer.id]
    key(qtbot, window, Qt.Key.Key_Delete)
    assert window.project.annotations(window.session.image.id) == []


def test_ctrl_enter_marks_the_image_done(qtbot, window: MainWindow) -> None:
    key(qtbot, window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    image = window.project.image(window.session.image.id)
    assert image.status == ImageStatus.DONE
    item = window.images_dock.tree.topLevelItem(0)
    assert item.text(1) == "done"


def test_f1_lists_the_shortcuts(qtbot, window: MainWindow) -> None:
    key(qtbot, window, Qt.Key.Key_F1)
    assert window.help.isVisible()
    text = window.help.rows_text()
    for shown in ("Ctrl+Z", "Next image", "Accept candidate", "Tab", "F1"):
        assert shown in text
    qtbot.keyClick(window.help, Qt.Key.Key_Space)
    assert not window.help.isVisible()


def test_a_failing_model_is_reported_once_in_the_status_bar(
        qtbot, settings: QSettings, folder: Path) -> None:
    def broken_loader(name, checkpoint, device):
        engine = load_model(name, checkpoint, device)

        def predict(*args, **kwargs):
            raise RuntimeError("kaboom")

        engine.predict = predict
        return engine

    window = make_window(qtbot, settings, folder, loader=broken_loader)
    shown = []
    window.status.messageChanged.connect(lambda text: text and shown.append(text))
    click_image(qtbot, window, 160, 120)
    qtbot.waitUntil(lambda: any("kaboom" in s for s in shown), timeout=10000)
    click_image(qtbot, window, 150, 110)
    qtbot.wait(500)
    assert len([s for s in shown if "kaboom" in s]) == 1
    assert QApplication.activeModalWidget() is None
    window.close()


def test_export_runs_in_the_background_and_writes_coco(
        qtbot, window: MainWindow, tmp_path: Path) -> None:
    from samdesk.views.export_dialog import start_export

    label = window.project.add_label("disk")
    window.session.set_default_label(label.id)
    click_image(qtbot, window, 160, 120)
    wait_candidate(qtbot, window)
    key(qtbot, window, Qt.Key.Key_Return)
    reports: list[str] = []
    out = tmp_path / "out" / "coco.json"
    start_export(window, window.project, "coco-rle", out, False, reports.append)
    qtbot.waitUntil(lambda: bool(reports), timeout=15000)
    assert "1 masks" in reports[0]
    import json
    coco = json.loads(out.read_text())
    assert [c["name"] for c in coco["categories"]] == ["disk"]
    assert len(coco["annotations"]) == 1


def test_random_weight_sam2_tiny_checkpoint_segments_through_the_window(
        qtbot, settings: QSettings, folder: Path, tmp_path: Path) -> None:
    """The SAM 2 path end to end: load, encode, click, refine with logits, accept."""
    from model_factories import SAM21_TINY_CONFIG, make_sam2_checkpoint, registered_test_model

    checkpoint = make_sam2_checkpoint(tmp_path / "sam2.1_hiera_tiny.pt")
    with registered_test_model("sam2", SAM21_TINY_CONFIG) as spec:
        window = make_window(qtbot, settings, folder)
        loaded = []
        window.client.model_loaded.connect(lambda m: loaded.append(m.name))
        window.client.set_model(spec.name, checkpoint, "cpu")
        qtbot.waitUntil(lambda: spec.name in loaded, timeout=120000)
        assert spec.name in window.status.model.text()
        qtbot.waitUntil(lambda: window.session.embedding == "ready", timeout=120000)
        click_image(qtbot, window, 160, 120)
        wait_candidate(qtbot, window, timeout=120000)
        session = window.session
        assert len(session.candidates) == 3  # SAM's three multimask outputs
        assert session.candidates[0].logits.shape == (1, 256, 256)
        first = session.candidates
        click_image(qtbot, window, 20, 20, Qt.MouseButton.RightButton)
        qtbot.waitUntil(lambda: session.candidates is not first and bool(session.candidates),
                        timeout=120000)
        assert len(session.candidates) == 1  # refining: one mask, from the previous logits
        shown = session.candidates[0].mask.copy()
        key(qtbot, window, Qt.Key.Key_Return)
        [layer] = window.project.annotations(session.image.id)
        assert np.array_equal(masks.decode(layer.rle), shown)
        flat = [v for point in layer.prompts["points"] for v in point]
        assert flat == pytest.approx([160, 120, 1, 20, 20, 0], abs=1.0)
        window.close()


def test_status_bar_names_the_device_the_model_really_runs_on(qtbot, settings, folder):
    window = make_window(qtbot, settings)
    with qtbot.waitSignal(window.client.model_loaded, timeout=20_000):
        assert window.open_folder(folder)  # loads the default model on device "auto"
    qtbot.waitUntil(lambda: "loading" not in window.status.model.text(), timeout=20_000)
    assert window.status.model.text() == "Model: grabcut · cpu"
    window.close()


def test_a_step_of_closing_that_fails_is_one_line_and_the_rest_still_runs(
        qtbot, settings: QSettings, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An exception out of closeEvent reached shiboken, which crashed printing it
    (a segfault when a window closed). Now each step is guarded: the failure is one
    line, the project's lock is given back and the worker's thread ends."""
    window = make_window(qtbot, settings, folder)
    client = window.client

    def broken() -> None:
        raise RuntimeError("the session would not close")

    window.session.close = broken  # type: ignore[method-assign]
    window.close()
    assert window.project is None and window.session is None
    assert not client.running
    err = capsys.readouterr().err
    assert "the session would not close" in err and len(err.strip().splitlines()) == 1
    with Project.open(folder) as again:  # the lock was given back
        assert len(again.images()) == len(CENTRES)
