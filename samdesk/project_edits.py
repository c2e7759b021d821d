"""Labels and mask layers of a project: queries and undoable edits.

A mixin of :class:`samdesk.project.Project`; it relies on the project's
connection, ``batch`` and ``_record``. Every edit goes through ``_record`` so
that undo restores it exactly.
"""

from __future__ import annotations

import sqlite3
import threading
import unicodedata
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from samdesk import rows
from samdesk.annotations import RLE, ImageStatus, Label, MaskLayer
from samdesk.errors import ProjectError
from samdesk.imagefiles import display_path, stored_path

if TYPE_CHECKING:
    from pathlib import Path

    from samdesk.history import HistoryEntry, Row

UNSET: Any = object()
_LABEL_ID_HIGH = "label_id_high"
"""Meta key: the highest label id ever given in the project (ids are never reused)."""

# Distinct, colour-blind-friendly-ish defaults (Okabe-Ito, then Tableau 10).
PALETTE = (
    "#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7",
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
    "#ff9da7", "#9c755f", "#bab0ac",
)


def _check_color(color: str) -> str:
    text = color.strip().lower()
    if len(text) != 7 or not text.startswith("#"):
        raise ProjectError(f"label colour {color!r} must look like #rrggbb")
    try:
        int(text[1:], 16)
    except ValueError:
        raise ProjectError(f"label colour {color!r} must look like #rrggbb") from None
    return text


