# ruff: noqa: F811 - pytest fixtures imported from test_window are parameters here
"""Pending boxes in the window: drawn dashed in their label's colour, G / Shift+G make masks."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QColor

from samdesk import masks
from samdesk.inference.engines.loading import load_model
from samdesk.project import Project
from tests.views.test_window import (  # noqa: F401 - the fixtures
    CENTRES,
    R,
    disk_mask,
    folder,
    iou,
    key,
    make_window,
    settings,
    wait_loaded,
)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture
def boxed(folder: Path) -> Path:
    """Each scene's disk has a pending box labelled "ball"; scene1 has an unlabelled one too."""
    with Project.open(folder) as project:
        ball = project.add_label("ball", color="#ff8800")
        for i, (cx, cy) in enumerate(CENTRES):
            image = project.image_by_path(f"scene{i + 1}.png")
            pad = R + 8
            boxes = [((cx - pad, cy - pad, cx + pad, cy + pad), ball.id)]
            if i == 0:
                boxes.append(((5, 5, 60, 50), None))
            project.add_pending_boxes(image.id, boxes, "boxes.json")
    return folder


def test_boxes_show_and_g_makes_their_masks_off_the_gui_thread(qtbot, settings: QSettings,
                                                               boxed: Path) -> None:
    threads: list[threading.Thread] = []

    class Recording:
        def __init__(self, inner):
            self.inner, self.model_id = inner, inner.model_id

        def embed(self, rgb):
            return self.inner.embed(rgb)

        def predict(self, *args, **kwargs):
            threads.append(threading.current_thread())
            return self.inner.predict(*args, **kwargs)

    window = make_window(qtbot, settings, boxed,
                         loader=lambda *a: Recording(load_model(*a)))
    try:
        project = window.project
        assert project is not None
        scene1 = project.image_by_path("scene1.png").id
        window.open_image(scene1)
        wait_loaded(qtbot, window)
        drawn = window.canvas.pending_boxes
        items = drawn.items()
        assert len(items) == 2 and all(item.scene() is window.canvas.scene() for item in items)
        assert items[0].pen().color() == QColor("#ff8800")
        assert items[0].pen().style() == Qt.PenStyle.DashLine
        assert items[0].rect().getCoords() == pytest.approx(
            (CENTRES[0][0] - R - 8, CENTRES[0][1] - R - 8, CENTRES[0][0] + R + 8,
             CENTRES[0][1] + R + 8))
        assert [b.caption for b in drawn.boxes] == ["ball", ""]

        key(qtbot, window, Qt.Key.Key_G)
        qtbot.waitUntil(lambda: window.session.boxes_in_progress == 0
                        and len(project.pending_boxes(scene1)) < 2, timeout=20000)
        made = [a for a in project.annotations(scene1) if "pending_box" in a.prompts]
        ball = next(a for a in made if a.label_id is not None)
        assert project.label(ball.label_id).name == "ball"
        assert iou(masks.decode(ball.rle), disk_mask(*CENTRES[0])) > 0.8
        assert threads and threading.main_thread() not in threads
        # what is left on the canvas: only a box whose mask came out empty, if any
        qtbot.waitUntil(lambda: len(window.canvas.pending_boxes.items())
                        == len(project.pending_boxes(scene1)))
        assert "made from boxes" in window.statusBar().currentMessage()

        key(qtbot, window, Qt.Key.Key_G, Qt.KeyboardModifier.ShiftModifier)  # every image
        qtbot.waitUntil(lambda: window.session.boxes_in_progress == 0 and all(
            not project.pending_boxes(project.image_by_path(f"scene{i}.png").id)
            for i in (2, 3)), timeout=20000)
        for i in (2, 3):
            image = project.image_by_path(f"scene{i}.png").id
            [layer] = project.annotations(image)
            assert iou(masks.decode(layer.rle), disk_mask(*CENTRES[i - 1])) > 0.8

        undone = project.undo()  # the last image's masks, one step: its box is back
        assert undone == "Masks from 1 boxes"
        assert sum(len(project.pending_boxes(project.image_by_path(f"scene{i}.png").id))
                   for i in (2, 3)) == 1
    finally:
        window.close()


def test_the_keys_are_in_the_help(qtbot, settings: QSettings, boxed: Path) -> None:
    window = make_window(qtbot, settings, boxed)
    try:
        window.show_help()
        text = window.help.rows_text()
        assert "Masks from pending boxes (this image)" in text and ">G<" in text
        assert "Shift+G" in text
    finally:
        window.close()


def test_no_boxes_says_so(qtbot, settings: QSettings, folder: Path) -> None:
    window = make_window(qtbot, settings, folder)
    try:
        key(qtbot, window, Qt.Key.Key_G)
        assert window.statusBar().currentMessage() == "No pending boxes on this image"
        assert np.all([not window.canvas.pending_boxes.items()])
    finally:
        window.close()
