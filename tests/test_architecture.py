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


def _contracts() -> list[dict]:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["importlinter"]["contracts"]


def test_every_core_module_is_under_the_core_contract():
    """A new core module cannot slip past the Qt/torch ban by not being listed."""
    core = next(c for c in _contracts() if c["name"].startswith("The core"))
    listed = set(core["source_modules"])
    modules = {f"samdesk.{p.stem}" for p in (ROOT / "samdesk").glob("*.py")
               if p.stem not in ("__init__", "cli")}
    assert modules - listed == set(), "add these to the core contract in pyproject.toml"


def test_every_package_has_a_room_in_the_layers_and_the_architecture_doc():
    layers = next(c for c in _contracts() if c["type"] == "layers")["layers"]
    packages = {f"samdesk.{p.parent.name}" for p in (ROOT / "samdesk").glob("*/__init__.py")}
    packages |= {f"samdesk.inference.{p.parent.name}"
                 for p in (ROOT / "samdesk" / "inference").glob("*/__init__.py")}
    packages -= {"samdesk.inference"}
    assert packages - set(layers) == set()
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for name in layers:
        assert "samdesk/" + name.removeprefix("samdesk.").replace(".", "/") in doc, name
