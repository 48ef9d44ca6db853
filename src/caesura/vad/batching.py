"""Cross-thread batching: many streams, any threads, one batched inference at a time.

:class:`VADBatcher` is what a framework adapter puts between its callers and a shared
:class:`~caesura.vad.model.SileroVAD`. Any thread submits a chunk for one of its
:class:`~caesura.vad.model.VADStream` objects and gets a :class:`concurrent.futures.Future`
(``asyncio.wrap_future`` turns it into an awaitable without blocking an event loop; the
blocking :meth:`VADBatcher.score` waits for it). One daemon thread per batcher takes every chunk
submitted since its last run, feeds each to its stream and scores every ready window with one
:meth:`~caesura.vad.model.SileroVAD.infer_ready` call -- bit-identical to scoring each stream
alone -- then resolves the futures. While a batch runs, new submissions queue up and form the
next batch, so concurrent streams share model calls by themselves.

Waiting for company: a stream may be *attached* (:meth:`VADBatcher.attach`), meaning that it
submits regularly. A batch then waits up to ``max_batch_delay`` (default
:data:`MAX_BATCH_DELAY`, 15 ms) for every attached stream to have a chunk queued, and runs at
once when they all have; streams that are not attached are never waited for, so a lone caller
that attaches nothing pays no delay at all.

Errors: a bad chunk (wrong dtype, NaN, ...) or a closed stream fails only that request's future,
with the core's own error; a model failure fails every future of the batch with the exception
the model raised. Nothing is dropped silently.

Lifetime: :meth:`VADBatcher.for_model` returns one shared batcher per model, held weakly (the
batcher keeps its model alive, not the other way round). The thread starts on the first
submission, exits after ``idle_timeout`` seconds without work (and starts again on the next
submission), and stops -- after finishing what is queued -- when the batcher is closed
(:meth:`VADBatcher.close`, or leaving a ``with`` block) or garbage collected. The thread never
holds a reference to the batcher itself, only to its queue.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from caesura.errors import InvalidOptionError
from caesura.vad.model import SileroVAD, VADStream

__all__ = ["IDLE_TIMEOUT", "MAX_BATCH_DELAY", "THREAD_NAME", "VADBatchResult", "VADBatcher"]

logger = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]

#: Longest a chunk waits for chunks of other *attached* streams to join its batch (seconds).
#: Streams of independent sources deliver audio at unrelated phases; waiting a little lets one
#: model call serve many of them. A batch runs at once when every attached stream has a chunk
#: queued, so a lone stream never waits.
MAX_BATCH_DELAY = 0.015

#: Seconds without any submission after which the inference thread exits (a later submission
#: starts a new one).
IDLE_TIMEOUT = 5.0

#: Name of the inference threads.
THREAD_NAME = "caesura-vad-inference"


@dataclass(frozen=True)
class VADBatchResult:
    """What a submitted chunk produced."""

    #: Probabilities of the windows the chunk completed (float32, possibly none).
    probabilities: Float32Array
    #: Seconds from submission to the result being ready (queueing + inference).
    latency: float
    #: Streams scored together in the model call that produced this result.
    batch_size: int


@dataclass(eq=False)
class _Request:
    stream: VADStream
    audio: npt.NDArray[Any]
    future: Future[VADBatchResult]
    submitted: float


_Outcome = VADBatchResult | BaseException


class _Engine:
    """The queue and the inference thread of one :class:`VADBatcher`.

    The thread references only this object, never the batcher, so that dropping the batcher
    can stop the thread (through a ``weakref.finalize`` on the batcher).
    """

    def __init__(self, model: SileroVAD, max_batch_delay: float, idle_timeout: float) -> None:
        self.model = model
        self.max_batch_delay = max_batch_delay
        self.idle_timeout = idle_timeout
        self.cond = threading.Condition()
        # attached streams (expected to submit); weak, so a stream dropped without detach
        # does not make every later batch wait for it
        self.live: weakref.WeakSet[VADStream] = weakref.WeakSet()
        self.queue: list[_Request] = []
        self.in_flight: set[int] = set()  # id() of the streams in the running batch
        self.to_close: dict[int, VADStream] = {}
        self.thread: threading.Thread | None = None
        self.closing = False
        self.inline = False  # a caller thread is running a lone request itself (score())
        # statistics (written by the inference thread under the lock)
        self.batches = 0
        self.requests = 0
        self.windows = 0
        self.max_batch = 0

    # ---- called by VADBatcher (any thread) ---------------------------------------------------

    def submit(self, stream: VADStream, audio: npt.NDArray[Any]) -> Future[VADBatchResult]:
        future: Future[VADBatchResult] = Future()
        with self.cond:
            if self.closing:
                raise InvalidOptionError("this VADBatcher is closed")
            self.queue.append(_Request(stream, audio, future, time.perf_counter()))
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
                self.thread.start()
                logger.debug("VAD inference thread started for %r", self.model)
            self.cond.notify_all()
        return future

    def score_inline(self, stream: VADStream, audio: npt.NDArray[Any]) -> Float32Array | None:
        """Run a lone request on the calling thread when the batcher is idle (nothing queued
        or running, no other attached stream to wait for): no thread hand-off for a single
        stream. ``None`` when it is busy (the caller submits instead). Errors propagate."""
        with self.cond:
            if (
                self.closing
                or self.inline
                or self.queue
                or self.in_flight
                or any(s is not stream for s in self.live)
            ):
                return None
            self.inline = True
        counts = (0, 0, 0)
        try:
            stream.feed(audio)
            probs = self.model.infer_ready([stream])[0]
            counts = (1, 1, len(probs))
            return probs
        finally:
            with self.cond:
                self.inline = False
                self._count(*counts)
                self.cond.notify_all()

    def _count(self, batches: int, requests: int, windows: int) -> None:
        """(Lock held.) Add one model call's numbers to the statistics."""
        self.batches += batches
        self.requests += requests
        self.windows += windows
        if batches:
            self.max_batch = max(self.max_batch, requests)

    def attach(self, stream: VADStream) -> None:
        with self.cond:
            self.live.add(stream)

    def detach(self, stream: VADStream) -> None:
        with self.cond:
            self.live.discard(stream)
            self.cond.notify_all()

    def release(self, stream: VADStream) -> None:
        with self.cond:
            self.live.discard(stream)
            self.cond.notify_all()
            dropped = [r for r in self.queue if r.stream is stream]
            self.queue = [r for r in self.queue if r.stream is not stream]
            close_now = id(stream) not in self.in_flight
            if not close_now:
                self.to_close[id(stream)] = stream
        for r in dropped:  # outside the lock: cancelling runs the futures' callbacks
            _cancel(r.future)
        if close_now:
            stream.close()

    def shutdown(self) -> threading.Thread | None:
        """Refuse new submissions; the thread finishes the queue, then exits."""
        with self.cond:
            self.closing = True
            self.cond.notify_all()
            return self.thread

    # ---- the inference thread ----------------------------------------------------------------

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self.cond:
                if not self._wait_for_work(me):
                    return
                self._gather()
                batch = self._take_batch()
            outcomes: list[tuple[_Request, _Outcome]] = []
            counts = (0, 0, 0)
            try:
                if batch:
                    outcomes, counts = self._process(batch)
            finally:
                with self.cond:  # statistics first: they include a result once it is out
                    self._count(*counts)
                    self.in_flight = set()
                    closing, self.to_close = self.to_close, {}
                for s in closing.values():
                    s.close()
                # outside the lock: resolving runs the futures' callbacks
                for r, outcome in outcomes:
                    _resolve(r.future, outcome)
            del batch, outcomes  # hold no stream while idle

    def _wait_for_work(self, me: threading.Thread) -> bool:
        """(Lock held.) Wait for a queued request; ``False`` when the thread should exit:
        the batcher is closed and the queue is empty, or nothing came for ``idle_timeout``."""
        deadline = time.monotonic() + self.idle_timeout
        while not self.queue or self.inline:
            if self.queue:  # a caller's inline run goes first; its end notifies
                self.cond.wait()
                continue
            remaining = deadline - time.monotonic()
            if self.closing or remaining <= 0:
                if self.thread is me:  # a submission after this starts a new thread
                    self.thread = None
                logger.debug(
                    "VAD inference thread exits (%s)", "closed" if self.closing else "idle"
                )
                return False
            self.cond.wait(remaining)
        return True

    def _gather(self) -> None:
        """(Lock held, released while waiting.) Wait until every attached stream has a chunk
        queued or the oldest queued chunk has waited ``max_batch_delay``."""
        deadline = self.queue[0].submitted + self.max_batch_delay
        while not self.closing and self.queue:
            queued = {id(r.stream) for r in self.queue}
            if all(id(s) in queued for s in self.live):
                return
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self.cond.wait(remaining)

    def _take_batch(self) -> list[_Request]:
        """(Lock held.) At most one request per stream, in submission order (a later chunk of
        the same stream waits for the next batch); cancelled requests are dropped."""
        batch: list[_Request] = []
        rest: list[_Request] = []
        seen: set[int] = set()
        for r in self.queue:
            if id(r.stream) in seen:
                rest.append(r)
                continue
            try:
                runnable = r.future.set_running_or_notify_cancel()
            except RuntimeError:  # resolved by someone else: nothing to do
                runnable = False
            if runnable:
                seen.add(id(r.stream))
                batch.append(r)
        self.queue = rest
        self.in_flight = seen
        return batch

    def _process(
        self, batch: list[_Request]
    ) -> tuple[list[tuple[_Request, _Outcome]], tuple[int, int, int]]:
        """(Lock not held.) Feed every chunk and run one batched inference. Returns each
        request's outcome and (model calls, requests scored, windows scored)."""
        outcomes: list[tuple[_Request, _Outcome]] = []
        counts = (0, 0, 0)
        try:
            ready: list[_Request] = []
            for r in batch:
                try:
                    r.stream.feed(r.audio)
                except Exception as exc:  # bad audio, closed stream: that request alone fails
                    outcomes.append((r, exc))
                else:
                    ready.append(r)
            if ready:
                try:
                    probs = self.model.infer_ready([r.stream for r in ready])
                except Exception as exc:  # the model failed: every scored request sees it
                    logger.warning(
                        "batched VAD inference failed for %d streams: %r", len(ready), exc
                    )
                    outcomes.extend((r, exc) for r in ready)
                else:
                    done = time.perf_counter()
                    n = len(ready)
                    outcomes.extend(
                        (r, VADBatchResult(p, done - r.submitted, n))
                        for r, p in zip(ready, probs, strict=True)
                    )
                    counts = (1, n, sum(len(p) for p in probs))
        except Exception as exc:  # pragma: no cover - a bug here must not strand a caller
            logger.exception("caesura VAD batcher failed")
            resolved = {id(r) for r, _ in outcomes}
            outcomes.extend((r, exc) for r in batch if id(r) not in resolved)
        return outcomes, counts


