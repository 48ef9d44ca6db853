"""VADBatcher: cross-thread batching is bit-exact, errors stay with their request, the thread
stops when the batcher goes away."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import caesura
from caesura.audio import read_audio, resample
from caesura.errors import InvalidAudioError, InvalidOptionError, ModelError
from caesura.vad import SileroVAD, VADBatcher, VADBatchResult, VADStream
from caesura.vad.batching import MAX_BATCH_DELAY, THREAD_NAME

LONG = 30.0  # a batch delay no test waits for: batches run once every attached stream queued


@pytest.fixture(scope="module")
def model() -> SileroVAD:
    return SileroVAD.load()


@pytest.fixture(scope="module")
def speech(fixtures_dir: Path) -> np.ndarray:
    audio, rate = read_audio(fixtures_dir / "speech_16k.wav")
    assert rate == 16000
    return audio[: 4 * 16000]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every inference thread a test starts is gone when the test ends."""
    before = set(threading.enumerate())
    yield
    gc.collect()
    new = [t for t in threading.enumerate() if t not in before and t.name == THREAD_NAME]
    for t in new:  # closed or collected batchers stop at once, well before the idle timeout
        t.join(timeout=2)
    assert not [t for t in new if t.is_alive()]


def noise(seconds: float, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32)


def chunks_of(audio: np.ndarray, n_chunks: int, seed: int) -> list[np.ndarray]:
    """``audio`` cut into ``n_chunks`` pieces of random sizes (some shorter than a window)."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(audio)), size=n_chunks - 1, replace=False))
    return [np.ascontiguousarray(c) for c in np.split(audio, cuts)]


def alone(model: SileroVAD, rate: int, chunks: list[np.ndarray]) -> list[np.ndarray]:
    """Each chunk's probabilities from a stream of its own, unbatched."""
    stream = model.stream(rate)
    return [stream.process(c) for c in chunks]


def run_threads(target, n: int) -> None:
    errors: list[BaseException] = []

    def guarded(k: int) -> None:
        try:
            target(k)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not [t for t in threads if t.is_alive()]
    assert not errors, errors


# ---- results -----------------------------------------------------------------------------


def test_exported() -> None:
    assert "VADBatcher" in caesura.__all__
    assert caesura.VADBatcher is VADBatcher
    assert {"VADBatcher", "VADBatchResult"} <= set(caesura.vad.__all__)


def test_many_threads_get_exactly_the_unbatched_probabilities(model, speech) -> None:
    """Eight threads (16 kHz speech at different offsets, seeded noise, 8 kHz, and 24 kHz
    resampled; float32 and int16) submit random-size chunks through one batcher: every chunk's
    probabilities are bit-identical to a separate unbatched stream's, and with every stream
    attached each model call serves all of them."""
    n_chunks = 40
    inputs: list[tuple[int, np.ndarray]] = [(16000, np.roll(speech, k * 7919)) for k in range(3)]
    inputs += [(16000, noise(4.0, 16000, seed)) for seed in (1, 2)]
    inputs.append((16000, (speech * 32767).astype(np.int16)))
    inputs.append((8000, resample(speech, 16000, 8000)))
    inputs.append((24000, resample(speech, 16000, 24000)))
    plans = [chunks_of(audio, n_chunks, seed=k) for k, (_, audio) in enumerate(inputs)]
    want = [alone(model, rate, plan) for (rate, _), plan in zip(inputs, plans, strict=True)]
    assert sum(p.size for p in want[0]) > 100

    n = len(inputs)
    got: list[list[np.ndarray]] = [[] for _ in range(n)]
    with VADBatcher(model, max_batch_delay=LONG) as batcher:
        streams = [model.stream(rate) for rate, _ in inputs]
        for s in streams:
            batcher.attach(s)
        barrier = threading.Barrier(n)

        def work(k: int) -> None:
            barrier.wait()
            for chunk in plans[k]:
                got[k].append(batcher.score(streams[k], chunk, timeout=60))
            batcher.detach(streams[k])

        run_threads(work, n)
        assert (batcher.batches, batcher.requests, batcher.max_batch) == (
            n_chunks,
            n * n_chunks,
            n,
        )
        assert batcher.windows == sum(p.size for w in want for p in w)
    for k in range(n):
        assert len(got[k]) == n_chunks
        for g, w in zip(got[k], want[k], strict=True):
            assert g.dtype == np.float32
            assert np.array_equal(g, w)


