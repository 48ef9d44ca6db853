"""``caesura serve``: command-line options and the uvicorn runner.

``add_serve_arguments(parser)`` fills an argparse (sub)parser; ``run_from_args(args)`` starts
the server. ``configure`` / ``run`` are the hooks of the ``caesura`` subcommand registry.
Registered as the ``serve`` subcommand of ``caesura`` and runnable alone as
``python -m caesura.server``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from caesura.cli import DefaultsHelpFormatter, add_vad_options, vad_option_values
from caesura.errors import CaesuraError, InvalidOptionError, MissingDependencyError
from caesura.server.config import DEFAULT_LISTEN, ServerConfig, StreamOptions, parse_listen

__all__ = [
    "add_serve_arguments",
    "config_from_args",
    "configure",
    "main",
    "run",
    "run_from_args",
    "serve",
    "uvicorn_options",
]

logger = logging.getLogger(__name__)


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``caesura serve``'s options to ``parser``."""
    parser.add_argument(
        "--listen",
        default=None,
        help=f"host:port to bind (env VAD_LISTEN; default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="require 'Authorization: Bearer TOKEN' (env CAESURA_TOKEN; default: no auth)",
    )
    d = StreamOptions()
    vad = parser.add_argument_group("realtime VAD defaults (clients may override per connection)")
    add_vad_options(
        vad,
        threshold=d.threshold,
        min_speech_ms=d.min_speech_ms,
        min_silence_ms=d.min_silence_ms,
        speech_pad_ms=d.speech_pad_ms,
        max_speech_s=d.max_speech_s,
        help_texts={"min_silence_ms": "silence that ends speech (speech_end), ms"},
    )
    vad.add_argument(
        "--eot-threshold",
        type=float,
        default=d.eot_threshold,
        help="end-of-turn probability at which end_of_turn is true",
    )
    vad.add_argument(
        "--no-turn",
        action="store_true",
        help="disable the end-of-turn model (transcript messages, /v1/turn/predict)",
    )
    core = parser.add_argument_group("capacity")
    c = ServerConfig()
    core.add_argument(
        "--max-sessions", type=int, default=c.max_sessions, help="most concurrent sessions"
    )
    core.add_argument(
        "--max-batch", type=int, default=c.max_batch, help="most streams per batched inference"
    )
    core.add_argument(
        "--batch-wait-ms",
        type=float,
        default=c.batch_wait_ms,
        help="wait this long for more windows before a batch, ms",
    )
    core.add_argument(
        "--max-pending-windows",
        type=int,
        default=c.max_pending_windows,
        help="per-session queue bound; readers pause beyond it",
    )
    core.add_argument(
        "--per-connection-model",
        action="store_true",
        help="one model per connection, unbatched (benchmark comparison only)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="server log level",
    )
    return parser


def config_from_args(args: argparse.Namespace, env: dict[str, str] | None = None) -> ServerConfig:
    """Flags over environment over defaults."""
    environ = dict(os.environ) if env is None else env
    overrides: dict[str, object] = {}
    if args.listen:
        overrides["host"], overrides["port"] = parse_listen(args.listen)
    if args.token:
        overrides["token"] = args.token
    stream = StreamOptions(
        **vad_option_values(args),
        eot_threshold=args.eot_threshold,
        turn=not args.no_turn,
    )
    return ServerConfig.from_env(
        environ,
        stream=stream,
        enable_turn=not args.no_turn,
        max_sessions=args.max_sessions,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        max_pending_windows=args.max_pending_windows,
        per_connection_model=args.per_connection_model,
        log_level=args.log_level,
        **overrides,
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """``caesura serve`` registry hook (see :mod:`caesura.cli`)."""
    add_serve_arguments(parser)


def uvicorn_options(config: ServerConfig) -> dict[str, Any]:
    """The uvicorn settings ``caesura serve`` runs with (besides host, port and log level)."""
    return {
        "ws_max_size": 4 * config.max_frame_bytes,
        # no permessage-deflate: PCM does not compress and events are tiny, while each
        # connection would hold ~300 KB of zlib state, kept after the close until the cyclic
        # GC runs (websockets' protocol objects are reference cycles); EchoKit does not ask
        # for it, and a client that does simply gets uncompressed frames
        "ws_per_message_deflate": False,
        "access_log": False,
        "lifespan": "on",
    }


def serve(config: ServerConfig) -> None:
    """Serve until interrupted (uvicorn, one process, asyncio loop)."""
    try:
        import uvicorn  # noqa: PLC0415 - optional extra
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("uvicorn", "server", "caesura serve") from exc
    from caesura.server.app import create_app  # noqa: PLC0415 - needs the extra

    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        **uvicorn_options(config),
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Entry point of the ``serve`` subcommand; returns the exit status."""
    try:
        config = config_from_args(args)
    except InvalidOptionError as exc:
        print(f"caesura serve: {exc}", file=sys.stderr)
        return 2
    try:
        serve(config)
    except CaesuraError as exc:
        print(f"caesura serve: {exc}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    """``caesura serve`` registry hook: start the server; returns the exit status."""
    return run_from_args(args)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m caesura.server [options]``."""
    parser = argparse.ArgumentParser(
        prog="caesura serve",
        description="EchoKit/silero_vad_server-compatible VAD server with turn detection.",
        formatter_class=DefaultsHelpFormatter,
    )
    add_serve_arguments(parser)
    return run_from_args(parser.parse_args(argv))
