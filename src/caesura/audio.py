"""Audio in: validation of arrays, PCM16 bytes, streaming resampling and file decoding.

Everything here turns "some audio" into what the VAD wants -- a 1-D ``float32`` array of mono
samples in roughly ``[-1, 1]`` at a known rate -- or raises a :class:`~caesura.errors.CaesuraError`
subclass that names the problem. Nothing is silently coerced into silence.

* :func:`validate_audio` -- accept ``int16`` / ``float32`` / ``float64`` 1-D arrays, refuse the
  rest (other dtypes, NaN/inf, 2-D/3-D arrays, empty when asked).
* :func:`pcm16_bytes_to_float32` -- little-endian PCM16 bytes (WebSocket frames) to float32.
* :class:`Resampler` -- a streaming, anti-aliased resampler with a 4 ms delay,
  chunking-invariant; :func:`resample` -- a whole array (soxr HQ).
* :func:`decode_wav` -- a strict pure-numpy RIFF/WAVE decoder (PCM 8/16/24/32-bit, IEEE float
  32/64, G.711 mu-law and A-law, WAVE_FORMAT_EXTENSIBLE, any channel count and rate).
* :func:`read_audio` -- a file to ``(float32 mono, rate)``: WAV by :func:`decode_wav`,
  FLAC/OGG/Opus/MP3 through soundfile (extra ``files``).
"""

from __future__ import annotations

import io
import logging
import os
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from caesura._polyphase import PolyphaseResampler
from caesura.errors import (
    AudioDecodeError,
    InvalidAudioError,
    InvalidOptionError,
    MissingDependencyError,
    UnsupportedSampleRateError,
)

__all__ = [
    "AUDIO_SUFFIXES",
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "Resampler",
    "decode_wav",
    "pcm16_bytes_to_float32",
    "read_audio",
    "resample",
    "to_mono",
    "validate_audio",
    "validate_sample_rate",
]

logger = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]

#: Lowest / highest sample rate accepted anywhere (WAV headers, streams, resampler).
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768_000
#: Highest channel count a WAV header may declare.
MAX_CHANNELS = 64

_INT16_SCALE = np.float32(1.0 / 32768.0)

#: File suffixes taken from a folder by ``caesura segment`` and ``caesura tune``
#: (case-insensitive): WAV by :func:`decode_wav`, the others through soundfile. A file named
#: on the command line is read whatever its suffix.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")


# --------------------------------------------------------------------------------------------
# arrays
# --------------------------------------------------------------------------------------------


def validate_sample_rate(sample_rate: object, *, what: str = "sample_rate") -> int:
    """Return ``sample_rate`` as an ``int`` or raise :class:`UnsupportedSampleRateError`.

    Accepts Python/numpy integers (and integral floats such as ``16000.0``) within
    [:data:`MIN_SAMPLE_RATE`, :data:`MAX_SAMPLE_RATE`].
    """
    if isinstance(sample_rate, bool):
        raise UnsupportedSampleRateError(f"{what} must be an integer in Hz, got {sample_rate!r}")
    integral = isinstance(sample_rate, (int, np.integer)) or (
        isinstance(sample_rate, (float, np.floating)) and float(sample_rate).is_integer()
    )
    if integral:
        rate: int = int(sample_rate)  # type: ignore[call-overload]
    else:
        raise UnsupportedSampleRateError(f"{what} must be an integer in Hz, got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise UnsupportedSampleRateError(
            f"{what} {rate} Hz is outside the supported range "
            f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
        )
    return rate


