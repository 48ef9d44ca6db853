"""One audio stream end to end: optional energy gate -> Silero -> segmenter -> events.

:class:`VADSession` is what a simple application (or a framework adapter) holds per audio
stream: ``session.feed(chunk)`` returns the :class:`~caesura.vad.segmenter.SpeechStart` /
:class:`~caesura.vad.segmenter.SpeechEnd` (and optionally per-window
:class:`~caesura.vad.segmenter.VADWindow`) events the chunk caused; ``session.flush()`` ends the
stream. For many streams batched through one model call per tick, drive
:class:`~caesura.vad.segmenter.Segmenter` objects directly from
:meth:`~caesura.vad.model.SileroVAD.infer_ready` and
:attr:`~caesura.vad.model.VADStream.last_windows`.

Energy gate: when ``energy_gate`` is set, every model-rate window whose RMS level is below the
gate's threshold gets probability 0.0 *without running the model*; when the audio rises above
the threshold again the model stream starts fresh (zero state and context: Silero's state after
a stretch of silence). The gate is off by default; ``benchmarks/vad_quality.py`` reports its
effect on accuracy and CPU.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from caesura.audio import Resampler, validate_audio, validate_sample_rate
from caesura.errors import InvalidOptionError
from caesura.vad.model import SileroVAD, VADStream
from caesura.vad.segmenter import (
    EnergyGate,
    Segmenter,
    SegmenterEvent,
    SegmenterOptions,
)

__all__ = ["VADSession"]

logger = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]


class VADSession:
    """Streaming VAD for one audio stream: model stream + optional energy gate + segmenter.

    Args:
        model: a loaded :class:`~caesura.vad.model.SileroVAD` (default: ``SileroVAD.load()``).
        sample_rate: rate of the audio you feed (8/16 kHz native, anything else resampled).
        options: :class:`SegmenterOptions` (defaults when ``None``).
        energy_gate: an :class:`EnergyGate`, a threshold in dBFS, or ``None`` (off).
        window_events: also emit a :class:`VADWindow` per model window.
        keep_audio: attach the segment audio (model rate, float32) to events.

    Timestamps in events are model-rate sample indices from the start of the stream (or the
    last :meth:`reset` / :meth:`flush`).
    """

    def __init__(
        self,
        model: SileroVAD | None = None,
        *,
        sample_rate: int = 16000,
        options: SegmenterOptions | None = None,
        energy_gate: EnergyGate | float | None = None,
        window_events: bool = False,
        keep_audio: bool = True,
    ) -> None:
        if model is None:
            model = SileroVAD.load()
        self._model = model
        self.sample_rate = validate_sample_rate(sample_rate)
        self.model_rate = model.model_rate_for(self.sample_rate)
        if energy_gate is None or isinstance(energy_gate, EnergyGate):
            self._gate = energy_gate
        elif isinstance(energy_gate, (int, float)) and not isinstance(energy_gate, bool):
            self._gate = EnergyGate(float(energy_gate))
        else:
            raise InvalidOptionError(
                f"energy_gate must be an EnergyGate, a dBFS threshold or None, got {energy_gate!r}"
            )
        self._segmenter = Segmenter(
            options,
            sample_rate=self.model_rate,
            keep_audio=keep_audio,
            window_events=window_events,
        )
        self.window_size = self._segmenter.window_size
        if self._gate is None:
            # the model stream resamples and windows the audio itself
            self._stream: VADStream = model.stream(self.sample_rate)
            self._resampler: Resampler | None = None
        else:
            # the gate must see model-rate windows before inference: window here
            self._stream = model.stream(self.model_rate)
            self._resampler = (
                Resampler(self.sample_rate, self.model_rate)
                if self.sample_rate != self.model_rate
                else None
            )
        self._pending: Float32Array = np.zeros(0, dtype=np.float32)
        self._stream_dirty = False  # model state must be reset before the next inference
        self.windows_inferred = 0
        self.windows_gated = 0

    # ------------------------------------------------------------------ properties
    @property
    def model(self) -> SileroVAD:
        return self._model

    @property
    def segmenter(self) -> Segmenter:
        return self._segmenter

    @property
    def options(self) -> SegmenterOptions:
        return self._segmenter.options

    @property
    def energy_gate(self) -> EnergyGate | None:
        return self._gate

    @property
    def speaking(self) -> bool:
        return self._segmenter.speaking

    @property
    def samples_processed(self) -> int:
        """Model-rate samples scored so far (whole windows)."""
        return self._segmenter.samples_processed

    def update_options(self, options: SegmenterOptions) -> None:
        self._segmenter.update_options(options)

    # ------------------------------------------------------------------ feeding
    def feed(self, chunk: npt.NDArray[Any]) -> list[SegmenterEvent]:
        """Feed a chunk of any size (int16/float32 mono at ``sample_rate``); return events."""
        if self._gate is None:
            probs, windows = self._stream.process(chunk, return_audio=True)
            return self._segmenter.process(probs, windows.reshape(-1))
        x = validate_audio(chunk, name="chunk")
        if self._resampler is not None:
            x = self._resampler.process(x)
        return self._gated(x, final=False)

    def flush(self) -> list[SegmenterEvent]:
        """End of stream: score the tail (last partial window zero-padded, as silero-vad does),
        close an open segment (``reason="flush"``), then reset the session for new audio."""
        if self._gate is None:
            probs, windows = self._stream.flush(return_audio=True)
            events = self._segmenter.process(probs, windows.reshape(-1))
        else:
            tail = self._resampler.flush() if self._resampler is not None else None
            x = tail if tail is not None else np.zeros(0, dtype=np.float32)
            events = self._gated(x, final=True)
        events += self._segmenter.flush()
        self.reset()
        return events

    def reset(self) -> None:
        """Forget everything (model state, buffered audio, open segment, sample clock)."""
        self._stream.reset()
        self._segmenter.reset()
        if self._resampler is not None:
            self._resampler.reset()
        self._pending = np.zeros(0, dtype=np.float32)
        self._stream_dirty = False

    # ------------------------------------------------------------------ gate path
    def _gated(self, x: Float32Array, *, final: bool) -> list[SegmenterEvent]:
        assert self._gate is not None
        ws = self.window_size
        buf = np.concatenate([self._pending, x]) if self._pending.size else x
        if final and buf.size % ws:
            buf = np.concatenate([buf, np.zeros(ws - buf.size % ws, dtype=np.float32)])
        n = buf.size // ws
        self._pending = buf[n * ws :].copy()
        if n == 0:
            return []
        audio = np.ascontiguousarray(buf[: n * ws])
        silent = self._gate.silent_windows(audio, ws)
        probs = np.zeros(n, dtype=np.float32)
        i = 0
        while i < n:
            j = i
            while j < n and silent[j] == silent[i]:
                j += 1
            if silent[i]:
                self._stream_dirty = True
                self.windows_gated += j - i
            else:
                if self._stream_dirty:
                    self._stream.reset()
                    self._stream_dirty = False
                probs[i:j] = self._stream.process(audio[i * ws : j * ws])
                self.windows_inferred += j - i
            i = j
        return self._segmenter.process(probs, audio, gated=silent.tolist())

    def __repr__(self) -> str:
        return (
            f"VADSession(sample_rate={self.sample_rate}, model_rate={self.model_rate}, "
            f"energy_gate={self._gate!r}, options={self.options!r})"
        )
