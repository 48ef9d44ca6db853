"""CaesuraTurnStopStrategy in a real LLMUserAggregator driven by pipecat's run_test.

Audio is real speech (tests/fixtures/speech_16k.wav) paced at real time, as a transport
delivers it, so that Pipecat's system frames (audio, VAD) and data frames (transcripts)
interleave the way they do in production. Each scenario runs once with the lexical scorer
(core code, always available) and once with caesura's end-of-turn model when it is installed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest
from _pipecat_support import chunks, load_pcm, silence
from pipecat.clocks.system_clock import SystemClock
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    MetricsFrame,
    TranscriptionFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import TurnMetricsData
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMUserAggregator,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.tests.utils import SleepFrame, run_test
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_stop import BaseUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.utils.asyncio.task_manager import TaskManager
from pipecat_caesura import CaesuraTurnStopStrategy, CaesuraVADAnalyzer

from caesura.errors import InvalidOptionError, ModelError
from caesura.turn import TurnOptions, lexical_end_probability

try:  # lands in the core later; the model-backed cases skip until it does
    from caesura.eot import EndOfTurnModel  # type: ignore[attr-defined]

    EOT_IMPORT_ERROR = ""
except ImportError as _exc:
    EndOfTurnModel = None
    EOT_IMPORT_ERROR = str(_exc)

RATE = 16000
COMPLETE = "I want to book a table for two at seven tonight."
INCOMPLETE = "I want to book a table for"


def _eot_model() -> object:
    if EndOfTurnModel is None:
        pytest.skip(f"caesura's end-of-turn model is not in this build yet ({EOT_IMPORT_ERROR})")
    try:
        return EndOfTurnModel.load()
    except (ModelError, FileNotFoundError) as exc:
        pytest.skip(f"caesura's end-of-turn model is not installed yet ({exc})")


@pytest.fixture(params=["lexical", "model"])
def scorer(request: pytest.FixtureRequest) -> object:
    if request.param == "lexical":
        return lexical_end_probability
    return _eot_model()


def audio(pcm: bytes, *, pace: bool = True) -> list[Frame]:
    """20 ms InputAudioRawFrames, each followed by a 20 ms SleepFrame (real time)."""
    out: list[Frame] = []
    for c in chunks(pcm, RATE):
        out.append(InputAudioRawFrame(audio=c, sample_rate=RATE, num_channels=1))
        if pace:
            out.append(SleepFrame(sleep=0.02))
    return out


def speech(seconds: float = 2.0) -> bytes:
    """The first utterance of the fixture (speech from 0 to ~2.05 s)."""
    return load_pcm("speech_16k.wav", RATE)[: int(seconds * RATE) * 2]


def final(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text=text, user_id="user", timestamp="t", finalized=True)


def interim(text: str) -> InterimTranscriptionFrame:
    return InterimTranscriptionFrame(text=text, user_id="user", timestamp="t")


@dataclass
class Run:
    down: list[Frame]
    up: list[Frame] = field(default_factory=list)
    stops: list[dict[str, object]] = field(default_factory=list)

    def of(self, kind: type) -> list[Frame]:
        return [f for f in self.down if isinstance(f, kind)]

    @property
    def turn_metrics(self) -> list[TurnMetricsData]:
        return [d for f in self.of(MetricsFrame) for d in f.data if isinstance(d, TurnMetricsData)]


def run_pipeline(
    strategy: BaseUserTurnStopStrategy,
    frames: list[Frame],
    *,
    vad: CaesuraVADAnalyzer | None = None,
    with_vad: bool = True,
) -> Run:
    aggregator = LLMUserAggregator(
        LLMContext(),
        params=LLMUserAggregatorParams(
            vad_analyzer=(vad or CaesuraVADAnalyzer()) if with_vad else None,
            user_turn_strategies=UserTurnStrategies(stop=[strategy]),
        ),
    )
    result = Run(down=[])

    @aggregator.event_handler("on_user_turn_stopped")
    async def _stopped(_agg: object, stopper: object, message: object) -> None:
        engine = getattr(strategy, "engine", None)
        result.stops.append(
            {
                "strategy": stopper,
                "content": getattr(message, "content", None),
                "engine_s": engine.time_s if engine is not None else None,
                "wall": time.monotonic(),
            }
        )

    down, up = asyncio.run(
        run_test(
            aggregator,
            frames_to_send=frames,
            pipeline_params=PipelineParams(audio_in_sample_rate=RATE),
        )
    )
    result.down = list(down)
    result.up = list(up)
    return result


# ------------------------------------------------------------------------------------------
# decisions
# ------------------------------------------------------------------------------------------


def test_complete_transcript_ends_the_turn_quickly(scorer: object) -> None:
    strategy = CaesuraTurnStopStrategy(scorer=scorer)
    frames = [*audio(speech() + silence(0.3, RATE)), final(COMPLETE), *audio(silence(3.5, RATE))]
    run = run_pipeline(strategy, frames)

    assert len(run.of(UserStoppedSpeakingFrame)) == 1
    assert len(run.stops) == 1
    assert run.stops[0]["strategy"] is strategy
    assert run.stops[0]["content"] == COMPLETE
    eot = strategy.last_end_of_turn
    assert eot is not None
    assert eot.reason == "semantic"
    assert eot.transcript == COMPLETE
    # speech ends at 2.0 s; the final transcript lands ~0.3 s later and ends the turn then
    assert eot.delay_ms < 800, eot
    # Pipecat-style metrics: one TurnMetricsData per model inference
    metrics = run.turn_metrics
    assert metrics, "no TurnMetricsData pushed"
    m = metrics[-1]
    assert m.processor == strategy.name
    assert isinstance(m.probability, float)
    assert 0.0 <= m.probability <= 1.0
    assert m.e2e_processing_time_ms >= 0.0
    assert strategy.last_decision is not None
    assert strategy.last_decision.text == COMPLETE


def test_incomplete_transcript_waits(scorer: object) -> None:
    complete = CaesuraTurnStopStrategy(scorer=scorer)
    run_pipeline(
        complete,
        [*audio(speech() + silence(0.3, RATE)), final(COMPLETE), *audio(silence(3.5, RATE))],
    )
    incomplete = CaesuraTurnStopStrategy(scorer=scorer)
    run = run_pipeline(
        incomplete,
        [*audio(speech() + silence(0.3, RATE)), final(INCOMPLETE), *audio(silence(3.5, RATE))],
    )
    assert len(run.stops) == 1
    assert run.stops[0]["content"] == INCOMPLETE
    fast, slow = complete.last_end_of_turn, incomplete.last_end_of_turn
    assert fast is not None
    assert slow is not None
    # "for" invites more words: the same silence is not enough to end the turn
    assert slow.delay_ms >= 800, slow
    assert slow.delay_ms >= fast.delay_ms + 400, (fast, slow)
    assert slow.delay_ms <= incomplete.max_delay * 1000 + 100
    assert slow.words_probability is not None
    assert fast.words_probability is not None
    assert slow.words_probability < fast.words_probability


def test_words_finalised_before_the_speech_ends_are_scored_as_pending() -> None:
    """A final transcript that lands while the user still speaks lacks the last words: at
    the pause the bundled model is asked P(end after one more word)."""
    model = _eot_model()
    strategy = CaesuraTurnStopStrategy(scorer=model)
    pcm = speech() + silence(0.3, RATE)
    mid = int(1.0 * RATE) * 2  # 1 s into the 2 s utterance
    frames = [*audio(pcm[:mid]), final(INCOMPLETE), *audio(pcm[mid:] + silence(3.5, RATE))]
    run_pipeline(strategy, frames)
    eot = strategy.last_end_of_turn
    assert eot is not None
    assert eot.words_pending, eot
    want = model.predict([{"role": "user", "content": INCOMPLETE}], words_pending=True)
    assert eot.words_probability == pytest.approx(want, abs=1e-6)
    assert eot.words_probability != pytest.approx(
        model.predict([{"role": "user", "content": INCOMPLETE}]), abs=1e-3
    )


def test_interim_transcripts_hold_the_decision(scorer: object) -> None:
    """A complete-looking interim does not end the turn; the final does, at once."""
    strategy = CaesuraTurnStopStrategy(scorer=scorer, max_delay=3.0)
    frames = [
        *audio(speech() + silence(0.3, RATE)),
        interim(COMPLETE),
        *audio(silence(1.5, RATE)),
        final(COMPLETE),
        *audio(silence(1.0, RATE)),
    ]
    run = run_pipeline(strategy, frames)
    assert len(run.stops) == 1
    eot = strategy.last_end_of_turn
    assert eot is not None
    assert eot.transcript == COMPLETE
    # nothing fired during the 1.8 s of silence while only the interim was known
    assert eot.delay_ms >= 1600, eot
    assert eot.reason == "semantic"
    assert eot.delay_ms < 2800, eot


def test_never_fires_while_pipecat_vad_says_the_user_speaks() -> None:
    """Pipecat-style frames without audio: the decision waits for VAD's stop, and the clock
    task (self.task_manager) lets time pass on the engine's sample clock."""
    strategy = CaesuraTurnStopStrategy(scorer=lexical_end_probability)
    t0 = time.monotonic()
    frames = [
        VADUserStartedSpeakingFrame(start_secs=0.2),
        SleepFrame(sleep=0.5),
        final(COMPLETE),
        SleepFrame(sleep=1.0),
        VADUserStoppedSpeakingFrame(stop_secs=0.2),
        SleepFrame(sleep=1.0),
    ]
    run = run_pipeline(strategy, frames, with_vad=False)
    assert len(run.stops) == 1
    waited = float(run.stops[0]["wall"]) - t0  # type: ignore[arg-type]
    assert waited >= 1.5, waited  # not before VAD reported the stop
    assert run.stops[0]["content"] == COMPLETE
    assert strategy.last_end_of_turn is not None