def validate_audio(audio: object, *, allow_empty: bool = True, name: str = "audio") -> Float32Array:
    """Check ``audio`` and return it as a contiguous 1-D ``float32`` array.

    Accepted: 1-D numpy arrays of ``int16`` (scaled by 1/32768), ``float32`` (returned as is,
    without a copy when already contiguous) or ``float64`` (converted). Refused with
    :class:`InvalidAudioError`, naming the problem: anything that is not a numpy array, other
    dtypes (``int32``, ``uint8``, ``float16``, ...), 2-D arrays (channels: mix to mono first),
    3-D and higher, NaN or infinite samples, and empty arrays when ``allow_empty`` is false.
    """
    if not isinstance(audio, np.ndarray):
        raise InvalidAudioError(
            f"{name} must be a numpy array (int16 or float32, mono), got {type(audio).__name__}"
        )
    if audio.ndim != 1:
        if audio.ndim == 2:
            raise InvalidAudioError(
                f"{name} must be 1-D mono; got a 2-D array of shape {audio.shape} "
                "(multi-channel audio: mix to mono first, e.g. audio.mean(axis=1))"
            )
        raise InvalidAudioError(
            f"{name} must be a 1-D mono array; got a {audio.ndim}-D array of shape {audio.shape}"
        )
    if audio.dtype == np.int16:
        out: Float32Array = audio.astype(np.float32) * _INT16_SCALE
    elif audio.dtype == np.float32:
        out = np.ascontiguousarray(audio)
    elif audio.dtype == np.float64:
        with np.errstate(over="ignore"):
            out = audio.astype(np.float32)
    else:
        raise InvalidAudioError(
            f"{name} has dtype {audio.dtype}; expected int16 or float32 (float64 is converted)"
        )
    if out.size == 0:
        if not allow_empty:
            raise InvalidAudioError(f"{name} is empty (0 samples)")
        return out
    # one float64 reduction: NaN/inf propagate, finite float32 values cannot overflow it
    if audio.dtype != np.int16 and not np.isfinite(out.sum(dtype=np.float64)):
        bad = int(np.count_nonzero(~np.isfinite(out)))
        first = int(np.flatnonzero(~np.isfinite(out))[0])
        raise InvalidAudioError(
            f"{name} contains {bad} NaN/inf sample(s) (first at index {first})"
            + (" (or float64 values too large for float32)" if audio.dtype == np.float64 else "")
        )
    return out


