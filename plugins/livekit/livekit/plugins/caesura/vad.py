"""Drop-in ``VAD`` for LiveKit Agents: caesura's batched Silero VAD v6.2 and streaming segmenter.

``caesura.VAD.load(...)`` takes the option names and defaults of
``livekit.plugins.silero.VAD.load`` and its streams emit the same events with the same
fields. The decisions (hysteresis, minimum speech and silence, pre-roll, splitting of very long
speech) are made by :class:`caesura.vad.segmenter.Segmenter`, exactly as in the core; this
module only converts frames, maps events and crosses the async boundary:

* audio frames at any rate (RoomIO sends 24 kHz, 50 ms) go to the core stream, which
  resamples them (anti-aliased, 4 ms delay) to the model rate; 8 kHz frames run the 8 kHz
  model directly;
* inference runs on one thread per model, batched across every stream of the process by the
  core's :class:`caesura.vad.VADBatcher` (awaited through ``asyncio.wrap_future``), never on
  the event loop;
* the input audio is kept at the *input* rate, so ``START_OF_SPEECH`` / ``END_OF_SPEECH``
  frames are the caller's own samples (prefix padding + speech), not a resampled copy.

Differences from the silero plugin, all on purpose: probabilities are not exponentially
smoothed (the core decides on the model's own output, like silero-vad's reference code);
``INFERENCE_DONE`` reflects the state *after* its window (so a window that starts speech
already reports ``speaking=True``); ``max_buffered_speech`` splits an over-long utterance at
its longest pause (``END_OF_SPEECH`` then ``START_OF_SPEECH``) instead of silently dropping
the audio beyond the limit; ``END_OF_SPEECH`` frames end shortly after the speech (the core's
``speech_pad_ms``) instead of carrying the whole ``min_silence_duration`` of silence.
"""

from __future__ import annotations

import asyncio
import math
import os
import weakref
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from livekit.agents import utils, vad
from livekit.agents.types import NOT_GIVEN, NotGivenOr

from caesura.audio import Resampler
from caesura.errors import InvalidOptionError
from caesura.vad import SileroVAD, VADBatcher
from caesura.vad import VADStream as CoreStream
from caesura.vad.segmenter import (
    Segmenter,
    SegmenterOptions,
    SpeechEnd,
    SpeechStart,
    VADWindow,
)
from livekit import rtc

from .log import logger

__all__ = ["VAD", "VADStream"]

SLOW_INFERENCE_THRESHOLD = 0.2  # seconds late, as the silero plugin warns

Int16Array = npt.NDArray[np.int16]


@dataclass
class _VADOptions:
    """The silero plugin's options, in seconds (the core works in milliseconds)."""

    min_speech_duration: float
    min_silence_duration: float
    prefix_padding_duration: float
    max_buffered_speech: float
    activation_threshold: float
    deactivation_threshold: float | None
    sample_rate: int

    def segmenter_options(self) -> SegmenterOptions:
        """The core's options for these values (raises InvalidOptionError when out of range,
        naming the LiveKit option)."""
        try:
            return SegmenterOptions(
                threshold=self.activation_threshold,
                neg_threshold=self.deactivation_threshold,
                min_speech_ms=_ms(self.min_speech_duration),
                min_silence_ms=_ms(self.min_silence_duration),
                pre_roll_ms=_ms(self.prefix_padding_duration),
                max_speech_s=self.max_buffered_speech,
            )
        except InvalidOptionError as exc:
            message = str(exc)
            for core, ours in _CORE_NAMES.items():
                if message.startswith(core):
                    raise InvalidOptionError(
                        f"invalid {ours}={getattr(self, ours)!r}: {message}"
                    ) from exc
            raise InvalidOptionError(f"invalid VAD options: {message}") from exc


#: core option -> the LiveKit option it comes from (for error messages)
_CORE_NAMES = {
    "neg_threshold": "deactivation_threshold",
    "threshold": "activation_threshold",
    "min_speech_ms": "min_speech_duration",
    "min_silence_ms": "min_silence_duration",
    "pre_roll_ms": "prefix_padding_duration",
    "max_speech_s": "max_buffered_speech",
}


