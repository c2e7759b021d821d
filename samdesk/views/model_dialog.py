"""The model dialog: segmentation engine, device, text detector, and checkpoints.

Every model the registry knows is listed with where its checkpoint is (or
"not installed"). "Fetch" downloads the selected model's official file with a
progress bar, and "Add file…" registers a checkpoint a person already has;
both run on a :class:`~samdesk.views.export_dialog.BackgroundJob`, so the
window stays responsive. Only installed models can be chosen. The choice is
kept in QSettings; the window hands it to the inference client, whose worker
loads the model while the old one keeps serving.

"Server" takes the URL of a ``samdesk serve`` and its API key; "List models"
asks it (off the GUI thread) which models it serves, and they join the
combos as ``server:URL#MODEL`` (run by the server, images sent once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from samdesk.inference.engines import packages, remote
from samdesk.inference.engines.base import EngineError
from samdesk.inference.models import checkpoints, paths, registry
from samdesk.inference.models.fetch import fetch, format_bytes
from samdesk.inference.models.registry import DETECTOR, SEGMENTER
from samdesk.views.export_dialog import BackgroundJob, JobCancelled
from samdesk.views.runtime_combo import RUNTIME_ITEMS, fill_runtimes

DEFAULT_SEGMENTER = "grabcut"
DEVICES = (("Auto", "auto"), ("GPU", "gpu"), ("CPU", "cpu"))
NAME_ROLE = Qt.ItemDataRole.UserRole


@dataclass(frozen=True)
class ModelChoice:
    """Registry names of the segmenter and the detector (None: no text prompts)."""

    segmenter: str = DEFAULT_SEGMENTER
    device: str = "auto"
    detector: str | None = None
    release_when_idle: bool = False
    server_url: str = ""
    api_key: str = ""
    runtime: str = "auto"
    """The segmenter's encoder runtime: auto, torch, onnx, onnx-int8."""


def available(name: str) -> bool:
    """Whether model ``name`` can be loaded now: its packages are installed (the text
    extra for GroundingDINO) and so is its checkpoint, if it needs one. A server's
    model (``server:URL#MODEL``) counts as available: the server says when loading."""
    if name.startswith(registry.REMOTE_PREFIX):
        return True
    spec = registry.MODELS.get(name)
    return spec is not None and packages.missing(spec.family) is None and (
        not spec.needs_checkpoint or checkpoints.installed(name) is not None)


def load_choice(settings: QSettings) -> ModelChoice:
    """The saved choice; a model no longer installed falls back (GrabCut, no detector)."""
    segmenter = str(settings.value("model/segmenter", DEFAULT_SEGMENTER))
    device = str(settings.value("model/device", "auto"))
    detector = settings.value("model/detector", "") or None
    if not available(segmenter) or _kind(segmenter) != SEGMENTER:
        segmenter = DEFAULT_SEGMENTER
    if detector is not None and not available(str(detector)):
        detector = None
    if device not in {d for _, d in DEVICES}:
        device = "auto"
    release = str(settings.value("model/release_when_idle", "false")).lower() == "true"
    runtime = str(settings.value("model/runtime", "auto"))
    if runtime not in {name for _, name in RUNTIME_ITEMS}:
        runtime = "auto"
    return ModelChoice(segmenter, device, detector, release,
                       str(settings.value("server/url", "") or ""),
                       str(settings.value("server/api_key", "") or ""), runtime)


def _kind(name: str) -> str | None:
    try:
        return registry.get_spec(name).kind
    except EngineError:  # a saved server name that no longer parses
        return None


def apply_server(choice: ModelChoice) -> None:
    """Give the remote engines the choice's API key for its server (before loading)."""
    if choice.server_url:
        remote.set_api_key(choice.server_url, choice.api_key or None)


