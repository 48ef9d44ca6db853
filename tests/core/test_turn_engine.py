"""Turn engine on scripted VAD probabilities and a scripted end-of-turn scorer (no model)."""

from __future__ import annotations

import dataclasses
import itertools
import logging

import numpy as np
import pytest

from caesura.errors import InvalidAudioError, InvalidOptionError, ModelError
from caesura.turn import (
    Backchannel,
    EndOfTurn,
    FlushSTT,
    Interruption,
    ProgressiveAudio,
    ScorePending,
    ScorerFailed,
    SpeechStarted,
    SpeechStopped,
    SupportsStream,
    TurnEngine,
    TurnOptions,
    TurnPhase,
    TurnReopened,
    WordsScored,
)

SR = 16000
W = 512  # samples per window at 16 kHz (32 ms)


def n(ms: float) -> int:
    return round(ms / 32)


def speech(ms: float, p: float = 0.9) -> list[float]:
    return [p] * n(ms)


def silence(ms: float) -> list[float]:
    return [0.0] * n(ms)


def of(events, cls):
    return [e for e in events if isinstance(e, cls)]


class Scripted:
    """P(end) by the last user turn's ending; records every call."""

    def __init__(self, table: dict[str, float] | None = None, default: float = 0.5):
        self.table = table or {}
        self.default = default
        self.calls: list[list[dict[str, str]]] = []

    def __call__(self, turns):
        self.calls.append([dict(t) for t in turns])
        text = turns[-1]["content"]
        for suffix, p in self.table.items():
            if text.endswith(suffix):
                return p
        return self.default


COMPLETE = "table for two please"
INCOMPLETE = "i want to book a table for"
SCORER = {COMPLETE: 0.95, INCOMPLETE: 0.02}


def engine(scorer=None, **opts) -> TurnEngine:
    return TurnEngine(TurnOptions(**opts), scorer=scorer)


def utter(eng: TurnEngine, text: str | None, speech_ms: float = 800, *, lead_ms: float = 320):
    """Silence, speech, then silence until SpeechStopped; push a final transcript."""
    ev = eng.push_probabilities(silence(lead_ms) + speech(speech_ms))
    ev += eng.push_probabilities(silence(224))  # >= min_silence_ms (200)
    assert of(ev, SpeechStopped), [e.kind for e in ev]
    if text is not None:
        ev += eng.push_transcript(text, final=True, language="en")
    return ev


def run_until(eng: TurnEngine, cls, max_ms: float = 5000):
    ev = []
    for _ in range(n(max_ms)):
        ev += eng.push_probabilities([0.0])
        if of(ev, cls):
            break
    return ev


# ----------------------------------------------------------------------------- speech layer


def test_min_speech_rejects_short_bursts_and_confirms_real_speech():
    eng = engine()
    ev = eng.push_probabilities(silence(320) + speech(160) + silence(640))
    assert ev == []  # a 160 ms cough: never speech
    ev = eng.push_probabilities(speech(320))
    (st,) = of(ev, SpeechStarted)
    onset = n(320 + 160 + 640) * W
    assert st.start_sample == onset
    assert st.sample - onset >= TurnOptions().min_speech_ms * SR / 1000
    assert st.interrupt_response is False
    assert st.turn_id == 1
    assert eng.phase is TurnPhase.SPEAKING


def test_min_silence_hangover_and_flush_hint():
    eng = engine()
    ev = eng.push_probabilities(speech(640) + silence(128) + speech(320))
    assert not of(ev, SpeechStopped)  # 128 ms gap < min_silence_ms
    ev = eng.push_probabilities(silence(160))
    assert not of(ev, SpeechStopped)
    ev = eng.push_probabilities(silence(64))
    (stop,) = of(ev, SpeechStopped)
    (flush,) = of(ev, FlushSTT)
    assert ev.index(stop) < ev.index(flush)
    assert stop.reason == "silence"
    assert stop.end_sample == n(640 + 128 + 320) * W
    assert flush.end_sample == stop.end_sample
    assert flush.turn_id == stop.turn_id
    assert (stop.sample - stop.end_sample) * 1000 / SR >= 200
    assert eng.phase is TurnPhase.PAUSED


def test_pre_roll_and_padding_audio_spans_are_exact():
    rng = np.random.default_rng(0)
    probs = silence(640) + speech(640) + silence(320)
    audio = rng.standard_normal(len(probs) * W).astype(np.float32)
    eng = TurnEngine(TurnOptions(pre_roll_ms=300, speech_pad_ms=30))
    ev = eng.push_probabilities(probs, audio)
    st = of(ev, SpeechStarted)[0]
    onset = n(640) * W
    assert st.audio_start_sample == onset - 4800
    np.testing.assert_array_equal(st.audio, audio[onset - 4800 : st.sample])
    sp = of(ev, SpeechStopped)[0]
    assert sp.audio_start_sample == onset - 4800
    np.testing.assert_array_equal(sp.audio, audio[onset - 4800 : sp.end_sample + 480])


def test_max_speech_splits_without_ending_the_turn():
    eng = engine(max_speech_ms=1000)
    ev = eng.push_probabilities(speech(2500))
    stops = of(ev, SpeechStopped)
    starts = of(ev, SpeechStarted)
    assert [s.reason for s in stops] == ["max_speech", "max_speech"]
    assert len(starts) == 3
    assert [s.continued for s in starts] == [False, True, True]
    assert {e.turn_id for e in ev} == {1}
    assert not of(ev, FlushSTT)
    assert not of(ev, EndOfTurn)
    assert eng.phase is TurnPhase.SPEAKING
    # parts are contiguous: no audio is dropped
    assert stops[0].end_sample == starts[1].start_sample


