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
3. One engine, one model: the scorer time of each decision made through the strategy (its
   engine scores through ``EndOfTurnModel.stream()``; read from its ``TurnMetricsData``)
   against the same dialogues through one ``EndOfTurnModel.stream()`` alone, and the RSS
   added by one strategy and by four (the model is loaded once per process).

Every number is measured here, in this process, on this machine; ratios are ours / Pipecat's.
Runs on CPU with one onnxruntime thread per session (both sides), nothing downloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

os.environ.setdefault("LOGURU_LEVEL", "WARNING")  # Pipecat logs every model load at DEBUG

from caesura.audio import read_audio, resample  # noqa: E402
from caesura.turn import lexical_end_probability  # noqa: E402
from caesura.vad.offline import speech_timestamps  # noqa: E402

try:
    from loguru import logger as _loguru
    from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.clocks.system_clock import SystemClock
    from pipecat.frames.frames import (
        InputAudioRawFrame,
        TranscriptionFrame,
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.processors.frame_processor import FrameProcessorSetup
    from pipecat.turns.user_stop import TurnAnalyzerUserTurnStopStrategy
    from pipecat.utils.asyncio.task_manager import TaskManager
    from pipecat_caesura import CaesuraTurnStopStrategy, CaesuraVADAnalyzer, SharedVADBatcher

    _loguru.remove()
    _loguru.add(sys.stderr, level="WARNING")
    MISSING: str | None = None
except ImportError as _exc:  # the nox bench session installs both
    MISSING = str(_exc)

WINDOW_MS = 32


def pcm_at(name: str, rate: int) -> bytes:
    audio, sr = read_audio(FIXTURES / name)
    if sr != rate:
        audio = resample(audio, sr, rate)
    return (np.clip(audio, -1.0, 1.0 - 1 / 32768) * 32768).astype("<i2").tobytes()


def windows_of(pcm: bytes, n: int) -> list[bytes]:
    return [pcm[i : i + 2 * n] for i in range(0, len(pcm) - 2 * n + 1, 2 * n)]


def best_of(repeats: int, fn: Callable[[], tuple[float, float]]) -> tuple[float, float]:
    """Median wall and median process-CPU time of ``repeats`` runs (seconds per unit)."""
    runs = [fn() for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def timed(fn: Callable[[], object], units: int) -> tuple[float, float]:
    t, c = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - t) / units, (time.process_time() - c) / units


# --------------------------------------------------------------------------------------------
# VAD
# --------------------------------------------------------------------------------------------


def vad_factories() -> dict[str, Callable[[], object]]:
    return {
        "pipecat SileroVADAnalyzer": SileroVADAnalyzer,
        "caesura CaesuraVADAnalyzer": CaesuraVADAnalyzer,
    }


def bench_voice_confidence(
    repeats: int,
) -> list[tuple[str, int, tuple[float, float], tuple[float, float]]]:
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

            def run(vad: object = vad, wins: list[bytes] = wins) -> tuple[float, float]:
                def go() -> None:
                    for w in wins:
                        vad.voice_confidence(w)  # type: ignore[attr-defined]

                return timed(go, len(wins))

            res[name] = best_of(repeats, run)
        ours, theirs = res["caesura CaesuraVADAnalyzer"], res["pipecat SileroVADAnalyzer"]
        rows.append(("voice_confidence", rate, theirs, ours))
    return rows


def bench_analyze_audio(
    repeats: int,
) -> list[tuple[str, int, tuple[float, float], tuple[float, float]]]:
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

            async def run_all(vad: object = vad, chunks: list[bytes] = chunks) -> None:
                for c in chunks:
                    await vad.analyze_audio(c)  # type: ignore[attr-defined]

            def run(
                run_all: Callable[[], object] = run_all, n: int = n_windows
            ) -> tuple[float, float]:
                return timed(lambda: asyncio.run(run_all()), n)  # type: ignore[arg-type]

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
    "I'd like to order a large pizza with mushrooms, olives and extra cheese, and some water.",
]


