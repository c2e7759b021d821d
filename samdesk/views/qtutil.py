"""Small bridges between numpy and Qt, and the OpenCV Qt plugin-path fix.

Arrays are row-major (C order). RGB images are ``uint8`` of shape (H, W, 3);
overlays are ``uint32`` of shape (H, W) holding ARGB32 *premultiplied*
pixels (``0xAARRGGBB``), the format Qt paints fastest.

``import cv2`` from the ``opencv-python`` wheel (not ``-headless``) points
``QT_QPA_PLATFORM_PLUGIN_PATH`` at the Qt plugins bundled inside the cv2
package. PySide6 then loads cv2's ``libqxcb.so``, built against another Qt,
and a window on a real X11 display fails to start. Call
:func:`drop_cv2_qt_plugin_path` before the ``QApplication`` is created.

:func:`guarded` wraps a Qt slot that touches the project or a model: any
exception it raises becomes one line (:func:`samdesk.errorlog.report`) handed
to every registered error sink (the main window's status bar), and the event
loop goes on.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PySide6.QtGui import QImage, QPixmap

from samdesk import errorlog

ErrorSink = Callable[[str, BaseException], None]
"""Shows one error line; the exception is there for details (e.g. its traceback)."""
_sinks: list[ErrorSink] = []
_F = TypeVar("_F", bound=Callable[..., Any])

CV2_QT_VARIABLES = ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR")
"""Environment variables cv2's ``config-3.py`` sets to its own Qt folders."""


def _cv2_package_dir() -> Path | None:
    """Folder of the installed cv2 package, found without importing it."""
    try:
        spec = importlib.util.find_spec("cv2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).resolve().parent


def _points_into_cv2(value: str, cv2_dir: Path | None) -> bool:
    """True when ``value`` (a path or an ``os.pathsep`` list) lies inside cv2's package."""
    for entry in filter(None, value.split(os.pathsep)):
        path = Path(entry).expanduser()
        resolved = path.resolve() if path.exists() else path
        if cv2_dir is not None and resolved.is_relative_to(cv2_dir):
            return True
        parts = resolved.parts
        # cv2 installed elsewhere than the interpreter's own cv2: ".../cv2/qt/..."
        if any(a == "cv2" and b == "qt" for a, b in zip(parts, parts[1:], strict=False)):
            return True
    return False


def drop_cv2_qt_plugin_path(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Remove Qt environment variables that point into OpenCV's bundled Qt.

    Looks at ``QT_QPA_PLATFORM_PLUGIN_PATH`` and ``QT_QPA_FONTDIR`` in
    ``environ`` (default ``os.environ``) and deletes each one whose path lies
    inside the cv2 package. A value a person set to somewhere else is kept.
    Returns the names removed. Safe to call more than once; must run before
    ``QApplication`` is created to have any effect.
    """
    env = os.environ if environ is None else environ
    cv2_dir = _cv2_package_dir()
    removed = []
    for name in CV2_QT_VARIABLES:
        value = env.get(name)
        if value and _points_into_cv2(value, cv2_dir):
            del env[name]
            removed.append(name)
    return removed


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """A QImage (``Format_RGB888``, owning its pixels) of a uint8 (H, W, 3) or (H, W) array.

    A 2-D array is taken as gray and shown as gray.
    """
    array = np.asarray(rgb)
    if array.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3) or (H, W), got {array.shape}")
    array = np.ascontiguousarray(array)
    height, width = array.shape[:2]
    image = QImage(array.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return image.copy()  # detach from the numpy buffer


def argb_to_qimage(argb: np.ndarray) -> QImage:
    """A QImage (``Format_ARGB32_Premultiplied``, owning its pixels) of uint32 (H, W)."""
    array = np.ascontiguousarray(argb, dtype=np.uint32)
    if array.ndim != 2:
        raise ValueError(f"overlay must have shape (H, W), got {array.shape}")
    height, width = array.shape
    image = QImage(array.data, width, height, 4 * width,
                   QImage.Format.Format_ARGB32_Premultiplied)
    return image.copy()


def argb_to_qpixmap(argb: np.ndarray) -> QPixmap:
    """A QPixmap of a premultiplied ARGB32 uint32 (H, W) array."""
    return QPixmap.fromImage(argb_to_qimage(argb))


def qimage_to_rgb(image: QImage) -> np.ndarray:
    """The pixels of any QImage as a new uint8 (H, W, 3) RGB array (alpha dropped)."""
    converted = image.convertToFormat(QImage.Format.Format_RGB888)
    width, height, stride = converted.width(), converted.height(), converted.bytesPerLine()
    if width == 0 or height == 0:
        return np.zeros((height, width, 3), dtype=np.uint8)
    buffer = np.frombuffer(converted.constBits(), dtype=np.uint8, count=stride * height)
    return buffer.reshape(height, stride)[:, : 3 * width].reshape(height, width, 3).copy()


def parse_color(color: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` or ``"#rgb"`` to an (r, g, b) tuple of ints 0..255."""
    text = color.strip() if isinstance(color, str) else ""
    digits = text[1:] if text.startswith("#") else ""
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    try:
        if len(digits) != 6:
            raise ValueError
        value = int(digits, 16)
    except ValueError:
        raise ValueError(f"colour {color!r} is not of the form #rrggbb") from None
    return (value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF


def add_error_sink(sink: ErrorSink) -> Callable[[], None]:
    """Send every guarded slot's error line to ``sink``; returns the call that stops it."""
    _sinks.append(sink)

    def remove() -> None:
        if sink in _sinks:
            _sinks.remove(sink)
    return remove


def report_slot_error(exc: BaseException, context: str) -> str:
    """One line for ``exc`` (traceback logged when unexpected), shown by every sink."""
    line = errorlog.report(exc, context)
    for sink in list(_sinks) or [lambda text, _exc: print(text, file=sys.stderr)]:
        try:
            sink(line, exc)
        except Exception as inner:  # a broken sink must not take the event loop down
            print(f"{line} (and showing it failed: {errorlog.describe(inner)})",
                  file=sys.stderr)
    return line


def guard(slot: _F, context: str) -> _F:
    """``slot`` that reports any ``Exception`` it raises instead of raising it (returns None)."""
    @functools.wraps(slot)
    def guarded_slot(*args: Any, **kwargs: Any) -> Any:
        try:
            return slot(*args, **kwargs)
        except Exception as exc:
            report_slot_error(exc, context)
            return None
    return guarded_slot  # type: ignore[return-value]


def guarded(context: str) -> Callable[[_F], _F]:
    """Decorator form of :func:`guard` for slot methods: ``@guarded("open image")``."""
    return lambda slot: guard(slot, context)
