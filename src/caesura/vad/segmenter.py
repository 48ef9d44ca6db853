"""Streaming speech segmentation over per-window Silero probabilities.

The :class:`Segmenter` turns the probability of each model window (512 samples at 16 kHz,
256 at 8 kHz) -- plus, optionally, the window's audio at the model rate -- into
:class:`SpeechStart` / :class:`SpeechEnd` events with sample-accurate timestamps and the
segment's audio. It runs no model: drive it from :class:`~caesura.vad.session.VADSession`
(model + energy gate + segmenter) or from your own probabilities (tests script them).

Decision rules, window by window (window ``[ws, we)``, probability ``p``):

* **Onset** (not in speech): ``p >= threshold`` opens a *pending* segment at ``ws``.
* **Hysteresis** (in speech): ``p >= threshold`` is speech; ``p < neg_threshold`` is silence;
  a value in between keeps the current run (speech stays speech, an open pause stays open),
  exactly like silero-vad's ``get_speech_timestamps``. ``neg_threshold`` defaults to
  ``max(threshold - 0.15, 0.01)``.
* **Min speech**: the pending segment is *confirmed* -- :class:`SpeechStart` is emitted --
  once its speech span (onset to the end of its last speech window) reaches ``min_speech_ms``.
  A pending segment that falls silent for ``min_silence_ms`` before that is dropped (a cough).
* **Min silence (hangover)**: a pause that started at ``ws0`` (the first silent window) ends
  the segment at ``ws0`` as soon as ``we - ws0 >= min_silence_ms``; :class:`SpeechEnd` is
  emitted then, with ``reason="silence"``.
* **Max speech**: when a confirmed segment would grow beyond ``max_speech_s`` it is split at
  the longest pause inside it (ties: the latest); without any pause it is cut at the start of
  the window that crossed the limit. The length counted is onset to the end of the last speech
  window, so a trailing pause never triggers a split. The first part ends with
  ``reason="max_speech"`` and the rest continues as a new segment (a :class:`SpeechStart`
  follows at once) -- no audio is ever dropped.
* :meth:`Segmenter.flush` closes an open confirmed segment (``reason="flush"``) at end of
  stream; :meth:`Segmenter.reset` forgets everything, sample clock included.

Audio in events: ``pre_roll_ms`` of audio before the onset (a ring buffer, so the first
syllable is never clipped) + the speech + up to ``speech_pad_ms`` after its end (limited to
the silence actually observed). Timestamps (``start_sample`` / ``end_sample``) are the
unpadded speech bounds; ``audio_start_sample`` / ``audio_end_sample`` give the span of
``audio``. All sample indices are at the model rate from the start of the stream.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from caesura.errors import InvalidAudioError, InvalidOptionError

__all__ = [
    "MODEL_SAMPLE_RATES",
    "EndReason",
    "EnergyGate",
    "Segmenter",
    "SegmenterEvent",
    "SegmenterOptions",
    "SpeechEnd",
    "SpeechStart",
    "VADWindow",
    "rms_dbfs",
    "window_size_for",
]

logger = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]
EndReason = Literal["silence", "max_speech", "flush"]

#: Native rates of the Silero model and their window sizes in samples (32 ms).
MODEL_SAMPLE_RATES: dict[int, int] = {16000: 512, 8000: 256}


def window_size_for(sample_rate: int) -> int:
    """Samples per model window at ``sample_rate`` (512 at 16 kHz, 256 at 8 kHz)."""
    try:
        return MODEL_SAMPLE_RATES[sample_rate]
    except KeyError:
        raise InvalidOptionError(
            f"sample_rate must be a model rate (16000 or 8000 Hz), got {sample_rate!r}"
        ) from None


# --------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------


def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidOptionError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if math.isnan(v):
        raise InvalidOptionError(f"{name} must not be NaN")
    return v


@dataclass(frozen=True)
class SegmenterOptions:
    """Segmentation options; names follow silero-vad's ``get_speech_timestamps``.

    Defaults are chosen for live voice agents, not for offline file splitting, and were tuned
    on the AMI debug clips (far-field meeting speech, clean and with noise at 10/0 dB; see
    ``benchmarks/vad_quality.py``), where they beat silero-vad's ``VADIterator`` (0.5 /
    0.35 / 100 ms) on both segment F1 and end-of-speech delay:

    * ``threshold=0.3`` with the default exit threshold ``max(threshold - 0.15, 0.01)`` =
      0.15 (``neg_threshold=None``): the wide hysteresis keeps soft and distant speech in the
      segment; measured on AMI it raised segment F1 more than any hangover change, with no
      false trigger on the noise files.
    * ``min_silence_ms=96`` (three 32 ms windows): the hangover. Short on purpose -- the
      segmenter reports pauses quickly and the turn engine decides whether a pause ends the
      *turn*. Adapters that emulate a framework pass its value (LiveKit: 550 ms).
    * ``min_speech_ms=100``: rejects clicks and one- or two-window blips while keeping the start
      event early enough for barge-in (silero's offline 250 ms would delay every start).
    * ``speech_pad_ms=30``: trailing audio kept after the speech (silero's pad).
    * ``pre_roll_ms=300``: audio kept before the onset (the seed's 300-500 ms), so speech
      recognisers get the first phoneme.
    * ``max_speech_s=60``: long monologues are split at their longest pause; this also
      bounds the audio held in memory per stream (silero's offline default is infinite).

    Raises :class:`~caesura.errors.InvalidOptionError` naming the bad field.
    """

    threshold: float = 0.3
    neg_threshold: float | None = None
    min_speech_ms: float = 100.0
    min_silence_ms: float = 96.0
    speech_pad_ms: float = 30.0
    pre_roll_ms: float = 300.0
    max_speech_s: float = 60.0

    def __post_init__(self) -> None:
        thr = _check_number("threshold", self.threshold)
        if not 0.0 < thr <= 1.0:
            raise InvalidOptionError(f"threshold must be in (0, 1], got {self.threshold!r}")
        if self.neg_threshold is not None:
            neg = _check_number("neg_threshold", self.neg_threshold)
            if not 0.0 <= neg <= thr:
                raise InvalidOptionError(
                    f"neg_threshold must be in [0, threshold={thr}], got {self.neg_threshold!r}"
                )
        for name in ("min_speech_ms", "min_silence_ms", "speech_pad_ms", "pre_roll_ms"):
            v = _check_number(name, getattr(self, name))
            if v < 0 or math.isinf(v):
                raise InvalidOptionError(f"{name} must be a finite number >= 0, got {v!r}")
        mx = _check_number("max_speech_s", self.max_speech_s)
        if mx <= 0:
            raise InvalidOptionError(f"max_speech_s must be > 0 (or inf), got {mx!r}")
        if mx * 1000.0 <= float(self.min_speech_ms):
            raise InvalidOptionError(
                f"max_speech_s ({mx} s) must be longer than min_speech_ms ({self.min_speech_ms} ms)"
            )

    @property
    def exit_threshold(self) -> float:
        """The effective exit threshold: ``neg_threshold`` or ``max(threshold - 0.15, 0.01)``."""
        if self.neg_threshold is not None:
            return float(self.neg_threshold)
        return max(float(self.threshold) - 0.15, 0.01)

    def replace(self, **changes: Any) -> SegmenterOptions:
        """A copy with ``changes`` applied (validated); unknown names raise InvalidOptionError."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InvalidOptionError(
                f"unknown segmenter option(s) {unknown}; valid: {sorted(known)}"
            )
        return replace(self, **changes)


# --------------------------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class VADWindow:
    """One model window's result (emitted only when ``Segmenter(window_events=True)``).

    For adapters that report every inference (LiveKit's INFERENCE_DONE); it precedes the
    start/end events the window caused, and reflects the state after them. Durations are in
    samples at ``sample_rate``; the ``*_s`` properties convert.

    * ``speaking``: a confirmed segment is open after this window.
    * ``speech_samples``: length of the open segment (onset to now) while in speech, else 0.
    * ``silence_samples``: time since the last speech window ended (0 while speech goes on);
      counts from the stream start before any speech.
    * ``raw_speech_samples`` / ``raw_silence_samples``: the current run of consecutive windows
      classified speech / non-speech (with hysteresis), the other one 0.
    """

    start_sample: int
    end_sample: int
    sample_rate: int
    probability: float
    is_speech: bool
    speaking: bool
    speech_samples: int
    silence_samples: int
    raw_speech_samples: int
    raw_silence_samples: int
    gated: bool = False
    kind: Literal["window"] = field(default="window", init=False)

    @property
    def end_s(self) -> float:
        return self.end_sample / self.sample_rate

    @property
    def speech_duration_s(self) -> float:
        return self.speech_samples / self.sample_rate

    @property
    def silence_duration_s(self) -> float:
        return self.silence_samples / self.sample_rate

    @property
    def raw_speech_s(self) -> float:
        return self.raw_speech_samples / self.sample_rate

    @property
    def raw_silence_s(self) -> float:
        return self.raw_silence_samples / self.sample_rate


@dataclass(frozen=True, eq=False)
class SpeechStart:
    """Speech confirmed (``min_speech_ms`` reached).

    ``start_sample`` is the onset (start of the first speech window); ``detected_sample`` the
    stream position when the decision was made (end of the confirming window), so the
    detection latency is ``detected_s - start_s``. ``audio`` (float32, model rate, or ``None``
    when the segmenter is fed no audio) spans ``[audio_start_sample, detected_sample)``:
    pre-roll + the speech so far. ``continued`` is true for the second part of a segment split
    at ``max_speech_s`` (its onset is the end of the pause it was split at).
    """

    start_sample: int
    detected_sample: int
    sample_rate: int
    audio_start_sample: int
    audio: Float32Array | None = None
    continued: bool = False
    kind: Literal["speech_start"] = field(default="speech_start", init=False)

    @property
    def start_s(self) -> float:
        return self.start_sample / self.sample_rate

    @property
    def detected_s(self) -> float:
        return self.detected_sample / self.sample_rate

    @property
    def latency_s(self) -> float:
        """Seconds from the onset to the decision."""
        return (self.detected_sample - self.start_sample) / self.sample_rate

    @property
    def speech_duration_s(self) -> float:
        """Speech heard so far (onset to decision), as LiveKit's ``speech_duration``."""
        return self.latency_s


@dataclass(frozen=True, eq=False)
class SpeechEnd:
    """A segment closed.

    Speech spans ``[start_sample, end_sample)`` (unpadded; ``end_sample`` is the start of the
    pause that ended it, the split point, or the stream position at flush). ``detected_sample``
    is when the decision was made (``end_sample + min_silence`` for ``reason="silence"``).
    ``audio`` spans ``[audio_start_sample, audio_end_sample)``: pre-roll + speech + padding.
    """

    start_sample: int
    end_sample: int
    detected_sample: int
    sample_rate: int
    reason: EndReason
    audio_start_sample: int
    audio_end_sample: int
    audio: Float32Array | None = None
    kind: Literal["speech_end"] = field(default="speech_end", init=False)

    @property
    def start_s(self) -> float:
        return self.start_sample / self.sample_rate

    @property
    def end_s(self) -> float:
        return self.end_sample / self.sample_rate

    @property
    def detected_s(self) -> float:
        return self.detected_sample / self.sample_rate

    @property
    def duration_s(self) -> float:
        """Speech duration (unpadded)."""
        return (self.end_sample - self.start_sample) / self.sample_rate

    @property
    def speech_duration_s(self) -> float:
        return self.duration_s

    @property
    def silence_duration_s(self) -> float:
        """Silence observed after the speech when the decision was made."""
        return (self.detected_sample - self.end_sample) / self.sample_rate

    @property
    def latency_s(self) -> float:
        """Seconds from the end of speech to the decision."""
        return self.silence_duration_s


SegmenterEvent = SpeechStart | SpeechEnd | VADWindow


# --------------------------------------------------------------------------------------------
# energy gate (seed tier 1)
# --------------------------------------------------------------------------------------------


def rms_dbfs(window: Float32Array) -> float:
    """RMS level of a float32 window in dBFS (full scale 1.0); ``-inf`` for digital silence."""
    if window.size == 0:
        return -math.inf
    x = window.astype(np.float64, copy=False)
    ms = float(np.dot(x, x)) / x.size
    return 10.0 * math.log10(ms) if ms > 0.0 else -math.inf


class EnergyGate:
    """Skip inference on digital / near silence (the seed's tier 1 of the cascade).

    ``is_silent(window)`` is true when the window's RMS level is below ``threshold_dbfs``.
    The caller (:class:`~caesura.vad.session.VADSession`) then reports probability 0.0 for
    the window instead of running the model, and restarts the model stream fresh when the
    level rises again (Silero's state after silence is close to that of a fresh stream; the
    benchmark measures the effect on accuracy and CPU). The default, -85 dBFS, is below the
    quietest speech frames measured in the AMI far-field clips (1st percentile about -80 dBFS)
    and above digital silence (-inf) and 16-bit dither (about -101 dBFS); -60 dBFS, a common
    choice, gated away a third of AMI's windows and cost 0.16 segment F1 there.
    """

    def __init__(self, threshold_dbfs: float = -85.0) -> None:
        t = _check_number("threshold_dbfs", threshold_dbfs)
        if not -200.0 <= t <= 0.0:
            raise InvalidOptionError(f"threshold_dbfs must be in [-200, 0] dBFS, got {t!r}")
        self.threshold_dbfs = t
        self._threshold_ms = 10.0 ** (t / 10.0)

    def is_silent(self, window: Float32Array) -> bool:
        """True when ``window`` (float32, full scale 1.0) is below the gate threshold."""
        if window.size == 0:
            return True
        x = window.astype(np.float64, copy=False)
        return bool(float(np.dot(x, x)) / x.size < self._threshold_ms)

    def silent_windows(self, audio: Float32Array, window_size: int) -> npt.NDArray[np.bool_]:
        """Per-window gate decisions for ``audio`` cut in consecutive ``window_size`` windows."""
        n = audio.size // window_size
        if n == 0:
            return np.zeros(0, dtype=bool)
        w = audio[: n * window_size].astype(np.float64).reshape(n, window_size)
        ms = np.einsum("ij,ij->i", w, w) / window_size
        return np.asarray(ms < self._threshold_ms, dtype=bool)

    def __repr__(self) -> str:
        return f"EnergyGate(threshold_dbfs={self.threshold_dbfs})"


# --------------------------------------------------------------------------------------------
# audio buffer
# --------------------------------------------------------------------------------------------


class _AudioBuffer:
    """Append-only chunks with an absolute sample offset; slices across chunks."""

    def __init__(self) -> None:
        self._chunks: list[Float32Array] = []
        self._start = 0  # absolute index of the first held sample
        self._end = 0  # absolute index one past the last held sample

    @property
    def start(self) -> int:
        return self._start

    def reset(self, position: int = 0) -> None:
        self._chunks = []
        self._start = position
        self._end = position

    def append(self, chunk: Float32Array) -> None:
        if chunk.size:
            self._chunks.append(chunk)
            self._end += chunk.size

    def skip(self, n: int) -> None:
        """Advance the clock by ``n`` samples that are not kept (segmenter fed no audio)."""
        self.reset(self._end + n)

    def trim_before(self, position: int) -> None:
        """Drop whole chunks that end at or before ``position``."""
        while self._chunks and self._start + self._chunks[0].size <= position:
            self._start += self._chunks.pop(0).size

    def slice(self, start: int, end: int) -> Float32Array:
        start = max(start, self._start)
        end = min(end, self._end)
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        out = np.empty(end - start, dtype=np.float32)
        pos = self._start
        o = 0
        for c in self._chunks:
            c_end = pos + c.size
            if c_end > start and pos < end:
                a = max(start, pos) - pos
                b = min(end, c_end) - pos
                out[o : o + (b - a)] = c[a:b]
                o += b - a
            pos = c_end
            if pos >= end:
                break
        return out


# --------------------------------------------------------------------------------------------
# segmenter
# --------------------------------------------------------------------------------------------


class Segmenter:
    """Streaming segmenter over per-window probabilities (no model inside).

    ``Segmenter(options, sample_rate=16000, keep_audio=True, window_events=False)``.
    Feed it with :meth:`process` (probabilities of consecutive windows, optionally with their
    audio at the model rate) and get :class:`SpeechStart` / :class:`SpeechEnd` events (and a
    :class:`VADWindow` per window when ``window_events``). The result does not depend on how
    the windows are grouped into calls. Not thread-safe; one per stream.
    """

    def __init__(
        self,
        options: SegmenterOptions | None = None,
        *,
        sample_rate: int = 16000,
        keep_audio: bool = True,
        window_events: bool = False,
    ) -> None:
        if options is not None and not isinstance(options, SegmenterOptions):
            raise InvalidOptionError(
                f"options must be a SegmenterOptions, got {type(options).__name__}"
            )
        self.sample_rate = sample_rate
        self.window_size = window_size_for(sample_rate)
        self.keep_audio = bool(keep_audio)
        self.window_events = bool(window_events)
        self._opts = options or SegmenterOptions()
        self._buf = _AudioBuffer()
        self._apply_options(self._opts)
        self.reset()

    # ---------------------------------------------------------------- options
    @property
    def options(self) -> SegmenterOptions:
        return self._opts

    def update_options(self, options: SegmenterOptions) -> None:
        """Swap options on a live stream; the open segment (if any) continues under them."""
        if not isinstance(options, SegmenterOptions):
            raise InvalidOptionError(
                f"options must be a SegmenterOptions, got {type(options).__name__}"
            )
        self._opts = options
        self._apply_options(options)

    def _apply_options(self, o: SegmenterOptions) -> None:
        sr = self.sample_rate
        self._thr = float(o.threshold)
        self._neg = o.exit_threshold
        self._min_speech = round(float(o.min_speech_ms) * sr / 1000.0)
        self._min_silence = round(float(o.min_silence_ms) * sr / 1000.0)
        self._pad = round(float(o.speech_pad_ms) * sr / 1000.0)
        self._pre_roll = round(float(o.pre_roll_ms) * sr / 1000.0)
        mx = float(o.max_speech_s)
        self._max_speech = math.inf if math.isinf(mx) else round(mx * sr)

    # ---------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget everything: open segment, audio, and the sample clock (back to 0)."""
        self._pos = 0  # samples processed (end of last window)
        self._buf.reset(0)
        self._clear_segment()
        self._raw_speech = 0
        self._raw_silence = 0
        self._last_speech_end = 0  # end of the last speech window (0: none yet)

    def _clear_segment(self) -> None:
        self._triggered = False  # a segment (pending or confirmed) is open
        self._confirmed = False
        self._onset = 0
        self._seg_speech_end = 0  # end of the segment's last speech window
        self._pause_start: int | None = None  # start of the pause in progress
        self._pauses: list[tuple[int, int]] = []  # closed pauses inside the segment
        self._continued = False

    @property
    def speaking(self) -> bool:
        """A confirmed segment is open."""
        return self._triggered and self._confirmed

    @property
    def samples_processed(self) -> int:
        """Stream position (model-rate samples) after the last window."""
        return self._pos

    @property
    def position_s(self) -> float:
        return self._pos / self.sample_rate

    # ---------------------------------------------------------------- feeding
    def process(
        self,
        probabilities: Sequence[float] | npt.NDArray[np.floating[Any]],
        audio: npt.NDArray[np.float32] | None = None,
        *,
        gated: Iterable[bool] | None = None,
    ) -> list[SegmenterEvent]:
        """Advance by ``len(probabilities)`` windows; return the events they caused.

        ``audio`` (float32, model rate) must hold exactly ``len(probabilities) * window_size``
        samples when given; without it events carry ``audio=None``. ``gated`` optionally
        flags windows whose probability came from the energy gate (reported in
        :class:`VADWindow`).
        """
        probs = np.asarray(probabilities, dtype=np.float64).reshape(-1)
        n = probs.size
        if n and not np.isfinite(probs).all():
            raise InvalidAudioError("probabilities contain NaN or infinity")
        if n and (probs.min() < 0.0 or probs.max() > 1.0):
            raise InvalidAudioError("probabilities must lie in [0, 1]")
        ws = self.window_size
        if audio is not None:
            if not isinstance(audio, np.ndarray) or audio.ndim != 1:
                raise InvalidAudioError("audio must be a 1-D float32 numpy array")
            if audio.size != n * ws:
                raise InvalidAudioError(
                    f"audio has {audio.size} samples for {n} window(s); expected {n * ws} "
                    f"({ws} per window at {self.sample_rate} Hz)"
                )
            audio = np.ascontiguousarray(audio, dtype=np.float32)
        gate_flags = [False] * n if gated is None else [bool(g) for g in gated]
        if len(gate_flags) != n:
            raise InvalidAudioError(f"gated has {len(gate_flags)} flags for {n} window(s)")
        events: list[SegmenterEvent] = []
        for i in range(n):
            if self.keep_audio and audio is not None:
                self._buf.append(audio[i * ws : (i + 1) * ws].copy())
            else:
                self._buf.skip(ws)
            self._step(float(probs[i]), gate_flags[i], events)
        return events

    def flush(self) -> list[SegmenterEvent]:
        """End of stream: close an open confirmed segment (``reason="flush"``).

        A pending (unconfirmed) segment is dropped. The sample clock keeps running, so a
        stream may go on after a flush; the audio buffer is emptied.
        """
        events: list[SegmenterEvent] = []
        if self._triggered and self._confirmed:
            end = self._pause_start if self._pause_start is not None else self._seg_speech_end
            events.append(self._end_event(end, "flush"))
        self._clear_segment()
        self._buf.reset(self._pos)
        return events

    # ---------------------------------------------------------------- core
    def _step(self, p: float, gated: bool, events: list[SegmenterEvent]) -> None:
        ws0 = self._pos
        we = ws0 + self.window_size
        self._pos = we
        if not self._triggered:
            is_speech = p >= self._thr
            if is_speech:
                self._triggered = True
                self._confirmed = False
                self._onset = ws0
                self._seg_speech_end = we
                self._pause_start = None
                self._pauses = []
                self._continued = False
        else:
            if p >= self._thr:
                is_speech = True
            elif p < self._neg:
                is_speech = False
            else:  # hysteresis band: keep the current run
                is_speech = self._pause_start is None
            if is_speech:
                if self._pause_start is not None:
                    self._pauses.append((self._pause_start, ws0 - self._pause_start))
                    self._pause_start = None
                self._seg_speech_end = we
            elif self._pause_start is None:
                self._pause_start = ws0

        if is_speech:
            self._raw_speech += self.window_size
            self._raw_silence = 0
            self._last_speech_end = we
        else:
            self._raw_silence += self.window_size
            self._raw_speech = 0

        first = len(events)
        if self._triggered:
            if self._pause_start is not None and we - self._pause_start >= self._min_silence:
                if self._confirmed:
                    events.append(self._end_event(self._pause_start, "silence"))
                self._clear_segment()
            elif not self._confirmed:
                if self._seg_speech_end - self._onset >= self._min_speech:
                    self._confirmed = True
                    events.append(self._start_event())
            elif self._seg_speech_end - self._onset > self._max_speech:
                self._split(events)

        if self.window_events:
            speaking = self._triggered and self._confirmed
            events.insert(
                first,
                VADWindow(
                    start_sample=ws0,
                    end_sample=we,
                    sample_rate=self.sample_rate,
                    probability=p,
                    is_speech=is_speech,
                    speaking=speaking,
                    speech_samples=(we - self._onset) if speaking else 0,
                    silence_samples=0 if is_speech else we - self._last_speech_end,
                    raw_speech_samples=self._raw_speech,
                    raw_silence_samples=self._raw_silence,
                    gated=gated,
                ),
            )

        if not self._triggered:
            # idle: keep only the pre-roll (plus the current window)
            self._buf.trim_before(we - self._pre_roll - self.window_size)

    def _split(self, events: list[SegmenterEvent]) -> None:
        """Max speech reached (on a speech window): end at the longest pause, or cut here."""
        if self._pauses:
            # longest; ties broken by the latest
            p_start, p_len = max(self._pauses, key=lambda c: (c[1], c[0]))
            events.append(self._end_event(p_start, "max_speech"))
            new_onset = p_start + p_len
            remaining = [c for c in self._pauses if c[0] > p_start]
        else:
            cut = self._pos - self.window_size
            events.append(self._end_event(cut, "max_speech"))
            new_onset = cut
            remaining = []
        seg_speech_end = self._seg_speech_end
        self._clear_segment()
        self._triggered = True
        self._confirmed = True
        self._continued = True
        self._onset = new_onset
        self._seg_speech_end = seg_speech_end
        self._pauses = remaining
        self._buf.trim_before(new_onset - self._pre_roll)
        events.append(self._start_event())

    def _start_event(self) -> SpeechStart:
        a0 = max(0, self._onset - self._pre_roll)
        audio = None
        if self.keep_audio and self._buf.start <= self._onset and self._has_audio():
            a0 = max(a0, self._buf.start)
            audio = self._buf.slice(a0, self._pos)
        return SpeechStart(
            start_sample=self._onset,
            detected_sample=self._pos,
            sample_rate=self.sample_rate,
            audio_start_sample=a0,
            audio=audio,
            continued=self._continued,
        )

    def _end_event(self, end: int, reason: EndReason) -> SpeechEnd:
        a0 = max(0, self._onset - self._pre_roll)
        a1 = min(end + self._pad, self._pos)
        audio = None
        if self.keep_audio and self._buf.start <= self._onset and self._has_audio():
            a0 = max(a0, self._buf.start)
            audio = self._buf.slice(a0, a1)
        return SpeechEnd(
            start_sample=self._onset,
            end_sample=end,
            detected_sample=self._pos,
            sample_rate=self.sample_rate,
            reason=reason,
            audio_start_sample=a0,
            audio_end_sample=a1,
            audio=audio,
        )

    def _has_audio(self) -> bool:
        return bool(self._buf._chunks)

    def __repr__(self) -> str:
        return (
            f"Segmenter(sample_rate={self.sample_rate}, options={self._opts!r}, "
            f"position={self._pos})"
        )
