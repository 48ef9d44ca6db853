"""Where the plugins' VADs differ from the frameworks' own Silero VADs, measured.

    python benchmarks/plugin_differences.py [--data IGNORED]

Both run the same Silero v6.2 model file; what differs is around it.

1. Pipecat (needs pipecat-ai + pipecat-caesura): Pipecat 1.14's ``SileroVADAnalyzer`` resets
   the model's recurrent state about every 2 s of audio at the first quiet moment;
   ``CaesuraVADAnalyzer`` keeps one state for the whole stream unless
   ``reset_when_quiet=True``. Each analyzer runs Pipecat's ``analyze_audio`` (its state
   machine, default ``VADParams``) on 32 ms windows of the recording; printed: the largest
   |difference| of the per-window confidences, how many windows differ by more than 0.1, and
   the QUIET -> SPEAKING -> QUIET transitions of each.
2. LiveKit (needs livekit-agents + livekit-plugins-silero + livekit-plugins-caesura):
   ``caesura.VAD.load(...)`` and ``silero.VAD.load(...)`` with the same options on 50 ms
   24 kHz frames, as RoomIO sends them; printed: every START_OF_SPEECH / END_OF_SPEECH of
   each, for the default options and for ``min_speech_duration=0.5``. The minimum-speech
   rules differ: caesura counts ``min_speech_duration`` from the onset of the speech run, and
   a short dip under the threshold does not restart the count; livekit-plugins-silero restarts
   it at every window under its activation threshold (on exponentially smoothed
   probabilities, which also end its speech about one window later).

Both parts run on the repository's AMI meeting fixture (tests/fixtures/ami_sample_16k.wav);
the LiveKit part also on tests/fixtures/speech_16k.wav.

Nothing is downloaded; a part whose framework is not installed is skipped with the reason.
``nox -s bench`` installs both. The plugin READMEs quote these numbers, and
tests/pipecat/test_pipecat_vad.py and tests/livekit/test_livekit_vad.py check the quotes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WAV = ROOT / "tests" / "fixtures" / "ami_sample_16k.wav"
os.environ.setdefault("LOGURU_LEVEL", "WARNING")  # Pipecat logs model loads at DEBUG

from caesura.audio import read_audio, resample  # noqa: E402

try:
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.audio.vad.vad_analyzer import VADState
    from pipecat_caesura import CaesuraVADAnalyzer
except ImportError as exc:  # the LiveKit part may still run
    PIPECAT_MISSING: str | None = str(exc)
else:
    PIPECAT_MISSING = None

try:
    from livekit.agents.vad import VADEventType

    from livekit import rtc
    from livekit.plugins import caesura, silero
except ImportError as exc:  # the Pipecat part may still run
    LIVEKIT_MISSING: str | None = str(exc)
else:
    LIVEKIT_MISSING = None

SPEECH_WAV = ROOT / "tests" / "fixtures" / "speech_16k.wav"


def _pcm16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 32767 / 32768) * 32768.0).astype(np.int16)


# ----------------------------------------------------------------------------- Pipecat


def pipecat_run(analyzer: Any, wav: Path = WAV) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Per-window confidences and state transitions ``(seconds, "speaking"/"quiet")`` of a
    Pipecat VAD analyzer on ``wav`` (16 kHz), through Pipecat's own ``analyze_audio``."""
    audio, rate = read_audio(wav)
    if rate != 16000:
        audio, rate = resample(audio, rate, 16000), 16000
    pcm = _pcm16(audio).tobytes()
    analyzer.set_sample_rate(rate)
    confidences: list[float] = []
    inner = analyzer.voice_confidence

    def recorded(buffer: bytes) -> float:
        c = inner(buffer)
        confidences.append(float(np.asarray(c).reshape(-1)[0]))  # Pipecat's: an array
        return c

    analyzer.voice_confidence = recorded
    step = analyzer.num_frames_required() * 2

    async def main() -> list[tuple[float, str]]:
        changes: list[tuple[float, str]] = []
        state = VADState.QUIET
        for i in range(0, len(pcm) - step + 1, step):
            new = await analyzer.analyze_audio(pcm[i : i + step])
            if new != state and new in (VADState.SPEAKING, VADState.QUIET):
                changes.append((round((i + step) / 2 / rate, 3), new.name.lower()))
                state = new
        await analyzer.cleanup()
        return changes

    changes = asyncio.run(main())
    return np.asarray(confidences, dtype=np.float64), changes


