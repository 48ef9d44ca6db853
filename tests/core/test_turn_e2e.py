"""Turn engine end to end on real speech through the real Silero VAD, with a scripted
transcript and a scripted end-of-turn scorer (the words, not the model, are under test)."""

from __future__ import annotations

import numpy as np
import pytest

from caesura.audio import read_audio, resample
from caesura.eot import EndOfTurnModel, EotStream
from caesura.errors import InvalidOptionError, ModelError
from caesura.turn import (
    EndOfTurn,
    FlushSTT,
    ProgressiveAudio,
    SpeechStarted,
    SpeechStopped,
    TurnEngine,
    TurnOptions,
    lexical_end_probability,
)
from caesura.vad import SileroVAD

CHUNK = 800  # 50 ms at 16 kHz, like a WebRTC frame


def scorer(turns):
    text = turns[-1]["content"]
    return 0.95 if text.endswith(".") else 0.02


def drive(eng: TurnEngine, audio: np.ndarray, script: list[str], on_eot=None):
    """Feed audio in 50 ms chunks; when speech stops (the flush hint), the scripted
    recogniser delivers the next final transcript at once."""
    events = []
    lines = list(script)

    def handle(new):
        for ev in new:
            events.append(ev)
            if isinstance(ev, SpeechStopped) and ev.reason != "max_speech" and lines:
                handle(eng.push_transcript(lines.pop(0), final=True, language="en"))
            if isinstance(ev, EndOfTurn) and on_eot is not None:
                on_eot(eng)

    for i in range(0, audio.size, CHUNK):
        handle(eng.push_audio(audio[i : i + CHUNK]))
    handle(eng.flush())
    return events


@pytest.fixture(scope="module")
def vad():
    return SileroVAD.load()


def check_structure(events, sr=16000):
    samples = [e.sample for e in events]
    assert samples == sorted(samples)
    open_ = False
    for e in events:
        if isinstance(e, SpeechStarted):
            assert not open_
            open_ = True
        elif isinstance(e, SpeechStopped):
            assert open_
            open_ = False
            assert e.audio is not None
            assert (
                e.audio_start_sample <= e.start_sample - 0.3 * sr + 1 or e.audio_start_sample == 0
            )
            assert e.audio.size == min(e.end_sample + 480, e.sample) - e.audio_start_sample
    flushes = [e for e in events if isinstance(e, FlushSTT)]
    silences = [e for e in events if isinstance(e, SpeechStopped) and e.reason == "silence"]
    assert len(flushes) == len(silences)


def test_speech_fixture_incomplete_then_complete(vad, fixtures_dir):
    audio, sr = read_audio(fixtures_dir / "speech_16k.wav")
    assert sr == 16000
    eng = TurnEngine(vad=vad, scorer=scorer)
    script = [
        "so the thing is that",
        "we never really",
        "finished the project on time.",
        "okay thanks.",
    ]
    events = drive(eng, audio, script, on_eot=lambda e: e.response_committed())
    check_structure(events)
    stops = [e for e in events if isinstance(e, SpeechStopped)]
    eots = [e for e in events if isinstance(e, EndOfTurn)]
    assert len(stops) >= 4
    # no end of turn inside the two pauses after incomplete words
    first_eot = eots[0]
    assert (
        first_eot.transcript == "so the thing is that we never really finished the project on time."
    )
    assert first_eot.reason == "semantic"
    assert first_eot.delay_ms < 400
    # the next speech opens turn 2 (the response was committed), ended by the flush; its
    # words arrive after that (a late final) and still land in the history
    assert eots[-1].turn_id == 2
    assert eots[-1].reason == "flush"
    assert eng.transcript == "okay thanks."
    assert eng.history[-1] == {"role": "user", "content": "okay thanks."}
    # the same audio without words: silence-only endpointing cuts inside the first pauses
    eng2 = TurnEngine(TurnOptions(fallback_delay_ms=500), vad=vad)
    ev2 = drive(eng2, audio, [])
    assert sum(isinstance(e, EndOfTurn) for e in ev2) > len(eots)


def test_ami_meeting_excerpt_with_agent_speaking(vad, fixtures_dir):
    audio, _sr = read_audio(fixtures_dir / "ami_sample_16k.wav")
    eng = TurnEngine(
        TurnOptions(progressive_interval_ms=500), vad=vad, scorer=lexical_end_probability
    )
    events = drive(eng, audio, ["well i think we should", "yeah.", "so the remote"] * 10)
    check_structure(events)
    assert sum(isinstance(e, SpeechStarted) for e in events) >= 3
    prog = [e for e in events if isinstance(e, ProgressiveAudio)]
    assert prog
    assert all(p.audio.size == p.sample - p.audio_start_sample for p in prog)
    np.testing.assert_array_equal(  # progressive audio is the input audio, unchanged
        prog[0].audio, audio[prog[0].audio_start_sample : prog[0].sample].astype(np.float32)
    )
    # barge-in: the same audio while the agent talks flags every start
    eng2 = TurnEngine(vad=vad, scorer=lexical_end_probability)
    eng2.set_agent_speaking(True)
    starts = [e for e in drive(eng2, audio, []) if isinstance(e, SpeechStarted)]
    assert starts
    assert starts[0].interrupt_response


