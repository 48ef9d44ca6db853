"""Finished realtime sessions leave nothing behind, and are freed at once.

Regression test for the soak's RSS growth: every closed session stayed alive in a reference
cycle (session -> slot -> slot.on_result, a bound method of the session) until the cyclic
garbage collector's next *full* collection, with its WebSocket, zlib (permessage-deflate)
and onnxruntime buffers, and the batcher kept its last batch's sessions alive while idle.

The checks are deterministic: weak references to every session, slot and model stream,
checked with the cyclic collector disabled (so only reference counting can free them), then
again after ``gc.collect()``. The only waiting is for the server thread to finish the
sessions the client closed.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from conftest import LiveServer
from server_helpers import chunked, pcm16
from websockets.sync.client import connect

from caesura.server import ServerConfig
from caesura.server import app as app_module
from caesura.server.backend import SileroBackend
from caesura.server.realtime import RealtimeSession
from caesura.server.scheduler import BatchScheduler
from caesura.vad import SileroVAD

RT = "/v1/audio/realtime_vad"


class _SlowTurnModel:
    """End-of-turn stand-in slow enough that sessions close with a prediction pending."""

    def predict(self, turns: list[tuple[str, str]]) -> float:
        time.sleep(0.05)
        return 0.9


class _Tracker:
    """Weak references to what each session allocates, and open/close counts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.refs: list[tuple[str, weakref.ref[Any]]] = []
        self.opened = 0
        self.closed = 0
        self.finished = 0

    def add(self, what: str, obj: object) -> None:
        with self.lock:
            self.refs.append((what, weakref.ref(obj)))

    def alive(self) -> list[str]:
        return [what for what, ref in self.refs if ref() is not None]


@pytest.fixture(scope="module")
def churn_server() -> Iterator[LiveServer]:
    srv = LiveServer(
        ServerConfig(port=0, max_errors_per_session=100), turn_model=_SlowTurnModel()
    ).start()
    yield srv
    srv.stop()