def pcm16_bytes_to_float32(data: bytes | bytearray | memoryview) -> Float32Array:
    """Little-endian signed 16-bit PCM bytes to a float32 array in [-1, 1).

    Raises :class:`InvalidAudioError` for a non-bytes argument or an odd byte count (a PCM16
    stream cut in the middle of a sample).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidAudioError(f"PCM16 data must be bytes, got {type(data).__name__}")
    raw = memoryview(data).cast("B")
    if len(raw) % 2:
        raise InvalidAudioError(
            f"PCM16 data has an odd byte count ({len(raw)}); each sample is 2 bytes"
        )
    samples = np.frombuffer(raw, dtype="<i2")
    return samples.astype(np.float32) * _INT16_SCALE


def to_mono(frames: npt.NDArray[Any]) -> Float32Array:
    """Mix a ``[frames, channels]`` (or already 1-D) float array to 1-D float32 mono."""
    arr = np.asarray(frames)
    if arr.ndim == 1:
        return arr.astype(np.float32, copy=False)
    if arr.ndim != 2:
        raise InvalidAudioError(f"expected [frames, channels], got shape {arr.shape}")
    if arr.shape[1] == 1:
        return np.ascontiguousarray(arr[:, 0], dtype=np.float32)
    mixed: Float32Array = arr.mean(axis=1, dtype=np.float64).astype(np.float32)
    return mixed


# --------------------------------------------------------------------------------------------
# resampling
# --------------------------------------------------------------------------------------------


class Resampler:
    """Streaming anti-aliased resampler for mono float32 audio, with a 4 ms delay.

    A linear-phase polyphase FIR (Kaiser-windowed sinc, 80 dB stopband starting at the lower
    Nyquist frequency, passband flat to about 92 % of it; see :mod:`caesura._polyphase`).
    Feed chunks of any size to :meth:`process`: each call returns every output sample whose
    input has arrived, so the output lags the input by ``latency_ms`` (default 4 ms) plus less
    than one input sample whatever the chunk size, and the output timeline is aligned with
    the input's (sample ``n`` is input time ``n / out_rate``). The concatenated output does not
    depend on how the input was chunked (bit-identical). :meth:`flush` returns the tail at end
    of stream. No ``x[::step]`` decimation anywhere.

    ``latency_ms`` trades delay for transition-band width (about ``2.5 / latency_ms`` kHz);
    whole files are better resampled with :func:`resample` (soxr HQ).
    """

    def __init__(self, in_rate: int, out_rate: int, *, latency_ms: float = 4.0) -> None:
        self.in_rate = validate_sample_rate(in_rate, what="input sample rate")
        self.out_rate = validate_sample_rate(out_rate, what="output sample rate")
        if isinstance(latency_ms, bool) or not isinstance(latency_ms, (int, float)):
            raise InvalidOptionError(f"latency_ms must be a number, got {latency_ms!r}")
        if not 1.0 <= latency_ms <= 50.0:
            raise InvalidOptionError(f"latency_ms must be within [1, 50] ms, got {latency_ms!r}")
        self.latency_ms = float(latency_ms)
        self._fir = (
            PolyphaseResampler(self.in_rate, self.out_rate, latency_ms=self.latency_ms)
            if self.in_rate != self.out_rate
            else None
        )

    def process(self, chunk: Float32Array) -> Float32Array:
        """Resample one chunk (1-D float32): every output sample its input completes."""
        x = np.ascontiguousarray(chunk, dtype=np.float32).reshape(-1)
        if self._fir is None:
            return x.copy()
        return self._fir.process(x)

    def flush(self) -> Float32Array:
        """End of stream: return the samples still inside the filter, then reset."""
        if self._fir is None:
            return np.zeros(0, dtype=np.float32)
        return self._fir.flush()

    def reset(self) -> None:
        """Forget all buffered input (a fresh stream)."""
        if self._fir is not None:
            self._fir.reset()


def resample(audio: Float32Array, in_rate: int, out_rate: int) -> Float32Array:
    """Resample a whole 1-D float32 array (anti-aliased, soxr HQ)."""
    if in_rate == out_rate:
        return audio
    import soxr  # noqa: PLC0415

    out = soxr.resample(audio, in_rate, out_rate, quality="HQ")
    return np.asarray(out, dtype=np.float32).reshape(-1)


# --------------------------------------------------------------------------------------------
# WAV
# --------------------------------------------------------------------------------------------

_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_IEEE_FLOAT = 0x0003
_WAVE_FORMAT_ALAW = 0x0006
_WAVE_FORMAT_MULAW = 0x0007
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_KSDATAFORMAT_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_FORMAT_NAMES = {
    0x0002: "MS ADPCM",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0050: "MPEG",
    0x0055: "MP3",
}
_UNKNOWN_SIZE = 0xFFFFFFFF


def _format_name(tag: int) -> str:
    return _FORMAT_NAMES.get(tag, f"format tag 0x{tag:04X}")


def _g711_tables() -> tuple[Float32Array, Float32Array]:
    """ITU-T G.711 expansion of every 8-bit code to 16-bit linear PCM, scaled to [-1, 1).

    mu-law: complement the code; sign bit 7, exponent bits 4-6, mantissa bits 0-3;
    ``((mantissa << 3) + 0x84) << exponent`` less the 0x84 bias (full scale +-32124).
    A-law: XOR the code with 0x55; bit 7 set is positive; ``(mantissa << 4) + 8`` for exponent
    0, else ``((mantissa << 4) + 0x108) << (exponent - 1)`` (full scale +-32256).
    """
    code = np.arange(256, dtype=np.int32)
    u = ~code & 0xFF
    mag = (((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)
    ulaw = np.where(u & 0x80, 0x84 - mag, mag - 0x84)
    a = code ^ 0x55
    exp = (a >> 4) & 0x07
    man = (a & 0x0F) << 4
    mag = np.where(exp == 0, man + 8, (man + 0x108) << np.maximum(exp - 1, 0))
    alaw = np.where(a & 0x80, mag, -mag)
    return ulaw.astype(np.float32) * _INT16_SCALE, alaw.astype(np.float32) * _INT16_SCALE


_ULAW, _ALAW = _g711_tables()


def decode_wav(data: bytes | bytearray | memoryview) -> tuple[Float32Array, int]:
    """Decode a RIFF/WAVE byte string to ``(float32 array [frames, channels], sample_rate)``.

    Supported: PCM integer 8-bit (unsigned), 16, 24 and 32-bit (signed), IEEE float 32 and
    64-bit, 8-bit G.711 mu-law and A-law (telephony), plain or WAVE_FORMAT_EXTENSIBLE headers,
    1..:data:`MAX_CHANNELS` channels, rates in [:data:`MIN_SAMPLE_RATE`,
    :data:`MAX_SAMPLE_RATE`]. Integer and G.711 samples are scaled to [-1, 1).
    A data chunk size of 0xFFFFFFFF (streaming writers) means "to the end of the file".

    Everything else raises :class:`AudioDecodeError` naming the problem: not RIFF/WAVE, no
    ``fmt``/``data`` chunk, compressed codecs (ADPCM, GSM, MP3, ...), inconsistent header
    fields (block align, byte rate), truncated data, chunk sizes running past the file, absurd
    rates or channel counts, NaN/inf float samples. No other exception escapes.
    """
    try:
        return _decode_wav(data)
    except AudioDecodeError:
        raise
    except Exception as exc:  # a decoder bug must still surface as a decode error
        raise AudioDecodeError(f"malformed WAV data ({type(exc).__name__}: {exc})") from exc


def _decode_wav(data: bytes | bytearray | memoryview) -> tuple[Float32Array, int]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise AudioDecodeError(f"WAV data must be bytes, got {type(data).__name__}")
    buf = bytes(data)
    n = len(buf)
    if n == 0:
        raise AudioDecodeError("not a WAV file: the data is empty (0 bytes)")
    if n < 12:
        raise AudioDecodeError(f"not a WAV file: only {n} bytes, too short for a RIFF header")
    magic, riff_size, wave = struct.unpack_from("<4sI4s", buf, 0)
    if magic == b"RF64":
        raise AudioDecodeError("RF64 (64-bit RIFF) WAV files are not supported")
    if magic == b"RIFX":
        raise AudioDecodeError("big-endian RIFX WAV files are not supported")
    if magic != b"RIFF":
        raise AudioDecodeError(f"not a WAV file: missing RIFF header (starts with {magic!r})")
    if wave != b"WAVE":
        raise AudioDecodeError(f"not a WAV file: RIFF type is {wave!r}, expected b'WAVE'")
    if riff_size in (0, _UNKNOWN_SIZE):
        end = n  # streaming writer that never patched the header
    else:
        if riff_size + 8 > n:
            raise AudioDecodeError(
                f"truncated WAV: the RIFF header declares {riff_size + 8} bytes "
                f"but the data is {n} bytes"
            )
        end = riff_size + 8

    fmt: bytes | None = None
    data_off = data_len = -1
    pos = 12
    while pos + 8 <= end:
        cid, csize = struct.unpack_from("<4sI", buf, pos)
        body = pos + 8
        if cid == b"data":
            if csize == _UNKNOWN_SIZE:
                csize = end - body
            if body + csize > end:
                raise AudioDecodeError(
                    f"truncated WAV: the data chunk declares {csize} bytes "
                    f"but only {end - body} remain"
                )
            if data_off < 0:
                data_off, data_len = body, csize
        elif body + csize > end:
            raise AudioDecodeError(
                f"corrupt WAV: chunk {cid!r} declares {csize} bytes but only {end - body} remain"
            )
        elif cid == b"fmt " and fmt is None:
            fmt = buf[body : body + csize]
        pos = body + csize + (csize & 1)
        if fmt is not None and data_off >= 0:
            break
    if fmt is None:
        raise AudioDecodeError("corrupt WAV: no 'fmt ' chunk found")
    if data_off < 0:
        raise AudioDecodeError("corrupt WAV: no 'data' chunk found")

    tag, channels, rate, _byte_rate, block_align, bits = _parse_fmt(fmt)
    width = bits // 8
    if data_len % block_align:
        raise AudioDecodeError(
            f"corrupt WAV: data chunk size {data_len} is not a multiple of the "
            f"block align {block_align} ({channels} channel(s) x {width} bytes)"
        )
    frames = data_len // block_align
    raw = buf[data_off : data_off + frames * block_align]
    samples = _samples_from_bytes(raw, tag, width)
    out = samples.reshape(frames, channels)
    if tag == _WAVE_FORMAT_IEEE_FLOAT and not np.isfinite(out).all():
        raise AudioDecodeError("corrupt WAV: float samples contain NaN or infinity")
    return out, rate


#: Bits per sample each supported format tag allows.
_ALLOWED_BITS: dict[int, tuple[int, ...]] = {
    _WAVE_FORMAT_PCM: (8, 16, 24, 32),
    _WAVE_FORMAT_IEEE_FLOAT: (32, 64),
    _WAVE_FORMAT_MULAW: (8,),
    _WAVE_FORMAT_ALAW: (8,),
}


def _parse_fmt(fmt: bytes) -> tuple[int, int, int, int, int, int]:
    if len(fmt) < 16:
        raise AudioDecodeError(f"corrupt WAV: 'fmt ' chunk is {len(fmt)} bytes, need >= 16")
    tag, channels, rate, byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fmt, 0)
    if tag == _WAVE_FORMAT_EXTENSIBLE:
        if len(fmt) < 40:
            raise AudioDecodeError(
                f"corrupt WAV: WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk is {len(fmt)} bytes, need 40"
            )
        cb_size, valid_bits = struct.unpack_from("<HH", fmt, 16)
        guid = fmt[24:40]
        if cb_size < 22:
            raise AudioDecodeError(
                f"corrupt WAV: WAVE_FORMAT_EXTENSIBLE extension size {cb_size}, need 22"
            )
        if guid[2:] != _KSDATAFORMAT_TAIL:
            raise AudioDecodeError(
                f"unsupported WAV: WAVE_FORMAT_EXTENSIBLE sub-format GUID {guid.hex()}"
            )
        tag = struct.unpack_from("<H", guid, 0)[0]
        if valid_bits > bits:
            raise AudioDecodeError(
                f"corrupt WAV: {valid_bits} valid bits in a {bits}-bit container"
            )
    if tag not in _ALLOWED_BITS:
        raise AudioDecodeError(
            f"unsupported WAV codec: {_format_name(tag)}; only PCM integer, IEEE float, "
            "mu-law and A-law are supported (convert the file to PCM)"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioDecodeError(
            f"unsupported WAV: {channels} channels (supported 1..{MAX_CHANNELS})"
        )
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioDecodeError(
            f"unsupported WAV: sample rate {rate} Hz (supported "
            f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz)"
        )
    allowed = _ALLOWED_BITS[tag]
    if bits not in allowed:
        kind = {_WAVE_FORMAT_PCM: "PCM", _WAVE_FORMAT_IEEE_FLOAT: "IEEE float"}.get(
            tag, _format_name(tag)
        )
        raise AudioDecodeError(
            f"unsupported WAV: {bits}-bit {kind} (supported: {', '.join(map(str, allowed))})"
        )
    width = bits // 8
    if block_align != channels * width:
        raise AudioDecodeError(
            f"corrupt WAV: block align {block_align} does not match {channels} channel(s) x "
            f"{width} bytes"
        )
    if byte_rate != rate * block_align:
        # Many writers get this redundant field wrong; the others are self-consistent.
        logger.debug("WAV byte rate %d != %d x %d; ignoring it", byte_rate, rate, block_align)
    return tag, channels, rate, byte_rate, block_align, bits


def _samples_from_bytes(raw: bytes, tag: int, width: int) -> Float32Array:
    if tag in (_WAVE_FORMAT_MULAW, _WAVE_FORMAT_ALAW):
        table = _ULAW if tag == _WAVE_FORMAT_MULAW else _ALAW
        return table[np.frombuffer(raw, dtype=np.uint8)]
    if tag == _WAVE_FORMAT_IEEE_FLOAT:
        if width == 4:
            return np.frombuffer(raw, dtype="<f4").astype(np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            return np.frombuffer(raw, dtype="<f8").astype(np.float32)
    if width == 1:
        u8 = np.frombuffer(raw, dtype=np.uint8)
        return (u8.astype(np.float32) - np.float32(128.0)) * np.float32(1.0 / 128.0)
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.float32) * _INT16_SCALE
    if width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = (b[:, 0] << 8) | (b[:, 1] << 16) | (b[:, 2] << 24)  # sign lands in bit 31
        return (v >> 8).astype(np.float32) * np.float32(1.0 / 8388608.0)
    i32 = np.frombuffer(raw, dtype="<i4")
    return (i32.astype(np.float64) * (1.0 / 2147483648.0)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


class _NamedBytes(io.BytesIO):
    """In-memory file bytes that soundfile's error messages name like the file itself."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name

    def __repr__(self) -> str:
        return repr(self.name)


