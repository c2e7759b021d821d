"""Start the annotation window: ``samdesk [FOLDER]``."""

from __future__ import annotations

import sys
from pathlib import Path

from samdesk.views.qtutil import drop_cv2_qt_plugin_path


def run(folder: str | None = None) -> int:
    """Open the window (on ``folder`` if given, else the last folder) and run Qt."""
    drop_cv2_qt_plugin_path()
    from PySide6.QtWidgets import QApplication

    from samdesk.views.gui_gc import GuiThreadGarbageCollector
    from samdesk.views.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    collector = GuiThreadGarbageCollector(parent=app)  # noqa: F841 - lives with the app
    app.setOrganizationName("samdesk")
    app.setApplicationName("samdesk")
    window = MainWindow()
    window.show()
    recent = window.recent_folders()
    last = recent[0] if recent and Path(recent[0]).is_dir() else None
    target = folder if folder is not None else last
    if target is not None and not window.open_folder(target) and folder is not None:
        window.close()
        return 2
    return int(app.exec())
