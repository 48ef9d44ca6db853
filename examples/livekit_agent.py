"""A complete LiveKit voice agent using caesura's VAD and end-of-turn detector.

Both caesura models are loaded once per worker process in ``prewarm`` (the ``AgentServer``'s
``setup_fnc``) and shared by every job (VAD streams of all jobs in a process are batched into
one model call). STT, LLM and TTS go through LiveKit Inference here; swap in any plugin you like.

    pip install . ./plugins/livekit  # from a clone (once released: livekit-plugins-caesura)
    python examples/livekit_agent.py check  # offline: both models on the bundled recording
    export LIVEKIT_URL=... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...  # needs a LiveKit project
    python -m livekit.agents start examples/livekit_agent.py --dev  # needs a LiveKit server

livekit-agents 1.8 runs an agent through the module's ``AgentServer`` (``server`` below): the
LiveKit CLI (``lk agent dev``, ``lk agent console``) or ``python -m livekit.agents start FILE``
find it. Its older script CLI (``cli.run_app``) is deprecated there, so this script only
answers ``check``.

Models can be overridden with CAESURA_EXAMPLE_STT / _LLM / _TTS (LiveKit Inference names).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess, llm
from livekit.agents.vad import VADEventType

from caesura.audio import read_audio, resample
from livekit import rtc
from livekit.plugins import caesura

logger = logging.getLogger("caesura-example")

STT = os.environ.get("CAESURA_EXAMPLE_STT", "deepgram/nova-3")
LLM = os.environ.get("CAESURA_EXAMPLE_LLM", "openai/gpt-4.1-mini")
TTS = os.environ.get("CAESURA_EXAMPLE_TTS", "cartesia/sonic-2")
WAV = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "speech_16k.wav"


class Receptionist(Agent):
    def __init__(self) -> None:
        super().__init__(
            instructions=(
                "You are the voice receptionist of a small restaurant. You take table "
                "bookings: ask for the number of people, the day and the time, then confirm. "
                "Keep answers short and natural; no lists, no markdown."
            )
        )

    async def on_enter(self) -> None:
        self.session.generate_reply(instructions="Greet the caller and offer to book a table.")


def prewarm(proc: JobProcess) -> None:
    """Runs once per worker process, before any job: load the models here (blocking)."""
    proc.userdata["vad"] = caesura.VAD.load(min_silence_duration=0.55)
    proc.userdata["turn_detector"] = caesura.TurnDetector()


server = AgentServer(setup_fnc=prewarm)


def make_session(proc: JobProcess) -> AgentSession:
    return AgentSession(
        vad=proc.userdata["vad"],
        stt=STT,
        llm=LLM,
        tts=TTS,
        turn_handling={
            # the semantic detector decides between min_delay and max_delay after each pause
            "turn_detection": proc.userdata["turn_detector"],
            "endpointing": {"min_delay": 0.4, "max_delay": 3.0},
        },
    )


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    session = make_session(ctx.proc)
    await session.start(agent=Receptionist(), room=ctx.room)


async def _check(proc: SimpleNamespace, wav: Path) -> None:
    vad, detector = proc.userdata["vad"], proc.userdata["turn_detector"]
    audio, rate = read_audio(wav)
    pcm = (np.clip(resample(audio, rate, 24000), -1, 1) * 32767).astype(np.int16)
    stream = vad.stream()  # 24 kHz, 50 ms frames: what LiveKit's room input sends
    step = 24000 // 20
    for i in range(0, len(pcm) - step + 1, step):
        stream.push_frame(rtc.AudioFrame(pcm[i : i + step].tobytes(), 24000, 1, step))
    stream.end_input()
    async for event in stream:
        if event.type == VADEventType.START_OF_SPEECH:
            print(f"VAD: start of speech at {event.timestamp:.2f} s")
        elif event.type == VADEventType.END_OF_SPEECH:
            print(f"VAD: end of speech at {event.timestamp:.2f} s")
    await stream.aclose()
    for text in ("i'd like to book a table for", "i'd like to book a table for two at eight"):
        chat = llm.ChatContext()
        chat.add_message(role="user", content=text)
        p = await detector.predict_end_of_turn(chat)
        print(f"turn detector: P(end of turn) = {p:.2f} after {text!r}")


def check(wav: Path = WAV) -> int:
    """Offline: what ``prewarm`` loads, run on a WAV file without a room or credentials."""
    proc = SimpleNamespace(userdata={})
    prewarm(proc)  # type: ignore[arg-type]
    print(f"VAD: {proc.userdata['vad'].model} ({proc.userdata['vad'].provider})")
    asyncio.run(_check(proc, wav))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["check"]:
        sys.exit(check(Path(sys.argv[2]) if len(sys.argv) > 2 else WAV))
    sys.exit(
        "usage: python examples/livekit_agent.py check [WAV]   (offline)\n"
        "run the agent with livekit-agents' CLI, which finds `server` in this file:\n"
        "  python -m livekit.agents start examples/livekit_agent.py --dev\n"
        "  (or the LiveKit CLI: lk agent dev / lk agent console)"
    )
