"""The shared batched VAD core: every realtime session's windows, one inference at a time.

Sessions cut their PCM into 512-sample windows and :meth:`BatchScheduler.submit` them. One
asyncio task collects the ready windows of *all* sessions (at most one window per session per
batch -- the LSTM state makes a session's windows sequential), runs a single batched
inference in one worker thread, and hands every probability back to its session on the event
loop. Batching B streams in one onnxruntime run is bit-exact with separate runs and costs
≈41 µs per window at B ≥ 32 instead of ≈100 µs at B = 1 (see DESIGN.md), and the event loop
stays free while the worker runs (onnxruntime releases the GIL). Windows that become ready
during an inference form the next batch, so under load batches grow by themselves.

Bounded queues and back-pressure: a session holds at most ``max_pending_windows`` windows
not yet inferred; :meth:`submit` then waits, so the session stops reading its socket and TCP
flow control slows the client down. Nothing is dropped and nothing grows without bound.

:class:`PerConnectionCore` has the same interface but gives each session its own model and
runs its windows unbatched -- the usual "one model per connection" design, kept only so that
``benchmarks/server_load.py`` can compare the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from caesura.errors import ModelError
from caesura.server.metrics import ServerMetrics

__all__ = [
    "BatchScheduler",
    "CoreClosedError",
    "PerConnectionCore",
    "StreamSlot",
    "VADBackend",
    "VADCore",
]

logger = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]
#: Called on the event loop with (probabilities [n], windows [n, window]) of one session.
ResultCallback = Callable[[Float32Array, Float32Array], None]
#: Called on the event loop when inference failed for a session.
ErrorCallback = Callable[[Exception], None]


class CoreClosedError(RuntimeError):
    """The core was stopped (server shutting down); the session must end."""


class VADBackend(Protocol):
    """What the cores need from a model (implemented in :mod:`caesura.server.backend`).

    ``new_stream`` may be called on the loop; ``reset_stream`` and ``infer`` only ever run in
    the core's single worker thread, so backends need no locking.
    """

    window_size: int

    def new_stream(self) -> Any: ...

    def reset_stream(self, stream: Any) -> None: ...

    def infer(self, streams: Sequence[Any], windows: Sequence[Float32Array]) -> list[Float32Array]:
        """Score ``windows[i]`` (``[k_i, window_size]``, consecutive) on ``streams[i]``."""
        ...

    def close_stream(self, stream: Any) -> None:
        """Release a stream's model resources (called once, when no inference uses it)."""
        ...


def _drop_result(probs: Float32Array, windows: Float32Array) -> None:
    """The callback of a closed slot: results arriving after the close are discarded."""


def _drop_error(exc: Exception) -> None:
    """The error callback of a closed slot."""


@dataclass
class _Item:
    window: Float32Array
    epoch: int
    ready_at: float


class StreamSlot:
    """One session's place in a core: its queue of windows and its model state.

    When the core closes the slot it swaps the callbacks for no-ops and releases the model
    stream: the slot's callbacks are the session's bound methods and the session holds the
    slot, so keeping them would make every finished session a reference cycle (freed only by
    the cyclic garbage collector, late, together with its WebSocket, zlib and onnxruntime
    buffers).
    """

    __slots__ = (
        "__weakref__",
        "_space",
        "busy",
        "closed",
        "epoch",
        "failed",
        "handle",
        "handle_epoch",
        "id",
        "on_error",
        "on_result",
        "pending",
    )

    def __init__(
        self, slot_id: int, handle: Any, on_result: ResultCallback, on_error: ErrorCallback
    ) -> None:
        self.id = slot_id
        self.handle = handle
        self.on_result = on_result
        self.on_error = on_error
        self.pending: deque[_Item] = deque()
        self.epoch = 0
        self.handle_epoch = 0  # epoch the model state belongs to (worker side)
        self.closed = False
        self.failed = False
        self.busy = False  # in the batch the worker thread is running
        self._space = asyncio.Event()
        self._space.set()


