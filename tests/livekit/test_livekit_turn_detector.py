"""caesura.TurnDetector against the real livekit-agents turn-detector protocol."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading

import pytest
from livekit.agents import llm
from lk_harness import LanguageCode, eot_model_or_skip

from caesura.eot import EotStreamPool
from livekit.plugins import caesura
from livekit.plugins.caesura.turn_detector import chat_ctx_turns

COMPLETE = "Can you book me a table for two at seven tonight?"
INCOMPLETE = "I want to book a table for"


@pytest.fixture(scope="module")
def detector():
    return caesura.TurnDetector(model=eot_model_or_skip())


def ctx(*turns: tuple[str, str]) -> llm.ChatContext:
    c = llm.ChatContext.empty()
    c.add_message(role="system", content="You are a restaurant booking assistant.")
    for role, text in turns:
        c.add_message(role=role, content=text)
    return c


def test_protocol_shape_without_a_stream_attribute():
    cls = caesura.TurnDetector
    # a `stream` attribute would make LiveKit treat it as an audio (streaming) detector
    assert not hasattr(cls, "stream")
    for name in ("unlikely_threshold", "supports_language", "predict_end_of_turn"):
        assert inspect.iscoroutinefunction(getattr(cls, name)), name
    params = inspect.signature(cls.predict_end_of_turn).parameters
    assert params["timeout"].kind is inspect.Parameter.KEYWORD_ONLY
    assert isinstance(cls.model, property)
    assert isinstance(cls.provider, property)


def test_chat_ctx_turns_reads_the_last_user_and_assistant_turns():
    c = ctx(
        ("user", "hi"),
        ("assistant", "Hello! How can I help?"),
        ("user", "I'd like"),
        ("user", "a table"),
    )
    c.add_message(role="assistant", content="")  # empty: skipped
    c.add_message(role="user", content="for two")
    assert chat_ctx_turns(c) == [
        ("user", "hi"),
        ("agent", "Hello! How can I help?"),
        ("user", "I'd like a table for two"),
    ]
    assert chat_ctx_turns(c, max_turns=1) == [("user", "I'd like a table for two")]
    assert chat_ctx_turns(llm.ChatContext.empty()) == []


def test_is_a_text_detector_for_the_session(detector):
    turn = pytest.importorskip("livekit.agents.voice.turn", reason="livekit-agents < 1.5")
    if hasattr(turn, "_StreamingTurnDetector"):
        assert not isinstance(detector, turn._StreamingTurnDetector)
    assert detector.model
    assert detector.provider == "caesura"


def test_complete_vs_incomplete_sentence(detector):
    async def main():
        lang = LanguageCode("en-US")
        assert await detector.supports_language(lang)
        threshold = await detector.unlikely_threshold(lang)
        p_done = await detector.predict_end_of_turn(ctx(("user", COMPLETE)))
        p_more = await detector.predict_end_of_turn(ctx(("user", INCOMPLETE)))
        return threshold, p_done, p_more

    threshold, p_done, p_more = asyncio.run(main())
    assert threshold is not None
    assert 0.0 < threshold < 1.0
    assert p_more < threshold <= p_done, (p_more, threshold, p_done)


def test_same_probability_as_the_core_model(detector):
    turns = [("agent", "What can I do for you?"), ("user", INCOMPLETE)]
    c = llm.ChatContext.empty()
    c.add_message(role="assistant", content=turns[0][1])
    c.add_message(role="user", content=turns[1][1])
    p = asyncio.run(detector.predict_end_of_turn(c))
    core_turns = [{"role": role, "content": text} for role, text in turns]
    assert p == pytest.approx(detector.core_model.predict(core_turns), abs=1e-6)


def test_unknown_and_unsupported_languages_are_logged_once(caplog):
    det = caesura.TurnDetector(model=eot_model_or_skip())

    async def main():
        out = []
        for lang in (None, LanguageCode("en-US"), None, LanguageCode("")):
            out.append(await det.supports_language(lang))
        out.append(await det.unlikely_threshold(None))
        for lang in ("multi", "multi", "xx", "xx"):
            out.append(await det.supports_language(LanguageCode(lang)))
        out.append(await det.unlikely_threshold(LanguageCode("multi")))
        return out

    with caplog.at_level(logging.INFO, logger="livekit.plugins.caesura"):
        out = asyncio.run(main())
    # no language from the STT: the core model assumes its language, said once in the log
    assert out[:4] == [True, True, True, True]
    assert out[4] == det.core_model.unlikely_threshold(None)
    assert caplog.text.count("reports no language") == 1
    # "multi" and unknown languages: not supported (the session uses min_delay), one
    # warning per language, naming it
    assert out[5:] == [False, False, False, False, None]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "'multi'" in warnings[0]
    assert "'xx'" in warnings[1]


def test_threshold_override_and_validation():
    model = eot_model_or_skip()
    det = caesura.TurnDetector(model=model, unlikely_threshold=0.2)
    assert asyncio.run(det.unlikely_threshold(LanguageCode("en"))) == 0.2
    with pytest.raises(ValueError, match="unlikely_threshold"):
        caesura.TurnDetector(model=model, unlikely_threshold=1.5)


def test_timeout(detector):
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(detector.predict_end_of_turn(ctx(("user", COMPLETE)), timeout=0))


def test_prediction_runs_off_the_event_loop(detector, monkeypatch):
    # the detector scores through a stream pool of the core model (shared by its sessions)
    threads: set[str] = set()
    original = EotStreamPool.predict

    def spy(self, turns, **kwargs):
        assert self.model is detector.core_model
        threads.add(threading.current_thread().name)
        return original(self, turns, **kwargs)

    monkeypatch.setattr(EotStreamPool, "predict", spy)
    asyncio.run(detector.predict_end_of_turn(ctx(("user", COMPLETE))))
    assert len(threads) == 1
    assert next(iter(threads)).startswith("caesura-eot")


def test_sessions_sharing_a_detector_compute_only_their_new_words():
    """One detector (made in prewarm) serves every session of a worker: interleaved
    predictions of two conversations each find their own cached start again."""
    model = eot_model_or_skip()
    det = caesura.TurnDetector(model=model)
    sessions = [
        [("assistant", "Welcome to Harbour Kitchen, how can I help you today?")],
        [("assistant", "Thanks for calling the airport taxi line. Where are you headed?")],
    ]
    words = ["I", "would", "like", "to", "book", "a", "table", "for", "two"]
    computed = []
    for n in range(1, len(words) + 1):
        for history in sessions:
            before = det._streams.stats
            p = asyncio.run(det.predict_end_of_turn(ctx(*history, ("user", " ".join(words[:n])))))
            assert 0.0 <= p <= 1.0
            after = det._streams.stats
            computed.append(after["computed_tokens"] - before["computed_tokens"])
    assert det._streams.stats["streams"] == 2
    assert max(computed[2:]) <= 3  # after each session's first call: its new word only
