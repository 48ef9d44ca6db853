"""A drop-in Pipecat ``VADAnalyzer`` running Silero VAD v6.2 through caesura's core.

One :class:`caesura.vad.SileroVAD` is loaded per process and shared by every analyzer (every
pipeline, every call); each analyzer owns only a :class:`caesura.vad.VADStream` (LSTM state,
64-sample context, resampler). Windows that several analyzers submit at the same time are
scored in one batched inference by the core's :class:`caesura.vad.VADBatcher` (one inference
thread per model; ``SharedVADBatcher`` here), which is bit-identical to scoring them one by one
and cheaper per window. Analyzers do not attach their streams, so a window that arrives alone is
scored at once: the batcher never waits for company.

Pipecat's own state machine (``VADAnalyzer.analyze_audio`` with ``VADParams`` confidence,
start/stop seconds and min volume) is used unchanged; this class only answers
``num_frames_required()`` and ``voice_confidence(buffer)``.

One difference from Pipecat's ``SileroVADAnalyzer`` (1.14) is deliberate and can be turned off:
Pipecat resets the model's recurrent state about every 2 s of audio, at the first quiet moment
(VAD quiet and 5 windows in a row under 0.1); this analyzer keeps one stream state for the
whole call, as silero-vad and the rest of caesura do. The confidences then differ after each
such reset (by up to 0.95 on the AMI fixture, see ``benchmarks/plugin_differences.py``).
``CaesuraVADAnalyzer(reset_when_quiet=True)`` resets exactly as Pipecat does, and then gives
Pipecat's confidences.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState

from caesura.audio import pcm16_bytes_to_float32
from caesura.errors import InvalidOptionError
from caesura.vad import WINDOW_SIZES, SileroVAD, VADBatcher, VADStream

__all__ = [
    "RESET_INTERVAL_S",
    "RESET_LOW_WINDOWS",
    "RESET_MAX_CONFIDENCE",
    "CaesuraVADAnalyzer",
    "SharedVADBatcher",
]

logger = logging.getLogger(__name__)

#: ``reset_when_quiet``: Pipecat 1.14 ``SileroVADAnalyzer``'s rule, the same numbers. A reset is
#: due after this much audio since the last one ...
RESET_INTERVAL_S = 2.0
#: ... and happens at the first window, while the VAD is quiet, that ends a run of this many
#: windows scoring below ``RESET_MAX_CONFIDENCE``.
RESET_LOW_WINDOWS = 5
RESET_MAX_CONFIDENCE = 0.1


SharedVADBatcher = VADBatcher
"""The core's :class:`caesura.vad.VADBatcher`, under the name this package has always used.

