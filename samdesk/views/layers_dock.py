"""The layers dock: the mask layers of the open image, front-most on top.

Each row shows the label's colour swatch, the label name (or "unlabelled"),
a visible tick, a locked tick and the layer's track ("#3", "#3 auto" for a
mask propagation wrote and nobody has touched since, with its object score).
The context menu makes a track of a layer, puts it in the timeline's track or
takes it out, and relabels a whole track (every frame). Rows are reordered with the up/down
buttons or by dragging. The dock holds no state of its own beyond what it
shows: every change a person makes is emitted as a request signal for the
session to carry out on the project.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QColor, QDropEvent, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QGridLayout,
    QMenu,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

ID_ROLE = Qt.ItemDataRole.UserRole
COL_LABEL, COL_VISIBLE, COL_LOCKED, COL_TRACK = 0, 1, 2, 3


@dataclass(frozen=True)
class LayerRow:
    """What one row shows. ``color`` is ``#rrggbb``; ``score`` may be None."""

    id: int
    label: str
    color: str
    visible: bool
    locked: bool
    score: float | None = None
    track_id: int | None = None
    propagated: bool = False  # written by propagation, untouched since
    object_score: float | None = None  # the model's object score logit (propagated only)

    @property
    def track_text(self) -> str:
        """The track column: "" (none), "#3", or "#3 auto" for a propagated mask."""
        if self.track_id is None:
            return ""
        return f"#{self.track_id}" + (" auto" if self.propagated else "")

    @property
    def track_tip(self) -> str:
        if self.track_id is None:
            return "in no track (right-click: New track from this layer)"
        if not self.propagated:
            return (f"track {self.track_id}: made or edited by a person, so propagation "
                    "never overwrites it and starts from it")
        score = "" if self.object_score is None else f", object score {self.object_score:.2f}"
        return (f"track {self.track_id}: propagated{score}; editing it makes it a "
                "person's mask that the next propagation starts from")


def swatch(color: str, size: int = 14) -> QIcon:
    """A square icon filled with ``color``."""
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(color))
    return QIcon(pixmap)


class _LayerTree(QTreeWidget):
    """A flat tree whose rows can be dragged to a new place, never nested."""

    reordered = Signal()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt name)
        super().dropEvent(event)
        self.reordered.emit()


