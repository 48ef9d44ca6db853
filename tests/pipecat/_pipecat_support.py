"""Audio helpers shared by the Pipecat adapter tests (real recordings from tests/fixtures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from caesura.audio import read_audio, resample

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def load_pcm(name: str, rate: int) -> bytes:
    """A fixture recording as PCM16 little-endian mono bytes at ``rate``."""
    audio, sr = read_audio(FIXTURES / name)
    if sr != rate:
        audio = resample(audio, sr, rate)
    return (np.clip(audio, -1.0, 1.0 - 1 / 32768) * 32768).astype("<i2").tobytes()


def silence(seconds: float, rate: int) -> bytes:
    return b"\x00\x00" * int(seconds * rate)


def chunks(pcm: bytes, rate: int, ms: int = 20) -> list[bytes]:
    step = rate * ms // 1000 * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]
