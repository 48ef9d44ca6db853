"""``POST /v1/audio/vad`` of a live ``caesura serve`` vs silero-vad's ``get_speech_timestamps``.

silero_vad_server answers with ``get_speech_timestamps`` at default parameters; so must we.
Run by ``nox -s parity``; skipped when silero-vad (and torch) or the server extra are missing.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import warnings

import numpy as np
import pytest

silero_vad = pytest.importorskip("silero_vad", reason="silero-vad not installed (nox -s parity)")
torch = pytest.importorskip("torch")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from silero_vad import get_speech_timestamps, load_silero_vad  # noqa: E402

from caesura.audio import decode_wav, to_mono  # noqa: E402
from caesura.server import ServerConfig, create_app  # noqa: E402


@pytest.fixture(scope="module")
def base_url():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(ServerConfig(port=0, enable_turn=False)), log_level="warning")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), "server died"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)
    sock.close()


@pytest.fixture(scope="module")
def ref_model():
    torch.set_num_threads(1)
    return load_silero_vad(onnx=True)


def silero(audio: np.ndarray, model) -> list[dict[str, int]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = get_speech_timestamps(torch.from_numpy(audio.copy()), model)
    return [{"start": int(s["start"]), "end": int(s["end"])} for s in out]


def _wav16(audio: np.ndarray) -> bytes:
    raw = np.clip(np.round(audio * 32768), -32768, 32767).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(raw)) + raw
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_fixture_file_equals_silero(base_url, fixtures_dir, ref_model):
    for name in ("speech_16k.wav", "ami_sample_16k.wav"):
        data = (fixtures_dir / name).read_bytes()
        r = httpx.post(
            base_url + "/v1/audio/vad", files={"audio": ("audio.wav", data)}, timeout=120
        )
        assert r.status_code == 200
        frames, sr = decode_wav(data)
        assert sr == 16000
        assert r.json() == {"timestamps": silero(to_mono(frames), ref_model)}


def test_synthetic_equals_silero(base_url, fixtures_dir, ref_model):
    frames, _ = decode_wav((fixtures_dir / "speech_16k.wav").read_bytes())
    speech = to_mono(frames)
    rng = np.random.default_rng(3)
    parts = []
    for i in range(6):
        a = int(rng.integers(0, speech.size - 16000))
        parts.append(speech[a : a + int(rng.integers(4000, 32000))])
        parts.append(np.zeros(int(rng.integers(100, 20000)), dtype=np.float32))
        parts.append(
            (rng.standard_normal(int(rng.integers(0, 3000))) * 0.003 * i).astype(np.float32)
        )
    audio = np.concatenate([*parts, speech[:777]])
    audio = np.round(audio * 32768).clip(-32768, 32767) / 32768  # what a PCM16 WAV carries
    audio = audio.astype(np.float32)
    r = httpx.post(
        base_url + "/v1/audio/vad", files={"audio": ("audio.wav", _wav16(audio))}, timeout=120
    )
    assert r.status_code == 200
    assert r.json() == {"timestamps": silero(audio, ref_model)}
