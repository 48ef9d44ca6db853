"""A low-latency streaming polyphase FIR resampler (pure numpy), behind ``audio.Resampler``.

Rational resampling by ``L / M`` (``out_rate / in_rate`` reduced by their gcd) with a
linear-phase Kaiser-windowed sinc whose half-length is ``latency_ms``. Output sample ``n`` sits
at input position ``t = n * M / L`` (the output timeline is aligned with the input's: no shift)
and is the dot product of the input samples within ``latency_ms`` of ``t`` with the kernel
sampled at their offsets. It is emitted as soon as the last of those input samples has arrived,
so the output lags the input by ``latency_ms`` plus less than one input sample, whatever the
chunk size -- soxr's streaming resampler holds back 6-115 ms in 20 ms chunks.

Design (``latency_ms = 4``, 80 dB Kaiser): transition band about 630 Hz wide, ending at the
lower of the two Nyquist frequencies, so nothing above it aliases or images into the output;
passband flat within 0.001 dB up to about 7.37 kHz for 16 kHz output (3.37 kHz for 8 kHz
input). Every output sample is computed the same way whatever the chunking, so the
concatenated output is bit-identical for any split of the input.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_LATENCY_MS", "STOPBAND_DB", "PolyphaseResampler", "kernel_design"]

Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]

#: Default filter half-length (ms): the resampler's added delay, plus < 1 input sample.
DEFAULT_LATENCY_MS = 4.0
#: Stopband attenuation the Kaiser window is designed for (dB).
STOPBAND_DB = 80.0
#: Kaiser window parameter for that attenuation (> 50 dB: 0.1102 * (A - 8.7)).
_KAISER_BETA = 0.1102 * (STOPBAND_DB - 8.7)
#: Phase tables up to this many coefficients are precomputed (and shared); beyond, rows are
#: computed per chunk for the phases it needs (rates with a large reduced ratio).
_MAX_TABLE = 1 << 20
#: Output samples computed per block (bounds the temporary window matrix).
_BLOCK = 2048


def kernel_design(in_rate: int, out_rate: int, latency_ms: float) -> tuple[float, float, int]:
    """``(cutoff_hz, transition_hz, half_taps)`` of the resampler between these rates.

    The Kaiser transition band of a filter ``2 * latency_ms`` long is
    ``(A - 7.95) / (2.285 * 2 pi * T)`` Hz wide (``A`` = :data:`STOPBAND_DB`); the cutoff sits
    half of it below the lower Nyquist frequency, so the stopband starts there.
    """
    half = latency_ms * 1e-3 * in_rate  # half-length in input samples
    transition = (STOPBAND_DB - 7.95) / (2.285 * 2 * math.pi * (2 * latency_ms * 1e-3))
    nyquist = min(in_rate, out_rate) / 2
    cutoff = max(nyquist - transition / 2, nyquist / 2)
    return cutoff, transition, max(1, math.ceil(half))


def _rows(
    phases: npt.NDArray[np.int64], up: int, in_rate: int, out_rate: int, latency_ms: float
) -> Float32Array:
    """Kernel rows (float32, each summing to 1) for the given phases ``p`` (``t = base + p/L``):
    the weights of input samples ``base - K/2 + 1 .. base + K/2``."""
    cutoff, _, kh = kernel_design(in_rate, out_rate, latency_ms)
    half = latency_ms * 1e-3 * in_rate
    c = 2.0 * cutoff / in_rate
    j = np.arange(-kh + 1, kh + 1, dtype=np.float64)
    d = phases.astype(np.float64)[:, None] / up - j[None, :]  # t - k, in input samples
    u = np.clip(d / half, -1.0, 1.0)
    beta = _KAISER_BETA
    window = np.where(np.abs(d) < half, np.i0(beta * np.sqrt(1.0 - u * u)) / np.i0(beta), 0.0)
    h = c * np.sinc(c * d) * window
    h /= h.sum(axis=1, keepdims=True)  # unity DC gain for every phase
    return np.ascontiguousarray(h, dtype=np.float32)


@functools.lru_cache(maxsize=32)
def _table(up: int, in_rate: int, out_rate: int, latency_ms: float) -> Float32Array:
    table = _rows(np.arange(up, dtype=np.int64), up, in_rate, out_rate, latency_ms)
    table.setflags(write=False)
    return table


class PolyphaseResampler:
    """Streaming rational resampler (mono float32); see the module docstring."""

    def __init__(
        self, in_rate: int, out_rate: int, *, latency_ms: float = DEFAULT_LATENCY_MS
    ) -> None:
        g = math.gcd(in_rate, out_rate)
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.latency_ms = float(latency_ms)
        self._up = out_rate // g  # L
        self._down = in_rate // g  # M
        _, _, self._kh = kernel_design(in_rate, out_rate, self.latency_ms)
        self._taps = 2 * self._kh
        self._table: Float32Array | None = (
            _table(self._up, in_rate, out_rate, self.latency_ms)
            if self._up * self._taps <= _MAX_TABLE
            else None
        )
        self.reset()

    def reset(self) -> None:
        """A fresh stream: zeros before the first sample."""
        # input from absolute index self._buf_start (negative indices: the zero history)
        self._buf: Float32Array = np.zeros(self._kh - 1, dtype=np.float32)
        self._buf_start = -(self._kh - 1)
        self._n_in = 0
        self._n_out = 0
        self._base = 0  # floor(n_out * M / L)
        self._phase = 0  # n_out * M mod L

    def process(self, chunk: Float32Array) -> Float32Array:
        """Resample a chunk; returns every output sample whose inputs have all arrived."""
        if chunk.size:
            self._buf = np.concatenate((self._buf, chunk))
            self._n_in += chunk.size
        # outputs i with base_i + kh <= n_in - 1, base_i = base + (phase + M*i) // L
        limit = (self._n_in - self._kh - self._base) * self._up - self._phase
        count = -(-limit // self._down) if limit > 0 else 0
        return self._emit(count)

    def flush(self) -> Float32Array:
        """End of stream: the remaining outputs (input zero-padded), then a fresh stream."""
        total = -(-self._n_in * self._up // self._down)  # outputs at t < n_in
        count = total - self._n_out
        if count > 0:
            self._buf = np.concatenate((self._buf, np.zeros(2 * self._kh + 1, np.float32)))
        out = self._emit(max(0, count))
        self.reset()
        return out

    def _rows(self, phases: npt.NDArray[np.int64]) -> Float32Array:
        return _rows(phases, self._up, self.in_rate, self.out_rate, self.latency_ms)

    def _emit(self, count: int) -> Float32Array:
        if count <= 0:
            self._trim()
            return np.zeros(0, dtype=np.float32)
        up, down, taps = self._up, self._down, self._taps
        buf = self._buf
        # every length-`taps` window of the buffer, as a strided view (no copy)
        views = np.ndarray(
            (buf.size - taps + 1, taps), np.float32, buf, 0, (buf.strides[0], buf.strides[0])
        )
        out = np.empty(count, dtype=np.float32)
        for lo in range(0, count, _BLOCK):
            n = min(_BLOCK, count - lo)
            pos = self._phase + down * np.arange(lo, lo + n, dtype=np.int64)
            starts = self._base + pos // up - self._kh + 1 - self._buf_start
            if up == 1:  # integer decimation: one kernel row, evenly spaced windows (a view)
                first = int(starts[0])
                windows = views[first : first + down * (n - 1) + 1 : down]
                row = self._table[0] if self._table is not None else self._rows(pos % up)[0]
                out[lo : lo + n] = np.einsum("ij,j->i", windows, row)
                continue
            phases = pos % up
            rows = self._table[phases] if self._table is not None else self._rows(phases)
            out[lo : lo + n] = np.einsum("ij,ij->i", views[starts], rows)
        pos_next = self._phase + down * count
        self._base += pos_next // up
        self._phase = pos_next % up
        self._n_out += count
        self._trim()
        return out

    def _trim(self) -> None:
        keep_from = self._base - self._kh + 1  # first input the next output needs
        drop = keep_from - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:].copy()
            self._buf_start = keep_from
