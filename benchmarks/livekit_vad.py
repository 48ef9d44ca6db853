"""CPU cost of LiveKit VADs per stream-second: caesura vs livekit-plugins-silero vs LiveKit's
default ``inference.VAD``, for 1 and 32 concurrent streams in one process, in the same run.

Each VAD gets N streams in one event loop, fed the same real recording as RoomIO delivers it
(24 kHz int16 mono, 50 ms frames). Two modes:

* ``realtime`` (default): frames are pushed at the speed of speech, each stream at its own
  phase (like independent room tracks, so batching gets no help from aligned arrivals); the
  figure is process CPU seconds per second of audio per stream (lower is better), i.e. the
  share of one core a stream costs.
* ``burst``: all frames pushed at once; measures throughput (CPU and wall time).

Each configuration runs ``--repeat`` times, implementations interleaved, and the median is
reported. ``starts`` counts START_OF_SPEECH events (LiveKit's ``inference.VAD`` defaults to
``min_silence_duration=0.25``, hence its higher count; the others use 0.55).

CPU is ``time.process_time()`` of the whole process (all threads: inference executors,
onnxruntime, our batching thread). Run: ``python benchmarks/livekit_vad.py [--mode both]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from caesura.audio import read_audio, resample

try:
    import livekit.agents as lka
    from livekit.agents import inference

    from livekit import rtc
    from livekit.plugins import caesura, silero
except ImportError as exc:  # reported by main()
    MISSING: ImportError | None = exc
else:
    MISSING = None

ROOT = Path(__file__).resolve().parent.parent
RATE = 24000
FRAME = RATE // 20  # 50 ms


def load_pcm(path: Path, seconds: float) -> np.ndarray:
    audio, sr = read_audio(path)
    audio = resample(audio, sr, RATE)
    pcm = (np.clip(audio, -1.0, 32767 / 32768) * 32768.0).astype(np.int16)
    n = int(seconds * RATE)
    reps = -(-n // pcm.size)
    return np.tile(pcm, reps)[:n]


def make_frames(pcm: np.ndarray) -> list:
    return [
        rtc.AudioFrame(
            data=pcm[i : i + FRAME].tobytes(),
            sample_rate=RATE,
            num_channels=1,
            samples_per_channel=FRAME,
        )
        for i in range(0, pcm.size - FRAME + 1, FRAME)
    ]


async def run_streams(vad, frames: list, n: int, realtime: bool) -> tuple[int, int]:
    streams = [vad.stream() for _ in range(n)]
    counts = [0] * n
    speech = [0] * n

    async def consume(i: int) -> None:
        async for ev in streams[i]:
            counts[i] += 1
            if ev.type.value == "start_of_speech":
                speech[i] += 1

    async def feed(i: int) -> None:
        # like independent room tracks: each stream's 50 ms frames arrive at its own phase
        start = time.perf_counter() + i * 0.05 / n
        for k, f in enumerate(frames):
            delay = start + k * 0.05 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            streams[i].push_frame(f)
        streams[i].end_input()

    tasks = [asyncio.create_task(consume(i)) for i in range(n)]
    if realtime:
        tasks += [asyncio.create_task(feed(i)) for i in range(n)]
    else:
        for f in frames:
            for s in streams:
                s.push_frame(f)
        for s in streams:
            s.end_input()
    await asyncio.gather(*tasks)
    for s in streams:
        await s.aclose()
    return sum(counts), sum(speech)


def measure(make_vad: Callable, frames: list, n: int, realtime: bool) -> dict:
    vad = make_vad()
    asyncio.run(run_streams(vad, frames[:20], 1, False))  # warm up (model, threads)
    audio_s = len(frames) * 0.05
    cpu0, wall0 = time.process_time(), time.perf_counter()
    events, starts = asyncio.run(run_streams(vad, frames, n, realtime))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "streams": n,
        "audio_s_per_stream": round(audio_s, 2),
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "cpu_ms_per_stream_s": round(1000 * cpu / (n * audio_s), 3),
        "events": events,
        "speech_starts": starts,
    }


def implementations() -> dict[str, Callable]:
    return {
        "caesura": caesura.VAD.load,
        "livekit-plugins-silero": silero.VAD.load,
        "livekit inference.VAD (default)": inference.VAD,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="ignored (the fixture recordings are used)")
    ap.add_argument("--mode", choices=["realtime", "burst", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=8.0, help="audio per stream")
    ap.add_argument("--repeat", type=int, default=3, help="runs per implementation (median)")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    if MISSING is not None:
        print(f"livekit_vad: skipped ({MISSING}); install livekit-agents, livekit-plugins-silero")
        return 0
    impls = implementations()
    # "VAD inference is slower than realtime" warnings are expected when a peer cannot keep up
    # with 32 streams; the wall-clock column shows it (wall > audio seconds in realtime mode)
    logging.getLogger("livekit").setLevel(logging.ERROR)

    pcm = load_pcm(ROOT / "tests" / "fixtures" / "speech_16k.wav", args.seconds)
    frames = make_frames(pcm)
    modes = ["realtime", "burst"] if args.mode == "both" else [args.mode]
    print(
        f"LiveKit VAD CPU per stream-second | livekit-agents {lka.__version__} | "
        f"{platform.processor() or platform.machine()} | {os.cpu_count()} CPUs | "
        f"{args.seconds:g} s of 24 kHz audio per stream (silero-vad test speech, tiled)"
    )
    results = []
    for mode in modes:
        for n in args.streams:
            # implementations interleaved, repeated; the median is reported (the machine may
            # be shared: interleaving spreads background load over all of them)
            runs: dict[str, list[dict]] = {name: [] for name in impls}
            for _ in range(args.repeat):
                for name, make in impls.items():
                    runs[name].append(measure(make, frames, n, mode == "realtime"))
            rows = {}
            for name, rs in runs.items():
                rs.sort(key=lambda r: r["cpu_ms_per_stream_s"])
                r = dict(rs[len(rs) // 2])
                r.update(
                    impl=name,
                    mode=mode,
                    all_cpu_ms_per_stream_s=[x["cpu_ms_per_stream_s"] for x in rs],
                )
                rows[name] = r
                results.append(r)
            base = rows["caesura"]["cpu_ms_per_stream_s"]
            print(f"\n[{mode}] {n} concurrent stream(s), median of {args.repeat}")
            print(
                f"  {'VAD':34s} {'CPU ms / stream-s':>18s} {'vs caesura':>11s} {'wall s':>8s}"
                f" {'starts':>7s}"
            )
            for name, r in rows.items():
                ratio = r["cpu_ms_per_stream_s"] / base if base else float("nan")
                print(
                    f"  {name:34s} {r['cpu_ms_per_stream_s']:18.2f} {ratio:10.2f}x "
                    f"{r['wall_s']:8.2f} {r['speech_starts']:7d}"
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
