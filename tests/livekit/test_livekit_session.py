"""A real AgentSession (no room) with caesura's VAD and TurnDetector: real speech in through a
custom audio input at 24 kHz / 50 ms, fake STT / LLM / TTS services (tests/livekit/lk_harness).

The session commits the user turn ``min_delay`` after the end of speech when the transcript is
a complete request, and only after ``max_delay`` when it stops mid-sentence.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from livekit.agents import Agent, AgentSession
from lk_harness import (
    LK_RATE,
    EchoLLM,
    NullAudioOutput,
    PacedAudioInput,
    ScriptedSTT,
    SilentTTS,
    TurnTimeline,
    eot_model_or_skip,
    session_options,
    start_options,
)

from caesura.vad.session import VADSession
from livekit.plugins import caesura

MIN_DELAY = 0.5
MAX_DELAY = 3.0
pytestmark = pytest.mark.slow


def first_utterance(pcm: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The first utterance of ``pcm`` (+ the pause after it, cut before the next one) and its
    speech start / end in seconds, as the core segments it with the VAD's options."""
    vad = caesura.VAD.load()
    session = VADSession(vad.core_model, sample_rate=LK_RATE, options=vad._opts.segmenter_options())
    events = session.feed(pcm[: LK_RATE * 6])
    end = next(e for e in events if e.kind == "speech_end")
    cut = int((end.end_s + 0.2) * LK_RATE)
    return pcm[:cut], end.start_s, end.end_s


async def run_turn(
    pcm: np.ndarray, transcript: str, turn_detection: Any, speech_end_s: float
) -> TurnTimeline:
    stt = ScriptedSTT([transcript])
    session = AgentSession(
        vad=caesura.VAD.load(),
        stt=stt,
        llm=EchoLLM(),
        tts=SilentTTS(),
        **session_options(turn_detection, MIN_DELAY, MAX_DELAY),
    )
    audio_in = PacedAudioInput(pcm)
    session.input.audio = audio_in
    session.output.audio = NullAudioOutput()
    timeline = TurnTimeline(speech_end_s=speech_end_s)
    committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @session.on("conversation_item_added")
    def _on_item(ev: Any) -> None:
        if getattr(ev.item, "role", None) == "user" and not committed.done():
            assert audio_in.started_at is not None
            timeline.committed_s = time.time() - audio_in.started_at
            timeline.committed_text = ev.item.text_content
            committed.set_result(None)

    @session.on("user_state_changed")
    def _on_state(ev: Any) -> None:
        if ev.new_state == "listening" and timeline.vad_end_s is None and audio_in.started_at:
            timeline.vad_end_s = time.time() - audio_in.started_at

    await session.start(Agent(instructions="You book tables."), **start_options())
    try:
        await asyncio.wait_for(committed, timeout=MAX_DELAY + 8.0)
    finally:
        await session.aclose()
    timeline.stt_buffers = stt.buffers
    return timeline


def check_stt_got_the_utterance(t: TurnTimeline, speech_s: float) -> None:
    # the non-streaming STT transcribed our END_OF_SPEECH frames: 24 kHz, the utterance plus
    # at most the prefix padding and a short pad
    assert len(t.stt_buffers) == 1
    buf = t.stt_buffers[0]
    assert buf.sample_rate == LK_RATE
    assert speech_s <= buf.duration <= speech_s + 0.5 + 0.05


def test_vad_only_session_commits_after_min_delay(speech_pcm):
    """Our VAD inside a real session (no semantic model): the turn ends on silence alone."""
    pcm, start_s, end_s = first_utterance(speech_pcm)
    t = asyncio.run(run_turn(pcm, "I want to book a table for", "vad", end_s))
    assert t.committed_text == "I want to book a table for"
    assert t.vad_end_s is not None
    assert 0.5 < t.vad_end_s - end_s < 0.75
    assert t.committed_s is not None
    assert MIN_DELAY - 0.05 <= t.committed_s - end_s < 1.5
    check_stt_got_the_utterance(t, end_s - start_s)


def test_complete_request_is_answered_quickly(speech_pcm):
    detector = caesura.TurnDetector(model=eot_model_or_skip())
    pcm, start_s, end_s = first_utterance(speech_pcm)
    text = "Can you book me a table for two at seven tonight?"
    t = asyncio.run(run_turn(pcm, text, detector, end_s))
    assert t.committed_text == text
    assert t.committed_s is not None
    assert MIN_DELAY - 0.05 <= t.committed_s - end_s < 1.5
    check_stt_got_the_utterance(t, end_s - start_s)


def test_mid_sentence_stop_waits_for_max_delay(speech_pcm):
    detector = caesura.TurnDetector(model=eot_model_or_skip())
    pcm, _, end_s = first_utterance(speech_pcm)
    text = "I want to book a table for"
    t = asyncio.run(run_turn(pcm, text, detector, end_s))
    assert t.committed_text == text
    assert t.committed_s is not None
    assert MAX_DELAY - 0.1 <= t.committed_s - end_s < MAX_DELAY + 1.0