def _resolve(future: Future[VADBatchResult], outcome: _Outcome) -> None:
    if future.done():  # pragma: no cover - running futures cannot be cancelled
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _cancel(future: Future[VADBatchResult]) -> None:
    if future.cancel():
        future.set_running_or_notify_cancel()  # wakes concurrent.futures.wait() callers


class VADBatcher:
    """Batches the chunks that any number of threads submit for their streams of one model.

    Thread-safe. A stream must not be submitted from two threads at once, and not used
    directly (``feed``, ``process``, ``reset``) while a request of it is pending: the
    inference thread owns a stream while one of its requests is queued or running. Chunks of
    one stream are processed in submission order, one per batch. The submitted array must not
    be modified until its future is resolved.

    Args:
        model: the loaded :class:`~caesura.vad.model.SileroVAD` whose streams are submitted.
        max_batch_delay: longest a chunk waits for chunks of attached streams (seconds).
        idle_timeout: seconds without work after which the inference thread exits.

    Use :meth:`for_model` to share one batcher per model across a process.
    """

    _shared: ClassVar[weakref.WeakValueDictionary[int, VADBatcher]] = weakref.WeakValueDictionary()
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        model: SileroVAD,
        *,
        max_batch_delay: float = MAX_BATCH_DELAY,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        if not isinstance(model, SileroVAD):
            raise InvalidOptionError(
                f"model must be a caesura.vad.SileroVAD, got {type(model).__name__}"
            )
        if not max_batch_delay >= 0:
            raise InvalidOptionError(f"max_batch_delay must be >= 0, got {max_batch_delay!r}")
        if not idle_timeout > 0:
            raise InvalidOptionError(f"idle_timeout must be > 0, got {idle_timeout!r}")
        self._model = model
        self._engine = _Engine(model, float(max_batch_delay), float(idle_timeout))
        # stops the thread (after the queue) when the batcher is garbage collected
        self._finalizer = weakref.finalize(self, self._engine.shutdown)
        self._finalizer.atexit = False

    @classmethod
    def for_model(cls, model: SileroVAD) -> VADBatcher:
        """The process-wide shared batcher of ``model`` (created on first use).

        The mapping is weak: the batcher lives as long as someone holds it (and keeps its
        model alive); afterwards, or once it was closed, the next call creates a new one.
        """
        with cls._shared_lock:
            batcher = cls._shared.get(id(model))
            if batcher is None or batcher.closed or batcher._model is not model:
                batcher = cls(model)
                cls._shared[id(model)] = batcher
            return batcher

    # ---- properties ----------------------------------------------------------------------

    @property
    def model(self) -> SileroVAD:
        """The model every submitted stream belongs to."""
        return self._model

    @property
    def max_batch_delay(self) -> float:
        """Longest a chunk waits for chunks of attached streams (seconds)."""
        return self._engine.max_batch_delay

    @property
    def idle_timeout(self) -> float:
        """Seconds without work after which the inference thread exits."""
        return self._engine.idle_timeout

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (submissions are then refused)."""
        return self._engine.closing

    @property
    def batches(self) -> int:
        """Model calls made so far (statistics, see :meth:`reset_stats`)."""
        return self._engine.batches

    @property
    def requests(self) -> int:
        """Requests scored by those model calls."""
        return self._engine.requests

    @property
    def windows(self) -> int:
        """Windows scored by those model calls."""
        return self._engine.windows

    @property
    def max_batch(self) -> int:
        """The most requests scored in one model call."""
        return self._engine.max_batch

    def reset_stats(self) -> None:
        """Set :attr:`batches`, :attr:`requests`, :attr:`windows` and :attr:`max_batch` to 0."""
        engine = self._engine
        with engine.cond:
            engine.batches = engine.requests = engine.windows = engine.max_batch = 0

    # ---- requests ------------------------------------------------------------------------

    def submit(self, stream: VADStream, audio: npt.NDArray[Any]) -> Future[VADBatchResult]:
        """Queue ``audio`` (a chunk for :meth:`VADStream.feed`) for ``stream``; callable from
        any thread, never blocks on inference.

        The future resolves to a :class:`VADBatchResult`, or fails with the error of this
        chunk (:class:`~caesura.errors.InvalidAudioError`, or
        :class:`~caesura.errors.InvalidOptionError` for a closed stream) or of the model call.
        Cancelling the future before its batch starts withdraws the chunk (it is not fed).

        Raises:
            InvalidOptionError: ``stream`` is not a stream of this batcher's model, or the
                batcher is closed.
        """
        self._check_stream(stream, "submit")
        return self._engine.submit(stream, audio)

    def score(
        self, stream: VADStream, audio: npt.NDArray[Any], *, timeout: float | None = None
    ) -> Float32Array:
        """Blocking :meth:`submit`: the probabilities of the windows ``audio`` completes
        (possibly none), batched with whatever other streams are waiting.

        When the batcher is idle -- nothing queued or running and no other attached stream
        to wait for -- the chunk is scored on the calling thread (same result, no hand-off
        to the inference thread); otherwise it joins the next batch.

        Raises the chunk's or the model's error, and ``TimeoutError`` after ``timeout``
        seconds. Do not call it from the inference thread (a future's callback).
        """
        self._check_stream(stream, "score")
        probs = self._engine.score_inline(stream, audio)
        if probs is not None:
            return probs
        return self.submit(stream, audio).result(timeout).probabilities

    def _check_stream(self, stream: object, verb: str) -> None:
        if not isinstance(stream, VADStream):
            raise InvalidOptionError(f"{verb} takes a caesura.vad.VADStream, got {type(stream)}")
        if stream.model is not self._model:
            raise InvalidOptionError(f"{verb} got a stream created by another model")

    def attach(self, stream: VADStream) -> None:
        """Count ``stream`` among those a batch may wait for (up to ``max_batch_delay``)."""
        self._engine.attach(stream)

    def detach(self, stream: VADStream) -> None:
        """``stream`` will submit no more for now; batches stop waiting for it. Its queued
        requests are still processed."""
        self._engine.detach(stream)

    def release(self, stream: VADStream) -> None:
        """Detach ``stream``, cancel its queued requests and close it -- now, or right after
        the batch it is part of (safe while a request of it is running)."""
        self._engine.release(stream)

    # ---- lifetime ------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Refuse new submissions, let the thread finish what is queued, and wait (at most
        ``timeout`` seconds) for it to exit. Idempotent. :meth:`for_model` hands out a new
        batcher once the shared one is closed."""
        thread = self._engine.shutdown()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> VADBatcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"VADBatcher({self._model!r}, {state}, batches={self.batches})"
