"""Tracks and propagation in the window, with no widgets of its own.

:class:`SessionTracks` joins a :class:`~samdesk.views.session.Session` to the
project's tracks (:mod:`samdesk.project_tracks`) and to SAM 2's video
propagation on the inference worker. It makes a track from the selected
layer, relabels or leaves a track, and propagates the selected layers'
tracks (or the timeline's) forward, backward or both from the open frame:
the plan (:func:`samdesk.tracking.build_plan`, which reads every frame's
header) is built on a pool thread, the worker runs it
(:meth:`InferenceClient.propagate`), and each mask it sends back is written
here, on the GUI thread, with ``project.write_propagated``: one small
transaction per frame, so a cancelled, failed or killed run keeps every frame
written. A cancel stops the run after the frame in progress. The timeline's
track follows the selected layer; its cells (:class:`TimelineCell`) are read
from the project.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QTimer, Signal

from samdesk.errors import SamdeskError
from samdesk.inference.worker.propagate import propagation_refusal
from samdesk.inference.worker.requests import Failure, Progress, PropagationDone, TrackFrame
from samdesk.project import ProjectEvent
from samdesk.views.image_loader import ImageLoader
from samdesk.views.qtutil import guarded
from samdesk.views.timeline_dock import TimelineCell

if TYPE_CHECKING:
    from samdesk.annotations import MaskLayer
    from samdesk.views.session import Session

REFRESH_MS = 150  # project changes are gathered this long before the timeline is re-read
NOT_SEQUENCE = ("the project is not marked a sequence: check File > Frames are a sequence "
                "first (its images are then the frames of one video, in order)")


def cell_of(image_id: int, layer: MaskLayer | None, absent: bool) -> TimelineCell:
    """The timeline cell of a frame from the track's layer there (or its absent mark)."""
    if layer is not None:
        if layer.edited:
            return TimelineCell(image_id, "edited")
        return TimelineCell(image_id, "propagated", layer.object_score)
    return TimelineCell(image_id, "absent" if absent else "empty")