class VADCore(Protocol):
    """Interface shared by :class:`BatchScheduler` and :class:`PerConnectionCore`."""

    @property
    def window_size(self) -> int: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def open(self, on_result: ResultCallback, on_error: ErrorCallback) -> StreamSlot: ...

    async def submit(self, slot: StreamSlot, windows: Float32Array) -> None: ...

    def reset(self, slot: StreamSlot) -> None: ...

    def close(self, slot: StreamSlot) -> None: ...

    @property
    def pending_windows(self) -> int: ...


class _CoreBase:
    def __init__(self, *, max_pending_windows: int, metrics: ServerMetrics | None) -> None:
        if max_pending_windows < 1:
            raise ValueError("max_pending_windows must be >= 1")
        self.max_pending_windows = max_pending_windows
        self.metrics = metrics
        self._next_id = 0
        self._pending_total = 0
        self._stopped = False
        self._started = False

    @property
    def pending_windows(self) -> int:
        return self._pending_total

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def _wait_space(self, slot: StreamSlot) -> None:
        while len(slot.pending) >= self.max_pending_windows and not slot.closed:
            if self.metrics is not None:
                self.metrics.backpressure.inc()
            slot._space.clear()
            await slot._space.wait()
            if self._stopped:
                raise CoreClosedError("the VAD core is shutting down")

    def _enqueue(self, slot: StreamSlot, window: Float32Array) -> None:
        slot.pending.append(_Item(window, slot.epoch, time.perf_counter()))
        self._pending_total += 1

    def _dequeue(self, slot: StreamSlot) -> _Item:
        item = slot.pending.popleft()
        self._pending_total -= 1
        if len(slot.pending) < self.max_pending_windows:
            slot._space.set()
        return item

    def _drop_pending(self, slot: StreamSlot) -> None:
        self._pending_total -= len(slot.pending)
        slot.pending.clear()
        slot._space.set()

    @staticmethod
    def _detach(slot: StreamSlot) -> None:
        """Closed: drop the session's callbacks (breaks the session <-> slot cycle)."""
        slot.closed = True
        slot.on_result = _drop_result
        slot.on_error = _drop_error

    def _take(self, slot: StreamSlot, max_steps: int) -> list[_Item]:
        """Up to ``max_steps`` queued windows of one epoch (a reset starts a new batch)."""
        items = [self._dequeue(slot)]
        while slot.pending and len(items) < max_steps and slot.pending[0].epoch == items[0].epoch:
            items.append(self._dequeue(slot))
        return items

    def _deliver(
        self, slot: StreamSlot, items: list[_Item], probs: Float32Array, now: float
    ) -> None:
        if slot.closed or items[0].epoch != slot.epoch:
            return  # reset or closed while the windows were in flight
        if self.metrics is not None:  # the oldest window of the slot's batch
            self.metrics.window_wait_seconds.observe(now - items[0].ready_at)
        try:
            slot.on_result(
                np.asarray(probs, dtype=np.float32).reshape(-1),
                np.stack([item.window for item in items]),
            )
        except Exception:  # a session bug must not take the core down
            logger.exception("session %d failed to handle a VAD result", slot.id)


