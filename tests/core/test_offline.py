"""Offline ``speech_timestamps`` and the streaming ``VADSession`` on the bundled model."""

from __future__ import annotations

import numpy as np
import pytest

from caesura.audio import read_audio, resample
from caesura.errors import InvalidAudioError, InvalidOptionError, UnsupportedSampleRateError
from caesura.vad.model import SileroVAD
from caesura.vad.offline import TimestampOptions, speech_timestamps
from caesura.vad.segmenter import (
    EnergyGate,
    Segmenter,
    SegmenterOptions,
    SpeechEnd,
    SpeechStart,
)
from caesura.vad.session import VADSession


@pytest.fixture(scope="module")
def model():
    return SileroVAD.load()


@pytest.fixture(scope="module")
def speech(fixtures_dir):
    x, sr = read_audio(fixtures_dir / "speech_16k.wav")
    assert sr == 16000
    return x


def test_default_and_compat_paths_on_fixture(speech, model):
    fast = speech_timestamps(speech, 16000, model=model)
    exact = speech_timestamps(speech, 16000, compat="silero", model=model)
    assert len(exact) >= 3
    assert len(fast) == len(exact)
    for a, b in zip(fast, exact, strict=True):
        assert abs(a["start"] - b["start"]) <= 512
        assert abs(a["end"] - b["end"]) <= 512
    for seg in exact:
        assert 0 <= seg["start"] < seg["end"] <= speech.size


def test_int16_input_matches_scaled_float(speech, model):
    pcm = np.round(speech * 32767).astype(np.int16)
    a = speech_timestamps(pcm, 16000, compat="silero", model=model)
    b = speech_timestamps(pcm.astype(np.float32) / 32768, 16000, compat="silero", model=model)
    assert a == b


def test_return_seconds_and_options(speech, model):
    secs = speech_timestamps(speech, 16000, model=model, return_seconds=True, time_resolution=2)
    samples = speech_timestamps(speech, 16000, model=model)
    for s, t in zip(secs, samples, strict=True):
        assert s["start"] == pytest.approx(t["start"] / 16000, abs=0.006)
    split = speech_timestamps(speech, 16000, model=model, max_speech_duration_s=1.0)
    assert len(split) > len(samples)
    assert all(s["end"] - s["start"] <= 16000 + 2 * 480 for s in split)
    strict = speech_timestamps(
        speech, 16000, model=model, threshold=0.95, min_speech_duration_ms=1500
    )
    assert sum(s["end"] - s["start"] for s in strict) < sum(s["end"] - s["start"] for s in samples)
    assert strict != samples


def test_8k_and_other_rates(speech, model):
    x8 = resample(speech, 16000, 8000)
    s8 = speech_timestamps(x8, 8000, model=model)
    ref = speech_timestamps(speech, 16000, model=model)
    assert len(s8) == len(ref)
    for a, b in zip(s8, ref, strict=True):
        assert abs(a["start"] * 2 - b["start"]) <= 2048
    x44 = resample(speech, 16000, 44100)
    s44 = speech_timestamps(x44, 44100, model=model)
    assert len(s44) == len(ref)
    for a, b in zip(s44, ref, strict=True):
        assert a["start"] == pytest.approx(b["start"] * 44100 / 16000, abs=44100 * 0.07)
        assert a["end"] <= x44.size
    with pytest.raises(UnsupportedSampleRateError, match="44100"):
        speech_timestamps(x44, 44100, compat="silero", model=model)
    # 48 kHz in compat mode: silero's decimation, results at 48 kHz samples
    x48 = resample(speech, 16000, 48000)
    s48 = speech_timestamps(x48, 48000, compat="silero", model=model)
    assert len(s48) == len(ref)
    assert all(s["start"] % 3 == 0 for s in s48)


def test_empty_and_bad_input(model):
    assert speech_timestamps(np.zeros(0, dtype=np.float32), 16000, model=model) == []
    assert speech_timestamps(np.zeros(16000, dtype=np.float32), 16000, model=model) == []
    with pytest.raises(InvalidAudioError, match="2-D"):
        speech_timestamps(np.zeros((2, 100), dtype=np.float32), 16000, model=model)
    with pytest.raises(InvalidAudioError, match="NaN"):
        speech_timestamps(np.full(1000, np.nan, dtype=np.float32), 16000, model=model)
    with pytest.raises(InvalidOptionError, match="unknown"):
        speech_timestamps(np.zeros(100, dtype=np.float32), 16000, min_speech_ms=3)
    with pytest.raises(InvalidOptionError, match="compat"):
        speech_timestamps(np.zeros(100, dtype=np.float32), 16000, compat="webrtc")  # type: ignore[arg-type]
    with pytest.raises(UnsupportedSampleRateError):
        speech_timestamps(np.zeros(100, dtype=np.float32), 0)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"threshold": 0}, "threshold"),
        ({"neg_threshold": 2}, "neg_threshold"),
        ({"speech_pad_ms": -1}, "speech_pad_ms"),
        ({"max_speech_duration_s": -1}, "max_speech_duration_s"),
        ({"time_resolution": 1.5}, "time_resolution"),
        ({"return_seconds": "yes"}, "return_seconds"),
    ],
)
def test_bad_timestamp_options(kw, match):
    with pytest.raises(InvalidOptionError, match=match):
        TimestampOptions(**kw)


