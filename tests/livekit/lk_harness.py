"""Test harness for the LiveKit plugin: real audio as LiveKit frames, and a real AgentSession
driven without a room (custom audio input, minimal fake STT / LLM / TTS written here).

The fakes stand in for *remote services* only; the VAD, the turn detector and the session are
the real objects under test.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import inspect
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    AgentSession,
    APIConnectOptions,
    llm,
    stt,
    tts,
    utils,
)
from livekit.agents.utils.audio import AudioBuffer
from livekit.agents.voice import io as lk_io
from livekit.agents.voice.io import AudioInput, AudioOutput

from caesura.audio import read_audio, resample
from livekit import rtc

try:  # livekit-agents >= 1.5; plain strings before
    from livekit.agents import LanguageCode
except ImportError:  # pragma: no cover - the floor of the supported range
    LanguageCode = str  # type: ignore[misc,assignment]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
LK_RATE = 24000  # what RoomIO delivers
FRAME_MS = 50


def load_pcm(name: str, rate: int = LK_RATE) -> np.ndarray:
    """A fixture recording as int16 mono at ``rate`` (resampled with soxr)."""
    audio, sr = read_audio(FIXTURES / name)
    if sr != rate:
        audio = resample(audio, sr, rate)
    return (np.clip(audio, -1.0, 32767 / 32768) * 32768.0).astype(np.int16)


def to_frames(pcm: np.ndarray, rate: int = LK_RATE, ms: int = FRAME_MS) -> list[rtc.AudioFrame]:
    """``pcm`` cut into ``ms`` frames (a last partial frame is kept)."""
    n = rate * ms // 1000
    return [
        rtc.AudioFrame(
            data=pcm[i : i + n].tobytes(),
            sample_rate=rate,
            num_channels=1,
            samples_per_channel=pcm[i : i + n].size,
        )
        for i in range(0, pcm.size, n)
    ]


def frame_pcm(frames: list[rtc.AudioFrame]) -> np.ndarray:
    if not frames:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames])


# ---- fake services -------------------------------------------------------------------------


class ScriptedSTT(stt.STT):
    """Non-streaming STT: the session wraps it in ``stt.StreamAdapter`` with our VAD, so it is
    asked to recognise each END_OF_SPEECH's frames. Returns the scripted transcripts in order
    and records what it was given."""

    def __init__(self, transcripts: list[str], *, language: str = "en", delay: float = 0.1):
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self._transcripts = list(transcripts)
        self._language = language
        self._delay = delay
        self.buffers: list[rtc.AudioFrame] = []
        self.times: list[float] = []

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: Any = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.SpeechEvent:
        self.buffers.append(utils.merge_frames(buffer))
        await asyncio.sleep(self._delay)
        self.times.append(time.time())
        text = self._transcripts.pop(0) if self._transcripts else ""
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            alternatives=[stt.SpeechData(text=text, language=LanguageCode(self._language))],
        )


class EchoLLM(llm.LLM):
    """Answers every user turn with a fixed sentence; records when it was asked."""

    def __init__(self, answer: str = "Sure, done.") -> None:
        super().__init__()
        self.answer = answer
        self.calls: list[tuple[float, str]] = []

    def chat(self, *, chat_ctx: llm.ChatContext, tools: Any = None, **kwargs: Any) -> llm.LLMStream:
        last = next(
            (
                m.text_content or ""
                for m in reversed(chat_ctx.items)
                if isinstance(m, llm.ChatMessage) and m.role == "user"
            ),
            "",
        )
        self.calls.append((time.time(), last))
        return _EchoStream(
            self,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=kwargs.get("conn_options", DEFAULT_API_CONNECT_OPTIONS),
        )


class _EchoStream(llm.LLMStream):
    async def _run(self) -> None:
        assert isinstance(self._llm, EchoLLM)
        await asyncio.sleep(0.05)
        self._event_ch.send_nowait(
            llm.ChatChunk(
                id=str(id(self)),
                delta=llm.ChoiceDelta(role="assistant", content=self._llm.answer),
            )
        )


class SilentTTS(tts.TTS):
    """Non-streaming TTS producing 0.3 s of silence per request."""

    def __init__(self) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False), sample_rate=LK_RATE, num_channels=1
        )

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _SilentChunk(tts=self, input_text=text, conn_options=conn_options)


class _SilentChunk(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid("tts_"),
            sample_rate=LK_RATE,
            num_channels=1,
            mime_type="audio/pcm",
        )
        output_emitter.push(b"\x00\x00" * int(LK_RATE * 0.3))
        output_emitter.flush()


class PacedAudioInput(AudioInput):
    """Plays int16 PCM into the session in real time, 50 ms frames, then silence forever."""

    def __init__(self, pcm: np.ndarray, rate: int = LK_RATE) -> None:
        if "label" in inspect.signature(AudioInput.__init__).parameters:
            super().__init__(label="caesura-test-input")
        else:  # livekit-agents < 1.3
            super().__init__()
        self._frames = to_frames(pcm, rate)
        self._rate = rate
        self._silence = to_frames(np.zeros(rate * FRAME_MS // 1000, dtype=np.int16), rate)[0]
        self._gen: AsyncIterator[rtc.AudioFrame] | None = None
        self.started_at: float | None = None

    async def _paced(self) -> AsyncIterator[rtc.AudioFrame]:
        self.started_at = time.time()
        sent = 0.0
        i = 0
        while True:
            frame = self._frames[i] if i < len(self._frames) else self._silence
            i += 1
            target = self.started_at + sent
            delay = target - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            sent += frame.duration
            yield frame

    async def __anext__(self) -> rtc.AudioFrame:
        if self._gen is None:
            self._gen = self._paced()
        return await self._gen.__anext__()


class NullAudioOutput(AudioOutput):
    """Accepts the agent's audio and reports it played at once."""

    def __init__(self) -> None:
        kwargs: dict[str, Any] = {"sample_rate": LK_RATE}
        if "label" in inspect.signature(AudioOutput.__init__).parameters:  # >= 1.3
            kwargs["label"] = "caesura-test-output"
        if hasattr(lk_io, "AudioOutputCapabilities"):  # livekit-agents >= 1.3
            kwargs["capabilities"] = lk_io.AudioOutputCapabilities(pause=False)
        super().__init__(**kwargs)
        self._pushed = 0.0

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if not self._pushed and hasattr(self, "on_playback_started"):
            self.on_playback_started(created_at=time.time())
        self._pushed += frame.duration

    def flush(self) -> None:
        super().flush()
        if self._pushed:
            pushed, self._pushed = self._pushed, 0.0
            self.on_playback_finished(
                playback_position=pushed, interrupted=False, synchronized_transcript=None
            )

    def clear_buffer(self) -> None:
        if self._pushed:
            pushed, self._pushed = self._pushed, 0.0
            self.on_playback_finished(
                playback_position=pushed, interrupted=True, synchronized_transcript=None
            )


