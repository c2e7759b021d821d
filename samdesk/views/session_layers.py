"""Layer, label and history edits of a :class:`~samdesk.views.session.Session`.

A mixin: the session provides ``project``, ``image``, ``view``, the signals
and ``message``. Every edit goes to the project, which writes it at once and
records it for undo; the canvas and the docks then refresh from the
project's change event, so an edit, its undo and its redo look the same.
Masks are decoded once per layer version and kept while the image is open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from samdesk import masks
from samdesk.annotations import MaskLayer
from samdesk.errors import SamdeskError
from samdesk.views.overlays import LayerView

if TYPE_CHECKING:
    from samdesk.annotations import ImageRecord
    from samdesk.project import Project

UNLABELLED_COLOR = "#b0b0b0"


class LayerEdits:
    """Selection, visibility, order, merge, brush, relabel, labels, undo and redo."""

    project: Project
    image: ImageRecord | None
    view: Any
    default_label: int | None
    layers_changed: Any
    labels_changed: Any
    message: Any

    def _init_layers(self) -> None:
        self.selected: list[int] = []
        self._decoded: dict[int, tuple[float, np.ndarray]] = {}
        self._shown: list[MaskLayer] = []

    # ------------------------------------------------------------------ canvas
    def _mask(self, layer: MaskLayer) -> np.ndarray:
        cached = self._decoded.get(layer.id)
        if cached is None or cached[0] != layer.updated:
            cached = (layer.updated, masks.decode(layer.rle))
            self._decoded[layer.id] = cached
        return cached[1]

    def _refresh_layers(self) -> None:
        """Re-read the open image's layers and redraw them (back to front)."""
        layers = self.project.annotations(self.image.id) if self.image is not None else []
        if self.image is not None and self.image.width is not None:
            size = [self.image.height, self.image.width]  # masks made on a replaced file's
            layers = [a for a in layers if list(a.rle["size"]) == size]  # other size: not drawn
        ids = {a.id for a in layers}
        self._decoded = {k: v for k, v in self._decoded.items() if k in ids}
        self.selected = [i for i in self.selected if i in ids]
        colors = {lab.id: lab.color for lab in self.project.labels()}
        self._shown = layers
        self.view.set_layers([
            LayerView(a.id, a.rle, colors.get(a.label_id or 0, UNLABELLED_COLOR),
                      a.visible, a.id in self.selected) for a in layers])
        self.layers_changed.emit()

    def layer_at(self, x: float, y: float) -> MaskLayer | None:
        """The front-most visible layer covering image pixel ``(x, y)``."""
        col, row = int(x), int(y)
        for layer in reversed(self._shown):
            mask = self._mask(layer)
            if layer.visible and 0 <= row < mask.shape[0] and 0 <= col < mask.shape[1]:
                if mask[row, col]:
                    return layer
        return None

    def label_name(self, label_id: int | None) -> str:
        if label_id is None:
            return "unlabelled"
        found = next((lab for lab in self.project.labels() if lab.id == label_id), None)
        return found.name if found else "unlabelled"

    # --------------------------------------------------------------- selection
    def select(self, ann_ids: list[int]) -> None:
        """Select these layers (highlighted on the canvas)."""
        if list(ann_ids) != self.selected:
            self.selected = list(ann_ids)
            self._refresh_layers()

    def click_layer(self, ann_id: int | None) -> None:
        """A click on a mask on the canvas selects its layer (nothing: clears)."""
        self.select([] if ann_id is None else [ann_id])

    # ------------------------------------------------------------- layer edits
    def _try(self, edit: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return edit(*args, **kwargs)
        except SamdeskError as exc:
            self.message.emit(str(exc))
            return None

    def set_visible(self, ann_id: int, visible: bool) -> None:
        self._try(self.project.update_annotation, ann_id, visible=visible,
                  description="Show mask" if visible else "Hide mask")

    def set_locked(self, ann_id: int, locked: bool) -> None:
        self._try(self.project.update_annotation, ann_id, locked=locked,
                  description="Lock mask" if locked else "Unlock mask")

    def move_layer(self, ann_id: int, steps: int) -> None:
        self._try(self.project.move_annotation, ann_id, steps)

    def set_order(self, back_to_front: list[int]) -> None:
        if self.image is not None:
            self._try(self.project.set_order, self.image.id, back_to_front)

    def delete_layers(self, ann_ids: list[int] | None = None) -> None:
        ids = self.selected if ann_ids is None else ann_ids
        if ids:
            self._try(self.project.delete_annotations, list(ids))

    def merge_layers(self, ann_ids: list[int] | None = None) -> None:
        layer = self._try(self.project.merge_annotations,
                          list(self.selected if ann_ids is None else ann_ids))
        if layer is not None:
            self.select([layer.id])

    def duplicate_layer(self, ann_id: int | None = None) -> None:
        target = ann_id if ann_id is not None else (self.selected or [None])[0]
        if target is not None:
            layer = self._try(self.project.duplicate_annotation, target)
            if layer is not None:
                self.select([layer.id])

    def brush(self, stroke: np.ndarray, erase: bool) -> None:
        """Paint (or erase) bool ``(H, W)`` ``stroke`` into the selected layer.

        Painting with no layer selected makes a new layer of the stroke.
        """
        if self.image is None or not np.any(stroke):
            return
        rle = masks.encode(stroke)
        if len(self.selected) != 1:
            if erase:
                self.message.emit("Select one mask to erase from")
            elif not self.selected:
                layer = self._try(self.project.add_annotation, self.image.id, rle,
                                  self.default_label, None, {"brush": True})
                if layer is not None:
                    self.select([layer.id])
            else:
                self.message.emit("Select one mask to paint into")
            return
        layer = self.project.annotation(self.selected[0])
        new = masks.difference(layer.rle, rle) if erase else masks.union(layer.rle, rle)
        self._try(self.project.update_annotation, layer.id, rle=new,
                  description="Erase" if erase else "Brush")

    # ------------------------------------------------------------------ labels
    def apply_hotkey(self, key: str) -> None:
        """Label ``key`` (1–9) goes to the selected layers, else becomes the default."""
        label = next((lab for lab in self.project.labels() if lab.hotkey == key), None)
        if label is None:
            self.message.emit(f"No label has the key {key}")
            return
        if self.selected:
            relabelled: set[int] = set()  # a tracked layer's label is its track's: every frame
            with self.project.batch(f"Label as {label.name}"):
                for ann_id in self.selected:
                    track_id = self.project.annotation(ann_id).track_id
                    if track_id is None:
                        self.project.update_annotation(ann_id, label_id=label.id)
                    elif track_id not in relabelled:
                        relabelled.add(track_id)
                        self.project.relabel_track(track_id, label.id)
            if relabelled:
                names = ", ".join(str(t) for t in sorted(relabelled))
                self.message.emit(f"Track {names} relabelled as {label.name} on every frame")
        else:
            self.set_default_label(label.id)

    def set_default_label(self, label_id: int | None) -> None:
        if label_id != self.default_label:
            self.default_label = label_id
            self.labels_changed.emit()

    def add_label(self, name: str, color: str | None = None) -> None:
        label = self._try(self.project.add_label, name, color or None)
        if label is not None and self.default_label is None:
            self.set_default_label(label.id)

    def rename_label(self, label_id: int, name: str) -> None:
        self._try(self.project.update_label, label_id, name=name)

    def recolor_label(self, label_id: int, color: str) -> None:
        self._try(self.project.update_label, label_id, color=color)

    def delete_label(self, label_id: int, mode: str | int) -> None:
        self._try(self.project.delete_label, label_id, masks=mode)

    # ----------------------------------------------------------------- history
    def undo(self) -> None:
        """Undo the last edit; the status line says which, or why it was not undone."""
        try:
            done = self.project.undo()
        except SamdeskError as exc:  # e.g. the store is locked: the edit stays, and says so
            self.message.emit(str(exc))
            return
        self.message.emit(f"Undid: {done}" if done else "Nothing to undo")

    def redo(self) -> None:
        try:
            done = self.project.redo()
        except SamdeskError as exc:
            self.message.emit(str(exc))
            return
        self.message.emit(f"Redid: {done}" if done else "Nothing to redo")
