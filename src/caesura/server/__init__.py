"""``caesura serve``: an EchoKit / silero_vad_server-compatible VAD server (extra ``server``).

Wire-compatible with ``silero_vad_server`` -- the service EchoKit's ``vad_url`` and
``vad_realtime_url`` point at -- plus turn detection of our own:

* ``POST /v1/audio/vad`` (multipart field ``audio`` = WAV) →
  ``{"timestamps": [{"start", "end"}]}`` exactly as silero-vad's ``get_speech_timestamps``;
* ``GET /v1/audio/realtime_vad`` (WebSocket: PCM16LE 16 kHz in, ``speech_start`` /
  ``speech_end`` / ``end_of_turn`` out);
* ``POST /v1/turn/predict``, ``GET /healthz``, ``GET /metrics`` (Prometheus).

Every realtime session's windows go through one shared batched core
(:class:`~caesura.server.scheduler.BatchScheduler`), not one model per connection.

Why Starlette + uvicorn: the server is a handful of routes plus one WebSocket endpoint whose
hot path is "receive a binary frame, append to a buffer"; Starlette is a thin ASGI toolkit
(no validation layer, no dependency injection to pay for per message) with first-class
WebSockets and multipart parsing (python-multipart), and uvicorn is the standard ASGI server
with a fast ``websockets``-based protocol. aiohttp would do as well but ties the app to its
own server; an ASGI app can also be mounted in a FastAPI/Starlette application or run under
any ASGI server. The extra ``caesura[server]`` installs exactly these: starlette, uvicorn,
websockets, python-multipart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from caesura.server.config import DEFAULT_LISTEN, ServerConfig, StreamOptions, parse_listen

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["DEFAULT_LISTEN", "ServerConfig", "StreamOptions", "create_app", "parse_listen", "run"]


def create_app(config: ServerConfig | None = None, **kwargs: Any) -> Starlette:
    """The ASGI app (see :func:`caesura.server.app.create_app`); needs the ``server`` extra."""
    try:
        from caesura.server.app import create_app as _create_app  # noqa: PLC0415
    except ImportError as exc:
        from caesura.errors import MissingDependencyError  # noqa: PLC0415

        raise MissingDependencyError(exc.name or "starlette", "server", "caesura serve") from exc
    return _create_app(config, **kwargs)


def run(config: ServerConfig) -> None:
    """Serve ``config`` with uvicorn until interrupted."""
    from caesura.server.cli import serve  # noqa: PLC0415

    serve(config)
