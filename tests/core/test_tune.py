"""caesura tune: metrics on scripted probabilities, the real model on the AMI fixture, the CLI."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from caesura.cli import main as cli_main
from caesura.errors import InvalidOptionError, LabelFileError, MissingDependencyError
from caesura.tune import (
    DecisionPoints,
    ScoringOptions,
    TuneGrid,
    TuneRecording,
    _panels,
    config_snippets,
    decision_points,
    load_recordings,
    plot_tradeoff,
    recommend,
    sweep,
    tune,
)
from caesura.vad import Segmenter, SegmenterOptions, SpeechEnd

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
    with pytest.raises(InvalidOptionError, match="min_onsets"):
        ScoringOptions(min_onsets=-1)
    with pytest.raises(InvalidOptionError, match="min_end_points"):
        ScoringOptions(min_end_points=2.5)  # type: ignore[arg-type]


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


#: score every setting, however few decision points the labels have
ANY_LABELS = ScoringOptions(min_onsets=0, min_end_points=0)


def test_tune_on_the_ami_fixture(ami: list[TuneRecording]) -> None:
    # the fixture's longest labelled gap is < 1 s: score ends after >= 0.25 s gaps
    report = tune(
        ami, grid=SMALL, scoring=ScoringOptions(min_gap_s=0.25, min_onsets=0, min_end_points=0)
    )
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
    report = tune(ami, grid=SMALL, scoring=ANY_LABELS)
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


# ------------------------------------------------------- what the labels can and cannot support


def test_tune_holds_what_the_ami_fixture_cannot_measure(ami: list[TuneRecording]) -> None:
    # 30 s, four labelled onsets and no labelled gap of 1 s: every metric reads 1.000, so the
    # sweep used to "recommend" a 100 ms hangover and no pre-roll from nothing
    assert decision_points(ami) == DecisionPoints(onsets=4, end_points=0)
    report = tune(ami, latency_budget_ms=400)
    assert report.points == DecisionPoints(onsets=4, end_points=0)
    assert list(report.held) == ["threshold", "min_silence_ms", "min_speech_ms", "pre_roll_ms"]
    assert "4 onset(s)" in report.held["pre_roll_ms"]
    assert "0 end-of-speech point(s)" in report.held["min_silence_ms"]
    assert report.tuned == []
    # left at caesura's defaults, in the report and in the paste-ready configuration
    assert report.recommended.options() == SegmenterOptions(speech_pad_ms=30.0)
    for best in report.best_per_objective().values():
        assert best == report.recommended
    text = report.summary()
    assert "decision points: 4 onset(s), 0 end-of-speech point(s)" in text
    assert "nothing could be tuned from these labels" in text
    assert "--min-onsets" in text
    assert "--min-ends" in text
    assert "activation_threshold=0.3," in text
    assert "min_silence_ms=96," in text
    assert "# default: 0.096; LiveKit" in text
    assert text.count("# not tuned") == 4  # one per snippet
    # the unmeasurable latency budget is said once, not "dropped" once per objective
    assert text.count("latency budget 400 ms not applied") == 1
    assert "constraint dropped" not in text
    assert "end-of-speech latency budget" not in text  # not shown as applied
    d = report.to_dict()
    json.dumps(d)
    assert d["decision_points"] == {"onsets": 4, "end_points": 0}
    assert set(d["held"]) == set(report.held)
    assert "min_silence_ms=96," in report.markdown()


def test_tune_tunes_what_the_labels_support_and_holds_the_rest() -> None:
    # 25 onsets, but speech resumes 0.5 s after every pause: onsets support threshold, min
    # speech and pre-roll; nothing supports the hangover (no end of speech to measure)
    speech = [(1.024 + 1.504 * k, 2.016 + 1.504 * k) for k in range(25)]
    r = rec("a", speech, speech, speech[-1][1] + 0.512)
    report = tune([r], grid=SMALL, scoring=ScoringOptions(collar_s=0.0))
    assert report.points == DecisionPoints(onsets=25, end_points=0)
    assert list(report.held) == ["min_silence_ms"]
    assert report.tuned == ["threshold", "min_speech_ms", "pre_roll_ms"]
    assert report.grid.min_silence_ms == (SegmenterOptions().min_silence_ms,)
    assert {x.min_silence_ms for x in report.results} == {96.0}
    assert len({x.threshold for x in report.results}) == 3  # still swept
    # the plot has a panel per tuned setting and none for the hangover: no empty panel
    titles = [p["title"] for p in _panels(report)]
    assert len(titles) == 3
    assert not any("hangover sweep" in t for t in titles)


def test_tune_plot_with_held_settings(ami: list[TuneRecording], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    report = tune(ami, grid=SMALL, scoring=ScoringOptions(min_end_points=0, min_onsets=0))
    # min gap 1 s: no end-of-speech latency anywhere, so no hangover panel (it would be empty)
    assert [p["sweep"] for p in _panels(report)] == ["threshold", "pre_roll_ms", "min_speech_ms"]
    assert plot_tradeoff(report, tmp_path / "three.png").read_bytes()[:4] == b"\x89PNG"
    held = tune(ami, grid=SMALL)  # nothing tuned: nothing to plot
    assert _panels(held) == []
    with pytest.raises(InvalidOptionError, match="nothing to plot"):
        plot_tradeoff(held, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_cli_tune_says_what_it_cannot_tune_and_plots_nothing_empty(
    tmp_path: Path, fixtures_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "tune.png"
    argv = [
        "tune",
        str(fixtures_dir / "ami_sample_16k.wav"),
        "--labels",
        str(fixtures_dir / "ami_sample.rttm"),
        "--no-progress",
        "--plot",
        str(png),
    ]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "nothing could be tuned from these labels" in out
    assert "plot: not written" in out
    assert not png.exists()
    # with lower bars it tunes, and plots
    if importlib.util.find_spec("matplotlib") is not None:
        assert cli_main([*argv, "--min-onsets", "4", "--min-ends", "1"]) == 0
        out = capsys.readouterr().out
        assert "nothing could be tuned" not in out
        assert "hangover (min_silence_ms) 96 ms: the labels have 0 end-of-speech" in out
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_tune_prints_each_warning_once(
    fixtures_dir: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    argv = [
        "tune",
        str(fixtures_dir / "ami_sample_16k.wav"),
        "--labels",
        str(fixtures_dir / "ami_sample.rttm"),
        "--no-progress",
        *("--min-onsets", "0", "--min-ends", "0", "--min-gap", "0.25"),
        *("--latency-budget-ms", "1", "--thresholds", "0.3,0.5", "--min-speech-ms", "100"),
    ]
    assert cli_main(argv) == 0
    out, err = capsys.readouterr()
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    said = "no setting meets median end-of-speech latency <= 1 ms"
    assert (out + err).count(said) + sum(said in m for m in warned) == 1
    assert said in out


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
