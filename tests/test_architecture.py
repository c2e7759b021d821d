"""The layering in DESIGN.md holds: the core and exporters import neither Qt nor torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")],
                            cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_core_import_loads_no_qt_and_no_torch():
    code = ("import sys, samdesk.project, samdesk.export, samdesk.images, samdesk.masks;"
            "bad = [m for m in ('torch', 'PySide6', 'cv2') if m in sys.modules];"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert "torch" not in out and "PySide6" not in out, out
