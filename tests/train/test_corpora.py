"""Loaders of the corpora beyond Switchboard (``caesura.train.corpora``) on small files."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import pytest

from caesura.train import corpora
from caesura.train import switchboard as sb


def _tsv(path: Path, header: str, rows: list[tuple[object, ...]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(header + "\n")
        for r in rows:
            fh.write("\t".join(str(x) for x in r) + "\n")
    return path


def _ami_rows() -> list[tuple[object, ...]]:
    # A: one segment "so we need a remote" (word times fold pauses: each ends where the next
    # begins), 0.9 s between segments, then "that works"; B answers 0.5 s later.
    rows: list[tuple[object, ...]] = []
    t = 10.0
    for w in ["So", "we", "need", "a", "remote"]:
        rows.append(("M1", "A", round(t, 2), round(t + 0.4, 2), w, 1))
        t += 0.4
    t += 0.9
    for w in ["that", "works"]:
        rows.append(("M1", "A", round(t, 2), round(t + 0.3, 2), w, 2))
        t += 0.3
    t += 0.5
    for w in ["Mm-hmm", "okay", "let's", "do", "it"]:
        rows.append(("M1", "B", round(t, 2), round(t + 0.3, 2), w, 3))
        t += 0.3
    return rows


def test_ami_pauses_come_from_segment_boundaries_only(tmp_path: Path) -> None:
    path = _tsv(tmp_path / "ami.tsv.gz", "conv\tspeaker\tstart\tend\tword\tseg", _ami_rows())
    (conv,) = corpora.load_ami(path)
    assert [w.text for w in conv.words][:3] == ["so", "we", "need"]
    points = sb.decision_points(conv)
    assert [(p.label, round(p.duration, 2)) for p in points] == [("HOLD", 0.9), ("END", 0.5)]
    turns = sb.conversation_turns(conv)
    assert turns[points[0].turn_index].words[points[0].word_index].text == "remote"


def _e22_rows() -> list[tuple[object, ...]]:
    c = "call-1"
    return [
        (c, "0", 1.0, 1.3, "Good", ""),
        (c, "0", 1.3, 1.6, "morning", "."),
        (c, "0", 2.4, 2.7, "Revenue", ""),  # 0.8 s timed pause: a HOLD
        (c, "0", "", "", "grew", ""),  # untimed: no pause is read next to it
        (c, "0", 4.0, 4.2, "strongly", "."),
        (c, "0", 4.9, 5.1, "<inaudible>", ""),  # a dropped tag: its neighbours are not timed
        (c, "0", 5.3, 5.5, "Thanks", "."),
        (c, "1", 6.5, 6.8, "Thank", ""),  # 1.0 s after "Thanks" (tainted): no END
        (c, "1", 6.8, 7.0, "you", "."),
        (c, "0", 7.6, 7.9, "Next", ""),  # 0.6 s after "you": an END of speaker 1
        (c, "0", 7.9, 8.3, "question", "."),
    ]


def test_earnings22_reads_pauses_between_timed_words_only(tmp_path: Path) -> None:
    path = _tsv(tmp_path / "e22.tsv.gz", "conv\tspeaker\tstart\tend\tword\tpunct", _e22_rows())
    which = corpora.earnings22_split(["call-1"])
    (conv,) = corpora.load_earnings22(path, which["call-1"])
    grew = next(w for w in conv.words if w.text == "grew")
    assert not grew.timed
    assert 2.7 <= grew.start < grew.end <= 4.0  # interpolated between its timed neighbours
    labels = [(p.label, round(p.duration, 2)) for p in sb.decision_points(conv)]
    assert labels == [("HOLD", 0.8), ("END", 0.6)]
    (written,) = corpora.load_earnings22_written(path, which["call-1"])
    assert written[0] == ("0", "Good morning. Revenue grew strongly. Thanks.")
    assert written[1] == ("1", "Thank you.")


def test_earnings22_split_is_by_call_and_fixed() -> None:
    calls = [f"c{i:03d}" for i in range(125)]
    which = corpora.earnings22_split(list(reversed(calls)))
    counts = {s: sum(v == s for v in which.values()) for s in ("train", "val", "test")}
    assert counts == {"train": 75, "val": 25, "test": 25}
    assert which == corpora.earnings22_split(calls)


def test_commands_follow_the_sources_splits(tmp_path: Path) -> None:
    cmd = tmp_path / "eot" / "commands"
    cmd.mkdir(parents=True)
    snips = [{"text": f"play song number {i}", "split": "train"} for i in range(60)]
    snips += [{"text": "add this to my playlist", "split": "validate"}]
    clinc = [
        {"text": "what's the weather", "split": "train"},
        {"text": "set an alarm", "split": "val"},
        {"text": "how do i say hello in french", "split": "test"},
        {"text": "tell me a secret", "split": "oos_test"},
    ]
    for name, rows in (("snips", snips), ("clinc150", clinc)):
        with gzip.open(cmd / f"{name}.jsonl.gz", "wt") as fh:
            fh.write("".join(json.dumps(r) + "\n" for r in rows))
    held = {r["text"] for r in snips[:60] if zlib.crc32(r["text"].encode()) % 10 == 0}
    assert held  # the hash holds some out
    val = corpora.load_commands(tmp_path, "val")
    train = corpora.load_commands(tmp_path, "train")
    test = corpora.load_commands(tmp_path, "test")
    assert set(val) == held | {"set an alarm"}
    assert not set(train) & set(val)
    assert set(test) == {
        "add this to my playlist",
        "how do i say hello in french",
        "tell me a secret",
    }
    with pytest.raises(KeyError):
        corpora.load_commands(tmp_path, "dev")


def test_short_answers_pair_a_complete_and_an_unfinished_reply() -> None:
    dialogues = [
        [("user", "book a table"), ("agent", "For how many people?"), ("user", "two")],
        [("user", "hi"), ("agent", "Hello.")],  # no question: no example
    ]
    items = corpora.short_answer_eval(dialogues, max_items=None, seed=0)
    assert [y for _, y in items] == [1, 0]
    (ctx1, _), (ctx0, _) = items
    assert ctx1[:-1] == ctx0[:-1] == dialogues[0][:2]
    assert ctx1[-1][1] in corpora.SHORT_COMPLETE
    assert ctx0[-1][1] in corpora.SHORT_UNFINISHED
    assert not set(corpora.SHORT_COMPLETE) & set(corpora.SHORT_UNFINISHED)