class BatchScheduler(_CoreBase):
    """All sessions' windows through one model, batched, in one worker thread."""

    def __init__(
        self,
        backend: VADBackend,
        *,
        max_batch: int = 256,
        max_steps: int = 16,
        batch_wait_ms: float = 0.0,
        max_pending_windows: int = 64,
        metrics: ServerMetrics | None = None,
    ) -> None:
        super().__init__(max_pending_windows=max_pending_windows, metrics=metrics)
        if max_batch < 1 or max_steps < 1:
            raise ValueError("max_batch and max_steps must be >= 1")
        self.backend = backend
        self.max_batch = max_batch
        self.max_steps = max_steps
        self.batch_wait_s = max(0.0, batch_wait_ms) / 1000.0
        self._ready: OrderedDict[int, StreamSlot] = OrderedDict()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="caesura-vad")

    @property
    def window_size(self) -> int:
        return int(self.backend.window_size)

    async def start(self) -> None:
        if self._task is None:
            self._started = True
            self._task = asyncio.create_task(self._run(), name="caesura-vad-batcher")

    async def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for slot in list(self._ready.values()):
            slot._space.set()
        self._executor.shutdown(wait=True)

    def open(self, on_result: ResultCallback, on_error: ErrorCallback) -> StreamSlot:
        if self._stopped:
            raise CoreClosedError("the VAD core is shutting down")
        return StreamSlot(self._new_id(), self.backend.new_stream(), on_result, on_error)

    async def submit(self, slot: StreamSlot, windows: Float32Array) -> None:
        """Queue consecutive windows ``[n, window_size]``; waits while the queue is full."""
        if self._stopped:
            raise CoreClosedError("the VAD core is shutting down")
        for row in windows:
            if len(slot.pending) >= self.max_pending_windows:
                await self._wait_space(slot)
                if slot.closed:
                    return
            self._enqueue(slot, row)
            if slot.id not in self._ready:
                self._ready[slot.id] = slot
                self._wake.set()

    def reset(self, slot: StreamSlot) -> None:
        """Forget queued windows and start the model state afresh at the next window."""
        slot.epoch += 1
        self._drop_pending(slot)
        self._ready.pop(slot.id, None)

    def close(self, slot: StreamSlot) -> None:
        """End a session's stream: drop its queue and callbacks, release its model stream
        (now, or when the batch the worker is running with it returns)."""
        self._detach(slot)
        self._drop_pending(slot)
        self._ready.pop(slot.id, None)
        if not slot.busy:
            self._release(slot)

    def _release(self, slot: StreamSlot) -> None:
        handle, slot.handle = slot.handle, None
        if handle is not None:
            try:
                self.backend.close_stream(handle)
            except Exception:  # releasing must never take the core down
                logger.exception("closing the model stream of session %d failed", slot.id)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.batch_wait_s > 0 and len(self._ready) < self.max_batch:
                await asyncio.sleep(self.batch_wait_s)
            while self._ready:
                # one batch per call: its locals (slots, windows) die with the call instead of
                # keeping the last batch's sessions alive while the batcher idles
                await self._run_batch(loop)

    async def _run_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        batch: list[StreamSlot] = []
        while self._ready and len(batch) < self.max_batch:
            _, slot = self._ready.popitem(last=False)
            batch.append(slot)
        items = [self._take(s, self.max_steps) for s in batch]
        for s in batch:
            s.busy = True
        try:
            probs, dt = await loop.run_in_executor(self._executor, self._infer, batch, items)
        except asyncio.CancelledError:
            raise  # stopping; the worker may still use the streams: they stay busy
        except Exception as exc:
            logger.exception("batched VAD inference failed (%d streams)", len(batch))
            self._batch_done(batch)
            err = exc if isinstance(exc, ModelError) else ModelError(str(exc))
            for s in batch:
                if not s.closed:
                    s.failed = True
                    s.on_error(err)
            return
        self._batch_done(batch)
        if self.metrics is not None:
            n_windows = sum(len(i) for i in items)
            self.metrics.batches.inc()
            self.metrics.windows.inc(n_windows)
            self.metrics.batch_size.observe(n_windows)
            self.metrics.batch_seconds.observe(dt)
        now = time.perf_counter()
        for s, its, p in zip(batch, items, probs, strict=True):
            self._deliver(s, its, p, now)
            if s.pending and not s.closed and s.id not in self._ready:
                self._ready[s.id] = s

    def _batch_done(self, batch: list[StreamSlot]) -> None:
        """The worker is done with ``batch``: release the streams of slots closed meanwhile."""
        for s in batch:
            s.busy = False
            if s.closed:
                self._release(s)

    def _infer(
        self, batch: list[StreamSlot], items: list[list[_Item]]
    ) -> tuple[list[Float32Array], float]:
        """Worker thread: resets due to ``reset`` messages, then one batched inference."""
        t0 = time.perf_counter()
        for s, its in zip(batch, items, strict=True):
            if s.handle_epoch != its[0].epoch:
                self.backend.reset_stream(s.handle)
                s.handle_epoch = its[0].epoch
        windows = [np.stack([it.window for it in its]) for its in items]
        probs = self.backend.infer([s.handle for s in batch], windows)
        return probs, time.perf_counter() - t0


