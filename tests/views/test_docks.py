"""The docks and panels on their own: what a person sees and what their clicks ask for."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget

from samdesk.annotations import ImageRecord, ImageStatus, Label
from samdesk.views.help_overlay import HelpOverlay, shortcut_rows
from samdesk.views.images_dock import ImagesDock
from samdesk.views.labels_dock import LabelsDock
from samdesk.views.layers_dock import LayerRow, LayersDock
from samdesk.views.text_panel import TextPanel

RECORDS = [
    ImageRecord(1, "a/cat1.jpg", status=ImageStatus.DONE, annotation_count=3),
    ImageRecord(2, "a/dog.jpg", status=ImageStatus.TODO),
    ImageRecord(3, "b/cat2.png", status=ImageStatus.ERROR, error="truncated file"),
]


def test_images_dock_shows_status_and_counts_and_filters(qtbot) -> None:
    dock = ImagesDock()
    qtbot.addWidget(dock)
    dock.set_images(RECORDS)
    rows = [[dock.tree.topLevelItem(i).text(c) for c in range(3)] for i in range(3)]
    assert rows == [["a/cat1.jpg", "done", "3"], ["a/dog.jpg", "todo", "0"],
                    ["b/cat2.png", "error", "0"]]
    assert "truncated" in dock.tree.topLevelItem(2).toolTip(0)
    dock.filter_edit.setText("CAT")
    assert dock.visible_ids() == [1, 3]
    dock.status_combo.setCurrentIndex(dock.status_combo.findData("error"))
    assert dock.visible_ids() == [3]
    dock.filter_edit.clear()
    dock.status_combo.setCurrentIndex(0)
    dock.update_image(ImageRecord(2, "a/dog.jpg", status=ImageStatus.IN_PROGRESS,
                                  annotation_count=1))
    assert dock.tree.topLevelItem(1).text(1) == "in progress"
    with qtbot.waitSignal(dock.image_activated) as opened:
        dock.tree.itemDoubleClicked.emit(dock.tree.topLevelItem(1), 0)
    assert opened.args == [2]


def test_layers_dock_lists_front_first_and_emits_edits(qtbot) -> None:
    dock = LayersDock()
    qtbot.addWidget(dock)
    rows = [LayerRow(1, "cat", "#ff0000", True, False, 0.91),
            LayerRow(2, "unlabelled", "#b0b0b0", False, True)]
    dock.set_layers(rows, selected=[2])
    assert dock.ids_front_to_back() == [2, 1]
    assert dock.selected() == [2]
    assert dock.tree.topLevelItem(1).text(0) == "cat  (0.91)"
    assert dock.tree.topLevelItem(0).checkState(1) == Qt.CheckState.Unchecked
    with qtbot.waitSignal(dock.visible_toggled) as shown:
        dock.tree.topLevelItem(0).setCheckState(1, Qt.CheckState.Checked)
    assert shown.args == [2, True]
    with qtbot.waitSignal(dock.locked_toggled) as locked:
        dock.tree.topLevelItem(1).setCheckState(2, Qt.CheckState.Checked)
    assert locked.args == [1, True]
    with qtbot.waitSignal(dock.move_requested) as moved:
        qtbot.mouseClick(dock.buttons["down"], Qt.MouseButton.LeftButton)
    assert moved.args == [2, -1]
    assert not dock.buttons["merge"].isEnabled()
    with qtbot.waitSignal(dock.selection_changed) as chosen:
        dock.tree.topLevelItem(1).setSelected(True)
    assert sorted(chosen.args[0]) == [1, 2]
    assert dock.buttons["merge"].isEnabled()
    with qtbot.waitSignal(dock.merge_requested) as merged:
        qtbot.mouseClick(dock.buttons["merge"], Qt.MouseButton.LeftButton)
    assert sorted(merged.args[0]) == [1, 2]
    with qtbot.waitSignal(dock.order_changed) as order:
        dock.tree.reordered.emit()  # what the tree says after a drag and drop
    assert order.args == [[1, 2]]  # back to front: the reverse of the rows


def test_labels_dock_marks_the_default_and_asks_before_deleting(qtbot, monkeypatch) -> None:
    dock = LabelsDock()
    qtbot.addWidget(dock)
    labels = [Label(1, "cat", "#ff0000", "1"), Label(2, "dog", "#00ff00", "2")]
    dock.set_labels(labels, default=2, counts={1: 4})
    assert dock.list.item(1).text() == "2  dog  (default)"
    assert dock.list.item(1).font().bold() and not dock.list.item(0).font().bold()
    with qtbot.waitSignal(dock.default_changed) as picked:
        dock.list.setCurrentRow(0)
    assert picked.args == [1]
    asked = []
    monkeypatch.setattr(dock, "ask_delete_mode",
                        lambda label, count: asked.append((label.name, count)) or 2)
    with qtbot.waitSignal(dock.delete_requested) as deleted:
        qtbot.mouseClick(dock.buttons["delete"], Qt.MouseButton.LeftButton)
    assert asked == [("cat", 4)] and deleted.args == [1, 2]
    monkeypatch.setattr(dock, "ask_text", lambda *a, **k: "kitten")
    with qtbot.waitSignal(dock.rename_requested) as renamed:
        qtbot.mouseClick(dock.buttons["rename"], Qt.MouseButton.LeftButton)
    assert renamed.args == [1, "kitten"]
    assert LabelsDock.ask_delete_mode(dock, labels[1], 0) == "unlabel"  # no masks: nothing to ask


def test_text_panel_runs_the_phrase_and_accepts_ticked(qtbot) -> None:
    panel = TextPanel()
    qtbot.addWidget(panel)
    panel.phrase.setText("dog . cat")
    panel.box_threshold.setValue(0.4)
    with qtbot.waitSignal(panel.run_requested) as run:
        qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    assert run.args == ["dog . cat", 0.4, 0.25]
    panel.set_detections([("dog", 0.8), ("cat", 0.5)])
    panel.results.item(0).setCheckState(Qt.CheckState.Unchecked)
    with qtbot.waitSignal(panel.accept_requested) as ticked:
        qtbot.mouseClick(panel.accept_ticked, Qt.MouseButton.LeftButton)
    assert ticked.args == [[1]]
    with qtbot.waitSignal(panel.accept_requested) as everything:
        qtbot.mouseClick(panel.accept_all, Qt.MouseButton.LeftButton)
    assert everything.args == [[0, 1]]


def test_help_overlay_lists_every_action_with_a_shortcut(qtbot) -> None:
    host = QWidget()
    qtbot.addWidget(host)
    host.resize(400, 300)
    undo, plain = QAction("&Undo", host), QAction("No keys", host)
    undo.setShortcuts([QKeySequence("Ctrl+Z")])
    assert shortcut_rows([undo, plain]) == [("Ctrl+Z", "Undo")]
    overlay = HelpOverlay(host)
    host.show()
    overlay.show_for([undo])
    assert overlay.isVisible() and overlay.geometry() == host.rect()
    assert "Ctrl+Z" in overlay.rows_text() and "Undo" in overlay.rows_text()
    qtbot.mouseClick(overlay, Qt.MouseButton.LeftButton)
    assert not overlay.isVisible()


def test_model_dialog_offers_only_installed_models_and_checks_added_files(
        qtbot, tmp_path, monkeypatch) -> None:
    from PySide6.QtCore import QSettings

    from samdesk.views.model_dialog import ModelChoice, ModelDialog, load_choice, save_choice

    monkeypatch.setenv("SAMDESK_MODELS", str(tmp_path / "models"))
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    save_choice(settings, ModelChoice("sam_vit_b", "gpu", "groundingdino_swint_ogc"))
    assert load_choice(settings) == ModelChoice("grabcut", "gpu", None)  # nothing installed
    save_choice(settings, ModelChoice("grabcut", "cpu", None, release_when_idle=True))
    assert load_choice(settings).release_when_idle
    dialog = ModelDialog(ModelChoice(release_when_idle=True))
    qtbot.addWidget(dialog)
    assert dialog.release.isChecked()
    dialog.release.setChecked(False)
    assert dialog.choice().release_when_idle is False
    offered = [dialog.segmenter.itemData(i) for i in range(dialog.segmenter.count())]
    assert offered == ["grabcut"]
    assert dialog.detector.count() == 1  # "None"
    rows = {dialog.tree.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole):
            dialog.tree.topLevelItem(i).text(2) for i in range(dialog.tree.topLevelItemCount())}
    assert rows["grabcut"] == "built in" and rows["sam_vit_b"] == "not installed"
    bogus = tmp_path / "notes.pth"
    bogus.write_text("not a checkpoint")
    dialog.add_file("sam_vit_b", bogus)  # checked on a background thread
    qtbot.waitUntil(lambda: dialog.job is None, timeout=10000)
    assert "not a PyTorch checkpoint" in dialog.state.text()
    assert dialog.segmenter.count() == 1


def test_status_bar_estimates_encode_progress_from_the_last_encode(qtbot, monkeypatch) -> None:
    from samdesk.views import status as status_module
    from samdesk.views.status import StatusBar

    clock = [100.0]
    monkeypatch.setattr(status_module.time, "monotonic", lambda: clock[0])
    bar = StatusBar()
    qtbot.addWidget(bar)
    bar.set_embedding("computing")
    clock[0] += 1.5
    bar._tick()
    assert bar.embedding.text() == "Embedding: computing 1.5 s"  # nothing to estimate from
    clock[0] += 2.5
    bar.set_embedding("ready")
    assert bar.embedding.text() == "Embedding: ready"
    bar.set_embedding("computing")
    clock[0] += 1.0
    bar._tick()
    assert bar.embedding.text() == "Embedding: computing ~25% 1.0 s"
    clock[0] += 2.9
    bar._tick()
    assert bar.embedding.text() == "Embedding: computing ~97% 3.9 s"
    clock[0] += 10.1
    bar._tick()  # past the estimate: the seconds so far, no percentage stuck at 99
    assert bar.embedding.text() == "Embedding: computing 14.0 s (the last encode took 4.0 s)"


def test_model_dialog_registers_a_fine_tuned_checkpoint_once_asked(
        qtbot, tmp_path, monkeypatch) -> None:
    from samdesk.inference.models import checkpoints
    from samdesk.views.model_dialog import ModelChoice, ModelDialog

    monkeypatch.setenv("SAMDESK_MODELS", str(tmp_path / "models"))
    tuned = tmp_path / "sam_vit_b_tuned.pth"
    tuned.write_bytes(b"PK\x03\x04" + b"\0" * 1000)  # a zip-style checkpoint, not the official
    dialog = ModelDialog(ModelChoice())
    qtbot.addWidget(dialog)
    asked = []
    monkeypatch.setattr(dialog, "ask_fine_tuned", lambda name, path: asked.append(name) or False)
    dialog.add_file("sam_vit_b", tuned)
    qtbot.waitUntil(lambda: bool(asked) and dialog.job is None, timeout=10000)
    assert "not added" in dialog.state.text() and "--force" not in dialog.state.text()
    assert checkpoints.installed("sam_vit_b") is None

    monkeypatch.setattr(dialog, "ask_fine_tuned", lambda name, path: asked.append(name) or True)
    dialog.add_file("sam_vit_b", tuned)
    qtbot.waitUntil(lambda: len(asked) == 2 and dialog.job is None
                    and "fine-tuned" in dialog.state.text(), timeout=10000)
    assert dialog.state.text().endswith(": done")
    assert checkpoints.installed("sam_vit_b") == tuned.resolve()
    rows = {dialog.tree.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole):
            dialog.tree.topLevelItem(i).text(2) for i in range(dialog.tree.topLevelItemCount())}
    assert rows["sam_vit_b"] == str(tuned.resolve())


def test_model_dialog_keeps_the_selected_row_after_a_failed_fetch(
        qtbot, tmp_path, monkeypatch) -> None:
    from samdesk.inference.engines.base import EngineError
    from samdesk.views import model_dialog
    from samdesk.views.model_dialog import ModelChoice, ModelDialog

    monkeypatch.setenv("SAMDESK_MODELS", str(tmp_path / "models"))

    def offline(name, progress, cancelled):
        raise EngineError("https://example.invalid/sam.pth: no network")

    monkeypatch.setattr(model_dialog, "fetch_files", offline)
    dialog = ModelDialog(ModelChoice())
    qtbot.addWidget(dialog)
    row = next(dialog.tree.topLevelItem(i) for i in range(dialog.tree.topLevelItemCount())
               if dialog.tree.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole) == "sam_vit_l")
    dialog.tree.setCurrentItem(row)
    qtbot.mouseClick(dialog.fetch_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.job is None and "no network" in dialog.state.text(),
                    timeout=10000)
    assert dialog.selected_name() == "sam_vit_l"


def test_images_dock_opens_on_a_single_click_and_on_the_arrow_keys(qtbot) -> None:
    dock = ImagesDock()
    qtbot.addWidget(dock)
    dock.show()
    opened: list[int] = []
    dock.image_activated.connect(opened.append)
    dock.set_images(RECORDS)
    dock.set_current(1)  # the window marks the open image: nothing to open
    assert opened == []
    tree = dock.tree
    rect = tree.visualItemRect(tree.topLevelItem(1))
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert opened == [2]
    dock.set_current(2)
    qtbot.keyClick(tree, Qt.Key.Key_Down)
    assert opened == [2, 3]
    dock.set_current(3)
    qtbot.keyClick(tree, Qt.Key.Key_Up)
    assert opened == [2, 3, 2]
    dock.set_images(RECORDS)  # a refresh of the list opens nothing
    assert opened == [2, 3, 2]
