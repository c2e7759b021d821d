# ruff: noqa: F811 - pytest fixtures imported from other test modules are parameters here
"""Tracks and propagation in the window, driven as a person would.

The real window, client, worker thread, SAM 2 video engine and runner, with
a tiny random-weight SAM 2.1, on 6 small frames of a tmp project: make a
track of a mask on frame 0, propagate it forward (progress in the status
bar, masks in the store, the track in the layers dock, the timeline's
cells), go to a frame by clicking its cell, relabel the track, cancel a run
mid-way, and see propagation refused for GrabCut.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QColor

from samdesk import masks
from samdesk.inference.worker.cache import EmbeddingCache
from samdesk.inference.worker.client import InferenceClient
from samdesk.project import Project
from samdesk.views.layers_dock import COL_TRACK
from samdesk.views.main_window import MainWindow
from samdesk.views.timeline_dock import EMPTY_COLOR
from tests.inference.worker.test_propagate import (  # noqa: F401 - sam2_tiny is a fixture
    N_FRAMES,
    WAIT_MS,
    Gate,
    centre,
    disk,
    sam2_tiny,
    small_video,
    write_frames,
)
from tests.views.test_window import key, settings, wait_loaded  # noqa: F401 - a fixture

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning",
                                        "ignore:cannot import name '_C':UserWarning")


def frames_project(folder: Path, sequence: bool, track: bool) -> tuple[list[int], int, int]:
    """Frames with labels "ball" and "cup" and a person's "ball" mask on frame 0
    (in a track of its own when ``track``); the frame ids, the layer id, ball's id."""
    write_frames(folder)
    with Project.open(folder) as project:
        project.set_sequence(sequence)
        ball = project.add_label("ball", color="#ff8800")
        project.add_label("cup", color="#3070ff")
        ids = project.frame_ids()
        project.ensure_image_infos(ids)
        layer = project.add_annotation(ids[0], masks.encode(disk(*centre(0))), ball.id)
        if track:
            project.set_layer_track(layer.id, project.add_track(ball.id).id)
        return ids, layer.id, ball.id


def open_window(qtbot, settings: QSettings, folder: Path, model: tuple[str, Path] | None,
                gate: Gate | None = None) -> MainWindow:
    client = InferenceClient(EmbeddingCache(None), image_loader=gate or Gate(),
                             video_loader=small_video)
    window = MainWindow(settings, client)
    qtbot.addWidget(window)
    window.resize(1300, 850)
    window.show()
    qtbot.waitExposed(window)
    assert window.open_folder(folder)
    wait_loaded(qtbot, window)
    if model is not None:
        with qtbot.waitSignal(client.model_loaded, timeout=WAIT_MS,
                              check_params_cb=lambda m: m.name == model[0]):
            client.set_model(model[0], model[1], "cpu")
    return window


def pixel(widget, x: int, y: int) -> QColor:
    return widget.grab().toImage().pixelColor(x, y)


