"""SileroVAD / VADStream: chunking invariance, rates, batching, reset, errors, integrity."""

from __future__ import annotations

import hashlib
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import caesura.vad._fast as fast_mod
import caesura.vad._fast_build as _fast_build
import caesura.vad.model as model_mod
from caesura.audio import read_audio, resample
from caesura.errors import (
    InvalidAudioError,
    InvalidOptionError,
    ModelError,
    ModelIntegrityError,
    UnsupportedModelError,
    UnsupportedSampleRateError,
)
from caesura.vad import SileroVAD, VADStream
from caesura.vad.model import BUNDLED_MODEL_SHA256, _read_asset

TOL = 1e-4  # fast backend vs Silero's own graph


@pytest.fixture(scope="module")
def fast() -> SileroVAD:
    return SileroVAD.load()


@pytest.fixture(scope="module")
def ref() -> SileroVAD:
    return SileroVAD.load(backend="onnx")


@pytest.fixture(scope="module")
def speech(fixtures_dir: Path) -> np.ndarray:
    audio, rate = read_audio(fixtures_dir / "speech_16k.wav")
    assert rate == 16000
    return audio[: 6 * 16000]


@pytest.fixture(scope="module")
def speech8k(speech: np.ndarray) -> np.ndarray:
    return resample(speech, 16000, 8000)


def synthetic(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    voiced = np.sin(2 * np.pi * 150 * t) + 0.5 * np.sin(2 * np.pi * 300 * t)
    env = (np.sin(2 * np.pi * 2 * t) > 0).astype(np.float64)
    return (0.3 * voiced * env + 0.02 * rng.standard_normal(n)).astype(np.float32)


def chunked(stream: VADStream, audio: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    out, i = [], 0
    for n in sizes:
        if i >= len(audio):
            break
        out.append(stream.process(audio[i : i + int(n)]))
        i += int(n)
    out.append(stream.process(audio[i:]))
    return np.concatenate(out)


# ---------------------------------------------------------------------------- loading


def test_load_is_cached_and_described(fast, ref):
    assert SileroVAD.load() is fast
    assert fast.backend == "fast"
    assert ref.backend == "onnx"
    assert fast.sha256 == BUNDLED_MODEL_SHA256
    assert fast.sample_rates == (16000, 8000)
    assert SileroVAD.load(cache=False) is not fast
    assert "fast" in repr(fast)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backend": "torch"},
        {"sample_rates": (8000,)},
        {"sample_rates": (16000, 44100)},
        {"sample_rates": ()},
        {"sample_rates": ("x",)},
    ],
)
def test_load_bad_options(kwargs):
    with pytest.raises(InvalidOptionError):
        SileroVAD.load(**kwargs)


def test_sha256_mismatch_raises_integrity_error(monkeypatch):
    with pytest.raises(ModelIntegrityError, match="sha256"):
        _read_asset("silero_vad.onnx", "0" * 64)
    monkeypatch.setattr(model_mod, "BUNDLED_MODEL_SHA256", "f" * 64)
    with pytest.raises(ModelIntegrityError, match=r"silero_vad\.onnx"):
        SileroVAD.load(backend="onnx", cache=False)
    monkeypatch.setattr(fast_mod, "_SESSIONS", {})
    monkeypatch.setitem(fast_mod.FAST_MODEL_SHA256, 16000, "e" * 64)
    with pytest.raises(ModelIntegrityError, match=r"silero_vad_fast_16k\.onnx"):
        SileroVAD.load(cache=False)


def test_missing_asset_is_model_error():
    with pytest.raises(ModelError, match="missing"):
        _read_asset("no_such_model.onnx", "0" * 64)


def test_user_model_copy_of_bundled(tmp_path, fast, speech):
    path = tmp_path / "mine.onnx"
    shutil.copyfile(Path(model_mod.__file__).parent / "assets" / "silero_vad.onnx", path)
    auto = SileroVAD.load(path, cache=False)
    assert auto.backend == "fast"  # identical bytes -> fast graph
    onnx_user = SileroVAD.load(path, backend="onnx", cache=False)
    assert onnx_user.path == str(path)
    p = onnx_user.probabilities(speech[:16000], 16000)
    np.testing.assert_allclose(p, fast.probabilities(speech[:16000], 16000), atol=TOL)


def test_user_model_not_onnx(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"this is not an onnx file")
    with pytest.raises(UnsupportedModelError, match=r"bad\.onnx"):
        SileroVAD.load(path, cache=False)


def test_user_model_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        SileroVAD.load(tmp_path / "none.onnx", cache=False)


