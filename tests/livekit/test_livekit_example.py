"""examples/livekit_agent.py: prewarm loads both models; the session is wired to them."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import types
from pathlib import Path

import pytest
from livekit.agents import AgentSession
from lk_harness import eot_model_or_skip

from livekit.plugins import caesura

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "livekit_agent.py"


def load_example():
    spec = importlib.util.spec_from_file_location("caesura_livekit_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_prewarm_and_session(monkeypatch):
    eot_model_or_skip()
    if "turn_handling" not in inspect.signature(AgentSession.__init__).parameters:
        pytest.skip("the example uses AgentSession(turn_handling=...) (livekit-agents >= 1.5)")
    # LiveKit Inference needs credentials to build its clients (nothing is contacted here)
    monkeypatch.setenv("LIVEKIT_API_KEY", "test-key-for-construction-only-0000")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "test-secret-for-construction-only-000")
    example = load_example()
    proc = types.SimpleNamespace(userdata={})
    example.prewarm(proc)
    assert isinstance(proc.userdata["vad"], caesura.VAD)
    assert isinstance(proc.userdata["turn_detector"], caesura.TurnDetector)

    async def build():
        return example.make_session(proc)

    session = asyncio.run(build())
    assert session.vad is proc.userdata["vad"]
    assert session.turn_detection is proc.userdata["turn_detector"]
