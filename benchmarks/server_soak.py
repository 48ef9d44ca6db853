"""Soak test of ``caesura serve``: memory must stay flat (within 10%) under steady churn.

Loopback only. Starts the server (a subprocess), then for ``--duration`` seconds (default
600) keeps ``--streams`` realtime WebSocket sessions sending speech at real-time pace; every
session sends ``reset`` now and then and reconnects every ``--reconnect-s`` seconds (session
churn), and one HTTP client posts the speech WAV to ``/v1/audio/vad`` every ``--http-every``
seconds, plus a malformed upload and a garbage WebSocket message now and then (error paths).
The server's RSS is sampled every 5 s. Baseline = the median RSS over the first 20% of the run
after ``--warmup`` seconds; verdict PASS when the median of the last 20% is within
``--tolerance`` (10%) of it. Also reports events, errors and server CPU.

    python benchmarks/server_soak.py --duration 600 --streams 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_load import FIXTURE, RATE, Server, conditions, load_audio


async def session_loop(
    url: str,
    audio: bytes,
    chunk_ms: int,
    stop_at: float,
    reconnect_s: float,
    idx: int,
    stats: dict[str, int],
) -> None:
    chunk = RATE * chunk_ms // 1000 * 2
    period = chunk_ms / 1000.0
    pos = (idx * 7919 * chunk) % len(audio) // chunk * chunk
    await asyncio.sleep((idx % 50) * period / 50)
    while time.perf_counter() < stop_at:
        try:
            async with websockets.connect(url, max_size=None, ping_interval=None) as ws:

                async def reader() -> None:
                    try:
                        async for msg in ws:
                            ev = json.loads(msg)
                            key = "errors" if "error" in ev else "events"
                            stats[key] += 1
                    except websockets.ConnectionClosed:
                        stats["dropped"] = stats.get("dropped", 0) + 1

                rd = asyncio.create_task(reader())
                t0 = time.perf_counter()
                end = min(stop_at, t0 + reconnect_s * (0.5 + (idx % 10) / 10))
                k = 0
                while True:
                    due = t0 + k * period
                    if due >= end:
                        break
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    start = pos % len(audio)
                    data = audio[start : start + chunk]
                    if len(data) < chunk:
                        data += audio[: chunk - len(data)]
                    pos += chunk
                    await ws.send(data)
                    k += 1
                    if k % 500 == idx % 500:
                        await ws.send("reset")
                    if k % 2000 == (idx * 37) % 2000:
                        await ws.send("garbage")  # one expected error
                        stats["garbage_sent"] += 1
                await ws.close()
                await rd
                stats["sessions"] += 1
        except (OSError, websockets.WebSocketException):
            stats["connect_failures"] += 1
            await asyncio.sleep(1.0)


async def http_loop(
    base: str, wav: bytes, every: float, stop_at: float, stats: dict[str, int]
) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        i = 0
        while time.perf_counter() < stop_at:
            data = wav if i % 5 else wav[: len(wav) // 3 + 1][:45] + b"junk"
            try:
                r = await client.post("/v1/audio/vad", files={"audio": ("audio.wav", data)})
            except httpx.HTTPError:
                stats["http_failures"] = stats.get("http_failures", 0) + 1
                await asyncio.sleep(every)
                continue
            stats["http_ok" if r.status_code == 200 else f"http_{r.status_code}"] = (
                stats.get("http_ok" if r.status_code == 200 else f"http_{r.status_code}", 0) + 1
            )
            i += 1
            await asyncio.sleep(every)


async def sampler(server: Server, stop_at: float, samples: list[tuple[float, float]]) -> None:
    t0 = time.perf_counter()
    while time.perf_counter() < stop_at:
        samples.append((time.perf_counter() - t0, server.rss_mb()))
        await asyncio.sleep(5.0)
    samples.append((time.perf_counter() - t0, server.rss_mb()))


async def soak(args: argparse.Namespace) -> int:
    server = Server(per_connection=False, extra=[])
    audio = load_audio()
    wav = FIXTURE.read_bytes()
    url = f"ws://127.0.0.1:{server.port}/v1/audio/realtime_vad"
    stats: dict[str, int] = {
        "events": 0,
        "errors": 0,
        "sessions": 0,
        "connect_failures": 0,
        "garbage_sent": 0,
    }
    samples: list[tuple[float, float]] = []
    print(
        f"soak: {args.streams} streams, {args.duration:.0f} s, server pid {server.proc.pid}, "
        f"idle RSS {server.rss_mb():.0f} MB; {conditions()}",
        flush=True,
    )
    cpu0 = server.cpu_s()
    t_start = time.perf_counter()
    stop_at = t_start + args.duration
    try:
        tasks = [
            asyncio.create_task(
                session_loop(url, audio, args.chunk_ms, stop_at, args.reconnect_s, i, stats)
            )
            for i in range(args.streams)
        ]
        tasks.append(
            asyncio.create_task(
                http_loop(f"http://127.0.0.1:{server.port}", wav, args.http_every, stop_at, stats)
            )
        )
        tasks.append(asyncio.create_task(sampler(server, stop_at, samples)))
        last = 0.0
        while not all(t.done() for t in tasks):
            await asyncio.sleep(1.0)
            el = time.perf_counter() - t_start
            if el - last >= 60 and samples:
                last = el
                print(f"  t={el:5.0f} s  RSS {samples[-1][1]:.1f} MB  {stats}", flush=True)
        await asyncio.gather(*tasks)
        cpu = 100 * (server.cpu_s() - cpu0) / (time.perf_counter() - t_start)
        metrics = server.metrics()
    finally:
        server.stop()
    steady = [(t, r) for t, r in samples if t >= args.warmup]
    if len(steady) < 5:
        print("run too short for a verdict")
        return 1
    n = max(1, len(steady) // 5)
    base = float(np.median([r for _, r in steady[:n]]))
    end = float(np.median([r for _, r in steady[-n:]]))
    peak = max(r for _, r in steady)
    growth = (end - base) / base
    verdict = "PASS" if abs(growth) <= args.tolerance else "FAIL"
    print(f"\nRSS samples (t s, MB): {[(round(t), round(r, 1)) for t, r in samples]}")
    print(
        f"stats: {stats}; server CPU {cpu:.0f}% of a core; windows "
        f"{metrics.get('caesura_vad_windows_total', 0):.0f}, batches "
        f"{metrics.get('caesura_vad_batches_total', 0):.0f}"
    )
    print(
        f"RSS baseline {base:.1f} MB (median of first 20% after {args.warmup:.0f} s), "
        f"end {end:.1f} MB (median of last 20%), peak {peak:.1f} MB: growth "
        f"{100 * growth:+.1f}% -> {verdict} (tolerance {100 * args.tolerance:.0f}%)"
    )
    print(f"conditions: {conditions()}")
    return 0 if verdict == "PASS" else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    p.add_argument("--streams", type=int, default=50)
    p.add_argument("--chunk-ms", type=int, default=40)
    p.add_argument("--reconnect-s", type=float, default=60.0)
    p.add_argument("--http-every", type=float, default=2.0)
    p.add_argument("--warmup", type=float, default=60.0)
    p.add_argument("--tolerance", type=float, default=0.10)
    p.add_argument("--data", default=None, help="ignored (nox passes it to every benchmark)")
    args = p.parse_args(argv)
    args.warmup = min(args.warmup, args.duration / 4)
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
