"""Closing the Models dialog right after a background job never crashes the window."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import gc, os, sys, time
    gc.disable()  # as the app does (samdesk.views.gui_gc)
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from pathlib import Path
    from PySide6.QtWidgets import QApplication
    app = QApplication([])
    tmp = Path(sys.argv[1])
    os.environ["SAMDESK_MODELS"] = str(tmp / "models")
    from samdesk.views.model_dialog import ModelChoice, ModelDialog
    dialog = ModelDialog(ModelChoice())
    dialog.show()
    bogus = tmp / "notes.pth"
    bogus.write_text("not a checkpoint")
    dialog.add_file("sam_vit_b", bogus)
    deadline = time.monotonic() + 20
    while dialog.job is not None and time.monotonic() < deadline:
        app.processEvents()
    print(dialog.state.text())
    dialog.close()
    del dialog  # the person closed it: the C++ dialog and its children go now
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)
    print("still running")
""")


def test_closing_the_dialog_after_a_failed_add_does_not_crash(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "not a PyTorch checkpoint" in result.stdout
    assert "still running" in result.stdout
