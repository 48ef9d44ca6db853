"""The async boundary: one inference thread per loaded model, batching every stream's windows.

Every :class:`~livekit.plugins.caesura.VADStream` in the process hands its audio to the
:class:`BatchWorker` of its model and awaits the probabilities. The worker thread takes all the
chunks submitted since its last run, feeds each to its core stream and scores every ready
window with one :meth:`caesura.vad.SileroVAD.infer_ready` call (bit-identical to scoring each
stream alone), then resolves each submitter's future on the submitter's own event loop. While a
batch runs, new submissions queue up and form the next batch, so 32 concurrent streams cost far
fewer model calls than 32 independent executors -- and the event loop never runs inference.

A core stream is only ever touched by the worker thread while one of its jobs is in flight,
and by its owner otherwise (the owner awaits each job before submitting the next), so the
core's one-thread-at-a-time rule holds. :meth:`BatchWorker.release` closes a stream safely even
when its owner was cancelled mid-job.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from caesura.vad import SileroVAD
from caesura.vad import VADStream as CoreStream

from .log import logger

__all__ = ["MAX_BATCH_DELAY", "BatchResult", "BatchWorker", "worker_for"]

Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class BatchResult:
    """Probabilities of the windows a chunk completed, and how long the job took."""

    probabilities: Float32Array
    #: Seconds from submission to the result being ready (queueing + inference).
    latency: float
    #: Streams scored together in the model call that produced this result.
    batch_size: int


@dataclass(eq=False)
class _Job:
    stream: CoreStream
    chunk: npt.NDArray[Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[BatchResult]
    submitted: float = field(default_factory=time.perf_counter)


#: Longest a chunk waits for chunks of other streams to join its batch (seconds). Streams of
#: independent tracks deliver frames at unrelated phases; waiting a little lets one model call
#: serve many of them. A batch runs at once when every attached stream has a chunk queued, so
#: a lone stream never waits.
MAX_BATCH_DELAY = 0.015


class BatchWorker:
    """A daemon thread running batched inference for every stream of one :class:`SileroVAD`."""

    def __init__(self, model: SileroVAD, max_batch_delay: float = MAX_BATCH_DELAY) -> None:
        self._model = model
        self.max_batch_delay = max_batch_delay
        self._cond = threading.Condition()
        self._live: set[int] = set()  # id() of attached core streams (expected to submit)
        self._queue: list[_Job] = []
        self._in_flight: set[int] = set()  # id() of core streams in the running batch
        self._to_close: dict[int, CoreStream] = {}
        self._thread: threading.Thread | None = None
        self.batches = 0  # model calls made (for benchmarks and tests)
        self.jobs = 0  # chunks processed

    @property
    def model(self) -> SileroVAD:
        return self._model

    def submit(self, stream: CoreStream, chunk: npt.NDArray[Any]) -> asyncio.Future[BatchResult]:
        """Queue ``chunk`` for ``stream``; the future resolves on the calling loop."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[BatchResult] = loop.create_future()
        with self._cond:
            self._ensure_thread()
            self._queue.append(_Job(stream, chunk, loop, fut))
            self._cond.notify()
        return fut

    def attach(self, stream: CoreStream) -> None:
        """Count ``stream`` among those a batch may wait for."""
        with self._cond:
            self._live.add(id(stream))

    def detach(self, stream: CoreStream) -> None:
        """``stream`` will submit no more (its input ended); batches stop waiting for it."""
        with self._cond:
            self._live.discard(id(stream))
            self._cond.notify()

    def release(self, stream: CoreStream) -> None:
        """Close ``stream`` now, or right after the batch it is part of, and drop its queue."""
        with self._cond:
            self._live.discard(id(stream))
            self._cond.notify()
            self._queue = [j for j in self._queue if j.stream is not stream]
            if id(stream) in self._in_flight:
                self._to_close[id(stream)] = stream
                return
        stream.close()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="caesura-vad-inference", daemon=True
            )
            self._thread.start()

    def _gather(self) -> None:
        """Wait (lock held, released while waiting) until every attached stream has a chunk
        queued or the oldest queued chunk has waited ``max_batch_delay``."""
        deadline = self._queue[0].submitted + self.max_batch_delay
        while True:
            queued = {id(j.stream) for j in self._queue}
            if self._live <= queued:
                return
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _take_batch(self) -> list[_Job]:
        """At most one job per stream (a later chunk of the same stream waits its turn)."""
        batch: list[_Job] = []
        rest: list[_Job] = []
        seen: set[int] = set()
        for job in self._queue:
            if job.future.cancelled():
                continue
            if id(job.stream) in seen:
                rest.append(job)
            else:
                seen.add(id(job.stream))
                batch.append(job)
        self._queue = rest
        self._in_flight = seen
        return batch

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                self._gather()
                batch = self._take_batch()
            try:
                if batch:
                    self._process(batch)
            except BaseException:  # pragma: no cover - a bug here must not kill the thread
                logger.exception("caesura VAD inference thread failed")
            finally:
                with self._cond:
                    self._in_flight = set()
                    closing, self._to_close = self._to_close, {}
                for s in closing.values():
                    s.close()

    def _process(self, batch: list[_Job]) -> None:
        results: list[tuple[_Job, BatchResult | BaseException]] = []
        ready: list[_Job] = []
        for job in batch:
            try:
                job.stream.feed(job.chunk)
            except Exception as exc:  # invalid audio, closed stream: that job alone fails
                results.append((job, exc))
            else:
                ready.append(job)
        if ready:
            try:
                probs = self._model.infer_ready([j.stream for j in ready])
            except Exception as exc:
                results.extend((job, exc) for job in ready)
            else:
                self.batches += 1
                self.jobs += len(ready)
                done = time.perf_counter()
                results.extend(
                    (job, BatchResult(p, done - job.submitted, len(ready)))
                    for job, p in zip(ready, probs, strict=True)
                )
        _deliver(results)


def _set_all(items: list[tuple[asyncio.Future[BatchResult], BatchResult | BaseException]]) -> None:
    for fut, value in items:
        if fut.done():
            continue
        if isinstance(value, BaseException):
            fut.set_exception(value)
        else:
            fut.set_result(value)


def _deliver(results: list[tuple[_Job, BatchResult | BaseException]]) -> None:
    """Resolve futures on their own loops: one wake-up per loop, not one per stream."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for job, value in results:
        by_loop.setdefault(job.loop, []).append((job.future, value))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is already closed
            loop.call_soon_threadsafe(_set_all, items)


_WORKERS: weakref.WeakKeyDictionary[SileroVAD, BatchWorker] = weakref.WeakKeyDictionary()
_WORKERS_LOCK = threading.Lock()


def worker_for(model: SileroVAD) -> BatchWorker:
    """The process-wide worker of ``model`` (created on first use)."""
    with _WORKERS_LOCK:
        worker = _WORKERS.get(model)
        if worker is None:
            worker = BatchWorker(model)
            _WORKERS[model] = worker
        return worker
