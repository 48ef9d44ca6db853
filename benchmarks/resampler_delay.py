"""Streaming resampler delay and quality: caesura's ``Resampler`` before (soxr HQ) and after.

    python benchmarks/resampler_delay.py [--seconds 4]

For each input rate (8, 24, 44.1, 48 kHz -> 16 kHz) and chunk size (10, 20 ms) the input is
fed chunk by chunk and two things are measured:

* **lag**: where the output timeline puts the input's content. A train of clicks goes through
  the streaming resampler and through the offline :func:`caesura.audio.resample` (soxr HQ,
  zero-phase); the lag is the cross-correlation peak between the two (parabolic sub-sample
  interpolation), in ms. Both configurations align the output with the input: ~0.
* **holdback**: after each chunk, input time fed minus output time emitted
  (``fed / in_rate - emitted / out_rate``): the audio the resampler still holds.

The **delay** a consumer sees (the VAD) is lag + holdback; the table gives its median and
maximum over the chunk boundaries. Quality, on the same streaming output (20 ms chunks):

* **passband**: the gain of tones from 100 Hz to 85 % of the lower Nyquist frequency (least
  squares fit), worst deviation from 0 dB;
* **spurious**: the worst alias/image level (dB re the tone): the output minus the fitted
  in-band tone, for passband tones and (downsampling) for tones above the output Nyquist whose
  aliases would land in the passband;
* **vs offline**: SNR (dB) of the streaming output against the offline resample of a
  multitone confined to that passband.

"before" is the previous ``Resampler``: ``soxr.ResampleStream(in, out, 1, "float32", "HQ")``,
reproduced here. "after" is :class:`caesura.audio.Resampler` as it is now.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from caesura.audio import Resampler, resample

__all__ = ["Measurement", "main", "measure"]

Float32Array = npt.NDArray[np.float32]
OUT_RATE = 16000
RATES = (8000, 24000, 44100, 48000)
CHUNKS_MS = (10, 20)


class _SoxrHQStream:
    """The resampler as it was: soxr's streaming HQ converter."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        import soxr  # noqa: PLC0415

        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")

    def process(self, chunk: Float32Array) -> Float32Array:
        return np.asarray(self._stream.resample_chunk(chunk), dtype=np.float32).reshape(-1)

    def flush(self) -> Float32Array:
        out = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        return np.asarray(out, dtype=np.float32).reshape(-1)


Factory = Callable[[int, int], "_SoxrHQStream | Resampler"]
CONFIGS: dict[str, Factory] = {"before (soxr HQ)": _SoxrHQStream, "after": Resampler}


@dataclass
class Measurement:
    lag_ms: float
    holdback_med_ms: float
    holdback_max_ms: float
    delay_med_ms: float
    delay_max_ms: float
    us_per_chunk: float


def _stream(
    make: Factory, x: Float32Array, in_rate: int, chunk: int
) -> tuple[Float32Array, list[float], float]:
    """Streaming output, holdback (s) after each chunk, median time per chunk (s)."""
    r = make(in_rate, OUT_RATE)
    outs: list[Float32Array] = []
    holdback: list[float] = []
    times: list[float] = []
    emitted = 0
    for i in range(0, len(x), chunk):
        t0 = time.perf_counter()
        y = r.process(x[i : i + chunk])
        times.append(time.perf_counter() - t0)
        outs.append(y)
        emitted += y.size
        holdback.append(min(i + chunk, len(x)) / in_rate - emitted / OUT_RATE)
    outs.append(r.flush())
    return np.concatenate(outs), holdback, float(np.median(times))


def _lag_ms(got: Float32Array, ref: Float32Array) -> float:
    """Cross-correlation peak of got against ref (ms, positive = got is late)."""
    n = min(len(got), len(ref))
    a, b = got[:n].astype(np.float64), ref[:n].astype(np.float64)
    size = 1 << (2 * n - 1).bit_length()
    xc = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    max_lag = OUT_RATE // 10
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    vals = np.r_[xc[: max_lag + 1], xc[-max_lag:]]
    k = int(np.argmax(vals))
    lag = float(lags[k])
    left, right = vals[k - 1], vals[(k + 1) % len(vals)]
    denom = left - 2 * vals[k] + right
    if denom < 0:
        lag += 0.5 * float(left - right) / float(denom)
    return lag * 1000.0 / OUT_RATE


def _clicks(in_rate: int, seconds: float, seed: int) -> Float32Array:
    """Clicks at irregular times (so they fall at every position within a chunk)."""
    rng = np.random.default_rng(seed)
    x = np.zeros(int(seconds * in_rate), dtype=np.float32)
    t = 0.05
    while t < seconds - 0.05:
        x[int(t * in_rate)] = 0.5
        t += rng.uniform(0.023, 0.061)
    return x


