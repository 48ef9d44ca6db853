"""Streaming segmenter on scripted probability sequences (no model)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from caesura.errors import InvalidAudioError, InvalidOptionError
from caesura.vad.segmenter import (
    EnergyGate,
    Segmenter,
    SegmenterOptions,
    SpeechEnd,
    SpeechStart,
    VADWindow,
    rms_dbfs,
    window_size_for,
)

W = 512  # window at 16 kHz


def run(probs, opts=None, *, sample_rate=16000, audio=True, flush=False, **kw):
    seg = Segmenter(opts or SegmenterOptions(), sample_rate=sample_rate, **kw)
    ws = seg.window_size
    a = np.arange(len(probs) * ws, dtype=np.float32) if audio else None
    ev = seg.process(np.asarray(probs, dtype=np.float64), a)
    if flush:
        ev += seg.flush()
    return seg, ev


def key(e):
    d = {f.name: getattr(e, f.name) for f in dataclasses.fields(e) if f.name != "audio"}
    audio = getattr(e, "audio", None)
    return (type(e).__name__, tuple(sorted(d.items())), None if audio is None else audio.tobytes())


def starts(ev):
    return [e for e in ev if isinstance(e, SpeechStart)]


def ends(ev):
    return [e for e in ev if isinstance(e, SpeechEnd)]


OPTS = SegmenterOptions(
    threshold=0.5, min_speech_ms=64, min_silence_ms=100, speech_pad_ms=30, pre_roll_ms=100
)


def test_basic_segment_timestamps_and_audio():
    probs = [0.0] * 5 + [0.9] * 10 + [0.0] * 10
    _, ev = run(probs, OPTS)
    assert [e.kind for e in ev] == ["speech_start", "speech_end"]
    s, e = ev
    assert s.start_sample == 5 * W
    assert s.detected_sample == 7 * W  # 2 windows = 64 ms of speech confirm it
    assert s.latency_s == pytest.approx(2 * W / 16000)
    assert s.audio_start_sample == 5 * W - 1600  # 100 ms pre-roll
    np.testing.assert_array_equal(s.audio, np.arange(5 * W - 1600, 7 * W, dtype=np.float32))
    assert e.start_sample == 5 * W
    assert e.end_sample == 15 * W
    assert e.reason == "silence"
    # first silent window starts at 15*W; 4 windows (128 ms) >= 100 ms end it
    assert e.detected_sample == 19 * W
    assert e.silence_duration_s == pytest.approx(4 * W / 16000)
    assert e.audio_end_sample == 15 * W + 480  # 30 ms pad
    np.testing.assert_array_equal(e.audio, np.arange(5 * W - 1600, 15 * W + 480, dtype=np.float32))
    assert e.duration_s == pytest.approx(10 * W / 16000)
    assert e.start_s == pytest.approx(5 * W / 16000)
    assert e.end_s == pytest.approx(15 * W / 16000)


def test_pre_roll_clipped_at_stream_start():
    _, ev = run([0.9] * 10 + [0.0] * 10, OPTS)
    assert ev[0].audio_start_sample == 0
    assert ev[0].audio[0] == 0.0
    assert ev[1].audio.size == 10 * W + 480


def test_pre_roll_zero_and_large():
    _, ev = run([0.0] * 40 + [0.9] * 10 + [0.0] * 10, OPTS.replace(pre_roll_ms=0))
    assert ev[0].audio_start_sample == 40 * W
    assert ev[0].audio[0] == 40 * W
    _, ev = run([0.0] * 40 + [0.9] * 10 + [0.0] * 10, OPTS.replace(pre_roll_ms=1000))
    assert ev[0].audio_start_sample == 40 * W - 16000
    assert ev[1].audio[0] == 40 * W - 16000


def test_post_padding_capped_by_observed_silence():
    opts = OPTS.replace(speech_pad_ms=500, min_silence_ms=100)
    _, ev = run([0.9] * 10 + [0.0] * 10, opts)
    e = ends(ev)[0]
    assert e.audio_end_sample == e.detected_sample == 14 * W
    opts = OPTS.replace(speech_pad_ms=0)
    _, ev = run([0.9] * 10 + [0.0] * 10, opts)
    assert ends(ev)[0].audio_end_sample == 10 * W


def test_min_speech_rejects_short_blip():
    opts = OPTS.replace(min_speech_ms=250)
    # 5 windows = 160 ms < 250 ms, then silence: nothing at all
    _, ev = run([0.0] * 3 + [0.9] * 5 + [0.0] * 20 + [0.9] * 9 + [0.0] * 10, opts)
    assert len(starts(ev)) == 1
    s = starts(ev)[0]
    assert s.start_sample == 28 * W
    assert s.detected_sample == 36 * W  # 8 windows = 256 ms >= 250 ms
    # min_speech 0 confirms on the first window
    _, ev = run([0.0, 0.9, 0.0, 0.0, 0.0, 0.0], OPTS.replace(min_speech_ms=0))
    assert [e.kind for e in ev] == ["speech_start", "speech_end"]
    assert ev[0].detected_sample == 2 * W


def test_min_speech_counts_speech_span_through_short_dip():
    # 2 speech windows, 1 silent, 2 speech: span 5 windows = 160 ms >= 150 ms
    opts = OPTS.replace(min_speech_ms=150, min_silence_ms=100)
    _, ev = run([0.9, 0.9, 0.0, 0.9, 0.9] + [0.0] * 10, opts)
    assert len(starts(ev)) == 1
    assert starts(ev)[0].detected_sample == 5 * W


def test_min_silence_hangover_bridges_short_pauses():
    probs = [0.9] * 10 + [0.0] * 3 + [0.9] * 10 + [0.0] * 10
    _, ev = run(probs, OPTS)  # 3 windows = 96 ms < 100 ms: one segment
    assert len(ends(ev)) == 1
    assert ends(ev)[0].end_sample == 23 * W
    _, ev = run(probs, OPTS.replace(min_silence_ms=90))  # 96 ms >= 90 ms: two segments
    assert [(e.start_sample, e.end_sample) for e in ends(ev)] == [(0, 10 * W), (13 * W, 23 * W)]


def test_hysteresis_band_keeps_current_state():
    opts = OPTS.replace(threshold=0.5)  # exit threshold 0.35
    # a value in the band does not start speech
    _, ev = run([0.4] * 20, opts)
    assert ev == []
    # in speech, the band keeps speaking (no pause at all)
    _, ev = run([0.9] * 3 + [0.4] * 20 + [0.0] * 5, opts)
    assert ends(ev)[0].end_sample == 23 * W
    # an open pause stays open through the band: it ends at the first silent window
    _, ev = run([0.9] * 3 + [0.2] + [0.4] * 3 + [0.0] * 5, opts)
    assert ends(ev)[0].end_sample == 3 * W
    assert ends(ev)[0].detected_sample == 7 * W
    # explicit neg_threshold
    _, ev = run([0.9] * 3 + [0.4] * 10, opts.replace(neg_threshold=0.45))
    assert ends(ev)[0].end_sample == 3 * W


def test_exit_threshold_default_and_clamp():
    assert SegmenterOptions(threshold=0.5).exit_threshold == pytest.approx(0.35)
    assert SegmenterOptions(threshold=0.1).exit_threshold == pytest.approx(0.01)
    assert SegmenterOptions(threshold=0.1, neg_threshold=0.0).exit_threshold == 0.0
    # threshold 0.1: 0.02 is still speech (>= 0.01), 0.005 is silence
    _, ev = run([0.5] * 3 + [0.02] * 10 + [0.005] * 5, OPTS.replace(threshold=0.1))
    assert ends(ev)[0].end_sample == 13 * W


def test_max_speech_splits_at_longest_pause():
    opts = OPTS.replace(max_speech_s=1.0, min_silence_ms=200)  # 1 s = 31.25 windows
    probs = [0.9] * 8 + [0.0] * 2 + [0.9] * 6 + [0.0] * 4 + [0.9] * 5 + [0.0] * 3 + [0.9] * 20
    probs += [0.0] * 10
    _seg, ev = run(probs, opts)
    kinds = [e.kind for e in ev]
    assert kinds == ["speech_start", "speech_end", "speech_start", "speech_end"]
    first_end = ev[1]
    assert first_end.reason == "max_speech"
    # pauses: [8,10) len 2, [16,20) len 4, [25,28) len 3 -> longest is [16,20)
    assert first_end.end_sample == 16 * W
    # decided when the segment grew past 1 s: end of window 32
    assert first_end.detected_sample == 32 * W
    cont = ev[2]
    assert cont.continued
    assert cont.start_sample == 20 * W
    assert cont.detected_sample == 32 * W
    last = ev[3]
    assert last.reason == "silence"
    assert (last.start_sample, last.end_sample) == (20 * W, 48 * W)
    # nothing dropped: the two segments plus the pause cover the whole speech
    assert first_end.start_sample == 0
    assert last.audio[0] == 20 * W - 1600  # pre-roll before the continuation


def test_max_speech_tie_takes_latest_pause():
    opts = OPTS.replace(max_speech_s=1.0, min_silence_ms=200)
    probs = [0.9] * 5 + [0.0] * 3 + [0.9] * 5 + [0.0] * 3 + [0.9] * 30
    _, ev = run(probs, opts)
    assert ends(ev)[0].end_sample == 13 * W
    assert starts(ev)[1].start_sample == 16 * W


def test_max_speech_without_pause_hard_cut_keeps_everything():
    opts = OPTS.replace(max_speech_s=0.5, min_silence_ms=100)  # 15.625 windows
    probs = [0.9] * 40 + [0.0] * 5
    _, ev = run(probs, opts)
    spans = [(e.start_sample, e.end_sample, e.reason) for e in ends(ev)]
    # each segment at most 0.5 s, contiguous, together cover all 40 windows
    assert spans[0] == (0, 15 * W, "max_speech")
    assert spans[1] == (15 * W, 30 * W, "max_speech")
    assert spans[2] == (30 * W, 40 * W, "silence")
    for s, e, _ in spans:
        assert e - s <= 8000
    assert all(s.continued for s in starts(ev)[1:])
    assert not starts(ev)[0].continued


def test_max_speech_not_triggered_by_trailing_pause():
    # 15 speech windows (< 0.5 s) then a long pause: the pause does not count as speech
    opts = OPTS.replace(max_speech_s=0.5, min_silence_ms=300)
    probs = [0.9] * 15 + [0.0] * 10 + [0.9] * 5 + [0.0] * 10
    _, ev = run(probs, opts)
    assert [(e.kind, getattr(e, "reason", None)) for e in ev] == [
        ("speech_start", None),
        ("speech_end", "silence"),
        ("speech_start", None),
        ("speech_end", "silence"),
    ]
    assert ev[1].end_sample == 15 * W


def test_flush_closes_open_segment():
    seg, ev = run([0.0] * 2 + [0.9] * 10, OPTS)
    assert [e.kind for e in ev] == ["speech_start"]
    out = seg.flush()
    assert len(out) == 1
    e = out[0]
    assert e.reason == "flush"
    assert (e.start_sample, e.end_sample, e.detected_sample) == (2 * W, 12 * W, 12 * W)
    assert e.audio_end_sample == 12 * W
    assert not seg.speaking
    assert seg.flush() == []
    # the clock keeps running after a flush
    ev = seg.process([0.9] * 3 + [0.0] * 5, np.zeros(8 * W, dtype=np.float32))
    assert ev[0].start_sample == 12 * W


def test_flush_in_pause_ends_at_pause_start():
    seg, _ev = run([0.9] * 10 + [0.0] * 2, OPTS)
    out = seg.flush()
    assert out[0].end_sample == 10 * W
    assert out[0].audio_end_sample == 10 * W + 480


def test_flush_drops_pending_segment():
    seg, ev = run([0.0] * 2 + [0.9], OPTS.replace(min_speech_ms=250))
    assert ev == []
    assert seg.flush() == []


def test_reset_forgets_everything():
    seg, _ = run([0.9] * 10, OPTS)
    assert seg.speaking
    assert seg.samples_processed == 10 * W
    seg.reset()
    assert not seg.speaking
    assert seg.samples_processed == 0
    ev = seg.process([0.9] * 3, np.ones(3 * W, dtype=np.float32))
    assert ev[0].start_sample == 0
    assert ev[0].audio.min() == 1.0  # no audio from before the reset


def test_random_chunkings_give_identical_events():
    rng = np.random.default_rng(1234)
    opts = OPTS.replace(max_speech_s=1.5, min_silence_ms=150, pre_roll_ms=300, min_speech_ms=100)
    n = 3000
    blocks = np.repeat(rng.random(n // 8), 8)[:n]
    probs = np.clip(blocks + rng.normal(0, 0.1, n), 0, 1)
    audio = rng.standard_normal(n * W).astype(np.float32)
    ref = Segmenter(opts, window_events=True)
    ref_ev = ref.process(probs, audio) + ref.flush()
    assert sum(isinstance(e, SpeechEnd) for e in ref_ev) > 20
    assert any(isinstance(e, SpeechEnd) and e.reason == "max_speech" for e in ref_ev)
    for _ in range(5):
        seg = Segmenter(opts, window_events=True)
        ev = []
        i = 0
        while i < n:
            k = int(rng.integers(0, 40))
            ev += seg.process(probs[i : i + k], audio[i * W : (i + k) * W])
            i += k
        ev += seg.flush()
        assert [key(e) for e in ev] == [key(e) for e in ref_ev]


def test_events_strictly_paired_and_ordered():
    rng = np.random.default_rng(7)
    probs = np.repeat(rng.random(600), rng.integers(1, 10, 600))
    _, ev = run(probs, OPTS.replace(max_speech_s=2.0), flush=True)
    open_ = False
    last = -1
    for e in ev:
        assert e.detected_sample >= last
        last = e.detected_sample
        if isinstance(e, SpeechStart):
            assert not open_
            open_ = True
        else:
            assert open_
            assert e.start_sample < e.end_sample <= e.detected_sample
            open_ = False
    assert not open_


def test_window_events_report_durations():
    probs = [0.0] * 2 + [0.9] * 4 + [0.0] * 5
    _, ev = run(probs, OPTS, window_events=True)
    wins = [e for e in ev if isinstance(e, VADWindow)]
    assert len(wins) == len(probs)
    assert [w.probability for w in wins] == probs
    assert wins[0].silence_samples == W
    assert wins[1].silence_samples == 2 * W
    assert wins[2].is_speech
    assert not wins[2].speaking
    assert wins[2].raw_speech_samples == W
    assert wins[3].speaking
    assert wins[3].speech_samples == 2 * W
    assert wins[5].raw_speech_samples == 4 * W
    assert not wins[6].is_speech
    assert wins[6].raw_silence_samples == W
    assert wins[6].silence_samples == W
    assert wins[6].speaking
    assert not wins[9].speaking  # 4 silent windows ended it
    assert wins[9].silence_duration_s == pytest.approx(4 * W / 16000)
    # the start event follows the window that confirmed it
    i = ev.index(starts(ev)[0])
    assert ev[i - 1] is wins[3]


def test_no_audio_events_carry_none():
    _, ev = run([0.9] * 5 + [0.0] * 5, OPTS, audio=False)
    assert all(e.audio is None for e in ev)
    _, ev = run([0.9] * 5 + [0.0] * 5, OPTS, keep_audio=False)
    assert all(e.audio is None for e in ev)
    assert ends(ev)[0].end_sample == 5 * W


def test_8khz_window_size():
    assert window_size_for(8000) == 256
    _, ev = run([0.0] + [0.9] * 10 + [0.0] * 10, OPTS, sample_rate=8000)
    assert ev[0].start_sample == 256
    assert ev[0].sample_rate == 8000
    assert ev[1].end_sample == 11 * 256
    assert ev[0].audio_start_sample == 0  # 100 ms pre-roll = 800 samples > 256


def test_update_options_on_live_stream():
    seg = Segmenter(OPTS)
    seg.process([0.9] * 5, np.zeros(5 * W, dtype=np.float32))
    seg.update_options(OPTS.replace(min_silence_ms=500))
    ev = seg.process([0.0] * 10, np.zeros(10 * W, dtype=np.float32))
    assert ends(ev) == []
    ev = seg.process([0.0] * 6, np.zeros(6 * W, dtype=np.float32))
    assert ends(ev)[0].end_sample == 5 * W


def test_long_idle_stream_memory_is_bounded():
    seg = Segmenter(OPTS)
    for _ in range(50):
        seg.process([0.0] * 100, np.zeros(100 * W, dtype=np.float32))
    assert seg._buf.slice(0, seg.samples_processed).size <= 1600 + 2 * W


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("threshold", 0.0, "threshold"),
        ("threshold", 1.5, "threshold"),
        ("threshold", math.nan, "threshold"),
        ("threshold", "0.5", "threshold"),
        ("neg_threshold", 0.7, "neg_threshold"),
        ("neg_threshold", -0.1, "neg_threshold"),
        ("min_speech_ms", -1, "min_speech_ms"),
        ("min_silence_ms", math.inf, "min_silence_ms"),
        ("speech_pad_ms", -5, "speech_pad_ms"),
        ("pre_roll_ms", True, "pre_roll_ms"),
        ("max_speech_s", 0, "max_speech_s"),
        ("max_speech_s", 0.05, "max_speech_s"),
    ],
)
def test_bad_options(field, value, match):
    with pytest.raises(InvalidOptionError, match=match):
        SegmenterOptions(**{field: value})


def test_bad_options_misc():
    with pytest.raises(InvalidOptionError, match="unknown"):
        SegmenterOptions().replace(min_speech_duration_ms=3)
    with pytest.raises(InvalidOptionError, match="sample_rate"):
        Segmenter(sample_rate=44100)
    with pytest.raises(InvalidOptionError, match="SegmenterOptions"):
        Segmenter({"threshold": 0.5})  # type: ignore[arg-type]
    assert SegmenterOptions(max_speech_s=math.inf).max_speech_s == math.inf


def test_bad_process_input():
    seg = Segmenter()
    with pytest.raises(InvalidAudioError, match="expected 1024"):
        seg.process([0.5, 0.5], np.zeros(1000, dtype=np.float32))
    with pytest.raises(InvalidAudioError, match="NaN"):
        seg.process([math.nan])
    with pytest.raises(InvalidAudioError, match=r"\[0, 1\]"):
        seg.process([1.5])
    with pytest.raises(InvalidAudioError, match="1-D"):
        seg.process([0.5], np.zeros((1, 512), dtype=np.float32))
    assert seg.samples_processed == 0


def test_energy_gate():
    assert rms_dbfs(np.zeros(512, dtype=np.float32)) == -math.inf
    assert rms_dbfs(np.ones(512, dtype=np.float32)) == pytest.approx(0.0)
    assert rms_dbfs(np.full(512, 0.1, dtype=np.float32)) == pytest.approx(-20.0, abs=1e-4)
    gate = EnergyGate(-60.0)
    assert gate.is_silent(np.zeros(512, dtype=np.float32))
    assert gate.is_silent(np.full(512, 1e-4, dtype=np.float32))  # -80 dBFS
    assert not gate.is_silent(np.full(512, 0.01, dtype=np.float32))  # -40 dBFS
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [np.zeros(1024), 0.1 * rng.standard_normal(1024), 1e-5 * rng.standard_normal(512)]
    ).astype(np.float32)
    flags = gate.silent_windows(x, 512)
    assert flags.tolist() == [True, True, False, False, True]
    assert flags.tolist() == [gate.is_silent(x[i * 512 : (i + 1) * 512]) for i in range(5)]
    with pytest.raises(InvalidOptionError, match="threshold_dbfs"):
        EnergyGate(10.0)