def save_choice(settings: QSettings, choice: ModelChoice) -> None:
    settings.setValue("model/segmenter", choice.segmenter)
    settings.setValue("model/device", choice.device)
    settings.setValue("model/detector", choice.detector or "")
    settings.setValue("model/release_when_idle", "true" if choice.release_when_idle else "false")
    settings.setValue("server/url", choice.server_url)
    settings.setValue("server/api_key", choice.api_key)
    settings.setValue("model/runtime", choice.runtime)


def fetch_files(name: str, progress: Callable[[int, int], None],
                cancelled: Callable[[], bool]) -> list[Path]:
    """Download model ``name`` (and the tokenizer files a detector needs) where
    :func:`samdesk.inference.models.checkpoints.installed` finds them. ``progress`` gets
    bytes done and total (0 when unknown); Cancel keeps the ``.part`` file for resume."""
    spec = registry.get_spec(name)
    if spec.url is None:
        raise EngineError(f"model {name} has no download URL")
    wanted: list[tuple[str, Path, int | None, str | None]] = []
    if checkpoints.installed(name) is None:
        wanted.append((spec.url, checkpoints.default_path(spec), spec.size, spec.sha256))
    if spec.family in registry.FAMILIES_NEEDING_BERT:
        wanted += [(f.url, paths.bert_dir() / f.filename, f.size, f.sha256)
                   for f in registry.BERT_FILES if not (paths.bert_dir() / f.filename).is_file()]

    def step(done: int, total: int | None) -> None:
        if cancelled():
            raise JobCancelled()
        progress(done, total or 0)

    return [fetch(url, dest, size, sha, progress=step) for url, dest, size, sha in wanted]


def add_checked(name: str, path: Path) -> Path | None:
    """Register ``path`` as the official checkpoint of ``name``; None (nothing
    registered) when it is a checkpoint that differs: a fine-tuned one, maybe."""
    try:
        return checkpoints.add(name, path)
    except checkpoints.NotOfficialError:
        return None


