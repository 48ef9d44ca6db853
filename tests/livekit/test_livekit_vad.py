"""caesura.VAD against the real livekit-agents: events, fields, pairing, frames, flush, close,
live option updates, batching, and the same decisions as the core for the same audio."""

from __future__ import annotations

import asyncio
import importlib.resources
import importlib.util
import inspect
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from livekit.agents import Plugin
from livekit.agents.vad import VADEvent, VADEventType
from lk_harness import LK_RATE, frame_pcm, to_frames

from caesura.audio import resample
from caesura.errors import CaesuraError, InvalidOptionError
from caesura.vad import VADBatcher
from caesura.vad.batching import MAX_BATCH_DELAY
from caesura.vad.session import VADSession
from livekit import rtc
from livekit.plugins import caesura

SOS, EOS, INF = (
    VADEventType.START_OF_SPEECH,
    VADEventType.END_OF_SPEECH,
    VADEventType.INFERENCE_DONE,
)
WIN = 512
WIN_S = WIN / 16000
PLUGIN_ROOT = Path(caesura.__file__).resolve().parent.parent.parent.parent


def run(coro):
    return asyncio.run(coro)


async def collect(
    vad: caesura.VAD,
    items: list[rtc.AudioFrame | str],
    on_event: Callable[[VADEvent, caesura.VADStream], None] | None = None,
) -> list[VADEvent]:
    """Push frames (and ``"flush"`` markers) into a new stream; return every event."""
    stream = vad.stream()
    events: list[VADEvent] = []

    async def consume() -> None:
        async for ev in stream:
            events.append(ev)
            if on_event is not None:
                on_event(ev, stream)

    task = asyncio.create_task(consume())
    for item in items:
        if isinstance(item, str):
            stream.flush()
        else:
            stream.push_frame(item)
    stream.end_input()
    await task
    await stream.aclose()
    return events


def speech_events(events: list[VADEvent]) -> list[VADEvent]:
    return [e for e in events if e.type != INF]


def check_paired(events: list[VADEvent]) -> None:
    kinds = [e.type for e in speech_events(events)]
    for i, k in enumerate(kinds):
        assert k == (SOS if i % 2 == 0 else EOS), kinds


# ---- packaging -------------------------------------------------------------------------


def test_plugin_registered_and_namespace_package():
    assert any(p.package == "livekit.plugins.caesura" for p in Plugin.registered_plugins)
    assert isinstance(caesura.__version__, str)
    assert set(caesura.__all__) >= {"VAD", "VADStream", "TurnDetector", "__version__"}
    assert (PLUGIN_ROOT / "pyproject.toml").is_file()
    # PEP 420: the shared namespaces have no __init__.py
    assert not (PLUGIN_ROOT / "livekit" / "__init__.py").exists()
    assert not (PLUGIN_ROOT / "livekit" / "plugins" / "__init__.py").exists()
    assert (PLUGIN_ROOT / "livekit" / "plugins" / "caesura" / "py.typed").exists()


def test_load_mirrors_silero_option_names_and_defaults():
    silero = pytest.importorskip("livekit.plugins.silero")
    ours = inspect.signature(caesura.VAD.load).parameters
    theirs = inspect.signature(silero.VAD.load).parameters
    for name in (
        "min_speech_duration",
        "min_silence_duration",
        "prefix_padding_duration",
        "max_buffered_speech",
        "activation_threshold",
        "sample_rate",
        "force_cpu",
        "deactivation_threshold",
        "onnx_file_path",
    ):
        assert name in ours, name
        if name not in ("deactivation_threshold", "onnx_file_path"):  # NOT_GIVEN vs None
            assert ours[name].default == theirs[name].default, name
    up_ours = set(inspect.signature(caesura.VAD.update_options).parameters)
    up_theirs = set(inspect.signature(silero.VAD.update_options).parameters)
    assert up_theirs <= up_ours
    vad = caesura.VAD.load()
    assert vad.min_silence_duration == 0.55
    assert vad.model == "silero-v6.2"
    assert vad.provider == "caesura"
    assert vad.capabilities.update_interval == pytest.approx(0.032)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"activation_threshold": 1.5},
        {"min_silence_duration": -0.1},
        {"deactivation_threshold": 0.9},  # above the activation threshold
        {"sample_rate": 44100},
        {"max_buffered_speech": 0.0},
    ],
)
def test_invalid_options_raise_clear_errors(kwargs):
    with pytest.raises(InvalidOptionError) as err:
        caesura.VAD.load(**kwargs)
    assert isinstance(err.value, ValueError)
    assert any(k.split("_")[0] in str(err.value) for k in kwargs) or "sample_rate" in str(err.value)


