"""One realtime VAD session: ``GET /v1/audio/realtime_vad`` (silero_vad_server protocol).

Client → server:

* binary frames: PCM16LE mono 16 kHz, any length (an even number of bytes); samples are
  buffered across frames and cut into 512-sample windows for the shared batched core;
* text ``reset``: forget the session's audio, model state and segment (a fresh stream);
* extension, text JSON: ``{"type": "transcript", "text": "...", "final": true}`` (the user's
  words from your STT), ``{"type": "agent", "text": "..."}`` (what the agent said),
  ``{"type": "reset"}``.

Server → client (text JSON): ``{"event": "speech_start"}``, ``{"event": "speech_end"}``;
with turn detection, after each final transcript,
``{"event": "end_of_turn", "probability": 0.93, "end_of_turn": true}``; errors
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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from caesura.errors import CaesuraError, InvalidOptionError
from caesura.server.config import StreamOptions
from caesura.server.scheduler import CoreClosedError, StreamSlot
from caesura.server.turn import MAX_TEXT_CHARS, MAX_TURNS, TurnUnavailableError
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


@dataclass
class _Dialogue:
    turns: list[tuple[str, str]] = field(default_factory=list)
    user_open: bool = False
    partial: str = ""

    def add_user(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        if self.user_open and self.turns:
            role, prev = self.turns[-1]
            joined = f"{prev} {text}".strip()
            self.turns[-1] = (role, joined[-MAX_TEXT_CHARS:])
        else:
            self.turns.append(("user", text[-MAX_TEXT_CHARS:]))
            self.user_open = True
        del self.turns[:-MAX_TURNS]

    def add_agent(self, text: str) -> None:
        self.turns.append(("agent", text.strip()[-MAX_TEXT_CHARS:]))
        self.user_open = False
        self.partial = ""
        del self.turns[:-MAX_TURNS]


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
        self._dialogue = _Dialogue()
        self._eot_wanted = False
        self._eot_task: asyncio.Task[None] | None = None
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
        self._dialogue = _Dialogue()
        self._eot_wanted = False

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
            self._dialogue.add_agent(agent_text)
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
        if not final:
            self._dialogue.partial = text
            return
        self._dialogue.partial = ""
        self._dialogue.add_user(text)
        if not self.options.turn or not self.state.config.enable_turn:
            return
        if not self._dialogue.turns or not self._dialogue.user_open:
            return
        self._eot_wanted = True
        if self._eot_task is None or self._eot_task.done():
            self._eot_task = asyncio.create_task(self._eot_loop())

    async def _eot_loop(self) -> None:
        """Predict for the latest dialogue; transcripts arriving meanwhile coalesce."""
        while self._eot_wanted and not self._closing:
            self._eot_wanted = False
            turns = list(self._dialogue.turns)
            try:
                p, dt = await self.state.turn.predict(turns, owner=self)
            except TurnUnavailableError as exc:
                self.error("turn_unavailable", str(exc))
                return
            except CaesuraError as exc:
                self.error("turn_failed", str(exc))
                return
            self.metrics.eot_predictions.inc()
            self.metrics.eot_seconds.observe(dt)
            if self._eot_wanted:
                continue  # a newer transcript arrived; only report the latest
            p = min(1.0, max(0.0, p))
            self.metrics.events.inc(event="end_of_turn")
            self._send(
                {
                    "event": "end_of_turn",
                    "probability": round(p, 6),
                    "end_of_turn": p >= self.options.eot_threshold,
                }
            )

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
            if self._eot_task is not None:
                self._eot_task.cancel()
                # the cancelled task's traceback holds _eot_loop's frame, i.e. this session
                self._eot_task = None
            self._out.put_nowait(None)
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(writer, timeout=2.0)
            writer.cancel()