def test_short_segment_stitching():
    frag = speech(128) + silence(256)  # 128 ms of speech, then a pause ending the fragment
    base = dict(min_speech_ms=250, min_silence_ms=200)
    plain = engine(**base)
    assert of(plain.push_probabilities(silence(320) + frag * 3), SpeechStarted) == []
    stitched = engine(stitch_ms=1500, **base)
    ev = stitched.push_probabilities(silence(320) + frag * 3)
    (st,) = of(ev, SpeechStarted)
    assert st.start_sample == n(320) * W  # onset of the first fragment
    # fragments too far apart are not stitched
    far = engine(stitch_ms=300, **base)
    assert (
        of(far.push_probabilities(silence(320) + (speech(128) + silence(640)) * 3), SpeechStarted)
        == []
    )
    # fragments under 100 ms are never held
    tiny = engine(stitch_ms=1500, **base)
    assert (
        of(tiny.push_probabilities(silence(320) + (speech(64) + silence(256)) * 6), SpeechStarted)
        == []
    )


def test_progressive_release_backs_off_on_long_speech():
    probs = silence(320) + speech(6000)
    audio = np.random.default_rng(1).standard_normal(len(probs) * W).astype(np.float32)
    opts = TurnOptions(
        progressive_interval_ms=200, progressive_backoff_ms=1000, progressive_max_interval_ms=1600
    )
    eng = TurnEngine(opts)
    ev = eng.push_probabilities(probs, audio)
    rel = of(ev, ProgressiveAudio)
    assert [r.index for r in rel] == list(range(len(rel)))
    gaps = np.diff([r.sample for r in rel]) * 1000 / SR
    assert gaps[0] == pytest.approx(200, abs=32)
    assert gaps.max() == pytest.approx(1600, abs=32)
    assert np.all(np.diff(gaps) >= -1e-9)  # never shrinks
    assert len(rel) < 6000 / 200  # backed off
    last = rel[-1]
    np.testing.assert_array_equal(last.audio, audio[last.audio_start_sample : last.sample])
    # no audio given: no progressive releases (nothing to transcribe)
    assert of(TurnEngine(opts).push_probabilities(probs), ProgressiveAudio) == []


# ----------------------------------------------------------------------------- end of turn


def test_complete_words_end_the_turn_at_the_min_delay():
    sc = Scripted(SCORER)
    eng = engine(sc)
    ev = utter(eng, COMPLETE)
    ev += run_until(eng, EndOfTurn)
    (eot,) = of(ev, EndOfTurn)
    assert eot.reason == "semantic"
    assert eot.transcript == COMPLETE
    assert eot.language == "en"
    assert eot.words_probability == 0.95
    assert eot.probability >= 0.5
    assert TurnOptions().min_delay_ms <= eot.delay_ms <= TurnOptions().min_delay_ms + 100
    assert eng.phase is TurnPhase.ENDED
    assert sc.calls[-1][-1] == {"role": "user", "content": COMPLETE}


def test_each_inference_is_reported_once_as_words_scored():
    sc = Scripted(SCORER)
    eng = engine(sc)
    ev = utter(eng, INCOMPLETE)
    ev += run_until(eng, EndOfTurn)
    # the engine asked once for these words (later ticks reuse the answer) and said so once
    (scored,) = of(ev, WordsScored)
    assert len(sc.calls) == 1
    assert (scored.probability, scored.transcript, scored.turn_id) == (0.02, INCOMPLETE, 1)
    assert scored.inference_ms >= 0.0
    assert not scored.words_pending
    assert of(ev, EndOfTurn)[0].words_probability == scored.probability


class _Model:
    """A model that opens a per-conversation stream (SupportsStream), like EndOfTurnModel."""

    def __init__(self) -> None:
        self.streams: list[Scripted] = []

    def predict(self, turns):
        raise AssertionError("the engine must score through the model's stream")

    def stream(self) -> Scripted:
        self.streams.append(Scripted(SCORER))
        return self.streams[-1]


def test_a_model_with_streams_is_scored_through_its_own_stream_per_engine():
    model = _Model()
    first, second = TurnEngine(scorer=model), TurnEngine(scorer=model)
    assert isinstance(model, SupportsStream)
    for eng in (first, second):
        ev = utter(eng, COMPLETE) + run_until(eng, EndOfTurn)
        assert of(ev, EndOfTurn)[0].reason == "semantic"
    # one stream per engine (conversation), each called only by its own engine
    assert [len(s.calls) for s in model.streams] == [1, 1]


class _Deferred:
    """A scorer answering later, as an async host's does: ScorePending until ``ready``."""

    def __init__(self, p: float) -> None:
        self.p, self.ready, self.asked = p, False, 0

    def __call__(self, turns):
        self.asked += 1
        if not self.ready:
            raise ScorePending
        return self.p


def test_a_pending_score_holds_the_decision_until_polled():
    sc = _Deferred(0.95)
    eng = engine(sc)
    ev = utter(eng, COMPLETE) + eng.push_probabilities(silence(1200))
    # not answered: no decision, no silence-only fallback (800 ms), no ScorerFailed
    assert not of(ev, EndOfTurn)
    assert not of(ev, ScorerFailed)
    assert sc.asked > 1  # asked again at each decision
    sc.ready = True
    ev = eng.poll()
    (eot,) = of(ev, EndOfTurn)
    assert (eot.reason, eot.words_probability) == ("semantic", 0.95)
    assert eot.sample == eng.sample  # decided at once, without moving the clock


