"""The ASGI application of ``caesura serve`` (Starlette).

Routes:

* ``POST /v1/audio/vad`` -- multipart form, field ``audio`` = a WAV file (any rate, any channel
  count, PCM 8/16/24/32-bit or float 32/64, WAVE_FORMAT_EXTENSIBLE); mixed to mono,
  resampled to 16 kHz (soxr, anti-aliased), then silero-vad's ``get_speech_timestamps`` with
  default parameters (:func:`caesura.vad.offline.speech_timestamps` with ``compat="silero"``).
  ``200 {"timestamps": [{"start": int, "end": int}, ...]}`` in 16 kHz samples. Errors are
  ``{"error": "..."}`` with a 4xx status (EchoKit reads the body whatever the status): 400 bad
  or undecodable input, 413 body over 10 MB or audio over ``MAX_AUDIO_SECONDS``, 415 neither
  multipart nor WAV, 503 too many jobs queued. A raw WAV body (``Content-Type: audio/wav``) is
  accepted too.
* ``GET /v1/audio/realtime_vad`` -- WebSocket, see :mod:`caesura.server.realtime`.
* ``POST /v1/turn/predict`` -- ``{"turns": [{"role": "user"|"agent", "text": ...}, ...]}`` →
  ``{"probability": p, "end_of_turn": p >= threshold, "threshold": t}``; optional
  ``"words_pending": true`` when the transcript lags the speech (P(end after one more word)).
* ``GET /healthz`` -- ``{"status": "ok", ...}``; ``GET /metrics`` -- Prometheus text format.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from caesura.audio import decode_wav, resample, to_mono
from caesura.errors import CaesuraError, InvalidOptionError
from caesura.server.auth import OPEN_PATHS, check_token, extract_token
from caesura.server.backend import MODEL_RATE, SileroBackend
from caesura.server.config import ServerConfig, stream_options_from_query
from caesura.server.metrics import CONTENT_TYPE, ServerMetrics
from caesura.server.realtime import RealtimeSession
from caesura.server.scheduler import BatchScheduler, PerConnectionCore, VADCore
from caesura.server.turn import TurnPredictor, TurnUnavailableError, normalise_turns
from caesura.vad.offline import speech_timestamps

__all__ = ["MAX_AUDIO_SECONDS", "HotCounters", "ServerState", "create_app"]

logger = logging.getLogger(__name__)

#: Longest recording ``POST /v1/audio/vad`` analyses (a 10 MB 8-bit 16 kHz WAV is 655 s).
MAX_AUDIO_SECONDS = 660.0
_WAV_TYPES = {
    "audio/wav",
    "audio/x-wav",
    "audio/wave",
    "audio/vnd.wave",
    "application/octet-stream",
}
_MAX_JSON_BYTES = 1024 * 1024


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class HotCounters:
    """Counters bumped per WebSocket message: plain ints, copied into metrics at scrape time."""

    binary_messages: int = 0
    text_messages: int = 0
    audio_bytes: int = 0


@dataclass
class ServerState:
    """What the handlers share (``app.state.caesura``)."""

    config: ServerConfig
    metrics: ServerMetrics
    core: VADCore
    backend: SileroBackend
    turn: TurnPredictor
    offline_executor: ThreadPoolExecutor
    offline_jobs: int = 0
    sessions: int = 0
    hot: HotCounters = field(default_factory=HotCounters)
    started_at: float = field(default_factory=time.time)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


# ------------------------------------------------------------------------------------ body
async def _read_body(request: Request, limit: int) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes with 413 as early as possible."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise _HTTPError(400, f"invalid Content-Length header {declared!r}") from None
        if size > limit:
            raise _HTTPError(
                413, f"request body of {size} bytes exceeds the limit of {limit} bytes (10 MB)"
            )
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise _HTTPError(413, f"request body exceeds the limit of {limit} bytes (10 MB)")
            chunks.append(chunk)
    except ClientDisconnect:
        raise _HTTPError(400, "client disconnected before sending the whole body") from None
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # never: the body has been consumed
        raise AssertionError("unreachable")

    return receive


async def _wav_from_request(request: Request, limit: int) -> bytes:
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    body = await _read_body(request, limit)
    if not body:
        raise _HTTPError(
            400, "empty request body: send a multipart form with a WAV file in the field 'audio'"
        )
    if media in _WAV_TYPES:
        return body
    if media != "multipart/form-data":
        raise _HTTPError(
            415,
            f"unsupported Content-Type {media or 'none'!r}: send multipart/form-data with a WAV "
            "file in the field 'audio' (or a raw audio/wav body)",
        )
    replay = Request(request.scope, receive=_replay(body))
    try:
        form = await replay.form(max_files=8, max_fields=32, max_part_size=limit)
    except MultiPartException as exc:
        raise _HTTPError(400, f"malformed multipart body: {exc.message}") from None
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise _HTTPError(400, f"malformed multipart body: {exc}") from None
    try:
        part = form.get("audio")
        if part is None:
            names = sorted(set(form.keys()))
            raise _HTTPError(400, f"missing form field 'audio' (a WAV file); got fields {names}")
        if not isinstance(part, UploadFile):
            raise _HTTPError(
                400, "form field 'audio' must be a file part (with a filename), not plain text"
            )
        data = await part.read()
    finally:
        await form.close()
    if not data:
        raise _HTTPError(400, "form field 'audio' is empty (0 bytes)")
    return data


def _analyse(state: ServerState, wav: bytes) -> list[dict[str, int]]:
    """Worker thread: WAV → mono 16 kHz → silero's get_speech_timestamps (defaults)."""
    frames, rate = decode_wav(wav)
    seconds = frames.shape[0] / rate
    if seconds > MAX_AUDIO_SECONDS:
        raise _HTTPError(
            413, f"audio of {seconds:.0f} s exceeds the limit of {MAX_AUDIO_SECONDS:.0f} s"
        )
    mono = to_mono(frames)
    audio = resample(mono, rate, MODEL_RATE) if rate != MODEL_RATE else mono
    if audio.size == 0:
        return []
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    stamps = speech_timestamps(audio, MODEL_RATE, compat="silero", model=state.backend.model)
    return [{"start": int(s["start"]), "end": int(s["end"])} for s in stamps]


