"""End-of-turn latency: caesura's text model beside Pipecat Smart Turn v3.2 and LiveKit's local
turn detector, each timed in its own subprocess (1 inference thread) in the same run.

* caesura: ``EndOfTurnModel.predict`` (tokenisation included) on a dialogue whose read window
  is full, ``num_threads=1``: the shipped default window (96 tokens at most: it scored best on
  Switchboard val); ``caesura-ctx128`` reads the whole trained context
  (``EndOfTurnModel.load(max_tokens=128)``: 127 tokens, one position is kept for a pending
  word); ``caesura-pending`` is the default window asked with ``words_pending=True`` (P(end
  after one more word): 16 next-word candidates scored in the same call; the engine asks it
  while the transcript lags the speech). Every one of these calls computes its whole window.
* ``caesura-stream`` / ``caesura-stream-ctx128``: what a voice agent pays per decision, an
  ``EndOfTurnModel.stream()`` asked at every new word of a conversation (the user's turn one
  word longer each call, agent replies in between), timing every call — including those where
  the read window's start moves on and the whole window is computed again.
* Pipecat: ``LocalSmartTurnAnalyzerV3(cpu_count=1)._predict_endpoint`` on 8 s of speech
  (the bundled smart-turn-v3.2-cpu.onnx; Whisper features included).
* LiveKit: ``livekit.local_inference.EOT().predict`` on 1.2 s of int16 speech (livekit-agents
  1.8.9; its native runtime picks its own thread count, reported as ``parallelism``).

Also reported: RSS added by loading each model, the bytes caesura's model adds to the wheel,
each target met or missed, and how many CPUs other processes kept busy meanwhile (from
/proc/stat less this run's own CPU time): a timing taken beside a training run or a test
suite is flagged as inflated rather than quoted.
Peers are skipped with a message when not installed (``nox -s bench`` installs them).

    python benchmarks/eot_speed.py [--iters 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import time
import zipfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "tests" / "fixtures" / "speech_16k.wav"


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _speech(seconds: float):
    import wave  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    with wave.open(str(SPEECH)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    n = int(seconds * 16000)
    return np.resize(pcm, n) if len(pcm) < n else pcm[-n:]


def _time(fn, iters: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


AGENT_SAYS = (
    "Sure, I can book that for you. We have tables at six thirty, seven fifteen and eight "
    "o'clock tomorrow evening; which would you like, and how many people will there be?"
)
USER_TEXT = (
    "well i was thinking maybe seven fifteen if that is still free and uh there will be four of "
    "us two adults and two kids so could we get a table by the window please and um do you "
    "have a menu for children as well because my son is a little picky with food"
)
USER_SAYS = USER_TEXT.split(" ")


def _full_window(model) -> list[dict[str, str]]:
    """A dialogue whose read window is exactly ``model.max_tokens`` tokens long."""
    words: list[str] = []
    while len(words) < 2000:
        words.append(USER_SAYS[len(words) % len(USER_SAYS)])
        turns = [
            {"role": "assistant", "content": AGENT_SAYS},
            {"role": "user", "content": " ".join(words)},
        ]
        if len(model.encode(turns)) == model.max_tokens:
            return turns
    raise SystemExit(f"no dialogue fills the {model.max_tokens}-token window exactly")


#: A booking call, turn by turn (agent, user, agent, ...): texts of different lengths, so the
#: read window's start moves on as it would in a real conversation.
CONVERSATION = [
    "Hello, thanks for calling Harbour Kitchen. How can I help you today?",
    "hi yes i would like to book a table for tomorrow evening if you have anything",
    AGENT_SAYS,
    USER_TEXT,
    "We do have a children's menu. So that is four people at seven fifteen by the window. "
    "Could I have a name for the booking?",
    "sure it is under martinez m a r t i n e z",
    "Thank you, Ms Martinez. Would you like us to send a confirmation by text message to the "
    "number you are calling from?",
    "yes please that would be great and um actually could you also tell me if there is "
    "parking nearby because last time we had to walk quite far",
    "There is a public car park two minutes away on Quay Street; it is free after six.",
    "oh perfect thank you so much that is all i needed see you tomorrow then",
]


def _growing_dialogue(calls: int) -> list[list[dict[str, str]]]:
    """What a voice agent asks during a conversation: the user's turn one more word at a
    time (a call per word), then the agent's reply and the next user turn; the conversation
    starts over when it runs out."""
    out: list[list[dict[str, str]]] = []
    while len(out) < calls:
        history: list[dict[str, str]] = []
        for i, text in enumerate(CONVERSATION):
            if i % 2 == 0:
                history.append({"role": "assistant", "content": text})
                continue
            words = text.split(" ")
            for n in range(1, len(words) + 1):
                out.append([*history, {"role": "user", "content": " ".join(words[:n])}])
            history.append({"role": "user", "content": text})
    return out[:calls]


def worker(name: str, iters: int) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rss0 = _rss_mb()
    info: dict = {}
    if name.startswith("caesura"):
        from caesura.eot import EndOfTurnModel  # noqa: PLC0415

        # "-ctx128": the whole trained context (max_tokens=128: 127 tokens, one position is
        # kept for a pending word); otherwise the shipped default window (read_tokens)
        max_tokens = 128 if name.endswith("-ctx128") else None
        t = time.perf_counter()
        model = EndOfTurnModel.load(num_threads=1, max_tokens=max_tokens)
        info["load_ms"] = (time.perf_counter() - t) * 1e3
        if name.startswith("caesura-stream"):
            stream = model.stream()
            calls = _growing_dialogue(iters + 11)
            stream.predict(calls[0])
            rss1 = _rss_mb()
            computed: list[int] = []
            windows: list[int] = []

            todo = iter(calls[1:])

            def call() -> None:
                stream.predict(next(todo))
                computed.append(stream.computed_tokens)
                windows.append(stream.cached_tokens)

            times = _time(call, iters)
            computed, windows = computed[10:], windows[10:]  # the timed calls
            info["tokens"] = max(windows)
            info["mean_window_tokens"] = sum(windows) / len(windows)
            info["mean_computed_tokens"] = sum(computed) / len(computed)
            info["full_window_calls"] = sum(c == w for c, w in zip(computed, windows, strict=True))
            info["input"] = f"+1 word, {info['mean_window_tokens']:.0f} tok"
        else:
            pending = name == "caesura-pending"
            turns = _full_window(model)
            info["tokens"] = len(model.encode(turns))
            model.predict(turns, words_pending=pending)
            rss1 = _rss_mb()
            times = _time(lambda: model.predict(turns, words_pending=pending), iters)
            info["input"] = f"{info['tokens']} tokens{', pending' if pending else ' of text'}"
    elif name == "pipecat-smart-turn-v3.2":
        from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3  # noqa: PLC0415

        audio = _speech(8.0).astype("float32") / 32768.0
        t = time.perf_counter()
        an = LocalSmartTurnAnalyzerV3(cpu_count=1)
        info["load_ms"] = (time.perf_counter() - t) * 1e3
        an._predict_endpoint(audio)
        rss1 = _rss_mb()
        times = _time(lambda: an._predict_endpoint(audio), iters)
        info["input"] = "8 s of 16 kHz audio"
    elif name == "livekit-local-eot":
        from livekit import local_inference as li  # noqa: PLC0415

        pcm = _speech(1.2)
        t = time.perf_counter()
        eot = li.EOT()
        eot.predict(pcm)
        info["load_ms"] = (time.perf_counter() - t) * 1e3
        rss1 = _rss_mb()
        with contextlib.suppress(Exception):  # private helper; informative only
            info["parallelism"] = li._native._parallelism()
        times = _time(lambda: eot.predict(pcm), iters)
        info["input"] = "1.2 s of 16 kHz audio"
    else:
        raise SystemExit(f"unknown worker {name}")
    import numpy as np  # noqa: PLC0415

    a = np.asarray(times)
    return {
        "name": name,
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "iters": iters,
        "rss_before_mb": rss0,
        "rss_loaded_mb": rss1,
        "rss_added_mb": rss1 - rss0,
        **info,
    }


def wheel_bytes() -> tuple[int, int]:
    assets = ROOT / "src" / "caesura" / "eot" / "assets"
    files = [p for p in assets.iterdir() if p.is_file() and p.suffix != ".py"]
    raw = sum(p.stat().st_size for p in files)
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in files:
            z.write(p, p.name)
    return raw, len(buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="unused (uniform bench interface)")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.iters)))
        return 0
    from caesura.bench import OtherLoad  # noqa: PLC0415

    rows = []
    names = (
        "caesura",
        "caesura-ctx128",
        "caesura-pending",
        "caesura-stream",
        "caesura-stream-ctx128",
        "pipecat-smart-turn-v3.2",
        "livekit-local-eot",
    )
    loads: list[OtherLoad] = []
    for name in names:
        with OtherLoad() as load:
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", name, "--iters", str(args.iters)],
                capture_output=True,
                check=False,
                text=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
        if proc.returncode != 0:
            err = (proc.stderr.strip().splitlines() or ["?"])[-1]
            print(f"skipping {name}: {err}")
            continue
        rows.append(
            {**json.loads(proc.stdout.strip().splitlines()[-1]), "other_busy_cpus": load.cpus}
        )
        loads.append(load)
    raw, zipped = wheel_bytes()
    print(f"{'model':26s}{'input':>24s}{'p50 ms':>9s}{'p99 ms':>9s}{'RSS+ MB':>9s}")
    for r in rows:
        print(
            f"{r['name']:26s}{r['input']:>24s}{r['p50_ms']:9.2f}{r['p99_ms']:9.2f}"
            f"{r['rss_added_mb']:9.1f}"
        )
    for ours in ("caesura", "caesura-stream"):
        base = next((r for r in rows if r["name"] == ours), None)
        if base:
            for r in rows:
                if not r["name"].startswith("caesura"):
                    print(
                        f"  {ours} p50 is {r['p50_ms'] / base['p50_ms']:.1f}x faster than"
                        f" {r['name']}"
                    )
    print(
        f"caesura model adds {raw / 1e6:.2f} MB to the package ({zipped / 1e6:.2f} MB compressed)"
    )
    for r in rows:
        if r["name"].startswith("caesura-stream"):
            print(
                f"  {r['name']}: {r['mean_computed_tokens']:.2f} of {r['mean_window_tokens']:.0f}"
                f" window tokens computed per call on average; {r['full_window_calls']} of"
                f" {r['iters']} calls computed their whole window"
            )
    print(
        "targets: p50 <= 5 ms, p99 <= 15 ms per decision on 1 thread (the issue states them"
        " at 128 tokens: caesura-ctx128 computes all 127 every call, caesura-stream-ctx128"
        " what a conversation adds); <= 15 MB; <= 100 MB RSS"
    )
    for r in rows:
        if r["name"] in ("caesura-ctx128", "caesura-stream-ctx128"):
            ok = r["p50_ms"] <= 5 and r["p99_ms"] <= 15 and r["rss_added_mb"] <= 100
            print(
                f"  {r['name']}: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms,"
                f" RSS +{r['rss_added_mb']:.1f} MB: {'met' if ok else 'MISSED'}"
            )
    print(f"  package: {raw / 1e6:.2f} MB: {'met' if raw <= 15e6 else 'MISSED'}")
    if loads:  # the busiest model's run: its timings are the most inflated
        worst = max(loads, key=lambda x: -math.inf if math.isnan(x.cpus) else x.cpus)
        print(f"busiest model run: {worst.describe()}")
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows, "asset_bytes": raw, "asset_bytes_zipped": zipped}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