def test_a_score_that_never_comes_ends_the_turn_at_max_delay():
    eng = engine(_Deferred(0.95), max_delay_ms=1500)
    ev = utter(eng, COMPLETE) + run_until(eng, EndOfTurn)
    (eot,) = of(ev, EndOfTurn)
    assert eot.reason == "max_delay"
    assert eot.words_probability is None


def test_incomplete_words_wait_and_fusion_rises_with_silence():
    eng = engine(Scripted(SCORER), max_delay_ms=3000, end_threshold=0.5, logit_scale=1.0)
    ev = utter(eng, INCOMPLETE)
    ev += run_until(eng, EndOfTurn)
    (eot,) = of(ev, EndOfTurn)
    # p = 0.02: the posterior passes 0.5 only once S_hold(t) < 0.02 / 0.98 (about 1.9 s)
    assert eot.reason == "semantic"
    assert 1500 <= eot.delay_ms <= 2600
    assert eot.probability >= 0.5 > eot.words_probability


def test_max_delay_fires_when_words_never_convince():
    eng = engine(Scripted(default=1e-6), max_delay_ms=1000)
    ev = utter(eng, "and then")
    ev += run_until(eng, EndOfTurn)
    (eot,) = of(ev, EndOfTurn)
    assert eot.reason == "max_delay"
    assert 1000 <= eot.delay_ms < 1040
    assert eot.probability is not None
    assert eot.probability < 0.5


def test_without_scorer_silence_only_fallback():
    eng = engine(None, fallback_delay_ms=640)
    ev = utter(eng, COMPLETE)
    ev += run_until(eng, EndOfTurn)
    (eot,) = of(ev, EndOfTurn)
    assert eot.reason == "silence"
    assert eot.probability is None
    assert 640 <= eot.delay_ms < 680


def test_min_delay_is_respected_even_for_certain_words():
    eng = engine(Scripted(default=0.999), min_delay_ms=600, adapt_min_delay=False)
    ev = utter(eng, COMPLETE)
    ev += run_until(eng, EndOfTurn)
    assert 600 <= of(ev, EndOfTurn)[0].delay_ms < 640


def test_interim_transcript_holds_the_decision_until_final():
    eng = engine(Scripted(SCORER))
    ev = utter(eng, None)
    ev += eng.push_transcript("table for two", final=False)
    ev += eng.push_probabilities(silence(640))
    assert not of(ev, EndOfTurn)  # interim pending
    ev = eng.push_transcript(COMPLETE, final=True)
    (eot,) = of(ev, EndOfTurn)  # decided on arrival of the final words
    assert eot.reason == "semantic"
    assert eot.transcript == COMPLETE
    # without wait_for_final an interim is scored like a final
    eng2 = engine(Scripted(SCORER), wait_for_final=False)
    utter(eng2, None)
    ev2 = eng2.push_transcript(COMPLETE, final=False)
    ev2 += run_until(eng2, EndOfTurn)
    assert of(ev2, EndOfTurn)[0].reason == "semantic"


def test_words_are_stale_until_the_recogniser_catches_up():
    """New speech after a final: the old words do not speak for it."""
    eng = engine(Scripted(SCORER), fallback_delay_ms=900, max_delay_ms=3000, min_delay_ms=200)
    utter(eng, COMPLETE)
    # the user goes on before the end of turn fired (short pause)
    ev = eng.push_probabilities(speech(640) + silence(224))
    assert of(ev, SpeechStopped)
    assert not of(ev, EndOfTurn)
    ev = eng.push_probabilities(silence(640))
    assert not of(ev, EndOfTurn)  # "... please" is stale: no semantic decision
    ev = eng.push_transcript(INCOMPLETE, final=True)
    ev += run_until(eng, EndOfTurn)
    eot = of(ev, EndOfTurn)[0]
    assert eot.transcript == f"{COMPLETE} {INCOMPLETE}"


class PendingAware:
    """A model-like scorer that can score words whose end is still being recognised."""

    supports_pending_words = True

    def __init__(self, now: float, pending: float):
        self.now, self.pending = now, pending
        self.calls: list[tuple[str, bool]] = []

    def predict(self, turns, words_pending=False):
        self.calls.append((turns[-1]["content"], words_pending))
        return self.pending if words_pending else self.now


def test_words_from_before_the_end_of_speech_are_scored_as_pending():
    """Final words pushed while the user still speaks: at the pause the recogniser has not
    delivered the last word yet, so the scorer is asked P(end after one more word)."""
    sc = PendingAware(now=0.02, pending=0.97)
    eng = engine(sc, wait_for_final=True, min_delay_ms=200, adapt_min_delay=False)
    eng.push_probabilities(silence(320) + speech(480))
    eng.push_transcript("i want to book a table for", final=True)  # mid-speech
    ev = eng.push_probabilities(speech(320) + silence(224))
    assert of(ev, SpeechStopped)
    ev += run_until(eng, EndOfTurn)
    (eot,) = of(ev, EndOfTurn)
    assert sc.calls == [("i want to book a table for", True)]
    assert eot.reason == "semantic"
    assert eot.words_pending
    assert eot.words_probability == pytest.approx(0.97)
    # the same words once the recogniser has caught up (an update after the speech end)
    sc2 = PendingAware(now=0.02, pending=0.97)
    eng2 = engine(sc2, min_delay_ms=200, adapt_min_delay=False, max_delay_ms=1500)
    eng2.push_probabilities(silence(320) + speech(800) + silence(224))
    eng2.push_transcript("i want to book a table for", final=True)
    ev2 = run_until(eng2, EndOfTurn)
    assert sc2.calls == [("i want to book a table for", False)]
    assert of(ev2, EndOfTurn)[0].reason == "max_delay"
    assert not of(ev2, EndOfTurn)[0].words_pending


