"""examples/livekit_agent.py: prewarm loads both models; the session is wired to them."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import re
import sys
import types
from pathlib import Path

import pytest
from livekit.agents import AgentSession
from lk_harness import eot_model_or_skip

from livekit.plugins import caesura

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "livekit_agent.py"


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


def test_livekit_cli_finds_the_example_agent(monkeypatch):
    """``python -m livekit.agents start examples/livekit_agent.py`` (what the LiveKit CLI's
    ``lk agent dev`` drives) finds the example's AgentServer, whose setup is ``prewarm``."""
    discover = pytest.importorskip("livekit.agents.cli.discover", reason="livekit-agents < 1.3")
    monkeypatch.setattr(sys, "path", list(sys.path))  # discovery prepends examples/
    monkeypatch.delitem(sys.modules, "livekit_agent", raising=False)
    data = discover.get_import_data(path=EXAMPLE)
    module = sys.modules[data.module_data.module_import_str]
    assert data.app_name == "server"
    assert module.server.setup_fnc is module.prewarm
    assert module.server._entrypoint_fnc is module.entrypoint


@pytest.mark.parametrize(
    "doc", ["examples/livekit_agent.py", "docs/quickstart/livekit.md", "plugins/livekit/README.md"]
)
def test_docs_use_the_cli_livekit_agents_recommends(doc):
    """livekit-agents 1.8 deprecates its script CLI (``cli.run_app(WorkerOptions(...))``,
    ``python agent.py dev``) for an ``AgentServer`` run by ``lk agent`` / ``python -m
    livekit.agents``: while the installed version says so, the docs show the new way."""
    legacy = importlib.util.find_spec("livekit.agents.cli._legacy")
    if legacy is None or "deprecated" not in Path(legacy.origin).read_text():
        pytest.skip("this livekit-agents does not deprecate cli.run_app")
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert "AgentServer" in text, doc
    for old in (r"cli\.run_app\(", r"WorkerOptions\(", r"python \S+\.py (dev|console|start)\b"):
        assert not re.search(old, text), f"{doc} still shows the deprecated {old!r}"