def measure(make: Factory, in_rate: int, chunk_ms: int, seconds: float = 4.0) -> Measurement:
    chunk = in_rate * chunk_ms // 1000
    x = _clicks(in_rate, seconds, seed=in_rate + chunk_ms)
    got, holdback, per_chunk = _stream(make, x, in_rate, chunk)
    lag = round(_lag_ms(got, resample(x, in_rate, OUT_RATE)), 3) + 0.0
    hb = np.asarray(holdback[1:]) * 1000.0  # the first chunk's output may be all held back
    delay = hb + lag
    return Measurement(
        lag_ms=lag,
        holdback_med_ms=float(np.median(hb)),
        holdback_max_ms=float(hb.max()),
        delay_med_ms=float(np.median(delay)),
        delay_max_ms=float(delay.max()),
        us_per_chunk=per_chunk * 1e6,
    )


def _fit(y: Float32Array, freq: float) -> tuple[float, Float32Array]:
    """Amplitude of the ``freq`` sinusoid in y (least squares), and y minus it."""
    t = np.arange(len(y)) / OUT_RATE
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y.astype(np.float64), rcond=None)
    return float(np.hypot(*coef)), (y - basis @ coef).astype(np.float32)


def passband_edge(in_rate: int) -> float:
    """The band whose quality is checked: 85 % of the lower Nyquist frequency."""
    return 0.85 * min(in_rate, OUT_RATE) / 2


def test_tones(in_rate: int) -> tuple[list[float], list[float]]:
    """(passband tones, out-of-band tones whose aliases land in the passband)."""
    edge = passband_edge(in_rate)
    passband = list(np.geomspace(100.0, edge, 12))
    alias: list[float] = []
    if in_rate > OUT_RATE:
        alias = list(np.linspace(OUT_RATE - edge, in_rate / 2 * 0.98, 10))
    return passband, alias


def quality(make: Factory, in_rate: int, chunk_ms: int = 20) -> tuple[float, float, float]:
    """(passband worst |gain| dB, worst spurious dB, SNR vs offline dB), streaming."""
    chunk = in_rate * chunk_ms // 1000
    n = in_rate  # 1 s tones
    t = np.arange(n) / in_rate
    trim = slice(OUT_RATE // 10, OUT_RATE - OUT_RATE // 10)
    passband, alias = test_tones(in_rate)
    gains, spurious = [], []
    for f in passband + alias:
        tone = (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)
        y, _, _ = _stream(make, tone, in_rate, chunk)
        y = y[trim]
        if f < OUT_RATE / 2:
            amp, rest = _fit(y, f)
            gains.append(20 * np.log10(amp / 0.5))
        else:
            rest = y
        rms = float(np.sqrt(np.mean(rest.astype(np.float64) ** 2)))
        spurious.append(20 * np.log10(max(rms, 1e-12) / (0.5 / np.sqrt(2))))
    rng = np.random.default_rng(in_rate)
    freqs = rng.uniform(100.0, passband_edge(in_rate), 40)
    phases = rng.uniform(0, 2 * np.pi, 40)
    multi = (0.02 * np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None])).sum(0)
    multi = multi.astype(np.float32)
    y, _, _ = _stream(make, multi, in_rate, chunk)
    ref = resample(multi, in_rate, OUT_RATE)
    m = min(len(y), len(ref))
    err = (y[:m] - ref[:m])[trim].astype(np.float64)
    snr = 10 * np.log10(np.sum(ref[:m][trim].astype(np.float64) ** 2) / max(np.sum(err**2), 1e-30))
    return float(np.max(np.abs(gains))), float(np.max(spurious)), float(snr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="click train length (s)")
    parser.add_argument("--data", help="accepted for `caesura bench` (no data is read)")
    args = parser.parse_args(argv)
    print(f"streaming resampler -> {OUT_RATE} Hz: delay = lag + holdback, ms (median / max over")
    print("chunk boundaries); us/chunk = median time of one process() call (indicative)")
    print()
    head = (
        f"{'in Hz':>6} {'chunk':>5}  {'config':<17} {'lag':>6} {'holdback med/max':>17} "
        f"{'delay med/max':>14} {'us/chunk':>8}"
    )
    print(head)
    print("-" * len(head))
    for rate in RATES:
        for chunk_ms in CHUNKS_MS:
            for name, make in CONFIGS.items():
                m = measure(make, rate, chunk_ms, args.seconds)
                print(
                    f"{rate:>6} {chunk_ms:>3}ms  {name:<17} {m.lag_ms:>6.2f} "
                    f"{m.holdback_med_ms:>8.2f} /{m.holdback_max_ms:>7.2f} "
                    f"{m.delay_med_ms:>6.2f} /{m.delay_max_ms:>6.2f} {m.us_per_chunk:>8.0f}"
                )
    print()
    print("quality (20 ms chunks): passband = worst |gain| of tones 100 Hz .. 85 % of the lower")
    print("Nyquist; spurious = worst alias/image level re the tone; vs offline = SNR against")
    print("caesura.audio.resample (soxr HQ) on a multitone in that band")
    print()
    head = (
        f"{'in Hz':>6} {'band Hz':>8}  {'config':<17} {'passband dB':>11} {'spurious dB':>11} "
        f"{'vs offline dB':>13}"
    )
    print(head)
    print("-" * len(head))
    for rate in RATES:
        for name, make in CONFIGS.items():
            gain, spur, snr = quality(make, rate)
            print(
                f"{rate:>6} {passband_edge(rate):>8.0f}  {name:<17} {gain:>11.3f} "
                f"{spur:>11.1f} {snr:>13.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
