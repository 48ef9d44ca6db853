"""Fixtures for the Pipecat adapter tests: real pipecat-ai, real speech recordings."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "pipecat", reason="pipecat-ai is not installed (nox -s 'tests(suite=\"pipecat\")')"
)
pytest.importorskip("pipecat_caesura", reason="pipecat-caesura is not installed")

from _pipecat_support import load_pcm


@pytest.fixture(scope="session")
def speech_pcm16k() -> bytes:
    return load_pcm("speech_16k.wav", 16000)
