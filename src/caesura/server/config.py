"""Server configuration: listen address, auth, limits, batching, and VAD options.

:class:`ServerConfig` holds everything ``caesura serve`` is started with (CLI flags and the
environment: ``VAD_LISTEN``, ``CAESURA_TOKEN``). :class:`StreamOptions` is what one realtime
WebSocket session runs with; the server-wide defaults come from the config and a client may
override them per connection in the query string
(``/v1/audio/realtime_vad?threshold=0.6&min_silence_ms=700``), see
:func:`stream_options_from_query`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from caesura.errors import InvalidOptionError
from caesura.turn.options import TurnOptions

__all__ = [
    "DEFAULT_LISTEN",
    "MAX_BODY_BYTES",
    "QUERY_OPTIONS",
    "ServerConfig",
    "StreamOptions",
    "parse_listen",
    "stream_options_from_query",
]

#: silero_vad_server's default for EchoKit is port 9093; we bind loopback unless told otherwise.
DEFAULT_LISTEN = "127.0.0.1:9093"
#: silero_vad_server's body limit (axum ``DefaultBodyLimit::max(10 * 1024 * 1024)``).
MAX_BODY_BYTES = 10 * 1024 * 1024


def parse_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:9093"`` for IPv6, ``":9093"`` for all interfaces) to a tuple."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidOptionError(f"listen address must be 'host:port', got {value!r}")
    text = value.strip()
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise InvalidOptionError(f"listen address must be '[ipv6]:port', got {value!r}")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise InvalidOptionError(f"listen address must be 'host:port', got {value!r}")
        if ":" in host:
            raise InvalidOptionError(f"write IPv6 listen addresses as '[addr]:port', got {value!r}")
    host = host or "0.0.0.0"
    try:
        port = int(port_text)
    except ValueError:
        raise InvalidOptionError(f"listen port must be an integer, got {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise InvalidOptionError(f"listen port must be in [0, 65535], got {port}")
    return host, port


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidOptionError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        raise InvalidOptionError(f"{name} must be finite, got {value!r}")
    return v


@dataclass(frozen=True)
class StreamOptions:
    """Options of one realtime VAD session (names as silero-vad / :class:`SegmenterOptions`).

    Defaults are for EchoKit, which treats ``speech_end`` as "the user finished speaking" and
    then sends the utterance to ASR: a 250 ms minimum speech (silero's own default, rejects
    coughs and clicks) and a 600 ms silence hangover (the seeds' 500-800 ms for silence-only
    endpointing). ``turn`` enables the transcript-based ``end_of_turn`` events, decided by
    a :class:`caesura.turn.TurnEngine` per session (the words' P(end) fused with the silence
    elapsed); ``end_threshold`` / ``min_delay_ms`` / ``max_delay_ms`` override its
    :class:`~caesura.turn.TurnOptions` (``None``: the engine's defaults).
    ``eot_threshold`` is the raw model probability at or above which ``POST
    /v1/turn/predict`` says ``"end_of_turn": true``.
    """

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_ms: float = 250.0
    min_silence_ms: float = 600.0
    speech_pad_ms: float = 30.0
    max_speech_s: float = 60.0
    turn: bool = True
    eot_threshold: float = 0.5
    include_samples: bool = False
    end_threshold: float | None = None
    min_delay_ms: float | None = None
    max_delay_ms: float | None = None

    def __post_init__(self) -> None:
        thr = _number("threshold", self.threshold)
        if not 0.0 < thr <= 1.0:
            raise InvalidOptionError(f"threshold must be in (0, 1], got {self.threshold!r}")
        if self.neg_threshold is not None:
            neg = _number("neg_threshold", self.neg_threshold)
            if not 0.0 <= neg <= thr:
                raise InvalidOptionError(
                    f"neg_threshold must be in [0, threshold={thr}], got {self.neg_threshold!r}"
                )
        for name, hi in (
            ("min_speech_ms", 60_000.0),
            ("min_silence_ms", 60_000.0),
            ("speech_pad_ms", 10_000.0),
        ):
            v = _number(name, getattr(self, name))
            if not 0.0 <= v <= hi:
                raise InvalidOptionError(f"{name} must be in [0, {hi:g}], got {v!r}")
        mx = _number("max_speech_s", self.max_speech_s)
        if not 0.0 < mx <= 3600.0:
            raise InvalidOptionError(f"max_speech_s must be in (0, 3600], got {mx!r}")
        if mx * 1000.0 <= float(self.min_speech_ms):
            raise InvalidOptionError("max_speech_s must be longer than min_speech_ms")
        eot = _number("eot_threshold", self.eot_threshold)
        if not 0.0 <= eot <= 1.0:
            raise InvalidOptionError(f"eot_threshold must be in [0, 1], got {eot!r}")
        self.turn_options()  # the engine's own validation, naming the option

    def turn_options(self) -> TurnOptions:
        """The :class:`~caesura.turn.TurnOptions` of a session's turn engine."""
        changes = {
            k: v
            for k in ("end_threshold", "min_delay_ms", "max_delay_ms")
            if (v := getattr(self, k)) is not None
        }
        return TurnOptions().replace(**changes) if changes else TurnOptions()

    def replace(self, **changes: Any) -> StreamOptions:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InvalidOptionError(f"unknown option(s) {unknown}; valid: {sorted(known)}")
        return replace(self, **changes)


_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off"}
#: Query-string keys a realtime client may set, and their types.
QUERY_OPTIONS: dict[str, type] = {
    "threshold": float,
    "neg_threshold": float,
    "min_speech_ms": float,
    "min_silence_ms": float,
    "speech_pad_ms": float,
    "max_speech_s": float,
    "turn": bool,
    "eot_threshold": float,
    "include_samples": bool,
    "end_threshold": float,
    "min_delay_ms": float,
    "max_delay_ms": float,
}
#: Query keys that are not options (consumed elsewhere) and are ignored here.
_RESERVED_QUERY = {"token", "access_token"}


def stream_options_from_query(base: StreamOptions, query: Mapping[str, str]) -> StreamOptions:
    """``base`` with the options in a WebSocket URL's query string applied.

    Unknown keys and unparsable values raise :class:`InvalidOptionError` naming them (a
    misspelt option must not be silently ignored).
    """
    changes: dict[str, Any] = {}
    for key, raw in query.items():
        if key in _RESERVED_QUERY:
            continue
        kind = QUERY_OPTIONS.get(key)
        if kind is None:
            raise InvalidOptionError(
                f"unknown query option {key!r}; valid: {sorted(QUERY_OPTIONS)}"
            )
        text = raw.strip().lower()
        if kind is bool:
            if text in _BOOL_TRUE:
                changes[key] = True
            elif text in _BOOL_FALSE:
                changes[key] = False
            else:
                raise InvalidOptionError(f"query option {key!r} must be true/false, got {raw!r}")
        else:
            try:
                changes[key] = float(text)
            except ValueError:
                raise InvalidOptionError(
                    f"query option {key!r} must be a number, got {raw!r}"
                ) from None
    return base.replace(**changes) if changes else base


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``caesura serve`` runs with.

    * ``host`` / ``port``: bind address (``--listen`` / ``VAD_LISTEN``, default
      127.0.0.1:9093). ``token``: optional bearer token (``--token`` / ``CAESURA_TOKEN``);
      ``None`` disables auth (``/healthz`` and ``/metrics`` stay open).
    * ``max_body_bytes``: request body limit (413 above), 10 MB like silero_vad_server.
    * ``max_sessions``: concurrent realtime sessions; more are refused with an error.
    * ``max_batch`` / ``batch_wait_ms``: the shared batched core runs at most ``max_batch``
      windows per inference and waits up to ``batch_wait_ms`` for more windows once the first
      one is ready (0 = go at once; windows that arrive during an inference form the next batch).
    * ``max_pending_windows``: per-session queue bound (windows not yet inferred); a client
      sending faster than the server infers is paused (TCP back-pressure) at this depth.
    * ``max_frame_bytes``: largest binary frame accepted (larger ones get an error).
    * ``max_offline_jobs``: concurrent + queued ``POST /v1/audio/vad`` jobs; more get 503.
    * ``per_connection_model``: load one model per WebSocket session and run it unbatched (for
      the benchmark comparison only).
    * ``stream``: default :class:`StreamOptions` of realtime sessions.
    """

    host: str = "127.0.0.1"
    port: int = 9093
    token: str | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    max_sessions: int = 1000
    max_batch: int = 256
    batch_wait_ms: float = 0.0
    max_pending_windows: int = 64
    max_frame_bytes: int = 1024 * 1024
    max_offline_jobs: int = 8
    max_errors_per_session: int = 100
    per_connection_model: bool = False
    enable_turn: bool = True
    stream: StreamOptions = field(default_factory=StreamOptions)
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise InvalidOptionError(f"port must be in [0, 65535], got {self.port!r}")
        if self.token is not None and (not isinstance(self.token, str) or not self.token):
            raise InvalidOptionError("token must be a non-empty string (or None to disable)")
        for name in (
            "max_body_bytes",
            "max_sessions",
            "max_batch",
            "max_pending_windows",
            "max_frame_bytes",
            "max_offline_jobs",
            "max_errors_per_session",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidOptionError(f"{name} must be an integer >= 1, got {v!r}")
        w = _number("batch_wait_ms", self.batch_wait_ms)
        if not 0.0 <= w <= 100.0:
            raise InvalidOptionError(f"batch_wait_ms must be in [0, 100], got {w!r}")
        if not isinstance(self.stream, StreamOptions):
            raise InvalidOptionError("stream must be a StreamOptions")

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ServerConfig:
        """Defaults, then ``VAD_LISTEN`` / ``CAESURA_TOKEN`` from ``env``, then ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        listen = env.get("VAD_LISTEN")
        if listen:
            values["host"], values["port"] = parse_listen(listen)
        token = env.get("CAESURA_TOKEN")
        if token:
            values["token"] = token
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> ServerConfig:
        return replace(self, **changes)