def test_pending_words_scoring_can_be_turned_off_and_needs_a_capable_scorer():
    sc = PendingAware(now=0.95, pending=0.02)
    eng = engine(sc, score_pending_words=False, min_delay_ms=200, adapt_min_delay=False)
    eng.push_probabilities(silence(320) + speech(480))
    eng.push_transcript(COMPLETE, final=True)
    eng.push_probabilities(speech(320) + silence(224))
    ev = run_until(eng, EndOfTurn)
    assert sc.calls == [(COMPLETE, False)]
    assert not of(ev, EndOfTurn)[0].words_pending
    # a plain callable scorer has no pending mode: its words are scored as they are
    plain = Scripted(SCORER)
    eng2 = engine(plain, min_delay_ms=200, adapt_min_delay=False)
    eng2.push_probabilities(silence(320) + speech(480))
    eng2.push_transcript(COMPLETE, final=True)
    eng2.push_probabilities(speech(320) + silence(224))
    (eot,) = of(run_until(eng2, EndOfTurn), EndOfTurn)
    assert eot.reason == "semantic"
    assert not eot.words_pending
    with pytest.raises(InvalidOptionError, match="score_pending_words"):
        TurnOptions(score_pending_words=1)  # type: ignore[arg-type]


def test_transcript_language_unsupported_falls_back_and_logs_once(caplog):
    class Model:
        def predict(self, turns):
            return 0.99

        def supports_language(self, language):
            return language == "en"

    eng = TurnEngine(TurnOptions(fallback_delay_ms=500), scorer=Model())
    with caplog.at_level(logging.WARNING, logger="caesura.turn.engine"):
        for _ in range(2):
            utter(eng, None)
            eng.push_transcript("bonjour", final=True, language="fr")
            ev = run_until(eng, EndOfTurn)
            assert of(ev, EndOfTurn)[0].reason == "silence"
            eng.response_committed()
    assert sum("'fr'" in r.getMessage() for r in caplog.records) == 1


class Flaky:
    """Raises (or answers) by a script of outcomes; records every call's text."""

    def __init__(self, *outcomes: float | Exception):
        self.outcomes = list(outcomes)
        self.calls: list[str] = []

    def __call__(self, turns):
        self.calls.append(turns[-1]["content"])
        out = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(out, Exception):
            raise out
        return out


def test_scorer_failure_is_reported_once_and_the_turn_waits_for_max_delay(caplog):
    boom = RuntimeError("model exploded")
    sc = Flaky(boom)
    eng = engine(
        sc, min_delay_ms=400, fallback_delay_ms=500, max_delay_ms=1500, adapt_min_delay=False
    )
    (stop,) = of(utter(eng, None), SpeechStopped)
    assert eng.push_transcript(COMPLETE, final=True) == []  # < min_delay: not scored yet
    with caplog.at_level(logging.ERROR, logger="caesura.turn.engine"):
        # one chunk: the scorer fails at min_delay, the rest of the chunk goes on
        ev = eng.push_probabilities(silence(2000) + speech(400))
    kinds = [e.kind for e in ev]
    assert kinds.count("scorer_failed") == 1
    (fail,) = of(ev, ScorerFailed)
    assert fail.error is boom
    assert fail.turn_id == 1
    assert fail.transcript == COMPLETE
    assert 400 <= (fail.sample - stop.end_sample) * 1000 / SR < 440  # first asked at min_delay
    # no words evidence: neither cut at the 500 ms fallback nor retried on every window
    (eot,) = of(ev, EndOfTurn)
    assert eot.reason == "max_delay"
    assert 1500 <= eot.delay_ms < 1540
    assert eot.words_probability is None
    assert eot.probability is None
    assert eot.transcript == COMPLETE
    assert sc.calls == [COMPLETE]
    # the events after the failure in the same chunk were not lost
    (st,) = of(ev, SpeechStarted)
    assert ev.index(fail) < ev.index(eot) < ev.index(st)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert errors[0].exc_info[1] is boom


def test_scorer_failure_is_retried_on_the_next_transcript_update():
    sc = Flaky(RuntimeError("flaky"), 0.95)
    eng = engine(
        sc, min_delay_ms=200, fallback_delay_ms=500, max_delay_ms=3000, adapt_min_delay=False
    )
    utter(eng, None)
    ev = eng.push_transcript("table for", final=True)  # 224 ms of silence: scored at once
    assert [e.kind for e in ev] == ["scorer_failed"]
    ev = eng.push_probabilities(silence(640))  # past the fallback: still waiting
    assert ev == []
    assert sc.calls == ["table for"]
    ev = eng.push_transcript("two please", final=True)  # new words: asked again
    (eot,) = of(ev, EndOfTurn)
    assert not of(ev, ScorerFailed)
    assert eot.reason == "semantic"
    assert eot.words_probability == 0.95
    assert sc.calls == ["table for", "table for two please"]