def label_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a label name (None when it can): a control character
    (newline, tab, ...) or a line separator would break one-name-a-line files
    such as ``labels.txt``."""
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if bad is None:
        return None
    return f"label name {name!r} holds a control character ({bad!r}); use printable text"


def check_fits(image: Row, mask: dict[str, Any]) -> None:
    """Refuse a mask whose size is not the image's current upright size: it could
    not be drawn nor exported (the file was replaced by one of another size)."""
    size = (image["width"], image["height"])
    if size[0] is not None and (mask["width"], mask["height"]) != size:
        name = display_path(stored_path(image["path"]))
        raise ProjectError(f"{name}: the mask is {mask['width']}x{mask['height']} but the "
                           f"image is {size[0]}x{size[1]} now; the mask was not saved")


class LabelsAndLayers:
    """Label and mask-layer methods of a project."""

    folder: Path
    _conn: sqlite3.Connection
    _mutex: threading.RLock

    if TYPE_CHECKING:  # provided by Project

        def batch(self, description: str) -> AbstractContextManager[HistoryEntry]: ...
        def _record(self, table: str, row_id: int, before: Row | None,
                    after: Row | None) -> None: ...
        def _row(self, table: str, row_id: int) -> Row: ...
        def _next_id(self, table: str) -> int: ...
        def _join_track(self, track_id: int, image_id: int, label_id: int | None,
                        edited: bool) -> int | None: ...
        def _relabel(self, track_id: int, label_id: int | None) -> None: ...
        def _mark_absent(self, track_id: int, image_id: int) -> None: ...

    # ------------------------------------------------------------------ labels
    def labels(self) -> list[Label]:
        """All labels, by id (the COCO category ids)."""
        with self._mutex:
            found = self._conn.execute("SELECT * FROM labels ORDER BY id").fetchall()
        return [rows.label(r) for r in found]

    def label(self, label_id: int) -> Label:
        with self._mutex:
            return rows.label(self._row("labels", label_id))

    def label_by_name(self, name: str) -> Label | None:
        with self._mutex:
            row = self._conn.execute("SELECT * FROM labels WHERE name=?", (name,)).fetchone()
        return rows.label(row) if row else None

    def add_label(self, name: str, color: str | None = None, hotkey: str | None = None,
                  label_id: int | None = None) -> Label:
        """Create a label; colour and hotkey (1–9) default to the next free ones.

        ``label_id`` asks for that id (an imported file's category id): a positive
        integer no label has. Otherwise the label gets the next id never given in
        this project, so an id once deleted (or undone) is not handed to another
        class.
        """
        name = name.strip()
        if not name:
            raise ProjectError("a label needs a name")
        if (problem := label_name_problem(name)) is not None:
            raise ProjectError(problem)
        with self.batch(f"Add label {name}"):
            if self.label_by_name(name) is not None:
                raise ProjectError(f"label {name!r} already exists")
            existing = self.labels()
            if color is None:
                used = {lab.color for lab in existing}
                color = next((c for c in PALETTE if c not in used), PALETTE[len(existing) % 17])
            if hotkey is None:
                taken = {lab.hotkey for lab in existing}
                hotkey = next((str(k) for k in range(1, 10) if str(k) not in taken), None)
            label_id = self._label_id(label_id, existing)
            row = {"id": label_id, "name": name, "color": _check_color(color), "hotkey": hotkey}
            self._record("labels", label_id, None, row)
        return self.label(label_id)

    def _label_id(self, wanted: int | None, existing: list[Label]) -> int:
        """``wanted`` if it is free, else the next id never given; remembered (in the store's
        meta table, outside the undo history) as the highest id given so far."""
        found = self._conn.execute(f"SELECT value FROM meta WHERE key='{_LABEL_ID_HIGH}'"
                                   ).fetchone()
        high = max([int(found[0]) if found else 0, *(lab.id for lab in existing)])
        if wanted is None:
            wanted = high + 1
        elif isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 1:
            raise ProjectError(f"label id {wanted!r} must be a positive integer")
        elif (taken := next((lab for lab in existing if lab.id == wanted), None)) is not None:
            raise ProjectError(f"label id {wanted} is already label {taken.name!r}")
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           (_LABEL_ID_HIGH, str(max(high, wanted))))
        return wanted

    def update_label(self, label_id: int, *, name: Any = UNSET, color: Any = UNSET,
                     hotkey: Any = UNSET) -> Label:
        """Rename, recolour or re-key a label; its id never changes."""
        with self.batch("Edit label"):
            before = self._row("labels", label_id)
            after = dict(before)
            if name is not UNSET:
                name = str(name).strip()
                other = self.label_by_name(name)
                if not name or (other is not None and other.id != label_id):
                    raise ProjectError(f"label name {name!r} is empty or already used")
                if (problem := label_name_problem(name)) is not None:
                    raise ProjectError(problem)
                after["name"] = name
            if color is not UNSET:
                after["color"] = _check_color(color)
            if hotkey is not UNSET:
                after["hotkey"] = hotkey
            self._record("labels", label_id, before, after)
        return self.label(label_id)

    def delete_label(self, label_id: int, masks: str | int = "unlabel") -> None:
        """Delete a label. Its masks (and pending boxes) are kept without a label
        (``"unlabel"``), deleted (``"delete"``), or given another label (an int label id);
        its tracks are left unlabelled or take the other label."""
        with self.batch("Delete label"):
            before = self._row("labels", label_id)
            ids = [r[0] for r in self._conn.execute(
                "SELECT id FROM annotations WHERE label_id=?", (label_id,))]
            if masks == "delete":
                self._delete_layers(ids, check_lock=False)
            else:
                target = None if masks == "unlabel" else int(masks)
                if target is not None:
                    self._row("labels", target)
                for ann_id in ids:
                    row = self._row("annotations", ann_id)
                    self._record("annotations", ann_id, row, {**row, "label_id": target})
            for found in self._conn.execute("SELECT * FROM pending_boxes WHERE label_id=?",
                                            (label_id,)).fetchall():  # they follow the masks
                box = dict(found)
                self._record("pending_boxes", box["id"], box, None if masks == "delete" else
                             {**box, "label_id": None if masks == "unlabel" else int(masks)})
            for found in self._conn.execute("SELECT * FROM tracks WHERE label_id=?",
                                            (label_id,)).fetchall():
                track = dict(found)
                self._record("tracks", track["id"], track, {
                    **track, "label_id": int(masks) if isinstance(masks, int) else None})
            self._record("labels", label_id, before, None)

    # ------------------------------------------------------------- mask layers
    def annotations(self, image_id: int | None = None) -> list[MaskLayer]:
        """Mask layers of one image (or all), by image then z, back to front."""
        with self._mutex:
            if image_id is None:
                found = self._conn.execute(
                    "SELECT * FROM annotations ORDER BY image_id, z, id").fetchall()
            else:
                found = self._conn.execute(
                    "SELECT * FROM annotations WHERE image_id=? ORDER BY z, id",
                    (image_id,)).fetchall()
        return [rows.mask_layer(r) for r in found]

    def annotation(self, ann_id: int) -> MaskLayer:
        with self._mutex:
            return rows.mask_layer(self._row("annotations", ann_id))

    def add_annotation(self, image_id: int, rle: RLE, label_id: int | None = None,
                       score: float | None = None,
                       prompts: dict[str, Any] | None = None, *,
                       track_id: int | None = None, edited: bool = True,
                       object_score: float | None = None) -> MaskLayer:
        """Add a mask layer on top of the image's others (undoable).

        With ``track_id`` the layer joins that track and takes its label (an
        unlabelled track takes ``label_id``); a person-made layer (``edited``)
        replaces a propagated one of the track on the image and clears an absent
        mark there, and a second person-made one is refused.
        """
        with self.batch("Add mask"):
            image = self._row("images", image_id)
            if label_id is not None:
                self._row("labels", label_id)
            columns = rows.rle_columns(rle)
            check_fits(image, columns)
            if track_id is not None:
                label_id = self._join_track(track_id, image_id, label_id, edited)
            top = self._conn.execute("SELECT COALESCE(MAX(z), -1) FROM annotations "
                                     "WHERE image_id=?", (image_id,)).fetchone()[0]
            ann_id = self._next_id("annotations")
            stamp = rows.now()
            row = {"id": ann_id, "image_id": image_id, "label_id": label_id,
                   **columns, "z": int(top) + 1, "visible": 1, "locked": 0,
                   "score": score, "prompts": rows.dumps(prompts), "created": stamp,
                   "updated": stamp, "track_id": track_id, "edited": int(bool(edited)),
                   "object_score": object_score}
            self._record("annotations", ann_id, None, row)
            if image["status"] == ImageStatus.TODO.value:
                self._record("images", image_id, image,
                             {**image, "status": ImageStatus.IN_PROGRESS.value})
        return self.annotation(ann_id)

    def update_annotation(self, ann_id: int, *, rle: Any = UNSET, label_id: Any = UNSET,
                          visible: Any = UNSET, locked: Any = UNSET, score: Any = UNSET,
                          prompts: Any = UNSET, description: str = "Edit mask") -> MaskLayer:
        """Change a layer's mask, label, visibility, lock, score or prompts.

        A new mask makes the layer person-made (``edited``), so propagation keeps
        it; a new label of a tracked layer relabels its whole track.
        """
        with self.batch(description):
            before = self._row("annotations", ann_id)
            after = dict(before)
            if rle is not UNSET:
                if before["locked"] and locked is UNSET:
                    raise ProjectError(f"mask {ann_id} is locked; unlock it to edit")
                after.update(rows.rle_columns(rle))
                check_fits(self._row("images", before["image_id"]), after)
                after["edited"], after["object_score"] = 1, None
            if label_id is not UNSET:
                if label_id is not None:
                    self._row("labels", label_id)
                after["label_id"] = label_id
                if before["track_id"] is not None and before["label_id"] != label_id:
                    self._relabel(before["track_id"], label_id)
                    before = self._row("annotations", ann_id)  # now with the new label
            if visible is not UNSET:
                after["visible"] = int(bool(visible))
            if locked is not UNSET:
                after["locked"] = int(bool(locked))
            if score is not UNSET:
                after["score"] = score
            if prompts is not UNSET:
                after["prompts"] = rows.dumps(prompts)
            after["updated"] = rows.now()
            self._record("annotations", ann_id, before, after)
        return self.annotation(ann_id)

    def delete_annotations(self, ann_ids: Iterable[int]) -> None:
        """Delete mask layers (locked ones are refused). A deleted layer of a track
        leaves an absent mark: the person says the object is not on that frame."""
        ids = list(ann_ids)
        with self.batch("Delete mask" if len(ids) == 1 else f"Delete {len(ids)} masks"):
            for ann_id in ids:
                row = self._row("annotations", ann_id)
                if row["track_id"] is not None and not row["locked"]:
                    self._mark_absent(row["track_id"], row["image_id"])
            self._delete_layers(ids, check_lock=True)

    def _delete_layers(self, ann_ids: list[int], check_lock: bool) -> None:
        for ann_id in ann_ids:
            row = self._row("annotations", ann_id)
            if check_lock and row["locked"]:
                raise ProjectError(f"mask {ann_id} is locked; unlock it to delete")
            self._record("annotations", ann_id, row, None)

    def set_order(self, image_id: int, ann_ids_back_to_front: list[int]) -> None:
        """Give an image's layers this back-to-front order (z = 0, 1, 2...)."""
        current = [a.id for a in self.annotations(image_id)]
        if sorted(current) != sorted(ann_ids_back_to_front):
            raise ProjectError(f"the new order must list exactly the masks of image {image_id}")
        with self.batch("Reorder masks"):
            for z, ann_id in enumerate(ann_ids_back_to_front):
                row = self._row("annotations", ann_id)
                if row["z"] != z:
                    self._record("annotations", ann_id, row, {**row, "z": z})

    def move_annotation(self, ann_id: int, steps: int) -> None:
        """Move a layer ``steps`` places towards the front (positive) or back."""
        layer = self.annotation(ann_id)
        order = [a.id for a in self.annotations(layer.image_id)]
        index = order.index(ann_id)
        new_index = max(0, min(len(order) - 1, index + steps))
        if new_index != index:
            order.insert(new_index, order.pop(index))
            self.set_order(layer.image_id, order)

    def duplicate_annotation(self, ann_id: int) -> MaskLayer:
        """A copy of a layer, placed on top."""
        layer = self.annotation(ann_id)
        with self.batch("Duplicate mask"):
            return self.add_annotation(layer.image_id, layer.rle, layer.label_id, layer.score,
                                       layer.prompts)

    def merge_annotations(self, ann_ids: list[int]) -> MaskLayer:
        """Merge layers of one image into the front-most one (its label kept)."""
        from samdesk import masks  # local: pycocotools is only needed here

        layers = sorted((self.annotation(i) for i in ann_ids), key=lambda a: a.z)
        if len(layers) < 2:
            raise ProjectError("select at least two masks to merge")
        if len({a.image_id for a in layers}) != 1:
            raise ProjectError("only masks of the same image can be merged")
        if any(a.locked for a in layers):
            raise ProjectError("a locked mask cannot be merged; unlock it first")
        front = layers[-1]
        with self.batch(f"Merge {len(layers)} masks"):
            merged = masks.merge([a.rle for a in layers])
            self.update_annotation(front.id, rle=merged)
            self._delete_layers([a.id for a in layers[:-1]], check_lock=True)
        return self.annotation(front.id)
