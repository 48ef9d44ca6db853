"""pipecat-caesura against Pipecat's own analyzers, measured in the same run.

    python benchmarks/pipecat_bench.py [--repeats 5] [--streams 1,8,32] [--data IGNORED]

1. VAD per-window cost: ``voice_confidence`` per 32 ms window of a real recording
   (tests/fixtures/speech_16k.wav) for Pipecat's ``SileroVADAnalyzer`` and our
   ``CaesuraVADAnalyzer`` at 16 and 8 kHz; then the whole ``analyze_audio`` path (Pipecat's
   executor hop + state machine) on 20 ms transport chunks; then N concurrent pipelines (one
   analyzer per pipeline, each on its own worker thread as Pipecat runs them): wall and CPU
   time per window. Our analyzers share one model and batch concurrent windows.
2. End-of-turn decision cost: one decision of Pipecat's default ``LocalSmartTurnAnalyzerV3``
   (smart-turn v3.2, Whisper-tiny ONNX over the last <= 8 s of audio, ``analyze_end_of_turn``)
   against one decision of ``CaesuraTurnStopStrategy``'s scorer (the end-of-turn model over
   the transcript; the lexical fallback when the model is not installed), both on the same
   utterances of the AMI fixture, and the strategy's whole decision path on the event loop.

Every number is measured here, in this process, on this machine; ratios are ours / Pipecat's.
Runs on CPU with one onnxruntime thread per session (both sides), nothing downloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

os.environ.setdefault("LOGURU_LEVEL", "WARNING")  # Pipecat logs every model load at DEBUG
try:
    from loguru import logger as _loguru

    _loguru.remove()
    _loguru.add(sys.stderr, level="WARNING")
except ImportError:  # pragma: no cover - pipecat always brings loguru
    pass

from caesura.audio import read_audio, resample  # noqa: E402

WINDOW_MS = 32


def pcm_at(name: str, rate: int) -> bytes:
    audio, sr = read_audio(FIXTURES / name)
    if sr != rate:
        audio = resample(audio, sr, rate)
    return (np.clip(audio, -1.0, 1.0 - 1 / 32768) * 32768).astype("<i2").tobytes()


def windows_of(pcm: bytes, n: int) -> list[bytes]:
    return [pcm[i : i + 2 * n] for i in range(0, len(pcm) - 2 * n + 1, 2 * n)]


def best_of(repeats: int, fn: Callable[[], float]) -> float:
    """Median of ``repeats`` runs (each returns seconds per unit)."""
    return statistics.median(fn() for _ in range(repeats))


# --------------------------------------------------------------------------------------------
# VAD
# --------------------------------------------------------------------------------------------


def vad_factories() -> dict[str, Callable[[], object]]:
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat_caesura import CaesuraVADAnalyzer

    return {
        "pipecat SileroVADAnalyzer": SileroVADAnalyzer,
        "caesura CaesuraVADAnalyzer": CaesuraVADAnalyzer,
    }


def bench_voice_confidence(repeats: int) -> list[tuple[str, int, float, float]]:
    rows = []
    for rate in (16000, 8000):
        pcm = pcm_at("speech_16k.wav", rate)
        res = {}
        for name, make in vad_factories().items():
            vad = make()
            vad.set_sample_rate(rate)  # type: ignore[attr-defined]
            wins = windows_of(pcm, vad.num_frames_required())  # type: ignore[attr-defined]
            for w in wins[:20]:  # warm-up
                vad.voice_confidence(w)  # type: ignore[attr-defined]

            def run(vad: object = vad, wins: list[bytes] = wins) -> float:
                t = time.perf_counter()
                for w in wins:
                    vad.voice_confidence(w)  # type: ignore[attr-defined]
                return (time.perf_counter() - t) / len(wins)

            res[name] = best_of(repeats, run)
        ours, theirs = res["caesura CaesuraVADAnalyzer"], res["pipecat SileroVADAnalyzer"]
        rows.append(("voice_confidence", rate, theirs, ours))
    return rows


def bench_analyze_audio(repeats: int) -> list[tuple[str, int, float, float]]:
    rows = []
    for rate in (16000,):
        pcm = pcm_at("speech_16k.wav", rate)
        chunk = rate * 20 // 1000 * 2
        chunks = [pcm[i : i + chunk] for i in range(0, len(pcm), chunk)]
        res = {}
        for name, make in vad_factories().items():
            vad = make()
            vad.set_sample_rate(rate)  # type: ignore[attr-defined]
            n_windows = len(pcm) // 2 // vad.num_frames_required()  # type: ignore[attr-defined]

            async def run_all(vad: object = vad) -> None:
                for c in chunks:
                    await vad.analyze_audio(c)  # type: ignore[attr-defined]

            def run(run_all: Callable[[], object] = run_all, n: int = n_windows) -> float:
                t = time.perf_counter()
                asyncio.run(run_all())  # type: ignore[arg-type]
                return (time.perf_counter() - t) / n

            res[name] = best_of(repeats, run)
        rows.append(
            (
                "analyze_audio (20 ms chunks)",
                rate,
                res["pipecat SileroVADAnalyzer"],
                res["caesura CaesuraVADAnalyzer"],
            )
        )
    return rows


def bench_concurrent(
    streams: list[int], repeats: int
) -> list[tuple[str, int, float, float, float, float, int]]:
    """N analyzers on N threads (Pipecat gives each analyzer its own worker thread), all
    scoring the recording at once; wall and process-CPU time per window."""
    from pipecat_caesura import SharedVADBatcher

    rate = 16000
    pcm = pcm_at("speech_16k.wav", rate)
    wins = windows_of(pcm, 512)
    rows = []
    for n in streams:
        res: dict[str, tuple[float, float]] = {}
        max_batch = 0
        for name, make in vad_factories().items():
            vads = [make() for _ in range(n)]
            for v in vads:
                v.set_sample_rate(rate)  # type: ignore[attr-defined]

            def run(vads: list[object] = vads) -> tuple[float, float]:
                barrier = threading.Barrier(len(vads) + 1)

                def work(v: object, k: int) -> None:
                    mine = wins[k % len(wins) :] + wins[: k % len(wins)]
                    barrier.wait()
                    for w in mine:
                        v.voice_confidence(w)  # type: ignore[attr-defined]

                threads = [
                    threading.Thread(target=work, args=(v, k * 7)) for k, v in enumerate(vads)
                ]
                for t in threads:
                    t.start()
                barrier.wait()
                t0, c0 = time.perf_counter(), time.process_time()
                for t in threads:
                    t.join()
                total = len(vads) * len(wins)
                return (time.perf_counter() - t0) / total, (time.process_time() - c0) / total

            samples = [run() for _ in range(repeats)]
            res[name] = (
                statistics.median(s[0] for s in samples),
                statistics.median(s[1] for s in samples),
            )
            if name.startswith("caesura"):
                max_batch = SharedVADBatcher.for_model(vads[0].model).max_batch  # type: ignore[attr-defined]
        (pw, pc), (ow, oc) = res["pipecat SileroVADAnalyzer"], res["caesura CaesuraVADAnalyzer"]
        rows.append(("concurrent pipelines", n, pw, ow, pc, oc, max_batch))
    return rows


# --------------------------------------------------------------------------------------------
# end of turn
# --------------------------------------------------------------------------------------------

#: Typical user turns (complete and unfinished) for the transcript scorer.
TRANSCRIPTS = [
    "I want to book a table for two at seven tonight.",
    "I want to book a table for",
    "Can you tell me what the weather is like in Berlin tomorrow?",
    "So what I was thinking is that maybe we could",
    "Yes please.",
    "My account number is four five six and",
    "Could you move my appointment from Tuesday to Thursday afternoon if that works for you?",
    "Hmm, let me think about that for a second, I'm not sure whether",
    "That's all, thanks.",
    "I'd like to order a large pizza with mushrooms, olives and extra cheese, and a bottle of water.",
]


def speech_segments(name: str) -> list[tuple[int, int]]:
    from caesura.vad.offline import speech_timestamps

    audio, sr = read_audio(FIXTURES / name)
    out = []
    for seg in speech_timestamps(audio, sr):
        start, end = (seg.start, seg.end) if hasattr(seg, "start") else (seg["start"], seg["end"])
        out.append((int(start), int(end)))
    return out


def bench_smart_turn(repeats: int) -> tuple[float, float, int]:
    """LocalSmartTurnAnalyzerV3: feed each utterance (speech + 0.2 s of silence, 20 ms chunks)
    as Pipecat's TurnAnalyzerUserTurnStopStrategy does, then time ``analyze_end_of_turn()``
    (one decision: Whisper features + ONNX over the last <= 8 s). Returns (median wall ms,
    median model e2e ms from its TurnMetricsData, decisions)."""
    from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3

    analyzer = LocalSmartTurnAnalyzerV3()
    analyzer.set_sample_rate(16000)
    walls: list[float] = []
    e2e: list[float] = []
    for fixture in ("speech_16k.wav", "ami_sample_16k.wav"):
        pcm = pcm_at(fixture, 16000)
        for start, end in speech_segments(fixture):
            utt = pcm[2 * max(0, start - 8000) : 2 * end] + b"\x00\x00" * 3200
            step = 640  # 20 ms at 16 kHz, in bytes

            async def one(
                utt: bytes = utt, speech_bytes: int = 2 * (end - max(0, start - 8000))
            ) -> tuple[float, float]:
                analyzer.clear()
                for i in range(0, len(utt), step):
                    analyzer.append_audio(utt[i : i + step], is_speech=i < speech_bytes)
                t = time.perf_counter()
                _, metrics = await analyzer.analyze_end_of_turn()
                wall = (time.perf_counter() - t) * 1000
                return wall, float(getattr(metrics, "e2e_processing_time_ms", float("nan")))

            for _ in range(repeats):
                w, m = asyncio.run(one())
                walls.append(w)
                e2e.append(m)
    asyncio.run(analyzer.cleanup())
    return statistics.median(walls), statistics.median(e2e), len(walls)