def test_never_fires_during_speech_with_audio() -> None:
    """A complete final transcript that arrives mid-speech waits for the speech to end."""
    strategy = CaesuraTurnStopStrategy(scorer=lexical_end_probability)
    pcm = speech()
    frames = [
        *audio(pcm[: RATE * 2]),  # 1 s of speech
        final(COMPLETE),
        *audio(pcm[RATE * 2 :] + silence(2.0, RATE)),
    ]
    run = run_pipeline(strategy, frames)
    assert len(run.stops) == 1
    assert float(run.stops[0]["engine_s"]) >= 2.0  # type: ignore[arg-type]
    eot = strategy.last_end_of_turn
    assert eot is not None
    assert eot.time_s >= 2.0


def test_wait_for_transcript() -> None:
    """Like Pipecat's strategies, no transcript means no turn end (the aggregator's stop
    timeout handles that); Pipecat's realtime mode turns the requirement off."""
    frames = [
        VADUserStartedSpeakingFrame(start_secs=0.2),
        SleepFrame(sleep=0.6),
        VADUserStoppedSpeakingFrame(stop_secs=0.2),
        SleepFrame(sleep=1.5),
    ]
    waiting = CaesuraTurnStopStrategy(scorer=lexical_end_probability)
    assert waiting.wait_for_transcript
    assert run_pipeline(waiting, list(frames), with_vad=False).stops == []

    realtime = CaesuraTurnStopStrategy(scorer=lexical_end_probability, wait_for_transcript=False)
    run = run_pipeline(realtime, list(frames), with_vad=False)
    assert len(run.stops) == 1
    eot = realtime.last_end_of_turn
    assert eot is not None
    assert eot.reason == "silence"


