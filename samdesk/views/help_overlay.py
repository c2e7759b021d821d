"""The help overlay (F1 or ?): every keyboard shortcut of the window, on top of it.

The list is built from the window's actions, so a shortcut added to a menu
shows up here without another edit; a few mouse gestures that are not
actions are listed too. Any key or click closes it.
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence, QMouseEvent
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

GESTURES: tuple[tuple[str, str], ...] = (
    ("Left click", "positive point (point tool)"),
    ("Right / Shift+click", "negative point"),
    ("Drag", "box (box tool)"),
    ("Middle drag / Space+drag", "pan"),
    ("Wheel", "zoom"),
    ("Click a mask", "select its layer"),
    ("1 – 9", "label of the selected mask, else the default label"),
)


def shortcut_rows(actions: Iterable[QAction]) -> list[tuple[str, str]]:
    """``(keys, what it does)`` for every action that has a shortcut, in order."""
    rows = []
    for action in actions:
        keys = [s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts()]
        keys = [k for k in keys if k]
        if keys:
            rows.append((" / ".join(keys), action.text().replace("&", "")))
    return rows


class HelpOverlay(QWidget):
    """A translucent panel over its parent listing the shortcuts; closes on any input."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("help_overlay")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet("#help_overlay { background: rgba(20, 20, 24, 225); }"
                           "QLabel { color: #f0f0f0; font-size: 13px; }")
        self.text = QLabel()
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        parent.installEventFilter(self)
        self.hide()

    def show_for(self, actions: Iterable[QAction]) -> None:
        """Fill the list from ``actions`` and cover the parent window."""
        rows = shortcut_rows(actions) + list(GESTURES)
        half = (len(rows) + 1) // 2
        tables = "".join(
            "<td valign='top' style='padding:0 24px'><table>" + "".join(
                f"<tr><td align='right' style='padding:2px 10px'><b>{keys}</b></td>"
                f"<td style='padding:2px 10px'>{what}</td></tr>" for keys, what in part)
            + "</table></td>" for part in (rows[:half], rows[half:]))
        self.text.setText("<h2>Keyboard and mouse</h2>"
                          f"<table><tr>{tables}</tr></table><p>Press any key to close.</p>")
        parent = self.parentWidget()
        self.setGeometry(parent.rect())
        self.raise_()
        self.show()
        self.setFocus()

    def rows_text(self) -> str:
        """The shown text without markup (for tests and accessibility)."""
        return self.text.text()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt name)
        self.hide()
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt name)
        self.hide()
        event.accept()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        if watched is self.parentWidget() and event.type() == QEvent.Type.Resize:
            self.setGeometry(self.parentWidget().rect())
        return False
