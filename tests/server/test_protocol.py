"""EchoKit / silero_vad_server wire protocol against a real uvicorn server on loopback."""

from __future__ import annotations

import concurrent.futures
import json
import time

import httpx
import numpy as np
import pytest
from server_helpers import chunked, pcm16, reference_events, stream_events, wav_bytes
from websockets.sync.client import connect

from caesura.audio import decode_wav, resample, to_mono
from caesura.eot import EndOfTurnModel
from caesura.server.config import StreamOptions
from caesura.turn import EndOfTurn, TurnEngine, TurnOptions
from caesura.vad import SileroVAD
from caesura.vad.offline import speech_timestamps

VAD = "/v1/audio/vad"
RT = "/v1/audio/realtime_vad"


def post_like_echokit(base: str, wav: bytes) -> httpx.Response:
    # EchoKit: reqwest multipart, Part::bytes(wav).file_name("audio.wav"), field "audio"
    return httpx.post(base + VAD, files={"audio": ("audio.wav", wav)}, timeout=60)


def assert_timestamps_shape(body: dict) -> list[dict]:
    assert set(body) == {"timestamps"}
    for seg in body["timestamps"]:
        assert set(seg) == {"start", "end"}
        assert isinstance(seg["start"], int)
        assert isinstance(seg["end"], int)
        assert 0 <= seg["start"] < seg["end"]
    return body["timestamps"]


# ------------------------------------------------------------------------------ HTTP
def test_http_vad_equals_silero_timestamps(server, speech_wav_bytes, speech_16k):
    r = post_like_echokit(server.http, speech_wav_bytes)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    got = assert_timestamps_shape(r.json())
    expected = speech_timestamps(speech_16k, 16000, compat="silero")
    assert got == [{"start": int(s["start"]), "end": int(s["end"])} for s in expected]
    assert len(got) >= 2  # real speech with pauses


@pytest.mark.parametrize(
    ("rate", "channels", "sampwidth", "fmt"),
    [(8000, 1, 2, 1), (48000, 2, 2, 1), (44100, 1, 3, 1), (22050, 2, 4, 3), (16000, 2, 4, 1)],
)
def test_http_vad_any_rate_and_channels(server, speech_16k, rate, channels, sampwidth, fmt):
    audio = speech_16k if rate == 16000 else resample(speech_16k, 16000, rate)
    frames = np.stack([audio] * channels, axis=1) if channels > 1 else audio
    wav = wav_bytes(frames * 0.9, rate, sampwidth=sampwidth, fmt=fmt)
    r = post_like_echokit(server.http, wav)
    assert r.status_code == 200, r.text
    got = assert_timestamps_shape(r.json())
    # the server's pipeline: mono, soxr to 16 kHz, silero's get_speech_timestamps defaults
    x, sr = decode_wav(wav)
    x16 = resample(to_mono(x), sr, 16000) if sr != 16000 else to_mono(x)
    expected = speech_timestamps(x16, 16000, compat="silero")
    assert got == [{"start": int(s["start"]), "end": int(s["end"])} for s in expected]
    # and the speech is found where it is at 16 kHz (within 2 windows)
    ref = speech_timestamps(speech_16k, 16000, compat="silero")
    assert len(got) == len(ref)
    for a, b in zip(got, ref, strict=True):
        assert abs(a["start"] - b["start"]) <= 1024
        assert abs(a["end"] - b["end"]) <= 1024


def test_http_vad_synthetic_silence_and_tone(server):
    silence = np.zeros(16000 * 2, dtype=np.float32)
    r = post_like_echokit(server.http, wav_bytes(silence, 16000))
    assert r.status_code == 200
    assert r.json() == {"timestamps": []}
    t = np.arange(16000) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    r = post_like_echokit(server.http, wav_bytes(tone, 16000))
    assert r.status_code == 200
    assert_timestamps_shape(r.json())