def test_backchannel_over_the_bot_closes_the_turn_promptly() -> None:
    """ "Yeah" while the bot speaks: Pipecat's VAD start strategy opens a turn; the engine
    calls it a backchannel (no end-of-turn decision) and the strategy closes the turn at
    once instead of leaving it to the aggregator's 5 s stop timeout."""
    strategy = CaesuraTurnStopStrategy(scorer=lexical_end_probability)
    frames = [
        BotStartedSpeakingFrame(),
        *audio(speech(0.6) + silence(0.3, RATE)),
        final("yeah"),
        *audio(silence(2.0, RATE)),
    ]
    run = run_pipeline(strategy, frames)
    assert len(run.stops) == 1
    assert run.stops[0]["content"] == "yeah"
    assert strategy.last_end_of_turn is None  # not an end of turn: a backchannel
    assert float(run.stops[0]["engine_s"]) < 0.6 + 1.2  # type: ignore[arg-type]


def test_real_interruption_is_a_turn() -> None:
    strategy = CaesuraTurnStopStrategy(scorer=lexical_end_probability)
    frames = [
        BotStartedSpeakingFrame(),
        *audio(speech(1.0)),
        BotStoppedSpeakingFrame(),  # Pipecat stops the bot on the interruption
        *audio(speech()[RATE * 2 :] + silence(0.3, RATE)),
        final("Wait, stop, I meant Thursday."),
        *audio(silence(2.0, RATE)),
    ]
    run = run_pipeline(strategy, frames)
    assert len(run.stops) == 1
    eot = strategy.last_end_of_turn
    assert eot is not None
    assert eot.reason == "semantic"
    assert eot.transcript == "Wait, stop, I meant Thursday."


