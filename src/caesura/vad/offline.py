"""Offline speech timestamps over whole recordings.

:func:`speech_timestamps` mirrors silero-vad's ``get_speech_timestamps``: same parameter names,
same defaults, same ``[{"start": ..., "end": ...}]`` result. Two modes:

* ``compat="silero"`` reproduces silero-vad 6.2.3 exactly (the EchoKit VAD server protocol
  depends on it): probabilities from the reference onnxruntime path, window by window with the
  state carried over and the last window zero-padded; rates that are multiples of 16 kHz
  decimated with ``x[::step]`` and the result scaled back by ``step`` like silero does; every
  rule of its post-processing (``neg_threshold``, ``min_silence_at_max_speech``,
  ``use_max_poss_sil_at_max_speech``, padding merges, ``return_seconds`` /
  ``time_resolution``). Other rates are refused, as silero refuses them.
* ``compat=None`` (default) is the fast path: the same post-processing over probabilities from
  the fast kernel (within 1e-4 of the reference), any input rate through anti-aliased
  resampling, sample indices reported at the *input* rate.

:func:`timestamps_from_probabilities` is the post-processing alone (silero's
``get_speech_timestamps_from_probs``), usable with probabilities from anywhere.

One deliberate difference in both modes: ``int16`` input is scaled to [-1, 1) (silero would
feed the raw integers to the model). Pass float32 audio for bit-exact parity.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from caesura.audio import resample, validate_audio, validate_sample_rate
from caesura.errors import InvalidOptionError, UnsupportedSampleRateError
from caesura.vad.model import SileroVAD

__all__ = [
    "TimestampOptions",
    "silero_decimation",
    "speech_probabilities",
    "speech_timestamps",
    "timestamps_from_probabilities",
]

logger = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]
Timestamp = dict[str, float]
Compat = Literal["silero"] | None


@dataclass(frozen=True)
class TimestampOptions:
    """Post-processing options of :func:`speech_timestamps`, named and defaulted as in silero-vad.

    ``neg_threshold`` ``None`` means ``max(threshold - 0.15, 0.01)``.
    ``min_silence_at_max_speech`` is in milliseconds (silero's name has no unit).
    Raises :class:`~caesura.errors.InvalidOptionError` naming the bad field.
    """

    threshold: float = 0.5
    min_speech_duration_ms: float = 250
    max_speech_duration_s: float = math.inf
    min_silence_duration_ms: float = 100
    speech_pad_ms: float = 30
    return_seconds: bool = False
    time_resolution: int = 1
    neg_threshold: float | None = None
    min_silence_at_max_speech: float = 98
    use_max_poss_sil_at_max_speech: bool = True

    def __post_init__(self) -> None:
        def num(name: str) -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise InvalidOptionError(f"{name} must be a number, got {v!r}")
            f = float(v)
            if math.isnan(f):
                raise InvalidOptionError(f"{name} must not be NaN")
            return f

        thr = num("threshold")
        if not 0.0 < thr <= 1.0:
            raise InvalidOptionError(f"threshold must be in (0, 1], got {self.threshold!r}")
        if self.neg_threshold is not None:
            neg = num("neg_threshold")
            if not 0.0 <= neg <= 1.0:
                raise InvalidOptionError(
                    f"neg_threshold must be in [0, 1], got {self.neg_threshold!r}"
                )
        for name in (
            "min_speech_duration_ms",
            "min_silence_duration_ms",
            "speech_pad_ms",
            "min_silence_at_max_speech",
        ):
            v = num(name)
            if v < 0 or math.isinf(v):
                raise InvalidOptionError(f"{name} must be a finite number >= 0, got {v!r}")
        if num("max_speech_duration_s") <= 0:
            raise InvalidOptionError(
                f"max_speech_duration_s must be > 0 (or inf), got {self.max_speech_duration_s!r}"
            )
        tr = self.time_resolution
        if isinstance(tr, bool) or not isinstance(tr, (int, np.integer)) or not 0 <= tr <= 9:
            raise InvalidOptionError(f"time_resolution must be an integer in 0..9, got {tr!r}")
        for name in ("return_seconds", "use_max_poss_sil_at_max_speech"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise InvalidOptionError(f"{name} must be a bool, got {getattr(self, name)!r}")

    @classmethod
    def from_kwargs(cls, **options: Any) -> TimestampOptions:
        """Build from keyword options; unknown names raise InvalidOptionError listing valid ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidOptionError(
                f"unknown speech_timestamps option(s) {unknown}; valid: {sorted(known)}"
            )
        return cls(**options)


def timestamps_from_probabilities(
    speech_probs: Sequence[float] | npt.NDArray[np.floating[Any]],
    *,
    sample_rate: int = 16000,
    audio_length_samples: int | None = None,
    step: int = 1,
    options: TimestampOptions | None = None,
    **kwargs: Any,
) -> list[Timestamp]:
    """silero-vad's ``get_speech_timestamps_from_probs``, rule for rule.

    ``speech_probs`` holds one probability per window (512 samples at 16 kHz, 256 at 8 kHz).
    ``audio_length_samples`` defaults to ``len(speech_probs) * window``; ``step`` scales the
    sample results (silero's decimation factor). Options come as ``options`` or keywords.
    """
    if options is None:
        options = TimestampOptions.from_kwargs(**kwargs)
    elif kwargs:
        raise InvalidOptionError("pass either options= or keyword options, not both")
    if sample_rate not in (8000, 16000):
        raise UnsupportedSampleRateError(
            f"probabilities must come from a 8000 or 16000 Hz model stream, got {sample_rate}"
        )
    o = options
    sampling_rate = sample_rate
    probs = [float(p) for p in np.asarray(speech_probs, dtype=np.float64).reshape(-1)]

    # --- verbatim port of silero_vad.utils_vad.get_speech_timestamps_from_probs (6.2.3) ---
    window_size_samples = 512 if sampling_rate == 16000 else 256
    if audio_length_samples is None:
        audio_length_samples = len(probs) * window_size_samples

    threshold = float(o.threshold)
    min_speech_samples = sampling_rate * o.min_speech_duration_ms / 1000
    speech_pad_samples = sampling_rate * o.speech_pad_ms / 1000
    max_speech_samples = (
        sampling_rate * o.max_speech_duration_s - window_size_samples - 2 * speech_pad_samples
    )
    min_silence_samples = sampling_rate * o.min_silence_duration_ms / 1000
    min_silence_samples_at_max_speech = sampling_rate * o.min_silence_at_max_speech / 1000

    triggered = False
    speeches: list[dict[str, Any]] = []
    current_speech: dict[str, Any] = {}

    neg_threshold = o.neg_threshold
    if neg_threshold is None:
        neg_threshold = max(threshold - 0.15, 0.01)
    temp_end = 0
    prev_end = next_start = 0
    possible_ends: list[tuple[int, int]] = []

    for i, speech_prob in enumerate(probs):
        cur_sample = window_size_samples * i

        if (speech_prob >= threshold) and temp_end:
            sil_dur = cur_sample - temp_end
            if sil_dur > min_silence_samples_at_max_speech:
                possible_ends.append((temp_end, sil_dur))
            temp_end = 0
            if next_start < prev_end:
                next_start = cur_sample

        if (speech_prob >= threshold) and not triggered:
            triggered = True
            current_speech["start"] = cur_sample
            continue

        if triggered and (cur_sample - current_speech["start"] > max_speech_samples):
            if o.use_max_poss_sil_at_max_speech and possible_ends:
                prev_end, dur = max(possible_ends, key=lambda x: x[1])
                current_speech["end"] = prev_end
                speeches.append(current_speech)
                current_speech = {}
                next_start = prev_end + dur

                if next_start < prev_end + cur_sample:
                    current_speech["start"] = next_start
                else:
                    triggered = False
                prev_end = next_start = temp_end = 0
                possible_ends = []
            elif prev_end:
                current_speech["end"] = prev_end
                speeches.append(current_speech)
                current_speech = {}
                if next_start < prev_end:
                    triggered = False
                else:
                    current_speech["start"] = next_start
                prev_end = next_start = temp_end = 0
                possible_ends = []
            else:
                current_speech["end"] = cur_sample
                speeches.append(current_speech)
                current_speech = {}
                prev_end = next_start = temp_end = 0
                triggered = False
                possible_ends = []
                continue

        if (speech_prob < neg_threshold) and triggered:
            if not temp_end:
                temp_end = cur_sample
            sil_dur_now = cur_sample - temp_end

            if (
                not o.use_max_poss_sil_at_max_speech
                and sil_dur_now > min_silence_samples_at_max_speech
            ):
                prev_end = temp_end

            if sil_dur_now < min_silence_samples:
                continue
            current_speech["end"] = temp_end
            if (current_speech["end"] - current_speech["start"]) > min_speech_samples:
                speeches.append(current_speech)
            current_speech = {}
            prev_end = next_start = temp_end = 0
            triggered = False
            possible_ends = []
            continue

    if current_speech and (audio_length_samples - current_speech["start"]) > min_speech_samples:
        current_speech["end"] = audio_length_samples
        speeches.append(current_speech)

    for i, speech in enumerate(speeches):
        if i == 0:
            speech["start"] = int(max(0, speech["start"] - speech_pad_samples))
        if i != len(speeches) - 1:
            silence_duration = speeches[i + 1]["start"] - speech["end"]
            if silence_duration < 2 * speech_pad_samples:
                speech["end"] += int(silence_duration // 2)
                speeches[i + 1]["start"] = int(
                    max(0, speeches[i + 1]["start"] - silence_duration // 2)
                )
            else:
                speech["end"] = int(min(audio_length_samples, speech["end"] + speech_pad_samples))
                speeches[i + 1]["start"] = int(
                    max(0, speeches[i + 1]["start"] - speech_pad_samples)
                )
        else:
            speech["end"] = int(min(audio_length_samples, speech["end"] + speech_pad_samples))

    if o.return_seconds:
        audio_length_seconds = audio_length_samples / sampling_rate
        for speech_dict in speeches:
            speech_dict["start"] = max(
                round(speech_dict["start"] / sampling_rate, o.time_resolution), 0
            )
            speech_dict["end"] = min(
                round(speech_dict["end"] / sampling_rate, o.time_resolution),
                audio_length_seconds,
            )
    elif step > 1:
        for speech_dict in speeches:
            speech_dict["start"] *= step
            speech_dict["end"] *= step
    # --- end of port ---
    return speeches


def speech_probabilities(
    audio: Float32Array,
    sample_rate: int,
    *,
    model: SileroVAD | None = None,
    reference: bool = False,
) -> Float32Array:
    """Per-window probabilities of a whole recording at a model rate (8 or 16 kHz).

    One probability per window of 512 (16 kHz) / 256 (8 kHz) samples, the last window
    zero-padded, state and context carried from window to window -- exactly what
    ``get_speech_timestamps`` computes. ``reference=True`` uses the onnxruntime reference path
    (bit-exact with silero-vad's ``OnnxWrapper``), otherwise the fast kernel.
    """
    if sample_rate not in (8000, 16000):
        raise UnsupportedSampleRateError(
            f"speech_probabilities needs 8000 or 16000 Hz audio, got {sample_rate} Hz"
        )
    m = model if model is not None else SileroVAD.load()
    probs = m.probabilities(audio, sample_rate, reference=reference)
    return np.asarray(probs, dtype=np.float32).reshape(-1)


def silero_decimation(sample_rate: int) -> int | None:
    """The step by which silero-vad decimates ``sample_rate`` (``compat="silero"``).

    1 for 8000 and 16000 Hz, ``sample_rate // 16000`` for the multiples of 16 kHz above it;
    ``None`` for every rate silero-vad refuses (44.1 kHz, 22.05 kHz, 12 kHz, ...).
    """
    if sample_rate in (8000, 16000):
        return 1
    if sample_rate > 16000 and sample_rate % 16000 == 0:
        return sample_rate // 16000
    return None


def speech_timestamps(
    audio: npt.NDArray[Any],
    sample_rate: int,
    *,
    compat: Compat = None,
    model: SileroVAD | None = None,
    **options: Any,
) -> list[Timestamp]:
    """Speech segments of a whole recording, as ``[{"start": s, "end": e}, ...]``.

    ``audio``: 1-D int16 / float32 / float64 mono array. ``options``: silero-vad's names --
    ``threshold``, ``neg_threshold``, ``min_speech_duration_ms``, ``min_silence_duration_ms``,
    ``speech_pad_ms``, ``max_speech_duration_s``, ``min_silence_at_max_speech``,
    ``use_max_poss_sil_at_max_speech``, ``return_seconds``, ``time_resolution`` (see
    :class:`TimestampOptions`). Results are sample indices at the input rate (or seconds with
    ``return_seconds=True``).

    ``compat="silero"`` reproduces silero-vad 6.2.3's ``get_speech_timestamps`` exactly (8 kHz,
    16 kHz and multiples of 16 kHz, like silero); ``compat=None`` is the fast path for any rate.
    """
    if compat not in (None, "silero"):
        raise InvalidOptionError(f"compat must be None or 'silero', got {compat!r}")
    opts = TimestampOptions.from_kwargs(**options)
    sr_in = validate_sample_rate(sample_rate)
    x = validate_audio(audio)

    if compat == "silero":
        silero_step = silero_decimation(sr_in)
        if silero_step is None:
            raise UnsupportedSampleRateError(
                f"compat='silero' supports 8000, 16000 Hz or multiples of 16000 Hz "
                f"(like silero-vad), got {sr_in} Hz; use compat=None to resample any rate"
            )
        step = silero_step
        if step > 1:
            x = np.ascontiguousarray(x[::step])  # silero's own decimation, kept for parity
        sr = sr_in // step
        if x.size == 0:
            return []
        probs = speech_probabilities(x, sr, model=model, reference=True)
        return timestamps_from_probabilities(
            probs, sample_rate=sr, audio_length_samples=x.size, step=step, options=opts
        )

    sr = sr_in if sr_in in (8000, 16000) else 16000
    if sr != sr_in:
        x = resample(x, sr_in, sr)
    if x.size == 0:
        return []
    probs = speech_probabilities(x, sr, model=model, reference=False)
    if opts.return_seconds or sr == sr_in:
        return timestamps_from_probabilities(
            probs, sample_rate=sr, audio_length_samples=x.size, options=opts
        )
    # sample indices back at the input rate
    n_in = int(np.asarray(audio).shape[0])
    out = timestamps_from_probabilities(
        probs, sample_rate=sr, audio_length_samples=x.size, options=opts
    )
    scale = sr_in / sr
    for seg in out:
        seg["start"] = min(n_in, round(seg["start"] * scale))
        seg["end"] = min(n_in, round(seg["end"] * scale))
    return out