@pytest.mark.parametrize(
    ("bad", "match"),
    [(float("nan"), "outside"), (1.5, "outside"), (-0.1, "outside"), ("x", "not a number")],
)
def test_bad_scorer_output_is_reported_as_a_model_error(bad, match):
    eng = engine(lambda turns: bad, min_delay_ms=200, fallback_delay_ms=400, max_delay_ms=1000)
    utter(eng, None)
    ev = eng.push_transcript(COMPLETE, final=True)  # 224 ms of silence: scored at once
    (fail,) = of(ev, ScorerFailed)
    assert isinstance(fail.error, ModelError)
    assert match in str(fail.error)
    assert not of(ev, EndOfTurn)
    ev = run_until(eng, EndOfTurn)
    assert not of(ev, ScorerFailed)  # reported once
    (eot,) = of(ev, EndOfTurn)
    assert eot.reason == "max_delay"
    assert eot.delay_ms >= 1000


def test_history_reaches_the_scorer():
    sc = Scripted(SCORER)
    eng = engine(sc)
    eng.add_agent_message("Hello, how can I help?")
    utter(eng, COMPLETE)
    run_until(eng, EndOfTurn)
    assert sc.calls[-1] == [
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "user", "content": COMPLETE},
    ]
    assert eng.history[-1] == {"role": "user", "content": COMPLETE}


def test_transcript_without_detected_speech_opens_a_turn():
    eng = engine(Scripted(SCORER))
    ev = eng.push_transcript(COMPLETE, final=True)
    ev += run_until(eng, EndOfTurn)
    assert of(ev, EndOfTurn)[0].turn_id == 1


