"""caesura tune: metrics on scripted probabilities, the real model on the AMI fixture, the CLI."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from caesura.cli import main as cli_main
from caesura.errors import InvalidOptionError, LabelFileError, MissingDependencyError
from caesura.tune import (
    ScoringOptions,
    TuneGrid,
    TuneRecording,
    config_snippets,
    load_recordings,
    plot_tradeoff,
    recommend,
    sweep,
    tune,
)
from caesura.vad import Segmenter, SpeechEnd

SR = 16000
WIN = 512
WIN_S = WIN / SR  # 0.032 s


def scripted(speech: list[tuple[float, float]], duration: float, p: float = 0.9) -> np.ndarray:
    """Probabilities: ``p`` in windows whose start lies in a speech span, 0.02 elsewhere."""
    n = round(duration / WIN_S)
    starts = np.arange(n) * WIN_S
    probs = np.full(n, 0.02, dtype=np.float32)
    for a, b in speech:
        probs[(starts >= a - 1e-9) & (starts < b - 1e-9)] = p
    return probs


def rec(
    name: str, speech: list[tuple[float, float]], labels: list[tuple[float, float]], dur: float
) -> TuneRecording:
    return TuneRecording(
        name=name,
        probabilities=scripted(speech, dur),
        sample_rate=SR,
        duration_s=dur,
        regions=np.asarray(labels, dtype=np.float64),
    )


GRID1 = TuneGrid(
    thresholds=(0.5,), min_silence_ms=(320,), min_speech_ms=(64,), pre_roll_ms=(0, 320)
)


def test_perfect_detector_scores_perfectly() -> None:
    # speech on window boundaries so that decisions and labels agree exactly
    speech = [(0.96, 2.016), (4.0, 5.024)]
    r = rec("a", speech, speech, 8.0)
    res = sweep([r], GRID1, ScoringOptions(collar_s=0.0, clip_ms=100, min_gap_s=1.0))
    assert len(res) == 2  # one segmentation x two pre-rolls
    for s in res:
        assert s.frame_precision == pytest.approx(1.0)
        assert s.frame_recall == pytest.approx(1.0)
        assert s.segment_precision == 1.0
        assert s.segment_recall == 1.0
        assert s.false_triggers_per_min == 0.0
        assert s.cuts_per_min == 0.0
        assert s.segments == 2
        # the end is declared after exactly the hangover (320 ms = 10 windows)
        assert s.eos_latency_ms == pytest.approx(320.0)
        assert s.ends_detected == 1.0
        # the start is declared once 64 ms (two windows) of speech are heard
        assert s.start_latency_ms == pytest.approx(64.0)
        # the segment starts exactly at the labelled onset: nothing is clipped
        assert s.clip_rate == 0.0


def test_late_onset_is_clipped_without_pre_roll() -> None:
    # the model fires 160 ms after the labelled onset (a soft first syllable)
    r = rec("a", [(1.152, 2.016)], [(0.992, 2.016)], 5.0)
    res = {s.pre_roll_ms: s for s in sweep([r], GRID1, ScoringOptions(collar_s=0.0))}
    assert res[0.0].clip_rate == 1.0
    assert res[320.0].clip_rate == 0.0  # the pre-roll delivers the first syllable


def test_false_trigger_and_cut_are_counted() -> None:
    labels = [(1.0, 4.0)]
    # a 0.5 s pause inside the labelled speech (a cut with a 320 ms hangover) and a burst of
    # noise at 6 s (a false trigger)
    speech = [(0.992, 2.016), (2.528, 4.0), (6.016, 6.4)]
    r = rec("a", speech, labels, 10.0)
    res = sweep([r], GRID1, ScoringOptions(collar_s=0.25))[0]
    assert res.segments == 3
    assert res.false_triggers_per_min == pytest.approx(1 / (10.0 / 60))
    assert res.cuts_per_min == pytest.approx(1 / (3.0 / 60))
    assert res.segment_precision == pytest.approx(2 / 3)
    assert 0.0 < res.frame_precision < 1.0


def test_sweep_runs_the_real_segmenter() -> None:
    rng = np.random.default_rng(0)
    probs = np.clip(rng.normal(0.4, 0.3, 900), 0, 1).astype(np.float32)
    r = TuneRecording("x", probs, SR, 900 * WIN_S, np.asarray([[1.0, 10.0]]))
    grid = TuneGrid(thresholds=(0.5, 0.7), min_silence_ms=(100, 500), min_speech_ms=(50, 250))
    res = sweep([r], grid)
    assert len(res) == len(grid) == 8 * len(grid.pre_roll_ms)
    for s in res:
        seg = Segmenter(s.options(), keep_audio=False)
        events = seg.process(probs) + seg.flush()
        assert s.segments == sum(isinstance(e, SpeechEnd) for e in events)


def test_recommend_constraints_and_objectives() -> None:
    speech = [(0.992, 2.016), (2.4, 3.0), (5.024, 6.016)]
    r = rec("a", speech, [(0.992, 3.0), (5.024, 6.016)], 9.0)
    grid = TuneGrid(
        thresholds=(0.5,), min_silence_ms=(100, 300, 700), min_speech_ms=(64,), pre_roll_ms=(0,)
    )
    res = sweep([r], grid, ScoringOptions(collar_s=0.0))
    fast = recommend(res, "responsive")
    robust = recommend(res, "robust")
    assert fast.min_silence_ms <= robust.min_silence_ms
    budget = recommend(res, "robust", latency_budget_ms=350)
    assert budget.eos_latency_ms <= 350
    # an impossible budget is dropped rather than failing
    assert recommend(res, "balanced", latency_budget_ms=1.0) in res
    floor = recommend(res, "responsive", min_silence_floor_ms=250)
    assert floor.min_silence_ms >= 250
    with pytest.raises(InvalidOptionError, match="objective must be one of"):
        recommend(res, "fastest")
    with pytest.raises(InvalidOptionError, match="empty"):
        recommend([], "balanced")


def test_config_snippets_carry_the_setting() -> None:
    r = rec("a", [(0.992, 2.016)], [(0.992, 2.016)], 4.0)
    grid = TuneGrid(
        thresholds=(0.6,), min_silence_ms=(200,), min_speech_ms=(100,), pre_roll_ms=(400,)
    )
    best = sweep([r], grid)[0]
    snip = config_snippets(best)
    lk = snip["livekit"]
    assert "activation_threshold=0.6," in lk
    assert "deactivation_threshold=0.45," in lk
    assert "min_speech_duration=0.1," in lk
    # LiveKit's turn detector needs >= 0.25 s: clamped, with a comment
    assert "min_silence_duration=0.25,  # tuned: 0.2" in lk
    assert "prefix_padding_duration=0.4," in lk
    assert "confidence=0.6" in snip["pipecat"]
    assert "stop_secs=0.2" in snip["pipecat"]
    assert "--min-silence-ms 200" in snip["server"]
    assert "realtime_vad?threshold=0.6&min_speech_ms=100&min_silence_ms=200" in snip["server"]
    # the Python snippet is valid and builds the same options
    ns: dict[str, object] = {}
    exec(snip["python"], ns)
    assert ns["options"] == best.options()


def test_grid_validation() -> None:
    with pytest.raises(InvalidOptionError, match="threshold"):
        TuneGrid(thresholds=(1.5,))
    with pytest.raises(InvalidOptionError, match="at least one value"):
        TuneGrid(min_speech_ms=())
    with pytest.raises(InvalidOptionError, match=">= 0 ms"):
        TuneGrid(pre_roll_ms=(-100,))
    with pytest.raises(InvalidOptionError, match="collar_s"):
        ScoringOptions(collar_s=-1)


# ------------------------------------------------------------------ real model, AMI fixture


@pytest.fixture(scope="module")
def ami(fixtures_dir: Path) -> list[TuneRecording]:
    return load_recordings(
        [fixtures_dir / "ami_sample_16k.wav"], [fixtures_dir / "ami_sample.rttm"]
    )


SMALL = TuneGrid(
    thresholds=(0.3, 0.5, 0.7),
    min_silence_ms=(200, 550),
    min_speech_ms=(100, 250),
    pre_roll_ms=(0, 300),
)


def test_recordings_are_matched_to_rttm_uris_by_file_stem(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    # a folder with two recordings, an RTTM naming one of them (uri "sample") and another one
    shutil.copy(fixtures_dir / "ami_sample_16k.wav", tmp_path / "sample.wav")
    shutil.copy(fixtures_dir / "speech_16k.wav", tmp_path / "unlabelled.wav")
    rttm = tmp_path / "ref.rttm"
    rttm.write_text(
        (fixtures_dir / "ami_sample.rttm").read_text()
        + "SPEAKER elsewhere 1 0.0 1.0 <NA> <NA> s <NA> <NA>\n"
    )
    recs = load_recordings([tmp_path], [rttm])
    assert [r.name for r in recs] == ["sample"]  # the unlabelled file is skipped
    assert recs[0].regions.shape[0] > 3
    assert recs[0].duration_s == pytest.approx(30.0, abs=0.01)


def test_tune_on_the_ami_fixture(ami: list[TuneRecording]) -> None:
    # the fixture's longest labelled gap is < 1 s: score ends after >= 0.25 s gaps
    report = tune(ami, grid=SMALL, scoring=ScoringOptions(min_gap_s=0.25))
    assert len(report.results) == len(SMALL)
    for r in report.results:
        for v in (r.frame_precision, r.frame_recall, r.segment_precision, r.segment_recall):
            assert 0.0 <= v <= 1.0
    # higher thresholds never find more speech frames
    at = {
        r.threshold: r
        for r in report.results
        if r.min_silence_ms == 550 and r.min_speech_ms == 100 and r.pre_roll_ms == 300
    }
    assert at[0.3].frame_recall >= at[0.5].frame_recall >= at[0.7].frame_recall
    by_h = {
        r.min_silence_ms: r
        for r in report.results
        if r.threshold == 0.5 and r.min_speech_ms == 100 and r.pre_roll_ms == 0
    }
    # longer hangovers split less
    assert by_h[550].segments <= by_h[200].segments
    assert by_h[550].cuts_per_min <= by_h[200].cuts_per_min
    # pre-roll only ever reduces clipping
    for r0 in report.results:
        if r0.pre_roll_ms == 0:
            r3 = next(
                r
                for r in report.results
                if r.pre_roll_ms == 300
                and (r.threshold, r.min_silence_ms, r.min_speech_ms)
                == (r0.threshold, r0.min_silence_ms, r0.min_speech_ms)
            )
            assert r3.clip_rate <= r0.clip_rate
    assert report.recommended in report.results
    text = report.summary()
    assert "caesura.VAD.load(" in text
    assert "VADParams(" in text
    assert "caesura serve" in text
    d = report.to_dict()
    json.dumps(d)  # JSON-ready (no NaN objects)
    assert d["recommended"]["threshold"] == report.recommended.threshold
    md = report.markdown(plot_name="x.png")
    assert "![trade-off plot](x.png)" in md
    assert "| balanced |" in md


def test_plot(ami: list[TuneRecording], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    report = tune(ami, grid=SMALL)
    out = plot_tradeoff(report, tmp_path / "plots" / "tune.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib(
    ami: list[TuneRecording], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = tune(ami, grid=SMALL)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    with pytest.raises(MissingDependencyError, match=r"caesura\[bench\]") as info:
        plot_tradeoff(report, tmp_path / "x.png")
    assert info.value.extra == "bench"


# ------------------------------------------------------------------------ labels mismatches


def test_explicit_recording_without_labels(tmp_path: Path, fixtures_dir: Path) -> None:
    rttm = tmp_path / "two.rttm"
    rttm.write_text(
        "SPEAKER a 1 0.0 1.0 <NA> <NA> s <NA> <NA>\nSPEAKER b 1 0.0 1.0 <NA> <NA> s <NA> <NA>\n"
    )
    with pytest.raises(LabelFileError, match=r"no labels for recording .*ami_sample_16k\.wav"):
        load_recordings([fixtures_dir / "ami_sample_16k.wav"], [rttm])


def test_anonymous_labels_need_a_single_recording(tmp_path: Path, fixtures_dir: Path) -> None:
    lab = tmp_path / "l.txt"
    lab.write_text("1.0\t2.0\tspeech\n")
    with pytest.raises(LabelFileError, match="can only label one recording"):
        load_recordings(
            [fixtures_dir / "ami_sample_16k.wav", fixtures_dir / "speech_16k.wav"], [lab]
        )


def test_missing_recording_and_no_labels(tmp_path: Path, fixtures_dir: Path) -> None:
    with pytest.raises(InvalidOptionError, match="recording not found"):
        load_recordings([tmp_path / "nope.wav"], [fixtures_dir / "ami_sample.rttm"])
    with pytest.raises(InvalidOptionError, match="no labels given"):
        load_recordings([fixtures_dir / "ami_sample_16k.wav"], [])


# --------------------------------------------------------------------------------------- CLI


def test_cli_tune_with_audacity_and_csv_labels(
    tmp_path: Path, fixtures_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the same reference in the two uri-less formats, for the one recording given
    rttm = [ln.split() for ln in (fixtures_dir / "ami_sample.rttm").read_text().splitlines()]
    spans = [(float(f[3]), float(f[3]) + float(f[4])) for f in rttm]
    aud = tmp_path / "labels.txt"
    aud.write_text("".join(f"{a:.3f}\t{b:.3f}\tspeech\n" for a, b in spans))
    csv_ = tmp_path / "labels.csv"
    csv_.write_text("start,end\n" + "".join(f"{a},{b}\n" for a, b in spans))
    outs = []
    for lab in (aud, csv_):
        js = tmp_path / f"{lab.suffix[1:]}.json"
        code = cli_main(
            [
                "tune",
                str(fixtures_dir / "ami_sample_16k.wav"),
                "--labels",
                str(lab),
                "--thresholds",
                "0.4,0.6",
                "--min-silence-ms",
                "300",
                "--min-speech-ms",
                "100",
                "--pre-roll-ms",
                "0,300",
                "--json",
                str(js),
                "--no-progress",
                "--objective",
                "responsive",
            ]
        )
        assert code == 0
        outs.append(json.loads(js.read_text()))
    assert outs[0]["results"] == outs[1]["results"]
    assert outs[0]["objective"] == "responsive"
    printed = capsys.readouterr().out
    assert "recommended (responsive)" in printed
    assert "caesura.VAD.load(" in printed


def test_cli_tune_bad_and_missing_labels(
    tmp_path: Path, fixtures_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = str(fixtures_dir / "ami_sample_16k.wav")
    missing = tmp_path / "missing.rttm"
    assert cli_main(["tune", wav, "--labels", str(missing), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "labels file not found" in err
    assert str(missing) in err
    bad = tmp_path / "bad.csv"
    bad.write_text("start,end\n0.5,1.0\n2.0,oops\n")
    assert cli_main(["tune", wav, "--labels", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3: end 'oops' is not a number" in err
