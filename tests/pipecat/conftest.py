"""Fixtures for the Pipecat adapter tests: real pipecat-ai, real speech recordings.

Without pipecat-ai and pipecat-caesura installed (the core test session), the folder is not
collected: ``nox -s "tests(suite='pipecat')"`` installs both.
"""

from __future__ import annotations

import importlib.util

import pytest


def _missing() -> str | None:
    for module in ("pipecat.frames.frames", "pipecat_caesura"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return module
    return None


MISSING = _missing()
if MISSING is not None:
    collect_ignore_glob = ["test_*.py"]


def pytest_report_header() -> str | None:
    if MISSING is None:
        return None
    return f"tests/pipecat: not collected ({MISSING} is not installed)"


@pytest.fixture(scope="session")
def speech_pcm16k() -> bytes:
    from _pipecat_support import load_pcm  # noqa: PLC0415

    return load_pcm("speech_16k.wav", 16000)