def test_http_vad_zero_frames_and_raw_body(server, speech_wav_bytes):
    r = post_like_echokit(server.http, wav_bytes(np.zeros(0), 16000))
    assert r.status_code == 200
    assert r.json() == {"timestamps": []}
    raw = httpx.post(
        server.http + VAD, content=speech_wav_bytes, headers={"content-type": "audio/wav"}
    )
    assert raw.status_code == 200
    assert raw.json() == post_like_echokit(server.http, speech_wav_bytes).json()


# ------------------------------------------------------------------------------ WebSocket
def test_realtime_events_any_chunking(server, speech_16k):
    audio = np.concatenate([speech_16k, np.zeros(16000, dtype=np.float32)])
    data = pcm16(audio)
    rng = np.random.default_rng(7)
    sizes = (rng.integers(1, 2500, size=4000) * 2).tolist()  # even, 2 .. 5000 bytes
    ref = reference_events(pcm_to_float(data))
    plain = stream_events(server.ws + RT, chunked(data, sizes), expect=len(ref))
    # exactly silero_vad_server's messages
    assert plain
    assert all(m in ({"event": "speech_start"}, {"event": "speech_end"}) for m in plain)
    assert [m["event"] for m in plain] == ["speech_start", "speech_end"] * (len(plain) // 2)
    # with positions: identical for another chunking, and equal to the offline reference
    n = len(ref)
    a = stream_events(server.ws + RT + "?include_samples=true", chunked(data, sizes), expect=n)
    b = stream_events(
        server.ws + RT + "?include_samples=1", chunked(data, [4096] * 10_000), expect=n
    )
    assert a == b == ref
    assert [m["event"] for m in a] == [m["event"] for m in plain]


def pcm_to_float(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def test_realtime_reset(server, speech_16k):
    data = pcm16(np.concatenate([speech_16k, np.zeros(16000, dtype=np.float32)]))
    half = data[: len(data) // 3 + 1]  # odd split point inside a window... kept even below
    half = half[: len(half) // 2 * 2]
    fresh = reference_events(pcm_to_float(data))
    events = stream_events(
        server.ws + RT + "?include_samples=true",
        [half, "reset", *chunked(data, [3200] * 1000)],
        expect=len(fresh),
    )
    # after the reset the sample clock restarts: the tail equals a fresh session
    assert events[-len(fresh) :] == fresh
    json_reset = stream_events(
        server.ws + RT + "?include_samples=true",
        [half, json.dumps({"type": "reset"}), *chunked(data, [3200] * 1000)],
        expect=len(fresh),
    )
    assert json_reset[-len(fresh) :] == fresh


def test_realtime_query_options(server, speech_16k):
    data = pcm16(np.concatenate([speech_16k, np.zeros(16000, dtype=np.float32)]))
    opts = StreamOptions(min_silence_ms=100, min_speech_ms=100, threshold=0.6)
    url = server.ws + RT + "?include_samples=true&min_silence_ms=100&min_speech_ms=100"
    want = reference_events(pcm_to_float(data), opts)
    got = stream_events(url + "&threshold=0.6", chunked(data, [1024] * 1000), expect=len(want))
    assert got == want
    assert len(got) > len(reference_events(pcm_to_float(data)))  # shorter hangover: more cuts


@pytest.mark.parametrize(
    "query", ["threshold=2", "threshold=abc", "bogus=1", "min_silence_ms=-5", "turn=maybe"]
)
def test_realtime_bad_query_option(server, query):
    with connect(server.ws + RT + "?" + query) as ws:
        msg = json.loads(ws.recv(timeout=5))
        assert set(msg) == {"error", "message"}
        assert msg["error"] == "invalid_option"
        assert isinstance(msg["message"], str)
        assert msg["message"]
        with pytest.raises(Exception):  # noqa: B017, PT011 - closed by the server
            ws.recv(timeout=5)
        assert ws.close_code == 1008


def test_realtime_sessions_share_the_batched_core(server, speech_16k):
    """Eight concurrent sessions, different chunkings: each equals the single-stream reference."""
    data = pcm16(np.concatenate([speech_16k, np.zeros(16000, dtype=np.float32)]))
    ref = reference_events(pcm_to_float(data))
    before = httpx.get(server.http + "/metrics").text

    def one(i: int) -> list[dict]:
        return stream_events(
            server.ws + RT + "?include_samples=true",
            chunked(data, [640 + 2 * i] * 100_000),
            expect=len(ref),
        )

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert all(r == ref for r in results)
    after = httpx.get(server.http + "/metrics").text
    assert metric(after, "caesura_vad_windows_total") > metric(before, "caesura_vad_windows_total")
    # batches carried more than one window on average (sessions were batched together)
    assert metric(after, "caesura_vad_batch_size_count") > 0


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


# ------------------------------------------------------------------------------ extras
def test_healthz_and_metrics(server):
    h = httpx.get(server.http + "/healthz")
    assert h.status_code == 200
    body = h.json()
    assert body["status"] == "ok"
    assert body["mode"] == "batched"
    m = httpx.get(server.http + "/metrics")
    assert m.status_code == 200
    assert m.headers["content-type"].startswith("text/plain; version=0.0.4")
    names = set()
    for line in m.text.splitlines():
        if line.startswith("# TYPE"):
            _, _, name, kind = line.split()
            assert kind in {"counter", "gauge", "histogram"}
            names.add(name)
        elif line and not line.startswith("#"):
            value = line.rsplit(" ", 1)[1]
            float(value.replace("+Inf", "inf"))
    assert {"caesura_ws_sessions", "caesura_vad_windows_total", "caesura_vad_batch_size"} <= names


def test_unknown_route_and_method_are_json(server):
    r = httpx.get(server.http + "/nope")
    assert r.status_code == 404
    assert "error" in r.json()
    r = httpx.get(server.http + VAD)
    assert r.status_code == 405
    assert "error" in r.json()


def test_turn_predict(server):
    turns = {
        "turns": [
            {"role": "agent", "text": "What city are you flying to?"},
            {"role": "user", "text": "I want to fly to Boston on Friday."},
        ]
    }
    r = httpx.post(server.http + "/v1/turn/predict", json=turns, timeout=30)
    health = httpx.get(server.http + "/healthz").json()
    if not health["turn_model"]:
        assert r.status_code == 503
        assert "end-of-turn model" in r.json()["error"]
        pytest.skip("caesura.eot.EndOfTurnModel not available in this checkout")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"probability", "end_of_turn", "threshold"}
    assert 0.0 <= body["probability"] <= 1.0
    assert body["end_of_turn"] == (body["probability"] >= body["threshold"])
    unfinished = {"turns": [{"role": "user", "text": "I want to fly to"}]}
    p2 = httpx.post(server.http + "/v1/turn/predict", json=unfinished).json()["probability"]
    assert p2 < body["probability"]
    # the recogniser is behind: "to" is followed by a word not transcribed yet ("Boston")
    pending = {**unfinished, "words_pending": True}
    r3 = httpx.post(server.http + "/v1/turn/predict", json=pending, timeout=30)
    assert r3.status_code == 200, r3.text
    assert r3.json()["probability"] > 2 * p2


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"turns": []}',
        b'{"turns": [{"role": "x", "text": "a"}]}',
        b'{"turns": [{"role": "user"}]}',
        b'{"turns": [{"role": "user", "text": "a"}], "threshold": 3}',
        b'{"turns": [{"role": "user", "text": "a"}], "words_pending": "yes"}',
    ],
)
def test_turn_predict_bad_input(server, payload):
    r = httpx.post(
        server.http + "/v1/turn/predict",
        content=payload,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert isinstance(r.json()["error"], str)


def _scripted_turn(server, speech_16k, text: str) -> tuple[list[dict], np.ndarray, int]:
    """Agent question, the first utterance + 0.7 s silence, wait until inferred, a final
    transcript, wait until scored, then 3 s of silence: the events with samples, the audio
    and the position of the transcript. Waiting makes the stream position of each message
    deterministic (the engine runs on the stream's sample clock)."""
    head = np.concatenate([speech_16k[: int(2.05 * 16000)], np.zeros(int(0.7 * 16000))])
    head = head[: len(head) // 512 * 512]
    tail = np.zeros(3 * 16000)
    out: list[dict] = []
    with connect(server.ws + RT + "?include_samples=true", max_size=None) as ws:
        ws.send(json.dumps({"type": "agent", "text": "Where would you like to eat?"}))
        for c in chunked(pcm16(head), [640] * 10_000):
            ws.send(c)
        out.append(json.loads(ws.recv(timeout=30)))  # speech_start
        out.append(json.loads(ws.recv(timeout=30)))  # speech_end
        time.sleep(1.0)  # the rest of head inferred
        ws.send(json.dumps({"type": "transcript", "text": text, "final": True}))
        time.sleep(1.0)  # scored
        for c in chunked(pcm16(tail), [640] * 10_000):
            ws.send(c)
        while True:
            try:
                out.append(json.loads(ws.recv(timeout=3.0)))
            except TimeoutError:
                break
    return out, np.concatenate([head, tail]).astype(np.float32), len(head)


def _engine_reference(audio: np.ndarray, at: int, text: str) -> list[object]:
    """The same script through caesura.turn.TurnEngine directly (what every host runs)."""
    pcm = np.frombuffer(pcm16(audio), dtype="<i2")
    probs = SileroVAD.load().stream(16000).process(pcm)
    engine = TurnEngine(TurnOptions(), scorer=EndOfTurnModel.load(), sample_rate=16000)
    engine.response_committed()
    engine.add_agent_message("Where would you like to eat?")
    k = at // 512
    events = engine.push_probabilities(probs[:k])
    events += engine.push_transcript(text, final=True)
    events += engine.push_probabilities(probs[k:])
    return [e for e in events if isinstance(e, EndOfTurn)]


@pytest.mark.parametrize(
    "text", ["Can you book me a table for two at seven?", "Can you book me a table for"]
)
def test_realtime_end_of_turn_is_the_turn_engines_decision(server, speech_16k, text):
    health = httpx.get(server.http + "/healthz").json()
    assert health["turn_model"], "the bundled end-of-turn model must load"
    events, audio, at = _scripted_turn(server, speech_16k, text)
    assert [e.get("event") for e in events[:2]] == ["speech_start", "speech_end"]
    turn = [e for e in events if e.get("event") == "end_of_turn" or "error" in e]
    (ref,) = _engine_reference(audio, at, text)
    assert len(turn) == 1, events
    ev = turn[0]
    assert set(ev) == {
        "event",
        "end_of_turn",
        "probability",
        "words_probability",
        "reason",
        "delay_ms",
        "sample",
    }
    # the same decision at the same sample as the engine run directly
    assert (ev["sample"], ev["reason"], ev["delay_ms"]) == (
        ref.sample,
        ref.reason,
        round(ref.delay_ms),
    )
    assert ev["words_probability"] == pytest.approx(ref.words_probability, abs=1e-6)
    assert ev["probability"] == pytest.approx(ref.probability, abs=1e-6)


def test_realtime_words_that_never_convince_end_at_max_delay(server):
    msgs = [
        json.dumps({"type": "transcript", "text": "so I was thinking that we", "final": True}),
        *chunked(pcm16(np.zeros(int(2.5 * 16000))), [640] * 10_000),
    ]
    events = stream_events(server.ws + RT + "?max_delay_ms=1500", msgs, settle_s=3.0)
    (ev,) = [e for e in events if e.get("event") == "end_of_turn"]
    assert ev["reason"] == "max_delay"
    assert 1500 <= ev["delay_ms"] <= 1500 + 32


def test_realtime_turn_options_are_validated_by_name(server):
    with connect(server.ws + RT + "?min_delay_ms=5000&max_delay_ms=1000") as ws:
        msg = json.loads(ws.recv(timeout=10))
    assert msg["error"] == "invalid_option"
    assert "max_delay" in msg["message"]
