"""The main window: a thin assembler of the canvas, docks, menus and status bar.

It owns the :class:`~samdesk.inference.worker.client.InferenceClient` (one worker
thread for the whole window) and, while a project is open, one
:class:`~samdesk.views.session.Session` that does the work. Here are only the
wiring (signals to session methods), the menus and shortcuts, and what is
remembered between runs in QSettings: recent folders, window layout, the
last image of each project, and the chosen models.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Qt
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMessageBox

from samdesk import errorlog
from samdesk.errors import SamdeskError
from samdesk.inference.models import checkpoints
from samdesk.inference.worker.client import InferenceClient
from samdesk.inference.worker.requests import Failure, ModelLoaded, Progress
from samdesk.project import Project
from samdesk.views import changed_images, export_dialog, import_dialog
from samdesk.views.canvas import BRUSH_STEP, Canvas, Tool
from samdesk.views.help_overlay import HelpOverlay
from samdesk.views.images_dock import ImagesDock
from samdesk.views.labels_dock import LabelsDock
from samdesk.views.layers_dock import LayerRow, LayersDock
from samdesk.views.model_dialog import (
    ModelChoice,
    ModelDialog,
    apply_server,
    load_choice,
    save_choice,
)
from samdesk.views.qtutil import add_error_sink, guard, guarded, report_slot_error
from samdesk.views.runtime_combo import runtime_shown
from samdesk.views.session import Session
from samdesk.views.status import StatusBar
from samdesk.views.text_panel import TextPanel
from samdesk.views.track_controls import TrackControls

MAX_RECENT = 8
TOOL_KEYS = ((Tool.POINT, "&Point", "P"), (Tool.BOX, "&Box", "R"), (Tool.BRUSH, "B&rush", "B"),
             (Tool.ERASER, "&Eraser", "E"), (Tool.TEXT, "&Text", "T"), (Tool.PAN, "P&an", "H"))


class MainWindow(QMainWindow):
    """The annotation window. ``settings`` defaults to the user's samdesk settings."""

    def __init__(self, settings: QSettings | None = None,
                 client: InferenceClient | None = None) -> None:
        super().__init__()
        self.setWindowTitle("samdesk")
        self.resize(1400, 900)
        self.settings = settings or QSettings("samdesk", "samdesk")
        self.client = client or InferenceClient()
        self.project: Project | None = None
        self.session: Session | None = None
        self.jobs: list[export_dialog.BackgroundJob] = []
        self.canvas = Canvas(self)
        self.setCentralWidget(self.canvas)
        self.images_dock, self.layers_dock = ImagesDock(self), LayersDock(self)
        self.labels_dock, self.text_panel = LabelsDock(self), TextPanel(self)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.images_dock)
        for dock in (self.layers_dock, self.labels_dock, self.text_panel):
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.text_panel.hide()
        self.status = StatusBar(self)
        self.setStatusBar(self.status)
        self.help = HelpOverlay(self)
        self.choice = load_choice(self.settings)
        self.actions_by_name: dict[str, QAction] = {}
        self._last_cursor: tuple[float, float] | None = None
        self._view_pending = False
        self._error_box: QMessageBox | None = None
        self._remove_sink = add_error_sink(self._show_error)
        self._build_menus()
        self.track_controls = TrackControls(self)  # Track menu, timeline, propagation
        self._connect()
        self.client.start()
        self.apply_models(self.choice)
        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
            self.restoreState(self.settings.value("window/state", QByteArray()))

    # ------------------------------------------------------------------ menus
    def _act(self, menu_name: str, name: str, text: str, slot: Callable[[], object],
             keys: tuple[str, ...] = (), checkable: bool = False) -> QAction:
        action = QAction(text, self)
        action.setShortcuts([QKeySequence(k) for k in keys])
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setCheckable(checkable)
        if keys:
            action.setToolTip(f"{text.replace('&', '')} ({keys[0]})")
        guarded_slot = guard(slot, text.replace("&", ""))
        action.triggered.connect(lambda _checked=False: guarded_slot())
        self.menus[menu_name].addAction(action)
        self.addAction(action)
        self.actions_by_name[name] = action
        return action

    def _on(self, method: str, *args: object) -> Callable[[], None]:
        """A slot that calls ``session.method(*args)`` when a project is open."""
        return guard(lambda: getattr(self.session, method)(*args) if self.session else None,
                     method)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        self.menus = {n: bar.addMenu(t) for n, t in (("file", "&File"), ("edit", "&Edit"),
                      ("tools", "&Tools"), ("view", "&View"), ("help", "&Help"))}
        a = self._act
        a("file", "open", "&Open Folder…", self.choose_folder, ("Ctrl+O",))
        self.recent_menu = self.menus["file"].addMenu("Open &Recent")
        a("file", "export", "&Export…", self.export, ("Ctrl+E",))
        a("file", "import", "&Import…", self.import_dataset, ("Ctrl+I",))
        a("file", "models", "&Models…", self.choose_models, ("Ctrl+M",))
        a("file", "quit", "&Quit", self.close, ("Ctrl+Q",))
        a("edit", "undo", "&Undo", self._on("undo"), ("Ctrl+Z",))
        a("edit", "redo", "&Redo", self._on("redo"), ("Ctrl+Shift+Z", "Ctrl+Y"))
        a("edit", "accept", "&Accept candidate", self._on("accept"), ("Return", "Enter"))
        a("edit", "cycle", "&Next candidate", self._on("cycle_candidate"), ("Tab",))
        a("edit", "clear", "&Clear prompts", self.escape, ("Esc",))
        a("edit", "refine", "Re&fine selected mask", self._on("refine_selected"), ("F",))
        a("edit", "delete", "&Delete selected masks", self._on("delete_layers"), ("Del",))
        a("edit", "merge", "&Merge selected masks", self._on("merge_layers"), ("M",))
        a("edit", "duplicate", "D&uplicate mask", self._on("duplicate_layer"), ("Ctrl+D",))
        a("edit", "done", "Mark image &done", self._on("mark_done"),
          ("Ctrl+Return", "Ctrl+Enter"))
        a("edit", "boxes", "Masks from pendin&g boxes (this image)",
          self._on("boxes_to_masks"), ("G",))
        a("edit", "boxes_all", "Masks from pending boxes (all images)",
          self._on("boxes_to_masks", True), ("Shift+G",))
        self.menus["label"] = self.menus["edit"].addMenu("Set &label")
        for digit in range(1, 10):
            a("label", f"label{digit}", f"Label with key {digit}",
              self._on("apply_hotkey", str(digit)), (str(digit),))
        for tool, text, key in TOOL_KEYS:
            a("tools", f"tool_{tool.value}", text, lambda t=tool: self.set_tool(t), (key,),
              checkable=True)
        a("tools", "brush_up", "Brush bigger", lambda: self._brush(BRUSH_STEP), ("]",))
        a("tools", "brush_down", "Brush smaller", lambda: self._brush(1 / BRUSH_STEP), ("[",))
        a("view", "prev", "&Previous image", lambda: self.step_image(-1), ("A", "PgUp"))
        a("view", "next", "&Next image", lambda: self.step_image(1), ("D", "PgDown"))
        a("view", "fit", "&Fit to window", self.canvas.fit, ("Ctrl+0",))
        a("view", "one", "&Actual pixels", self.canvas.zoom_1to1, ("Ctrl+1",))
        for dock in (self.images_dock, self.layers_dock, self.labels_dock, self.text_panel):
            self.menus["view"].addAction(dock.toggleViewAction())
        a("help", "help", "&Keyboard shortcuts", self.show_help, ("F1", "?"))
        toolbar = self.addToolBar("Tools")
        toolbar.setObjectName("tools_toolbar")
        for name in ("open", None, "undo", "redo", None, *[f"tool_{t.value}" for t, _, _ in
                     TOOL_KEYS], None, "prev", "next", "done", None, "models", "help"):
            if name is None:
                toolbar.addSeparator()
            else:
                toolbar.addAction(self.actions_by_name[name])
        self.set_tool(Tool.POINT)
        self._fill_recent()

    def _connect(self) -> None:
        c = self.canvas
        c.point_added.connect(self._with("add_point"))
        c.box_drawn.connect(self._with("set_box"))
        c.brush_stroke.connect(self._with("brush"))
        c.layer_clicked.connect(self._with("click_layer"))
        c.cursor_moved.connect(self._cursor)
        self.images_dock.image_activated.connect(guard(self.open_image, "open image"))
        ld = self.layers_dock
        ld.selection_changed.connect(self._with("select"))
        ld.visible_toggled.connect(self._with("set_visible"))
        ld.locked_toggled.connect(self._with("set_locked"))
        ld.move_requested.connect(self._with("move_layer"))
        ld.order_changed.connect(self._with("set_order"))
        ld.delete_requested.connect(self._with("delete_layers"))
        ld.merge_requested.connect(self._with("merge_layers"))
        ld.duplicate_requested.connect(self._with("duplicate_layer"))
        lb = self.labels_dock
        lb.default_changed.connect(self._with("set_default_label"))
        lb.add_requested.connect(self._with("add_label"))
        lb.rename_requested.connect(self._with("rename_label"))
        lb.recolor_requested.connect(self._with("recolor_label"))
        lb.delete_requested.connect(self._with("delete_label"))
        self.text_panel.run_requested.connect(self._with("detect"))
        self.text_panel.accept_requested.connect(self._with("accept"))
        self.text_panel.candidate_shown.connect(self._with("show_candidate"))
        self.client.model_loaded.connect(self._model_loaded)
        self.client.progress.connect(self._model_progress)
        self.client.failed.connect(self._failed)

    def _with(self, method: str) -> Callable[..., None]:
        """A slot passing its arguments to ``session.method``; errors go to the status bar."""
        return guard(lambda *args: getattr(self.session, method)(*args) if self.session
                     else None, method)

    # ---------------------------------------------------------------- project
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open image folder")
        if folder:
            self.open_folder(folder)

    def open_folder(self, folder: str | Path) -> bool:
        """Open ``folder`` as the project; returns False (and says why) on failure."""
        new = import_dialog.has_no_project(folder)  # then labelme JSONs beside are offered
        try:
            project = Project.open(folder)
        except SamdeskError as exc:
            QMessageBox.warning(self, "Open folder", str(exc))
            return False
        except Exception as exc:  # a damaged store, a bug: one line, the traceback logged
            QMessageBox.warning(self, "Open folder", errorlog.report(exc, f"open {folder}"))
            return False
        self.close_project()
        self.project = project
        self.session = Session(project, self.client, self.canvas)
        s = self.session
        s.image_changed.connect(self._image_changed)
        s.image_loaded.connect(self._image_loaded)
        s.images_changed.connect(self._refresh_images)
        s.layers_changed.connect(self._refresh_layers)
        s.labels_changed.connect(self._refresh_labels)
        s.candidates_changed.connect(self._refresh_candidate)
        s.detections_changed.connect(self.text_panel.set_detections)
        s.detect_state.connect(self.text_panel.set_state)
        s.embedding_changed.connect(self.status.set_embedding)
        s.message.connect(self.status.note)
        self.track_controls.attach(s)
        self._remember_recent(str(project.folder))
        read_only = " (read-only)" if project.read_only else ""
        self.setWindowTitle(f"samdesk — {project.folder}{read_only}")
        self._refresh_images()
        self._refresh_labels()
        ids = [r.id for r in project.images()]
        last = self.settings.value(f"last_image/{project.folder}")
        if ids:
            self._view_pending = True  # the zoom comes back once the pixels are shown
            self.open_image(int(last) if last is not None and int(last) in ids else ids[0])
        else:
            self.status.note(f"No images in {project.folder}")
        if project.store_note:  # read-only, a spare store, or work merged back: say so
            self.status.note(project.store_note)
        self.changed_notice = changed_images.show_notice(project, self)  # replaced images
        if self.changed_notice is not None:
            notice = self.changed_notice
            notice.buttonClicked.connect(
                lambda _button: notice.outcome and self.status.note(notice.outcome))
        if new and not project.read_only:
            self._job(import_dialog.offer_labelme(self, project, lambda: self.project is project,
                                                  self._job, self._report))
        return True

    def _view_key(self) -> str:
        assert self.project is not None
        return f"last_view/{self.project.folder}"

    def _save_view(self) -> None:
        """Remember the zoom and the image point at the centre of the canvas."""
        if self.session is None or self.session.image is None:
            return
        centre = self.canvas.mapToScene(self.canvas.viewport().rect().center())
        self.settings.setValue(self._view_key(), [self.session.image.id, self.canvas.zoom,
                                                  centre.x(), centre.y()])

    def _restore_view(self) -> None:
        saved = self.settings.value(self._view_key())
        if not isinstance(saved, list) or len(saved) != 4 or self.session is None:
            return
        image_id, zoom, x, y = int(saved[0]), float(saved[1]), float(saved[2]), float(saved[3])
        same_zoom = abs(zoom / max(self.canvas.zoom, 1e-9) - 1) < 1e-3
        if self.session.image is not None and self.session.image.id == image_id and not same_zoom:
            self.canvas.zoom_by(zoom / max(self.canvas.zoom, 1e-9))
            self.canvas.centerOn(x, y)

    def close_project(self) -> None:
        try:
            self._save_view()
            self.track_controls.detach()
            if self.session is not None:
                session, self.session = self.session, None
                try:
                    session.close()
                finally:
                    session.deleteLater()
        finally:  # the project's lock is given back whatever failed above
            if self.project is not None:
                project, self.project = self.project, None
                project.close()

    def open_image(self, image_id: int) -> None:
        if self.session is not None:
            self.session.open_image(image_id)

    def step_image(self, step: int) -> None:
        if self.session is not None:
            self.session.step_image(step, self.images_dock.visible_ids() or None)

    # ------------------------------------------------------------ refreshers
    @guarded("show image")
    def _image_changed(self, image_id: int) -> None:
        assert self.project is not None
        self.images_dock.set_current(image_id)
        self.settings.setValue(f"last_image/{self.project.folder}", image_id)
        self.text_panel.set_detections([])
        self.text_panel.set_state()  # the last image's outcome is not this one's
        self._refresh_cursor()

    @guarded("list images")
    def _refresh_images(self) -> None:
        if self.project is not None:
            self.images_dock.set_images(self.project.images())

    @guarded("list layers")
    def _refresh_layers(self) -> None:
        s = self.session
        if s is None:
            return
        rows = [LayerRow(a.id, s.label_name(a.label_id), self._color(a.label_id), a.visible,
                         a.locked, a.score, a.track_id, not a.edited, a.object_score)
                for a in s.layers()]
        self.layers_dock.set_layers(rows, s.selected)
        self._refresh_cursor()  # a relabel or a deletion changes what is under it

    def _color(self, label_id: int | None) -> str:
        assert self.project is not None
        return next((lab.color for lab in self.project.labels() if lab.id == label_id),
                    "#b0b0b0")

    @guarded("list labels")
    def _refresh_labels(self) -> None:
        if self.session is not None and self.project is not None:
            self.labels_dock.set_labels(self.project.labels(), self.session.default_label,
                                        self.project.annotation_counts())

    def _refresh_candidate(self) -> None:
        s = self.session
        shown = s.shown_candidate() if s is not None else None
        self.status.set_score(None if shown is None else shown.score,
                              s.candidate_index if s else 0, len(s.candidates) if s else 0)

    @guarded("cursor")
    def _cursor(self, x: float, y: float) -> None:
        self._last_cursor = (x, y)
        s = self.session
        if s is None or self.canvas.image_size is None:
            self.status.cursor.setText("")
            return
        layer = s.layer_at(x, y)
        under = None if layer is None else f"mask {layer.id} ({s.label_name(layer.label_id)})"
        self.status.set_cursor(x, y, under)

    @guarded("show image")
    def _image_loaded(self, _image_id: int) -> None:
        if self._view_pending:
            self._view_pending = False
            self._restore_view()
        self._refresh_cursor()

    def _refresh_cursor(self, *_args: object) -> None:
        """Say again what is under the last cursor position (the image or its layers changed)."""
        if self._last_cursor is not None:
            self._cursor(*self._last_cursor)

    def _show_error(self, line: str, exc: BaseException) -> None:
        """A guarded slot failed: one line in the status bar; a bug or resource
        failure (not a :class:`SamdeskError`) also gets a non-modal box with details."""
        self.status.error(line)
        if isinstance(exc, SamdeskError):
            return
        if self._error_box is None:
            self._error_box = QMessageBox(QMessageBox.Icon.Warning, "samdesk", "", parent=self)
            self._error_box.setModal(False)
        self._error_box.setText(line)
        self._error_box.setDetailedText("".join(traceback.format_exception(exc)))
        self._error_box.show()

    # ---------------------------------------------------------- tools, models
    def set_tool(self, tool: Tool) -> None:
        self.canvas.set_tool(tool)
        for other, _text, _key in TOOL_KEYS:
            self.actions_by_name[f"tool_{other.value}"].setChecked(other is tool)
        if tool is Tool.TEXT:
            self.text_panel.show()
            self.text_panel.phrase.setFocus()

    def escape(self) -> None:
        """Esc: drop a drag in progress and the prompts, keep every mask."""
        self.canvas.set_tool(self.canvas.tool)
        if self.session is not None:
            self.session.clear_prompts()

    def _brush(self, factor: float) -> None:
        size = self.canvas.brush_size
        step = max(1, round(size * factor) - size) if factor > 1 else min(
            -1, round(size * factor) - size)
        self.canvas.set_brush_size(size + step)
        self.status.note(f"Brush {self.canvas.brush_size} px")

    def apply_models(self, choice: ModelChoice) -> None:
        """Ask the worker to load the chosen models; the window never waits."""
        self.choice = choice
        self.client.set_release_when_idle(choice.release_when_idle)
        apply_server(choice)  # the key of a server model, before the worker loads it
        self._model_request = self.client.set_model(  # auto: the default ($SAMDESK_RUNTIME)
            choice.segmenter, checkpoints.installed(choice.segmenter), choice.device,
            None if choice.runtime == "auto" else choice.runtime)
        if choice.detector:
            self.client.set_model(choice.detector, checkpoints.installed(choice.detector),
                                  choice.device)
        self.status.set_model(choice.segmenter, choice.device, loading=True)

    def choose_models(self) -> None:
        dialog = ModelDialog(self.choice, self)
        if dialog.exec():
            choice = dialog.choice()
            save_choice(self.settings, choice)
            if choice != self.choice:
                self.apply_models(choice)

    @guarded("model loaded")
    def _model_loaded(self, loaded: ModelLoaded) -> None:
        if loaded.slot == "segmenter":
            self.status.set_model(loaded.name, loaded.device,
                                  runtime=runtime_shown(loaded.name, loaded.runtime),
                                  note=loaded.runtime_note)
        else:
            self.status.note(f"Text detector {loaded.name} ready")

    @guarded("model loading")
    def _model_progress(self, progress: Progress) -> None:
        """The segmenter's load (an ONNX export and probe on a first use) in the status bar."""
        if progress.request_id == getattr(self, "_model_request", None):
            self.status.set_model_progress(progress.done, progress.total, progress.message)

    def _failed(self, failure: Failure) -> None:
        self.status.error(failure.message)

    # ------------------------------------------------------- export / import
    def export(self) -> None:
        if self.project is None:
            return
        dialog = export_dialog.ExportDialog(self.project, self)
        if dialog.exec():
            fmt, out, only_done, images = dialog.options()
            self._job(export_dialog.start_export(self, self.project, fmt, out, only_done,
                                                 self._report, images=images))

    def import_dataset(self) -> None:
        """File > Import…: a dataset file or folder, its format recognised unless chosen."""
        if self.project is None:
            return
        dialog = import_dialog.ImportDialog(self.project, self)
        if dialog.exec():
            source, fmt = dialog.options()
            self._job(import_dialog.start_import(self, self.project, source, fmt, self._report))

    def _job(self, job: export_dialog.BackgroundJob) -> None:
        self.jobs.append(job)
        job.finished.connect(lambda: self.jobs.remove(job) if job in self.jobs else None)

    def _report(self, text: str) -> None:
        self.status.note(text.splitlines()[0])
        if "\n" in text or "failed" in text:
            QMessageBox.information(self, "samdesk", text)

    # ------------------------------------------------------------- the rest
    def show_help(self) -> None:
        self.help.show_for(a for a in self.actions() if not a.text().startswith("Label with"))

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for folder in self.recent_folders():
            action = self.recent_menu.addAction(folder)
            action.triggered.connect(guard(lambda _c=False, f=folder: self.open_folder(f),
                                           "open folder"))
        self.recent_menu.setEnabled(bool(self.recent_folders()))

    def recent_folders(self) -> list[str]:
        value = self.settings.value("recent_folders", [])
        return [str(v) for v in (value if isinstance(value, list) else [value]) if v]

    def _remember_recent(self, folder: str) -> None:
        folders = [folder] + [f for f in self.recent_folders() if f != folder]
        self.settings.setValue("recent_folders", folders[:MAX_RECENT])
        self._fill_recent()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt name)
        # Every step runs even when one before it fails, and nothing may escape: an
        # exception out of a Python closeEvent crashed shiboken 6.11 while it printed it.
        # The window is going: a failure is one line on stderr (and the log), no box.
        self._remove_sink()
        for context, step in (("stop background jobs", self._stop_jobs),
                              ("save the window layout", self._save_layout),
                              ("close the project", self.close_project),
                              ("stop the inference worker", self.client.stop)):
            try:
                step()
            except Exception as exc:
                report_slot_error(exc, f"closing: {context}")
        super().closeEvent(event)

    def _stop_jobs(self) -> None:
        for job in list(self.jobs):
            job.cancel()
            job.wait()

    def _save_layout(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.sync()