def test_user_model_fast_backend_refused(tmp_path):
    path = tmp_path / "other.onnx"
    path.write_bytes(b"\x00" * 10)
    with pytest.raises(InvalidOptionError, match="backend='onnx'"):
        SileroVAD.load(path, backend="fast", cache=False)


def _tiny_model(tmp_path: Path, *, names: tuple[str, ...], scale: float) -> Path:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper  # noqa: PLC0415 (optional dev dependency)

    # output = sigmoid(scale * mean(input)), stateN = state: the right interface, wrong model.
    nodes = [
        helper.make_node("ReduceMean", [names[0]], ["m"], axes=[1]),
        helper.make_node("Mul", ["m", "k"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["output"]),
        helper.make_node("Identity", [names[1]], ["stateN"]),
    ]
    inputs = [
        helper.make_tensor_value_info(names[0], TensorProto.FLOAT, ["B", "L"]),
        helper.make_tensor_value_info(names[1], TensorProto.FLOAT, [2, "B", 128]),
    ]
    if len(names) > 2:
        inputs.append(helper.make_tensor_value_info(names[2], TensorProto.INT64, []))
    graph = helper.make_graph(
        nodes,
        "tiny",
        inputs,
        [
            helper.make_tensor_value_info("output", TensorProto.FLOAT, ["B", 1]),
            helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "B", 128]),
        ],
        [helper.make_tensor("k", TensorProto.FLOAT, [], [scale])],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path = tmp_path / f"tiny_{len(names)}.onnx"
    path.write_bytes(m.SerializeToString())
    return path


def test_user_model_wrong_inputs(tmp_path):
    path = _tiny_model(tmp_path, names=("input", "state"), scale=1.0)
    with pytest.raises(UnsupportedModelError, match=r"inputs are \['input', 'state'\]"):
        SileroVAD.load(path, cache=False)


def test_user_model_wrong_outputs(tmp_path):
    path = _tiny_model(tmp_path, names=("input", "state", "sr"), scale=1.0)
    with pytest.raises(UnsupportedModelError, match="probe signal differ"):
        SileroVAD.load(path, cache=False)


# ---------------------------------------------------------------------------- streams


def test_stream_attributes(fast):
    s = fast.stream()
    assert (s.sample_rate, s.model_rate, s.window_size, s.context_size) == (16000, 16000, 512, 64)
    s8 = fast.stream(8000)
    assert (s8.model_rate, s8.window_size, s8.context_size) == (8000, 256, 32)
    s48 = fast.stream(48000)
    assert (s48.model_rate, s48.window_size, s48.resampling) == (16000, 512, True)
    assert not s.resampling


def test_windows_and_counters(fast, speech):
    s = fast.stream()
    assert s.process(speech[:511]).shape == (0,)
    assert s.pending_samples == 511
    p, audio = s.process(speech[511:1600], return_audio=True)
    assert p.shape == (3,)
    assert p.dtype == np.float32
    assert audio.shape == (3, 512)
    np.testing.assert_array_equal(audio.ravel(), speech[:1536])
    np.testing.assert_array_equal(s.last_windows, audio)
    assert s.samples_processed == 1536
    assert s.windows_processed == 3
    assert s.pending_samples == 64
    assert ((p >= 0) & (p <= 1)).all()