class SessionTracks(QObject):
    """The open project's tracks, the timeline's track, and the propagation run."""

    timeline_changed = Signal()  # the timeline's track, its cells or its colour changed
    cell_changed = Signal(int, object)  # frame index, TimelineCell (a mask just written)
    running_changed = Signal(bool)  # a propagation started (planning included) or ended
    progress = Signal(int, int)  # frames visited, of all
    message = Signal(str)
    _project_changed = Signal(object)

    def __init__(self, session: Session) -> None:
        super().__init__(session)  # deleted with the session, on the GUI thread
        self.session, self.project, self.client = session, session.project, session.client
        self.model_name = ""  # the loaded segmenter (the window tells)
        self.track_id: int | None = None  # the timeline's track
        self.running: int | None = None  # the worker request id of the run
        self.planning = 0  # the latest plan being built (0: none)
        self._planning_live = False  # that plan is still wanted
        self.direction = ""
        self.written = self.kept = 0  # masks written / frames a person's mask kept
        self.last_done: PropagationDone | None = None
        self._failed_write = False
        self._closed = False
        self._plans = ImageLoader(self, threads=1)
        self._plans.finished.connect(self._on_plan)
        self._refresh = QTimer(self)
        self._refresh.setSingleShot(True)
        self._refresh.setInterval(REFRESH_MS)
        self._refresh.timeout.connect(self.timeline_changed)
        self._project_changed.connect(self._on_project_event)
        self._unsubscribe = self.project.subscribe(self._project_changed.emit)
        c = self.client
        self._links = ((c.track_frame, self._on_frame), (c.propagation_progress, self._on_progress),
                       (c.propagation_done, self._on_done), (c.failed, self._on_failed),
                       (session.layers_changed, self._follow_selection))
        for signal, slot in self._links:
            signal.connect(slot)

    def close(self) -> None:
        """Stop listening; a run in progress is cancelled (what it wrote is kept)."""
        self._closed = True
        self.planning += 1
        self._plans.wait()
        if self.running is not None:
            self.client.cancel(self.running)
            self.running = None
        self._refresh.stop()
        self._unsubscribe()
        for signal, slot in self._links:
            signal.disconnect(slot)

    # ------------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        """A run is being planned or is running."""
        return self.running is not None or self._planning_live

    def refusal(self) -> str | None:
        """Why propagation cannot start now (one line), or None."""
        if self.busy:
            return "a propagation is running; cancel it first (Track > Cancel propagation)"
        why = propagation_refusal(self.model_name)
        if why is not None:
            return why
        if not self.project.is_sequence:
            return NOT_SEQUENCE
        if self.project.read_only:
            return f"the project is open read-only ({self.project.read_only_reason})"
        return None

    def _layers(self) -> list[MaskLayer]:
        return self.session.layers()

    def _selected_layers(self) -> list[MaskLayer]:
        chosen = set(self.session.selected)
        return [layer for layer in self._layers() if layer.id in chosen]

    # ----------------------------------------------------------------- tracks
    def new_track_from_selected(self) -> int | None:
        """Make the one selected layer the first of a new track (its label); the track id."""
        chosen = self._selected_layers()
        if len(chosen) != 1:
            self.message.emit("Select one mask to make a track of")
            return None
        layer = chosen[0]
        if layer.track_id is not None:
            self.set_track(layer.track_id)
            self.message.emit(f"Mask {layer.id} is already in track {layer.track_id}")
            return layer.track_id
        try:
            track_id = self._new_track([layer])[0]
        except SamdeskError as exc:  # read-only, a full disk: nothing changed
            self.message.emit(f"No track made: {exc}")
            return None
        self.message.emit(f"Track {track_id} made from mask {layer.id}; Track > Propagate "
                          "carries it through the frames")
        return track_id

    def _new_track(self, layers: list[MaskLayer]) -> list[int]:
        """Each layer the first of a new track, all in one undo step."""
        made = []
        with self.project.batch(f"New track{'s' * (len(layers) != 1)}"):
            for layer in layers:
                track = self.project.add_track(label_id=layer.label_id)
                self.project.set_layer_track(layer.id, track.id)
                made.append(track.id)
        self.set_track(made[-1])
        return made

    def add_to_track(self, ann_id: int, track_id: int | None = None) -> None:
        """Put a layer in ``track_id`` (default: the timeline's track)."""
        target = track_id if track_id is not None else self.track_id
        if target is None:
            self.message.emit("No track selected: select a tracked mask first")
            return
        try:
            self.project.set_layer_track(ann_id, target)
        except SamdeskError as exc:
            self.message.emit(str(exc))
            return
        self.message.emit(f"Mask {ann_id} is now in track {target}")

    def leave_track(self, ann_id: int) -> None:
        try:
            self.project.set_layer_track(ann_id, None)
        except SamdeskError as exc:
            self.message.emit(str(exc))

    def relabel_track(self, track_id: int, label_id: int | None) -> None:
        """Relabel the track and its mask on every frame (one undo step)."""
        try:
            self.project.relabel_track(track_id, label_id)
        except SamdeskError as exc:
            self.message.emit(str(exc))
            return
        count = len(self.project.track_layers(track_id))
        self.message.emit(f"Track {track_id} relabelled as {self.session.label_name(label_id)} "
                          f"on {count} frame{'s' * (count != 1)}")

    def set_sequence(self, flag: bool) -> None:
        if flag != self.project.is_sequence:
            self.project.set_sequence(flag)
            self.message.emit("The images are the frames of one sequence" if flag
                              else "The images are no longer a sequence")

    # --------------------------------------------------------------- timeline
    def set_track(self, track_id: int | None) -> None:
        if track_id != self.track_id:
            self.track_id = track_id
            self.timeline_changed.emit()

    def pick_default_track(self) -> None:
        """With no track on the timeline: the track of a mask on the open frame, else
        the project's first track (none: the timeline stays empty)."""
        if self.track_id is not None:
            return
        here = [layer.track_id for layer in self._layers() if layer.track_id is not None]
        tracks = here or [track.id for track in self.project.tracks()]
        if tracks:
            self.set_track(tracks[0])

    def _follow_selection(self) -> None:
        tracked = [layer.track_id for layer in self._selected_layers()
                   if layer.track_id is not None]
        if tracked:
            self.set_track(tracked[0])

    def cells(self) -> list[TimelineCell]:
        """One cell per frame, in frame order, for the timeline's track (none: [])."""
        if self.track_id is None:
            return []
        layers = self.project.track_layers(self.track_id)
        absent = self.project.absent_frames(self.track_id)
        return [cell_of(image_id, layers.get(image_id), image_id in absent)
                for image_id in self.project.frame_ids()]

    def track_title(self) -> tuple[str, str]:
        """The timeline track's label name and colour."""
        if self.track_id is None:
            return "", "#b0b0b0"
        try:
            label_id = self.project.track(self.track_id).label_id
        except SamdeskError:
            return "", "#b0b0b0"
        color = next((lab.color for lab in self.project.labels() if lab.id == label_id),
                     "#b0b0b0")
        return self.session.label_name(label_id), color

    def frame_of(self, image_id: int) -> int | None:
        try:
            return self.project.frame_index(image_id)
        except SamdeskError:
            return None

    def go_to_frame(self, index: int) -> None:
        """Open frame ``index`` and select the timeline track's mask there, if any."""
        ids = self.project.frame_ids()
        if not 0 <= index < len(ids):
            return
        self.session.open_image(ids[index])
        if self.track_id is not None:
            layer = self.project.track_layers(self.track_id).get(ids[index])
            if layer is not None:
                self.session.select([layer.id])

    @guarded("timeline")
    def _on_project_event(self, event: ProjectEvent) -> None:
        if self._closed:
            return
        if self.track_id is not None and event.kinds & {"tracks", "annotations", "labels",
                                                        "track_absent", "images"}:
            if "tracks" in event.kinds and self.track_id not in {
                    t.id for t in self.project.tracks()}:
                self.track_id = None  # deleted (or its making undone)
            if not self._refresh.isActive():
                self._refresh.start()
        if "sequence" in event.kinds:
            self.timeline_changed.emit()

    # ------------------------------------------------------------ propagation
    def propagate(self, direction: str) -> bool:
        """Propagate from the open frame: the selected layers' tracks (a selected layer in
        no track becomes a new one), else the timeline's track. False (and a line
        saying why) when it cannot start."""
        why = self.refusal()
        image = self.session.image
        if why is None and image is None:
            why = "no frame is open"
        if why is not None:
            self.message.emit(f"Cannot propagate: {why}")
            return False
        assert image is not None
        chosen = self._selected_layers()
        try:
            fresh = [layer for layer in chosen if layer.track_id is None]
            made = self._new_track(fresh) if fresh else []
        except SamdeskError as exc:
            self.message.emit(f"Cannot propagate: {exc}")
            return False
        tracks = sorted({layer.track_id for layer in chosen if layer.track_id is not None}
                        | set(made))
        if not tracks and self.track_id is not None:
            tracks = [self.track_id]
        if not tracks:
            self.message.emit("Cannot propagate: select a mask (or a tracked mask) first")
            return False
        self.set_track(tracks[0])
        self.direction = direction
        self.planning += 1
        self._planning_live = True
        project, start = self.project, image.id

        def plan() -> Any:
            from samdesk.tracking import build_plan

            return build_plan(project, tracks, start, direction)

        self._plans.submit(self.planning, plan)
        self.running_changed.emit(True)
        names = ", ".join(str(t) for t in tracks)
        self.message.emit(f"Propagating track{'s' * (len(tracks) != 1)} {names} {direction}…")
        return True

    @guarded("propagate")
    def _on_plan(self, request: int, plan: Any, error: BaseException | None) -> None:
        if request != self.planning or self._closed:
            return
        self._planning_live = False
        if error is not None:
            self.running_changed.emit(False)
            if isinstance(error, SamdeskError):
                self.message.emit(f"Cannot propagate: {error}")
                return
            raise error
        self.written = self.kept = 0
        self._failed_write = False
        self.running = self.client.propagate(plan)

    def cancel(self) -> bool:
        """Stop the run after the frame in progress; every frame written is kept."""
        if self._planning_live:
            self.planning += 1
            self._planning_live = False
            self.running_changed.emit(False)
            self.message.emit("Propagation cancelled before it started")
            return True
        if self.running is None:
            self.message.emit("No propagation is running")
            return False
        self.client.cancel(self.running)
        self.message.emit("Cancelling the propagation after the frame in progress…")
        return True

    @guarded("write a propagated mask")
    def _on_frame(self, update: TrackFrame) -> None:
        if update.request_id != self.running or self._failed_write:
            return
        found = update.frame
        try:
            layer = self.project.write_propagated(found.image_id, found.track_id, found.rle,
                                                  found.object_score)
        except SamdeskError as exc:  # the store cannot be written: stop, keep what is there
            self._failed_write = True
            self.client.cancel(update.request_id)
            self.message.emit(f"Propagation stopped: {exc}; the {self.written} masks "
                              "written are kept")
            return
        if layer is not None:
            self.written += 1
        elif found.rle is not None and not _empty(found.rle):
            self.kept += 1  # a person's mask (or an absent mark) there is kept
        if found.track_id == self.track_id:
            index = self.frame_of(found.image_id)
            if index is not None:
                live = self.project.track_layers(found.track_id).get(found.image_id) \
                    if layer is None else layer
                absent = layer is None and found.image_id in self.project.absent_frames(
                    found.track_id)
                self.cell_changed.emit(index, cell_of(found.image_id, live, absent))

    @guarded("propagation progress")
    def _on_progress(self, progress: Progress) -> None:
        if progress.request_id == self.running:
            self.progress.emit(progress.done, progress.total)

    @guarded("propagation done")
    def _on_done(self, done: PropagationDone) -> None:
        if done.request_id != self.running:
            return
        self.running = None
        self.last_done = done
        self.running_changed.emit(False)
        self.timeline_changed.emit()
        if self._failed_write:
            return
        kept = (f"; {self.kept} frame{'s' * (self.kept != 1)} kept a person's mask"
                if self.kept else "")
        self.message.emit(f"{done.message}{kept}")

    @guarded("propagation failed")
    def _on_failed(self, failure: Failure) -> None:
        if failure.request_id != self.running:
            return
        self.running = None
        self.running_changed.emit(False)
        self.timeline_changed.emit()
        self.message.emit(f"Propagation stopped: {failure.message}; the {self.written} "
                          f"mask{'s' * (self.written != 1)} written are kept")


def _empty(rle: Any) -> bool:
    from samdesk import masks

    return masks.is_empty(rle)