# ------------------------------------------------------------------------------------ routes
async def vad_http(request: Request) -> Response:
    state: ServerState = request.app.state.caesura
    try:
        wav = await _wav_from_request(request, state.config.max_body_bytes)
        if state.offline_jobs >= state.config.max_offline_jobs:
            raise _HTTPError(503, "server busy: too many VAD requests queued; retry shortly")
        state.offline_jobs += 1
        state.metrics.offline_jobs.set(state.offline_jobs)
        try:
            loop = asyncio.get_running_loop()
            stamps = await loop.run_in_executor(state.offline_executor, _analyse, state, wav)
        finally:
            state.offline_jobs -= 1
            state.metrics.offline_jobs.set(state.offline_jobs)
    except _HTTPError as exc:
        state.metrics.errors.inc(error=f"http_{exc.status}")
        return _error(exc.status, exc.message)
    except CaesuraError as exc:  # AudioDecodeError, InvalidAudioError, ...
        state.metrics.errors.inc(error="http_400")
        return _error(400, str(exc))
    return JSONResponse({"timestamps": stamps})


async def turn_predict(request: Request) -> Response:
    state: ServerState = request.app.state.caesura
    if not state.config.enable_turn:
        return _error(404, "turn detection is disabled on this server")
    try:
        body = await _read_body(request, _MAX_JSON_BYTES)
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise _HTTPError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise _HTTPError(400, "request body must be a JSON object with 'turns'")
        turns = normalise_turns(payload.get("turns", payload.get("messages")))
        threshold = payload.get("threshold", state.config.stream.eot_threshold)
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not (0.0 <= float(threshold) <= 1.0)
        ):
            raise _HTTPError(400, "'threshold' must be a number in [0, 1]")
        pending = payload.get("words_pending", False)
        if not isinstance(pending, bool):
            raise _HTTPError(400, "'words_pending' must be true or false")
        p, dt = await state.turn.predict(turns, words_pending=pending)
    except _HTTPError as exc:
        return _error(exc.status, exc.message)
    except InvalidOptionError as exc:
        return _error(400, str(exc))
    except TurnUnavailableError as exc:
        return _error(503, str(exc))
    except CaesuraError as exc:
        return _error(400, str(exc))
    state.metrics.eot_predictions.inc()
    state.metrics.eot_seconds.observe(dt)
    p = min(1.0, max(0.0, p))
    return JSONResponse(
        {
            "probability": round(p, 6),
            "end_of_turn": p >= float(threshold),
            "threshold": float(threshold),
        }
    )


async def healthz(request: Request) -> Response:
    state: ServerState = request.app.state.caesura
    return JSONResponse(
        {
            "status": "ok",
            "model": "silero_vad v6.2",
            "backend": state.backend.model.backend,
            "mode": "per-connection" if state.config.per_connection_model else "batched",
            "sessions": state.sessions,
            "pending_windows": state.core.pending_windows,
            "turn_model": state.turn.available,
            "uptime_s": round(time.time() - state.started_at, 1),
        }
    )


async def metrics(request: Request) -> Response:
    state: ServerState = request.app.state.caesura
    state.metrics.pending_windows.set(state.core.pending_windows)
    state.metrics.ws_sessions.set(state.sessions)
    m, hot = state.metrics, state.hot
    m.ws_messages.set_total(hot.binary_messages, kind="binary")
    m.ws_messages.set_total(hot.text_messages, kind="text")
    m.audio_seconds.set_total(hot.audio_bytes / 32000.0)
    return PlainTextResponse(state.metrics.render(), media_type=CONTENT_TYPE)