def test_unattached_callers_are_batched_without_waiting(model, speech) -> None:
    """Callers that attach nothing (Pipecat's analyzers) are never held back and still get
    exact results; every request is scored."""
    n, win = 6, 512
    inputs = [np.roll(speech, k * 1000) for k in range(n - 1)] + [noise(4.0, 16000, 9)]
    plans = [[a[i : i + win] for i in range(0, len(a), win)] for a in inputs]
    want = [alone(model, 16000, plan) for plan in plans]
    got: list[list[np.ndarray]] = [[] for _ in range(n)]
    with VADBatcher(model, max_batch_delay=LONG) as batcher:
        barrier = threading.Barrier(n)

        def work(k: int) -> None:
            stream = model.stream(16000)
            barrier.wait()
            for chunk in plans[k]:
                got[k].append(batcher.score(stream, chunk, timeout=60))

        start = time.perf_counter()
        run_threads(work, n)
        elapsed = time.perf_counter() - start
        assert batcher.requests == sum(len(p) for p in plans)
        assert batcher.windows == batcher.requests  # one window per chunk
    assert elapsed < LONG  # nobody waited for the (huge) batch delay
    for g, w in zip(got, want, strict=True):
        assert len(g) == len(w)
        assert all(np.array_equal(a, b) for a, b in zip(g, w, strict=True))


def test_result_fields_and_asyncio_bridge(model, speech) -> None:
    chunk = speech[:1600]
    (want,) = alone(model, 16000, [chunk])

    async def main() -> VADBatchResult:
        with VADBatcher(model) as batcher:
            return await asyncio.wrap_future(batcher.submit(model.stream(16000), chunk))

    result = asyncio.run(main())
    assert isinstance(result, VADBatchResult)
    assert np.array_equal(result.probabilities, want)
    assert result.probabilities.size == 3
    assert result.batch_size == 1
    assert 0 < result.latency < 10


# ---- errors ------------------------------------------------------------------------------


def test_a_bad_request_fails_alone(model, speech) -> None:
    good = [speech[:2048], speech[4000:6048]]
    bad_inputs = {
        "int32": speech[:512].astype(np.int32),
        "nan": np.full(512, np.nan, dtype=np.float32),
        "2-D": np.zeros((2, 512), dtype=np.float32),
    }
    expected: dict[str, str] = {}
    for name, x in bad_inputs.items():  # the core's own errors, raised directly
        with pytest.raises(InvalidAudioError) as info:
            model.stream(16000).feed(x)
        expected[name] = str(info.value)
    closed = model.stream(16000)
    closed.close()

    with VADBatcher(model, max_batch_delay=LONG) as batcher:
        good_streams = [model.stream(16000) for _ in good]
        bad_streams = {name: model.stream(16000) for name in bad_inputs}
        for s in [*good_streams, *bad_streams.values(), closed]:
            batcher.attach(s)  # one batch: it waits until every one of them has a request
        good_futs = [batcher.submit(s, x) for s, x in zip(good_streams, good, strict=True)]
        bad_futs = {name: batcher.submit(bad_streams[name], x) for name, x in bad_inputs.items()}
        closed_fut = batcher.submit(closed, speech[:512])

        for fut, x in zip(good_futs, good, strict=True):
            result = fut.result(timeout=30)
            assert np.array_equal(result.probabilities, alone(model, 16000, [x])[0])
            assert result.batch_size == len(good)  # scored together, without the bad ones
        for name, fut in bad_futs.items():
            exc = fut.exception(timeout=30)
            assert isinstance(exc, InvalidAudioError)
            assert str(exc) == expected[name]
        exc = closed_fut.exception(timeout=30)
        assert isinstance(exc, InvalidOptionError)
        assert "closed" in str(exc)
        assert batcher.batches == 1

        # a rejected chunk leaves its stream usable
        batcher.release(closed)
        for s in [*good_streams, *bad_streams.values()]:
            batcher.detach(s)
        stream = bad_streams["nan"]
        got = batcher.score(stream, speech[:1024], timeout=30)
        assert np.array_equal(got, alone(model, 16000, [speech[:1024]])[0])


def test_a_model_failure_fails_every_future_of_the_batch(model, speech, monkeypatch) -> None:
    boom = ModelError("Silero VAD inference failed: boom")
    calls: list[int] = []

    def broken(self, streams):
        calls.append(len(streams))
        raise boom

    with VADBatcher(model, max_batch_delay=LONG) as batcher:
        streams = [model.stream(16000) for _ in range(4)]
        for s in streams:
            batcher.attach(s)
        monkeypatch.setattr(SileroVAD, "infer_ready", broken)
        futs = [batcher.submit(s, speech[:1024]) for s in streams[:3]]
        bad = batcher.submit(streams[3], np.zeros(512, dtype=np.int64))
        for fut in futs:
            assert fut.exception(timeout=30) is boom
        assert isinstance(bad.exception(timeout=30), InvalidAudioError)  # its own error
        assert calls == [3]
        assert batcher.batches == 0

        monkeypatch.undo()  # the thread survived: the next batch runs normally
        for s in streams:
            batcher.detach(s)
        fresh = model.stream(16000)
        assert np.array_equal(
            batcher.score(fresh, speech[:1024], timeout=30),
            alone(model, 16000, [speech[:1024]])[0],
        )


