"""A Pipecat pipeline using caesura for both questions: is the user speaking, and are they done?

    pip install . ./plugins/pipecat  # from a clone; once released: pip install pipecat-caesura
    python examples/pipecat_bot.py                                   # offline demo
    python examples/pipecat_bot.py --wav tests/fixtures/speech_16k.wav --lexical \\
        --say "I want to book a table for" --say "two people at eight please."

The user aggregator gets ``CaesuraVADAnalyzer`` (Silero VAD through caesura) and
``CaesuraTurnStopStrategy`` (caesura's turn engine + end-of-turn model over the transcript).

The offline demo needs no keys and no network: a WAV file is played into the pipeline in real
time, and ``ScriptedSTT`` -- a stand-in for a streaming STT service, clearly not one -- emits
the ``--say`` texts as final transcripts when the VAD reports the end of each utterance, as a
real STT does after it is finalised. The printout shows VAD events, the end-of-turn model's
probability and cost (Pipecat ``TurnMetricsData``), and when each user turn ends.

For a real bot, put the two caesura objects in the same place of any Pipecat pipeline (see
``build_user_aggregator`` and ``build_voice_bot`` below): transport input -> STT -> user
aggregator -> LLM -> TTS -> transport output -> assistant aggregator.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    LLMContextFrame,
    MetricsFrame,
    StartFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import TurnMetricsData
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMAssistantAggregator,
    LLMUserAggregator,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner
from pipecat_caesura import CaesuraTurnStopStrategy, CaesuraVADAnalyzer

from caesura.audio import read_audio, resample
from caesura.turn import lexical_end_probability

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WAV = ROOT / "tests" / "fixtures" / "speech_16k.wav"
DEFAULT_SAY = [
    "Hi, I'd like to book a table for",
    "four people tomorrow at eight.",
    "Is there a terrace?",
    "Great, thanks, that's all.",
]


def build_user_aggregator(context: LLMContext, *, scorer: Any = None) -> LLMUserAggregator:
    """Pipecat's user aggregator with caesura's VAD and end-of-turn strategy."""
    return LLMUserAggregator(
        context,
        params=LLMUserAggregatorParams(
            vad_analyzer=CaesuraVADAnalyzer(),
            user_turn_strategies=UserTurnStrategies(
                stop=[CaesuraTurnStopStrategy(scorer=scorer, min_delay=0.2, max_delay=3.0)]
            ),
        ),
    )


def build_voice_bot(transport: Any, stt: Any, llm: Any, tts: Any) -> Pipeline:
    """The usual cascade with caesura in the user aggregator (any Pipecat services)::

    from pipecat.services.deepgram.stt import DeepgramSTTService
    from pipecat.services.openai.llm import OpenAILLMService
    from pipecat.services.cartesia.tts import CartesiaTTSService
    pipeline = build_voice_bot(transport, DeepgramSTTService(...), OpenAILLMService(...),
                               CartesiaTTSService(...))
    """
    context = LLMContext()
    return Pipeline(
        [
            transport.input(),
            stt,
            build_user_aggregator(context),
            llm,
            tts,
            transport.output(),
            LLMAssistantAggregator(context),
        ]
    )


class WavSource(FrameProcessor):
    """Plays a WAV file into the pipeline in real time as 20 ms ``InputAudioRawFrame``s."""

    def __init__(self, path: Path, sample_rate: int, *, tail_s: float = 2.0) -> None:
        super().__init__()
        audio, sr = read_audio(path)
        if sr != sample_rate:
            audio = resample(audio, sr, sample_rate)
        audio = np.concatenate([audio, np.zeros(int(tail_s * sample_rate), np.float32)])
        self._pcm = (np.clip(audio, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes()
        self._rate = sample_rate
        self.finished = asyncio.Event()

    async def play(self) -> None:
        step = self._rate // 50 * 2
        start = time.monotonic()
        for k, i in enumerate(range(0, len(self._pcm), step)):
            frame = InputAudioRawFrame(
                audio=self._pcm[i : i + step], sample_rate=self._rate, num_channels=1
            )
            await self.push_frame(frame)
            await asyncio.sleep(max(0.0, start + (k + 1) * 0.02 - time.monotonic()))
        self.finished.set()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class ScriptedSTT(FrameProcessor):
    """Stand-in for an STT service (demo only): emits the next scripted text as a final
    transcript ``latency_s`` after the VAD reports that the user stopped speaking."""

    def __init__(self, texts: list[str], *, latency_s: float = 0.15) -> None:
        super().__init__()
        self._texts = deque(texts)
        self._latency = latency_s

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStoppedSpeakingFrame) and direction is FrameDirection.UPSTREAM:
            if self._texts:
                text = self._texts.popleft()
                self.create_task(self._emit(text))
            return
        await self.push_frame(frame, direction)

    async def _emit(self, text: str) -> None:
        await asyncio.sleep(self._latency)
        await self.push_frame(
            TranscriptionFrame(text=text, user_id="user", timestamp="", finalized=True)
        )


class TurnPrinter(FrameProcessor):
    """Prints what the user aggregator decides, with the time since start."""

    def __init__(self) -> None:
        super().__init__()
        self._t0 = time.monotonic()

    def _say(self, what: str) -> None:
        print(f"{time.monotonic() - self._t0:7.2f}s  {what}", flush=True)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self._t0 = time.monotonic()
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._say("VAD: user started speaking")
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._say("VAD: user stopped speaking")
        elif isinstance(frame, UserStartedSpeakingFrame):
            self._say("turn: user turn started")
        elif isinstance(frame, MetricsFrame):
            for d in frame.data:
                if isinstance(d, TurnMetricsData):
                    self._say(
                        f"end-of-turn scorer: P(end | words)={d.probability:.2f} "
                        f"({'complete' if d.is_complete else 'incomplete'}), "
                        f"{d.e2e_processing_time_ms:.1f} ms"
                    )
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._say("turn: USER TURN ENDED -> the bot may answer")
        elif isinstance(frame, LLMContextFrame):
            messages = frame.context.get_messages()
            if messages:
                self._say(f"LLM would now answer: {messages[-1].get('content')!r}")
        await self.push_frame(frame, direction)


async def run_demo(wav: Path, texts: list[str], *, lexical: bool) -> None:
    rate = 16000
    source = WavSource(wav, rate)
    scorer = lexical_end_probability if lexical else None
    pipeline = Pipeline(
        [
            source,
            ScriptedSTT(texts),
            build_user_aggregator(LLMContext(), scorer=scorer),
            TurnPrinter(),
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=rate, enable_metrics=True),
        cancel_on_idle_timeout=False,
    )

    @worker.event_handler("on_pipeline_started")
    async def _started(_worker: Any, _frame: Frame) -> None:
        async def play_then_end() -> None:
            await source.play()
            await worker.queue_frame(EndFrame())

        asyncio.get_running_loop().create_task(play_then_end())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wav", type=Path, default=DEFAULT_WAV, help="speech to play (any rate)")
    parser.add_argument("--say", action="append", help="transcript of each utterance, in order")
    parser.add_argument(
        "--lexical",
        action="store_true",
        help="use the last-word heuristic instead of the end-of-turn model",
    )
    args = parser.parse_args(argv)
    logger.remove()  # Pipecat logs at DEBUG by default
    logger.add(sys.stderr, level="WARNING")
    asyncio.run(run_demo(args.wav, args.say or DEFAULT_SAY, lexical=args.lexical))
    return 0


if __name__ == "__main__":
    sys.exit(main())