class PerConnectionCore(_CoreBase):
    """One model per session, windows run unbatched (B = 1) in a shared thread pool.

    Only for the benchmark comparison (``caesura serve --per-connection-model``).
    """

    def __init__(
        self,
        backend_factory: Callable[[], VADBackend],
        *,
        max_pending_windows: int = 64,
        max_workers: int = 4,
        metrics: ServerMetrics | None = None,
    ) -> None:
        super().__init__(max_pending_windows=max_pending_windows, metrics=metrics)
        self._factory = backend_factory
        probe = backend_factory()
        self._window_size = int(probe.window_size)
        self._backends: dict[int, VADBackend] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._wakes: dict[int, asyncio.Event] = {}
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="caesura-vad-conn"
        )

    @property
    def window_size(self) -> int:
        return self._window_size

    async def start(self) -> None:
        self._started = True

    async def stop(self) -> None:
        self._stopped = True
        for t in list(self._tasks.values()):
            t.cancel()
        for t in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        self._executor.shutdown(wait=True)

    def open(self, on_result: ResultCallback, on_error: ErrorCallback) -> StreamSlot:
        if self._stopped:
            raise CoreClosedError("the VAD core is shutting down")
        backend = self._factory()  # a whole model per connection
        slot = StreamSlot(self._new_id(), backend.new_stream(), on_result, on_error)
        self._backends[slot.id] = backend
        self._wakes[slot.id] = asyncio.Event()
        self._tasks[slot.id] = asyncio.create_task(self._run(slot, backend))
        return slot

    async def submit(self, slot: StreamSlot, windows: Float32Array) -> None:
        if self._stopped:
            raise CoreClosedError("the VAD core is shutting down")
        for row in windows:
            await self._wait_space(slot)
            if slot.closed:
                return
            self._enqueue(slot, row)
            wake = self._wakes.get(slot.id)
            if wake is not None:
                wake.set()

    def reset(self, slot: StreamSlot) -> None:
        slot.epoch += 1
        self._drop_pending(slot)

    def close(self, slot: StreamSlot) -> None:
        self._detach(slot)
        self._drop_pending(slot)
        task = self._tasks.pop(slot.id, None)
        if task is not None:
            task.cancel()
        self._wakes.pop(slot.id, None)
        self._backends.pop(slot.id, None)

    async def _run(self, slot: StreamSlot, backend: VADBackend) -> None:
        loop = asyncio.get_running_loop()
        wake = self._wakes[slot.id]

        def infer(items: list[_Item]) -> tuple[Float32Array, float]:
            if slot.handle_epoch != items[0].epoch:
                backend.reset_stream(slot.handle)
                slot.handle_epoch = items[0].epoch
            t0 = time.perf_counter()
            # one window per call: a naive per-connection server runs the model per window
            probs = [backend.infer([slot.handle], [it.window.reshape(1, -1)])[0] for it in items]
            return np.concatenate(probs).astype(np.float32), time.perf_counter() - t0

        while not slot.closed:
            await wake.wait()
            wake.clear()
            while slot.pending and not slot.closed:
                items = self._take(slot, 16)
                try:
                    probs, dt = await loop.run_in_executor(self._executor, infer, items)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.exception("VAD inference failed for session %d", slot.id)
                    slot.failed = True
                    slot.on_error(exc if isinstance(exc, ModelError) else ModelError(str(exc)))
                    return
                if self.metrics is not None:
                    self.metrics.batches.inc(len(items))
                    self.metrics.windows.inc(len(items))
                    for _ in items:
                        self.metrics.batch_size.observe(1)
                    self.metrics.batch_seconds.observe(dt / len(items))
                self._deliver(slot, items, probs, time.perf_counter())
