"""Fixtures: a real uvicorn server on a free loopback port, in a thread of the test process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("websockets")
pytest.importorskip("httpx")

import uvicorn

from caesura.audio import decode_wav, to_mono
from caesura.server import ServerConfig, create_app
from caesura.server.cli import uvicorn_options


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1:<free port> until :meth:`stop`."""

    def __init__(self, config: ServerConfig, **app_kwargs: object) -> None:
        self.config = config
        self.app = create_app(config, **app_kwargs)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", **uvicorn_options(config))
        )
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@pytest.fixture(scope="session")
def server() -> Iterator[LiveServer]:
    srv = LiveServer(ServerConfig(port=0, max_errors_per_session=100)).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def speech_wav_bytes(fixtures_dir: Path) -> bytes:
    return (fixtures_dir / "speech_16k.wav").read_bytes()


@pytest.fixture(scope="session")
def speech_16k(speech_wav_bytes: bytes) -> np.ndarray:
    frames, rate = decode_wav(speech_wav_bytes)
    assert rate == 16000
    return to_mono(frames)
