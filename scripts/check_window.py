"""Check that samdesk's window really starts: open the sample folder, save a screenshot, judge it.

Run it on a display (CI: ``xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python
scripts/check_window.py``). It starts ``samdesk --screenshot PNG FOLDER`` with
``QT_QPA_PLATFORM=xcb`` (or ``--platform``) on a copy of ``resources/sample``, with
fresh settings, and checks the PNG: the window's default size, and a picture,
not one flat colour. Prints one line; exit 0 when the window passed, 1 when not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "resources" / "sample"
WINDOW_SIZE = (1400, 900)  # MainWindow's default size (width, height), fresh settings
MIN_COLOURS = 1000  # the sample photos alone give thousands; an empty window has < 100
MAX_TOP_SHARE = 0.6  # no colour covers more than this share of the pixels
START_TIMEOUT_S = 180


def judge_png(path: Path, size: tuple[int, int]) -> list[str]:
    """What is wrong with the screenshot at ``path`` (empty when nothing is).

    ``size`` is the expected (width, height) in pixels.
    """
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return [f"{path} is not a PNG"]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    problems = []
    if (rgb.shape[1], rgb.shape[0]) != size:
        problems.append(f"size {rgb.shape[1]}x{rgb.shape[0]}, expected {size[0]}x{size[1]}")
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) \
        | rgb[..., 2]
    _, counts = np.unique(packed, return_counts=True)
    if len(counts) < MIN_COLOURS:
        problems.append(f"only {len(counts)} colours (expected at least {MIN_COLOURS})")
    top = counts.max() / packed.size
    if top > MAX_TOP_SHARE:
        problems.append(f"one colour covers {top:.0%} of the window")
    return problems


def samdesk_command() -> list[str]:
    """The installed ``samdesk`` beside this interpreter, else ``python -m samdesk.cli``."""
    script = Path(sys.executable).parent / "samdesk"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "samdesk.cli"]


def take_screenshot(png: Path, platform: str, work: Path) -> subprocess.CompletedProcess[str]:
    """Run ``samdesk --screenshot png`` on a copy of the sample folder under ``work``."""
    folder = work / "sample"
    shutil.copytree(SAMPLE, folder)
    env = dict(os.environ, QT_QPA_PLATFORM=platform, HOME=str(work / "home"),
               XDG_CONFIG_HOME=str(work / "config"), XDG_DATA_HOME=str(work / "data"),
               XDG_CACHE_HOME=str(work / "cache"), SAMDESK_LOG_DIR=str(work / "log"))
    return subprocess.run([*samdesk_command(), "--screenshot", str(png), str(folder)],
                          env=env, capture_output=True, text=True, timeout=START_TIMEOUT_S,
                          check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", default="xcb", help="QT_QPA_PLATFORM (default xcb)")
    parser.add_argument("--keep", type=Path, help="also copy the screenshot to this path")
    args = parser.parse_args(argv)
    if args.platform == "xcb" and not os.environ.get("DISPLAY"):
        print("window check: DISPLAY is not set; run under xvfb-run -a", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="samdesk-window-") as tmp:
        png = Path(tmp) / "window.png"
        done = take_screenshot(png, args.platform, Path(tmp))
        if done.returncode != 0 or not png.is_file():
            print(f"window check: samdesk exited {done.returncode} without a screenshot:\n"
                  f"{done.stdout}{done.stderr}", file=sys.stderr)
            return 1
        if args.keep is not None:
            shutil.copyfile(png, args.keep)
        problems = judge_png(png, WINDOW_SIZE)
    if problems:
        print(f"window check ({args.platform}): " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"window check ({args.platform}): {WINDOW_SIZE[0]}x{WINDOW_SIZE[1]} window with the "
          "sample image shown: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
