"""The images dock: every image of the project with its status and mask count.

A person filters the list by name and by status; a single click on a row,
or moving to it with the arrow keys, opens that image (as in labelme). The
dock only shows records it is given (:meth:`ImagesDock.set_images`,
:meth:`ImagesDock.update_image`) and emits :attr:`ImagesDock.image_activated`;
it never touches the project.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from samdesk.annotations import ImageRecord, ImageStatus
from samdesk.imagefiles import display_path

STATUS_TEXT = {
    ImageStatus.TODO: "todo",
    ImageStatus.IN_PROGRESS: "in progress",
    ImageStatus.DONE: "done",
    ImageStatus.ERROR: "error",
}
STATUS_COLOR = {
    ImageStatus.TODO: "#9a9a9a",
    ImageStatus.IN_PROGRESS: "#e69f00",
    ImageStatus.DONE: "#2ca25f",
    ImageStatus.ERROR: "#d62728",
}
ALL = "all"
ID_ROLE = Qt.ItemDataRole.UserRole


class ImagesDock(QDockWidget):
    """List of images: name, status, masks; filter by name and status."""

    image_activated = Signal(int)
    """A person asked to open the image with this id."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Images", parent)
        self.setObjectName("images_dock")
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by name")
        self.filter_edit.setClearButtonEnabled(True)
        self.status_combo = QComboBox()
        self.status_combo.addItem("All", ALL)
        for status, text in STATUS_TEXT.items():
            self.status_combo.addItem(text.capitalize(), status.value)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Image", "Status", "Masks"])
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)

        row = QHBoxLayout()
        row.addWidget(self.filter_edit, 1)
        row.addWidget(self.status_combo)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(row)
        layout.addWidget(self.tree)
        self.setWidget(body)

        self._items: dict[int, QTreeWidgetItem] = {}
        self._records: dict[int, ImageRecord] = {}
        self._current: int | None = None
        self._quiet = False  # the dock itself moves the current row: nothing to open
        self._asked: int | None = None  # asked for, not yet marked open (one click, one ask)
        self.filter_edit.textChanged.connect(self._apply_filter)
        self.status_combo.currentIndexChanged.connect(self._apply_filter)
        self.tree.itemActivated.connect(self._activated)
        self.tree.itemClicked.connect(self._activated)
        self.tree.itemDoubleClicked.connect(self._activated)
        self.tree.currentItemChanged.connect(self._moved)

    # ----------------------------------------------------------------- content
    def set_images(self, records: list[ImageRecord]) -> None:
        """Show exactly ``records``, in this order."""
        self._quiet = True
        try:
            self._set_images(records)
        finally:
            self._quiet = False

    def _set_images(self, records: list[ImageRecord]) -> None:
        self.tree.clear()
        self._items.clear()
        self._records.clear()
        for record in records:
            item = QTreeWidgetItem()
            item.setData(0, ID_ROLE, record.id)
            self.tree.addTopLevelItem(item)
            self._items[record.id] = item
            self._fill(item, record)
        self._apply_filter()
        if self._current is not None:
            self.set_current(self._current)

    def update_image(self, record: ImageRecord) -> None:
        """Refresh one row (status or mask count changed)."""
        item = self._items.get(record.id)
        if item is not None:
            self._fill(item, record)
            self._apply_filter()

    def set_current(self, image_id: int | None) -> None:
        """Mark the open image in bold and scroll to it."""
        previous = self._items.get(self._current) if self._current is not None else None
        if previous is not None:
            self._bold(previous, False)
        self._current, self._asked = image_id, None
        item = self._items.get(image_id) if image_id is not None else None
        if item is not None:
            self._bold(item, True)
            quiet, self._quiet = self._quiet, True
            try:
                self.tree.setCurrentItem(item)
            finally:
                self._quiet = quiet
            self.tree.scrollToItem(item)

    def visible_ids(self) -> list[int]:
        """Ids of the rows the filters leave visible, top to bottom."""
        return [self.tree.topLevelItem(i).data(0, ID_ROLE)
                for i in range(self.tree.topLevelItemCount())
                if not self.tree.topLevelItem(i).isHidden()]

    def record(self, image_id: int) -> ImageRecord | None:
        return self._records.get(image_id)

    # ----------------------------------------------------------------- helpers
    def _fill(self, item: QTreeWidgetItem, record: ImageRecord) -> None:
        self._records[record.id] = record
        status = ImageStatus(record.status)
        shown = display_path(record.path)  # undecodable bytes and newlines as U+FFFD
        item.setText(0, shown)
        item.setToolTip(0, shown if record.error is None else f"{shown}: {record.error}")
        item.setText(1, STATUS_TEXT[status] + (" (file changed)" if record.changed else ""))
        item.setForeground(1, QBrush(QColor(STATUS_COLOR[status])))
        item.setText(2, str(record.annotation_count))
        item.setTextAlignment(2, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    @staticmethod
    def _bold(item: QTreeWidgetItem, bold: bool) -> None:
        for column in range(3):
            font = item.font(column)
            font.setBold(bold)
            item.setFont(column, font)

    def _apply_filter(self) -> None:
        text = self.filter_edit.text().strip().lower()
        wanted = self.status_combo.currentData()
        for image_id, item in self._items.items():
            record = self._records[image_id]
            hide = bool(text) and text not in display_path(record.path).lower()
            hide = hide or (wanted != ALL and ImageStatus(record.status).value != wanted)
            item.setHidden(hide)

    def _activated(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        image_id = int(item.data(0, ID_ROLE))
        if image_id not in (self._current, self._asked):
            self._asked = image_id
            self.image_activated.emit(image_id)

    def _moved(self, item: QTreeWidgetItem | None, _previous: QTreeWidgetItem | None) -> None:
        """The person moved the current row (a click, an arrow key): open its image."""
        if item is not None and not self._quiet and not item.isHidden():
            self._activated(item)