def test_stream_needs_a_running_loop():
    vad = caesura.VAD.load()  # prewarm: no loop needed to load
    with pytest.raises(RuntimeError):
        vad.stream()


# ---- events on real speech -------------------------------------------------------------


def test_event_sequence_on_real_speech(speech_pcm):
    vad = caesura.VAD.load()
    frames = to_frames(speech_pcm)
    events = run(collect(vad, frames))
    inf = [e for e in events if e.type == INF]
    speech = speech_events(events)

    # INFERENCE_DONE for every window, on a 16 kHz sample clock, with the window's input audio
    assert len(inf) >= int(speech_pcm.size / 1.5 // WIN) - 1
    assert [e.samples_index for e in inf] == [WIN * (i + 1) for i in range(len(inf))]
    for e in inf:
        assert e.timestamp == pytest.approx(e.samples_index / 16000)
        assert 0.0 <= e.probability <= 1.0
        assert e.inference_duration >= 0.0
        assert e.raw_accumulated_speech == 0.0 or e.raw_accumulated_silence == 0.0
        assert e.frames[0].sample_rate == LK_RATE
        assert e.frames[0].samples_per_channel == 768
    np.testing.assert_array_equal(
        frame_pcm([e.frames[0] for e in inf]), speech_pcm[: 768 * len(inf)]
    )

    # paired starts and ends with correct durations and input-rate frames
    check_paired(events)
    assert len(speech) >= 4
    for e in speech:
        assert e.frames[0].sample_rate == LK_RATE
        got = frame_pcm(e.frames)
        if e.type == SOS:
            assert e.speaking
            assert 0.05 <= e.speech_duration < 0.05 + 2 * WIN_S
            # prefix padding (<= 0.5 s) + the speech so far, ending now
            assert e.speech_duration <= got.size / LK_RATE <= 0.5 + e.speech_duration + 1e-6
            end = round(e.timestamp * LK_RATE)
            np.testing.assert_array_equal(got, speech_pcm[end - got.size : end])
        else:
            assert not e.speaking
            assert 0.55 <= e.silence_duration < 0.55 + WIN_S + 1e-9
            assert e.speech_duration > 0.05
            # prefix padding + the utterance + a short pad (not the whole silence)
            dur = got.size / LK_RATE
            assert e.speech_duration <= dur <= e.speech_duration + 0.5 + 0.05
            speech_end = e.timestamp - e.silence_duration
            start = round((speech_end + 0.03) * LK_RATE) - got.size
            np.testing.assert_array_equal(got, speech_pcm[start : start + got.size])

    # INFERENCE_DONE reports the state after its window (the window that starts speech
    # already says speaking=True); start/end events follow the window that caused them
    speaking = False
    for i, e in enumerate(events):
        if e.type == INF:
            caused = [
                x.type
                for x in events[i + 1 : i + 3]
                if x.type != INF and x.samples_index == e.samples_index
            ]
            assert e.speaking == (caused[-1] == SOS if caused else speaking)
        else:
            assert events[i - 1].samples_index == e.samples_index
            speaking = e.type == SOS
    assert speaking is True  # the recording ends mid-utterance: no EOS at end of input


def test_same_decisions_as_the_core(speech_pcm, ami_pcm):
    for pcm in (speech_pcm, ami_pcm):
        vad = caesura.VAD.load()
        frames = to_frames(pcm)
        events = run(collect(vad, frames))
        core = VADSession(
            vad.core_model,
            sample_rate=LK_RATE,
            options=vad._opts.segmenter_options(),
            window_events=True,
            keep_audio=False,
        )
        core_events = []
        for f in frames:
            core_events += core.feed(np.frombuffer(f.data, dtype=np.int16))
        windows = [e for e in core_events if e.kind == "window"]
        inf = [e for e in events if e.type == INF]
        assert len(inf) == len(windows)
        np.testing.assert_array_equal(
            np.array([e.probability for e in inf], dtype=np.float32),
            np.array([w.probability for w in windows], dtype=np.float32),
        )
        assert [(e.speaking, e.raw_accumulated_speech) for e in inf] == [
            (w.speaking, w.raw_speech_s) for w in windows
        ]
        ours = [(e.type, e.samples_index) for e in speech_events(events)]
        theirs = [
            (SOS if e.kind == "speech_start" else EOS, e.detected_sample)
            for e in core_events
            if e.kind != "window"
        ]
        assert ours == theirs


def test_close_to_the_silero_plugin_on_the_same_audio(speech_pcm):
    silero = pytest.importorskip("livekit.plugins.silero")
    if tuple(int(x) for x in silero.__version__.split(".")[:2]) < (1, 8):
        pytest.skip(f"livekit-plugins-silero {silero.__version__} ships an older Silero model")
    frames = to_frames(speech_pcm)
    ours = speech_events(run(collect(caesura.VAD.load(), frames)))
    theirs = speech_events(run(collect(silero.VAD.load(), frames)))
    assert [e.type for e in ours] == [e.type for e in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert abs(a.timestamp - b.timestamp) <= 0.1
        assert abs(a.speech_duration - b.speech_duration) <= 0.1


# ---- flush, close, options -------------------------------------------------------------


def test_flush_is_a_hard_boundary(speech_pcm):
    vad = caesura.VAD.load()
    first = to_frames(speech_pcm[: LK_RATE * 1])  # speech starts at ~0.03 s, still going at 1 s
    silence = to_frames(np.zeros(LK_RATE * 2, dtype=np.int16))
    again = to_frames(speech_pcm[: LK_RATE * 3])
    events = run(collect(vad, [*first, "flush", *silence, *again]))
    before = [e for e in events if e.type == SOS][:1]
    assert before
    assert before[0].timestamp < 0.2
    # the clock restarts after the flush: find where samples_index drops back to one window
    idx = [e.samples_index for e in events if e.type == INF]
    restarts = [i for i in range(1, len(idx)) if idx[i] <= idx[i - 1]]
    assert len(restarts) == 1
    k = restarts[0]
    assert idx[k] == WIN
    after_flush = events[[i for i, e in enumerate(events) if e.type == INF][k] :]
    before_flush = events[: len(events) - len(after_flush)]
    # no END_OF_SPEECH for the utterance cut by the flush, and none during the silence
    assert [e.type for e in speech_events(before_flush)] == [SOS]
    s = speech_events(after_flush)
    assert s
    assert s[0].type == SOS
    # the new utterance starts 2 s (of silence) after the flush, on the restarted clock
    assert 2.0 < s[0].timestamp < 2.2
    # its frames hold no audio from before the flush: prefix padding is silence (zeros)
    got = frame_pcm(s[0].frames)
    pad = got.size - round(s[0].speech_duration * LK_RATE)
    assert pad > 0
    assert not got[: pad - LK_RATE // 10].any()


def test_aclose_mid_stream_releases_everything(speech_pcm):
    async def main():
        vad = caesura.VAD.load()
        stream = vad.stream()
        for f in to_frames(speech_pcm[: LK_RATE * 2]):
            stream.push_frame(f)
        first = await stream.__anext__()
        await stream.aclose()
        with pytest.raises(RuntimeError):
            stream.push_frame(to_frames(speech_pcm[:1200])[0])
        core = stream._core
        for _ in range(100):  # the batcher closes it after the batch in flight
            if core is None or core.closed:
                break
            await asyncio.sleep(0.01)
        return first, core

    first, core = run(main())
    assert first.type == INF
    assert core is not None
    assert core.closed


def test_update_options_reaches_live_streams(speech_pcm):
    vad = caesura.VAD.load()
    frames = to_frames(speech_pcm)
    baseline = speech_events(run(collect(vad, frames)))
    changed = {"done": False}

    def on_event(ev: VADEvent, stream: caesura.VADStream) -> None:
        if ev.type == SOS and not changed["done"]:
            changed["done"] = True
            vad.update_options(min_silence_duration=0.2)

    events = speech_events(run(collect(vad, frames, on_event)))
    assert vad.min_silence_duration == 0.2
    check_paired(events)
    ends = [e for e in events if e.type == EOS]
    assert ends
    assert all(0.2 <= e.silence_duration < 0.2 + WIN_S + 1e-9 for e in ends)
    assert len(events) > len(baseline)  # shorter pauses now end utterances
    # a bad update raises and changes nothing
    with pytest.raises(InvalidOptionError):
        vad.update_options(activation_threshold=2.0)
    assert vad._opts.activation_threshold == 0.5

    # the stream's own update_options
    def on_event2(ev: VADEvent, stream: caesura.VADStream) -> None:
        if ev.type == SOS:
            stream.update_options(min_silence_duration=1.0)

    events = speech_events(run(collect(vad, frames, on_event2)))
    assert all(e.silence_duration >= 1.0 for e in events if e.type == EOS)


def test_max_buffered_speech_splits_without_dropping_audio(speech_pcm):
    vad = caesura.VAD.load(max_buffered_speech=1.0)
    events = speech_events(run(collect(vad, to_frames(speech_pcm))))
    check_paired(events)
    ends = [e for e in events if e.type == EOS]
    assert len(ends) >= 4
    assert all(e.speech_duration <= 1.0 + WIN_S for e in ends)


def test_8khz_inference_from_24khz_frames(speech_pcm):
    vad = caesura.VAD.load(sample_rate=8000)
    events = run(collect(vad, to_frames(speech_pcm)))
    inf = [e for e in events if e.type == INF]
    assert [e.samples_index for e in inf[:3]] == [256, 512, 768]
    assert inf[0].frames[0].samples_per_channel == 768  # 32 ms at 24 kHz
    check_paired(events)
    assert len([e for e in events if e.type == SOS]) >= 2


def test_frames_of_another_rate_are_dropped_with_an_error(speech_pcm, caplog):
    vad = caesura.VAD.load()
    frames = to_frames(speech_pcm[:LK_RATE])
    odd = rtc.AudioFrame(
        data=np.zeros(480, dtype=np.int16).tobytes(),
        sample_rate=48000,
        num_channels=1,
        samples_per_channel=480,
    )
    with caplog.at_level(logging.ERROR, logger="livekit.plugins.caesura"):
        events = run(collect(vad, [*frames[:5], odd, *frames[5:]]))
    assert "another sample rate" in caplog.text
    inf = [e for e in events if e.type == INF]
    np.testing.assert_array_equal(
        frame_pcm([e.frames[0] for e in inf]), speech_pcm[: 768 * len(inf)]
    )


def test_stereo_frames_are_downmixed(speech_pcm):
    vad = caesura.VAD.load()
    mono = to_frames(speech_pcm[: LK_RATE * 3])
    stereo = []
    for f in mono:
        x = np.frombuffer(f.data, dtype=np.int16)
        stereo.append(
            rtc.AudioFrame(
                data=np.repeat(x, 2).tobytes(),
                sample_rate=LK_RATE,
                num_channels=2,
                samples_per_channel=x.size,
            )
        )
    a = speech_events(run(collect(vad, mono)))
    b = speech_events(run(collect(vad, stereo)))
    assert [(e.type, e.samples_index) for e in a] == [(e.type, e.samples_index) for e in b]


# ---- one batched model for every stream ------------------------------------------------


def test_concurrent_streams_share_one_batched_model(speech_pcm, ami_pcm):
    vad = caesura.VAD.load()
    other = caesura.VAD.load(min_silence_duration=0.3)  # another VAD, same shared model
    assert other.core_model is vad.core_model
    batcher = VADBatcher.for_model(vad.core_model)
    assert vad._batcher is batcher  # the VAD holds the process-wide batcher of its model
    recordings = [speech_pcm, ami_pcm[: speech_pcm.size]] * 4
    alone = [speech_events(run(collect(vad, to_frames(r)))) for r in recordings[:2]]

    async def main():
        before_batches, before_jobs = batcher.batches, batcher.requests
        results = await asyncio.gather(*(collect(vad, to_frames(r)) for r in recordings))
        return results, batcher.batches - before_batches, batcher.requests - before_jobs

    results, batches, jobs = run(main())
    for i, events in enumerate(results):
        got = [(e.type, e.samples_index, e.speech_duration) for e in speech_events(events)]
        want = [(e.type, e.samples_index, e.speech_duration) for e in alone[i % 2]]
        assert got == want
    # 8 streams fed at once: far fewer model calls than chunks
    assert jobs == sum(len(to_frames(r)) for r in recordings)
    assert batches <= jobs / 3


def test_inference_never_runs_on_the_event_loop(speech_pcm, monkeypatch):
    vad = caesura.VAD.load()
    model = vad.core_model
    threads: set[str] = set()
    original = type(model).infer_ready

    def spy(self, streams):
        threads.add(threading.current_thread().name)
        return original(self, streams)

    monkeypatch.setattr(type(model), "infer_ready", spy)
    events = run(collect(vad, to_frames(speech_pcm[: LK_RATE * 2])))
    assert any(e.type == INF for e in events)
    assert threads == {"caesura-vad-inference"}


def test_an_idle_stream_does_not_stall_the_others(speech_pcm):
    """Batches wait a little for chunks of other streams, never for long."""

    async def main():
        vad = caesura.VAD.load()
        idle = vad.stream()
        idle.push_frame(to_frames(speech_pcm[:1200])[0])  # attached, then silent forever
        await asyncio.sleep(0.05)
        frames = to_frames(speech_pcm[: LK_RATE * 2])
        start = asyncio.get_running_loop().time()
        events = await asyncio.wait_for(collect(vad, frames), timeout=30)
        elapsed = asyncio.get_running_loop().time() - start
        await idle.aclose()
        return events, elapsed, len(frames)

    events, elapsed, n_frames = run(main())
    inf = [e for e in events if e.type == INF]
    assert len(inf) >= 50
    # each chunk waited at most the batch delay (plus the work and scheduling noise)
    assert elapsed < n_frames * (MAX_BATCH_DELAY + 0.05)


def test_user_model_file_and_metrics(speech_pcm, tmp_path):
    bundled = importlib.resources.files("caesura.vad.assets") / "silero_vad.onnx"
    path = tmp_path / "my_silero.onnx"
    path.write_bytes(bundled.read_bytes())
    vad = caesura.VAD.load(onnx_file_path=path)
    metrics = []
    vad.on("metrics_collected", metrics.append)
    events = run(collect(vad, to_frames(speech_pcm[: LK_RATE * 3])))
    assert [e.type for e in speech_events(events)][:1] == [SOS]
    # LiveKit's base class reports VAD metrics about once per second of windows
    assert len(metrics) >= 2
    assert metrics[0].label == "livekit.plugins.caesura.vad.VAD"
    if getattr(metrics[0], "metadata", None) is not None:  # livekit-agents >= 1.3
        assert metrics[0].metadata.model_provider == "caesura"
    bad = tmp_path / "not_a_model.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(CaesuraError):
        caesura.VAD.load(onnx_file_path=bad)
    with pytest.raises(FileNotFoundError):
        caesura.VAD.load(onnx_file_path=tmp_path / "missing.onnx")


# ---- documented differences from livekit-plugins-silero, measured ---------------------------


def _differences():
    spec = importlib.util.spec_from_file_location(
        "plugin_differences", PLUGIN_ROOT.parent.parent / "benchmarks" / "plugin_differences.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_quotes_the_measured_differences_from_the_silero_plugin():
    """The README's 'What differs' timings are what benchmarks/plugin_differences.py
    measures: START_OF_SPEECH with min_speech_duration=0.5 on the AMI fixture (our count
    runs from the onset across short dips, the silero plugin's restarts), the starts with the
    defaults, and END_OF_SPEECH one window sooner on speech_16k.wav."""
    silero = pytest.importorskip("livekit.plugins.silero")
    if tuple(int(x) for x in silero.__version__.split(".")[:2]) < (1, 8):
        pytest.skip(f"livekit-plugins-silero {silero.__version__} ships an older Silero model")
    runs = _differences().livekit_differences()
    readme = " ".join((PLUGIN_ROOT / "README.md").read_text(encoding="utf-8").split())

    def times(events, kind):
        return [f"{t:.2f}" for k, t in events if k == kind]

    long = runs["ami, min_speech_duration=0.5"]
    ours, theirs = times(long["caesura"], "START")[0], times(long["silero"], "START")[0]
    assert float(ours) < float(theirs)  # the documented direction
    gap = round((float(theirs) - float(ours)) * 1000)
    assert (
        f"`START_OF_SPEECH` comes at {ours} s here and at {theirs} s with the silero plugin, "
        f"{gap} ms later" in readme
    )
    default = runs["ami, defaults"]
    assert times(default["caesura"], "START") == times(default["silero"], "START")
    assert f"with the default 0.05 s both start at {times(default['caesura'], 'START')[0]} s" in (
        readme
    )
    speech = runs["speech_16k, defaults"]
    assert times(speech["caesura"], "START") == times(speech["silero"], "START")
    ends_ours, ends_theirs = times(speech["caesura"], "END"), times(speech["silero"], "END")
    assert f"`END_OF_SPEECH` at {' s and '.join(ends_ours)} s here" in readme
    assert f"at {' s and '.join(ends_theirs)} s with the silero plugin" in readme


def test_8khz_frames_run_the_8khz_model_without_upsampling(speech_pcm):
    # the default sample_rate=16000 is the model rate for other input rates; 8 kHz frames
    # (telephony) run the 8 kHz model directly instead of being upsampled to 16 kHz
    x8 = resample(speech_pcm.astype(np.float32) / 32768, LK_RATE, 8000)
    pcm8 = np.round(x8 * 32767).astype(np.int16)
    vad = caesura.VAD.load()
    frames = [
        rtc.AudioFrame(
            data=pcm8[i : i + 160].tobytes(),
            sample_rate=8000,
            num_channels=1,
            samples_per_channel=pcm8[i : i + 160].size,
        )
        for i in range(0, pcm8.size, 160)
    ]
    events = run(collect(vad, frames))
    inf = [e for e in events if e.type == INF]
    assert [e.samples_index for e in inf[:3]] == [256, 512, 768]  # 8 kHz windows
    assert inf[0].frames[0].samples_per_channel == 256
    expected = vad.core_model.probabilities(pcm8, 8000)
    np.testing.assert_array_equal(
        np.array([e.probability for e in inf], dtype=np.float32), expected[: len(inf)]
    )
    check_paired(events)
    assert len([e for e in events if e.type == SOS]) >= 2
