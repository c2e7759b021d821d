"""``samdesk models``: list, fetch and register model checkpoints.

``list`` and ``add`` never import torch; ``fetch`` downloads only what it is
asked to, with progress on stderr, and can be interrupted and run again to
resume.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from samdesk.inference.models import checkpoints, paths, registry
from samdesk.inference.models.fetch import format_bytes


def register(sub: Any) -> None:
    """Add ``samdesk models ACTION`` to the ``samdesk`` sub-parsers ``sub``."""
    parser = sub.add_parser(
        "models",
        help="list, fetch and register model checkpoints",
        description="Model checkpoints live in $SAMDESK_MODELS or the user data folder. "
        "Nothing is downloaded unless you run `samdesk models fetch`.",
    )
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION", required=True)

    show = actions.add_parser("list", help="known models, whether installed, where, how big")
    show.set_defaults(func=run_list)

    get = actions.add_parser("fetch", help="download a model's official files (resumable)")
    get.add_argument("name", help="model name, as shown by `samdesk models list`")
    get.add_argument("--url", help="download the checkpoint from this URL instead (a mirror)")
    get.add_argument("--bert-url", metavar="URL",
                     help="base URL for GroundingDINO's tokenizer files (a mirror)")
    get.add_argument("--force", action="store_true",
                     help="download again even if the files are installed")
    get.set_defaults(func=run_fetch)

    put = actions.add_parser("add", help="register a checkpoint file you already have")
    put.add_argument("name", help="model name, as shown by `samdesk models list`")
    put.add_argument("file", help="the checkpoint file (it stays where it is)")
    put.add_argument("--force", action="store_true",
                     help="accept a file whose size or sha256 differs from the official "
                     "one (a fine-tuned checkpoint)")
    put.set_defaults(func=run_add)


def run_list(args: argparse.Namespace) -> int:
    rows = [("NAME", "TITLE", "STATUS", "SIZE", "PATH")]
    rows += [_row(spec) for spec in registry.MODELS.values()]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        print("  ".join([*cells, row[4]]).rstrip())
    print(f"\nmodels folder: {paths.models_dir()}")
    return 0


def _row(spec: registry.ModelSpec) -> tuple[str, str, str, str, str]:
    if not spec.needs_checkpoint:
        return spec.name, spec.title, "built-in", "-", "-"
    path = checkpoints.installed(spec.name)
    if path is None:
        size = format_bytes(spec.size) if spec.size is not None else "?"
        return spec.name, spec.title, "not installed", size, "-"
    size = path.stat().st_size
    status = "installed"
    if path == checkpoints.default_path(spec) and spec.size is not None and size != spec.size:
        status = "wrong size"  # a file put there by hand; `models add --force` accepts it
    elif spec.family in registry.FAMILIES_NEEDING_BERT and checkpoints.missing_bert_files():
        status = "no tokenizer"
    return spec.name, spec.title, status, format_bytes(size), str(path)


def _note_missing_packages(name: str) -> None:
    """Say on stderr, before anything is downloaded, when the model cannot run here yet."""
    from samdesk.inference.engines import packages

    missing = packages.missing(registry.get_spec(name).family)
    if missing is not None:
        print(f"note: {name}: {missing}", file=sys.stderr)


def run_fetch(args: argparse.Namespace) -> int:
    _note_missing_packages(args.name)
    files = checkpoints.fetch_model(
        args.name, url=args.url, bert_url=args.bert_url, force=args.force, stream=sys.stderr
    )
    for item in files:
        if item.downloaded:
            print(f"fetched {item.path}")
        else:
            print(f"already installed: {item.path} (--force downloads it again)")
    return 0


def run_add(args: argparse.Namespace) -> int:
    path = checkpoints.add(args.name, args.file, force=args.force)
    print(f"registered {args.name}: {path}")
    _note_missing_packages(args.name)
    return 0
