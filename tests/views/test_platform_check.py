"""The window's start-up check: a missing X11 library is one line and exit 2, not a Qt abort.

And the hidden ``--screenshot`` option that CI's window check
(``scripts/check_window.py``) uses.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from samdesk.views import platform_check
from samdesk.views.platform_check import (
    XCB_LIBRARY_PACKAGES,
    PlatformPluginError,
    check_xcb,
    missing_libraries,
    wants_xcb,
)

REPO = Path(__file__).resolve().parents[2]
LDD_MISSING = """\
\tlinux-vdso.so.1 (0x00007ffd4e3f2000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x1)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f2a1c0f0000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007f2a1c0e0000)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2a1b800000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f2a1c200000)
"""


def fake_ldd(folder: Path, output: str) -> Path:
    """An ``ldd`` program in ``folder`` that prints ``output`` whatever it is given."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "output.txt").write_text(output)
    program = folder / "ldd"
    program.write_text(f"#!/bin/sh\ncat '{folder / 'output.txt'}'\n")
    program.chmod(0o755)
    return program


def test_ldd_output_names_each_missing_library_once() -> None:
    assert missing_libraries(LDD_MISSING) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert missing_libraries(LDD_MISSING.replace("not found", "/lib/x.so (0x1)")) == []


@pytest.mark.parametrize(("environ", "platform", "expected"), [
    ({"DISPLAY": ":0"}, "linux", True),
    ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"}, "linux", True),
    ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb:nograb"}, "linux", True),
    ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb;wayland"}, "linux", True),
    ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, "linux", False),
    ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "wayland;xcb"}, "linux", False),
    ({"DISPLAY": ":0", "XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"},
     "linux", False),
    ({}, "linux", False),
    ({"QT_QPA_PLATFORM": "xcb"}, "linux", False),
    ({"DISPLAY": ":0"}, "darwin", False),
    ({"DISPLAY": ":0"}, "win32", False),
])
def test_only_an_x11_start_is_checked(environ: dict[str, str], platform: str,
                                      expected: bool) -> None:
    assert wants_xcb(environ, platform) is expected


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb plugin is Linux's")
def test_a_missing_library_is_one_line_naming_it_and_its_package(tmp_path: Path) -> None:
    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"\x7fELF")
    ldd = fake_ldd(tmp_path / "bin", LDD_MISSING)
    with pytest.raises(PlatformPluginError) as caught:
        check_xcb({"DISPLAY": ":0"}, plugin=plugin, ldd=str(ldd))
    line = str(caught.value)
    assert "\n" not in line
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1" in line
    assert "apt-get install libxcb-icccm4 libxcb-keysyms1" in line or (
        shutil.which("apt-get") is None and "libxcb-icccm4 libxcb-keysyms1" in line)
    # nothing missing, offscreen, or no ldd at all: no verdict, the window starts
    check_xcb({"DISPLAY": ":0"}, plugin=plugin,
              ldd=str(fake_ldd(tmp_path / "ok", "\tlibc.so.6 => /lib/libc.so.6 (0x1)\n")))
    check_xcb({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, plugin=plugin, ldd=str(ldd))
    check_xcb({"DISPLAY": ":0"}, plugin=plugin, ldd=str(tmp_path / "no-such-ldd"))


def test_an_unknown_library_is_named_without_a_package() -> None:
    line = platform_check.describe_missing(["libxcb-icccm.so.4", "libfoo.so.9"],
                                           Path("libqxcb.so"), "sudo apt-get install")
    assert "sudo apt-get install libxcb-icccm4" in line
    assert "no known package for libfoo.so.9" in line


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb plugin is Linux's")
def test_samdesk_exits_2_with_one_line_before_qt_starts(tmp_path: Path) -> None:
    """The real command on an X11 display (``DISPLAY`` set, no server behind it) where
    ldd finds two libraries missing: exit 2 and one line, where Qt would abort (134)."""
    if platform_check.xcb_plugin_path() is None:
        pytest.skip("this PySide6 has no libqxcb.so")
    bin_dir = fake_ldd(tmp_path / "bin", LDD_MISSING).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QT_", "WAYLAND"))}
    env.update(DISPLAY=":97", PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
               XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"))
    done = subprocess.run([sys.executable, "-m", "samdesk.cli", str(REPO / "resources/sample")],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("samdesk: error: Qt's X11 platform plugin")
    assert "libxcb-icccm.so.4" in lines[0] and "libxcb-keysyms1" in lines[0]
    assert done.stdout == ""


def test_the_install_script_installs_every_package_of_the_table() -> None:
    script = (REPO / "scripts" / "install-debian-deps.sh").read_text()
    listed = re.search(r'PACKAGES="([^"]*)"', script)
    assert listed is not None
    assert set(XCB_LIBRARY_PACKAGES.values()) <= set(listed.group(1).split())


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs binutils' readelf")
def test_every_system_library_qt_links_has_a_package() -> None:
    """Each library libqxcb.so, its GL integrations and the Qt libraries they load
    link, other than those the wheel bundles and the C/C++ runtime, is in the table."""
    plugin = platform_check.xcb_plugin_path()
    if plugin is None:
        pytest.skip("this PySide6 has no libqxcb.so")
    qt = plugin.parent.parent.parent
    files = [plugin, *sorted((qt / "plugins" / "xcbglintegrations").glob("*.so")),
             *(qt / "lib" / f"libQt6{name}.so.6" for name in
               ("XcbQpa", "Gui", "Widgets", "DBus", "Core"))]
    bundled = {p.name for p in (qt / "lib").iterdir()}
    runtime = re.compile(r"^(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|ld-linux)")
    needed: set[str] = set()
    for file in filter(Path.is_file, files):
        dynamic = subprocess.run(["readelf", "-d", str(file)], capture_output=True,
                                 text=True, check=True).stdout
        needed |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic))
    system = {n for n in needed if n not in bundled and not runtime.match(n)
              and not n.startswith("libQt6")}
    assert system, "readelf found no NEEDED entries"
    assert system - set(XCB_LIBRARY_PACKAGES) == set()


def _check_window_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_window",
                                                  REPO / "scripts" / "check_window.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_window_check_rejects_a_flat_or_wrong_sized_picture(tmp_path: Path) -> None:
    check = _check_window_module()
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((900, 1400, 3), 40, np.uint8)).save(flat)
    problems = check.judge_png(flat, (1400, 900))
    assert any("colours" in p for p in problems) and any("covers 100%" in p for p in problems)
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), np.uint8)).save(noise)
    assert check.judge_png(noise, (1400, 900)) == ["size 400x300, expected 1400x900"]
    assert check.judge_png(noise, (400, 300)) == []


def test_screenshot_option_saves_the_window_showing_the_sample(tmp_path: Path) -> None:
    """``samdesk --screenshot PNG resources/sample`` (offscreen here; CI runs it on Xvfb
    with xcb) exits 0 and leaves a PNG of the window with the first image on it."""
    check = _check_window_module()
    kept = tmp_path / "window.png"
    assert check.main(["--platform", "offscreen", "--keep", str(kept)]) == 0
    assert kept.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert check.judge_png(kept, (1400, 900)) == []
