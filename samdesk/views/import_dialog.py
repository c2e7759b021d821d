"""File > Import…: any dataset samdesk reads, its format recognised; and the labelme offer.

:class:`ImportDialog` asks for a source (a file or a folder) and a format,
"Recognise from the source" by default (the table in
:mod:`samdesk.export.detect`). The import runs in a
:class:`~samdesk.views.export_dialog.BackgroundJob` behind a progress
dialog, as exports do; its summary (or the one line saying why nothing was
imported) goes to ``report``.

Opening a folder that had no samdesk project yet, whose images have
labelme JSON files beside them (labelme's and X-AnyLabeling's own layout),
shows :class:`LabelmeOffer`: a non-modal box offering to import them. It
is offered only while the project is new, so it is never asked again for
that project, whatever the answer. Looking for the JSON files runs off
the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QWidget,
)

from samdesk.export.detect import IMPORTERS, ImportReport, import_source
from samdesk.export.labelme_import import labelme_beside_images
from samdesk.project import Project
from samdesk.store_location import locate_store
from samdesk.views.export_dialog import BackgroundJob, JobCancelled, run_with_progress

RECOGNISE = "Recognise from the source"


class ImportDialog(QDialog):
    """A source path (File… or Folder…) and its format."""

    def __init__(self, project: Project, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import")
        self.project = project
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("a COCO or labelme JSON, or a dataset folder")
        self.file_button = QPushButton("File…")
        self.folder_button = QPushButton("Folder…")
        self.file_button.clicked.connect(self._browse_file)
        self.folder_button.clicked.connect(self._browse_folder)
        row = QHBoxLayout()
        for widget in (self.path_edit, self.file_button, self.folder_button):
            row.addWidget(widget)
        self.format_combo = QComboBox()
        self.format_combo.addItem(RECOGNISE, None)
        for fmt in IMPORTERS.values():
            self.format_combo.addItem(f"{fmt.name}: {fmt.looks_like}", fmt.name)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setEnabled(False)
        self.path_edit.textChanged.connect(
            lambda text: self.ok_button.setEnabled(bool(text.strip())))
        form = QFormLayout(self)
        form.addRow("Source", row)
        form.addRow("Format", self.format_combo)
        form.addRow(buttons)

    def _browse_file(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(self, "Import a file", str(self.project.folder),
                                                "Datasets (*.json *.yaml *.yml);;All files (*)")
        if chosen:
            self.path_edit.setText(chosen)

    def _browse_folder(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Import a folder",
                                                  str(self.project.folder))
        if chosen:
            self.path_edit.setText(chosen)

    def options(self) -> tuple[Path, str | None]:
        """``(source, format name or None to recognise it)`` as chosen."""
        return Path(self.path_edit.text().strip()).expanduser(), self.format_combo.currentData()


def summary_text(format_name: str, summary: ImportReport) -> str:
    """An import's summary for the status bar (first line) and a box (the rest)."""
    lines = summary.lines()
    if summary.nothing_matched is not None:
        return f"Import failed: {summary.nothing_matched}"
    return "\n".join([f"import ({format_name}): {lines[0]}", *lines[1:]])


def start_import(parent: QWidget | None, project: Project, source: Path,
                 format_name: str | None, report: Callable[[str], None]) -> BackgroundJob:
    """Import ``source`` in the background (one undo step; Cancel stops it unwritten);
    ``report`` gets the summary or the one-line error."""

    def work(progress: Callable[[int, int], None], cancelled: Callable[[], bool]) -> Any:
        def step(done: int, total: int) -> None:
            if cancelled():
                raise JobCancelled()
            progress(done, total)

        return import_source(project, source, format_name, progress=step)

    return run_with_progress(parent, f"Importing {source.name}", work,
                             lambda result: report(summary_text(*result)),
                             lambda message: report(f"Import failed: {message}"))


def has_no_project(folder: str | Path) -> bool:
    """Whether ``folder`` has no samdesk project yet (nothing is written to find out)."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        return False
    return not locate_store(path.resolve(), create=False).exists


class LabelmeOffer(QMessageBox):
    """Non-modal: N images have labelme JSONs beside them; Import them or Not now."""

    def __init__(self, project: Project, count: int, parent: QWidget | None = None) -> None:
        super().__init__(QMessageBox.Icon.Question, "labelme annotations", "", parent=parent)
        self.setModal(False)
        self.project = project
        self.setText(f"{count} image{'s' if count != 1 else ''} of this folder "
                     f"{'have' if count != 1 else 'has'} labelme JSON files beside "
                     f"{'them' if count != 1 else 'it'} (labelme, X-AnyLabeling). "
                     "Import their shapes as masks and boxes?")
        self.setInformativeText("This is asked once, when a folder first opens in samdesk; "
                                "File > Import… does the same at any time.")
        self.import_button = self.addButton("Import", QMessageBox.ButtonRole.AcceptRole)
        self.addButton("Not now", QMessageBox.ButtonRole.RejectRole)


def offer_labelme(parent: QWidget, project: Project, is_current: Callable[[], bool],
                  track: Callable[[BackgroundJob], None],
                  report: Callable[[str], None]) -> BackgroundJob:
    """Look (off the GUI thread) for labelme JSONs beside the images of a new project and,
    if there are any, show a :class:`LabelmeOffer`. Import starts the labelme import of
    the project folder (a job handed to ``track``), if the project is still open."""
    job = BackgroundJob(lambda _progress, _cancelled: labelme_beside_images(project), parent)

    def found(count: int) -> None:
        job.deleteLater()
        if not count or not is_current():
            return
        offer = LabelmeOffer(project, count, parent)

        def clicked(button: object) -> None:
            if button is offer.import_button and is_current():
                track(start_import(parent, project, project.folder, "labelme", report))

        offer.buttonClicked.connect(clicked)
        offer.show()

    job.succeeded.connect(found)
    job.failed.connect(lambda _message: job.deleteLater())  # nothing to offer: say nothing
    job.start()
    return job
