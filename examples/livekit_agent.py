"""A complete LiveKit voice agent using caesura's VAD and end-of-turn detector.

Both caesura models are loaded once per worker process in ``prewarm`` and shared by every job
(VAD streams of all jobs in a process are batched into one model call). STT, LLM and TTS go
through LiveKit Inference here; swap in any plugin you like.

    pip install . ./plugins/livekit  # from a clone (once released: livekit-plugins-caesura)
    export LIVEKIT_URL=... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...
    python examples/livekit_agent.py dev        # or: console / start

Models can be overridden with CAESURA_EXAMPLE_STT / _LLM / _TTS (LiveKit Inference names).
"""

from __future__ import annotations

import logging
import os

from livekit.agents import (
    Agent,
    AgentSession,
    JobContext,
    JobProcess,
    WorkerOptions,
    cli,
)

from livekit.plugins import caesura

logger = logging.getLogger("caesura-example")

STT = os.environ.get("CAESURA_EXAMPLE_STT", "deepgram/nova-3")
LLM = os.environ.get("CAESURA_EXAMPLE_LLM", "openai/gpt-4.1-mini")
TTS = os.environ.get("CAESURA_EXAMPLE_TTS", "cartesia/sonic-2")


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


async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    session = make_session(ctx.proc)
    await session.start(agent=Receptionist(), room=ctx.room)


if __name__ == "__main__":
    cli.run_app(WorkerOptions(entrypoint_fnc=entrypoint, prewarm_fnc=prewarm))
