"""``samdesk serve``: share this machine's models over HTTP (FastAPI on uvicorn).

``--model NAME [--checkpoint FILE]`` may be given several times; each
``--checkpoint`` belongs to the ``--model`` before it. Without ``--model``,
every registered model whose checkpoint is installed can be asked for.
Binding to anything but loopback needs ``--api-key``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from samdesk.commands.segment import add_runtime_arg
from samdesk.errors import CliError, SamdeskError


class _Model(argparse.Action):
    """``--model NAME``: a new entry ``[NAME, None]`` in ``args.models``."""

    def __call__(self, parser: Any, namespace: Any, value: Any, option: Any = None) -> None:
        models = list(getattr(namespace, "models", None) or [])
        models.append([value, None])
        namespace.models = models


class _Checkpoint(argparse.Action):
    """``--checkpoint FILE``: the file of the ``--model`` given just before."""

    def __call__(self, parser: Any, namespace: Any, value: Any, option: Any = None) -> None:
        models = list(getattr(namespace, "models", None) or [])
        if not models or models[-1][1] is not None:
            parser.error("--checkpoint must follow the --model it belongs to")
        models[-1] = [models[-1][0], Path(value)]
        namespace.models = models


def register(sub: Any) -> None:
    """Add ``samdesk serve`` to the ``samdesk`` sub-parsers ``sub``."""
    parser = sub.add_parser(
        "serve", help="serve the models over HTTP (Roboflow- and Segmind-compatible routes)",
        description="Start an HTTP server: embed an image once under an image_id, then "
        "segment many prompts. OpenAPI page at /docs.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; others need --api-key)")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--model", action=_Model, metavar="NAME", dest="models", default=[],
                        help="a model to serve (repeatable); default: any installed one")
    parser.add_argument("--checkpoint", action=_Checkpoint, metavar="FILE", dest="models",
                        help="checkpoint file for the --model before it")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "gpu", "mps"))
    add_runtime_arg(parser)
    parser.add_argument("--api-key", action="append", default=[], metavar="KEY",
                        help="a key clients must send (repeatable; each key's image ids are "
                        "its own)")
    parser.add_argument("--cache-mb", type=float, default=2048.0,
                        help="memory for cached embeddings, MB (default 2048)")
    parser.add_argument("--idle-unload", type=float, default=None, metavar="S",
                        help="unload a model unused for S seconds (default: keep)")
    parser.add_argument("--max-body-mb", type=float, default=64.0,
                        help="largest request body, MB (default 64)")
    parser.add_argument("--max-pixels", type=int, default=100_000_000,
                        help="largest decoded image, pixels (default 100000000)")
    parser.add_argument("--max-prompts", type=int, default=64, help="prompts per request")
    parser.add_argument("--max-points", type=int, default=64, help="points per prompt")
    parser.add_argument("--max-queue", type=int, default=64,
                        help="requests waiting for the models before 503 (default 64)")
    parser.add_argument("--allow-url-host", action="append", default=[], metavar="HOST",
                        help="fetch image URLs from this host (repeatable; default none)")
    parser.set_defaults(func=run_serve)


def settings_from(args: argparse.Namespace) -> Any:
    """The :class:`ServerSettings` of parsed ``args``; one-line errors for bad ones."""
    from samdesk.inference.models.registry import get_spec
    from samdesk.server.settings import ServerSettings

    models: dict[str, Path | None] = {}
    for name, checkpoint in args.models or []:
        try:
            get_spec(name)
        except Exception as exc:
            raise CliError(f"--model: {exc}") from None
        if checkpoint is not None and not checkpoint.is_file():
            raise CliError(f"--checkpoint {checkpoint}: no such file")
        models[name] = checkpoint
    if args.runtime is not None:
        from samdesk.inference.engines.runtime_choice import check_choice

        try:
            check_choice(args.runtime)
        except SamdeskError as exc:
            raise CliError(str(exc)) from None
    if not 0 < args.port < 65536:
        raise CliError(f"--port {args.port}: not a port number")
    settings = ServerSettings(
        host=args.host, port=args.port, models=models, device=args.device,
        runtime=args.runtime,
        api_keys=tuple(args.api_key), cache_mb=args.cache_mb,
        idle_unload_s=args.idle_unload, max_body_mb=args.max_body_mb,
        max_pixels=args.max_pixels, max_prompts=args.max_prompts,
        max_points=args.max_points, max_queue=args.max_queue,
        allow_url_hosts=tuple(args.allow_url_host))
    settings.check()
    return settings


def run_serve(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    import uvicorn

    from samdesk.server.app import create_app

    app = create_app(settings)
    served = ", ".join(settings.models) or "any installed model"
    print(f"samdesk serve: http://{settings.host}:{settings.port} (OpenAPI at /docs); "
          f"models: {served}", file=sys.stderr, flush=True)
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    except SystemExit as exc:  # uvicorn exits 1 when the port cannot be bound
        if exc.code:
            raise CliError(f"--port {settings.port}: cannot listen on "
                           f"{settings.host}:{settings.port} (in use?)") from None
    return 0