``SharedVADBatcher.for_model(model)`` is the process-wide batcher of ``model`` (the same object
``VADBatcher.for_model(model)`` returns), and ``score(stream, audio)`` blocks the calling
(executor) thread until the batch holding its window has run.
"""


class CaesuraVADAnalyzer(VADAnalyzer):
    """Silero VAD v6.2 for Pipecat, through caesura's core.

    Use it wherever Pipecat takes a ``VADAnalyzer``::

        LLMUserAggregatorParams(vad_analyzer=CaesuraVADAnalyzer())
        VADProcessor(vad_analyzer=CaesuraVADAnalyzer(params=VADParams(stop_secs=0.2)))

    Sample rates: 16 kHz and 8 kHz run natively on 32 ms windows (512 / 256 samples); any other
    input rate (24 kHz, 44.1 kHz, 48 kHz, ...) is resampled to 16 kHz inside the stream with an
    anti-aliased streaming resampler, and ``num_frames_required()`` is 32 ms at the input rate.

    The analyzer may be cleaned up and used again (Pipecat cleans up and re-applies processors
    when strategies change): the worker thread and the stream are recreated on next use.

    Args:
        sample_rate: fixed input rate, or ``None`` to take the pipeline's input rate.
        params: Pipecat ``VADParams`` (confidence, start_secs, stop_secs, min_volume).
        model: a loaded :class:`caesura.vad.SileroVAD`; default ``SileroVAD.load()``, the
            process-wide shared instance.
        reset_when_quiet: reset the model state as Pipecat's ``SileroVADAnalyzer`` does (every
            ``RESET_INTERVAL_S`` of audio, at the first quiet moment); default ``False``: one
            state for the whole stream (see the module docstring for the measured difference).
    """

    def __init__(
        self,
        *,
        sample_rate: int | None = None,
        params: VADParams | None = None,
        model: SileroVAD | None = None,
        reset_when_quiet: bool = False,
    ) -> None:
        self._worker: ThreadPoolExecutor | None = None
        self._reset_when_quiet = bool(reset_when_quiet)
        self._windows_since_reset = 0
        self._low_windows = 0
        super().__init__(sample_rate=sample_rate, params=params)
        if model is not None and not isinstance(model, SileroVAD):
            raise InvalidOptionError(
                f"model must be a caesura.vad.SileroVAD, got {type(model).__name__}"
            )
        self._model = model if model is not None else SileroVAD.load()
        # held for the analyzer's lifetime: the shared batcher lives while some analyzer does
        self._batcher = SharedVADBatcher.for_model(self._model)
        self._stream: VADStream | None = None
        self._last_confidence = 0.0
        if sample_rate is not None:
            # fail early on a rate the model cannot take
            self._model.model_rate_for(sample_rate)
        logger.debug("CaesuraVADAnalyzer using %r", self._model)

    # The base class creates its single worker thread in __init__ and shuts it down in
    # cleanup(); a property lets a cleaned-up analyzer start a fresh one when it is reused.
    @property
    def _executor(self) -> ThreadPoolExecutor:
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="caesura-vad")
        return self._worker

    @_executor.setter
    def _executor(self, value: ThreadPoolExecutor | None) -> None:
        self._worker = value

    @property
    def model(self) -> SileroVAD:
        """The shared Silero model."""
        return self._model

    @property
    def model_sample_rate(self) -> int:
        """The rate the model runs at for this analyzer's input (8000 or 16000)."""
        return self._model.model_rate_for(self.sample_rate or 16000)

    @property
    def reset_when_quiet(self) -> bool:
        """Whether the model state is reset as Pipecat's ``SileroVADAnalyzer`` resets it."""
        return self._reset_when_quiet

    @property
    def last_confidence(self) -> float:
        """The confidence returned by the latest ``voice_confidence`` call."""
        return self._last_confidence

    def set_sample_rate(self, sample_rate: int) -> None:
        """Set the input rate (Pipecat calls this at pipeline start); resets the stream."""
        rate = self._init_sample_rate or sample_rate
        self._model.model_rate_for(rate)  # UnsupportedSampleRateError for an impossible rate
        super().set_sample_rate(sample_rate)
        self._stream = None
        self._last_confidence = 0.0
        self._windows_since_reset = self._low_windows = 0

    def num_frames_required(self) -> int:
        """Samples per analysed buffer: one 32 ms model window at the input rate."""
        rate = self.sample_rate
        if not rate:
            raise InvalidOptionError("the sample rate is not set yet (call set_sample_rate)")
        model_rate = self._model.model_rate_for(rate)
        return max(1, round(WINDOW_SIZES[model_rate] * rate / model_rate))

    def voice_confidence(self, buffer: bytes) -> float:
        """Speech probability of ``buffer`` (PCM16 mono at the input rate), a Python float.

        At 8/16 kHz every buffer is exactly one model window. At a resampled rate a buffer
        completes zero, one or two windows; the latest window's probability is returned (the
        previous one when the buffer completed none).
        """
        stream = self._stream
        if stream is None or stream.sample_rate != self.sample_rate:
            stream = self._model.stream(self.sample_rate)
            self._stream = stream
        audio = pcm16_bytes_to_float32(buffer)
        probs = self._batcher.score(stream, audio)
        if probs.size:
            self._last_confidence = float(probs[-1])
            if self._reset_when_quiet:
                self._maybe_reset(stream, probs.size)
        return self._last_confidence

    def _maybe_reset(self, stream: VADStream, windows: int) -> None:
        """Pipecat's rule, after a window is scored (the reset applies from the next one);
        ``_vad_state`` is still the state before this window, as in Pipecat."""
        self._windows_since_reset += windows
        if self._last_confidence < RESET_MAX_CONFIDENCE:
            self._low_windows += 1
        else:
            self._low_windows = 0
        if (
            self._windows_since_reset * stream.window_size >= RESET_INTERVAL_S * stream.model_rate
            and self._vad_state == VADState.QUIET
            and self._low_windows >= RESET_LOW_WINDOWS
        ):
            stream.reset()
            self._windows_since_reset = 0

    def reset(self) -> None:
        """Forget the model state (LSTM, context, resampler) of this analyzer's stream."""
        if self._stream is not None:
            self._stream.reset()
        self._last_confidence = 0.0
        self._windows_since_reset = self._low_windows = 0

    async def cleanup(self) -> None:
        """Stop the worker thread and drop the stream; the analyzer can be used again."""
        await super().cleanup()  # type: ignore[no-untyped-call]
        self._worker = None
        self._stream = None
        self._last_confidence = 0.0
        self._windows_since_reset = self._low_windows = 0
