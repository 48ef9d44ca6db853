# ruff: noqa: PLC0415, E402  (peers are imported where they are measured, guarded)
"""VAD speed: CPU microseconds per 32 ms window, one thread, ours vs the peers, in one run.

    python benchmarks/vad_speed.py [--data ../shared/data] [--seconds 2] [--json out.json]

Rows (each a CPU time per 32 ms window of 16 kHz audio, ``time.process_time`` so that other
load on the machine inflates wall time less):

* caesura reference (Silero's own ``silero_vad.onnx`` on onnxruntime), single stream;
* caesura fast (the compact graph of ``caesura.vad._fast_build``), single stream;
* caesura fast batched: B streams fed 512 samples each, one ``infer_ready`` per tick,
  reported per stream-window, B = 1, 8, 32, 128;
* livekit-plugins-silero ``VADStream`` (frames pushed through the plugin's async stream),
  LiveKit's native ``livekit.local_inference`` VAD, Pipecat's
  ``SileroVADAnalyzer.voice_confidence`` -- each "not installed" when missing;
* offline: ``SileroVAD.probabilities`` and ``speech_timestamps`` over a whole file against
  silero-vad's ``get_speech_timestamps`` (see :func:`offline_rows`).

Peers are installed by ``nox -s bench`` (or a venv with livekit-agents==1.8.9,
livekit-plugins-silero==1.8.9, pipecat-ai[silero]==1.14.0, silero-vad==6.2.3, torch==2.13.0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 512
RATE = 16000


@dataclass
class Row:
    name: str
    us: float | None  # CPU microseconds per 32 ms window (per stream-window when batched)
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Case:
    """Something to time: ``fn`` scores ``units`` windows per call."""

    name: str
    fn: Callable[[], object]
    units: int = 1


def measure(cases: list[Case], seconds: float, rounds: int = 5) -> list[Row]:
    """Time the cases round-robin and keep each one's best round.

    On a shared machine the load changes from second to second; interleaving the cases and
    taking the minimum per case keeps the ratios between them fair.
    """
    best = {c.name: float("inf") for c in cases}
    for c in cases:
        for _ in range(3):
            c.fn()
    for _ in range(rounds):
        for c in cases:
            per = cpu_per_call(c.fn, seconds / rounds, min_calls=3) / c.units
            best[c.name] = min(best[c.name], per)
    return [Row(c.name, best[c.name] * 1e6) for c in cases]


def cpu_per_call(fn: Callable[[], object], seconds: float, min_calls: int = 20) -> float:
    """CPU seconds per call of ``fn`` (warm-up first; runs for about ``seconds`` of CPU)."""
    for _ in range(5):
        fn()
    calls = 0
    start = time.process_time()
    while True:
        fn()
        calls += 1
        spent = time.process_time() - start
        if calls >= min_calls and spent >= seconds:
            return spent / calls


def load_audio(data: Path | None) -> np.ndarray:
    from caesura.audio import read_audio, resample

    candidates = []
    if data is not None:
        candidates.append(data / "vad" / "unlabeled" / "silero_test.wav")
    candidates.append(ROOT / "tests" / "fixtures" / "speech_16k.wav")
    for path in candidates:
        if path.exists():
            audio, rate = read_audio(path)
            return audio if rate == RATE else resample(audio, rate, RATE)
    raise SystemExit("no audio found (pass --data ../shared/data)")


def windows_of(audio: np.ndarray) -> np.ndarray:
    n = len(audio) // WINDOW
    return np.ascontiguousarray(audio[: n * WINDOW].reshape(n, WINDOW))


class Cycler:
    def __init__(self, windows: np.ndarray) -> None:
        self.windows = windows
        self.i = 0

    def next(self) -> np.ndarray:
        w = self.windows[self.i % len(self.windows)]
        self.i += 1
        return w


# --------------------------------------------------------------------------------- ours


def ours_cases(windows: np.ndarray) -> list[Case]:
    from caesura.vad import SileroVAD

    cases = []
    for backend, label in (
        ("onnx", "caesura reference (onnxruntime, Silero graph)"),
        ("fast", "caesura fast, single stream"),
    ):
        model = SileroVAD.load(backend=backend)  # type: ignore[arg-type]
        stream = model.stream(RATE)
        cyc = Cycler(windows)
        cases.append(Case(label, lambda s=stream, c=cyc: s.process(c.next())))
    model = SileroVAD.load(backend="fast")
    for batch in (1, 8, 32, 128):
        streams = [model.stream(RATE) for _ in range(batch)]
        cycs = [Cycler(np.roll(windows, 7 * b, axis=0)) for b in range(batch)]

        def tick(streams=streams, cycs=cycs) -> None:
            for s, c in zip(streams, cycs, strict=True):
                s.feed(c.next())
            model.infer_ready(streams)

        cases.append(Case(f"caesura fast, batched B={batch} (per stream-window)", tick, batch))
    return cases


# --------------------------------------------------------------------------------- peers


def pipecat_case(windows: np.ndarray) -> Case | Row:
    name = "pipecat SileroVADAnalyzer.voice_confidence"
    try:
        from pipecat.audio.vad.silero import SileroVADAnalyzer
    except Exception as exc:  # ImportError, or a missing model extra
        return Row(name, None, f"not installed ({type(exc).__name__})")
    analyzer = SileroVADAnalyzer(sample_rate=RATE)
    analyzer.set_sample_rate(RATE)
    pcm = [(np.clip(w, -1, 1) * 32767).astype("<i2").tobytes() for w in windows]
    cyc = Cycler(np.arange(len(pcm)))

    def call() -> None:
        analyzer.voice_confidence(pcm[int(cyc.next())])

    return Case(name, call)


def livekit_plugin_row(windows: np.ndarray, seconds: float) -> Row:
    name = "livekit-plugins-silero VADStream"
    try:
        from livekit.agents import vad as lk_vad

        from livekit import rtc
        from livekit.plugins import silero
    except Exception as exc:
        return Row(name, None, f"not installed ({type(exc).__name__})")

    async def run() -> float:
        vad = silero.VAD.load(sample_rate=RATE, force_cpu=True)
        stream = vad.stream()
        frames = [
            rtc.AudioFrame(
                data=(np.clip(w, -1, 1) * 32767).astype("<i2").tobytes(),
                sample_rate=RATE,
                num_channels=1,
                samples_per_channel=WINDOW,
            )
            for w in windows
        ]
        done = 0

        async def consume() -> None:
            nonlocal done
            async for ev in stream:
                if ev.type == lk_vad.VADEventType.INFERENCE_DONE:
                    done += 1

        consumer = asyncio.create_task(consume())
        # warm-up
        for f in frames[:20]:
            stream.push_frame(f)
        while done < 20:
            await asyncio.sleep(0.001)
        start_done = done
        start = time.process_time()
        i = 0
        while time.process_time() - start < seconds:
            stream.push_frame(frames[i % len(frames)])
            i += 1
            while done - start_done < i:
                await asyncio.sleep(0)
        spent = time.process_time() - start
        await stream.aclose()
        consumer.cancel()
        return spent / max(done - start_done, 1)

    return Row(name, asyncio.run(run()) * 1e6)


def livekit_native_case(windows: np.ndarray) -> Case | Row:
    name = "livekit native local_inference VAD"
    try:
        from livekit import local_inference  # type: ignore[attr-defined]
    except Exception as exc:
        return Row(name, None, f"not installed ({type(exc).__name__})")
    vad = local_inference.VAD()  # per-instance LSTM state; 512 int16 samples at 16 kHz
    pcm = [(np.clip(w, -1, 1) * 32767).astype(np.int16) for w in windows]
    cyc = Cycler(np.arange(len(pcm)))
    return Case(name, lambda: vad.predict(pcm[int(cyc.next())]))


# --------------------------------------------------------------------------------- offline


def offline_cases(audio: np.ndarray) -> list[Case | Row]:
    """Whole-file cases, timed per 32 ms window: our offline paths and silero-vad's.

    The segmenter owner may append cases here (e.g. option sweeps); every case is per window
    of the same file so the ratios stay comparable.
    """
    from caesura.vad import SileroVAD

    n_windows = -(-len(audio) // WINDOW)
    model = SileroVAD.load(backend="fast")
    cases: list[Case | Row] = [
        Case(
            "offline: caesura probabilities (fast)",
            lambda: model.probabilities(audio, RATE),
            n_windows,
        )
    ]
    try:
        from caesura.vad.offline import speech_timestamps
    except ImportError as exc:
        cases.append(Row("offline: caesura speech_timestamps", None, f"unavailable ({exc})"))
    else:
        cases.append(
            Case(
                "offline: caesura speech_timestamps",
                lambda: speech_timestamps(audio, RATE),
                n_windows,
            )
        )
    try:
        import torch
        from silero_vad import get_speech_timestamps, load_silero_vad
    except Exception as exc:
        cases.append(
            Row(
                "offline: silero-vad get_speech_timestamps",
                None,
                f"not installed ({type(exc).__name__})",
            )
        )
        return cases
    torch.set_num_threads(1)
    tensor = torch.from_numpy(audio)
    for onnx, label in ((True, "onnx"), (False, "jit")):
        silero = load_silero_vad(onnx=onnx)
        cases.append(
            Case(
                f"offline: silero-vad get_speech_timestamps ({label})",
                lambda m=silero: get_speech_timestamps(tensor, m),
                n_windows,
            )
        )
    return cases


# --------------------------------------------------------------------------------- report


def find(rows: list[Row], prefix: str) -> float | None:
    for r in rows:
        if r.name.startswith(prefix) and r.us is not None:
            return r.us
    return None


def report(rows: list[Row]) -> str:
    ref = find(rows, "caesura reference")
    lines = [f"{'':52s} {'µs/window':>10s} {'x ref':>7s}  note", "-" * 84]
    for r in rows:
        us = f"{r.us:10.1f}" if r.us is not None else f"{'-':>10s}"
        ratio = f"{r.us / ref:7.2f}" if (r.us is not None and ref) else f"{'':>7s}"
        lines.append(f"{r.name:52s} {us} {ratio}  {r.note}")
    lines.append("")
    fast = find(rows, "caesura fast, single")
    batched = min(
        (
            r.us
            for r in rows
            if "batched B=" in r.name
            and r.us is not None
            and int(r.name.split("B=")[1].split()[0]) >= 32
        ),
        default=None,
    )
    native = find(rows, "livekit native")
    pipecat = find(rows, "pipecat")
    plugin = find(rows, "livekit-plugins-silero")
    checks = []
    if batched is not None and native is not None:
        checks.append(
            (
                "batched (B>=32) per stream-window <= LiveKit native single",
                batched / native,
                batched <= native,
            )
        )
    if fast is not None and pipecat is not None:
        checks.append(
            (
                "single stream <= 0.6 x Pipecat voice_confidence",
                fast / pipecat,
                fast <= 0.6 * pipecat,
            )
        )
    if fast is not None and plugin is not None:
        checks.append(("single stream vs livekit-plugins-silero", fast / plugin, fast <= plugin))
    ours_off = find(rows, "offline: caesura speech_timestamps") or find(
        rows, "offline: caesura probabilities"
    )
    silero_off = find(rows, "offline: silero-vad get_speech_timestamps (onnx)")
    if ours_off is not None and silero_off is not None:
        checks.append(
            (
                "offline >= 3x faster than get_speech_timestamps (onnx)",
                silero_off / ours_off,
                silero_off >= 3 * ours_off,
            )
        )
    for label, ratio, ok in checks:
        lines.append(f"{'PASS' if ok else 'MISS'}  {label}: ratio {ratio:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="../shared/data (optional)")
    parser.add_argument(
        "--seconds",
        type=float,
        default=2.0,
        help="CPU seconds per row (split over 5 interleaved rounds)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--no-peers", action="store_true", help="only our own rows")
    args = parser.parse_args(argv)
    data = args.data if args.data is not None and args.data.is_dir() else None
    if args.data is not None and data is None:
        print(f"note: {args.data} not found; using the bundled fixture", file=sys.stderr)
    audio = load_audio(data)
    windows = windows_of(audio)
    cases: list[Case | Row] = list(ours_cases(windows))
    extra: list[Row] = []
    if not args.no_peers:
        for make in (livekit_native_case, pipecat_case):
            try:
                cases.append(make(windows))
            except Exception as exc:  # a peer failing must not hide the other rows
                cases.append(Row(make.__name__, None, f"failed: {type(exc).__name__}: {exc}"))
        try:
            extra.append(livekit_plugin_row(windows, args.seconds))
        except Exception as exc:
            extra.append(Row("livekit-plugins-silero VADStream", None, f"failed: {exc}"))
    online = [c for c in cases if isinstance(c, Case)]
    measured = {r.name: r for r in measure(online, args.seconds)}
    rows = [measured[c.name] if isinstance(c, Case) else c for c in cases] + extra
    offline = offline_cases(audio[: 60 * RATE])
    timed = measure([c for c in offline if isinstance(c, Case)], args.seconds * 2, rounds=3)
    by_name = {r.name: r for r in timed}
    rows += [by_name[c.name] if isinstance(c, Case) else c for c in offline]
    print(
        f"CPU µs per 32 ms window (16 kHz), 1 thread, {os.cpu_count()} CPUs, "
        f"{len(audio) / RATE:.0f} s of audio"
    )
    print(report(rows))
    if args.json is not None:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