def read_audio(
    path: str | os.PathLike[str], data: bytes | bytearray | memoryview | None = None
) -> tuple[Float32Array, int]:
    """Read an audio file to ``(float32 mono, sample_rate)``; channels are averaged.

    WAV files (recognised by their RIFF header, whatever the extension) go through
    :func:`decode_wav`; anything else (FLAC, OGG/Vorbis, Opus, MP3, ...) through soundfile,
    which needs the ``files`` extra (:class:`MissingDependencyError` otherwise). A file named
    ``.wav`` without a RIFF header that soundfile cannot read either (or without soundfile) is
    "not a WAV file". A file that cannot be decoded raises :class:`AudioDecodeError` naming the
    path; a missing file raises :class:`FileNotFoundError`.

    ``data``: the file's bytes when they are already in memory (read from object storage, a
    Ray Dataset's ``bytes`` column); ``path`` then only names the file (errors, extension) and
    is not opened. The result and the errors are the same as reading the file at ``path``.
    """
    p = os.fspath(path)
    wav_name = os.path.splitext(p)[1].lower() in (".wav", ".wave")
    blob: bytes | None = None
    if data is None:
        with open(p, "rb") as fh:
            head = fh.read(12)
            if head[:4] in (b"RIFF", b"RIFX", b"RF64") or (len(head) < 12 and wav_name):
                blob = head + fh.read()
    else:
        head = bytes(data[:12])
        if head[:4] in (b"RIFF", b"RIFX", b"RF64") or (len(head) < 12 and wav_name):
            blob = bytes(data)
    if blob is not None:
        try:
            frames, rate = decode_wav(blob)
        except AudioDecodeError as exc:
            raise AudioDecodeError(f"{p}: {exc}") from exc
        return to_mono(frames), rate
    if not head:
        raise AudioDecodeError(f"{p}: the file is empty (0 bytes)")
    # a .wav without a RIFF header: another format soundfile may know (NIST SPHERE), or junk
    not_wav = AudioDecodeError(
        f"{p}: not a WAV file: missing RIFF header (starts with {head[:4]!r})"
    )
    try:
        import soundfile  # noqa: PLC0415
    except ImportError as exc:
        if wav_name:
            raise not_wav from exc
        raise MissingDependencyError("soundfile", "files", "reading non-WAV audio files") from exc
    source: Any = p if data is None else _NamedBytes(bytes(data), p)
    try:
        frames_sf, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / ValueError
        if wav_name:
            raise not_wav from exc
        raise AudioDecodeError(f"{p}: cannot decode audio file ({exc})") from exc
    arr = np.asarray(frames_sf, dtype=np.float32)
    if arr.size and not np.isfinite(arr).all():
        raise AudioDecodeError(f"{p}: decoded samples contain NaN or infinity")
    return to_mono(arr), int(rate)