@dataclass
class TurnTimeline:
    """What happened in one session run, in wall-clock seconds from the input's start."""

    speech_end_s: float  # end of the utterance in the input audio
    vad_end_s: float | None = None  # END_OF_SPEECH seen by the session
    committed_s: float | None = None  # user turn committed (user message in the chat)
    committed_text: str | None = None
    stt_buffers: list[rtc.AudioFrame] = field(default_factory=list)


def utterance(pcm: np.ndarray, start_s: float, end_s: float, rate: int = LK_RATE) -> np.ndarray:
    return pcm[int(start_s * rate) : int(end_s * rate)]


def iter_windows(n: int, size: int) -> Iterator[tuple[int, int]]:
    for i in range(n):
        yield i * size, (i + 1) * size


def eot_model_or_skip() -> Any:
    """The bundled end-of-turn model; the test is skipped (saying why) while the model is not
    bundled yet. Any other load failure is an error."""
    try:
        from caesura.eot import EndOfTurnModel  # noqa: PLC0415 - lands after this harness
    except ImportError as exc:
        pytest.skip(f"caesura.eot.EndOfTurnModel is not available ({exc})")
    assets = importlib.resources.files("caesura.eot") / "assets"
    if not any(p.name.endswith(".onnx") for p in assets.iterdir()):
        pytest.skip("the end-of-turn model is not bundled yet (src/caesura/eot/assets is empty)")
    return EndOfTurnModel.load()


def session_options(turn_detection: Any, min_delay: float, max_delay: float) -> dict[str, Any]:
    """AgentSession keyword arguments for these endpointing settings, in the style the
    installed livekit-agents takes (``turn_handling`` since 1.5, flat arguments before)."""
    params = inspect.signature(AgentSession.__init__).parameters
    if "turn_handling" in params:
        return {
            "turn_handling": {
                "turn_detection": turn_detection,
                "endpointing": {"min_delay": min_delay, "max_delay": max_delay},
                "preemptive_generation": {"enabled": False},
            }
        }
    return {
        "turn_detection": turn_detection,
        "min_endpointing_delay": min_delay,
        "max_endpointing_delay": max_delay,
    }


def start_options() -> dict[str, Any]:
    """``record=False`` where AgentSession.start takes it (no recorder in tests)."""
    return {"record": False} if "record" in inspect.signature(AgentSession.start).parameters else {}
