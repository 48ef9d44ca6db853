"""Run a WAV file and a timed transcript through the turn engine and print the timeline.

    pip install .  # from a clone; once released: pip install caesura
    python examples/turns_from_wav.py tests/fixtures/speech_16k.wav examples/speech_16k_script.txt

``examples/speech_16k_script.txt`` is a stand-in script timed to the bundled recording's four
utterances. A transcript is either a text file with one line per utterance, ``START END TEXT``
(seconds; ``#`` comments allowed), or a JSON list ``[{"start": s, "end": s, "text": "..."}]``.
Each line is delivered to the engine as a *final* transcript when the audio clock reaches
``END + --stt-delay`` (a streaming recogniser flushed at the end of speech), and as an
*interim* one halfway through the utterance with ``--interims``. Without a transcript the
engine falls back to silence-only endpointing.

``--scorer`` picks P(end | words): ``model`` (caesura.eot.EndOfTurnModel, when installed),
``lexical`` (the last-word heuristic) or ``none``. ``--agent`` simulates an agent that
starts answering 0.3 s after each end of turn and speaks for ``--agent-seconds``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caesura import errors
from caesura.audio import read_audio
from caesura.eot import EndOfTurnModel
from caesura.turn import (
    Backchannel,
    EndOfTurn,
    FlushSTT,
    Interruption,
    ProgressiveAudio,
    SpeechStarted,
    SpeechStopped,
    TurnEngine,
    TurnOptions,
    TurnReopened,
    WordsScored,
    lexical_end_probability,
)
from caesura.vad import SileroVAD


@dataclass
class Line:
    start: float
    end: float
    text: str


def read_transcript(path: Path) -> list[Line]:
    raw = path.read_text(encoding="utf-8")
    lines: list[Line] = []
    if raw.lstrip().startswith("["):
        for i, item in enumerate(json.loads(raw)):
            try:
                lines.append(Line(float(item["start"]), float(item["end"]), str(item["text"])))
            except (KeyError, TypeError, ValueError) as exc:
                raise SystemExit(f"{path}: item {i} needs start, end and text ({exc})") from exc
    else:
        for n, full in enumerate(raw.splitlines(), 1):
            row = full.split("#", 1)[0].strip()
            if not row:
                continue
            parts = row.split(maxsplit=2)
            try:
                lines.append(Line(float(parts[0]), float(parts[1]), parts[2]))
            except (IndexError, ValueError) as exc:
                raise SystemExit(f"{path}:{n}: expected 'START END TEXT', got {row!r}") from exc
    for ln in lines:
        if not 0 <= ln.start <= ln.end:
            raise SystemExit(f"{path}: bad times {ln.start}-{ln.end} for {ln.text!r}")
    return sorted(lines, key=lambda ln: ln.end)


def describe(ev) -> str:
    if isinstance(ev, SpeechStarted):
        flags = [f"onset {ev.start_s:.2f}s"]
        if ev.interrupt_response:
            flags.append("agent speaking: barge-in?")
        if ev.continued:
            flags.append("continued after split")
        return f"speech started   turn {ev.turn_id} ({', '.join(flags)})"
    if isinstance(ev, SpeechStopped):
        start = ev.start_sample / ev.sample_rate
        return f"speech stopped   turn {ev.turn_id} [{start:.2f}-{ev.end_s:.2f}s] ({ev.reason})"
    if isinstance(ev, FlushSTT):
        return "flush STT        (ask the recogniser for its final words now)"
    if isinstance(ev, EndOfTurn):
        p = "-" if ev.probability is None else f"{ev.probability:.2f}"
        pw = "-" if ev.words_probability is None else f"{ev.words_probability:.2f}"
        pw += " (last words pending)" if ev.words_pending else ""
        return (
            f"END OF TURN      turn {ev.turn_id} after {ev.delay_ms:.0f} ms ({ev.reason}; "
            f"P(end|words)={pw}, fused={p}, min delay {ev.min_delay_ms:.0f} ms): "
            f"{ev.transcript!r}"
        )
    if isinstance(ev, TurnReopened):
        return f"turn reopened    turn {ev.turn_id} after a {ev.pause_ms:.0f} ms pause"
    if isinstance(ev, Interruption):
        return f"INTERRUPTION     turn {ev.turn_id} ({ev.reason}): {ev.transcript!r}"
    if isinstance(ev, Backchannel):
        return f"backchannel      {ev.transcript!r} (agent goes on)"
    if isinstance(ev, ProgressiveAudio):
        secs = ev.audio.size / ev.sample_rate
        return f"progressive      turn {ev.turn_id} #{ev.index}: {secs:.2f}s of audio"
    if isinstance(ev, WordsScored):
        pending = " (last words pending)" if ev.words_pending else ""
        return (
            f"words scored     turn {ev.turn_id}: P(end|words)={ev.probability:.2f}{pending} "
            f"in {ev.inference_ms:.1f} ms: {ev.transcript!r}"
        )
    return repr(ev)


def make_scorer(kind: str, path: Path | None = None):
    if kind == "none":
        return None
    if kind == "lexical":
        return lexical_end_probability
    try:
        return EndOfTurnModel.load(path)
    except errors.CaesuraError as exc:
        print(f"(end-of-turn model unavailable: {exc}; using the lexical heuristic)")
        return lexical_end_probability


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("wav", type=Path)
    ap.add_argument("transcript", type=Path, nargs="?")
    ap.add_argument("--scorer", choices=("model", "lexical", "none"), default="model")
    ap.add_argument("--model-path", type=Path, default=None, help="exported model folder")
    ap.add_argument("--stt-delay", type=float, default=0.15, help="seconds after END")
    ap.add_argument("--interims", action="store_true")
    ap.add_argument("--agent", action="store_true", help="simulate an agent answering")
    ap.add_argument("--agent-seconds", type=float, default=2.0)
    ap.add_argument("--progressive-ms", type=float, default=0.0)
    ap.add_argument("--chunk-ms", type=float, default=20.0)
    args = ap.parse_args(argv)

    try:
        audio, sr = read_audio(args.wav)
    except (OSError, errors.CaesuraError) as exc:
        print(f"cannot read {args.wav}: {exc}", file=sys.stderr)
        return 2
    lines = read_transcript(args.transcript) if args.transcript else []
    opts = TurnOptions(progressive_interval_ms=args.progressive_ms)
    vad = SileroVAD.load()
    model_rate = vad.model_rate_for(sr)
    eng = TurnEngine(
        opts,
        scorer=make_scorer(args.scorer, args.model_path),
        vad=vad,
        sample_rate=model_rate,
        input_sample_rate=sr,
    )
    # (time, kind, payload) of scripted inputs, in order
    feed: list[tuple[float, str, str]] = []
    for ln in lines:
        if args.interims:
            words = ln.text.split()
            feed.append(((ln.start + ln.end) / 2, "interim", " ".join(words[: len(words) // 2])))
        feed.append((ln.end + args.stt_delay, "final", ln.text))
    feed.sort(key=lambda f: f[0])
    agent_until: float | None = None
    agent_from: float | None = None
    chunk = max(1, round(sr * args.chunk_ms / 1000))
    print(f"{args.wav}: {audio.size / sr:.2f}s at {sr} Hz, {len(lines)} transcript lines")

    def show(evs) -> None:
        nonlocal agent_from
        for ev in evs:
            print(f"{ev.time_s:8.3f}s  {describe(ev)}")
            if isinstance(ev, EndOfTurn) and args.agent:
                agent_from = ev.time_s + 0.3
            if isinstance(ev, Interruption) and args.agent:
                print(f"{ev.time_s:8.3f}s  (agent stops talking)")
                eng.set_agent_speaking(False)

    for i in range(0, audio.size, chunk):
        t = i / sr
        while feed and feed[0][0] <= t:
            _, kind, text = feed.pop(0)
            print(f"{t:8.3f}s  transcript ({kind}): {text!r}")
            show(eng.push_transcript(text, final=kind == "final", language="en"))
        if agent_from is not None and t >= agent_from:
            print(f"{t:8.3f}s  (agent starts talking)")
            eng.response_committed()
            eng.set_agent_speaking(True)
            agent_until, agent_from = t + args.agent_seconds, None
        if agent_until is not None and t >= agent_until:
            print(f"{t:8.3f}s  (agent done)")
            eng.set_agent_speaking(False)
            agent_until = None
        show(eng.push_audio(np.asarray(audio[i : i + chunk])))
    for _, kind, text in feed:
        show(eng.push_transcript(text, final=kind == "final", language="en"))
    show(eng.flush())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
