"""The ``samdesk`` command.

``samdesk [FOLDER]`` opens the window; sub-commands work headless on the same
code. Each command module listed in ``COMMAND_MODULES`` has a
``register(subparsers)`` function that adds its parsers and sets ``func`` to a
``run(args) -> int``. Modules import heavy packages (torch, Qt) inside their
run functions, so ``samdesk info`` starts fast.

Errors a person can act on are raised as :class:`~samdesk.errors.CliError` (or any
``SamdeskError``) and printed as one line. :func:`main` is the one top-level
handler of every command: any other exception is one line too, from
:func:`samdesk.errorlog.report`, ending with the log file that holds its
traceback; the exit status is 2 (130 on Ctrl+C). ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from samdesk.errorlog import report

COMMAND_MODULES = (
    "samdesk.commands.gui",
    "samdesk.commands.project",
    "samdesk.commands.store",
    "samdesk.commands.models",
    "samdesk.commands.segment",
    "samdesk.commands.batch",
    "samdesk.commands.track",
    "samdesk.commands.import_video",
    "samdesk.commands.serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samdesk",
        description="Label images with Segment Anything. "
        "Run without a command to open the window.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def _split_gui_default(argv: list[str], commands: set[str]) -> list[str]:
    """``samdesk FOLDER`` means ``samdesk gui FOLDER``."""
    positional = [a for a in argv if not a.startswith("-")]
    if not positional or positional[0] not in commands:
        flags = [a for a in argv if a in ("--debug",)]
        rest = [a for a in argv if a not in ("--debug",)]
        if "-h" in rest or "--help" in rest:
            return argv
        return [*flags, "gui", *rest]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
    except Exception as exc:  # a command module that cannot be imported
        if "--debug" in argv:
            raise
        return _failed(exc, "samdesk")
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    args = parser.parse_args(_split_gui_default(argv, commands))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("samdesk: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        return _failed(exc, f"samdesk {args.command or 'gui'}")


def _failed(exc: Exception, context: str) -> int:
    """Print ``exc`` as one line (unexpected ones logged, see :func:`report`); exit status 2."""
    print(f"samdesk: error: {report(exc, context=context)}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