@pytest.fixture
def tracker(churn_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> _Tracker:
    tr = _Tracker()
    state = churn_server.app.state.caesura
    backend = state.backend
    new_stream: Callable[[], Any] = backend.new_stream
    close_stream: Callable[[Any], None] = backend.close_stream

    def tracked_new_stream() -> Any:
        stream = new_stream()
        tr.add("VADStream", stream)
        with tr.lock:
            tr.opened += 1
        return stream

    def tracked_close_stream(stream: Any) -> None:
        close_stream(stream)
        with tr.lock:
            tr.closed += 1

    class TrackedSession(RealtimeSession):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            tr.add("RealtimeSession", self)
            tr.add("Segmenter", self.segmenter)
            tr.add("WebSocket", self.ws)

        async def run(self) -> None:
            try:
                await super().run()
            finally:
                if self.slot is not None:
                    tr.add("StreamSlot", self.slot)
                with tr.lock:
                    tr.finished += 1

    monkeypatch.setattr(backend, "new_stream", tracked_new_stream)
    monkeypatch.setattr(backend, "close_stream", tracked_close_stream)
    monkeypatch.setattr(app_module, "RealtimeSession", TrackedSession)
    return tr


def _one_session(url: str, pcm: bytes, i: int) -> None:
    """Audio in odd-sized chunks, a reset, garbage, transcripts; closes mid-stream."""
    sizes = [320 + 2 * ((i * 97 + k * 31) % 900) for k in range(200)]
    frames = chunked(pcm, sizes)
    with connect(url, max_size=None) as ws:
        for k, frame in enumerate(frames):
            ws.send(frame)
            if k == len(frames) // 3:
                ws.send("reset")
            if k == len(frames) // 2:
                ws.send("garbage")
                ws.send(b"\x01")  # odd-length frame: an error, the session goes on
            if k % 7 == i % 7:
                ws.send(json.dumps({"type": "transcript", "text": f"word {k}", "final": True}))
        if i % 2:  # half of them read what came back, half hang up at once
            try:
                while True:
                    ws.recv(timeout=0.2)
            except TimeoutError:
                pass


def _wait(cond: Callable[[], bool], what: str, timeout: float = 60.0, *, fail: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            if fail:
                raise AssertionError(f"timed out waiting for {what}")
            return
        time.sleep(0.02)


def test_closed_sessions_are_released(
    churn_server: LiveServer, tracker: _Tracker, speech_16k: np.ndarray
) -> None:
    state = churn_server.app.state.caesura
    core = state.core
    assert isinstance(core, BatchScheduler)
    url = churn_server.ws + RT
    pcm = pcm16(speech_16k[: 16000 * 3])
    n_sessions, parallel = 24, 6
    errors_before = set(state.metrics.errors._values)
    gc.collect()
    gc.disable()  # only reference counting may free a finished session
    try:
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(lambda i: _one_session(url, pcm, i), range(n_sessions)))
        _wait(lambda: tracker.finished == n_sessions and state.sessions == 0, "sessions")
        # the batch the worker thread may still be running holds its slots until it returns
        _wait(lambda: not tracker.alive(), "refcount release", timeout=10.0, fail=False)
        alive_without_gc = tracker.alive()
    finally:
        gc.enable()
    gc.collect()
    assert alive_without_gc == [], f"kept alive by reference cycles: {Counter(alive_without_gc)}"
    assert tracker.alive() == []
    kinds = {what for what, _ in tracker.refs}
    assert kinds == {"RealtimeSession", "Segmenter", "WebSocket", "StreamSlot", "VADStream"}
    assert tracker.opened == n_sessions
    assert tracker.closed == n_sessions  # every model stream (and its IOBinding) released
    assert core.pending_windows == 0
    assert not core._ready
    # metric label sets stay bounded: error codes only, nothing per connection
    new_labels = set(state.metrics.errors._values) - errors_before
    assert all(len(key) == 1 and key[0][0] == "error" for key in new_labels)
    assert {key[0][1] for key in new_labels} <= {"invalid_message", "invalid_audio"}


class _Owner:
    """A session stand-in: holds its slot and gives the core its bound methods."""

    def __init__(self) -> None:
        self.results = 0
        self.slot: Any = None

    def on_result(self, probs: np.ndarray, windows: np.ndarray) -> None:
        self.results += len(probs)

    def on_error(self, exc: Exception) -> None:
        raise AssertionError(f"unexpected inference error: {exc}")


def test_scheduler_close_releases_owner_and_stream() -> None:
    """Closing slots (some while their batch is in the worker) frees owners and streams."""
    backend = SileroBackend(SileroVAD.load())
    released: list[Any] = []
    close_stream = backend.close_stream

    def tracked_close(stream: Any) -> None:
        close_stream(stream)
        released.append(weakref.ref(stream))

    infer = backend.infer

    def slow_infer(streams: Any, wins: Any) -> Any:
        time.sleep(0.05)  # keeps a batch in the worker while the slots close
        return infer(streams, wins)

    backend.close_stream = tracked_close  # type: ignore[method-assign]
    backend.infer = slow_infer  # type: ignore[method-assign]
    rng = np.random.default_rng(0)
    windows = (0.1 * rng.standard_normal((4, backend.window_size))).astype(np.float32)

    async def scenario() -> tuple[list[weakref.ref[Any]], list[weakref.ref[Any]], int, int]:
        core = BatchScheduler(backend, max_pending_windows=8)
        await core.start()
        owners = [_Owner() for _ in range(40)]
        for o in owners:
            o.slot = core.open(o.on_result, o.on_error)
        refs = [weakref.ref(o) for o in owners]
        streams = [weakref.ref(o.slot.handle) for o in owners]
        for o in owners:
            await core.submit(o.slot, windows)
        for _ in range(1000):  # let the batcher start a batch: those slots are busy
            if any(getattr(o.slot, "busy", False) for o in owners):
                break
            await asyncio.sleep(0.001)
        busy = sum(getattr(o.slot, "busy", False) for o in owners)
        for k, o in enumerate(owners):
            if k % 3 == 0:
                core.reset(o.slot)
            core.close(o.slot)
        del owners, o
        for _ in range(500):  # until the in-flight batch has returned
            if len(released) == len(refs):
                break
            await asyncio.sleep(0.01)
        pending = core.pending_windows
        await core.stop()
        return refs, streams, pending, busy

    gc.collect()
    gc.disable()
    try:
        refs, streams, pending, busy = asyncio.run(scenario())
        alive = sum(r() is not None for r in refs)
        alive_streams = sum(r() is not None for r in streams)
    finally:
        gc.enable()
    assert alive == 0, f"{alive} of 40 closed slots' owners still alive without the cyclic gc"
    assert alive_streams == 0
    assert len(released) == 40
    assert pending == 0
    assert busy > 0  # some slots were closed with their windows in the worker


def test_permessage_deflate_is_declined(churn_server: LiveServer) -> None:
    """No per-connection zlib state: the server answers a deflate offer without it."""
    with connect(churn_server.ws + RT, compression="deflate") as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send(b"\x00\x00" * 512)
