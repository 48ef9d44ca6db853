"""Property-based test of the WAV decoding path through ``POST /v1/audio/vad``: never a 5xx."""

from __future__ import annotations

import struct

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_helpers import wav_bytes

VAD = "/v1/audio/vad"
_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _base_wav() -> bytes:
    t = np.arange(1600) / 16000
    return wav_bytes(0.3 * np.sin(2 * np.pi * 300 * t), 16000)


BASE = _base_wav()


@st.composite
def header_wavs(draw: st.DrawFn) -> bytes:
    """Structurally plausible WAVs with arbitrary (often lying) header fields."""
    tag = draw(st.sampled_from([1, 3, 0xFFFE, 2, 6, 7, 0x55, 0, 0xFFFF]))
    ch = draw(st.integers(0, 70))
    rate = draw(st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([8000, 16000, 44100])))
    bits = draw(st.sampled_from([0, 4, 8, 12, 16, 20, 24, 32, 64, 65535]))
    block = draw(st.one_of(st.just(max(ch, 1) * max(bits, 8) // 8 & 0xFFFF), st.integers(0, 65535)))
    byte_rate = draw(st.one_of(st.just(rate * block & 0xFFFFFFFF), st.integers(0, 2**32 - 1)))
    fmt_size = draw(st.sampled_from([14, 16, 18, 40, 0, 1000]))
    fmt = struct.pack("<HHIIHH", tag, ch, rate, byte_rate, block, bits)
    fmt = (fmt + draw(st.binary(min_size=0, max_size=30)))[: max(fmt_size, 0)]
    payload = draw(st.binary(min_size=0, max_size=4000))
    data_size = draw(st.one_of(st.just(len(payload)), st.integers(0, 2**32 - 1)))
    body = b"WAVE" + b"fmt " + struct.pack("<I", fmt_size) + fmt
    if draw(st.booleans()):
        body += b"LIST" + struct.pack("<I", 4) + b"INFO"
    body += b"data" + struct.pack("<I", data_size) + payload
    riff = draw(st.one_of(st.just(len(body)), st.integers(0, 2**32 - 1)))
    return b"RIFF" + struct.pack("<I", riff) + body


@st.composite
def mutated_wavs(draw: st.DrawFn) -> bytes:
    """A valid WAV with random bytes overwritten, truncated or extended."""
    data = bytearray(BASE)
    for _ in range(draw(st.integers(0, 8))):
        i = draw(st.integers(0, 60))
        data[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    out = bytes(data[:cut]) if draw(st.booleans()) else bytes(data)
    return out + draw(st.binary(max_size=64))


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.http, timeout=60) as c:
        yield c


def check(client: httpx.Client, data: bytes) -> None:
    r = client.post(VAD, files={"audio": ("audio.wav", data)})
    assert r.status_code < 500, (r.status_code, r.text, data[:64])
    body = r.json()
    if r.status_code == 200:
        assert set(body) == {"timestamps"}
    else:
        assert set(body) == {"error"}
        assert isinstance(body["error"], str)
        assert body["error"]


@_SETTINGS
@given(data=st.binary(max_size=2000))
def test_random_bytes_never_5xx(client, data):
    check(client, data)


@_SETTINGS
@given(data=header_wavs())
def test_lying_headers_never_5xx(client, data):
    check(client, data)


@_SETTINGS
@given(data=mutated_wavs())
def test_mutated_wavs_never_5xx(client, data):
    check(client, data)