async def realtime_vad(websocket: WebSocket) -> None:
    state: ServerState = websocket.app.state.caesura
    await websocket.accept()

    async def refuse(code: str, message: str, close_code: int) -> None:
        state.metrics.ws_rejected.inc(reason=code)
        with contextlib.suppress(Exception):
            await websocket.send_text(json.dumps({"error": code, "message": message}))
            await websocket.close(code=close_code)

    query = dict(websocket.query_params)
    token = extract_token(websocket.headers, query)
    if not check_token(state.config.token, token):
        await refuse("unauthorized", "missing or wrong bearer token", 1008)
        return
    try:
        options = stream_options_from_query(state.config.stream, query)
    except InvalidOptionError as exc:
        await refuse("invalid_option", str(exc), 1008)
        return
    if state.sessions >= state.config.max_sessions:
        await refuse(
            "server_busy", f"too many sessions ({state.config.max_sessions}); retry later", 1013
        )
        return
    state.sessions += 1
    state.metrics.ws_sessions_total.inc()
    state.metrics.ws_sessions.set(state.sessions)
    try:
        await RealtimeSession(websocket, state, options).run()
    finally:
        state.sessions -= 1
        state.metrics.ws_sessions.set(state.sessions)


# ------------------------------------------------------------------------------------ app
class _Guard:
    """Outermost ASGI middleware: bearer auth for HTTP, JSON errors, request metrics."""

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], holder: dict[str, Any]
    ) -> None:
        self.app = app
        self.holder = holder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: ServerState | None = self.holder.get("state")
        path = scope.get("path", "")
        t0 = time.perf_counter()
        status_box = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = int(message["status"])
            await send(message)

        if state is not None and state.config.token is not None and path not in OPEN_PATHS:
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1")
                for k, v in scope.get("headers", [])
            }
            if not check_token(state.config.token, extract_token(headers)):
                response = JSONResponse(
                    {"error": "unauthorized: missing or wrong bearer token"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="caesura"'},
                )
                await response(scope, receive, send_wrapper)
                self._record(state, path, status_box[0], t0)
                return
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if state is not None:
                self._record(state, path, status_box[0], t0)

    @staticmethod
    def _record(state: ServerState, path: str, status: int, t0: float) -> None:
        known = {
            "/v1/audio/vad",
            "/v1/turn/predict",
            "/healthz",
            "/metrics",
            "/v1/audio/realtime_vad",
        }
        route = path if path in known else "other"
        state.metrics.http_requests.inc(route=route, status=str(status))
        state.metrics.http_seconds.observe(time.perf_counter() - t0)


async def _http_exception(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _error(exc.status_code, str(exc.detail))
    return _error(500, "internal server error")


async def _server_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return _error(500, "internal server error")


def create_app(
    config: ServerConfig | None = None,
    *,
    backend: SileroBackend | None = None,
    turn_model: Any | None = None,
) -> Starlette:
    """The Starlette app; the model is loaded and the batched core started at startup.

    ``backend`` / ``turn_model`` inject a preloaded VAD backend / end-of-turn model (tests).
    """
    cfg = config or ServerConfig()
    holder: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        metrics_ = ServerMetrics()
        shared = backend or SileroBackend()
        core: VADCore
        if cfg.per_connection_model:
            core = PerConnectionCore(
                lambda: SileroBackend(shared=False),
                max_pending_windows=cfg.max_pending_windows,
                metrics=metrics_,
            )
        else:
            core = BatchScheduler(
                shared,
                max_batch=cfg.max_batch,
                batch_wait_ms=cfg.batch_wait_ms,
                max_pending_windows=cfg.max_pending_windows,
                metrics=metrics_,
            )
        await core.start()
        turn = TurnPredictor(turn_model)
        if cfg.enable_turn and turn_model is None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, turn.warm)
        state = ServerState(
            config=cfg,
            metrics=metrics_,
            core=core,
            backend=shared,
            turn=turn,
            offline_executor=ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="caesura-offline"
            ),
        )
        app.state.caesura = state
        holder["state"] = state
        logger.info(
            "caesura serve ready on %s (%s core, auth %s)",
            cfg.listen,
            "per-connection" if cfg.per_connection_model else "batched",
            "on" if cfg.token else "off",
        )
        try:
            yield
        finally:
            await core.stop()
            state.offline_executor.shutdown(wait=False, cancel_futures=True)
            turn.close()

    app = Starlette(
        routes=[
            Route("/v1/audio/vad", vad_http, methods=["POST"]),
            Route("/v1/turn/predict", turn_predict, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            WebSocketRoute("/v1/audio/realtime_vad", realtime_vad),
        ],
        exception_handlers={HTTPException: _http_exception, Exception: _server_error},
        lifespan=lifespan,
    )
    app.add_middleware(_Guard, holder=holder)
    return app