@pytest.mark.parametrize("rate", [16000, 8000])
def test_random_chunkings_identical(fast, speech, speech8k, rate):
    audio = speech if rate == 16000 else speech8k
    whole = fast.stream(rate).process(audio)
    rng = np.random.default_rng(rate)
    for trial in range(3):
        sizes = rng.integers(1, 3 * rate // 100 if trial else 5, size=200)
        if trial == 2:
            sizes = rng.integers(1, 20_000, size=50)
        got = chunked(fast.stream(rate), audio, sizes)
        np.testing.assert_array_equal(got, whole)


def test_int16_equals_float32(fast, speech):
    pcm = np.round(speech * 32767).astype(np.int16)
    a = fast.stream().process(pcm)
    b = fast.stream().process(pcm.astype(np.float32) / 32768)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rate", [16000, 8000])
def test_fast_matches_reference(fast, ref, speech, speech8k, rate):
    audio = speech if rate == 16000 else speech8k
    pf = fast.stream(rate).process(audio)
    pr = ref.stream(rate).process(audio)
    assert pf.shape == pr.shape == (len(audio) // (512 if rate == 16000 else 256),)
    np.testing.assert_allclose(pf, pr, atol=TOL)
    assert pr.max() > 0.9  # real speech is detected
    assert pr.min() < 0.2


@pytest.mark.parametrize("rate", [16000, 8000])
def test_fast_matches_reference_synthetic(fast, ref, rate):
    audio = synthetic(3.0, rate, seed=rate)
    np.testing.assert_allclose(
        fast.probabilities(audio, rate), ref.probabilities(audio, rate), atol=TOL
    )


def test_reference_chunking_and_offline(ref, speech):
    s = ref.stream()
    got = chunked(s, speech[:32000], np.random.default_rng(5).integers(1, 1500, size=100))
    offline = ref.probabilities(speech[:32000], 16000)
    assert len(offline) == 63  # 32000 = 62.5 windows: the last one zero-padded
    assert len(got) == 62
    np.testing.assert_array_equal(got, offline[:62])
    np.testing.assert_array_equal(s.flush(), offline[62:])


@pytest.mark.parametrize("rate", [44100, 48000, 24000, 11025])
def test_other_rates_resampled(fast, speech, rate):
    audio = resample(speech, 16000, rate)
    s = fast.stream(rate)
    assert s.model_rate == 16000
    whole = s.process(audio)
    tail = s.flush()
    native = fast.stream(16000).process(speech)
    n = min(len(whole) + len(tail), len(native))
    assert abs(len(whole) + len(tail) - len(native)) <= 1
    both = np.concatenate([whole, tail])[:n]
    # resampled twice -> not identical, but the same decisions nearly everywhere
    assert np.mean((both > 0.5) == (native[:n] > 0.5)) > 0.95
    sizes = np.random.default_rng(rate).integers(1, 4000, size=400)
    np.testing.assert_array_equal(chunked(fast.stream(rate), audio, sizes), whole)


def test_eight_khz_on_sixteen_only_model_is_resampled(speech8k):
    m = SileroVAD.load(sample_rates=(16000,))
    s = m.stream(8000)
    assert s.model_rate == 16000
    with pytest.raises(UnsupportedSampleRateError, match="8000"):
        m.stream(8000, resample=False)
    assert m.probabilities(speech8k, 8000).shape == (-(-2 * len(speech8k) // 512),)


@pytest.mark.parametrize("rate", [44100, 48000, 24000])
def test_resample_disabled(fast, rate):
    with pytest.raises(UnsupportedSampleRateError, match=f"{rate} Hz"):
        fast.stream(rate, resample=False)


@pytest.mark.parametrize("rate", [0, 100, 10_000_000, 16000.5])
def test_bad_stream_rate(fast, rate):
    with pytest.raises(UnsupportedSampleRateError):
        fast.stream(rate)


@pytest.mark.parametrize(
    ("chunk", "match"),
    [
        (np.zeros(10, dtype=np.int32), "dtype int32"),
        (np.zeros((10, 2), dtype=np.float32), "2-D"),
        (np.zeros((2, 5, 2), dtype=np.float32), "3-D"),
        (np.array([0.0, np.nan], dtype=np.float32), "NaN"),
        (np.array([0.0, np.inf], dtype=np.float32), "NaN/inf"),
        ([0.0, 0.1], "numpy array"),
    ],
)
def test_bad_chunks(fast, chunk, match):
    s = fast.stream()
    with pytest.raises(InvalidAudioError, match=match):
        s.process(chunk)
    with pytest.raises(InvalidAudioError, match=match):
        s.feed(chunk)
    with pytest.raises(InvalidAudioError, match=match):
        fast.probabilities(chunk, 16000)


def test_empty_chunk_and_empty_file(fast):
    s = fast.stream()
    assert s.process(np.zeros(0, dtype=np.float32)).shape == (0,)
    assert fast.probabilities(np.zeros(0, dtype=np.int16), 16000).shape == (0,)


def test_reset_semantics(fast, speech):
    s = fast.stream()
    first = s.process(speech[:8000])
    s.process(speech[8000:12345])
    s.reset()
    assert s.windows_processed == 0
    assert s.pending_samples == 0
    np.testing.assert_array_equal(s.process(speech[:8000]), first)
    s48 = fast.stream(48000)
    audio = resample(speech[:16000], 16000, 48000)
    a = s48.process(audio)
    s48.reset()
    np.testing.assert_array_equal(s48.process(audio), a)


def test_flush_pads_last_window(fast, speech):
    s = fast.stream()
    p = s.process(speech[:1000])
    tail, audio = s.flush(return_audio=True)
    assert p.shape == (1,)
    assert tail.shape == (1,)
    np.testing.assert_array_equal(audio[0, : 1000 - 512], speech[512:1000])
    assert not audio[0, 1000 - 512 :].any()
    np.testing.assert_array_equal(
        np.concatenate([p, tail]), fast.stream().process(np.pad(speech[:1000], (0, 24)))
    )
    assert s.flush().shape == (0,)


def test_close(fast):
    s = fast.stream()
    s.close()
    assert s.closed
    with pytest.raises(InvalidOptionError, match="closed"):
        s.process(np.zeros(512, dtype=np.float32))
    with pytest.raises(InvalidOptionError, match="closed"):
        fast.infer_ready([s])


def test_state_is_128_dim(fast, speech):
    s = fast.stream()
    s.process(speech[:2048])
    assert s.state.shape == (2, 1, 128)
    assert np.abs(s.state).sum() > 0


# ---------------------------------------------------------------------------- batching


def _separate(model: SileroVAD, rate: int, chunks: list[np.ndarray]) -> np.ndarray:
    s = model.stream(rate)
    return np.concatenate([s.process(c) for c in chunks] or [np.zeros(0, np.float32)])


@pytest.mark.parametrize("backend", ["fast", "onnx"])
def test_batched_equals_separate_with_join_reset_leave(backend, speech, speech8k):
    model = SileroVAD.load(backend=backend)
    rng = np.random.default_rng(7)
    n_streams = 6
    rates = [16000, 16000, 8000, 16000, 48000, 16000]
    sources = []
    for i, rate in enumerate(rates):
        base = speech8k if rate == 8000 else speech
        if rate == 48000:
            base = resample(speech[:32000], 16000, 48000)
        sources.append(base[i * 997 :] * (0.5 + 0.1 * i))
    streams: list[VADStream | None] = [None] * n_streams
    pos = [0] * n_streams
    fed: list[list[np.ndarray]] = [[] for _ in range(n_streams)]
    got: list[list[np.ndarray]] = [[] for _ in range(n_streams)]
    finished: list[tuple[list[np.ndarray], list[np.ndarray], int]] = []
    join_at = {0: 0, 1: 0, 2: 0, 3: 5, 4: 2, 5: 9}
    for tick in range(25):
        for i in range(n_streams):
            if streams[i] is None and join_at[i] == tick:
                streams[i] = model.stream(rates[i])
        if tick == 12 and streams[1] is not None:  # reset: a fresh stream from here
            finished.append((fed[1], got[1], rates[1]))
            streams[1].reset()
            fed[1], got[1] = [], []
        if tick == 15 and streams[3] is not None:  # leave
            finished.append((fed[3], got[3], rates[3]))
            streams[3].close()
            streams[3] = None
        active = [i for i in range(n_streams) if streams[i] is not None]
        for i in active:
            n = int(rng.integers(0, 3000))
            chunk = sources[i][pos[i] : pos[i] + n]
            pos[i] += n
            fed[i].append(chunk)
            streams[i].feed(chunk)  # type: ignore[union-attr]
        results = model.infer_ready([streams[i] for i in active])  # type: ignore[misc]
        for i, r in zip(active, results, strict=True):
            got[i].append(r)
    finished += [(fed[i], got[i], rates[i]) for i in range(n_streams) if streams[i] is not None]
    assert len(finished) == 7
    total = 0
    for chunks, results, rate in finished:
        expected = _separate(model, rate, chunks)
        batched = np.concatenate(results)
        np.testing.assert_array_equal(batched, expected)
        total += len(batched)
    assert total > 300


def test_infer_ready_results_and_last_windows(fast, speech):
    a, b, c = fast.stream(), fast.stream(), fast.stream(8000)
    a.feed(speech[:2048])  # 4 windows
    b.feed(speech[:100])  # none
    c.feed(speech[:600])  # 2 windows at 8 kHz
    ra, rb, rc = fast.infer_ready([a, b, c])
    assert (ra.shape, rb.shape, rc.shape) == ((4,), (0,), (2,))
    np.testing.assert_array_equal(a.last_windows.ravel(), speech[:2048])
    np.testing.assert_array_equal(ra, fast.stream().process(speech[:2048]))
    assert fast.infer_ready([]) == []


def test_infer_ready_misuse(fast, ref):
    s = fast.stream()
    with pytest.raises(InvalidOptionError, match="twice"):
        fast.infer_ready([s, s])
    with pytest.raises(InvalidOptionError, match="another model"):
        ref.infer_ready([s])
    with pytest.raises(InvalidOptionError, match="VADStream"):
        fast.infer_ready(["x"])  # type: ignore[list-item]


def test_offline_matches_streaming(fast, speech):
    offline = fast.probabilities(speech, 16000)
    streaming = fast.stream().process(speech)
    assert len(offline) == len(streaming) + 1  # 6 s = 187.5 windows: offline pads the last
    np.testing.assert_allclose(offline[: len(streaming)], streaming, atol=1e-6)


def test_offline_blocks(fast, monkeypatch, speech):
    whole = fast.probabilities(speech, 16000)
    monkeypatch.setattr(model_mod, "_OFFLINE_BLOCK", 7)
    np.testing.assert_allclose(fast.probabilities(speech, 16000), whole, atol=1e-6)


def test_offline_reference_flag(fast, ref, speech):
    np.testing.assert_array_equal(
        fast.probabilities(speech[:16000], 16000, reference=True),
        ref.probabilities(speech[:16000], 16000),
    )


def test_threads_share_model(fast, speech):
    expected = fast.stream().process(speech[:16000])

    def work(_: int) -> np.ndarray:
        s = fast.stream()
        return np.concatenate([s.process(speech[i : i + 700]) for i in range(0, 16000, 700)])

    with ThreadPoolExecutor(4) as pool:
        for got in pool.map(work, range(8)):
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("backend", ["fast", "onnx"])
def test_one_window_ticks_mixing_process_and_batches(backend, speech, speech8k):
    """The realtime shape: every stream gets exactly one window per tick. Streams move between
    the single-stream path (``process``, a batch of one) and full batches, and reset, and
    still equal separate streams bit for bit."""
    model = SileroVAD.load(backend=backend)
    rates = [16000, 16000, 16000, 8000, 8000, 16000]
    sources = [(speech8k if r == 8000 else speech)[i * 331 :] for i, r in enumerate(rates)]
    streams = [model.stream(r) for r in rates]
    pos = [0] * len(rates)
    fed: list[list[np.ndarray]] = [[] for _ in rates]
    got: list[list[np.ndarray]] = [[] for _ in rates]
    finished: list[tuple[list[np.ndarray], list[np.ndarray], int]] = []
    for tick in range(40):
        if tick == 17:  # reset stream 2: a new run from here
            finished.append((fed[2], got[2], rates[2]))
            streams[2].reset()
            fed[2], got[2] = [], []
        solo = {tick % len(rates)} if tick % 3 == 0 else set()  # this one runs alone
        batch = []
        for i, s in enumerate(streams):
            win = s.window_size
            chunk = sources[i][pos[i] : pos[i] + win]
            pos[i] += win
            fed[i].append(chunk)
            if i in solo:
                got[i].append(s.process(chunk))
                np.testing.assert_array_equal(s.last_windows[0], chunk)
            else:
                assert s.feed(chunk) == 1
                batch.append(i)
        for i, r in zip(batch, model.infer_ready([streams[i] for i in batch]), strict=True):
            assert r.shape == (1,)
            np.testing.assert_array_equal(streams[i].last_windows[0], fed[i][-1])
            got[i].append(r)
    finished += [(fed[i], got[i], rates[i]) for i in range(len(rates))]
    for chunks, results, rate in finished:
        np.testing.assert_array_equal(np.concatenate(results), _separate(model, rate, chunks))
    solo_stream = model.stream(16000)
    solo_stream.process(speech[:512])
    batched = model.stream(16000)
    batched.feed(speech[:512])
    model.infer_ready([batched, model.stream(16000)])
    np.testing.assert_array_equal(solo_stream.state, batched.state)


def test_feed_quick_check_matches_validation(fast, speech):
    s = fast.stream()
    big = np.full(600, 3e38, dtype=np.float32)  # finite, near the float32 limit
    assert s.feed(big) == 1  # accepted, as validate_audio accepts it
    s.reset()
    long_nan = np.zeros(20000, dtype=np.float32)
    long_nan[-1] = np.nan  # longer than the quick check handles
    with pytest.raises(InvalidAudioError, match="NaN"):
        s.feed(long_nan)
    strided = np.ascontiguousarray(np.repeat(speech[:4096], 2))[::2]  # non-contiguous float32
    np.testing.assert_array_equal(
        fast.stream().process(strided), fast.stream().process(speech[:4096])
    )
    with pytest.raises(InvalidAudioError, match="dtype"):
        s.feed(speech[:512].astype(">f4"))


def test_fast_graph_is_reproducible():
    """``python -m caesura.vad._fast_build`` regenerates the vendored graphs byte for byte."""
    pytest.importorskip("onnx")
    weights = _fast_build.extract_weights()
    for rate, w in weights.items():
        data = _fast_build.build(rate, w).SerializeToString(deterministic=True)
        assert hashlib.sha256(data).hexdigest() == fast_mod.FAST_MODEL_SHA256[rate]