def test_a_failing_scorer_is_reported_and_never_cuts_the_user_off() -> None:
    """A user-supplied scorer that raises: one ErrorFrame upstream, and the turn still ends,
    at max_delay (the conservative outcome), instead of the pipeline stalling."""
    calls = []

    def broken(turns: object) -> float:
        calls.append(turns)
        raise RuntimeError("scorer exploded")

    strategy = CaesuraTurnStopStrategy(scorer=broken, max_delay=1.2)
    frames = [
        *audio(speech() + silence(0.3, RATE)),
        final(COMPLETE),
        *audio(silence(1.5, RATE)),
    ]
    run = run_pipeline(strategy, frames)
    assert calls
    errors = [f for f in run.up if isinstance(f, ErrorFrame)]
    assert len(errors) == 1
    assert "scorer exploded" in errors[0].error
    assert len(run.stops) == 1
    eot = strategy.last_end_of_turn
    assert eot is not None
    assert eot.reason == "max_delay"
    assert run.turn_metrics == []  # no fake metrics for a failed inference


def _drive(strategy: CaesuraTurnStopStrategy, frames: list[Frame]) -> list[object]:
    """Frames straight into the strategy, with no controller (so no handle_user_turn_started
    ever), as Pipecat's own stop strategies allow; returns its on_user_turn_stopped calls."""
    stops: list[object] = []

    async def main() -> None:
        async def stopped(_strategy: object, *args: object) -> None:
            stops.append(args)

        strategy.add_event_handler("on_user_turn_stopped", stopped)
        setup = FrameProcessorSetup(
            clock=SystemClock(),
            task_manager=TaskManager(loop=asyncio.get_running_loop()),
            pipeline_worker=None,  # type: ignore[arg-type]
            audio_in_sample_rate=RATE,
        )
        await strategy.setup(setup)
        for f in frames:
            if isinstance(f, SleepFrame):
                await asyncio.sleep(f.sleep)
            else:
                await strategy.process_frame(f)
        await strategy.cleanup()

    asyncio.run(main())
    return stops


def test_hello_then_silence_ends_without_a_started_turn() -> None:
    strategy = CaesuraTurnStopStrategy(scorer=lexical_end_probability, max_delay=1.5)
    frames = [*audio(speech() + silence(0.3, RATE)), final("Hello!"), *audio(silence(2.0, RATE))]
    assert len(_drive(strategy, frames)) == 1
    eot = strategy.last_end_of_turn
    assert eot is not None
    assert eot.transcript == "Hello!"
    assert eot.delay_ms <= 1500


def test_without_audio_pipecat_vad_frames_drive_the_engine_and_max_delay_holds() -> None:
    """A pipeline that carries only VAD and transcription frames: Pipecat's VAD start / stop
    become the engine's external speech start / end, wall time its clock, and the turn ends
    at max_delay at the latest even when the words never convince."""
    strategy = CaesuraTurnStopStrategy(scorer=lambda turns: 0.0, max_delay=1.0)
    frames: list[Frame] = [
        VADUserStartedSpeakingFrame(),
        SleepFrame(0.6),
        final(INCOMPLETE),
        VADUserStoppedSpeakingFrame(stop_secs=0.2),
        SleepFrame(1.6),
    ]
    t0 = time.monotonic()
    assert len(_drive(strategy, frames)) == 1
    eot = strategy.last_end_of_turn
    assert eot is not None
    assert eot.reason == "max_delay"
    assert eot.transcript == INCOMPLETE
    assert time.monotonic() - t0 < 3.0
    assert strategy.engine is not None
    assert strategy.engine.user_pauses_s == []


