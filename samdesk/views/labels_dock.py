"""The labels dock: add, rename, recolour and delete labels; pick the default one.

Clicking a label makes it the default: the label a newly accepted mask gets.
The default is shown in bold with "(default)". Deleting a label that masks
use asks what happens to them (keep them unlabelled, delete them, or give them
another label). The dock asks the questions; it emits the answers as request
signals and never writes to the project itself. The ``ask_*`` methods are the
only places that open dialogs, so tests can answer them.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QColorDialog,
    QDockWidget,
    QHBoxLayout,
    QInputDialog,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from samdesk.annotations import Label
from samdesk.views.layers_dock import swatch

ID_ROLE = Qt.ItemDataRole.UserRole
DeleteMode = str | int  # "unlabel", "delete" or the id of the label that takes the masks


class LabelsDock(QDockWidget):
    """The project's labels; the default one in bold."""

    default_changed = Signal(int)
    add_requested = Signal(str, str)  # name, colour
    rename_requested = Signal(int, str)
    recolor_requested = Signal(int, str)
    delete_requested = Signal(int, object)  # label id, DeleteMode

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Labels", parent)
        self.setObjectName("labels_dock")
        self.list = QListWidget()
        self.buttons: dict[str, QPushButton] = {}
        row = QHBoxLayout()
        for key, text in (("add", "Add"), ("rename", "Rename"), ("color", "Colour"),
                          ("delete", "Delete")):
            self.buttons[key] = QPushButton(text)
            row.addWidget(self.buttons[key])
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list)
        layout.addLayout(row)
        self.setWidget(body)
        self._labels: list[Label] = []
        self._counts: dict[int, int] = {}
        self._default: int | None = None
        self._filling = False
        self.list.currentItemChanged.connect(self._picked)
        self.buttons["add"].clicked.connect(self._add)
        self.buttons["rename"].clicked.connect(self._rename)
        self.buttons["color"].clicked.connect(self._recolor)
        self.buttons["delete"].clicked.connect(self._delete)

    # ----------------------------------------------------------------- content
    def set_labels(self, labels: list[Label], default: int | None,
                   counts: dict[int, int] | None = None) -> None:
        """Show ``labels``; ``counts`` is masks per label id (for the delete question)."""
        self._labels = list(labels)
        self._counts = dict(counts or {})
        self._default = default
        self._filling = True
        try:
            self.list.clear()
            for label in labels:
                key = f"{label.hotkey}  " if label.hotkey else "    "
                suffix = "  (default)" if label.id == default else ""
                item = QListWidgetItem(swatch(label.color), f"{key}{label.name}{suffix}")
                item.setData(ID_ROLE, label.id)
                item.setToolTip(f"{label.name} {label.color}"
                                + (f", key {label.hotkey}" if label.hotkey else ""))
                font = item.font()
                font.setBold(label.id == default)
                item.setFont(font)
                self.list.addItem(item)
                if label.id == default:
                    self.list.setCurrentItem(item)
        finally:
            self._filling = False
        for key in ("rename", "color", "delete"):
            self.buttons[key].setEnabled(bool(labels))

    def current_label(self) -> Label | None:
        item = self.list.currentItem()
        if item is None:
            return None
        return next((lab for lab in self._labels if lab.id == item.data(ID_ROLE)), None)

    # --------------------------------------------------------------- questions
    def ask_text(self, title: str, prompt: str, text: str = "") -> str | None:
        value, ok = QInputDialog.getText(self, title, prompt, text=text)
        return value.strip() if ok and value.strip() else None

    def ask_color(self, initial: str) -> str | None:
        color = QColorDialog.getColor(QColor(initial), self, "Label colour")
        return color.name() if color.isValid() else None

    def ask_delete_mode(self, label: Label, count: int) -> DeleteMode | None:
        """What to do with the ``count`` masks of ``label``; None cancels."""
        if count == 0:
            return "unlabel"
        box = QMessageBox(self)
        box.setWindowTitle("Delete label")
        box.setText(f"{count} masks use the label {label.name!r}. What should happen to them?")
        keep = box.addButton("Keep them unlabelled", QMessageBox.ButtonRole.AcceptRole)
        drop = box.addButton("Delete them", QMessageBox.ButtonRole.DestructiveRole)
        others = [lab for lab in self._labels if lab.id != label.id]
        move = box.addButton("Give them another label…", QMessageBox.ButtonRole.ActionRole)
        move.setEnabled(bool(others))
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        clicked = box.clickedButton()
        if clicked is keep:
            return "unlabel"
        if clicked is drop:
            return "delete"
        if clicked is move:
            names = [lab.name for lab in others]
            name, ok = QInputDialog.getItem(self, "Delete label", "New label:", names, 0, False)
            if ok:
                return next(lab.id for lab in others if lab.name == name)
        return None

    # ----------------------------------------------------------------- actions
    def _picked(self, item: QListWidgetItem | None, _previous: object = None) -> None:
        if item is not None and not self._filling:
            self.default_changed.emit(int(item.data(ID_ROLE)))

    def _add(self) -> None:
        name = self.ask_text("Add label", "Name:")
        if name is not None:
            self.add_requested.emit(name, "")

    def _rename(self) -> None:
        label = self.current_label()
        if label is not None:
            name = self.ask_text("Rename label", "Name:", label.name)
            if name is not None and name != label.name:
                self.rename_requested.emit(label.id, name)

    def _recolor(self) -> None:
        label = self.current_label()
        if label is not None:
            color = self.ask_color(label.color)
            if color is not None and color != label.color:
                self.recolor_requested.emit(label.id, color)

    def _delete(self) -> None:
        label = self.current_label()
        if label is not None:
            mode = self.ask_delete_mode(label, self._counts.get(label.id, 0))
            if mode is not None:
                self.delete_requested.emit(label.id, mode)