class ModelDialog(QDialog):
    """Choose engine, device and detector; fetch or add checkpoints."""

    def __init__(self, choice: ModelChoice, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(640, 420)
        self.segmenter = QComboBox()
        self.device = QComboBox()
        for text, value in DEVICES:
            self.device.addItem(text, value)
        self.device.setCurrentIndex(max(0, self.device.findData(choice.device)))
        self.runtime = QComboBox()
        self.runtime.setObjectName("runtime")
        self._runtime = choice.runtime  # what the person picked, kept across refreshes
        self.detector = QComboBox()
        self.release = QCheckBox("Give GPU memory back when idle")
        self.release.setToolTip("Frees the GPU's cached memory whenever no model work is "
                                "left; slower next request, friendlier to other programs.")
        self.release.setChecked(choice.release_when_idle)
        self.server_url = QLineEdit(choice.server_url)
        self.server_url.setPlaceholderText("http://gpu-box:9001 (samdesk serve)")
        self.api_key = QLineEdit(choice.api_key)
        self.api_key.setPlaceholderText("API key, if the server needs one")
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.list_button = QPushButton("List models")
        self.server_models: list[dict[str, Any]] = []
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Model", "Kind", "Checkpoint"])
        self.tree.setRootIsDecorated(False)
        self.tree.setColumnWidth(0, 200)
        self.fetch_button = QPushButton("Fetch")
        self.add_button = QPushButton("Add file…")
        self.progress = QProgressBar()
        self.progress.hide()
        self.state = QLabel(f"Checkpoints live in {paths.models_dir()}")
        self.state.setWordWrap(True)
        self.job: BackgroundJob | None = None

        form = QFormLayout()
        form.addRow("Segmentation", self.segmenter)
        form.addRow("Device", self.device)
        form.addRow("Runtime", self.runtime)
        form.addRow("Text detector", self.detector)
        form.addRow("", self.release)
        server = QHBoxLayout()
        server.addWidget(self.server_url, 2)
        server.addWidget(self.api_key, 1)
        server.addWidget(self.list_button)
        form.addRow("Server", server)
        row = QHBoxLayout()
        row.addWidget(self.fetch_button)
        row.addWidget(self.add_button)
        row.addWidget(self.progress, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.tree, 1)
        layout.addLayout(row)
        layout.addWidget(self.state)
        layout.addWidget(buttons)
        self.fetch_button.clicked.connect(self._fetch)
        self.add_button.clicked.connect(self._add)
        self.list_button.clicked.connect(self.list_server_models)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.refresh(choice)
        self.segmenter.currentIndexChanged.connect(self._fill_runtimes)
        self.runtime.currentIndexChanged.connect(self._runtime_picked)

    def refresh(self, choice: ModelChoice | None = None) -> None:
        """Re-read what is installed and fill the list and the combos (the selected row stays)."""
        choice = choice or self.choice()
        selected = self.selected_name()
        self.tree.clear()
        self.segmenter.clear()
        self.detector.clear()
        self.detector.addItem("None (no text prompts)", "")
        for spec in registry.MODELS.values():
            path = checkpoints.installed(spec.name) if spec.needs_checkpoint else None
            where = ("built in" if not spec.needs_checkpoint
                     else str(path) if path else "not installed")
            missing = packages.missing(spec.family)
            if missing is not None:  # fetching works, choosing it needs the extra first
                where = f"{where}; needs pip install samdesk[text]"
            item = QTreeWidgetItem([spec.title, spec.kind, where])
            if missing is not None:
                item.setToolTip(2, missing)
            item.setData(0, NAME_ROLE, spec.name)
            self.tree.addTopLevelItem(item)
            if spec.name == selected:
                self.tree.setCurrentItem(item)
            if available(spec.name):
                combo = self.detector if spec.kind == DETECTOR else self.segmenter
                combo.addItem(spec.title, spec.name)
        self._add_server_models(choice)
        self.segmenter.setCurrentIndex(max(0, self.segmenter.findData(choice.segmenter)))
        self.detector.setCurrentIndex(max(0, self.detector.findData(choice.detector or "")))
        self._fill_runtimes()

    def _fill_runtimes(self) -> None:
        """The runtimes, with the costs measured for the chosen segmenter's checkpoint."""
        fill_runtimes(self.runtime, self.segmenter.currentData(), self._runtime)

    def _runtime_picked(self) -> None:
        self._runtime = self.runtime.currentData() or "auto"

    def _add_server_models(self, choice: ModelChoice) -> None:
        """The listed server's models in the combos, and a chosen server model kept."""
        url = self.server_url.text().strip().rstrip("/")
        for model in self.server_models:
            combo = self.detector if model.get("kind") == DETECTOR else self.segmenter
            name = registry.remote_name(url, str(model["name"]))
            combo.addItem(f"{model.get('title') or model['name']} on {url}", name)
        for combo, name in ((self.segmenter, choice.segmenter),
                            (self.detector, choice.detector or "")):
            if name.startswith(registry.REMOTE_PREFIX) and combo.findData(name) < 0:
                combo.addItem(f"{name[len(registry.REMOTE_PREFIX):]}", name)

    def list_server_models(self) -> None:
        """Ask the server in the URL field which models it serves (off the GUI thread)."""
        url = self.server_url.text().strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            self.state.setText("Server: give its URL, e.g. http://gpu-box:9001")
            return
        remote.set_api_key(url, self.api_key.text().strip() or None)

        def listed(models: list[dict[str, Any]]) -> None:
            self.server_models = models
            self.refresh()
            names = ", ".join(str(m["name"]) for m in models) or "no models"
            self.state.setText(f"{url} serves {names}")

        self._run(f"Listing the models of {url}",
                  lambda progress, cancelled: remote.Connection(url).models(), listed)

    def choice(self) -> ModelChoice:
        return ModelChoice(self.segmenter.currentData() or DEFAULT_SEGMENTER,
                           self.device.currentData() or "auto",
                           self.detector.currentData() or None,
                           self.release.isChecked(),
                           self.server_url.text().strip().rstrip("/"),
                           self.api_key.text().strip(),
                           self.runtime.currentData() or "auto")

    def selected_name(self) -> str | None:
        item = self.tree.currentItem()
        return None if item is None else str(item.data(0, NAME_ROLE))

    # ------------------------------------------------------------- background
    def _run(self, title: str, work: Callable[..., Any],
             then: Callable[[Any], None] | None = None) -> None:
        """Run ``work(progress, cancelled)`` on a thread; ``then(result)`` after it succeeds."""
        if self.job is not None:
            return
        self.fetch_button.setEnabled(False)
        self.add_button.setEnabled(False)
        self.progress.setRange(0, 0)
        self.progress.show()
        self.state.setText(title)
        self.job = BackgroundJob(work, self)
        self.job.progressed.connect(self._progressed)
        self.job.succeeded.connect(lambda result: self._succeeded(title, result, then))
        self.job.failed.connect(lambda message: self._finished(f"{title}: {message}"))
        self.job.start()

    def _succeeded(self, title: str, result: Any, then: Callable[[Any], None] | None) -> None:
        self._finished(f"{title}: done")
        if then is not None:
            then(result)

    def _progressed(self, done: int, total: int) -> None:
        if total > 0:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * done / total))
        self.progress.setFormat(f"{format_bytes(done)}"
                                + (f" / {format_bytes(total)}" if total else ""))

    def _finished(self, text: str) -> None:
        if self.job is not None:
            # no deleteLater: the job is the dialog's child and goes with it; a
            # deferred delete still pending when the dialog is deleted crashed Qt
            self.job.wait()
            self.job = None
        self.progress.hide()
        self.fetch_button.setEnabled(True)
        self.add_button.setEnabled(True)
        self.state.setText(text)
        self.refresh()

    def _fetch(self) -> None:
        name = self.selected_name()
        if name is None or not registry.MODELS[name].needs_checkpoint:
            self.state.setText("Select a model that needs a checkpoint first")
            return
        self._run(f"Fetching {name}", lambda progress, cancelled:
                  fetch_files(name, progress, cancelled))

    def _add(self) -> None:
        name = self.selected_name()
        if name is None or not registry.MODELS[name].needs_checkpoint:
            self.state.setText("Select the model the file is a checkpoint of first")
            return
        path, _ = QFileDialog.getOpenFileName(self, f"Checkpoint of {name}", str(Path.home()),
                                              "PyTorch checkpoints (*.pt *.pth);;All files (*)")
        if path:
            self.add_file(name, Path(path))

    def add_file(self, name: str, path: Path) -> None:
        """Register ``path`` as the checkpoint of ``name`` (checked off the GUI thread).

        A checkpoint that differs from the official file is registered as a
        fine-tuned one once the person says so (:meth:`ask_fine_tuned`).
        """
        def added(result: Path | None) -> None:
            if result is not None:
                return
            self.state.setText(f"{path.name} differs from the official {name} file")
            if not self.ask_fine_tuned(name, path):
                self.state.setText(f"{path.name} not added: it is not the official {name} file")
                return
            self._run(f"Adding {path.name} as a fine-tuned {name}",
                      lambda progress, cancelled: checkpoints.add(name, path, force=True))

        self._run(f"Adding {path.name}", lambda progress, cancelled: add_checked(name, path),
                  added)

    def ask_fine_tuned(self, name: str, path: Path) -> bool:
        """Ask whether ``path``, not the official file of ``name``, is a fine-tuned one."""
        answer = QMessageBox.question(
            self, "Add checkpoint",
            f"{path.name} differs from the official {name} checkpoint.\n"
            "Use it as a fine-tuned one?")
        return answer == QMessageBox.StandardButton.Yes

    def done(self, result: int) -> None:  # noqa: D401 (Qt name)
        """Close, cancelling a download in flight (its .part file stays)."""
        job, self.job = self.job, None
        if job is not None:
            job.progressed.disconnect()
            job.succeeded.disconnect()
            job.failed.disconnect()
            job.cancel()
            job.wait()  # the job is a child of the dialog and is deleted with it
        super().done(result)
