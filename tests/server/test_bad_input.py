"""Hostile and broken input: every case gets a clear JSON error and the server stays up."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading

import httpx
import numpy as np
import pytest
from server_helpers import chunked, pcm16, reference_events, stream_events, wav_bytes
from websockets.sync.client import connect

VAD = "/v1/audio/vad"
RT = "/v1/audio/realtime_vad"


def post_audio(base: str, data: bytes, **kw) -> httpx.Response:
    return httpx.post(base + VAD, files={"audio": ("audio.wav", data)}, timeout=60, **kw)


def assert_error(r: httpx.Response, status: int, *needles: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    assert body["error"]
    for n in needles:
        assert n.lower() in body["error"].lower(), body["error"]
    return body["error"]


@pytest.fixture(autouse=True)
def _server_survives(server):
    yield
    assert httpx.get(server.http + "/healthz").status_code == 200


def good_wav() -> bytes:
    t = np.arange(8000) / 16000
    return wav_bytes(0.3 * np.sin(2 * np.pi * 220 * t), 16000)


# ------------------------------------------------------------------------------ HTTP
def test_empty_body(server):
    r = httpx.post(server.http + VAD, content=b"", headers={"content-type": "multipart/form-data"})
    assert_error(r, 400, "empty")


def test_missing_field(server):
    r = httpx.post(server.http + VAD, files={"file": ("audio.wav", good_wav())})
    assert_error(r, 400, "missing form field 'audio'")
    r = httpx.post(server.http + VAD, data={"other": "x"}, files={"x": ("a", b"1")})
    assert_error(r, 400, "missing form field 'audio'")


def test_audio_field_not_a_file(server):
    r = httpx.post(server.http + VAD, data={"audio": "hello"}, files={"x": ("a", b"1")})
    assert_error(r, 400, "file part")


def test_empty_audio_part(server):
    assert_error(post_audio(server.http, b""), 400, "empty")


def test_not_multipart(server):
    r = httpx.post(server.http + VAD, json={"audio": "x"})
    assert_error(r, 415, "multipart")


def test_malformed_multipart(server):
    r = httpx.post(
        server.http + VAD,
        content=b'--xyz\r\nContent-Disposition: form-data; name="audio"\r\n\r\nabc',
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert r.status_code == 400
    assert "error" in r.json()
    r = httpx.post(
        server.http + VAD, content=b"abc", headers={"content-type": "multipart/form-data"}
    )
    assert r.status_code == 400
    assert "error" in r.json()


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"hello world, not a wav at all", "RIFF"),
        (b"ID3\x03\x00\x00\x00" + bytes(200), "RIFF"),
        (b"RIFF\x24\x00\x00\x00AVI LIST" + bytes(40), "WAVE"),
        (b"\x00" * 7, "too short"),
    ],
)
def test_non_wav(server, data, needle):
    assert_error(post_audio(server.http, data), 400, needle)


def test_truncated_wav(server):
    wav = good_wav()
    for cut in (12, 20, 36, 44, 45, len(wav) - 1001):
        msg = assert_error(post_audio(server.http, wav[:cut]), 400)
        assert any(w in msg.lower() for w in ("truncated", "missing", "no ", "short", "fmt"))


def test_lying_header(server):
    wav = bytearray(good_wav())
    # data chunk claims 10x more bytes than present
    i = wav.index(b"data")
    struct.pack_into("<I", wav, i + 4, 10 * struct.unpack_from("<I", wav, i + 4)[0])
    assert_error(post_audio(server.http, bytes(wav)), 400)
    # RIFF size larger than the file
    wav2 = bytearray(good_wav())
    struct.pack_into("<I", wav2, 4, len(wav2) * 5)
    assert_error(post_audio(server.http, bytes(wav2)), 400, "truncated")
    # block align / byte rate inconsistent with channels x width
    wav3 = bytearray(good_wav())
    struct.pack_into("<H", wav3, 32, 7)
    assert_error(post_audio(server.http, bytes(wav3)), 400)
    # compressed codec
    wav4 = bytearray(good_wav())
    struct.pack_into("<H", wav4, 20, 0x0055)
    assert_error(post_audio(server.http, bytes(wav4)), 400, "mp3")


@pytest.mark.parametrize("rate", [0, 1, 999, 768_001, 2**32 - 1])
def test_absurd_sample_rates(server, rate):
    wav = bytearray(good_wav())
    struct.pack_into("<I", wav, 24, rate)
    struct.pack_into("<I", wav, 28, (rate * 2) & 0xFFFFFFFF)
    assert_error(post_audio(server.http, bytes(wav)), 400)


def test_extreme_but_valid_rates(server):
    for rate in (1000, 768_000):
        n = rate // 2
        wav = wav_bytes(0.1 * np.sin(np.arange(n) * 0.01), rate)
        r = post_audio(server.http, wav)
        assert r.status_code == 200
        assert "timestamps" in r.json()


def test_too_long_audio_refused(server):
    # 8-bit mono at 1 kHz: 9 MB = 9000 s of audio (> MAX_AUDIO_SECONDS)
    n = 9_000_000
    fmt = struct.pack("<HHIIHH", 1, 1, 1000, 1000, 1, 8)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", n)
    wav = b"RIFF" + struct.pack("<I", len(body) + n) + body + bytes([128]) * n
    assert_error(post_audio(server.http, wav), 413, "exceeds")


def test_body_over_10mb_is_413(server):
    big = b"RIFF" + bytes(10 * 1024 * 1024 + 100)
    assert_error(post_audio(server.http, big), 413, "10 MB")


def test_body_over_10mb_chunked_is_413(server):
    """No Content-Length (chunked transfer): the limit is enforced while reading."""

    def gen():
        head = b'--b\r\nContent-Disposition: form-data; name="audio"; filename="audio.wav"\r\n\r\n'
        yield head
        for _ in range(12):
            yield bytes(1024 * 1024)

    r = httpx.post(
        server.http + VAD,
        content=gen(),
        headers={"content-type": "multipart/form-data; boundary=b"},
        timeout=60,
    )
    assert_error(r, 413, "10 MB")


def test_many_requests_in_parallel_stay_4xx_or_200(server):
    bad = [b"", b"junk", good_wav()[:30], good_wav()]

    def one(i: int) -> int:
        return post_audio(server.http, bad[i % len(bad)]).status_code

    with __import__("concurrent.futures").futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(one, range(32)))
    assert all(c in (200, 400, 503) for c in codes)
    assert 200 in codes


def test_raw_http_garbage(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01\x00\xff garbage that is not http\r\n\r\n")
        s.recv(1024)  # uvicorn answers 400 or closes; the server must stay up


# ------------------------------------------------------------------------------ WebSocket
def ws_errors(events: list[dict]) -> list[dict]:
    for e in events:
        # EchoKit's VadRealtimeEvent: {event} (extra keys ignored) or {error, message}
        assert isinstance(e.get("event"), str) or set(e) == {"error", "message"}, e
    return [e for e in events if "error" in e]


def test_odd_length_frames(server, speech_16k):
    data = pcm16(np.concatenate([speech_16k, np.zeros(16000, dtype=np.float32)]))
    frames = [b"\x01\x02\x03", *chunked(data, [2000] * 1000)]
    events = stream_events(server.ws + RT, frames)
    errs = ws_errors(events)
    assert len(errs) == 1
    assert errs[0]["error"] == "invalid_audio"
    assert "odd" not in errs[0]["message"] or "even" in errs[0]["message"]
    assert "3 bytes" in errs[0]["message"]
    # the odd frame was dropped; the session continued and found the speech
    assert [e for e in events if "event" in e] == [
        {"event": e["event"]} for e in reference_events(speech_16k)
    ] or len([e for e in events if "event" in e]) >= 2


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        "RESET please",
        "{not json",
        "[1,2,3]",
        '{"type": "dance"}',
        '"reset"',
        '{"type": "transcript", "text": 5}',
        "\x00\x01",
        "{" * 5000,
    ],
)
def test_text_garbage(server, text):
    events = stream_events(server.ws + RT, [text, b"\x00\x00" * 600], settle_s=0.5)
    errs = ws_errors(events)
    assert len(errs) == 1, errs
    assert errs[0]["error"] == "invalid_message"
    assert errs[0]["message"]


def test_reset_variants_are_accepted(server):
    events = stream_events(
        server.ws + RT, ["reset", " reset\n", "RESET", b"\x00\x00" * 600], settle_s=0.5
    )
    assert ws_errors(events) == []


def test_ten_thousand_tiny_frames(server, speech_16k):
    data = pcm16(np.concatenate([speech_16k[:48000], np.zeros(16000, dtype=np.float32)]))
    frames = chunked(data[:20000], [2] * 10_000)  # 10 000 frames of one sample
    frames += chunked(data[20000:], [4000] * 1000)
    ref = reference_events(np.frombuffer(data, "<i2").astype(np.float32) / 32768)
    events = stream_events(server.ws + RT + "?include_samples=1", frames, expect=len(ref))
    assert ws_errors(events) == []
    assert events == ref


def test_too_many_errors_closes_session(server):
    with connect(server.ws + RT) as ws:
        for _ in range(150):
            ws.send(b"\x01")
        got = []
        try:
            while True:
                got.append(json.loads(ws.recv(timeout=5)))
        except Exception:
            pass
        assert got[-1]["error"] == "too_many_errors"
        assert sum(1 for g in got if g["error"] == "invalid_audio") == 100
        assert ws.close_code == 1008


def test_bad_session_does_not_disturb_a_good_one(server, speech_16k):
    data = pcm16(np.concatenate([speech_16k, np.zeros(16000, dtype=np.float32)]))
    ref = reference_events(np.frombuffer(data, "<i2").astype(np.float32) / 32768)
    result: dict[str, list[dict]] = {}

    def good() -> None:
        result["good"] = stream_events(
            server.ws + RT + "?include_samples=1", chunked(data, [1600] * 10_000), expect=len(ref)
        )

    def evil() -> None:
        frames: list[bytes | str] = []
        for i in range(3000):
            frames.append(b"\x07" * (1 + 2 * (i % 7)) if i % 3 else "garbage")
        with contextlib.suppress(Exception):
            stream_events(server.ws + RT, frames, settle_s=0.3)

    threads = [
        threading.Thread(target=good),
        threading.Thread(target=evil),
        threading.Thread(target=evil),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert result["good"] == ref


def test_frame_over_limit(server):
    big = bytes(2 * server.config.max_frame_bytes)
    events = stream_events(server.ws + RT, [big, b"\x00\x00" * 600], settle_s=0.5)
    errs = ws_errors(events)
    assert len(errs) == 1
    assert errs[0]["error"] == "frame_too_large"


def test_abrupt_disconnects(server):
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        s.sendall(
            b"GET /v1/audio/realtime_vad HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        s.recv(1024)
        s.sendall(b"\x82\xfe\x10\x00")  # a binary frame header, then vanish mid-frame
        s.close()
    h = httpx.get(server.http + "/healthz").json()
    assert h["status"] == "ok"