def test_submit_misuse(model) -> None:
    other = SileroVAD.load(backend="onnx")
    with VADBatcher(model) as batcher:
        with pytest.raises(InvalidOptionError, match="VADStream"):
            batcher.submit("stream", np.zeros(512, dtype=np.float32))  # type: ignore[arg-type]
        with pytest.raises(InvalidOptionError, match="another model"):
            batcher.submit(other.stream(16000), np.zeros(512, dtype=np.float32))
    with pytest.raises(InvalidOptionError, match="SileroVAD"):
        VADBatcher("silero_vad.onnx")  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match="max_batch_delay"):
        VADBatcher(model, max_batch_delay=-1)
    with pytest.raises(InvalidOptionError, match="idle_timeout"):
        VADBatcher(model, idle_timeout=0)


# ---- attach / detach / release / cancel --------------------------------------------------


def test_batch_waits_at_most_max_batch_delay_for_attached_streams(model, speech) -> None:
    delay = 0.2
    with VADBatcher(model, max_batch_delay=delay) as batcher:
        assert batcher.max_batch_delay == delay
        a, idle = model.stream(16000), model.stream(16000)
        batcher.attach(a)
        batcher.attach(idle)  # attached but never submits
        result = batcher.submit(a, speech[:512]).result(timeout=30)
        assert delay * 0.9 <= result.latency < delay + 5
        batcher.detach(idle)
        result = batcher.submit(a, speech[512:1024]).result(timeout=30)
        assert result.latency < delay  # nobody left to wait for
    assert MAX_BATCH_DELAY == 0.015


def test_detach_and_dropped_streams_stop_the_wait(model, speech) -> None:
    with VADBatcher(model, max_batch_delay=LONG) as batcher:
        a, b = model.stream(16000), model.stream(16000)
        batcher.attach(a)
        batcher.attach(b)
        fut = batcher.submit(a, speech[:512])
        time.sleep(0.05)
        assert not fut.done()  # waiting for b
        batcher.detach(b)
        assert fut.result(timeout=10).probabilities.size == 1

        c = model.stream(16000)
        batcher.attach(c)
        del c  # dropped without detach: the attachment is weak
        gc.collect()
        assert batcher.submit(a, speech[512:1024]).result(timeout=10).probabilities.size == 1


def test_release_cancels_queued_requests_and_closes_the_stream(model, speech) -> None:
    with VADBatcher(model, max_batch_delay=LONG) as batcher:
        a, b = model.stream(16000), model.stream(16000)
        batcher.attach(a)
        batcher.attach(b)
        queued = [batcher.submit(b, speech[:512]), batcher.submit(b, speech[512:1024])]
        time.sleep(0.05)
        assert not any(f.done() for f in queued)  # waiting for a
        batcher.release(b)
        assert all(f.cancelled() for f in queued)
        assert b.closed
        assert b.windows_processed == 0
        # a is alone now: its request runs without waiting for b
        assert batcher.submit(a, speech[:512]).result(timeout=10).probabilities.size == 1


def test_cancelled_future_withdraws_its_chunk(model, speech) -> None:
    with VADBatcher(model, max_batch_delay=LONG) as batcher:
        a, b = model.stream(16000), model.stream(16000)
        batcher.attach(a)
        batcher.attach(b)
        fut = batcher.submit(a, speech[:1024])
        assert fut.cancel()
        batcher.detach(a)
        assert batcher.submit(b, speech[:512]).result(timeout=10).probabilities.size == 1
        assert a.windows_processed == 0
        assert a.pending_samples == 0  # never fed


def test_chunks_of_one_stream_run_in_order_one_per_batch(model, speech) -> None:
    chunks = [speech[i : i + 700] for i in range(0, 7000, 700)]
    with VADBatcher(model) as batcher:
        stream = model.stream(16000)
        futs = [batcher.submit(stream, c) for c in chunks]  # all queued at once
        got = [f.result(timeout=30).probabilities for f in futs]
        assert batcher.batches == len(chunks)
    want = alone(model, 16000, chunks)
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


# ---- lifetime ----------------------------------------------------------------------------


def test_thread_stops_when_the_batcher_is_garbage_collected(model, speech) -> None:
    batcher = VADBatcher(model, idle_timeout=600)
    stream = model.stream(16000)
    assert batcher.submit(stream, speech[:512]).result(30).probabilities.size == 1
    thread = batcher._engine.thread
    assert thread is not None
    assert thread.is_alive()
    assert thread.daemon
    assert thread.name == THREAD_NAME
    fut = batcher.submit(stream, speech[512:1024])
    ref = weakref.ref(batcher)
    del batcher
    gc.collect()
    assert ref() is None
    assert fut.result(timeout=30).probabilities.size == 1  # what was queued is still served
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_idle_thread_exits_and_restarts_on_demand(model, speech) -> None:
    with VADBatcher(model, idle_timeout=0.05) as batcher:
        stream = model.stream(16000)
        batcher.submit(stream, speech[:512]).result(30)
        first = batcher._engine.thread
        assert first is not None
        first.join(timeout=10)
        assert not first.is_alive()
        assert batcher._engine.thread is None
        assert batcher.submit(stream, speech[512:1024]).result(30).probabilities.size == 1
        second = batcher._engine.thread
        assert second is not None
        assert second is not first