# ------------------------------------------------------------------------------ VADSession
def key(e):
    audio = getattr(e, "audio", None)
    fields = {k: v for k, v in vars(e).items() if k != "audio"} if hasattr(e, "__dict__") else {}
    return (
        type(e).__name__,
        tuple(sorted(fields.items())),
        None if audio is None else audio.tobytes(),
    )


def collect(sess, x, rng=None, chunk=320):
    ev = []
    i = 0
    while i < x.size:
        k = int(rng.integers(1, 4000)) if rng is not None else chunk
        ev += sess.feed(x[i : i + k])
        i += k
    return ev + sess.flush()


def test_session_events_and_chunking_invariance(speech, model):
    opts = SegmenterOptions()
    ref = collect(VADSession(model, options=opts), speech)
    ends = [e for e in ref if isinstance(e, SpeechEnd)]
    assert len(ends) >= 3
    assert sum(isinstance(e, SpeechStart) for e in ref) == len(ends)
    for e in ends:
        assert e.audio is not None
        assert e.audio.size == e.audio_end_sample - e.audio_start_sample
        np.testing.assert_array_equal(e.audio, speech[e.audio_start_sample : e.audio_end_sample])
    rng = np.random.default_rng(5)
    for _ in range(2):
        got = collect(VADSession(model, options=opts), speech, rng)
        assert [key(e) for e in got] == [key(e) for e in ref]


def test_session_matches_offline_probabilities(speech, model):
    """Streaming segments agree with the segmenter over offline probabilities."""
    probs = model.probabilities(speech, 16000)
    seg = Segmenter()
    off = [e for e in seg.process(probs) + seg.flush() if isinstance(e, SpeechEnd)]
    live = [e for e in collect(VADSession(model), speech) if isinstance(e, SpeechEnd)]
    assert len(off) == len(live)
    for a, b in zip(off, live, strict=True):
        assert abs(a.start_sample - b.start_sample) <= 512
        assert abs(a.end_sample - b.end_sample) <= 512


def test_session_resampled_input(speech, model):
    x48 = resample(speech, 16000, 48000)
    live = [
        e for e in collect(VADSession(model, sample_rate=48000), x48) if isinstance(e, SpeechEnd)
    ]
    ref = [e for e in collect(VADSession(model), speech) if isinstance(e, SpeechEnd)]
    assert len(live) == len(ref)
    assert all(e.sample_rate == 16000 for e in live)
    for a, b in zip(live, ref, strict=True):
        assert abs(a.start_sample - b.start_sample) <= 1024


def test_energy_gate_skips_digital_silence(speech, model):
    x = np.concatenate([np.zeros(32000, np.float32), speech, np.zeros(48000, np.float32)])
    plain = VADSession(model)
    gated = VADSession(model, energy_gate=EnergyGate())
    a = [e for e in collect(plain, x) if isinstance(e, SpeechEnd)]
    seen = []
    i = 0
    while i < x.size:
        seen += gated.feed(x[i : i + 1000])
        i += 1000
    n_gated = gated.windows_gated
    seen += gated.flush()
    b = [e for e in seen if isinstance(e, SpeechEnd)]
    assert n_gated >= (32000 + 48000) // 512 - 2
    assert len(a) == len(b)
    for p, q in zip(a, b, strict=True):
        assert abs(p.start_sample - q.start_sample) <= 1024
        assert abs(p.end_sample - q.end_sample) <= 1024
    with pytest.raises(InvalidOptionError, match="energy_gate"):
        VADSession(model, energy_gate="loud")  # type: ignore[arg-type]
    assert VADSession(model, energy_gate=-70.0).energy_gate.threshold_dbfs == -70.0


def test_session_window_events_and_reset(speech, model):
    sess = VADSession(model, window_events=True)
    ev = sess.feed(speech[:16000])
    wins = [e for e in ev if e.kind == "window"]
    assert len(wins) == 16000 // 512
    assert all(0.0 <= w.probability <= 1.0 for w in wins)
    assert sess.samples_processed == len(wins) * 512
    sess.reset()
    assert sess.samples_processed == 0
    assert not sess.speaking
