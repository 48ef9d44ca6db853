"""Load test of ``caesura serve``: N concurrent realtime WebSocket streams at real-time pace.

Loopback only, bounded in streams and time. For each N in ``--streams`` the script opens N
connections to ``/v1/audio/realtime_vad`` of a server it starts itself (a subprocess), and
every connection sends real speech (tests/fixtures/speech_16k.wav, looped, then a little
silence) as PCM16LE chunks of ``--chunk-ms`` at real-time pace, with phases spread over the
chunk period like independent clients. Event latency = the time an event arrives minus the
time the client sent the audio sample that decided it (``include_samples=1`` makes the
server report that sample), so it covers framing, queueing, batched inference, segmentation
and the way back. Reported per N: event latency p50/p99/max, the client's own send lateness
(if the client cannot keep real time the run is invalid, not the server slow), server CPU
(% of one core) and RSS, windows per batch. The ramp stops at the first N whose p99 reaches
``--p99-ms`` (100) or whose client falls behind. ``--mode both`` repeats the ramp with the
one-model-per-connection server (``--per-connection-model``) for comparison.

    python benchmarks/server_load.py --streams 50,100,150,200,300 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

try:
    import psutil
except ImportError:  # pragma: no cover
    psutil = None

import websockets

from caesura.audio import decode_wav, to_mono

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "speech_16k.wav"
RATE = 16000


def load_audio() -> bytes:
    frames, rate = decode_wav(FIXTURE.read_bytes())
    assert rate == RATE
    x = to_mono(frames)
    x = np.concatenate([x, np.zeros(RATE, dtype=np.float32)])  # 13 s loop: speech + 1 s pause
    return np.clip(np.round(x * 32768), -32768, 32767).astype("<i2").tobytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, per_connection: bool, extra: list[str]) -> None:
        self.port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "caesura.server",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--no-turn",
            "--log-level",
            "warning",
            "--max-sessions",
            "5000",
            *extra,
        ]
        if per_connection:
            cmd.append("--per-connection-model")
        self.proc = subprocess.Popen(cmd, cwd=ROOT)
        self.ps = psutil.Process(self.proc.pid) if psutil else None
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)

    def cpu_s(self) -> float:
        if not self.ps:
            return float("nan")
        t = self.ps.cpu_times()
        return t.user + t.system

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20 if self.ps else float("nan")

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        for line in text.splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, value = line.rsplit(" ", 1)
                out[name] = float(value.replace("+Inf", "inf"))
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Stream:
    def __init__(self, ws: websockets.ClientConnection, audio: bytes, chunk: int, phase: float):
        self.ws = ws
        self.audio = audio
        self.chunk = chunk  # bytes
        self.phase = phase
        self.pos = 0  # bytes sent (unbounded; audio loops)
        self.sent_at: list[float] = []  # send time of chunk k
        self.latencies: list[float] = []
        self.events = 0
        self.errors = 0
        self.reader: asyncio.Task[None] | None = None

    def next_chunk(self) -> bytes:
        n, a = self.chunk, self.audio
        start = self.pos % len(a)
        data = a[start : start + n]
        if len(data) < n:
            data += a[: n - len(data)]
        self.pos += n
        return data

    async def read(self, t_measure: float) -> None:
        samples_per_chunk = self.chunk // 2
        try:
            async for msg in self.ws:
                now = time.perf_counter()
                ev = json.loads(msg)
                if "error" in ev:
                    self.errors += 1
                    continue
                k = (int(ev["sample"]) - 1) // samples_per_chunk
                if 0 <= k < len(self.sent_at) and self.sent_at[k] >= t_measure:
                    self.latencies.append(now - self.sent_at[k])
                    self.events += 1
        except websockets.ConnectionClosed:
            pass


async def run_level(
    url: str, n: int, seconds: float, warmup: float, chunk_ms: int, audio: bytes, server: Server
) -> dict[str, float]:
    chunk = RATE * chunk_ms // 1000 * 2
    period = chunk_ms / 1000.0
    streams: list[Stream] = []
    sem = asyncio.Semaphore(32)

    async def open_one(i: int) -> Stream:
        async with sem:
            ws = await websockets.connect(url, max_size=None, ping_interval=None, compression=None)
        # random start offset in the audio so that speech is not synchronised across streams
        s = Stream(ws, audio, chunk, phase=(i / n) * period)
        s.pos = (i * 7919 * chunk) % len(audio) // chunk * chunk
        return s

    t_open = time.perf_counter()
    streams = list(await asyncio.gather(*(open_one(i) for i in range(n))))
    open_s = time.perf_counter() - t_open

    t0 = time.perf_counter() + 0.5
    t_measure = t0 + warmup
    t_end = t_measure + seconds
    for s in streams:
        s.reader = asyncio.create_task(s.read(t_measure))
    lateness: list[float] = []
    groups = min(n, 16)

    async def pace(g: int) -> None:
        members = streams[g::groups]
        phase = g / groups * period
        k = 0
        while True:
            due = t0 + phase + k * period
            if due >= t_end:
                return
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.perf_counter()
            if due >= t_measure:
                lateness.append(now - due)
            for s in members:
                data = s.next_chunk()
                s.sent_at.append(time.perf_counter())
                await s.ws.send(data)
            k += 1

    cpu0, w0 = server.cpu_s(), time.perf_counter()
    m0: dict[str, float] = {}
    bytes0 = 0
    rss_peak = 0.0
    pacers = [asyncio.create_task(pace(g)) for g in range(groups)]
    sampled = False
    while not all(p.done() for p in pacers):
        await asyncio.sleep(0.5)
        now = time.perf_counter()
        if not sampled and now >= t_measure:
            cpu0, w0, m0 = server.cpu_s(), now, await asyncio.to_thread(server.metrics)
            bytes0 = sum(s.pos for s in streams)
            sampled = True
        rss_peak = max(rss_peak, server.rss_mb())
    await asyncio.gather(*pacers)
    cpu1, w1 = server.cpu_s(), time.perf_counter()
    bytes1 = sum(s.pos for s in streams)
    await asyncio.sleep(1.0)  # let the last windows be inferred and events arrive
    m1 = await asyncio.to_thread(server.metrics)
    for s in streams:
        await s.ws.close()
    for s in streams:
        if s.reader:
            await s.reader
    lat = np.array([x for s in streams for x in s.latencies]) * 1000
    late = np.array(lateness) * 1000
    batches = m1.get("caesura_vad_batches_total", 0) - m0.get("caesura_vad_batches_total", 0)
    windows = m1.get("caesura_vad_windows_total", 0) - m0.get("caesura_vad_windows_total", 0)
    expected_windows = (bytes1 - bytes0) / 1024 if sampled else 0
    return {
        "streams": n,
        "events": int(lat.size),
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "max_ms": float(lat.max()) if lat.size else float("nan"),
        "client_late_p99_ms": float(np.percentile(late, 99)) if late.size else float("nan"),
        "server_cpu_pct": 100.0 * (cpu1 - cpu0) / (w1 - w0),
        "server_rss_mb": rss_peak,
        "windows_per_batch": windows / batches if batches else float("nan"),
        "windows_ratio": windows / expected_windows if expected_windows else float("nan"),
        "errors": sum(s.errors for s in streams),
        "connect_s": open_s,
    }


def conditions() -> str:
    load = os.getloadavg()
    return (
        f"{platform.node()} {os.cpu_count()} cpus, load avg {load[0]:.2f}/{load[1]:.2f}/"
        f"{load[2]:.2f}, python {platform.python_version()}"
    )


def ramp(
    mode: str, levels: list[int], args: argparse.Namespace, audio: bytes, deadline: float
) -> list[dict[str, float]]:
    extra = ["--max-batch", str(args.max_batch), "--batch-wait-ms", str(args.batch_wait_ms)]
    server = Server(mode == "per-connection", extra)
    url = f"ws://127.0.0.1:{server.port}/v1/audio/realtime_vad?include_samples=1"
    rows: list[dict[str, float]] = []
    try:
        print(
            f"\n== {mode} server (pid {server.proc.pid}), idle RSS {server.rss_mb():.0f} MB; "
            f"{conditions()}"
        )
        print(
            f"{'N':>5} {'events':>7} {'p50ms':>7} {'p99ms':>7} {'maxms':>7} {'late99':>7} "
            f"{'cpu%':>6} {'rssMB':>6} {'win/b':>6} {'keep':>5} {'err':>4}"
        )
        for n in levels:
            if time.monotonic() > deadline:
                print("time budget reached; stopping the ramp")
                break
            r = asyncio.run(
                run_level(url, n, args.seconds, args.warmup, args.chunk_ms, audio, server)
            )
            r["mode"] = mode
            rows.append(r)
            print(
                f"{n:>5} {r['events']:>7} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} "
                f"{r['max_ms']:>7.1f} {r['client_late_p99_ms']:>7.1f} "
                f"{r['server_cpu_pct']:>6.0f} {r['server_rss_mb']:>6.0f} "
                f"{r['windows_per_batch']:>6.1f} {r['windows_ratio']:>5.2f} {r['errors']:>4}",
                flush=True,
            )
            if not ok(r, args):
                break
            time.sleep(1.0)
    finally:
        server.stop()
    return rows


def ok(r: dict[str, float], args: argparse.Namespace) -> bool:
    return bool(
        r["p99_ms"] < args.p99_ms
        and r["client_late_p99_ms"] < args.p99_ms
        and r["windows_ratio"] > 0.97
        and r["errors"] == 0
        and r["events"] > 0
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--streams",
        default="25,50,100,150,200,250,300,400",
        help="comma-separated stream counts to ramp through",
    )
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per level")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds per level")
    p.add_argument("--chunk-ms", type=int, default=40, help="audio per WebSocket message")
    p.add_argument("--p99-ms", type=float, default=100.0)
    p.add_argument("--mode", choices=["batched", "per-connection", "both"], default="both")
    p.add_argument(
        "--per-connection-streams",
        default=None,
        help="levels for the per-connection ramp (default: same as --streams)",
    )
    p.add_argument("--max-batch", type=int, default=256)
    p.add_argument("--batch-wait-ms", type=float, default=0.0)
    p.add_argument("--budget-s", type=float, default=900.0, help="overall time cap")
    p.add_argument("--json", type=Path, default=None, help="write the rows here")
    p.add_argument("--data", default=None, help="ignored (nox passes it to every benchmark)")
    args = p.parse_args(argv)
    levels = [int(x) for x in args.streams.split(",") if x]
    audio = load_audio()
    deadline = time.monotonic() + args.budget_s
    rows: list[dict[str, float]] = []
    if args.mode in ("batched", "both"):
        rows += ramp("batched", levels, args, audio, deadline)
    if args.mode in ("per-connection", "both"):
        pc_levels = levels
        if args.per_connection_streams:
            pc_levels = [int(x) for x in args.per_connection_streams.split(",") if x]
        rows += ramp("per-connection", pc_levels, args, audio, deadline)
    print(
        f"\nlargest N sustained (p99 < {args.p99_ms:.0f} ms, client on time, all windows inferred):"
    )
    for mode in ("batched", "per-connection"):
        good = [r for r in rows if r["mode"] == mode and ok(r, args)]
        if any(r["mode"] == mode for r in rows):
            best = max(good, key=lambda r: r["streams"]) if good else None
            if best:
                print(
                    f"  {mode:>15}: N = {best['streams']:.0f}  (p99 {best['p99_ms']:.1f} ms, "
                    f"server CPU {best['server_cpu_pct']:.0f}% of a core, "
                    f"RSS {best['server_rss_mb']:.0f} MB)"
                )
            else:
                print(f"  {mode:>15}: none of the levels tried")
    print(f"conditions: {conditions()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
