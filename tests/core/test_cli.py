"""The ``caesura`` console script: ``caesura segment`` on files and folders under tmp_path."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import wave

import numpy as np
import pytest

from caesura import cli
from caesura.audio import read_audio, resample
from caesura.server.config import ServerConfig, StreamOptions
from caesura.vad.offline import TimestampOptions, speech_timestamps


@pytest.fixture(scope="module")
def speech(fixtures_dir):
    audio, sr = read_audio(fixtures_dir / "speech_16k.wav")
    return audio, sr


def write_wav(path, audio, sr):
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())


@pytest.fixture
def folder(tmp_path, speech):
    audio, sr = speech
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    write_wav(root / "a.wav", audio[: 6 * sr], sr)
    write_wav(root / "sub" / "b.WAV", audio[6 * sr :], sr)
    (root / "sub" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt junk that is not a wav")
    (root / "notes.txt").write_text("not audio")
    return root


def run_cli(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_readme_command_prints_segments(capsys, fixtures_dir, speech):
    rc, out, err = run_cli(capsys, "segment", str(fixtures_dir / "speech_16k.wav"))
    assert rc == 0, err
    doc = json.loads(out)
    (f,) = doc["files"]
    assert f["sample_rate"] == 16000
    assert f["duration_s"] == pytest.approx(12.0)
    audio, sr = speech
    expected = speech_timestamps(audio, sr)
    assert len(expected) >= 2
    assert [(s["start_sample"], s["end_sample"]) for s in f["segments"]] == [
        (e["start"], e["end"]) for e in expected
    ]
    assert f["segments"][0]["start"] == pytest.approx(expected[0]["start"] / sr, abs=1e-3)
    assert doc["options"]["threshold"] == 0.5
    assert doc["options"]["max_speech_duration_s"] is None  # inf is not JSON


def test_console_script_version():
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from caesura.cli import main; sys.exit(main())",
            "--version",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("caesura ")


def test_folder_with_corrupt_file_processes_the_others(capsys, folder):
    rc, out, err = run_cli(capsys, "segment", str(folder), "--no-progress")
    assert rc == 1
    assert "broken.wav" in err
    assert "1 of 3 input(s) failed" in err
    doc = json.loads(out)
    names = [f["path"].rsplit("/", 1)[-1] for f in doc["files"]]
    assert names == ["a.wav", "b.WAV", "broken.wav"]
    assert all(f["segments"] for f in doc["files"][:2])
    # the file that failed is listed with its error, not only reported on stderr
    broken = doc["files"][2]
    assert set(broken) == {"path", "error"}
    assert "corrupt WAV" in broken["error"]


def test_missing_path_reported(capsys, folder, tmp_path):
    rc, out, err = run_cli(capsys, "segment", str(folder / "a.wav"), str(tmp_path / "nope.wav"))
    assert rc == 1
    assert "nope.wav" in err
    assert "no such file" in err
    files = json.loads(out)["files"]
    assert [f["path"] for f in files] == [str(folder / "a.wav"), str(tmp_path / "nope.wav")]
    assert files[1] == {"path": str(tmp_path / "nope.wav"), "error": "no such file or directory"}


def test_csv_format(capsys, folder):
    rc, out, _ = run_cli(capsys, "segment", str(folder / "a.wav"), "--format", "csv")
    assert rc == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows
    assert set(rows[0]) == {"file", "start", "end", "start_sample", "end_sample", "sample_rate"}
    for r in rows:
        assert float(r["start"]) < float(r["end"])
        assert int(r["start_sample"]) < int(r["end_sample"]) <= 6 * 16000
        assert r["sample_rate"] == "16000"


def test_rttm_format_to_file(capsys, folder, tmp_path):
    target = tmp_path / "out" / "all.rttm"
    rc, out, _ = run_cli(
        capsys, "segment", str(folder), "-f", "rttm", "-o", str(target), "--no-progress"
    )
    assert rc == 1  # the broken file
    assert out == ""
    lines = target.read_text().splitlines()
    assert lines
    uris = set()
    for line in lines:
        parts = line.split()
        assert parts[0] == "SPEAKER"
        assert parts[2] == "1"
        assert float(parts[3]) >= 0
        assert float(parts[4]) > 0
        assert parts[7] == "speech"
        uris.add(parts[1])
    assert uris == {"a", "sub/b"}


def test_output_folder_one_file_per_input(capsys, folder, tmp_path):
    outdir = tmp_path / "segs"
    outdir.mkdir()
    rc, _, err = run_cli(capsys, "segment", str(folder), "-o", str(outdir))
    assert rc == 1
    assert (outdir / "a.json").is_file()
    assert (outdir / "sub" / "b.json").is_file()
    # the failed file's document holds its error (and no segments: it is not silence)
    (broken,) = json.loads((outdir / "sub" / "broken.json").read_text())["files"]
    assert "error" in broken
    assert "segments" not in broken
    doc = json.loads((outdir / "a.json").read_text())
    assert doc["files"][0]["segments"]
    # a progress bar (tqdm, or the plain one) went to stderr over the folder
    assert "3/3" in err or "100%" in err


def test_plain_progress_bar_without_tqdm(capsys, folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm -> ImportError
    rc, _, err = run_cli(capsys, "segment", str(folder))
    assert rc == 1
    assert "[" in err
    assert "3/3" in err


def test_vad_option_flags_change_result(capsys, folder):
    path = str(folder / "a.wav")
    _, out_default, _ = run_cli(capsys, "segment", path)
    _, out_strict, _ = run_cli(
        capsys,
        "segment",
        path,
        "--threshold",
        "0.9",
        "--min-speech-ms",
        "800",
        "--min-silence-ms",
        "500",
        "--speech-pad-ms",
        "0",
        "--max-speech-s",
        "1.5",
    )
    d = json.loads(out_default)["files"][0]["segments"]
    s = json.loads(out_strict)["files"][0]["segments"]
    assert d != s
    assert all(x["end_sample"] - x["start_sample"] <= 1.5 * 16000 for x in s)
    opts = json.loads(out_strict)["options"]
    assert opts["threshold"] == 0.9
    assert opts["max_speech_duration_s"] == 1.5


def test_compat_silero_flag(capsys, folder, speech):
    rc, out, _ = run_cli(capsys, "segment", str(folder / "a.wav"), "--compat", "silero")
    assert rc == 0
    audio, sr = read_audio(folder / "a.wav")
    ref = speech_timestamps(audio, sr, compat="silero")
    got = json.loads(out)["files"][0]["segments"]
    assert [(s["start_sample"], s["end_sample"]) for s in got] == [
        (r["start"], r["end"]) for r in ref
    ]


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--threshold", "1.5"], "threshold"),
        (["--min-silence-ms", "-3"], "min_silence_duration_ms"),
        (["--max-speech-s", "0"], "max_speech_duration_s"),
    ],
)
def test_bad_options_exit_2(capsys, folder, flags, match):
    rc, out, err = run_cli(capsys, "segment", str(folder / "a.wav"), *flags)
    assert rc == 2
    assert match in err
    assert out == ""


def test_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["segment"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["nonsense"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["segment", "x.wav", "--format", "xml"])
    assert exc.value.code == 2
    assert cli.main([]) == 2
    assert "segment" in capsys.readouterr().err


def test_flac_and_ogg_inputs(capsys, tmp_path, speech):
    sf = pytest.importorskip("soundfile")
    audio, sr = speech
    sf.write(tmp_path / "x.flac", audio[: 4 * sr], sr)
    sf.write(tmp_path / "y.ogg", audio[: 4 * sr], sr, format="OGG", subtype="VORBIS")
    rc, out, err = run_cli(capsys, "segment", str(tmp_path))
    assert rc == 0, err
    files = json.loads(out)["files"]
    assert [f["path"].rsplit("/", 1)[-1] for f in files] == ["x.flac", "y.ogg"]
    assert all(f["segments"] for f in files)


def test_other_sample_rate_reported_at_file_rate(capsys, tmp_path, speech):
    audio, sr = speech
    x = resample(audio[: 6 * sr], sr, 44100)
    write_wav(tmp_path / "hi.wav", x, 44100)
    rc, out, _ = run_cli(capsys, "segment", str(tmp_path / "hi.wav"))
    assert rc == 0
    f = json.loads(out)["files"][0]
    assert f["sample_rate"] == 44100
    ref = json.loads(run_cli(capsys, "segment", str(_write16(tmp_path, audio[: 6 * sr])))[1])
    for a, b in zip(f["segments"], ref["files"][0]["segments"], strict=True):
        assert a["start"] == pytest.approx(b["start"], abs=0.04)
        assert a["end"] == pytest.approx(b["end"], abs=0.04)


def _write16(tmp_path, audio):
    p = tmp_path / "ref16.wav"
    write_wav(p, audio, 16000)
    return p


def test_registry_is_extensible():
    assert "segment" in cli.COMMANDS
    assert cli.COMMANDS["segment"].module == "caesura.cli"


def test_output_folder_keeps_same_named_inputs_apart(capsys, tmp_path, speech):
    # a/x.wav and b/x.wav used to land in one out/x.csv holding b's rows only
    audio, sr = speech
    for sub, part in (("a", audio[: 6 * sr]), ("b", audio[6 * sr :])):
        (tmp_path / "in" / sub).mkdir(parents=True)
        write_wav(tmp_path / "in" / sub / "x.wav", part, sr)
    out = tmp_path / "out"
    a, b = tmp_path / "in" / "a" / "x.wav", tmp_path / "in" / "b" / "x.wav"
    rc, _, err = run_cli(capsys, "segment", "-f", "csv", "-o", f"{out}/", str(a), str(b))
    assert rc == 0, err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.csv")) == [
        "a/x.csv",
        "b/x.csv",
    ]
    for src in (a, b):
        rows = list(csv.DictReader(io.StringIO((out / src.parent.name / "x.csv").read_text())))
        assert rows
        assert {r["file"] for r in rows} == {str(src)}


def test_output_folder_two_folders_with_the_same_file_names(capsys, tmp_path, speech):
    audio, sr = speech
    for d in ("day1", "day2"):
        (tmp_path / d).mkdir()
        write_wav(tmp_path / d / "call.wav", audio[: 4 * sr], sr)
    out = tmp_path / "out"
    rc, _, err = run_cli(
        capsys, "segment", str(tmp_path / "day1"), str(tmp_path / "day2"), "-o", f"{out}/"
    )
    assert rc == 0, err
    assert (out / "day1" / "call.json").is_file()
    assert (out / "day2" / "call.json").is_file()


def test_output_folder_same_stem_different_formats(capsys, tmp_path, speech):
    sf = pytest.importorskip("soundfile")
    audio, sr = speech
    sf.write(tmp_path / "speech.flac", audio[: 4 * sr], sr)
    sf.write(tmp_path / "speech.ogg", audio[4 * sr : 8 * sr], sr, format="OGG", subtype="VORBIS")
    out = tmp_path / "out"
    rc, _, err = run_cli(
        capsys,
        "segment",
        str(tmp_path / "speech.flac"),
        str(tmp_path / "speech.ogg"),
        "-o",
        f"{out}/",
    )
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["speech.flac.json", "speech.ogg.json"]
    for name in ("flac", "ogg"):
        (f,) = json.loads((out / f"speech.{name}.json").read_text())["files"]
        assert f["path"].endswith(f"speech.{name}")


def test_output_folder_refuses_a_collision_before_writing(capsys, tmp_path, speech):
    # names differing only in case would collide on a case-insensitive file system
    audio, sr = speech
    write_wav(tmp_path / "Take.wav", audio[: 4 * sr], sr)
    write_wav(tmp_path / "take.wav", audio[4 * sr : 8 * sr], sr)
    out = tmp_path / "out"
    rc, _, err = run_cli(capsys, "segment", str(tmp_path), "-o", f"{out}/")
    assert rc == 2
    assert "would both be written to" in err
    assert "nothing was written" in err
    assert not out.exists()


def test_a_file_given_twice_is_segmented_once(capsys, folder, tmp_path):
    out = tmp_path / "out"
    rc, _, _ = run_cli(capsys, "segment", str(folder), str(folder / "a.wav"), "-o", f"{out}/")
    assert rc == 1  # the broken file
    assert (out / "a.json").is_file()
    assert not (out / "in").exists()


@pytest.mark.parametrize("with_soundfile", [True, False])
def test_text_file_named_wav_is_not_a_wav_file(capsys, tmp_path, monkeypatch, with_soundfile):
    if not with_soundfile:
        monkeypatch.setitem(sys.modules, "soundfile", None)
    notes = tmp_path / "notes.wav"
    notes.write_text("meeting notes, not audio\n")
    rc, out, err = run_cli(capsys, "segment", str(notes))
    assert rc == 1
    assert f"{notes}: not a WAV file: missing RIFF header" in err
    assert "soundfile" not in err
    assert "not a WAV file" in json.loads(out)["files"][0]["error"]


def test_mp3_named_or_found_in_a_folder_alike(capsys, tmp_path, speech):
    sf = pytest.importorskip("soundfile")
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3 support")
    audio, sr = speech
    (tmp_path / "calls").mkdir()
    mp3 = tmp_path / "calls" / "call.mp3"
    sf.write(mp3, audio[: 6 * sr], sr)
    rc_named, out_named, err = run_cli(capsys, "segment", str(mp3))
    assert rc_named == 0, err
    rc_found, out_found, err = run_cli(capsys, "segment", str(tmp_path / "calls"))
    assert rc_found == 0, err
    named, found = json.loads(out_named)["files"], json.loads(out_found)["files"]
    assert [f["path"] for f in found] == [str(mp3)]
    assert found == named
    assert named[0]["segments"]


def test_compat_silero_on_44k_suggests_the_cli_fix(capsys, tmp_path, speech):
    audio, sr = speech
    path = tmp_path / "hi.wav"
    write_wav(path, resample(audio[: 4 * sr], sr, 44100), 44100)
    rc, out, err = run_cli(capsys, "segment", str(path), "--compat", "silero")
    assert rc == 1
    assert "44100 Hz" in err
    assert "leave out --compat silero" in err
    assert "compat=None" not in err  # Python wording, not a flag the user can type
    assert "--compat silero" in json.loads(out)["files"][0]["error"]
    # and without the flag the same file is segmented
    assert run_cli(capsys, "segment", str(path))[0] == 0


def _help(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--help"])
    assert exc.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_segment_help_shows_the_defaults(capsys):
    text = _help(capsys, "segment")
    d = TimestampOptions()
    assert f"speech probability at which speech starts (default: {d.threshold:g})" in text
    assert f"(default: {d.min_speech_duration_ms:g})" in text
    assert f"(default: {d.min_silence_duration_ms:g})" in text
    assert f"(default: {d.speech_pad_ms:g})" in text
    assert "(default: no limit)" in text
    assert "(default: json)" in text
    assert "(default: None)" not in text
    assert "(default: False)" not in text


def test_serve_help_shows_the_defaults(capsys):
    text = _help(capsys, "serve")
    d, c = StreamOptions(), ServerConfig()
    for flag, value in [
        ("--threshold THRESHOLD", d.threshold),
        ("--min-speech-ms MIN_SPEECH_MS", d.min_speech_ms),
        ("--min-silence-ms MIN_SILENCE_MS", d.min_silence_ms),
        ("--speech-pad-ms SPEECH_PAD_MS", d.speech_pad_ms),
        ("--max-speech-s MAX_SPEECH_S", d.max_speech_s),
        ("--eot-threshold EOT_THRESHOLD", d.eot_threshold),
        ("--max-sessions MAX_SESSIONS", c.max_sessions),
        ("--max-batch MAX_BATCH", c.max_batch),
    ]:
        after = text.rsplit(flag, 1)[1].split(" --", 1)[0]  # the option's help, not usage
        assert f"(default: {value:g})" in after, (flag, after)
    assert "(default: info)" in text
    assert "(default: None)" not in text
