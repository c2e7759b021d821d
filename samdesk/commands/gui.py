"""``samdesk [gui] [FOLDER]``: open the window, optionally on a folder."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    gui = sub.add_parser("gui", help="open the window (the default)")
    gui.add_argument("folder", nargs="?", help="image folder to open as a project")
    # hidden: save the window as PNG once its first image is shown, then quit (CI's check)
    gui.add_argument("--screenshot", metavar="PNG", help=argparse.SUPPRESS)
    gui.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from samdesk.views import app  # Qt is imported only when the window opens

    return int(app.run(args.folder, screenshot=args.screenshot))