def _ms(seconds: Any) -> Any:
    """Seconds -> milliseconds for numbers; anything else is passed on for the core to reject."""
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
        return seconds * 1000.0
    return seconds


def _given(value: NotGivenOr[Any]) -> bool:
    return utils.is_given(value)


class VAD(vad.VAD):
    """caesura's Silero VAD for LiveKit Agents. Create it with :meth:`load` (prewarm)."""

    @classmethod
    def load(
        cls,
        *,
        min_speech_duration: float = 0.05,
        min_silence_duration: float = 0.55,
        prefix_padding_duration: float = 0.5,
        max_buffered_speech: float = 60.0,
        activation_threshold: float = 0.5,
        deactivation_threshold: float | None = None,
        sample_rate: Literal[8000, 16000] = 16000,
        force_cpu: bool = True,
        onnx_file_path: str | os.PathLike[str] | None = None,
    ) -> VAD:
        """Load the model (once per process; cheap afterwards) and return a VAD.

        Blocking (a few hundred ms the first time): call it in your prewarm function::

            def prewarm(proc: JobProcess) -> None:
                proc.userdata["vad"] = caesura.VAD.load()

        Args:
            min_speech_duration: speech needed before ``START_OF_SPEECH`` (s).
            min_silence_duration: silence that ends the speech (``END_OF_SPEECH``) (s).
            prefix_padding_duration: audio kept before the speech onset in the events' frames
                (s).
            max_buffered_speech: longest utterance (s); longer speech is split at its
                longest pause into consecutive utterances (no audio is dropped).
            activation_threshold: probability at or above which a window is speech.
            deactivation_threshold: while speaking, probability below which a window is
                silence; ``None`` means ``max(activation_threshold - 0.15, 0.01)``.
            sample_rate: the model rate, 16000 or 8000 Hz, for input frames at any rate but
                8 kHz; 8 kHz frames always run the 8 kHz model (no upsampling, and it scores
                8 kHz speech better).
            force_cpu: accepted for drop-in compatibility; caesura always runs on CPU.
            onnx_file_path: a Silero v6.2 ONNX export of your own (verified on load);
                default: the bundled, sha256-checked model.

        Raises:
            caesura.InvalidOptionError (a ``ValueError``): an option out of range.
            caesura.ModelError: the model cannot be loaded.
        """
        if sample_rate not in (8000, 16000):
            raise InvalidOptionError(
                f"sample_rate must be 8000 or 16000 (the model's rates), got {sample_rate!r}; "
                "input frames may have any rate, they are resampled"
            )
        opts = _VADOptions(
            min_speech_duration=min_speech_duration,
            min_silence_duration=min_silence_duration,
            prefix_padding_duration=prefix_padding_duration,
            max_buffered_speech=max_buffered_speech,
            activation_threshold=activation_threshold,
            deactivation_threshold=deactivation_threshold,
            sample_rate=sample_rate,
        )
        opts.segmenter_options()  # validate before loading anything
        if not force_cpu:
            logger.debug("force_cpu=False ignored: caesura's VAD runs on CPU, batched")
        # both rates: 8 kHz input runs the 8 kHz model whatever sample_rate says
        model = SileroVAD.load(onnx_file_path, sample_rates=(16000, 8000))
        return cls(model=model, opts=opts)

    def __init__(self, *, model: SileroVAD, opts: _VADOptions) -> None:
        super().__init__(capabilities=vad.VADCapabilities(update_interval=0.032))
        self._core_model = model
        # the process-wide batcher of the model, held here so that it (and its thread) lives
        # as long as the VAD rather than being recreated for each stream
        self._batcher = VADBatcher.for_model(model)
        self._opts = opts
        self._streams: weakref.WeakSet[VADStream] = weakref.WeakSet()

    @property
    def model(self) -> str:
        return "silero-v6.2"

    @property
    def provider(self) -> str:
        return "caesura"

    @property
    def core_model(self) -> SileroVAD:
        """The shared :class:`caesura.vad.SileroVAD` every stream of this process batches on."""
        return self._core_model

    @property
    def min_silence_duration(self) -> float:
        return self._opts.min_silence_duration

    def stream(self) -> VADStream:
        """A new stream (call inside a running event loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "caesura.VAD.stream() must be called inside a running event loop (in the job's "
                "entrypoint); load the VAD in prewarm, create streams in the job"
            ) from None
        stream = VADStream(self, replace(self._opts))
        self._streams.add(stream)
        return stream

    def update_options(
        self,
        *,
        min_speech_duration: NotGivenOr[float] = NOT_GIVEN,
        min_silence_duration: NotGivenOr[float] = NOT_GIVEN,
        prefix_padding_duration: NotGivenOr[float] = NOT_GIVEN,
        max_buffered_speech: NotGivenOr[float] = NOT_GIVEN,
        activation_threshold: NotGivenOr[float] = NOT_GIVEN,
        deactivation_threshold: NotGivenOr[float | None] = NOT_GIVEN,
    ) -> None:
        """Change options for new streams and every live stream (validated first)."""
        changes = _changes(
            min_speech_duration=min_speech_duration,
            min_silence_duration=min_silence_duration,
            prefix_padding_duration=prefix_padding_duration,
            max_buffered_speech=max_buffered_speech,
            activation_threshold=activation_threshold,
            deactivation_threshold=deactivation_threshold,
        )
        new = replace(self._opts, **changes)
        new.segmenter_options()
        self._opts = new
        for stream in list(self._streams):
            stream.update_options(**changes)


def _changes(**kwargs: NotGivenOr[Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if _given(v)}


class _InputAudio:
    """Input-rate int16 samples with an absolute offset (frames of the events are cut here)."""

    def __init__(self) -> None:
        self._chunks: list[Int16Array] = []
        self._start = 0
        self._end = 0

    def reset(self) -> None:
        self._chunks = []
        self._start = self._end = 0

    @property
    def end(self) -> int:
        return self._end

    def append(self, pcm: Int16Array) -> None:
        if pcm.size:
            self._chunks.append(pcm)
            self._end += pcm.size

    def trim_before(self, position: int) -> None:
        while self._chunks and self._start + self._chunks[0].size <= position:
            self._start += self._chunks.pop(0).size

    def slice(self, start: int, end: int) -> Int16Array:
        start, end = max(start, self._start), min(end, self._end)
        if end <= start:
            return np.zeros(0, dtype=np.int16)
        out = np.empty(end - start, dtype=np.int16)
        pos, o = self._start, 0
        for c in self._chunks:
            c_end = pos + c.size
            if c_end > start and pos < end:
                a, b = max(start, pos) - pos, min(end, c_end) - pos
                out[o : o + b - a] = c[a:b]
                o += b - a
            pos = c_end
            if pos >= end:
                break
        return out


class VADStream(vad.VADStream):
    """One audio stream. Push ``rtc.AudioFrame`` s (any rate, mono int16); iterate events."""

    def __init__(self, vad_: VAD, opts: _VADOptions) -> None:
        super().__init__(vad_)
        self._opts = opts
        self._core_model = vad_.core_model
        self._batcher: VADBatcher = vad_._batcher  # the VAD's shared batcher
        self._segmenter = Segmenter(
            opts.segmenter_options(),
            sample_rate=opts.sample_rate,
            keep_audio=False,
            window_events=True,
        )
        self._core: CoreStream | None = None
        self._resampler: Resampler | None = None  # only for 8 kHz inference of other rates
        self._input_rate = 0
        self._model_rate = opts.sample_rate  # 8000 for 8 kHz input (set when it opens)
        self._audio = _InputAudio()
        self._segment_audio_start: int | None = None  # model-rate start of the open segment
        self._extra_inference_time = 0.0

    # ---- options -------------------------------------------------------------------------

    def update_options(
        self,
        *,
        min_speech_duration: NotGivenOr[float] = NOT_GIVEN,
        min_silence_duration: NotGivenOr[float] = NOT_GIVEN,
        prefix_padding_duration: NotGivenOr[float] = NOT_GIVEN,
        max_buffered_speech: NotGivenOr[float] = NOT_GIVEN,
        activation_threshold: NotGivenOr[float] = NOT_GIVEN,
        deactivation_threshold: NotGivenOr[float | None] = NOT_GIVEN,
    ) -> None:
        """Change this stream's options; an utterance in progress continues under them."""
        changes = _changes(
            min_speech_duration=min_speech_duration,
            min_silence_duration=min_silence_duration,
            prefix_padding_duration=prefix_padding_duration,
            max_buffered_speech=max_buffered_speech,
            activation_threshold=activation_threshold,
            deactivation_threshold=deactivation_threshold,
        )
        new = replace(self._opts, **changes)
        self._segmenter.update_options(new.segmenter_options())
        self._opts = new

    # ---- sample clock --------------------------------------------------------------------

    def _to_input(self, model_sample: int) -> int:
        """Model-rate sample index -> input-rate sample index (the resampler is delay-free)."""
        return round(model_sample * self._input_rate / self._model_rate)

    def _frame(self, model_start: int, model_end: int) -> rtc.AudioFrame:
        pcm = self._audio.slice(self._to_input(model_start), self._to_input(model_end))
        return rtc.AudioFrame(
            data=pcm.tobytes(),
            sample_rate=self._input_rate,
            num_channels=1,
            samples_per_channel=pcm.size,
        )

    def _retain(self) -> None:
        """Keep the input audio an event may still need: the open segment from its pre-roll,
        else what a pending onset could reach back to (min speech + min silence + pre-roll)."""
        pos = self._segmenter.samples_processed
        if self._segment_audio_start is not None:
            keep = self._segment_audio_start
        else:
            o = self._opts
            lookback = o.prefix_padding_duration + o.min_speech_duration + o.min_silence_duration
            win = self._segmenter.window_size
            keep = pos - math.ceil(lookback * self._model_rate) - 3 * win
        self._audio.trim_before(self._to_input(max(0, keep)))

    # ---- lifecycle -----------------------------------------------------------------------

    def _open(self, input_rate: int) -> None:
        self._input_rate = input_rate
        # 8 kHz input runs the 8 kHz model rather than being upsampled to 16 kHz
        model_rate = 8000 if input_rate == 8000 else self._opts.sample_rate
        if model_rate != self._model_rate:
            self._model_rate = model_rate
            self._segmenter = Segmenter(
                self._opts.segmenter_options(),
                sample_rate=model_rate,
                keep_audio=False,
                window_events=True,
            )
        if model_rate == 8000 and input_rate != 8000:
            # the core resamples other rates to 16 kHz; 8 kHz inference was asked for
            self._resampler = Resampler(input_rate, 8000)
            self._core = self._core_model.stream(8000)
        else:
            self._core = self._core_model.stream(input_rate)
        self._batcher.attach(self._core)
        if self._core.model_rate != model_rate:  # pragma: no cover - guarded by load()
            raise InvalidOptionError(
                f"model runs at {self._core.model_rate} Hz, expected {model_rate} Hz"
            )

    def _reset(self) -> None:
        """Hard boundary (flush): forget all state; the input rate is kept."""
        if self._core is not None:
            self._core.reset()
        if self._resampler is not None:
            self._resampler.reset()
        self._segmenter.reset()
        self._audio.reset()
        self._segment_audio_start = None
        self._extra_inference_time = 0.0

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            if self._core is not None:
                self._batcher.release(self._core)

    # ---- main loop -----------------------------------------------------------------------

    @utils.log_exceptions(logger=logger)
    async def _main_task(self) -> None:
        try:
            await self._run()
        finally:
            if self._core is not None:
                self._batcher.detach(self._core)

    async def _run(self) -> None:
        async for item in self._input_ch:
            if isinstance(item, self._FlushSentinel):
                self._reset()
                continue
            if not isinstance(item, rtc.AudioFrame):
                continue
            if not self._input_rate:
                self._open(item.sample_rate)
            elif item.sample_rate != self._input_rate:
                logger.error(
                    "a frame with another sample rate was already pushed (%d Hz, stream is "
                    "at %d Hz); frame dropped",
                    item.sample_rate,
                    self._input_rate,
                )
                continue
            pcm = _mono_int16(item)
            if pcm.size == 0:
                continue
            self._audio.append(pcm)
            chunk: npt.NDArray[Any] = pcm
            if self._resampler is not None:
                chunk = self._resampler.process(pcm.astype(np.float32) / 32768.0)
            assert self._core is not None
            # the core stream belongs to the batcher's thread until the result is back; a
            # cancelled await withdraws the chunk if its batch has not started yet
            result = await asyncio.wrap_future(self._batcher.submit(self._core, chunk))
            self._emit(result.probabilities, result.latency)

    def _emit(self, probs: npt.NDArray[np.float32], latency: float) -> None:
        if probs.size == 0:
            return
        per_window = latency / probs.size
        window_s = self._segmenter.window_size / self._model_rate
        self._extra_inference_time = max(
            0.0, self._extra_inference_time + latency - probs.size * window_s
        )
        if latency > SLOW_INFERENCE_THRESHOLD:
            logger.warning(
                "VAD inference is slower than realtime",
                extra={"delay": self._extra_inference_time},
            )
        for ev in self._segmenter.process(probs):
            if isinstance(ev, VADWindow):
                self._event_ch.send_nowait(
                    vad.VADEvent(
                        type=vad.VADEventType.INFERENCE_DONE,
                        samples_index=ev.end_sample,
                        timestamp=ev.end_s,
                        speech_duration=ev.speech_duration_s,
                        silence_duration=ev.silence_duration_s,
                        frames=[self._frame(ev.start_sample, ev.end_sample)],
                        probability=ev.probability,
                        inference_duration=per_window,
                        speaking=ev.speaking,
                        raw_accumulated_speech=ev.raw_speech_s,
                        raw_accumulated_silence=ev.raw_silence_s,
                    )
                )
            elif isinstance(ev, SpeechStart):
                self._segment_audio_start = ev.audio_start_sample
                self._event_ch.send_nowait(
                    vad.VADEvent(
                        type=vad.VADEventType.START_OF_SPEECH,
                        samples_index=ev.detected_sample,
                        timestamp=ev.detected_s,
                        speech_duration=ev.speech_duration_s,
                        silence_duration=0.0,
                        frames=[self._frame(ev.audio_start_sample, ev.detected_sample)],
                        inference_duration=per_window,
                        speaking=True,
                    )
                )
            elif isinstance(ev, SpeechEnd):
                self._segment_audio_start = None
                self._event_ch.send_nowait(
                    vad.VADEvent(
                        type=vad.VADEventType.END_OF_SPEECH,
                        samples_index=ev.detected_sample,
                        timestamp=ev.detected_s,
                        speech_duration=ev.speech_duration_s,
                        silence_duration=ev.silence_duration_s,
                        frames=[self._frame(ev.audio_start_sample, ev.audio_end_sample)],
                        inference_duration=per_window,
                        speaking=False,
                    )
                )
        self._retain()


def _mono_int16(frame: rtc.AudioFrame) -> Int16Array:
    """The frame's samples as mono int16 (multi-channel frames are averaged)."""
    pcm = np.frombuffer(frame.data, dtype=np.int16)
    channels = frame.num_channels
    if channels > 1:
        n = pcm.size // channels
        pcm = pcm[: n * channels].reshape(n, channels).mean(axis=1).astype(np.int16)
    else:
        pcm = pcm.copy()  # the frame's buffer may be reused by the caller
    return pcm
