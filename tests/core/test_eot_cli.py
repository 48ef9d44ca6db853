"""``caesura eot``: the bundled end-of-turn model scored from the command line."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from caesura import cli
from caesura.eot import EndOfTurnModel


@pytest.fixture(scope="module")
def model():
    return EndOfTurnModel.load()


MAIN = "import sys; from caesura.cli import main; sys.exit(main())"


def records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_texts_match_predict_and_order_complete_above_truncated(model, capsys):
    texts = ["i want to book a table for", "i want to book a table for four"]
    assert cli.main(["eot", *texts]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(None, 2)[2] for line in lines] == texts
    probs = [float(line.split()[0]) for line in lines]
    expected = [model.predict([{"role": "user", "content": t}]) for t in texts]
    assert probs == pytest.approx(expected, abs=5e-4)
    assert probs[0] < probs[1]
    threshold = model.unlikely_threshold("en")
    verdicts = [line.split()[1] for line in lines]
    assert verdicts == ["unlikely" if p < threshold else "possible" for p in expected]
    assert verdicts[0] == "unlikely"


def test_agent_turn_is_read_before_each_text(model, capsys):
    assert cli.main(["eot", "--agent", "how many people?", "four", "-f", "jsonl"]) == 0
    (rec,) = records(capsys.readouterr().out)
    with_agent = model.predict(
        [{"role": "assistant", "content": "how many people?"}, {"role": "user", "content": "four"}]
    )
    alone = model.predict([{"role": "user", "content": "four"}])
    assert rec["probability"] == pytest.approx(with_agent, abs=1e-6)
    assert abs(with_agent - alone) > 1e-3  # the agent's question changed the score
    assert rec["threshold"] == pytest.approx(model.unlikely_threshold("en"))
    assert rec["unlikely"] is (with_agent < rec["threshold"])


def test_pending_and_threshold_options(model, capsys):
    text = "i want to book a table for"
    assert cli.main(["eot", "--pending", "--threshold", "0.3", "-f", "jsonl", text]) == 0
    (rec,) = records(capsys.readouterr().out)
    pending = model.predict([{"role": "user", "content": text}], words_pending=True)
    assert rec["probability"] == pytest.approx(pending, abs=1e-6)
    assert rec["threshold"] == 0.3
    assert rec["unlikely"] is (pending < 0.3)


def test_jsonl_file_scores_good_lines_and_names_bad_ones(model, tmp_path, capsys):
    lines = [
        json.dumps({"id": "a", "text": "yes that is right"}),
        "not json",
        json.dumps(
            [
                {"role": "assistant", "content": "anything else?"},
                {"role": "user", "content": "no thanks"},
            ]
        ),
        json.dumps({"id": "d", "turns": []}),
        "",
        json.dumps({"id": "e", "text": "hola", "language": "es"}),
        json.dumps({"something": 1}),
        json.dumps(42),
        json.dumps({"id": "h", "turns": [{"role": "user", "content": "okay"}], "language": "en"}),
    ]
    path = tmp_path / "dialogues.jsonl"
    body = "\n".join(lines).encode() + b'\n{"text": "caf\xe9"}\n'  # line 10: Latin-1, not UTF-8
    path.write_bytes(body)
    assert cli.main(["eot", "--jsonl", str(path), "-f", "jsonl"]) == 1
    out, err = capsys.readouterr()
    recs = records(out)
    # one output line per input line, in order, errors included: outputs join to inputs
    assert [r["line"] for r in recs] == list(range(1, 11))
    assert [r.get("id") for r in recs] == ["a", None, None, "d", None, "e", None, None, "h", None]
    assert ["error" in r for r in recs] == [0, 1, 0, 1, 1, 1, 1, 1, 0, 1]
    assert recs[0]["probability"] == pytest.approx(
        model.predict([{"role": "user", "content": "yes that is right"}]), abs=1e-6
    )
    assert "probability" in recs[2]
    assert recs[1]["error"].startswith("not valid JSON")
    assert recs[4]["error"] == "blank line: nothing to score"
    assert "line 2: not valid JSON" in err
    assert "line 4: no turns to score" in err
    assert "line 5: blank line" in err
    assert "line 6: the end-of-turn model was trained for ['en'] only, not 'es'" in err
    assert "line 7: an object needs 'turns'" in err
    assert "line 8: expected a JSON array of turns or an object, got int" in err
    assert "line 10: not UTF-8 text" in err
    assert "7 of 10 input(s) could not be scored" in err


def test_jsonl_output_lines_join_to_input_lines(tmp_path, capsys):
    inputs = [{"id": i, "text": t} for i, t in enumerate(["sure", "", "see you", "   "])]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in inputs), encoding="utf-8")
    assert cli.main(["eot", "--jsonl", str(path), "-f", "jsonl"]) == 1
    recs = records(capsys.readouterr().out)
    assert len(recs) == len(inputs)
    for n, (given, got) in enumerate(zip(inputs, recs, strict=True), 1):
        assert got["line"] == n
        assert got["id"] == given["id"]
        assert ("error" in got) is (not given["text"].strip())


def test_jsonl_from_stdin(model, monkeypatch, capsys):
    stdin = io.TextIOWrapper(io.BytesIO(b'{"text": "thank you so much"}\n'), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    assert cli.main(["eot", "--jsonl", "-"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    p = model.predict([{"role": "user", "content": "thank you so much"}])
    assert float(line.split()[0]) == pytest.approx(p, abs=5e-4)
    assert line.endswith("thank you so much")


def test_empty_text_is_reported_and_others_scored(capsys):
    assert cli.main(["eot", "okay", "   "]) == 1
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1
    assert "TEXT 2: the user's turn is empty" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eot"], "nothing to score"),
        (["eot", "x", "--jsonl", "-"], "not both"),
        (["eot", "--agent", "hi", "--jsonl", "-"], "--agent applies to TEXT"),
        (["eot", "--threshold", "1.5", "x"], "--threshold must be in [0, 1]"),
        (["eot", "--language", "fr", "bonjour"], "trained for ['en'] only, not 'fr'"),
        (["eot", "--model", "/no/such/model", "x"], "model folder not found"),
    ],
)
def test_bad_usage_exits_2_with_the_reason(argv, message, capsys):
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message in err


def test_unreadable_jsonl_path(tmp_path, capsys):
    missing = tmp_path / "missing.jsonl"
    assert cli.main(["eot", "--jsonl", str(missing)]) == 2
    assert f"cannot read {missing}" in capsys.readouterr().err


def test_a_reader_that_goes_away_stops_it_quietly(tmp_path):
    # ~150 kB of scores: more than a pipe holds, so the writer meets the closed pipe
    source = tmp_path / "many.jsonl"
    source.write_text(
        "".join(json.dumps({"text": f"number {i}"}) + "\n" for i in range(5000)), encoding="utf-8"
    )
    with source.open("rb") as stdin:
        proc = subprocess.Popen(
            [sys.executable, "-c", MAIN, "eot", "--jsonl", "-"],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
        )
        out, err = proc.stdout, proc.stderr
        assert out is not None
        assert err is not None
        first = out.readline()  # one score, then the reader goes away (like `| head -1`)
        out.close()
        assert proc.wait(timeout=300) == 141
        message = err.read().decode()
    assert first.decode().rstrip().endswith("number 0")
    assert "Traceback" not in message
    assert "BrokenPipeError" not in message