@pytest.mark.parametrize("rate", [8000, 48000])
def test_other_input_rates(rate: int) -> None:
    """8 kHz runs the engine on the 8 kHz model; 48 kHz is resampled to 16 kHz."""
    pcm = load_pcm("speech_16k.wav", rate)[: 2 * rate * 2] + silence(0.3, rate)
    tail = silence(2.0, rate)

    def paced(data: bytes) -> list[Frame]:
        out: list[Frame] = []
        for c in chunks(data, rate):
            out += [InputAudioRawFrame(audio=c, sample_rate=rate, num_channels=1), SleepFrame(0.02)]
        return out

    strategy = CaesuraTurnStopStrategy(scorer=lexical_end_probability)
    aggregator = LLMUserAggregator(
        LLMContext(),
        params=LLMUserAggregatorParams(
            vad_analyzer=CaesuraVADAnalyzer(),
            user_turn_strategies=UserTurnStrategies(stop=[strategy]),
        ),
    )
    down, _ = asyncio.run(
        run_test(
            aggregator,
            frames_to_send=[*paced(pcm), final(COMPLETE), *paced(tail)],
            pipeline_params=PipelineParams(audio_in_sample_rate=rate),
        )
    )
    assert len([f for f in down if isinstance(f, UserStoppedSpeakingFrame)]) == 1
    assert strategy.engine is not None
    assert strategy.engine.sample_rate == (8000 if rate == 8000 else 16000)
    eot = strategy.last_end_of_turn
    assert eot is not None
    assert eot.reason == "semantic"
    assert eot.delay_ms < 800


# ------------------------------------------------------------------------------------------
# lifecycle and API
# ------------------------------------------------------------------------------------------


def test_cleanup_and_reuse() -> None:
    """The same strategy and VAD analyzer run two pipelines one after the other (Pipecat
    cleans them up at the end of each) and decide both turns the same way."""
    strategy = CaesuraTurnStopStrategy(scorer=lexical_end_probability)
    vad = CaesuraVADAnalyzer()
    results = []
    for text in (COMPLETE, COMPLETE):
        frames = [*audio(speech() + silence(0.3, RATE)), final(text), *audio(silence(2.0, RATE))]
        run = run_pipeline(strategy, frames, vad=vad)
        eot = strategy.last_end_of_turn
        assert eot is not None
        results.append((len(run.stops), eot.reason, run.stops[0]["content"]))
    assert results[0] == results[1] == (1, "semantic", COMPLETE)


def test_process_frame_returns_continue_and_options() -> None:
    strategy = CaesuraTurnStopStrategy(
        scorer=lexical_end_probability, threshold=0.6, min_delay=0.3, max_delay=2.5
    )
    assert isinstance(strategy, BaseUserTurnStopStrategy)
    assert (strategy.threshold, strategy.min_delay, strategy.max_delay) == (0.6, 0.3, 2.5)
    opts = strategy.options
    assert (opts.end_threshold, opts.min_delay_ms, opts.max_delay_ms) == (0.6, 300.0, 2500.0)
    strategy.max_delay = 4.0
    strategy.threshold = 0.7
    assert strategy.options.max_delay_ms == 4000.0
    assert strategy.options.end_threshold == 0.7
    assert strategy.options.min_delay_ms == 300.0  # others untouched

    base = TurnOptions(fallback_delay_ms=500.0)
    merged = CaesuraTurnStopStrategy(scorer=lexical_end_probability, options=base, min_delay=0.1)
    assert merged.options.fallback_delay_ms == 500.0
    assert merged.options.min_delay_ms == 100.0

    async def one_frame() -> ProcessFrameResult:
        return await strategy.process_frame(VADUserStartedSpeakingFrame())

    assert asyncio.run(one_frame()) is ProcessFrameResult.CONTINUE


def test_clear_errors() -> None:
    with pytest.raises(InvalidOptionError, match="max_delay"):
        CaesuraTurnStopStrategy(scorer=lexical_end_probability, min_delay=2.0, max_delay=1.0)
    with pytest.raises(InvalidOptionError, match="end_threshold"):
        CaesuraTurnStopStrategy(scorer=lexical_end_probability, threshold=1.5)
    with pytest.raises(InvalidOptionError, match="seconds"):
        CaesuraTurnStopStrategy(scorer=lexical_end_probability, min_delay="fast")  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match="scorer"):
        CaesuraTurnStopStrategy(scorer=42)
    with pytest.raises(InvalidOptionError, match="TurnOptions"):
        CaesuraTurnStopStrategy(scorer=lexical_end_probability, options={"min_delay_ms": 1})  # type: ignore[arg-type]


def test_default_scorer_is_the_bundled_model() -> None:
    if EndOfTurnModel is None:
        with pytest.raises(ModelError, match="end-of-turn model"):
            CaesuraTurnStopStrategy()
        return
    model = _eot_model()
    strategy = CaesuraTurnStopStrategy()
    assert type(strategy.scorer) is type(model)
