"""Bearer-token auth on a second live server."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import LiveServer
from server_helpers import wav_bytes
from websockets.sync.client import connect

from caesura.server import ServerConfig

TOKEN = "correct horse battery staple"


@pytest.fixture(scope="module")
def secured():
    srv = LiveServer(ServerConfig(port=0, token=TOKEN, enable_turn=False, max_sessions=2)).start()
    yield srv
    srv.stop()


def test_http_requires_token(secured):
    wav = wav_bytes([0.0] * 1600, 16000)
    r = httpx.post(secured.http + "/v1/audio/vad", files={"audio": ("audio.wav", wav)})
    assert r.status_code == 401
    assert "unauthorized" in r.json()["error"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    bad = {"authorization": "Bearer nope"}
    r = httpx.post(secured.http + "/v1/audio/vad", files={"audio": ("a.wav", wav)}, headers=bad)
    assert r.status_code == 401
    ok = {"authorization": f"Bearer {TOKEN}"}
    r = httpx.post(secured.http + "/v1/audio/vad", files={"audio": ("a.wav", wav)}, headers=ok)
    assert r.status_code == 200
    assert r.json() == {"timestamps": []}
    # probes stay open
    assert httpx.get(secured.http + "/healthz").status_code == 200
    assert httpx.get(secured.http + "/metrics").status_code == 200


def test_websocket_requires_token(secured):
    url = secured.ws + "/v1/audio/realtime_vad"
    with connect(url) as ws:
        msg = json.loads(ws.recv(timeout=5))
        assert msg["error"] == "unauthorized"
        assert msg["message"]
    with connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        ws.send(b"\x00\x00" * 2000)
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)  # accepted: silence produces no event
    with connect(url + "?token=" + TOKEN.replace(" ", "%20")) as ws:
        ws.send("reset")
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)


def test_session_limit(secured):
    url = secured.ws + "/v1/audio/realtime_vad?token=" + TOKEN.replace(" ", "%20")
    with connect(url) as a, connect(url) as b:
        a.send(b"\x00\x00")
        b.send(b"\x00\x00")
        with connect(url) as c:
            msg = json.loads(c.recv(timeout=5))
            assert msg["error"] == "server_busy"
    with connect(url) as d:  # a slot is free again
        d.send("reset")
        with pytest.raises(TimeoutError):
            d.recv(timeout=0.5)