def test_advance_lets_silence_decisions_fire_without_audio():
    eng = engine(None, fallback_delay_ms=800)
    utter(eng, COMPLETE)
    now = eng.sample
    assert eng.advance(now - 1) == []
    assert eng.advance(now) == []
    ev = eng.advance(now + SR)  # one second of silence
    assert of(ev, EndOfTurn)[0].reason == "silence"
    assert eng.sample == now + (SR // W) * W
    with pytest.raises(InvalidOptionError):
        eng.advance(1.5)  # type: ignore[arg-type]
    assert of(engine().advance_ms(100), EndOfTurn) == []


def test_flush_closes_speech_and_decides():
    eng = engine(Scripted(SCORER))
    eng.push_probabilities(speech(640))
    ev = eng.flush()
    assert [e.kind for e in ev] == ["speech_stopped", "end_of_turn"]
    assert ev[0].reason == "flush"
    assert ev[1].reason == "flush"


def test_flush_closes_external_vad_speech_too():
    eng = engine(Scripted(SCORER))
    eng.push_speech_start()
    eng.advance_ms(640)
    ev = eng.flush()
    assert [e.kind for e in ev] == ["speech_stopped", "end_of_turn"]
    assert ev[0].end_sample == eng.sample


# ----------------------------------------------------------------------------- host control


def test_commit_turn_while_paused_ends_it_now():
    eng = engine(Scripted(SCORER))
    eng.add_agent_message("Hello, how can I help?")
    utter(eng, INCOMPLETE)  # incomplete words: the engine would wait
    now = eng.sample
    ev = eng.commit_turn()
    assert [e.kind for e in ev] == ["end_of_turn"]
    (eot,) = ev
    assert eot.reason == "manual"
    assert eot.transcript == INCOMPLETE
    assert eot.turn_id == 1
    assert eot.sample == now
    assert eng.history[-1] == {"role": "user", "content": INCOMPLETE}
    assert eng.phase is TurnPhase.IDLE
    assert eng.commit_turn() == []  # nothing open any more
    # the host's decision stands: speech soon after starts a new turn, no re-opening
    ev = eng.push_probabilities(silence(320) + speech(400))
    assert not of(ev, TurnReopened)
    assert of(ev, SpeechStarted)[0].turn_id == 2
    assert eng.history[-1] == {"role": "user", "content": INCOMPLETE}


def test_commit_turn_while_speaking_stops_the_speech_first():
    eng = engine(Scripted(SCORER))
    eng.push_probabilities(silence(320) + speech(640))
    eng.push_transcript("hello there", final=False)
    assert eng.phase is TurnPhase.SPEAKING
    ev = eng.commit_turn()
    assert [e.kind for e in ev] == ["speech_stopped", "end_of_turn"]
    stop, eot = ev
    assert stop.reason == "flush"
    assert stop.start_sample == n(320) * W
    assert stop.end_sample == eng.sample
    assert eot.reason == "manual"
    assert eot.transcript == "hello there"
    # the user goes on talking: that is new speech in a new turn
    ev = eng.push_probabilities(speech(400))
    (st,) = of(ev, SpeechStarted)
    assert st.turn_id == 2
    assert st.start_sample >= stop.end_sample


def test_commit_turn_with_external_vad_and_during_barge_in():
    eng = engine(Scripted(SCORER))
    eng.push_speech_start()
    eng.advance_ms(500)
    ev = eng.commit_turn()
    assert [e.kind for e in ev] == ["speech_stopped", "end_of_turn"]
    assert ev[1].reason == "manual"
    barge = _agent_talking()
    assert of(barge.push_probabilities(speech(320)), SpeechStarted)[0].interrupt_response
    ev = barge.commit_turn()
    assert [e.kind for e in ev] == ["interruption", "speech_stopped", "end_of_turn"]
    assert ev[0].reason == "manual"
    assert ev[2].reason == "manual"
    assert ev[2].turn_id == 2


def test_commit_turn_without_an_open_turn_does_nothing():
    eng = engine(Scripted(SCORER))
    assert eng.commit_turn() == []
    eng.push_probabilities(silence(640))
    assert eng.commit_turn() == []
    _ended(eng)  # the end of turn already fired
    assert eng.phase is TurnPhase.ENDED
    assert eng.commit_turn() == []
    assert len(eng.history) == 1


def test_clear_turn_discards_the_open_turn():
    eng = engine(Scripted(SCORER), fallback_delay_ms=500, max_delay_ms=1000)
    eng.add_agent_message("Hello, how can I help?")
    history_before = eng.history
    utter(eng, INCOMPLETE)
    eng.push_transcript("for four", final=False)
    assert eng.transcript == f"{INCOMPLETE} for four"
    now, pauses = eng.sample, eng.user_pauses_s
    assert eng.clear_turn() is None
    assert eng.transcript == ""
    assert eng.phase is TurnPhase.IDLE
    assert eng.sample == now
    assert eng.user_pauses_s == pauses
    assert eng.history == history_before
    ev = eng.push_probabilities(silence(5000))  # far past max_delay
    assert ev == []
    ev = eng.push_probabilities(speech(400))
    assert not of(ev, TurnReopened)
    assert of(ev, SpeechStarted)[0].turn_id == 2


def test_clear_turn_while_speaking_drops_audio_and_fragments():
    rng = np.random.default_rng(3)
    eng = TurnEngine(TurnOptions(stitch_ms=1500, min_speech_ms=250), scorer=Scripted(SCORER))
    probs = silence(320) + speech(640)
    eng.push_probabilities(probs, rng.standard_normal(len(probs) * W).astype(np.float32))
    assert eng.phase is TurnPhase.SPEAKING
    assert eng.buffered_audio_samples > 0
    eng.clear_turn()
    assert eng.buffered_audio_samples == 0
    assert eng.phase is TurnPhase.IDLE
    # the speech goes on: it is confirmed anew, as a new turn (min_speech_ms again)
    ev = eng.push_probabilities(speech(320) + silence(224))
    (st,) = of(ev, SpeechStarted)
    assert st.turn_id == 2
    assert st.start_sample == n(320 + 640) * W
    assert [e.kind for e in ev] == ["speech_started", "speech_stopped", "flush_stt"]
    # a held short fragment is dropped too: alone, the next one does not reach min_speech
    frag = speech(128) + silence(256)
    stitched = engine(stitch_ms=1500, min_speech_ms=250)
    assert stitched.push_probabilities(silence(320) + frag) == []
    stitched.clear_turn()
    assert of(stitched.push_probabilities(frag), SpeechStarted) == []
    kept = engine(stitch_ms=1500, min_speech_ms=250)
    kept.push_probabilities(silence(320) + frag)
    assert of(kept.push_probabilities(frag), SpeechStarted)  # without the clear: stitched


# ----------------------------------------------------------------------------- re-opening


def _ended(eng: TurnEngine):
    ev = utter(eng, COMPLETE)
    if not of(ev, EndOfTurn):
        ev += run_until(eng, EndOfTurn)
    assert of(ev, EndOfTurn)
    return ev


def test_speculative_reopen_within_window_after_response_started():
    eng = engine(Scripted(SCORER), speculative_reopen_ms=1500)
    _ended(eng)
    eng.response_started()
    ev = eng.push_probabilities(silence(320) + speech(320))
    (ro,) = of(ev, TurnReopened)
    (st,) = of(ev, SpeechStarted)
    assert ro.turn_id == st.turn_id == 1
    assert ro.pause_ms > 0
    assert eng.history == []  # the reopened turn's text is out of the history again


def test_no_reopen_after_window_or_commit():
    eng = engine(Scripted(SCORER), speculative_reopen_ms=500)
    _ended(eng)
    eng.response_started()
    ev = eng.push_probabilities(silence(800) + speech(400))
    assert not of(ev, TurnReopened)
    assert of(ev, SpeechStarted)[0].turn_id == 2
    eng2 = engine(Scripted(SCORER))
    _ended(eng2)
    eng2.response_committed()
    ev = eng2.push_probabilities(speech(400))
    assert not of(ev, TurnReopened)
    assert of(ev, SpeechStarted)[0].turn_id == 2


def test_unanswered_turn_stays_reopenable_longer():
    eng = engine(Scripted(SCORER), speculative_reopen_ms=500, unanswered_reopen_ms=7000)
    _ended(eng)
    ev = eng.push_probabilities(silence(4000) + speech(400))
    assert of(ev, TurnReopened)
    eng2 = engine(Scripted(SCORER), speculative_reopen_ms=500, unanswered_reopen_ms=3000)
    _ended(eng2)
    ev = eng2.push_probabilities(silence(4000) + speech(400))
    assert not of(ev, TurnReopened)


def test_continuation_needs_only_the_lower_bar():
    opts = dict(min_speech_ms=384, min_speech_continuation_ms=192)
    fresh = engine(Scripted(SCORER), **opts)
    assert (
        of(fresh.push_probabilities(silence(320) + speech(224) + silence(400)), SpeechStarted) == []
    )
    paused = engine(Scripted(SCORER), **opts)
    utter(paused, INCOMPLETE)  # the turn is open (incomplete words)
    ev = paused.push_probabilities(speech(224))
    assert of(ev, SpeechStarted)
    assert not of(ev, TurnReopened)
    ended = engine(Scripted(SCORER), **opts)
    _ended(ended)
    ev = ended.push_probabilities(speech(224))
    assert of(ev, TurnReopened)
    assert of(ev, SpeechStarted)
    # off (0): the full bar everywhere
    off = engine(Scripted(SCORER), min_speech_ms=384, min_speech_continuation_ms=0)
    utter(off, INCOMPLETE)
    assert of(off.push_probabilities(speech(224) + silence(300)), SpeechStarted) == []


# ----------------------------------------------------------------------------- barge-in


def _agent_talking(**opts) -> TurnEngine:
    eng = engine(Scripted(SCORER), **opts)
    _ended(eng)
    eng.response_committed()
    eng.set_agent_speaking(True)
    return eng


def test_barge_in_flag_and_interruption_by_words():
    eng = _agent_talking()
    ev = eng.push_probabilities(speech(320))
    (st,) = of(ev, SpeechStarted)
    assert st.interrupt_response is True
    assert st.turn_id == 2
    ev = eng.push_transcript("wait, stop", final=False)
    (it,) = of(ev, Interruption)
    assert it.reason == "words"
    assert it.transcript == "wait, stop"
    # the interruption is a real turn: it ends like one
    eng.set_agent_speaking(False)
    ev = eng.push_probabilities(silence(224))
    ev += eng.push_transcript("wait, stop", final=True)
    ev += run_until(eng, EndOfTurn)
    assert of(ev, EndOfTurn)[0].turn_id == 2


@pytest.mark.parametrize("word", ["uh-huh", "yeah", "right", "mm-hmm okay"])
def test_backchannel_while_agent_speaks_is_not_an_interruption(word):
    eng = _agent_talking()
    ev = eng.push_probabilities(speech(320))
    ev += eng.push_transcript(word, final=True)
    ev += eng.push_probabilities(silence(224))
    (bc,) = of(ev, Backchannel)
    assert bc.transcript == word
    assert not of(ev, Interruption)
    ev = eng.push_probabilities(silence(3000))
    ev += eng.push_transcript(word, final=True)  # a late repeat of its words changes nothing
    ev += eng.push_probabilities(silence(3000))
    assert not of(ev, EndOfTurn)  # a backchannel opens no turn
    assert eng.phase is TurnPhase.IDLE


def test_long_overlap_is_an_interruption_whatever_the_words():
    eng = _agent_talking(backchannel_max_ms=1000)
    ev = eng.push_probabilities(speech(1500))
    (it,) = of(ev, Interruption)
    assert it.reason == "duration"
    assert (it.sample - of(ev, SpeechStarted)[0].start_sample) * 1000 / SR >= 1000


def test_short_wordless_overlap_becomes_a_backchannel_after_waiting():
    eng = _agent_talking(backchannel_wait_ms=600)
    ev = eng.push_probabilities(speech(320) + silence(224))
    assert not of(ev, Backchannel)
    ev = eng.push_probabilities(silence(640))
    (bc,) = of(ev, Backchannel)
    assert bc.transcript == ""


def test_barge_in_needs_the_full_min_speech_bar():
    eng = _agent_talking(min_speech_ms=384, min_speech_continuation_ms=150)
    assert of(eng.push_probabilities(speech(224) + silence(400)), SpeechStarted) == []


# ----------------------------------------------------------------------------- adaptation


def _pauser(pause_ms: float, scorer=None) -> TurnEngine:
    eng = engine(scorer or Scripted(SCORER), fallback_delay_ms=3000, max_delay_ms=3000)
    eng.push_probabilities(silence(320))
    for _ in range(20):
        eng.push_probabilities(speech(480) + silence(pause_ms))
    return eng


def test_min_delay_adapts_to_the_users_pause_habit():
    base = TurnOptions().min_delay_ms
    slow = _pauser(1500)
    assert len(slow.user_pauses_s) == 19  # between 20 utterances
    assert slow.user_pauses_s[0] == pytest.approx(1.5, abs=0.04)
    assert slow.current_min_delay_ms() > 1.5 * base
    fast = _pauser(256)
    assert fast.current_min_delay_ms() < base
    # a long hangover hides short pauses: typical pauses above it are no reason to adapt
    hang = engine(Scripted(SCORER), min_silence_ms=550, fallback_delay_ms=3000)
    hang.push_probabilities((speech(480) + silence(700)) * 10)
    assert hang.current_min_delay_ms() < 1.3 * base
    off = engine(Scripted(SCORER), adapt_min_delay=False, fallback_delay_ms=3000)
    off.push_probabilities((speech(480) + silence(1500)) * 5)
    assert off.current_min_delay_ms() == base


def test_slow_pauser_is_cut_off_less():
    """After learning a user's long pauses, the same incomplete words wait longer."""
    fresh = engine(Scripted(default=0.3))
    utter(fresh, "so i was thinking")
    d_fresh = of(run_until(fresh, EndOfTurn), EndOfTurn)[0].delay_ms
    slow = _pauser(1500, Scripted(default=0.3))  # same score for the same words
    slow.push_probabilities(speech(480) + silence(224))
    slow.push_transcript("so i was thinking", final=True)
    d_slow = of(run_until(slow, EndOfTurn), EndOfTurn)[0].delay_ms
    assert d_slow > d_fresh + 200


# ----------------------------------------------------------------------------- inputs


def test_chunking_does_not_change_events():
    rng = np.random.default_rng(7)
    probs = np.clip(rng.random(800) ** 3 * 1.4, 0, 1)  # bursty speech-like probabilities
    audio = rng.standard_normal(probs.size * W).astype(np.float32)
    opts = TurnOptions(stitch_ms=600, progressive_interval_ms=300)

    def run(splits):
        eng = TurnEngine(opts, scorer=Scripted(default=0.7))
        out = []
        for a, b in itertools.pairwise(splits):
            out += eng.push_probabilities(probs[a:b], audio[a * W : b * W])
        return [
            (type(e).__name__, e.sample, getattr(e, "turn_id", None), getattr(e, "reason", None))
            for e in out
        ]

    whole = run([0, probs.size])
    cuts = sorted({0, probs.size, *rng.integers(1, probs.size, 60).tolist()})
    assert run(cuts) == whole
    assert any(k == "SpeechStarted" for k, *_ in whole)


def test_bad_inputs_are_clear_errors():
    eng = engine()
    with pytest.raises(InvalidAudioError):
        eng.push_probabilities([0.5, 1.5])
    with pytest.raises(InvalidAudioError):
        eng.push_probabilities([float("nan")])
    with pytest.raises(InvalidAudioError):
        eng.push_probabilities([0.5], np.zeros(100, dtype=np.float32))
    with pytest.raises(InvalidOptionError, match="push_audio needs a VAD"):
        eng.push_audio(np.zeros(512, dtype=np.float32))
    with pytest.raises(InvalidOptionError):
        eng.push_transcript(b"bytes", final=True)  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError):
        TurnEngine(scorer=42)  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError):
        TurnEngine(sample_rate=44100)
    with pytest.raises(InvalidOptionError, match="SileroVAD"):
        TurnEngine(vad=object())  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError):
        TurnEngine(options={"min_speech_ms": 100})  # type: ignore[arg-type]