def pipecat_differences(wav: Path = WAV) -> dict[str, Any]:
    """Pipecat's SileroVADAnalyzer against CaesuraVADAnalyzer, without and with resets."""
    theirs, their_changes = pipecat_run(SileroVADAnalyzer(), wav)
    out: dict[str, Any] = {"pipecat": their_changes}
    for name, reset in (("caesura", False), ("caesura_reset_when_quiet", True)):
        ours, changes = pipecat_run(CaesuraVADAnalyzer(reset_when_quiet=reset), wav)
        n = min(ours.size, theirs.size)
        gap = np.abs(ours[:n] - theirs[:n])
        out[name] = {
            "max_abs_diff": float(gap.max()),
            "windows_over_0.1": int((gap > 0.1).sum()),
            "windows": n,
            "transitions": changes,
        }
    return out


# ----------------------------------------------------------------------------- LiveKit


def livekit_events(vad: Any, wav: Path = WAV, rate: int = 24000) -> list[tuple[str, float]]:
    """``(START/END, timestamp)`` of a LiveKit VAD on ``wav`` as 50 ms frames at ``rate``."""
    audio, sr = read_audio(wav)
    pcm = _pcm16(resample(audio, sr, rate) if sr != rate else audio)
    n = rate // 20

    async def main() -> list[tuple[str, float]]:
        stream = vad.stream()
        events: list[tuple[str, float]] = []

        async def consume() -> None:
            async for ev in stream:
                if ev.type == VADEventType.START_OF_SPEECH:
                    events.append(("START", round(ev.timestamp, 3)))
                elif ev.type == VADEventType.END_OF_SPEECH:
                    events.append(("END", round(ev.timestamp, 3)))

        task = asyncio.create_task(consume())
        for i in range(0, pcm.size - n + 1, n):
            stream.push_frame(rtc.AudioFrame(pcm[i : i + n].tobytes(), rate, 1, n))
        stream.end_input()
        await task
        await stream.aclose()
        return events

    return asyncio.run(main())


#: name -> (recording, options given to both plugins' ``VAD.load``)
LIVEKIT_RUNS: dict[str, tuple[Path, dict[str, float]]] = {
    "ami, defaults": (WAV, {}),
    "ami, min_speech_duration=0.5": (WAV, {"min_speech_duration": 0.5}),
    "speech_16k, defaults": (SPEECH_WAV, {}),
}


def livekit_differences() -> dict[str, dict[str, list[tuple[str, float]]]]:
    """caesura.VAD against livekit-plugins-silero's VAD, the same options on both."""
    return {
        name: {
            "caesura": livekit_events(caesura.VAD.load(**opts), wav),
            "silero": livekit_events(silero.VAD.load(**opts), wav),
        }
        for name, (wav, opts) in LIVEKIT_RUNS.items()
    }


# ----------------------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wav", type=Path, default=WAV, help="the Pipecat part's recording")
    parser.add_argument("--data", default=None, help="ignored (uses the repository's fixtures)")
    args = parser.parse_args(argv)
    print(f"recording: {args.wav.relative_to(ROOT) if args.wav.is_relative_to(ROOT) else args.wav}")

    if PIPECAT_MISSING:
        print(f"\nPipecat: skipped ({PIPECAT_MISSING})")
    else:
        d = pipecat_differences(args.wav)
        print("\nPipecat 1.14 SileroVADAnalyzer vs CaesuraVADAnalyzer (default VADParams)")
        for name in ("caesura", "caesura_reset_when_quiet"):
            r = d[name]
            print(
                f"  {name:26s} max |confidence difference| {r['max_abs_diff']:.2f}, "
                f"{r['windows_over_0.1']} of {r['windows']} windows differ by > 0.1"
            )
        print(f"  transitions, Pipecat:               {d['pipecat']}")
        print(f"  transitions, caesura:               {d['caesura']['transitions']}")
        print(
            f"  transitions, caesura (resets):      {d['caesura_reset_when_quiet']['transitions']}"
        )

    if LIVEKIT_MISSING:
        print(f"\nLiveKit: skipped ({LIVEKIT_MISSING})")
    else:
        print("\nLiveKit: caesura.VAD vs livekit-plugins-silero VAD (same options, 24 kHz)")
        for name, d in livekit_differences().items():
            print(f"  {name}")
            print(f"    caesura: {d['caesura']}")
            print(f"    silero:  {d['silero']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