def test_close_serves_the_queue_then_refuses(model, speech) -> None:
    batcher = VADBatcher(model, max_batch_delay=LONG)
    a, b = model.stream(16000), model.stream(16000)
    batcher.attach(a)
    batcher.attach(b)
    fut = batcher.submit(a, speech[:512])  # waiting for b
    thread = batcher._engine.thread
    assert thread is not None
    batcher.close(timeout=10)
    assert batcher.closed
    assert fut.result(timeout=0).probabilities.size == 1
    assert not thread.is_alive()
    with pytest.raises(InvalidOptionError, match="closed"):
        batcher.submit(a, speech[:512])
    batcher.close()  # idempotent


def test_for_model_is_shared_and_weak(speech) -> None:
    model = SileroVAD.load(cache=False)
    shared = VADBatcher.for_model(model)
    assert VADBatcher.for_model(model) is shared
    assert VADBatcher.for_model(SileroVAD.load()) is not shared
    shared.close()
    replacement = VADBatcher.for_model(model)  # a closed batcher is replaced
    assert replacement is not shared
    assert replacement.submit(model.stream(16000), speech[:512]).result(30).probabilities.size == 1
    thread = replacement._engine.thread
    assert thread is not None

    model_ref, batcher_ref = weakref.ref(model), weakref.ref(replacement)
    del model, shared
    gc.collect()
    assert model_ref() is not None  # the batcher keeps its model alive
    del replacement
    gc.collect()
    assert batcher_ref() is None  # the registry does not keep the batcher
    thread.join(timeout=2)  # stopped by the collection, not by the idle timeout
    assert not thread.is_alive()
    gc.collect()
    assert model_ref() is None  # nor, once its thread is gone, the model


def test_stream_type_is_the_core_stream(model) -> None:
    with VADBatcher(model) as batcher:
        stream = model.stream(16000)
        assert isinstance(stream, VADStream)
        fut = batcher.submit(stream, np.zeros(100, dtype=np.float32))
        assert fut.result(timeout=30).probabilities.size == 0  # no window completed yet
        assert "open" in repr(batcher)
    assert "closed" in repr(batcher)


def test_a_lone_caller_is_scored_on_its_own_thread(model, speech) -> None:
    """score() with nothing else queued or attached runs the model on the calling thread (no
    hand-off to the inference thread): same probabilities, counted in the statistics."""
    plan = chunks_of(speech, 25, seed=11)
    want = alone(model, 16000, plan)
    with VADBatcher(model, max_batch_delay=LONG) as batcher:
        stream = model.stream(16000)
        batcher.attach(stream)  # attached, but the only one: nobody to wait for
        got = [batcher.score(stream, c) for c in plan]
        assert not [t for t in threading.enumerate() if t.name == THREAD_NAME]
        assert (batcher.batches, batcher.requests) == (len(plan), len(plan))
        assert batcher.windows == sum(p.size for p in want)
        with pytest.raises(InvalidAudioError):  # errors reach the caller as they are
            batcher.score(stream, np.full(512, np.nan, dtype=np.float32))
        with pytest.raises(InvalidOptionError, match="another model"):
            batcher.score(SileroVAD.load(cache=False).stream(16000), plan[0])
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w)


def test_inline_and_batched_callers_mix_exactly(model, speech) -> None:
    """Unattached callers on several threads: each call runs inline when the batcher is idle
    and joins a batch otherwise; every chunk's probabilities stay bit-identical."""
    n, n_chunks = 4, 30
    inputs = [np.roll(speech, k * 3331) for k in range(n)]
    plans = [chunks_of(a, n_chunks, seed=20 + k) for k, a in enumerate(inputs)]
    want = [alone(model, 16000, p) for p in plans]
    got: list[list[np.ndarray]] = [[] for _ in range(n)]
    with VADBatcher(model) as batcher:
        streams = [model.stream(16000) for _ in range(n)]

        def work(k: int) -> None:
            for chunk in plans[k]:
                got[k].append(batcher.score(streams[k], chunk, timeout=60))

        run_threads(work, n)
        assert batcher.requests == n * n_chunks
    for k in range(n):
        for g, w in zip(got[k], want[k], strict=True):
            assert np.array_equal(g, w)