def speech_segments(name: str) -> list[tuple[int, int]]:
    audio, sr = read_audio(FIXTURES / name)
    out = []
    for seg in speech_timestamps(audio, sr):
        start, end = (seg.start, seg.end) if hasattr(seg, "start") else (seg["start"], seg["end"])
        out.append((int(start), int(end)))
    return out


def bench_smart_turn(repeats: int) -> tuple[float, float, float, int]:
    """LocalSmartTurnAnalyzerV3: feed each utterance (speech + 0.2 s of silence, 20 ms chunks)
    as Pipecat's TurnAnalyzerUserTurnStopStrategy does, then time ``analyze_end_of_turn()``
    (one decision: Whisper features + ONNX over the last <= 8 s). Returns (median wall ms,
    median model e2e ms from its TurnMetricsData, median process-CPU ms, decisions)."""
    analyzer = LocalSmartTurnAnalyzerV3()
    analyzer.set_sample_rate(16000)
    walls: list[float] = []
    e2e: list[float] = []
    cpus: list[float] = []
    for fixture in ("speech_16k.wav", "ami_sample_16k.wav"):
        pcm = pcm_at(fixture, 16000)
        for start, end in speech_segments(fixture):
            utt = pcm[2 * max(0, start - 8000) : 2 * end] + b"\x00\x00" * 3200

            async def one(
                utt: bytes = utt,
                speech_bytes: int = 2 * (end - max(0, start - 8000)),
                step: int = 640,  # 20 ms at 16 kHz, in bytes
            ) -> tuple[float, float]:
                analyzer.clear()
                for i in range(0, len(utt), step):
                    analyzer.append_audio(utt[i : i + step], is_speech=i < speech_bytes)
                t, c = time.perf_counter(), time.process_time()
                _, metrics = await analyzer.analyze_end_of_turn()
                wall = (time.perf_counter() - t) * 1000
                cpus.append((time.process_time() - c) * 1000)
                return wall, float(getattr(metrics, "e2e_processing_time_ms", float("nan")))

            for _ in range(repeats):
                w, m = asyncio.run(one())
                walls.append(w)
                e2e.append(m)
    asyncio.run(analyzer.cleanup())
    return statistics.median(walls), statistics.median(e2e), statistics.median(cpus), len(walls)


def load_scorer() -> tuple[object, str]:
    """caesura's end-of-turn model, or the lexical heuristic when it is not installed."""
    try:
        from caesura.eot import EndOfTurnModel  # type: ignore[attr-defined]  # noqa: PLC0415

        return EndOfTurnModel.load(), "caesura end-of-turn model"
    except Exception as exc:  # not installed yet: say so and measure the fallback
        logging.getLogger(__name__).warning("end-of-turn model unavailable (%s)", exc)
        return lexical_end_probability, "lexical heuristic (end-of-turn model NOT installed)"


def bench_scorer(scorer: object, repeats: int) -> tuple[float, float]:
    """Median ms of one P(end | words) inference over TRANSCRIPTS (after a warm-up)."""
    predict = getattr(scorer, "predict", scorer)
    turns_list = [
        [
            {"role": "assistant", "content": "Hi, how can I help you today?"},
            {"role": "user", "content": t},
        ]
        for t in TRANSCRIPTS
    ]
    for turns in turns_list:
        predict(turns)  # type: ignore[operator]
    times, cpus = [], []
    for _ in range(repeats):
        for turns in turns_list:
            t, c = time.perf_counter(), time.process_time()
            predict(turns)  # type: ignore[operator]
            times.append((time.perf_counter() - t) * 1000)
            cpus.append((time.process_time() - c) * 1000)
    return statistics.median(times), statistics.median(cpus)


async def _setup_strategy(strategy: object) -> None:
    setup = FrameProcessorSetup(
        clock=SystemClock(),
        task_manager=TaskManager(),
        pipeline_worker=None,  # type: ignore[arg-type]
    )
    await strategy.setup(setup)  # type: ignore[attr-defined]


