"""examples/turns_from_wav.py: a real WAV and a timed transcript through the engine."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "turns_from_wav.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("caesura_turns_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


def end_times(out: str) -> list[float]:
    return [float(m.group(1)) for m in re.finditer(r"^\s*([\d.]+)s\s+END OF TURN", out, re.M)]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_timeline_from_wav_and_transcript(fmt, fixtures_dir, tmp_path, capsys):
    lines = [(0.5, 2.0, "hello there"), (3.0, 5.5, "i would like to book a table for two")]
    if fmt == "text":
        path = tmp_path / "transcript.txt"
        body = "# start end text\n" + "".join(f"{a} {b} {t}\n" for a, b, t in lines)
        path.write_text(body)
    else:
        path = tmp_path / "transcript.json"
        path.write_text(json.dumps([{"start": a, "end": b, "text": t} for a, b, t in lines]))
    rc = load_example().main(
        [str(fixtures_dir / "speech_16k.wav"), str(path), "--scorer", "lexical"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "2 transcript lines" in out
    assert "speech started" in out
    assert "transcript (final): 'hello there'" in out
    assert "flush STT" in out
    ends = end_times(out)
    assert ends, out
    # every end of turn comes after the speech it ends, in audio-clock order
    assert ends == sorted(ends)
    assert ends[0] > 2.0


def test_bad_transcript_is_a_clear_error(fixtures_dir, tmp_path, capsys):
    path = tmp_path / "transcript.txt"
    path.write_text("0.5 not-a-time hello\n")
    with pytest.raises((SystemExit, ValueError)) as info:
        load_example().main([str(fixtures_dir / "speech_16k.wav"), str(path)])
    message = str(info.value) + capsys.readouterr().err
    assert "transcript.txt" in message or "line 1" in message