def test_propagate_forward_shows_progress_the_track_and_the_timeline(
        qtbot, settings: QSettings, tmp_path: Path, sam2_tiny: tuple[str, Path]) -> None:
    folder = tmp_path / "frames"
    ids, layer_id, ball = frames_project(folder, sequence=False, track=False)
    window = open_window(qtbot, settings, folder, sam2_tiny)
    try:
        project, tc, act = window.project, window.track_controls, window.actions_by_name
        forward = act["propagate_forward"]
        assert not forward.isEnabled() and "not marked a sequence" in forward.toolTip()
        act["sequence"].trigger()  # File > Frames are a sequence
        assert project.is_sequence and act["sequence"].isChecked()
        assert forward.isEnabled() and act["propagate_backward"].isEnabled()

        window.session.select([layer_id])
        act["track_new"].trigger()  # Track > New track from selected layer
        [track] = project.tracks()
        assert project.annotation(layer_id).track_id == track.id
        row = window.layers_dock.item_for(layer_id)
        assert row is not None and row.text(COL_TRACK) == f"#{track.id}"
        strip = tc.timeline.strip
        assert [c.state for c in tc.timeline.cells()] == ["edited"] + ["empty"] * 5
        centre_of = [strip.cell_rect(i).center() for i in range(N_FRAMES)]
        assert pixel(strip, centre_of[0].x(), centre_of[0].y() + 9) == QColor("#ff8800")
        assert pixel(strip, centre_of[2].x(), centre_of[2].y()) == QColor(EMPTY_COLOR)

        seen: list[tuple[bool, str]] = []
        tc.tracks.progress.connect(lambda *_: seen.append((tc.bar.isVisible(), tc.bar.text())))
        forward.trigger()
        assert tc.bar.isVisible() and tc.stop.isVisible()
        assert act["propagate_cancel"].isEnabled() and not forward.isEnabled()
        qtbot.waitUntil(lambda: tc.tracks.last_done is not None, timeout=WAIT_MS)
        assert seen and all(visible for visible, _ in seen)
        assert seen[-1][1] == f"Propagating {N_FRAMES} of {N_FRAMES} frames"
        assert not tc.bar.isVisible() and not act["propagate_cancel"].isEnabled()
        assert window.statusBar().currentMessage() == \
            "Propagated forward: 5 masks over 6 frames"

        layers = project.track_layers(track.id)
        assert sorted(layers) == sorted(ids)  # a mask on every frame, in the store
        assert layers[ids[0]].edited and layers[ids[0]].id == layer_id
        for image_id in ids[1:]:
            made = layers[image_id]
            assert not made.edited and made.object_score is not None
            assert made.label_id == ball and masks.decode(made.rle).any()
        cells = tc.timeline.cells()
        assert [c.state for c in cells] == ["edited"] + ["propagated"] * 5
        assert cells[3].score == pytest.approx(layers[ids[3]].object_score)
        assert pixel(strip, centre_of[2].x(), centre_of[2].y()) != QColor(EMPTY_COLOR)

        qtbot.mouseClick(strip, Qt.MouseButton.LeftButton, pos=centre_of[3])
        assert window.session.image.id == ids[3]  # the window went to frame 4
        wait_loaded(qtbot, window)
        assert window.images_dock.tree.currentItem().text(0).startswith("frame_003")
        assert strip.current == 3
        propagated = layers[ids[3]].id
        assert window.session.selected == [propagated]
        row = window.layers_dock.item_for(propagated)
        assert row is not None and row.text(COL_TRACK) == f"#{track.id} auto"

        menu = window.layers_dock.track_menu(propagated)
        [relabel] = [a.menu() for a in menu.actions() if a.menu() is not None]
        next(a for a in relabel.actions() if a.text() == "cup").trigger()
        cup = project.label_by_name("cup").id
        assert project.track(track.id).label_id == cup
        assert {project.annotation(a.id).label_id for a in layers.values()} == {cup}
        assert "relabelled as cup on 6 frames" in window.statusBar().currentMessage()
        qtbot.waitUntil(lambda: "cup" in window.layers_dock.item_for(propagated).text(0))

        key(qtbot, window, Qt.Key.Key_1)  # ball's hotkey on the selected tracked mask
        assert {project.annotation(a.id).label_id for a in layers.values()} == {ball}
        assert project.undo() == "Label as ball"  # one step for every frame
        assert {project.annotation(a.id).label_id for a in layers.values()} == {cup}

        key(qtbot, window, Qt.Key.Key_Delete)  # "not on this frame": an absent mark
        assert project.absent_frames(track.id) == {ids[3]}
        qtbot.waitUntil(lambda: tc.timeline.cells()[3].state == "absent")
        assert [c.state for c in tc.timeline.cells()].count("propagated") == 4
    finally:
        window.close()


def test_cancel_mid_run_keeps_the_frames_written_and_says_so(
        qtbot, settings: QSettings, tmp_path: Path, sam2_tiny: tuple[str, Path]) -> None:
    folder = tmp_path / "frames"
    ids, layer_id, _ = frames_project(folder, sequence=True, track=True)
    gate = Gate(held=folder / "frame_003.png")  # frame 4 waits until the test lets it go
    window = open_window(qtbot, settings, folder, sam2_tiny, gate)
    try:
        project, tc = window.project, window.track_controls
        [track] = project.tracks()
        window.session.select([layer_id])
        window.actions_by_name["propagate_forward"].trigger()
        qtbot.waitUntil(lambda: ids[1] in project.track_layers(track.id), timeout=WAIT_MS)
        qtbot.waitUntil(lambda: tc.timeline.cells()[1].state == "propagated")  # live
        assert tc.tracks.running is not None and tc.stop.isVisible()  # frame 4 is held
        qtbot.mouseClick(tc.stop, Qt.MouseButton.LeftButton)  # Cancel in the status bar
        gate.open()
        qtbot.waitUntil(lambda: tc.tracks.last_done is not None, timeout=WAIT_MS)
        assert tc.tracks.last_done.cancelled
        message = window.statusBar().currentMessage()
        assert "Propagation cancelled after" in message and "are kept" in message
        layers = project.track_layers(track.id)
        assert ids[1] in layers and ids[2] in layers  # made before the cancel: kept
        assert ids[4] not in layers and ids[5] not in layers
        states = [c.state for c in tc.timeline.cells()]
        assert states[:3] == ["edited", "propagated", "propagated"]
        assert states[4:] == ["empty", "empty"]
        assert not tc.bar.isVisible() and window.actions_by_name["propagate_forward"].isEnabled()
    finally:
        gate.open()
        window.close()


def test_propagate_is_disabled_for_grabcut_with_a_reason(qtbot, settings: QSettings,
                                                         tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    ids, layer_id, _ = frames_project(folder, sequence=True, track=True)
    window = open_window(qtbot, settings, folder, None)  # the default: GrabCut
    try:
        tc = window.track_controls
        qtbot.waitUntil(lambda: tc.model_name == "grabcut", timeout=WAIT_MS)
        for direction in ("forward", "backward", "both"):
            action = window.actions_by_name[f"propagate_{direction}"]
            assert not action.isEnabled()
            assert "GrabCut" in action.toolTip() and "SAM 2" in action.toolTip()
        assert window.actions_by_name["track_new"].isEnabled()
        window.session.select([layer_id])
        assert not tc.tracks.propagate("forward")
        assert window.statusBar().currentMessage().startswith("Cannot propagate: GrabCut")
        assert tc.tracks.running is None and not tc.bar.isVisible()
    finally:
        window.close()
