"""The window's tracks and propagation: the Track menu, the timeline, the progress.

:class:`TrackControls` adds to a :class:`~samdesk.views.main_window.MainWindow`
the Track menu (New track from selected layer, Propagate forward / backward
/ both, Cancel propagation), File > Frames are a sequence, the timeline dock
at the bottom and, while a run goes on, a progress bar with a Cancel button
in the status bar. The work is done by the open project's
:class:`~samdesk.views.session_tracks.SessionTracks`. Propagation needs a
local SAM 2 or SAM 2.1 model and a sequence: otherwise its actions are
disabled and their tooltip says why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QMenu, QProgressBar, QToolButton

from samdesk.inference.worker.requests import ModelLoaded
from samdesk.views.qtutil import guard, guarded
from samdesk.views.session_tracks import SessionTracks
from samdesk.views.timeline_dock import TimelineDock

if TYPE_CHECKING:
    from PySide6.QtGui import QAction

    from samdesk.views.main_window import MainWindow
    from samdesk.views.session import Session

DIRECTIONS = (("forward", "Propagate &forward", ("Ctrl+Shift+Right",)),
              ("backward", "Propagate &backward", ("Ctrl+Shift+Left",)),
              ("both", "Propagate b&oth ways", ("Ctrl+Shift+Up",)))
PROPAGATE_TIP = {"forward": "Carry the selected masks' tracks to the following frames",
                 "backward": "Carry the selected masks' tracks to the frames before",
                 "both": "Carry the selected masks' tracks both ways from this frame"}


class TrackControls(QObject):
    """Track menu, sequence toggle, timeline dock and propagation progress of a window."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.tracks: SessionTracks | None = None
        self.model_name = ""
        menus, bar = window.menus, window.menuBar()
        menus["track"] = menu = QMenu("T&rack", bar)
        bar.insertMenu(menus["view"].menuAction(), menu)
        menu.setToolTipsVisible(True)
        a = window._act
        self.new_track = a("track", "track_new", "&New track from selected layer",
                           self._call("new_track_from_selected"), ("Ctrl+T",))
        self.propagate: dict[str, QAction] = {}
        for direction, text, keys in DIRECTIONS:
            self.propagate[direction] = a("track", f"propagate_{direction}", text,
                                          self._call("propagate", direction), keys)
        self.cancel = a("track", "propagate_cancel", "&Cancel propagation",
                        self._call("cancel"), ("Ctrl+Shift+Down",))
        self.sequence = a("file", "sequence", "Frames are a &sequence", self._toggle_sequence,
                          checkable=True)
        self.sequence.setToolTip("The images are the frames of one video, in name order "
                                 "(needed to propagate tracks)")
        file_menu = menus["file"]
        file_menu.removeAction(self.sequence)
        file_menu.insertAction(window.actions_by_name["quit"], self.sequence)
        file_menu.insertSeparator(window.actions_by_name["quit"])

        self.timeline = TimelineDock(window)
        window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.timeline)
        menus["view"].addAction(self.timeline.toggleViewAction())
        self.timeline.frame_clicked.connect(guard(self._go_to_frame, "go to frame"))

        self.bar = QProgressBar()
        self.bar.setMaximumWidth(260)
        self.bar.setFormat("Propagating %v of %m frames")
        self.stop = QToolButton()
        self.stop.setText("Cancel")
        self.stop.setToolTip("Stop the propagation after the frame in progress; "
                             "every frame written is kept")
        self.stop.clicked.connect(self._call("cancel"))
        window.status.insertPermanentWidget(0, self.bar)
        window.status.insertPermanentWidget(1, self.stop)
        self._show_progress(False)

        ld = window.layers_dock
        ld.new_track_requested.connect(self._new_track_of)
        ld.add_to_track_requested.connect(self._call_with("add_to_track"))
        ld.leave_track_requested.connect(self._call_with("leave_track"))
        ld.relabel_track_requested.connect(self._call_with("relabel_track"))
        window.client.model_loaded.connect(self._model_loaded)
        self.update_actions()

    # ------------------------------------------------------------- life cycle
    def attach(self, session: Session) -> None:
        """A project was opened in ``session``: show and drive its tracks."""
        self.detach()
        tracks = self.tracks = SessionTracks(session)
        tracks.model_name = self.model_name
        tracks.timeline_changed.connect(self.refresh_timeline)
        tracks.cell_changed.connect(guard(self._cell_changed, "timeline"))
        tracks.running_changed.connect(guard(self._running, "propagation"))
        tracks.progress.connect(guard(self._progress, "propagation"))
        tracks.message.connect(self.window.status.note)
        session.image_changed.connect(guard(self._image_changed, "timeline"))
        session.labels_changed.connect(guard(self._labels_changed, "labels"))
        self._labels_changed()
        tracks.pick_default_track()
        self.refresh_timeline()
        self.update_actions()

    def detach(self) -> None:
        """The project closes: a run in progress is cancelled (its frames are kept)."""
        if self.tracks is not None:
            self.tracks.close()
            self.tracks.deleteLater()
            self.tracks = None
        self.window.layers_dock.current_track = None
        self.timeline.show_track(None, "", [], "#b0b0b0", None)
        self._show_progress(False)
        self.update_actions()

    def _call(self, method: str, *args: object):  # noqa: ANN202 - a slot
        return guard(lambda *_a: getattr(self.tracks, method)(*args) if self.tracks
                     else None, method)

    def _call_with(self, method: str):  # noqa: ANN202 - a slot passing its arguments
        return guard(lambda *a: getattr(self.tracks, method)(*a) if self.tracks else None,
                     method)

    # ---------------------------------------------------------------- actions
    def update_actions(self) -> None:
        """Enable what can run now; a disabled propagate action's tooltip says why."""
        tracks = self.tracks
        why = "no project is open" if tracks is None else tracks.refusal()
        for direction, action in self.propagate.items():
            action.setEnabled(why is None)
            action.setToolTip(PROPAGATE_TIP[direction] if why is None
                              else f"Cannot propagate: {why}")
            action.setStatusTip(action.toolTip())
        self.new_track.setEnabled(tracks is not None)
        self.cancel.setEnabled(tracks is not None and tracks.busy)
        self.sequence.setEnabled(tracks is not None and not tracks.project.read_only)
        self.sequence.setChecked(tracks is not None and tracks.project.is_sequence)

    def _toggle_sequence(self) -> None:
        if self.tracks is not None:
            self.tracks.set_sequence(self.sequence.isChecked())
        self.update_actions()

    def _new_track_of(self, ann_id: int) -> None:
        if self.tracks is not None:
            self.tracks.session.select([ann_id])
            self.tracks.new_track_from_selected()

    @guarded("model loaded")
    def _model_loaded(self, loaded: ModelLoaded) -> None:
        if loaded.slot == "segmenter":
            self.model_name = loaded.name
            if self.tracks is not None:
                self.tracks.model_name = loaded.name
            self.update_actions()

    # --------------------------------------------------------------- timeline
    @guarded("timeline")
    def refresh_timeline(self) -> None:
        tracks = self.tracks
        if tracks is None:
            return
        self.window.layers_dock.current_track = tracks.track_id
        image = tracks.session.image
        current = None if image is None else tracks.frame_of(image.id)
        name, color = tracks.track_title()
        self.timeline.show_track(tracks.track_id, name, tracks.cells(), color, current)
        self.update_actions()

    def _cell_changed(self, index: int, cell: object) -> None:
        self.timeline.set_cell(index, cell)  # type: ignore[arg-type]

    def _image_changed(self, image_id: int) -> None:
        if self.tracks is not None:
            self.tracks.pick_default_track()
            self.timeline.set_current(self.tracks.frame_of(image_id))

    def _go_to_frame(self, index: int) -> None:
        if self.tracks is not None:
            self.tracks.go_to_frame(index)

    def _labels_changed(self) -> None:
        if self.tracks is not None:
            self.window.layers_dock.label_choices = [
                (lab.id, lab.name, lab.color) for lab in self.tracks.project.labels()]

    # --------------------------------------------------------------- progress
    def _show_progress(self, on: bool) -> None:
        self.bar.setVisible(on)
        self.stop.setVisible(on)

    def _running(self, on: bool) -> None:
        if on:
            self.bar.setRange(0, 0)  # busy until the first frame says how many
        self._show_progress(on)
        self.update_actions()

    def _progress(self, done: int, total: int) -> None:
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(done)