def test_other_input_rates_are_resampled_onto_the_model_clock(vad, fixtures_dir):
    audio, _ = read_audio(fixtures_dir / "speech_16k.wav")
    ref = [e for e in drive(TurnEngine(vad=vad), audio, []) if isinstance(e, SpeechStarted)]
    hi = resample(audio.astype(np.float32), 16000, 48000)
    eng = TurnEngine(vad=vad, input_sample_rate=48000)
    got = [e for e in drive(eng, hi, []) if isinstance(e, SpeechStarted)]
    assert len(got) == len(ref)
    for a, b in zip(got, ref, strict=True):  # same clock (16 kHz samples), within a window
        assert abs(a.start_sample - b.start_sample) <= 512
    with pytest.raises(InvalidOptionError, match="sample_rate=16000"):
        TurnEngine(vad=vad, sample_rate=8000, input_sample_rate=48000)


def test_bundled_end_of_turn_model_drives_the_engine(vad, fixtures_dir):
    """The real scorer end to end: complete words end the turn sooner than a cut-off phrase."""
    try:
        model = EndOfTurnModel.load()
    except ModelError as exc:  # the model assets are not installed in this checkout
        pytest.skip(f"no bundled end-of-turn model: {exc}")
    audio, _ = read_audio(fixtures_dir / "speech_16k.wav")
    first = audio[: int(2.6 * 16000)]  # the first utterance and its pause

    def delay(text: str) -> float:
        eng = TurnEngine(TurnOptions(max_delay_ms=3000), vad=vad, scorer=model)
        ev = drive(eng, np.concatenate([first, np.zeros(4 * 16000)]), [text])
        (eot,) = [e for e in ev if isinstance(e, EndOfTurn)]
        assert eot.reason in ("semantic", "max_delay")
        assert eot.words_probability is not None
        return eot.delay_ms

    assert delay("can you book me a table for two at seven please") < delay(
        "can you book me a table for"
    )


def test_words_recognised_before_the_speech_ends_are_scored_as_pending(vad, fixtures_dir):
    """Real audio, the bundled model: a final transcript that lands mid-speech lacks the
    last word, so at the pause the engine asks P(end after one more word); the same words
    delivered after the speech ended are scored as they are."""
    try:
        model = EndOfTurnModel.load()
    except ModelError as exc:  # the model assets are not installed in this checkout
        pytest.skip(f"no bundled end-of-turn model: {exc}")
    audio, _ = read_audio(fixtures_dir / "speech_16k.wav")
    clip = np.concatenate([audio[: int(2.6 * 16000)], np.zeros(4 * 16000, dtype=np.float32)])
    text = "can you book me a table for"

    def end_of_turn(push_at_s: float) -> EndOfTurn:
        eng = TurnEngine(TurnOptions(max_delay_ms=3000), vad=vad, scorer=model)
        events = []
        pushed = False
        for i in range(0, clip.size, CHUNK):
            if not pushed and i >= push_at_s * 16000:
                events += eng.push_transcript(text, final=True, language="en")
                pushed = True
            events += eng.push_audio(clip[i : i + CHUNK])
        (eot,) = [e for e in events if isinstance(e, EndOfTurn)]
        return eot

    early = end_of_turn(1.0)  # mid-utterance (speech runs to ~2.05 s)
    late = end_of_turn(2.5)  # after the speech ended
    chat = [{"role": "user", "content": text}]
    assert early.words_pending
    assert early.words_probability == pytest.approx(model.predict(chat, words_pending=True))
    assert not late.words_pending
    assert late.words_probability == pytest.approx(model.predict(chat))
    # "... a table for" + one more word is far likelier to be done than "... a table for"
    assert early.delay_ms < late.delay_ms


def test_engine_scores_its_conversation_through_one_stream(monkeypatch):
    """An engine given the model scores through a stream of its own: across the pauses of a
    growing turn only the new words are computed, and the scores are the model's."""
    try:
        model = EndOfTurnModel.load()
    except ModelError as exc:  # the model assets are not installed in this checkout
        pytest.skip(f"no bundled end-of-turn model: {exc}")
    calls = []
    original = EotStream.predict

    def spy(self, turns, **kwargs):
        p = original(self, turns, **kwargs)
        calls.append((self, self.computed_tokens, self.cached_tokens, p, list(turns), kwargs))
        return p

    monkeypatch.setattr(EotStream, "predict", spy)
    engines = [TurnEngine(TurnOptions(max_delay_ms=3000), scorer=model) for _ in range(2)]
    for eng in engines:
        eng.add_agent_message(
            "Sure, I can help with that. We have tables at six thirty, seven fifteen and eight "
            "tomorrow evening. Which would you like, and how many people will there be?"
        )
    for piece in ["i think", "seven fifteen would be", "good and we are", "four of us and"]:
        for eng in engines:
            eng.push_transcript(piece, final=True, language="en")
            eng.advance_ms(350)
    streams = {id(c[0]) for c in calls}
    assert len(streams) == 2  # one stream per engine
    assert all(c[0].model is model for c in calls)
    assert len(calls) >= 8
    assert any(computed < window for _, computed, window, *_ in calls)
    for _, _, _, p, turns, kwargs in calls:
        assert p == pytest.approx(model.predict(turns, **kwargs), abs=0.05)