class LayersDock(QDockWidget):
    """Mask layers of the current image with visible / locked / order / merge."""

    selection_changed = Signal(list)  # [ann_id, ...]
    visible_toggled = Signal(int, bool)
    locked_toggled = Signal(int, bool)
    move_requested = Signal(int, int)  # ann_id, steps towards the front
    order_changed = Signal(list)  # ann ids back to front
    delete_requested = Signal(list)
    merge_requested = Signal(list)
    duplicate_requested = Signal(int)
    new_track_requested = Signal(int)  # ann_id
    add_to_track_requested = Signal(int)  # ann_id: into the timeline's track
    leave_track_requested = Signal(int)  # ann_id
    relabel_track_requested = Signal(int, object)  # track id, label id (None: unlabelled)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Layers", parent)
        self.setObjectName("layers_dock")
        self.tree = _LayerTree()
        self.tree.setHeaderLabels(["Label", "Visible", "Locked", "Track"])
        self.tree.setRootIsDecorated(False)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.tree.setColumnWidth(COL_LABEL, 140)
        self.tree.setColumnWidth(COL_VISIBLE, 52)
        self.tree.setColumnWidth(COL_LOCKED, 52)
        self.tree.setColumnWidth(COL_TRACK, 60)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._context_menu)
        self.label_choices: list[tuple[int, str, str]] = []  # (id, name, colour)
        self.current_track: int | None = None  # the timeline's track
        self._rows: dict[int, LayerRow] = {}
        self.buttons: dict[str, QPushButton] = {}
        grid = QGridLayout()
        for index, (key, text, tip) in enumerate((
            ("up", "Up", "Move the selected mask towards the front"),
            ("down", "Down", "Move the selected mask towards the back"),
            ("duplicate", "Duplicate", "Copy the selected mask"),
            ("merge", "Merge", "Merge the selected masks into one"),
            ("delete", "Delete", "Delete the selected masks (Del)"),
        )):
            button = QPushButton(text)
            button.setToolTip(tip)
            self.buttons[key] = button
            grid.addWidget(button, index // 3, index % 3)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.tree)
        layout.addLayout(grid)
        self.setWidget(body)

        self._filling = False
        self.tree.itemSelectionChanged.connect(self._selection)
        self.tree.itemChanged.connect(self._item_changed)
        self.tree.reordered.connect(self._dropped)
        self.buttons["up"].clicked.connect(lambda: self._move(1))
        self.buttons["down"].clicked.connect(lambda: self._move(-1))
        self.buttons["duplicate"].clicked.connect(self._duplicate)
        self.buttons["merge"].clicked.connect(lambda: self.merge_requested.emit(self.selected()))
        self.buttons["delete"].clicked.connect(lambda: self.delete_requested.emit(self.selected()))
        self._update_buttons()

    # ----------------------------------------------------------------- content
    def set_layers(self, rows: list[LayerRow], selected: list[int]) -> None:
        """Show ``rows`` (given back to front; shown front-most on top)."""
        self._filling = True
        try:
            self.tree.clear()
            self._rows = {row.id: row for row in rows}
            for row in reversed(rows):
                item = QTreeWidgetItem()
                item.setData(0, ID_ROLE, row.id)
                item.setIcon(COL_LABEL, swatch(row.color))
                text = row.label if row.score is None else f"{row.label}  ({row.score:.2f})"
                item.setText(COL_LABEL, text)
                item.setToolTip(COL_LABEL, f"mask {row.id}: {row.label}")
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
                              | Qt.ItemFlag.ItemIsDragEnabled | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(COL_VISIBLE, _check(row.visible))
                item.setCheckState(COL_LOCKED, _check(row.locked))
                item.setText(COL_TRACK, row.track_text)
                item.setToolTip(COL_TRACK, row.track_tip)
                self.tree.addTopLevelItem(item)
                item.setSelected(row.id in selected)
        finally:
            self._filling = False
        self._update_buttons()

    def selected(self) -> list[int]:
        """Selected mask ids, front-most first."""
        return [int(item.data(0, ID_ROLE)) for item in self._items() if item.isSelected()]

    def ids_front_to_back(self) -> list[int]:
        return [int(item.data(0, ID_ROLE)) for item in self._items()]

    def item_for(self, ann_id: int) -> QTreeWidgetItem | None:
        return next((i for i in self._items() if int(i.data(0, ID_ROLE)) == ann_id), None)

    # ------------------------------------------------------------------ tracks
    def track_menu(self, ann_id: int, parent: QWidget | None = None) -> QMenu:
        """The context menu of layer ``ann_id``: its track actions."""
        menu = QMenu(parent or self)
        row = self._rows.get(ann_id)
        if row is None:
            return menu
        if row.track_id is None:
            menu.addAction("New track from this layer",
                           lambda: self.new_track_requested.emit(ann_id))
            if self.current_track is not None:
                menu.addAction(f"Add to track #{self.current_track}",
                               lambda: self.add_to_track_requested.emit(ann_id))
            return menu
        track = row.track_id
        relabel = menu.addMenu(f"Relabel track #{track} (every frame) as")
        for label_id, name, color in self.label_choices:
            action = relabel.addAction(swatch(color), name)
            action.triggered.connect(
                lambda _c=False, lab=label_id: self.relabel_track_requested.emit(track, lab))
        relabel.setEnabled(bool(self.label_choices))
        menu.addAction(f"Leave track #{track}", lambda: self.leave_track_requested.emit(ann_id))
        return menu

    def _context_menu(self, pos: QPoint) -> None:
        item = self.tree.itemAt(pos)
        if item is None:
            return
        menu = self.track_menu(int(item.data(0, ID_ROLE)))
        if not menu.isEmpty():
            menu.exec(self.tree.viewport().mapToGlobal(pos))
        menu.deleteLater()

    # ----------------------------------------------------------------- helpers
    def _items(self) -> list[QTreeWidgetItem]:
        return [self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount())]

    def _update_buttons(self) -> None:
        count = len(self.selected())
        for key in ("up", "down", "duplicate"):
            self.buttons[key].setEnabled(count == 1)
        self.buttons["merge"].setEnabled(count >= 2)
        self.buttons["delete"].setEnabled(count >= 1)

    def _selection(self) -> None:
        self._update_buttons()
        if not self._filling:
            self.selection_changed.emit(self.selected())

    def _item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if self._filling:
            return
        ann_id = int(item.data(0, ID_ROLE))
        checked = item.checkState(column) == Qt.CheckState.Checked
        if column == COL_VISIBLE:
            self.visible_toggled.emit(ann_id, checked)
        elif column == COL_LOCKED:
            self.locked_toggled.emit(ann_id, checked)

    def _move(self, steps: int) -> None:
        chosen = self.selected()
        if len(chosen) == 1:
            self.move_requested.emit(chosen[0], steps)

    def _duplicate(self) -> None:
        chosen = self.selected()
        if len(chosen) == 1:
            self.duplicate_requested.emit(chosen[0])

    def _dropped(self) -> None:
        self.order_changed.emit(list(reversed(self.ids_front_to_back())))


def _check(on: bool) -> Qt.CheckState:
    return Qt.CheckState.Checked if on else Qt.CheckState.Unchecked
