"""A transcript-aware Pipecat user-turn stop strategy driven by caesura's turn engine.

:class:`CaesuraTurnStopStrategy` is a thin adapter around :class:`caesura.turn.TurnEngine`:

* frame conversion -- ``InputAudioRawFrame`` audio is scored by the shared Silero model
  (batched with every other stream in the process) and fed to the engine as per-window
  probabilities; ``TranscriptionFrame`` / ``InterimTranscriptionFrame`` become final / interim
  transcript updates; ``BotStarted/StoppedSpeakingFrame`` the agent's state;
  ``LLMContextAssistantTurnFrame`` the agent's words in the history the model sees;
* event mapping -- the engine's ``EndOfTurn`` becomes ``trigger_user_turn_stopped()``, each
  ``WordsScored`` (one model inference) a ``MetricsFrame`` with ``TurnMetricsData``, each
  ``ScorerFailed`` a non-fatal ``ErrorFrame`` upstream (the turn then ends at ``max_delay``);
* async boundary -- every engine call (Silero windows, model inference) runs on one worker
  thread per strategy, off the event loop, in frame order; when audio stops arriving (a muted
  microphone, or a pipeline that carries only VAD and transcription frames) a clock task
  from ``self.task_manager`` lets wall time pass on the engine's sample clock
  (:meth:`~caesura.turn.TurnEngine.advance`), and Pipecat's VAD frames become the engine's
  external speech start / end (:meth:`~caesura.turn.TurnEngine.push_speech_start`).

The model is the process-wide ``EndOfTurnModel.load()``; the engine scores it through its
own ``stream()`` (only the words that are new are computed at each decision).

All decisions (thresholds, delays, fusion of the model's probability with the silence elapsed,
interim transcripts holding the decision) are the engine's. The adapter adds only Pipecat's
own guards: the turn never ends while Pipecat's VAD reports the user speaking, and -- like
Pipecat's stop strategies -- not before some transcript exists (``wait_for_transcript``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    LLMContextAssistantTurnFrame,
    MetricsFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import TurnMetricsData
from pipecat.processors.frame_processor import FrameDirection, FrameProcessorSetup
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_stop import BaseUserTurnStopStrategy

from caesura.audio import pcm16_bytes_to_float32
from caesura.errors import InvalidOptionError, ModelError
from caesura.turn import (
    Backchannel,
    EndOfTurn,
    ScorerFailed,
    SpeechStarted,
    TurnEngine,
    TurnEvent,
    TurnOptions,
    TurnPhase,
    WordsScored,
)
from caesura.vad import SileroVAD, VADStream
from pipecat_caesura.vad import SharedVADBatcher

__all__ = ["CaesuraTurnStopStrategy", "TurnDecision"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How often the clock task looks at the audio stream (seconds).
_CLOCK_TICK_S = 0.05
#: Audio is considered stopped when no frame arrived for this long (seconds): longer than
#: a transport's jitter, so that wall time is never counted twice (by the clock and by the
#: audio that was only late).
_AUDIO_GAP_S = 0.4


@dataclass(frozen=True)
class TurnDecision:
    """One end-of-turn model inference: P(end | words) and what it cost."""

    probability: float
    inference_ms: float
    text: str


def _load_default_model() -> Any:
    try:
        # lazily: the model (onnxruntime session + tokenizer) loads only when it is used
        from caesura.eot import EndOfTurnModel  # noqa: PLC0415
    except ImportError as exc:
        raise ModelError(
            "caesura's end-of-turn model (caesura.eot.EndOfTurnModel) is not available in "
            f"this installation ({exc}); reinstall caesura, or pass scorer=..."
        ) from exc
    return EndOfTurnModel.load()


def _language_code(language: Any) -> str | None:
    if language is None:
        return None
    value = getattr(language, "value", language)
    return str(value) if value else None


class CaesuraTurnStopStrategy(BaseUserTurnStopStrategy):
    """Ends the user's turn when caesura's turn engine says they are done.

    Pass it to Pipecat's user aggregator::

        LLMUserAggregatorParams(
            vad_analyzer=CaesuraVADAnalyzer(),
            user_turn_strategies=UserTurnStrategies(stop=[CaesuraTurnStopStrategy()]),
        )

    The end-of-turn model scores the user's words (with the recent conversation) as soon as a
    final transcript arrives; the engine fuses that probability with the silence elapsed and
    ends the turn once it reaches ``threshold``, never before ``min_delay`` nor after
    ``max_delay`` seconds of silence. A complete sentence ends the turn quickly; "I want to
    book a table for" waits. Interim transcripts hold the decision until the final one.

    Args:
        threshold: fused P(end) needed to end the turn (engine ``end_threshold``).
        min_delay: seconds of silence before any decision (engine ``min_delay_ms``; the
            engine adapts it to the user's own pauses unless ``options.adapt_min_delay`` is
            off).
        max_delay: seconds of silence after which the turn ends whatever the words say.
        scorer: P(end | words): ``None`` for caesura's bundled end-of-turn model
            (``caesura.eot.EndOfTurnModel.load()``), or any object with
            ``predict(turns) -> float`` or a callable ``turns -> float`` (``turns`` is a chat
            history ``[{"role": "user"|"assistant", "content": str}, ...]``).
        options: further :class:`caesura.turn.TurnOptions` (speech detection bars, fallback
            delay, re-opening, ...); ``threshold`` / ``min_delay`` / ``max_delay`` override
            its fields when given.
        vad: the :class:`caesura.vad.SileroVAD` scoring the audio (default: the shared one).
        wait_for_transcript: require some transcript before ending the turn, as Pipecat's
            own stop strategies do (Pipecat's realtime mode turns this off).
    """

    def __init__(
        self,
        *,
        threshold: float | None = None,
        min_delay: float | None = None,
        max_delay: float | None = None,
        scorer: Any = None,
        options: TurnOptions | None = None,
        vad: SileroVAD | None = None,
        wait_for_transcript: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if options is not None and not isinstance(options, TurnOptions):
            raise InvalidOptionError(
                f"options must be a caesura.turn.TurnOptions, got {type(options).__name__}"
            )
        if vad is not None and not isinstance(vad, SileroVAD):
            raise InvalidOptionError(
                f"vad must be a caesura.vad.SileroVAD, got {type(vad).__name__}"
            )
        self._options = _merge_options(options or TurnOptions(), threshold, min_delay, max_delay)
        model = scorer if scorer is not None else _load_default_model()
        if not (callable(model) or callable(getattr(model, "predict", None))):
            raise InvalidOptionError(
                "scorer must be an object with predict(turns) or a callable turns -> float"
            )
        self._model = model
        self._vad = vad if vad is not None else SileroVAD.load()
        self._batcher = SharedVADBatcher.for_model(self._vad)
        self._wait_for_transcript = bool(wait_for_transcript)
        self._model_name = type(model).__name__ if scorer is not None else "caesura-eot"

        self._worker: ThreadPoolExecutor | None = None
        self._engine: TurnEngine | None = None
        self._stream: VADStream | None = None
        self._input_rate = 0
        self._engine_lock = threading.Lock()  # engine calls are serialised on the worker

        # loop-side state
        self._vad_user_speaking = False
        self._pending: EndOfTurn | Backchannel | None = None
        self._has_final_text = False
        self._phase = TurnPhase.IDLE
        self._last_audio = 0.0  # monotonic time of the latest audio frame
        self._anchor: tuple[float, int] | None = None  # (monotonic, engine sample)
        self._clock_task: asyncio.Task[None] | None = None
        self._last_decision: TurnDecision | None = None
        self._last_end_of_turn: EndOfTurn | None = None
        self._external_speech = False  # speech started by Pipecat's VAD while no audio flows

    # ================================================================== properties
    @property
    def threshold(self) -> float:
        """Fused P(end) needed to end the turn."""
        return self._options.end_threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._set_options(_merge_options(self._options, value, None, None))

    @property
    def min_delay(self) -> float:
        """Seconds of silence before the turn may end (before adaptation to the user)."""
        return self._options.min_delay_ms / 1000.0

    @min_delay.setter
    def min_delay(self, value: float) -> None:
        self._set_options(_merge_options(self._options, None, value, None))

    @property
    def max_delay(self) -> float:
        """Seconds of silence after which the turn ends whatever the words say."""
        return self._options.max_delay_ms / 1000.0

    @max_delay.setter
    def max_delay(self, value: float) -> None:
        self._set_options(_merge_options(self._options, None, None, value))

    @property
    def options(self) -> TurnOptions:
        """The engine's options in force."""
        return self._options

    @property
    def wait_for_transcript(self) -> bool:
        """Whether some transcript is required before the turn ends."""
        return self._wait_for_transcript

    @wait_for_transcript.setter
    def wait_for_transcript(self, value: bool) -> None:
        self._wait_for_transcript = bool(value)

    @property
    def scorer(self) -> Any:
        """The end-of-turn model (or scorer) in use."""
        return self._model

    @property
    def last_decision(self) -> TurnDecision | None:
        """The latest end-of-turn model inference."""
        return self._last_decision

    @property
    def last_end_of_turn(self) -> EndOfTurn | None:
        """The engine's latest end-of-turn decision (reason, delay, probability, transcript)."""
        return self._last_end_of_turn

    @property
    def engine(self) -> TurnEngine | None:
        """The turn engine (created at setup); call it only through this strategy."""
        return self._engine

    def _set_options(self, options: TurnOptions) -> None:
        with self._engine_lock:
            self._options = options
            if self._engine is not None:
                self._engine.update_options(options)

    # ================================================================== worker thread
    @property
    def _executor(self) -> ThreadPoolExecutor:
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="caesura-turn")
        return self._worker

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _ensure_engine(self, input_rate: int) -> TurnEngine:
        """The engine and VAD stream for ``input_rate`` (rebuilt when the rate changes)."""
        if self._engine is None or self._stream is None or input_rate != self._input_rate:
            model_rate = self._vad.model_rate_for(input_rate)
            if self._engine is None or self._engine.sample_rate != model_rate:
                self._engine = TurnEngine(self._options, scorer=self._model, sample_rate=model_rate)
            self._stream = self._vad.stream(input_rate)
            self._input_rate = input_rate
        return self._engine

    def _sync(
        self, fn: Callable[[TurnEngine], list[TurnEvent]]
    ) -> tuple[list[TurnEvent], TurnPhase, int]:
        with self._engine_lock:
            engine = self._ensure_engine(self._input_rate or 16000)
            events = fn(engine)
            return events, engine.phase, engine.sample

    def _sync_audio(
        self, audio: npt.NDArray[np.float32], rate: int
    ) -> tuple[list[TurnEvent], TurnPhase, int]:
        with self._engine_lock:
            engine = self._ensure_engine(rate)
            assert self._stream is not None
            events: list[TurnEvent] = []
            if self._external_speech:
                # audio is back: the speech Pipecat's VAD reported ends here, the engine's
                # own VAD takes over
                self._external_speech = False
                events += engine.push_speech_end()
            probs = self._batcher.score(self._stream, audio)
            if probs.size:
                events += engine.push_probabilities(probs)
            return events, engine.phase, engine.sample

    async def _run(self, fn: Callable[[TurnEngine], list[TurnEvent]]) -> None:
        events, phase, _ = await self._call(self._sync, fn)
        self._phase = phase
        await self._handle(events)

    # ================================================================== Pipecat hooks
    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override]
        """Set up the strategy: the engine is created for the pipeline's input rate."""
        await super().setup(setup)
        rate = int(setup.audio_in_sample_rate)
        await self._call(self._setup_sync, rate)

    def _setup_sync(self, rate: int) -> None:
        with self._engine_lock:
            self._ensure_engine(rate)

    async def cleanup(self) -> None:
        """Stop the clock task and the worker thread; the strategy can be set up again."""
        await super().cleanup()  # type: ignore[no-untyped-call]
        await self._stop_clock()
        if self._worker is not None:
            self._worker.shutdown(wait=False)
            self._worker = None
        self._pending = None
        self._last_audio = 0.0

    async def handle_user_turn_started(self) -> None:
        """Pipecat opened a user turn. A decision the engine already made stays pending: it
        is dropped when the engine hears new speech, and fires once Pipecat's VAD is quiet."""
        await super().handle_user_turn_started()  # type: ignore[no-untyped-call]

    async def handle_user_turn_stopped(self) -> None:
        """The turn ended (by us, another strategy or Pipecat's stop timeout): close the
        engine's turn too, so that it cannot fire late for it, and commit the response."""
        await super().handle_user_turn_stopped()  # type: ignore[no-untyped-call]
        self._pending = None
        self._has_final_text = False
        if self._engine is not None:
            await self._call(self._close_turn_sync)

    def _close_turn_sync(self) -> None:
        with self._engine_lock:
            engine = self._engine
            if engine is None:
                return
            if engine.phase in (TurnPhase.SPEAKING, TurnPhase.PAUSED):
                engine.flush()
            self._external_speech = False
            engine.response_committed()
            self._phase = engine.phase

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        """Feed the frame to the engine; end the turn when it decides so. Always CONTINUE."""
        await super().process_frame(frame)
        if isinstance(frame, InputAudioRawFrame):
            await self._handle_audio(frame)
        elif isinstance(frame, TranscriptionFrame):
            if frame.text.strip():
                self._has_final_text = True
            text, lang = frame.text, _language_code(frame.language)
            await self._run(lambda e: e.push_transcript(text, final=True, language=lang))
            await self._maybe_trigger()
        elif isinstance(frame, InterimTranscriptionFrame):
            text, lang = frame.text, _language_code(frame.language)
            await self._run(lambda e: e.push_transcript(text, final=False, language=lang))
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._vad_user_speaking = True
            self._ensure_clock()
            if not self._audio_seen:
                await self._external_speech_edge(True)
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._vad_user_speaking = False
            self._ensure_clock()
            if self._external_speech:
                await self._external_speech_edge(False, float(frame.stop_secs or 0.0))
            await self._maybe_trigger()
        elif isinstance(frame, BotStartedSpeakingFrame):
            await self._run(lambda e: e.set_agent_speaking(True))
        elif isinstance(frame, BotStoppedSpeakingFrame):
            await self._run(lambda e: e.set_agent_speaking(False))
        elif isinstance(frame, LLMContextAssistantTurnFrame):
            text = frame.text

            def add(e: TurnEngine) -> list[TurnEvent]:
                e.add_agent_message(text)
                return []

            await self._run(add)
        elif isinstance(frame, (EndFrame, CancelFrame)):
            await self._stop_clock()
        return ProcessFrameResult.CONTINUE

    # ================================================================== audio and clock
    async def _handle_audio(self, frame: InputAudioRawFrame) -> None:
        # the frame's arrival, not the end of its processing (which a busy worker delays)
        self._last_audio = time.monotonic()
        audio = pcm16_bytes_to_float32(frame.audio)
        if frame.num_channels > 1:
            audio = audio.reshape(-1, frame.num_channels).mean(axis=1).astype(np.float32)
        events, phase, sample = await self._call(self._sync_audio, audio, int(frame.sample_rate))
        self._anchor = (time.monotonic(), sample)
        self._phase = phase
        await self._handle(events)
        self._ensure_clock()

    @property
    def _audio_seen(self) -> bool:
        """Whether audio reached the engine in this run (else Pipecat's VAD frames are
        the engine's speech signal: a pipeline that carries no audio to the aggregator)."""
        return self._last_audio > 0.0

    def _clock_target(self) -> int | None:
        """The engine sample that wall time has reached since the last audio (or None)."""
        if self._engine is None or self._anchor is None:
            return None
        t0, s0 = self._anchor
        return s0 + int((time.monotonic() - t0) * self._engine.sample_rate)

    async def _external_speech_edge(self, speaking: bool, stop_secs: float = 0.0) -> None:
        """Pipecat's VAD heard speech start (or end, ``stop_secs`` ago: its hangover) while no
        audio reaches the engine: the engine's external speech start / end, after letting
        wall time pass on its clock."""
        target = self._clock_target()

        def edge(e: TurnEngine, t: int | None = target) -> list[TurnEvent]:
            events = e.advance(t) if t is not None else []
            if speaking and e.phase is not TurnPhase.SPEAKING:
                self._external_speech = True
                events += e.push_speech_start()
            elif not speaking and self._external_speech:
                self._external_speech = False
                events += e.push_speech_end(max(0, e.sample - int(stop_secs * e.sample_rate)))
            return events

        await self._run(edge)

    def _ensure_clock(self) -> None:
        if self._clock_task is None and self._task_manager is not None:
            self._clock_task = self.task_manager.create_task(
                self._clock_loop(), f"{self}::_clock_loop"
            )

    async def _stop_clock(self) -> None:
        if self._clock_task is not None:
            task, self._clock_task = self._clock_task, None
            await self.task_manager.cancel_task(task)

    async def _clock_loop(self) -> None:
        """While no audio arrives, let wall time pass on the engine's clock (as silence: the
        speech Pipecat's VAD reports reaches the engine as its external start / end)."""
        try:
            while True:
                await asyncio.sleep(_CLOCK_TICK_S)
                now = time.monotonic()
                if now - self._last_audio < _AUDIO_GAP_S:
                    continue
                active = self._vad_user_speaking or self._phase in (
                    TurnPhase.SPEAKING,
                    TurnPhase.PAUSED,
                )
                if not active or self._engine is None:
                    self._anchor = None
                    continue
                if self._anchor is None:
                    self._anchor = (now, self._engine.sample)
                    continue
                if (
                    not self._audio_seen
                    and self._vad_user_speaking
                    and self._phase is not TurnPhase.SPEAKING
                ):
                    await self._external_speech_edge(True)
                    continue
                target = self._clock_target()
                if target is None:
                    continue

                def step(e: TurnEngine, t: int = target) -> list[TurnEvent]:
                    return e.advance(t)

                await self._run(step)
                await self._maybe_trigger()
        except asyncio.CancelledError:
            raise

    # ================================================================== events
    async def _handle(self, events: list[TurnEvent]) -> None:
        for ev in events:
            if isinstance(ev, ScorerFailed):
                # the engine logged it and lets this turn end at max_delay; the pipeline
                # hears of it once, as a non-fatal error
                exc = ev.error
                await self.push_frame(
                    ErrorFrame(
                        error=f"{self}: end-of-turn inference failed: {exc}",
                        exception=exc if isinstance(exc, Exception) else None,
                    ),
                    FrameDirection.UPSTREAM,
                )
            elif isinstance(ev, WordsScored):
                d = TurnDecision(ev.probability, ev.inference_ms, ev.transcript)
                self._last_decision = d
                await self.push_frame(
                    MetricsFrame(
                        data=[
                            TurnMetricsData(
                                processor=self.name,
                                model=self._model_name,
                                is_complete=d.probability >= self._options.end_threshold,
                                probability=d.probability,
                                e2e_processing_time_ms=d.inference_ms,
                            )
                        ]
                    )
                )
            elif isinstance(ev, SpeechStarted):
                self._pending = None  # the user went on: that decision is stale
            elif isinstance(ev, EndOfTurn):
                logger.debug(
                    "end of turn %d (%s) after %.0f ms: p=%s words_p=%s %r",
                    ev.turn_id,
                    ev.reason,
                    ev.delay_ms,
                    ev.probability,
                    ev.words_probability,
                    ev.transcript,
                )
                self._pending = ev
                self._last_end_of_turn = ev
            elif isinstance(ev, Backchannel):
                # The engine heard only "uh-huh" / "yeah" over the agent: no user turn for
                # it. Pipecat's start strategy may have opened (and interrupted) one already;
                # close it now rather than leave it to the aggregator's stop timeout.
                logger.debug("backchannel %r: closing any open Pipecat turn", ev.transcript)
                self._pending = ev
        if self._pending is not None:
            await self._maybe_trigger()

    async def _maybe_trigger(self) -> None:
        """End the turn for the engine's decision unless Pipecat's VAD says the user is
        speaking, the engine hears speech, or (``wait_for_transcript``) no transcript exists.
        Like Pipecat's own stop strategies, this does not wait for the controller to have
        called :meth:`handle_user_turn_started` (words without a VAD onset end too)."""
        ev = self._pending
        if ev is None:
            return
        if self._vad_user_speaking or self._phase is TurnPhase.SPEAKING:
            return
        if self._wait_for_transcript and not (ev.transcript.strip() or self._has_final_text):
            return
        self._pending = None
        await self.trigger_user_turn_stopped()


def _merge_options(
    options: TurnOptions,
    threshold: float | None,
    min_delay: float | None,
    max_delay: float | None,
) -> TurnOptions:
    changes: dict[str, float] = {}
    if threshold is not None:
        changes["end_threshold"] = threshold
    for name, value in (("min_delay_ms", min_delay), ("max_delay_ms", max_delay)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidOptionError(f"{name[:-3]} must be a number of seconds, got {value!r}")
        changes[name] = float(value) * 1000.0
    if not changes:
        return options
    return options.replace(**changes)
