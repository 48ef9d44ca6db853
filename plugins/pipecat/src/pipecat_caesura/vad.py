"""A drop-in Pipecat ``VADAnalyzer`` running Silero VAD v6.2 through caesura's core.

One :class:`caesura.vad.SileroVAD` is loaded per process and shared by every analyzer (every
pipeline, every call); each analyzer owns only a :class:`caesura.vad.VADStream` (LSTM state,
64-sample context, resampler). Windows that several analyzers submit at the same time are
scored in one batched inference (:class:`SharedVADBatcher`), which is bit-identical to scoring
them one by one and cheaper per window. A window that arrives alone is scored at once: the
batcher never waits for company.

Pipecat's own state machine (``VADAnalyzer.analyze_audio`` with ``VADParams`` confidence,
start/stop seconds and min volume) is used unchanged; this class only answers
``num_frames_required()`` and ``voice_confidence(buffer)``.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import numpy.typing as npt
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams

from caesura.audio import pcm16_bytes_to_float32
from caesura.errors import InvalidOptionError
from caesura.vad import WINDOW_SIZES, SileroVAD, VADStream

__all__ = ["CaesuraVADAnalyzer", "SharedVADBatcher"]

logger = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]


@dataclass(eq=False)
class _Request:
    stream: VADStream
    audio: Float32Array
    done: bool = False
    result: Float32Array | None = None
    error: BaseException | None = None
    event: threading.Event = field(default_factory=threading.Event)


class SharedVADBatcher:
    """Coalesces the windows of concurrent callers into one ``SileroVAD.infer_ready`` call.

    Leader/follower batching: a caller queues its chunk and tries to take the run lock. The
    holder of the lock (the leader) takes *every* queued request, feeds each to its stream,
    runs one batched inference and hands each caller its probabilities. Callers that queued
    while an inference was running are served by the next leader in one batch, so batches grow
    with load and a lone caller pays no waiting at all. onnxruntime releases the GIL while it
    runs, so callers on other threads keep queueing meanwhile.

    Thread-safe. A stream must not be submitted by two threads at once (each Pipecat analyzer
    runs its model on its own single worker thread, so this holds).
    """

    _instances: ClassVar[dict[int, SharedVADBatcher]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, model: SileroVAD) -> None:
        self._model = model
        self._queue_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._queue: list[_Request] = []
        self.batches = 0
        self.windows = 0
        self.max_batch = 0

    @classmethod
    def for_model(cls, model: SileroVAD) -> SharedVADBatcher:
        """The process-wide batcher of ``model`` (created on first use)."""
        with cls._instances_lock:
            batcher = cls._instances.get(id(model))
            if batcher is None or batcher._model is not model:
                batcher = cls(model)
                cls._instances[id(model)] = batcher
            return batcher

    @property
    def model(self) -> SileroVAD:
        return self._model

    def score(self, stream: VADStream, audio: Float32Array) -> Float32Array:
        """Feed ``audio`` to ``stream`` and return the probabilities of the windows it
        completes (possibly none), batched with whatever other streams are waiting."""
        request = _Request(stream, audio)
        with self._queue_lock:
            self._queue.append(request)
        while not request.done:
            with self._run_lock:
                if request.done:
                    break
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._run(batch)
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _run(self, batch: list[_Request]) -> None:
        ready: list[_Request] = []
        if len(batch) == 1:  # alone: no batch bookkeeping (same result, bit for bit)
            r = batch[0]
            try:
                r.result = r.stream.process(r.audio)
                self.batches += 1
                self.max_batch = max(self.max_batch, 1)
                self.windows += len(r.result)
            except Exception as exc:
                r.error = exc
            finally:
                r.done = True
            return
        try:
            for r in batch:
                try:
                    r.stream.feed(r.audio)
                    ready.append(r)
                except Exception as exc:  # bad audio or a closed stream: that caller only
                    r.error = exc
            results = self._model.infer_ready([r.stream for r in ready])
            for r, probs in zip(ready, results, strict=True):
                r.result = probs
            self.batches += 1
            self.max_batch = max(self.max_batch, len(ready))
            self.windows += sum(len(p) for p in results)
        except Exception as exc:  # model failure: every caller in the batch sees it
            for r in ready:
                r.error = exc
        finally:
            for r in batch:
                r.done = True


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
    """

    def __init__(
        self,
        *,
        sample_rate: int | None = None,
        params: VADParams | None = None,
        model: SileroVAD | None = None,
    ) -> None:
        self._worker: ThreadPoolExecutor | None = None
        super().__init__(sample_rate=sample_rate, params=params)
        if model is not None and not isinstance(model, SileroVAD):
            raise InvalidOptionError(
                f"model must be a caesura.vad.SileroVAD, got {type(model).__name__}"
            )
        self._model = model if model is not None else SileroVAD.load()
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
        return self._last_confidence

    def reset(self) -> None:
        """Forget the model state (LSTM, context, resampler) of this analyzer's stream."""
        if self._stream is not None:
            self._stream.reset()
        self._last_confidence = 0.0

    async def cleanup(self) -> None:
        """Stop the worker thread and drop the stream; the analyzer can be used again."""
        await super().cleanup()  # type: ignore[no-untyped-call]
        self._worker = None
        self._stream = None
        self._last_confidence = 0.0
