"""Can Qt's X11 platform plugin load? Asked before the ``QApplication`` exists.

The PySide6 wheel ships Qt's X11 plugin, ``PySide6/Qt/plugins/platforms/libqxcb.so``,
but not the system libraries it links (xcb-icccm, xcb-keysyms, xkbcommon-x11,
EGL, fontconfig...). When one is missing, Qt prints a long hint naming only
one of them and aborts (exit 134) before any window appears. samdesk runs
``ldd`` on the plugin first and, when a library is not found, says in one line
which ones and the Debian/Ubuntu packages that provide them.

The check runs only where Qt would load that plugin: on Linux with ``DISPLAY``
set and ``QT_QPA_PLATFORM`` unset or ``xcb`` (not ``offscreen``, not Wayland).
This module imports neither Qt nor torch: it must work when Qt cannot.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from samdesk.errors import SamdeskError

XCB_LIBRARY_PACKAGES: dict[str, str] = {
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libGLdispatch.so.0": "libglvnd0",
    "libOpenGL.so.0": "libopengl0",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libdbus-1.so.3": "libdbus-1-3",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
}
"""Each library Qt's xcb plugin (and the Qt libraries it loads) links, and its
Debian/Ubuntu package. ``scripts/install-debian-deps.sh`` installs them all."""

LDD_TIMEOUT_S = 20.0
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$", re.MULTILINE)


class PlatformPluginError(SamdeskError):
    """Qt's platform plugin cannot load; the message names the libraries and packages."""


def wants_xcb(environ: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """True when Qt would start on its X11 (xcb) plugin.

    That is: Linux, ``DISPLAY`` set, and ``QT_QPA_PLATFORM`` unset (and not a
    Wayland session) or naming ``xcb`` first (``xcb``, ``xcb:options``, ``xcb;wayland``).
    """
    env = os.environ if environ is None else environ
    if not (platform or sys.platform).startswith("linux") or not env.get("DISPLAY"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "").strip()
    if not chosen:
        wayland = env.get("XDG_SESSION_TYPE") == "wayland" and env.get("WAYLAND_DISPLAY")
        return not wayland
    first = re.split(r"[;:]", chosen, maxsplit=1)[0].strip()
    return first == "xcb"


def xcb_plugin_path() -> Path | None:
    """``libqxcb.so`` of the installed PySide6 (found without importing it), or None."""
    try:
        spec = importlib.util.find_spec("PySide6")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    plugin = Path(spec.origin).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def missing_libraries(ldd_output: str) -> list[str]:
    """The libraries ``ldd`` reports as ``=> not found``, each once, in its order."""
    return list(dict.fromkeys(_NOT_FOUND.findall(ldd_output)))


def run_ldd(plugin: Path, ldd: str = "ldd") -> str | None:
    """``ldd``'s output for ``plugin``; None when ``ldd`` cannot run (no verdict then)."""
    try:
        done = subprocess.run([ldd, str(plugin)], capture_output=True, text=True,
                              timeout=LDD_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def describe_missing(missing: list[str], plugin: Path, install: str | None) -> str:
    """One line naming the missing libraries and the packages that provide them.

    ``install`` is the command that installs packages here (``sudo apt-get install``),
    or None where there is no apt-get.
    """
    packages = list(dict.fromkeys(XCB_LIBRARY_PACKAGES[m] for m in missing
                                  if m in XCB_LIBRARY_PACKAGES))
    unknown = [m for m in missing if m not in XCB_LIBRARY_PACKAGES]
    line = (f"Qt's X11 platform plugin ({plugin.name}) cannot load, missing "
            f"{', '.join(missing)}")
    if packages:
        verb = f"install them with: {install}" if install else "Debian/Ubuntu packages:"
        line += f"; {verb} {' '.join(packages)}"
    if unknown:
        line += f" (no known package for {', '.join(unknown)})"
    return line


def check_xcb(environ: Mapping[str, str] | None = None, plugin: Path | None = None,
              ldd: str = "ldd") -> None:
    """Raise :class:`PlatformPluginError` when Qt would load libqxcb.so and cannot.

    ``plugin`` defaults to PySide6's own; ``ldd`` is the program run on it. No
    verdict (nothing raised) when the plugin or ``ldd`` is not there.
    """
    if not wants_xcb(environ):
        return
    plugin = plugin or xcb_plugin_path()
    if plugin is None:
        return
    output = run_ldd(plugin, ldd)
    missing = missing_libraries(output or "")
    if missing:
        raise PlatformPluginError(describe_missing(missing, plugin, _install_command()))


def _install_command() -> str | None:
    """``apt-get install`` (with ``sudo`` unless root), or None without apt-get."""
    if shutil.which("apt-get") is None:
        return None
    return "apt-get install" if os.geteuid() == 0 else "sudo apt-get install"