def test_reset_forgets_everything():
    eng = _pauser(1500)
    eng.reset()
    assert eng.sample == 0
    assert eng.turn_id == 0
    assert eng.user_pauses_s == []
    assert eng.phase is TurnPhase.IDLE
    assert eng.history == []


def test_update_options_reaches_the_live_engine():
    eng = engine(None, fallback_delay_ms=2000)
    utter(eng, COMPLETE)
    eng.update_options(eng.options.replace(fallback_delay_ms=400))
    ev = run_until(eng, EndOfTurn)
    assert of(ev, EndOfTurn)[0].delay_ms < 500


def test_events_are_frozen():
    eng = engine()
    st = of(eng.push_probabilities(speech(320)), SpeechStarted)[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.turn_id = 5  # type: ignore[misc]
    assert st.time_s == st.sample / SR
    assert st.start_s == st.start_sample / SR


# ----------------------------------------------------------------------------- external VAD


def test_external_vad_decisions_drive_the_same_turn_logic():
    eng = engine(Scripted(SCORER))
    eng.advance_ms(320)
    ev = eng.push_speech_start()
    (st,) = of(ev, SpeechStarted)
    assert st.turn_id == 1
    assert st.start_sample == eng.sample
    assert st.audio is None
    assert eng.push_speech_start() == []  # already speaking
    eng.advance_ms(1000)
    speech_end = eng.sample
    eng.advance_ms(200)  # the host decided after a 200 ms hangover
    ev = eng.push_speech_end(end_sample=speech_end)
    (stop,) = of(ev, SpeechStopped)
    assert stop.end_sample == speech_end
    assert of(ev, FlushSTT)
    ev = eng.push_transcript(INCOMPLETE, final=True)
    ev += eng.advance_ms(640)
    assert not of(ev, EndOfTurn)
    ev = eng.push_speech_start()  # the user goes on: same turn, pause recorded
    assert of(ev, SpeechStarted)[0].turn_id == 1
    assert eng.user_pauses_s[-1] == pytest.approx(0.2 + 0.64, abs=0.04)
    eng.advance_ms(500)
    eng.push_speech_end()
    ev = eng.push_transcript(COMPLETE, final=True)
    ev += eng.advance_ms(500)
    (eot,) = of(ev, EndOfTurn)
    assert eot.reason == "semantic"
    assert eot.transcript == f"{INCOMPLETE} {COMPLETE}"
    with pytest.raises(InvalidOptionError):
        eng.push_speech_start(start_sample=eng.sample + 1)


def test_audio_memory_stays_bounded():
    rng = np.random.default_rng(5)
    eng = TurnEngine(TurnOptions(pre_roll_ms=300, stitch_ms=500))
    peak_idle = 0
    for _ in range(20):  # 20 x (2 s of speech + 3 s of silence), with audio
        probs = speech(2000) + silence(3000)
        audio = rng.standard_normal(len(probs) * W).astype(np.float32)
        for i in range(len(probs)):
            eng.push_probabilities(probs[i : i + 1], audio[i * W : (i + 1) * W])
            if eng.phase is not TurnPhase.SPEAKING:
                peak_idle = max(peak_idle, eng.buffered_audio_samples)
    # idle: pre-roll + a pending segment + stitching window, never the whole history
    assert 0 < peak_idle < SR * 3
    assert eng.buffered_audio_samples < SR * 3
