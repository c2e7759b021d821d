"""The export dialog: a default beside the project, the whole path shown, one-line failures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from samdesk.export import FORMATS  # noqa: E402
from samdesk.imagefiles import EXPORT_MARKER  # noqa: E402
from samdesk.project import Project  # noqa: E402
from samdesk.views.export_dialog import MAX_PATH_WIDTH, ExportDialog, start_export  # noqa: E402
from tests.export_fixtures import write_images  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    folder = tmp_path / "a-rather-long-folder-name-for-a-project" / "holiday-photos"
    write_images(folder)
    opened = Project.open(folder)
    yield opened
    opened.close()


def test_the_default_path_is_beside_the_project_and_shown_whole(qtbot, project: Project) -> None:
    dialog = ExportDialog(project)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    beside = project.folder.with_name("holiday-photos-export")
    for index in range(dialog.format_combo.count()):
        dialog.format_combo.setCurrentIndex(index)
        fmt = FORMATS[dialog.format_combo.currentData()]
        text = dialog.path_edit.text()
        assert Path(text).parent == beside  # not FOLDER/export/...
        assert dialog.options()[1] == beside / Path(text).name
        assert dialog.path_edit.toolTip() == text
        assert dialog.path_edit.cursorPosition() == 0  # the start of the path is in view
        needed = dialog.path_edit.fontMetrics().horizontalAdvance(text)
        assert dialog.path_edit.width() >= min(needed, MAX_PATH_WIDTH - 24)
        assert text.endswith(".json") != fmt.out_is_folder


def test_a_failed_export_reports_one_line_naming_the_file(qtbot, project: Project,
                                                          tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    reports: list[str] = []
    start_export(None, project, "png-instance", blocker, False, reports.append)
    qtbot.waitUntil(lambda: bool(reports), timeout=15000)
    assert reports == [f"Export failed: {blocker}: is a file, and png-instance writes a folder "
                       "of PNGs; give a folder path (a new or an existing folder)"]
    reports.clear()
    out = project.folder / "masks"  # inside the project: marked, never listed as images
    start_export(None, project, "png-semantic", out, False, reports.append)
    qtbot.waitUntil(lambda: bool(reports), timeout=15000)
    assert reports[0].startswith("png-semantic: done, 4 images")
    assert (out / EXPORT_MARKER).is_file()
    assert project.rescan() == 0 and len(project.images()) == 4


def test_the_images_choice_defaults_to_upright_copies_and_reaches_the_export(
        qtbot, project: Project, tmp_path: Path) -> None:
    dialog = ExportDialog(project)
    qtbot.addWidget(dialog)
    assert dialog.options()[3] == "copy"  # the default: images upright beside the JSON
    dialog.images_combo.setCurrentIndex(dialog.images_combo.findData("none"))
    assert dialog.options()[3] == "none"
    reports: list[str] = []
    for images, written in (("copy", True), ("none", False)):
        out = tmp_path / images / "coco.json"
        start_export(None, project, "coco-rle", out, False, reports.append, images=images)
        qtbot.waitUntil(lambda: bool(reports), timeout=15000)
        lines = reports.pop().splitlines()
        assert lines[0].startswith("coco-rle: done, 4 images")
        assert (out.parent / "images" / "c.jpg").is_file() == written
        turned = "warning c.jpg: stored turned (EXIF orientation 6); the export describes " \
                 "it upright"
        assert (turned in lines) != written  # named only where it is not copied upright