def bench_decision_paths(
    scorer: object, repeats: int
) -> tuple[list[tuple[float, float]], list[tuple[float, float]], list[float]]:
    """(Pipecat's decisions, ours, our scorer time per decision in ms): the whole decision on
    the event loop, as each stop strategy makes it, on the same
    utterance audio: Pipecat's TurnAnalyzerUserTurnStopStrategy(LocalSmartTurnAnalyzerV3)
    decides when VAD reports the stop (``process_frame(VADUserStoppedSpeakingFrame)``, which
    awaits ``analyze_end_of_turn``); CaesuraTurnStopStrategy decides when the final transcript
    arrives (``process_frame(TranscriptionFrame)``: worker hop, engine, model, metrics)."""
    pcm = pcm_at("speech_16k.wav", 16000)[: 16000 * 2 * 2]  # a 2 s utterance
    sil = b"\x00\x00" * 9600  # 0.6 s: past min_delay, so the final transcript is decided at once
    step = 640

    def frames(data: bytes) -> list[InputAudioRawFrame]:
        return [
            InputAudioRawFrame(audio=data[i : i + step], sample_rate=16000, num_channels=1)
            for i in range(0, len(data), step)
        ]

    async def theirs() -> list[tuple[float, float]]:
        strategy = TurnAnalyzerUserTurnStopStrategy(turn_analyzer=LocalSmartTurnAnalyzerV3())
        await _setup_strategy(strategy)
        out = []
        for k in range(repeats * len(TRANSCRIPTS)):
            await strategy.handle_user_turn_started()
            await strategy.process_frame(VADUserStartedSpeakingFrame(start_secs=0.2))
            for f in frames(pcm):
                await strategy.process_frame(f)
            await strategy.process_frame(
                TranscriptionFrame(TRANSCRIPTS[k % len(TRANSCRIPTS)], "u", "t")
            )
            t, c = time.perf_counter(), time.process_time()
            await strategy.process_frame(VADUserStoppedSpeakingFrame(stop_secs=0.2))
            out.append(((time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000))
            await strategy.handle_user_turn_stopped()
        await strategy.cleanup()
        return out

    scorer_ms: list[float] = []

    async def ours() -> list[tuple[float, float]]:
        strategy = CaesuraTurnStopStrategy(scorer=scorer)
        await _setup_strategy(strategy)
        out = []
        for k in range(repeats * len(TRANSCRIPTS)):
            await strategy.handle_user_turn_started()
            for f in frames(pcm + sil):
                await strategy.process_frame(f)
            t, c = time.perf_counter(), time.process_time()
            await strategy.process_frame(
                TranscriptionFrame(TRANSCRIPTS[k % len(TRANSCRIPTS)], "u", "t", finalized=True)
            )
            out.append(((time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000))
            decision = strategy.last_decision
            scorer_ms.append(decision.inference_ms if decision is not None else float("nan"))
            await strategy.handle_user_turn_stopped()
        await strategy.cleanup()
        return out

    return asyncio.run(theirs()), asyncio.run(ours()), scorer_ms


def bench_stream_alone(scorer: object, decisions: int) -> list[float]:
    """The dialogues the strategy's engine scored in bench_decision_paths (each user turn
    after the earlier ones, up to ``max_history_turns``), through one stream alone."""
    from caesura.turn import TurnOptions  # noqa: PLC0415

    stream = scorer.stream()  # type: ignore[attr-defined]
    keep = TurnOptions().max_history_turns - 1
    history: list[dict[str, str]] = []
    out = []
    for k in range(decisions):
        user = {"role": "user", "content": TRANSCRIPTS[k % len(TRANSCRIPTS)]}
        turns = [*(history[-keep:] if keep > 0 else []), user]
        t = time.perf_counter()
        stream.predict(turns)
        out.append((time.perf_counter() - t) * 1000)
        history.append(user)
    return out


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


_SHARING = """
import json, sys
sys.path.insert(0, {here!r})
from pipecat_bench import _rss_mib
from pipecat_caesura import CaesuraTurnStopStrategy
before = _rss_mib()
made = [CaesuraTurnStopStrategy()]
one = _rss_mib()
made += [CaesuraTurnStopStrategy() for _ in range({n} - 1)]
print(json.dumps([before, one, _rss_mib(), len({{id(m.scorer) for m in made}})]))
"""


def bench_model_sharing(n: int) -> tuple[float, float, float, int]:
    """(RSS before, after one strategy, after ``n`` strategies, distinct models) in MiB, in
    a fresh process: strategies with the default scorer share its one EndOfTurnModel."""
    import subprocess  # noqa: PLC0415

    code = _SHARING.format(here=str(Path(__file__).resolve().parent), n=n)
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    before, one, many, models = json.loads(out.strip().splitlines()[-1])
    return float(before), float(one), float(many), int(models)


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--streams", default="1,8,32", help="concurrent pipelines to simulate")
    parser.add_argument("--data", default=None, help="ignored (uses tests/fixtures only)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    results: dict[str, object] = {"vad": [], "concurrent": []}
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if MISSING is not None:
        print(f"pipecat_bench: skipped ({MISSING}); install pipecat-ai==1.14.0 and plugins/pipecat")
        return 0

    print(
        f"pipecat-ai {version('pipecat-ai')}, pipecat-caesura {version('pipecat-caesura')}, "
        f"onnxruntime {version('onnxruntime')}, {os.cpu_count()} CPUs visible, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print()
    print("== VAD: per 32 ms window (median of", args.repeats, "runs over speech_16k.wav) ==")
    print("   wall = elapsed time, cpu = process CPU time (robust when other jobs share the cores)")
    cols = (
        f"{'Pipecat wall':>13} {'caesura':>10} {'ratio':>6}   {'Pipecat cpu':>12} {'caesura':>10}"
    )
    print(f"{'path':30} {'rate':>6} {cols} {'ratio':>6}")
    for name, rate, (tw, tc), (ow, oc) in bench_voice_confidence(
        args.repeats
    ) + bench_analyze_audio(args.repeats):
        results["vad"].append(  # type: ignore[attr-defined]
            {
                "path": name,
                "rate": rate,
                "pipecat_wall_s": tw,
                "caesura_wall_s": ow,
                "pipecat_cpu_s": tc,
                "caesura_cpu_s": oc,
            }
        )
        print(
            f"{name:30} {rate:>6} {tw * 1e6:>10.1f} µs {ow * 1e6:>7.1f} µs {ow / tw:>5.2f}x   "
            f"{tc * 1e6:>9.1f} µs {oc * 1e6:>7.1f} µs {oc / tc:>5.2f}x"
        )
    streams = [int(s) for s in args.streams.split(",") if s]
    print()
    print("== VAD: N concurrent pipelines, an analyzer each on its own thread, per window ==")
    print(f"{'N':>4} {cols} {'ratio':>6} {'max batch':>10}")
    for _, n, pw, ow, pc, oc, mb in bench_concurrent(streams, args.repeats):
        results["concurrent"].append(  # type: ignore[attr-defined]
            {
                "streams": n,
                "pipecat_wall_s": pw,
                "caesura_wall_s": ow,
                "pipecat_cpu_s": pc,
                "caesura_cpu_s": oc,
                "max_batch": mb,
            }
        )
        print(
            f"{n:>4} {pw * 1e6:>10.1f} µs {ow * 1e6:>7.1f} µs {ow / pw:>5.2f}x   "
            f"{pc * 1e6:>9.1f} µs {oc * 1e6:>7.1f} µs {oc / pc:>5.2f}x {mb:>10}"
        )
    print()
    print("== End of turn: one decision ==")
    smart_wall, smart_e2e, smart_cpu, n = bench_smart_turn(max(1, args.repeats // 2))
    scorer, scorer_name = load_scorer()
    ours_wall, ours_cpu = bench_scorer(scorer, args.repeats)
    print(f"Pipecat LocalSmartTurnAnalyzerV3 (analyze_end_of_turn, audio <= 8 s, {n} decisions):")
    print(f"    {smart_wall:9.2f} ms wall  {smart_e2e:9.2f} ms model e2e  {smart_cpu:9.2f} ms cpu")
    print(f"caesura scorer, {scorer_name} ({len(TRANSCRIPTS)} transcripts x {args.repeats}):")
    print(f"    {ours_wall:9.3f} ms wall  {'':24}{ours_cpu:9.3f} ms cpu")
    print(
        f"    ratio caesura / smart-turn: wall {ours_wall / smart_wall:.3f}x, "
        f"cpu {ours_cpu / max(smart_cpu, 1e-9):.3f}x"
    )
    repeats = max(1, args.repeats // 2)
    theirs_path, ours_path, scorer_ms = bench_decision_paths(scorer, repeats)
    tw = statistics.median(p[0] for p in theirs_path)
    tc = statistics.median(p[1] for p in theirs_path)
    ow = statistics.median(p[0] for p in ours_path)
    oc = statistics.median(p[1] for p in ours_path)
    print("whole decision inside the stop strategy (process_frame on the event loop, median):")
    label = "Pipecat TurnAnalyzerUserTurnStopStrategy(LocalSmartTurnAnalyzerV3)"
    print(f"    {label:68} {tw:9.2f} ms wall {tc:9.2f} ms cpu")
    print(f"    {'CaesuraTurnStopStrategy':68} {ow:9.2f} ms wall {oc:9.2f} ms cpu")
    print(f"    ratio caesura / Pipecat: wall {ow / tw:.3f}x, cpu {oc / max(tc, 1e-9):.3f}x")
    results["end_of_turn"] = {
        "scorer": scorer_name,
        "smart_turn": {"wall_ms": smart_wall, "model_e2e_ms": smart_e2e, "cpu_ms": smart_cpu},
        "caesura_scorer": {"wall_ms": ours_wall, "cpu_ms": ours_cpu},
        "decision_path": {
            "pipecat_smart_turn_strategy": {"wall_ms": tw, "cpu_ms": tc},
            "caesura_turn_stop_strategy": {"wall_ms": ow, "cpu_ms": oc},
        },
    }
    if hasattr(scorer, "stream") and scorer_ms:
        alone = bench_stream_alone(scorer, len(scorer_ms))
        sw, aw = statistics.median(scorer_ms), statistics.median(alone)
        print("scorer time per decision: through the strategy's engine vs one stream alone:")
        print(
            f"    {'CaesuraTurnStopStrategy (engine -> EndOfTurnModel.stream())':68} {sw:9.3f} ms"
        )
        print(f"    {'EndOfTurnModel.stream() alone, same dialogues':68} {aw:9.3f} ms")
        print(f"    ratio strategy / alone: {sw / aw:.2f}x ({len(scorer_ms)} decisions)")
        results["end_of_turn"]["scorer_per_decision"] = {  # type: ignore[index]
            "strategy_ms": sw,
            "stream_alone_ms": aw,
            "decisions": len(scorer_ms),
        }
    before, one, many, models = bench_model_sharing(4)
    print("memory: RSS with CaesuraTurnStopStrategy() instances (default scorer):")
    print(
        f"    before {before:.0f} MiB, one strategy +{one - before:.1f} MiB, four "
        f"+{many - before:.1f} MiB; {models} end-of-turn model(s) loaded"
    )
    results["model_sharing"] = {
        "rss_before_mib": before,
        "rss_one_mib": one,
        "rss_four_mib": many,
        "models": models,
    }
    results["load_average"] = os.getloadavg()[0]
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
