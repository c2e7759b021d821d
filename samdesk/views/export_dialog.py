"""Export and import from the File menu, run off the GUI thread with a progress dialog.

:class:`ExportDialog` asks for the format, the output path, what to do with
the images (copy them upright beside the annotations, hard-link them, or
leave them in the project folder) and whether to export only the images
marked done. The export itself runs in a
:class:`BackgroundJob` (a QThread) while a window-modal QProgressDialog shows
``done / total`` images; Cancel asks the exporter to stop at the next image.
Importing a COCO file works the same way. The window never freezes: the GUI
thread only receives progress signals.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QThread, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QProgressDialog,
    QPushButton,
    QWidget,
)

from samdesk import errorlog
from samdesk.export import FORMATS, ExportOptions, default_export_folder, export
from samdesk.project import Project

IMAGE_CHOICES = (
    ("copy", "Copy, upright, into images/ beside the annotations",
     "Every reader sees the pictures as the masks were drawn on them; the export can be "
     "moved, zipped or edited on its own"),
    ("link", "Hard-link into images/ (copy where turned upright)",
     "No extra disk space on the same drive; a photo stored sideways is still copied upright"),
    ("none", "Leave them in the project folder",
     "File names relative to the project folder; photos stored sideways are named in the "
     "summary, as readers that ignore EXIF see them turned"),
)
"""``(mode, label, tooltip)`` for the images choice; the first is the default."""

MAX_PATH_WIDTH = 900
"""Pixels the path field may grow to; a longer path shows its start, whole in the tooltip."""


class JobCancelled(Exception):
    """Raised inside a job's progress callback after Cancel was pressed."""


class BackgroundJob(QThread):
    """Runs ``work(progress, cancelled)`` on its own thread.

    ``work`` calls ``progress(done, total)`` as it goes and may poll
    ``cancelled()``; the result or the one-line error comes back as a signal
    on the GUI thread.
    """

    progressed = Signal(int, int)
    succeeded = Signal(object)
    failed = Signal(str)

    def __init__(self, work: Callable[[Callable[[int, int], None], Callable[[], bool]], Any],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._work = work
        self._cancel = False

    def cancel(self) -> None:
        self._cancel = True

    def run(self) -> None:
        try:
            result = self._work(self.progressed.emit, lambda: self._cancel)
        except JobCancelled:
            self.failed.emit("cancelled")
        except Exception as exc:  # reported to the person, one line (traceback to the log)
            self.failed.emit(errorlog.report(exc, "background job"))
        else:
            self.succeeded.emit(result)


def run_with_progress(parent: QWidget, title: str, work: Callable[..., Any],
                      done: Callable[[Any], None], failed: Callable[[str], None]) -> BackgroundJob:
    """Start ``work`` in a :class:`BackgroundJob` behind a cancellable progress dialog."""
    dialog = QProgressDialog(title, "Cancel", 0, 0, parent)
    dialog.setWindowTitle(title)
    dialog.setMinimumDuration(300)
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)
    job = BackgroundJob(work, parent)

    def progress(count: int, total: int) -> None:
        dialog.setMaximum(max(total, 1))
        dialog.setValue(min(count, max(total, 1)))
        dialog.setLabelText(f"{title}: {count} / {total}")

    def finish(callback: Callable[[Any], None], value: Any) -> None:
        dialog.close()
        job.wait()
        job.deleteLater()
        callback(value)

    job.progressed.connect(progress)
    job.succeeded.connect(lambda result: finish(done, result))
    job.failed.connect(lambda message: finish(failed, message))
    dialog.canceled.connect(job.cancel)
    job.start()
    return job


class ExportDialog(QDialog):
    """Format, output path, "only images marked done"."""

    def __init__(self, project: Project, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.project = project
        self.format_combo = QComboBox()
        for fmt in FORMATS.values():
            self.format_combo.addItem(fmt.name, fmt.name)
            self.format_combo.setItemData(self.format_combo.count() - 1, fmt.description,
                                          Qt.ItemDataRole.ToolTipRole)
        self.path_edit = QLineEdit()
        self.path_edit.textChanged.connect(self._show_whole_path)
        browse = QPushButton("Browse…")
        self.only_done = QCheckBox("Only images marked done")
        self.images_combo = QComboBox()
        for mode, text, tip in IMAGE_CHOICES:
            self.images_combo.addItem(text, mode)
            self.images_combo.setItemData(self.images_combo.count() - 1, tip,
                                          Qt.ItemDataRole.ToolTipRole)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        form = QFormLayout(self)
        form.addRow("Format", self.format_combo)
        form.addRow("Write to", path_row)
        form.addRow("Images", self.images_combo)
        form.addRow("", self.only_done)
        form.addRow(buttons)
        browse.clicked.connect(self._browse)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.format_combo.currentIndexChanged.connect(self._default_path)
        self._default_path()

    def _default_path(self) -> None:
        """``FOLDER-export/<format>`` beside the project folder: never inside it, where
        the exported PNGs would sit among the images."""
        fmt = FORMATS[self.format_combo.currentData()]
        name = f"export-{fmt.name}" if fmt.out_is_folder else f"{fmt.name}.json"
        self.path_edit.setText(str(default_export_folder(self.project) / name))

    def _show_whole_path(self, text: str) -> None:
        """Wide enough for the whole path (up to a screen-friendly width), shown from its
        start, and the whole path as the tooltip."""
        wanted = self.path_edit.fontMetrics().horizontalAdvance(text) + 24
        self.path_edit.setMinimumWidth(min(max(wanted, 320), MAX_PATH_WIDTH))
        self.path_edit.setToolTip(text)
        if not self.path_edit.hasFocus():  # typing keeps its cursor
            self.path_edit.setCursorPosition(0)

    def _browse(self) -> None:
        fmt = FORMATS[self.format_combo.currentData()]
        if fmt.out_is_folder:
            chosen = QFileDialog.getExistingDirectory(self, "Export folder", self.path_edit.text())
        else:
            chosen, _ = QFileDialog.getSaveFileName(self, "Export file", self.path_edit.text(),
                                                    "COCO JSON (*.json)")
        if chosen:
            self.path_edit.setText(chosen)

    def options(self) -> tuple[str, Path, bool, str]:
        """``(format name, output path, only done, images mode)`` as chosen."""
        return (self.format_combo.currentData(), Path(self.path_edit.text()).expanduser(),
                self.only_done.isChecked(), self.images_combo.currentData())


def start_export(parent: QWidget, project: Project, format_name: str, out: Path,
                 only_done: bool, report: Callable[[str], None],
                 images: str = "copy") -> BackgroundJob:
    """Export in the background; ``report`` gets the summary's lines or the error.
    ``images`` is ``copy``, ``link`` or ``none`` (:class:`ExportOptions`)."""

    def work(progress: Callable[[int, int], None], cancelled: Callable[[], bool]) -> Any:
        return export(project, format_name,
                      ExportOptions(out=out, only_done=only_done, progress=progress,
                                    cancel=cancelled, images=images))

    return run_with_progress(parent, f"Exporting {format_name}", work,
                             lambda summary: report("\n".join(summary.lines())),
                             lambda message: report(f"Export failed: {message}"))

