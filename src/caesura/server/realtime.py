"""One realtime VAD session: ``GET /v1/audio/realtime_vad`` (silero_vad_server protocol).

Client → server:

* binary frames: PCM16LE mono 16 kHz, any length (an even number of bytes); samples are
  buffered across frames and cut into 512-sample windows for the shared batched core;
* text ``reset``: forget the session's audio, model state and segment (a fresh stream);
* extension, text JSON: ``{"type": "transcript", "text": "...", "final": true}`` (the user's
  words from your STT; optional ``"language"``), ``{"type": "agent", "text": "..."}`` (what
  the agent said: the user's previous turn is answered), ``{"type": "reset"}``.

Server → client (text JSON): ``{"event": "speech_start"}``, ``{"event": "speech_end"}``;
with turn detection (once the client sends transcripts), the session's
:class:`~caesura.turn.TurnEngine` decisions -- the same policy as the Pipecat strategy: the
words' P(end) fused with the silence elapsed, between ``min_delay_ms`` and ``max_delay_ms``:
``{"event": "end_of_turn", "end_of_turn": true, "probability": 0.93, "words_probability":
0.97, "reason": "semantic", "delay_ms": 320}`` (``probability`` / ``words_probability`` are
``null`` when the words gave no evidence, e.g. ``reason`` ``"max_delay"``), and
``{"event": "turn_reopened"}`` when the user goes on within the re-open window; errors
``{"error": "<code>", "message": "<what and why>"}``. A bad frame or message gets an error and
is dropped; the session goes on (after ``max_errors_per_session`` errors it is closed with
code 1008). Every message EchoKit may receive parses as its ``VadRealtimeEvent`` (``event``
string, or ``error`` + ``message`` strings). With ``include_samples=true`` in the query,
events also carry ``start`` / ``end`` (speech bounds) and ``sample`` (stream position when
the event was decided), 16 kHz sample indices.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from caesura.errors import CaesuraError, InvalidOptionError
from caesura.server.config import StreamOptions
from caesura.server.scheduler import CoreClosedError, StreamSlot
from caesura.server.turn import MAX_TEXT_CHARS, TurnUnavailableError, normalise_turns
from caesura.turn import (
    EndOfTurn,
    ScorePending,
    ScorerFailed,
    TurnEngine,
    TurnEvent,
    TurnReopened,
)
from caesura.vad.segmenter import Segmenter, SegmenterOptions, SpeechEnd, SpeechStart

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from caesura.server.app import ServerState

__all__ = ["MAX_TEXT_MESSAGE", "RealtimeSession", "segmenter_options"]

logger = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]
#: Longest text message accepted (JSON transcripts included).
MAX_TEXT_MESSAGE = 64 * 1024
_SCALE = np.float32(1.0 / 32768.0)
_CLOSE_POLICY = 1008
_CLOSE_INTERNAL = 1011
_CLOSE_TRY_AGAIN = 1013


def segmenter_options(opts: StreamOptions) -> SegmenterOptions:
    """The :class:`SegmenterOptions` a session with ``opts`` runs."""
    return SegmenterOptions(
        threshold=opts.threshold,
        neg_threshold=opts.neg_threshold,
        min_speech_ms=opts.min_speech_ms,
        min_silence_ms=opts.min_silence_ms,
        speech_pad_ms=opts.speech_pad_ms,
        pre_roll_ms=0.0,
        max_speech_s=opts.max_speech_s,
    )


_ScoreKey = tuple[tuple[tuple[str, str], ...], bool]
#: Answers a session keeps (the engine asks for the latest words only).
_KEEP_ANSWERS = 8


class _DeferredScorer:
    """The session engine's scorer. P(end | words) is computed by the server's
    :class:`~caesura.server.turn.TurnPredictor` on its worker thread, never on the event
    loop: the first time the engine asks for some words this raises
    :class:`~caesura.turn.ScorePending` and starts the prediction; the session polls the
    engine when the answer is in, and the engine then reads it from here."""

    def __init__(self, session: RealtimeSession) -> None:
        # weak: a session must be freed by reference counting alone when it closes
        self._session = weakref.ref(session)
        self._answers: dict[_ScoreKey, float | CaesuraError] = {}
        self._asked: set[_ScoreKey] = set()
        self.supports_pending_words = False

    def predict(self, turns: Sequence[Mapping[str, str]], words_pending: bool = False) -> float:
        chat = tuple(normalise_turns([dict(t) for t in turns]))
        key = (chat, bool(words_pending))
        answer = self._answers.get(key)
        if answer is None:
            session = self._session()
            if key not in self._asked and session is not None:
                self._asked.add(key)
                session.score_later(key)
            raise ScorePending
        if isinstance(answer, CaesuraError):
            raise answer
        return answer

    def answer(self, key: _ScoreKey, value: float | CaesuraError) -> None:
        self._asked.discard(key)
        self._answers[key] = value
        while len(self._answers) > _KEEP_ANSWERS:
            del self._answers[next(iter(self._answers))]

    def clear(self) -> None:
        self._answers.clear()
        self._asked.clear()


class RealtimeSession:
    """Drives one accepted WebSocket until it closes."""

    def __init__(self, ws: WebSocket, state: ServerState, options: StreamOptions) -> None:
        self.ws = ws
        self.state = state
        self.options = options
        self.metrics = state.metrics
        self.core = state.core
        self.window_bytes = 2 * self.core.window_size
        self.segmenter = Segmenter(segmenter_options(options), sample_rate=16000, keep_audio=False)
        self._buf = bytearray()
        self._out: asyncio.Queue[str | None] = asyncio.Queue()
        self._errors = 0
        self._closing = False
        self._close_code: int | None = None
        # turn detection: an engine from the first transcript on (clients that send none,
        # like EchoKit, pay nothing for it); its clock starts at that stream position
        self._engine: TurnEngine | None = None
        self._engine_offset = 0
        self._samples = 0  # stream position (16 kHz samples inferred)
        self._scorer = _DeferredScorer(self)
        self._score_tasks: set[asyncio.Task[None]] = set()
        self._turn_off = not (options.turn and state.config.enable_turn)
        self.slot: StreamSlot | None = None

    # ---------------------------------------------------------------- outbound
    def _send(self, payload: dict[str, Any]) -> None:
        self._out.put_nowait(json.dumps(payload, separators=(",", ":")))

    def error(self, code: str, message: str) -> None:
        """Report an error to the client (``{"error", "message"}``) and count it."""
        self.metrics.errors.inc(error=code)
        self._send({"error": code, "message": message})
        self._errors += 1
        if self._errors >= self.state.config.max_errors_per_session and not self._closing:
            self._closing = True
            self._close_code = _CLOSE_POLICY
            self._send(
                {
                    "error": "too_many_errors",
                    "message": f"{self._errors} errors in this session; closing it",
                }
            )
            self._out.put_nowait(None)

    async def _writer(self) -> None:
        while True:
            text = await self._out.get()
            if text is None:
                if self._close_code is not None:
                    with contextlib.suppress(Exception):
                        await self.ws.close(code=self._close_code)
                return
            try:
                await self.ws.send_text(text)
            except Exception:  # client gone; the reader notices the disconnect
                return

    # ---------------------------------------------------------------- core callbacks
    def _on_result(self, probs: Float32Array, windows: Float32Array) -> None:
        self._samples += len(probs) * self.core.window_size
        for ev in self.segmenter.process(probs):
            if isinstance(ev, SpeechStart):
                payload: dict[str, Any] = {"event": "speech_start"}
                if self.options.include_samples:
                    payload.update(start=ev.start_sample, sample=ev.detected_sample)
            elif isinstance(ev, SpeechEnd):
                payload = {"event": "speech_end"}
                if self.options.include_samples:
                    payload.update(
                        start=ev.start_sample, end=ev.end_sample, sample=ev.detected_sample
                    )
            else:
                continue
            self.metrics.events.inc(event=payload["event"])
            self._send(payload)
        if self._engine is not None:
            self._turn_events(self._engine.push_probabilities(probs))

    # ---------------------------------------------------------------- turn detection
    def _turn_engine(self) -> TurnEngine | None:
        """The session's engine, created at the first transcript (None: turn detection off
        or unavailable, which the client was told once)."""
        if self._engine is None and not self._turn_off:
            if not self.state.turn.warm():
                self._turn_off = True
                self.error(
                    "turn_unavailable",
                    "end-of-turn detection is not available on this server; "
                    "speech_start / speech_end go on",
                )
                return None
            model = self.state.turn.model
            self._scorer.supports_pending_words = (
                getattr(model, "supports_pending_words", False) is True
            )
            self._engine = TurnEngine(
                self.options.turn_options(), scorer=self._scorer, sample_rate=16000
            )
            self._engine_offset = self._samples
        return self._engine

    def score_later(self, key: _ScoreKey) -> None:
        """Predict for ``key`` off the loop; poll the engine once the answer is in."""
        task = asyncio.get_running_loop().create_task(self._score(key))
        self._score_tasks.add(task)
        task.add_done_callback(self._score_tasks.discard)

    async def _score(self, key: _ScoreKey) -> None:
        turns, pending = key
        try:
            p, dt = await self.state.turn.predict(turns, words_pending=pending, owner=self)
        except CaesuraError as exc:  # ModelError, TurnUnavailableError: ScorerFailed
            self._scorer.answer(key, exc)
        else:
            self.metrics.eot_predictions.inc()
            self.metrics.eot_seconds.observe(dt)
            self._scorer.answer(key, p)
        if self._engine is not None and not self._closing:
            self._turn_events(self._engine.poll())

    def _turn_events(self, events: list[TurnEvent]) -> None:
        for ev in events:
            payload: dict[str, Any]
            if isinstance(ev, EndOfTurn):
                payload = {
                    "event": "end_of_turn",
                    "end_of_turn": True,
                    "probability": _rounded(ev.probability),
                    "words_probability": _rounded(ev.words_probability),
                    "reason": ev.reason,
                    "delay_ms": round(ev.delay_ms),
                }
            elif isinstance(ev, TurnReopened):
                payload = {"event": "turn_reopened", "pause_ms": round(ev.pause_ms)}
            elif isinstance(ev, ScorerFailed):
                code = (
                    "turn_unavailable"
                    if isinstance(ev.error, TurnUnavailableError)
                    else "turn_failed"
                )
                self.error(code, f"end-of-turn prediction failed: {ev.error}")
                continue
            else:  # speech events come from the session's own segmenter
                continue
            if self.options.include_samples:
                payload["sample"] = ev.sample + self._engine_offset
            self.metrics.events.inc(event=payload["event"])
            self._send(payload)

    def _on_error(self, exc: Exception) -> None:
        self.metrics.errors.inc(error="internal_error")
        self._send({"error": "internal_error", "message": f"VAD inference failed: {exc}"})
        self._closing = True
        self._close_code = _CLOSE_INTERNAL
        self._out.put_nowait(None)

    # ---------------------------------------------------------------- inbound
    async def _on_audio(self, data: bytes) -> None:
        n = len(data)
        hot = self.state.hot
        hot.binary_messages += 1
        if n == 0:
            return
        if n > self.state.config.max_frame_bytes:
            self.error(
                "frame_too_large",
                f"binary frame of {n} bytes exceeds the limit of "
                f"{self.state.config.max_frame_bytes} bytes; frame dropped",
            )
            return
        if n % 2:
            self.error(
                "invalid_audio",
                f"binary frame of {n} bytes: PCM16LE audio needs an even number of "
                "bytes (2 per sample); frame dropped",
            )
            return
        hot.audio_bytes += n
        buf = self._buf
        if not buf and n % self.window_bytes == 0:  # whole windows: no buffering needed
            raw: bytes = data
            k = n // self.window_bytes
        else:
            buf += data
            k = len(buf) // self.window_bytes
            if k == 0:
                return
            m = k * self.window_bytes
            raw = bytes(buf[:m])
            del buf[:m]
        windows = np.frombuffer(raw, dtype="<i2").astype(np.float32)
        windows *= _SCALE
        assert self.slot is not None
        await self.core.submit(self.slot, windows.reshape(k, -1))

    def _reset(self) -> None:
        assert self.slot is not None
        self.core.reset(self.slot)
        self._buf.clear()
        self.segmenter.reset()
        self._samples = 0
        self._scorer.clear()
        if self._engine is not None:
            self._engine.reset()
            self._engine_offset = 0

    def _on_text(self, text: str) -> None:
        self.state.hot.text_messages += 1
        if len(text) > MAX_TEXT_MESSAGE:
            self.error(
                "invalid_message",
                f"text message of {len(text)} characters exceeds {MAX_TEXT_MESSAGE}",
            )
            return
        stripped = text.strip()
        if stripped.lower() == "reset":
            self._reset()
            return
        if not stripped.startswith("{"):
            self.error(
                "invalid_message",
                "unknown text message: send 'reset' or a JSON object with a 'type' "
                f"(transcript, agent, reset); got {stripped[:40]!r}",
            )
            return
        try:
            msg = json.loads(stripped)
        except (ValueError, RecursionError) as exc:
            self.error("invalid_message", f"text message is not valid JSON: {exc}")
            return
        if not isinstance(msg, dict):
            self.error("invalid_message", "JSON message must be an object with a 'type'")
            return
        kind = msg.get("type")
        if kind == "reset":
            self._reset()
        elif kind == "transcript":
            self._on_transcript(msg)
        elif kind in ("agent", "assistant"):
            agent_text = msg.get("text")
            if not isinstance(agent_text, str):
                self.error("invalid_message", "'agent' message needs a string 'text'")
                return
            if len(agent_text) > MAX_TEXT_CHARS:
                self.error(
                    "invalid_message",
                    f"agent text of {len(agent_text)} characters exceeds {MAX_TEXT_CHARS}",
                )
                return
            engine = self._turn_engine()
            if engine is not None:
                engine.response_committed()  # the user's turn was answered
                engine.add_agent_message(agent_text)
        else:
            self.error(
                "invalid_message",
                f"unknown message type {kind!r}; expected transcript, agent or reset",
            )

    def _on_transcript(self, msg: dict[str, Any]) -> None:
        text = msg.get("text")
        final = msg.get("final", True)
        if not isinstance(text, str) or not isinstance(final, bool):
            self.error(
                "invalid_message",
                "'transcript' needs a string 'text' and an optional boolean 'final'",
            )
            return
        if len(text) > MAX_TEXT_CHARS:
            self.error(
                "invalid_message", f"transcript of {len(text)} characters exceeds {MAX_TEXT_CHARS}"
            )
            return
        language = msg.get("language")
        if language is not None and not isinstance(language, str):
            self.error("invalid_message", "'language' must be a string such as \"en\"")
            return
        engine = self._turn_engine()
        if engine is not None:
            self._turn_events(engine.push_transcript(text, final=final, language=language))

    # ---------------------------------------------------------------- main loop
    async def run(self) -> None:
        try:
            self.slot = self.core.open(self._on_result, self._on_error)
        except CoreClosedError:
            self._close_code = _CLOSE_TRY_AGAIN
            self._send({"error": "server_busy", "message": "the server is shutting down"})
            self._out.put_nowait(None)
            await self._writer()
            return
        writer = asyncio.create_task(self._writer())
        try:
            while not self._closing:
                message = await self.ws.receive()
                mtype = message.get("type")
                if mtype == "websocket.disconnect":
                    break
                if mtype != "websocket.receive":
                    continue
                data = message.get("bytes")
                if data is not None:
                    await self._on_audio(data)
                    continue
                text = message.get("text")
                if text is not None:
                    self._on_text(text)
        except CoreClosedError:
            self._close_code = _CLOSE_TRY_AGAIN
            self._send({"error": "server_busy", "message": "the server is shutting down"})
        except (RuntimeError, OSError) as exc:  # socket torn down under us
            logger.debug("realtime session ended: %s", exc)
        except InvalidOptionError as exc:
            self.error("invalid_option", str(exc))
        finally:
            self.core.close(self.slot)  # also drops the core's references to this session
            for task in list(self._score_tasks):
                task.cancel()  # a cancelled task's traceback would hold this session
            self._score_tasks.clear()
            self._out.put_nowait(None)
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(writer, timeout=2.0)
            writer.cancel()


def _rounded(p: float | None) -> float | None:
    return None if p is None else round(p, 6)
