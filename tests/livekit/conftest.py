from __future__ import annotations

import pytest

# The LiveKit suite runs in its own virtualenv (nox -s "tests(suite='livekit')").
pytest.importorskip("livekit.agents", reason="livekit-agents is not installed (LiveKit suite)")

from lk_harness import load_pcm


@pytest.fixture(scope="session")
def speech_pcm():
    """speech_16k.wav as int16 at 24 kHz (RoomIO's rate)."""
    return load_pcm("speech_16k.wav")


@pytest.fixture(scope="session")
def ami_pcm():
    """The AMI meeting excerpt as int16 at 24 kHz."""
    return load_pcm("ami_sample_16k.wav")
