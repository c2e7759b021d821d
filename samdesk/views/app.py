"""Start the annotation window: ``samdesk [FOLDER]``."""

from __future__ import annotations

import sys
from pathlib import Path

from samdesk.views.platform_check import check_xcb


def run(folder: str | None = None, screenshot: str | None = None) -> int:
    """Open the window (on ``folder`` if given, else the last folder) and run Qt.

    Before Qt is loaded, checks that its X11 plugin can load (raises
    :class:`~samdesk.views.platform_check.PlatformPluginError`, one line naming the
    missing libraries and their packages). With ``screenshot`` (a PNG path) the
    window is saved once its first image is shown, then closed: exit 0 when saved.
    """
    check_xcb()  # before anything loads Qt's libraries
    from samdesk.views.qtutil import drop_cv2_qt_plugin_path

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
    if screenshot is not None:
        from samdesk.views.screenshot import WindowScreenshot

        shot = WindowScreenshot(window, screenshot)
        app.exec()
        return 1 if shot.exit_code is None else shot.exit_code
    return int(app.exec())
