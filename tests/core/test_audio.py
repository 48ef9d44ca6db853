"""caesura.audio: array validation, PCM16 bytes, resampling, WAV decoding, read_audio."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caesura.audio import (
    Resampler,
    decode_wav,
    pcm16_bytes_to_float32,
    read_audio,
    resample,
    validate_audio,
    validate_sample_rate,
)
from caesura.errors import (
    AudioDecodeError,
    InvalidAudioError,
    InvalidOptionError,
    MissingDependencyError,
    UnsupportedSampleRateError,
)

RNG = np.random.default_rng(1234)


# ---------------------------------------------------------------------------- validation


def test_validate_int16_scaled():
    x = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    out = validate_audio(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0.0, 0.5, -1.0, 32767 / 32768])


def test_validate_float32_passthrough_and_float64_converted():
    x = RNG.standard_normal(100).astype(np.float32)
    assert validate_audio(x) is x
    out = validate_audio(x.astype(np.float64))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.float16, np.int8, np.complex64])
def test_validate_refuses_dtype(dtype):
    with pytest.raises(InvalidAudioError, match="dtype"):
        validate_audio(np.zeros(10, dtype=dtype))


def test_validate_refuses_stereo_naming_channels():
    with pytest.raises(InvalidAudioError, match=r"2-D.*\(100, 2\).*mono"):
        validate_audio(np.zeros((100, 2), dtype=np.float32))


def test_validate_refuses_3d():
    with pytest.raises(InvalidAudioError, match="3-D"):
        validate_audio(np.zeros((2, 3, 4), dtype=np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_validate_refuses_nonfinite(bad):
    x = np.zeros(50, dtype=np.float32)
    x[17] = bad
    with pytest.raises(InvalidAudioError, match=r"NaN/inf.*index 17"):
        validate_audio(x)


def test_validate_float64_overflow_is_nonfinite():
    with pytest.raises(InvalidAudioError, match="NaN/inf"):
        validate_audio(np.array([0.0, 1e300]))


def test_validate_empty():
    assert validate_audio(np.zeros(0, dtype=np.float32)).size == 0
    with pytest.raises(InvalidAudioError, match="empty"):
        validate_audio(np.zeros(0, dtype=np.int16), allow_empty=False)


def test_validate_refuses_non_array():
    with pytest.raises(InvalidAudioError, match="numpy array"):
        validate_audio([0.0, 0.1])


@pytest.mark.parametrize("rate", [0, -16000, 999, 800_000, 16000.5, "16000", True, None])
def test_validate_sample_rate_refuses(rate):
    with pytest.raises(UnsupportedSampleRateError):
        validate_sample_rate(rate)


def test_validate_sample_rate_accepts_integral():
    assert validate_sample_rate(np.int64(8000)) == 8000
    assert validate_sample_rate(44100.0) == 44100


# ---------------------------------------------------------------------------- PCM16 bytes


def test_pcm16_bytes_roundtrip():
    x = np.array([0, 1, -1, 32767, -32768], dtype="<i2")
    out = pcm16_bytes_to_float32(x.tobytes())
    np.testing.assert_array_equal(out, x.astype(np.float32) / 32768)
    assert pcm16_bytes_to_float32(bytearray(x.tobytes())).shape == (5,)
    assert pcm16_bytes_to_float32(b"").shape == (0,)


def test_pcm16_odd_byte_count():
    with pytest.raises(InvalidAudioError, match="odd byte count"):
        pcm16_bytes_to_float32(b"\x00\x01\x02")


def test_pcm16_refuses_str():
    with pytest.raises(InvalidAudioError, match="bytes"):
        pcm16_bytes_to_float32("abcd")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- resampling


@pytest.mark.parametrize(
    ("src", "dst"),
    [(48000, 16000), (44100, 16000), (24000, 16000), (8000, 16000), (11025, 16000), (16000, 8000)],
)
def test_resampler_chunking_invariant(src, dst):
    x = (RNG.standard_normal(src) * 0.1).astype(np.float32)
    whole = Resampler(src, dst)
    ref = np.concatenate([whole.process(x), whole.flush()])
    r = Resampler(src, dst)
    sizes = RNG.integers(1, 3000, size=200)
    out, i = [], 0
    for n in sizes:
        out.append(r.process(x[i : i + n]))
        i += n
        if i >= len(x):
            break
    out.append(r.process(x[i:]))
    out.append(r.flush())
    got = np.concatenate(out)
    np.testing.assert_array_equal(got, ref)
    assert abs(len(got) - len(x) * dst / src) <= 2


def test_resampler_is_anti_aliased():
    # A 7 kHz tone at 48 kHz is above the 16 kHz Nyquist (8 kHz)? No: use 12 kHz, which
    # x[::3] would fold down to 4 kHz at full strength.
    sr = 48000
    t = np.arange(sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 12000 * t)).astype(np.float32)
    r = Resampler(sr, 16000)
    y = np.concatenate([r.process(tone), r.flush()])
    decimated = tone[::3]
    assert np.sqrt(np.mean(decimated**2)) > 0.3  # naive decimation aliases
    assert np.sqrt(np.mean(y[1000:-1000] ** 2)) < 0.01  # soxr removes it


def test_resampler_keeps_in_band_tone_aligned():
    sr = 48000
    t = np.arange(sr) / sr
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    r = Resampler(sr, 16000)
    y = np.concatenate([r.process(tone), r.flush()])
    t16 = np.arange(len(y)) / 16000
    np.testing.assert_allclose(y[500:-500], np.sin(2 * np.pi * 440 * t16)[500:-500], atol=2e-3)


STREAM_RATES = [8000, 24000, 44100, 48000]


def _stream_chunks(r: Resampler, x: np.ndarray, chunk: int) -> tuple[np.ndarray, list[float]]:
    """Feed x in chunks; the output and, after each chunk, input time fed minus output time
    emitted (s): the audio the resampler still holds back."""
    outs, held, emitted = [], [], 0
    for i in range(0, len(x), chunk):
        y = r.process(x[i : i + chunk])
        outs.append(y)
        emitted += y.size
        held.append(min(i + chunk, len(x)) / r.in_rate - emitted / r.out_rate)
    outs.append(r.flush())
    return np.concatenate(outs), held


def _xcorr_lag_s(got: np.ndarray, ref: np.ndarray, rate: int) -> float:
    n = min(len(got), len(ref))
    size = 1 << (2 * n - 1).bit_length()
    xc = np.fft.irfft(np.fft.rfft(got[:n], size) * np.conj(np.fft.rfft(ref[:n], size)), size)
    m = rate // 10
    lags = np.r_[np.arange(0, m + 1), np.arange(-m, 0)]
    return float(lags[int(np.argmax(np.r_[xc[: m + 1], xc[-m:]]))]) / rate


@pytest.mark.parametrize("chunk_ms", [10, 20])
@pytest.mark.parametrize("src", STREAM_RATES)
def test_resampler_delay_at_most_5ms(src, chunk_ms):
    # clicks at irregular times; delay = where the output puts them (cross-correlation with
    # the offline resample: the timeline shift) + what is held back after each chunk
    rng = np.random.default_rng(src + chunk_ms)
    x = np.zeros(2 * src, dtype=np.float32)
    x[(rng.uniform(0.05, 1.95, size=40) * src).astype(int)] = 0.5
    r = Resampler(src, 16000)
    got, held = _stream_chunks(r, x, src * chunk_ms // 1000)
    lag = _xcorr_lag_s(got, resample(x, src, 16000), 16000)
    assert abs(lag) <= 1 / 16000
    assert max(held) + lag <= 0.005
    assert r.latency_ms == 4.0


def _tone_through(src: int, freq: float, chunk_ms: int = 20) -> np.ndarray:
    t = np.arange(src) / src
    tone = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    y, _ = _stream_chunks(Resampler(src, 16000), tone, src * chunk_ms // 1000)
    return y[1600:14400].astype(np.float64)  # the steady part


def _fit(y: np.ndarray, freq: float) -> tuple[float, np.ndarray]:
    t = (np.arange(len(y)) + 1600) / 16000
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    return float(np.hypot(*coef)), y - basis @ coef


@pytest.mark.parametrize("src", STREAM_RATES)
def test_resampler_passband_flat_and_no_images(src):
    edge = 0.85 * min(src, 16000) / 2  # 3.4 kHz at 8 kHz input, 6.8 kHz otherwise
    for freq in np.geomspace(100.0, edge, 6):
        amp, rest = _fit(_tone_through(src, freq), freq)
        assert abs(20 * np.log10(amp / 0.5)) < 0.05, freq
        # what is left is images (upsampling) or nothing: 80 dB below the tone
        assert 20 * np.log10(np.sqrt(np.mean(rest**2)) / (0.5 / np.sqrt(2))) < -75, freq


@pytest.mark.parametrize("src", [24000, 44100, 48000])
def test_resampler_aliasing_down(src):
    # tones above 8 kHz whose aliases would land in the passband (<= 6.8 kHz)
    for freq in np.linspace(9200.0, 0.98 * src / 2, 6):
        y = _tone_through(src, freq)
        assert 20 * np.log10(np.sqrt(np.mean(y**2)) / (0.5 / np.sqrt(2))) < -75, freq


@pytest.mark.parametrize("src", STREAM_RATES)
def test_resampler_matches_offline_in_band(src):
    rng = np.random.default_rng(src)
    t = np.arange(src) / src
    freqs = rng.uniform(100.0, 0.85 * min(src, 16000) / 2, 30)
    x = (0.02 * np.sin(2 * np.pi * freqs[:, None] * t + rng.uniform(0, 6.3, (30, 1)))).sum(0)
    x = x.astype(np.float32)
    y, _ = _stream_chunks(Resampler(src, 16000), x, src // 100)
    ref = resample(x, src, 16000)
    assert len(y) == len(ref)
    err = (y - ref)[1600:-1600].astype(np.float64)
    snr = 10 * np.log10(np.sum(ref[1600:-1600].astype(np.float64) ** 2) / np.sum(err**2))
    assert snr > 60


def test_resampler_same_rate_and_options():
    x = RNG.standard_normal(1000).astype(np.float32)
    r = Resampler(16000, 16000)
    np.testing.assert_array_equal(r.process(x), x)
    assert r.flush().size == 0
    assert Resampler(48000, 16000, latency_ms=2).latency_ms == 2.0
    for bad in (0.5, 100, "4", True):
        with pytest.raises(InvalidOptionError, match="latency_ms"):
            Resampler(48000, 16000, latency_ms=bad)  # type: ignore[arg-type]


def test_resample_whole_array():
    x = (RNG.standard_normal(44100) * 0.1).astype(np.float32)
    y = resample(x, 44100, 16000)
    assert y.dtype == np.float32
    assert abs(len(y) - 16000) <= 1
    assert resample(x, 16000, 16000) is x


# ---------------------------------------------------------------------------- WAV


def make_wav(
    frames: np.ndarray,
    rate: int,
    *,
    fmt: str = "pcm16",
    extensible: bool = False,
    extra_chunks: bytes = b"",
) -> bytes:
    """A WAV file written by hand (frames float in [-1, 1], shape [n, channels])."""
    frames = np.atleast_2d(frames.T).T if frames.ndim == 1 else frames
    channels = frames.shape[1]
    if fmt == "pcm8":
        data = np.clip(np.round(frames * 128 + 128), 0, 255).astype(np.uint8).tobytes()
        tag, bits = 1, 8
    elif fmt == "pcm16":
        data = np.clip(np.round(frames * 32768), -32768, 32767).astype("<i2").tobytes()
        tag, bits = 1, 16
    elif fmt == "pcm24":
        v = np.clip(np.round(frames * 8388608), -8388608, 8388607).astype("<i4")
        data = v.reshape(-1, 1).view(np.uint8)[:, :3].tobytes()
        tag, bits = 1, 24
    elif fmt == "pcm32":
        v = np.clip(np.round(frames.astype(np.float64) * 2147483648), -(2**31), 2**31 - 1)
        data = v.astype("<i4").tobytes()
        tag, bits = 1, 32
    elif fmt == "f32":
        data = frames.astype("<f4").tobytes()
        tag, bits = 3, 32
    elif fmt == "f64":
        data = frames.astype("<f8").tobytes()
        tag, bits = 3, 64
    else:
        raise ValueError(fmt)
    block = channels * bits // 8
    if extensible:
        guid = struct.pack("<H", tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt_body = struct.pack(
            "<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0
        )
        fmt_body += guid
    else:
        fmt_body = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body + extra_chunks
    body += b"data" + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def signal(n: int, channels: int) -> np.ndarray:
    return (RNG.uniform(-0.9, 0.9, size=(n, channels))).astype(np.float32)


@pytest.mark.parametrize(
    ("fmt", "tol"),
    [
        ("pcm8", 1 / 128),
        ("pcm16", 1 / 32768),
        ("pcm24", 2e-7),
        ("pcm32", 1e-7),
        ("f32", 0),
        ("f64", 0),
    ],
)
@pytest.mark.parametrize("channels", [1, 2, 6])
@pytest.mark.parametrize("extensible", [False, True])
def test_decode_wav_formats(fmt, tol, channels, extensible):
    frames = signal(101, channels)
    out, rate = decode_wav(make_wav(frames, 22050, fmt=fmt, extensible=extensible))
    assert rate == 22050
    assert out.dtype == np.float32
    assert out.shape == (101, channels)
    np.testing.assert_allclose(out, frames, atol=tol + 1e-7)


def test_decode_wav_matches_soundfile(tmp_path):
    sf = pytest.importorskip("soundfile")
    frames = signal(1000, 2)
    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        path = tmp_path / f"{subtype}.wav"
        sf.write(path, frames, 8000, subtype=subtype)
        ref, _ = sf.read(path, dtype="float32", always_2d=True)
        out, rate = decode_wav(path.read_bytes())
        assert rate == 8000
        np.testing.assert_allclose(out, ref, atol=1e-7, err_msg=subtype)


@pytest.mark.parametrize("subtype", ["ULAW", "ALAW"])
@pytest.mark.parametrize(("container", "channels"), [("WAV", 1), ("WAV", 2), ("WAVEX", 1)])
def test_decode_wav_g711_matches_soundfile(tmp_path, subtype, container, channels):
    # 8 kHz mu-law / A-law: the telephone formats, decoded without soundfile
    sf = pytest.importorskip("soundfile")
    rng = np.random.default_rng(7)
    frames = np.clip(rng.normal(0.0, 0.3, (4000, channels)), -1, 1)
    path = tmp_path / f"{subtype}-{container}.wav"
    sf.write(path, frames, 8000, subtype=subtype, format=container)
    ref, _ = sf.read(path, dtype="float32", always_2d=True)
    out, rate = decode_wav(path.read_bytes())
    assert rate == 8000
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_allclose(out, frames, atol=0.02)  # G.711 keeps ~13 bits


@pytest.mark.parametrize(("tag", "subtype"), [(7, "ULAW"), (6, "ALAW")])
def test_decode_wav_g711_every_code_matches_soundfile(tmp_path, tag, subtype):
    sf = pytest.importorskip("soundfile")
    codes = bytes(range(256))
    fmt = struct.pack("<HHIIHHH", tag, 1, 8000, 8000, 1, 8, 0)
    body = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 256) + codes
    path = tmp_path / f"{subtype}.wav"
    path.write_bytes(riff(body))
    assert sf.info(path).subtype == subtype
    ref, _ = sf.read(path, dtype="float32", always_2d=True)
    out, _ = decode_wav(path.read_bytes())
    np.testing.assert_array_equal(out, ref)
    # mu-law has two zero codes (+0, -0); A-law's smallest steps are +-8/32768
    assert len(np.unique(out)) == (255 if subtype == "ULAW" else 256)


def test_read_audio_mulaw_without_soundfile(tmp_path, monkeypatch):
    sf = pytest.importorskip("soundfile")
    frames = signal(800, 1)
    path = tmp_path / "call.wav"
    sf.write(path, frames, 8000, subtype="ULAW")
    ref, _ = sf.read(path, dtype="float32")
    monkeypatch.setitem(sys.modules, "soundfile", None)
    audio, rate = read_audio(path)
    assert rate == 8000
    np.testing.assert_array_equal(audio, ref)


def test_decode_wav_skips_unknown_chunks_and_odd_padding():
    extra = b"LIST" + struct.pack("<I", 5) + b"abcde" + b"\x00"
    frames = signal(7, 1)
    out, _ = decode_wav(make_wav(frames, 16000, fmt="pcm8", extra_chunks=extra))
    np.testing.assert_allclose(out, frames, atol=1 / 128)


def test_decode_wav_streaming_sizes():
    frames = signal(10, 1)
    wav = bytearray(make_wav(frames, 16000))
    wav[4:8] = struct.pack("<I", 0xFFFFFFFF)
    pos = wav.index(b"data")
    wav[pos + 4 : pos + 8] = struct.pack("<I", 0xFFFFFFFF)
    out, _ = decode_wav(bytes(wav))
    assert out.shape == (10, 1)


def test_decode_wav_zero_frames():
    out, rate = decode_wav(make_wav(np.zeros((0, 2), np.float32), 16000))
    assert out.shape == (0, 2)
    assert rate == 16000


def _patch(wav: bytes, offset: int, fmt: str, value: int) -> bytes:
    b = bytearray(wav)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


def riff(body: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WAVE" + body


GOOD = make_wav(np.zeros((20, 1), np.float32) + 0.25, 16000)
# canonical header offsets: 20 tag, 22 channels, 24 rate, 32 block align, 34 bits, 40 data size


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"RIFF", "too short"),
        (b"OggS" + b"\x00" * 40, "missing RIFF"),
        (b"RIFF\x10\x00\x00\x00AVI LIST", "RIFF type"),
        (b"RF64" + GOOD[4:], "RF64"),
        (b"RIFX" + GOOD[4:], "big-endian"),
        (GOOD[:-10], "truncated"),
        (_patch(GOOD, 4, "<I", len(GOOD) + 100), "RIFF header declares"),
        (_patch(GOOD, 40, "<I", 1000), "data chunk declares"),
        (_patch(GOOD, 40, "<I", 39), "not a multiple of the block align"),
        (_patch(GOOD, 20, "<H", 2), "MS ADPCM"),
        (_patch(GOOD, 20, "<H", 0x55), "MP3"),
        (_patch(GOOD, 20, "<H", 0x1234), "0x1234"),
        (_patch(GOOD, 22, "<H", 0), "0 channels"),
        (_patch(GOOD, 22, "<H", 5000), "5000 channels"),
        (_patch(GOOD, 24, "<I", 0), "sample rate 0"),
        (_patch(GOOD, 24, "<I", 4_000_000_000), "sample rate"),
        (_patch(GOOD, 32, "<H", 3), "block align"),
        (_patch(GOOD, 34, "<H", 12), "12-bit PCM"),
        (riff(b"data" + struct.pack("<I", 4) + b"\x00" * 4), "no 'fmt '"),
        (riff(GOOD[12:36] + b"junk" + struct.pack("<I", 0)), "no 'data'"),
        (riff(b"fmt " + struct.pack("<I", 8) + b"\x01\x00" * 4 + GOOD[36:]), "need >= 16"),
        (riff(GOOD[12:36] + b"LIST" + struct.pack("<I", 999) + b"xx"), "chunk b'LIST'"),
    ],
)
def test_decode_wav_refuses(data: bytes, match: str) -> None:
    with pytest.raises(AudioDecodeError, match=match):
        decode_wav(data)


def test_decode_wav_refuses_nan_floats():
    frames = np.array([[0.0], [np.nan]], dtype=np.float32)
    with pytest.raises(AudioDecodeError, match="NaN"):
        decode_wav(make_wav(frames, 16000, fmt="f32"))


def test_decode_wav_refuses_bad_extensible_guid():
    wav = bytearray(make_wav(signal(4, 1), 16000, extensible=True))
    pos = wav.index(b"fmt ") + 8 + 24 + 2  # inside the GUID tail
    wav[pos] ^= 0xFF
    with pytest.raises(AudioDecodeError, match="GUID"):
        decode_wav(bytes(wav))


def test_decode_wav_refuses_non_bytes():
    with pytest.raises(AudioDecodeError, match="bytes"):
        decode_wav("RIFF")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_decode_wav_fuzz_random_bytes(data):
    try:
        out, rate = decode_wav(data)
    except AudioDecodeError:
        return
    assert out.dtype == np.float32
    assert rate > 0


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=len(GOOD) - 1),
    st.integers(min_value=0, max_value=255),
    st.integers(min_value=0, max_value=len(GOOD)),
)
def test_decode_wav_fuzz_mutations(pos, value, cut):
    mutated = bytearray(GOOD)
    mutated[pos] = value
    try:
        out, _ = decode_wav(bytes(mutated[:cut]))
    except AudioDecodeError:
        return
    assert out.ndim == 2


# ---------------------------------------------------------------------------- files


def test_read_audio_wav_mixes_to_mono(tmp_path):
    frames = np.stack([np.full(50, 0.5), np.full(50, -0.25)], axis=1).astype(np.float32)
    path = tmp_path / "x.WAV"
    path.write_bytes(make_wav(frames, 48000, fmt="f32"))
    audio, rate = read_audio(path)
    assert rate == 48000
    assert audio.shape == (50,)
    np.testing.assert_allclose(audio, 0.125)


def test_read_audio_flac(tmp_path):
    sf = pytest.importorskip("soundfile")
    x = signal(800, 2)
    path = tmp_path / "x.flac"
    sf.write(path, x, 8000, subtype="PCM_16")
    audio, rate = read_audio(path)
    assert rate == 8000
    np.testing.assert_allclose(audio, x.mean(axis=1), atol=1e-4)


def test_read_audio_corrupt_names_path(tmp_path):
    pytest.importorskip("soundfile")
    path = tmp_path / "broken.flac"
    path.write_bytes(b"fLaC" + b"\x00" * 50)
    with pytest.raises(AudioDecodeError, match=r"broken\.flac"):
        read_audio(path)
    wav = tmp_path / "broken.wav"
    wav.write_bytes(GOOD[:-10])
    with pytest.raises(AudioDecodeError, match=r"broken\.wav.*truncated"):
        read_audio(wav)
    empty = tmp_path / "empty.ogg"
    empty.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty"):
        read_audio(empty)


def test_read_audio_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_audio(tmp_path / "nope.wav")


def test_read_audio_without_soundfile(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "soundfile", None)
    path = tmp_path / "x.flac"
    path.write_bytes(b"fLaC" + b"\x00" * 50)
    with pytest.raises(MissingDependencyError, match=r"caesura\[files\]"):
        read_audio(path)
    wav = tmp_path / "x.wav"  # WAV never needs soundfile
    wav.write_bytes(GOOD)
    assert read_audio(wav)[0].shape == (20,)


@pytest.mark.parametrize("with_soundfile", [True, False])
def test_read_audio_text_named_wav_is_not_a_wav_file(tmp_path, monkeypatch, with_soundfile):
    if with_soundfile:
        pytest.importorskip("soundfile")
    else:
        monkeypatch.setitem(sys.modules, "soundfile", None)
    path = tmp_path / "notes.wav"
    path.write_text("these are my meeting notes, not audio\n")
    with pytest.raises(AudioDecodeError, match=r"notes\.wav: not a WAV file: missing RIFF header"):
        read_audio(path)


def test_read_audio_mp3(tmp_path):
    sf = pytest.importorskip("soundfile")
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3 support")
    x = signal(8000, 1)[:, 0]
    path = tmp_path / "x.mp3"
    sf.write(path, x, 16000)
    audio, rate = read_audio(path)
    assert rate == 16000
    assert audio.ndim == 1
    assert abs(audio.size - x.size) < 2000  # the decoder may pad a frame


def test_read_fixture(fixtures_dir: Path):
    audio, rate = read_audio(fixtures_dir / "speech_16k.wav")
    assert rate == 16000
    assert audio.dtype == np.float32
    assert len(audio) == 12 * 16000


@pytest.mark.data
def test_shared_audio_formats(shared_data: Path):
    folder = shared_data / "audio_formats"
    expected = {
        "mono_float64.wav": (44100, 1),
        "mono_int24.wav": (44100, 1),
        "mono_int32.wav": (44100, 1),
        "p286_011.wav": (48000, 1),
        "signed_24bit.wav": (48000, 1),
        "stereo_16bit.wav": (16000, 2),
        "stereo_24bit.WAV": (16000, 2),
    }
    sf = pytest.importorskip("soundfile")
    for name, (rate, channels) in expected.items():
        out, got_rate = decode_wav((folder / name).read_bytes())
        assert (got_rate, out.shape[1]) == (rate, channels), name
        ref, _ = sf.read(folder / name, dtype="float32", always_2d=True)
        np.testing.assert_allclose(out, ref, atol=1e-7, err_msg=name)
    with pytest.raises(AudioDecodeError, match="MS ADPCM"):
        decode_wav((folder / "ms_adpcm.wav").read_bytes())
    for name in ("perfect-alley1.ogg", "bus.opus"):
        audio, rate = read_audio(folder / name)
        assert audio.ndim == 1
        assert rate in (44100, 48000)
    with pytest.raises(AudioDecodeError, match=r"testing\.m4a"):
        read_audio(folder / "testing.m4a")
