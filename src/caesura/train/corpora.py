"""The corpora beyond Switchboard, in the shapes the recipe and benchmarks share (stdlib only).

* **AMI** meetings (``ami/{train,dev,eval}.tsv.gz``): word-timed, 3-5 speakers. Inside a
  transcriber segment each word ends where the next begins, so the only gaps are between
  segments — exactly where AMI's pauses are visible. They load as
  :class:`~caesura.train.switchboard.Conversation` and get their END / HOLD points from
  :func:`caesura.train.switchboard.decision_points` like Switchboard.
* **Earnings-22** calls (``earnings22/all.tsv.gz``): 72% of tokens word-timed. Untimed tokens
  get times interpolated between their timed neighbours and ``timed=False``, so no pause is
  read next to them. Split by call: :func:`earnings22_split`.
* **Earnings-21**, **Rev16** (``{earnings21,rev16}/all.jsonl.gz``): untimed turns of numbered
  speakers — text only (stage 1 and complete-vs-cut questions).
* **Commands** (``commands/{snips,clinc150}.jsonl.gz``): single complete assistant requests.
  Split by the sources' own splits: :data:`COMMAND_SPLITS`.
* **Short answers**: "yeah", "no thanks" after an agent's question are complete turns, a lone
  "and" or "so um" is not (:func:`short_answer_eval`).
"""

from __future__ import annotations

import gzip
import json
import random
import zlib
from collections.abc import Sequence
from pathlib import Path

from caesura.train.switchboard import (
    Conversation,
    Word,
    clean_word,
    load_conversations,
    read_word_rows,
)

__all__ = [
    "COMMAND_SPLITS",
    "SHORT_COMPLETE",
    "SHORT_UNFINISHED",
    "earnings22_split",
    "load_ami",
    "load_commands",
    "load_earnings22",
    "load_earnings22_written",
    "load_speaker_dialogues",
    "short_answer_eval",
]

# Our splits of the command sources: Clinc150's own train / val / test (in-scope and
# out-of-scope); SNIPS has train and validate only, so its validate set is our test and one in
# ten train requests (by a hash of the text) our validation.
COMMAND_SPLITS = {
    "train": {"snips": ("train",), "clinc150": ("train", "oos_train")},
    "val": {"snips": ("train-holdout",), "clinc150": ("val", "oos_val")},
    "test": {"snips": ("validate",), "clinc150": ("test", "oos_test")},
}


def load_ami(path: str | Path) -> list[Conversation]:
    """One ``ami/{split}.tsv.gz`` file → conversations (all speakers, cleaned, by start time):
    Switchboard's reader, since AMI's word times already put its gaps between segments."""
    return load_conversations(path)


def _is_tag(token: str) -> bool:
    return token.startswith("<") and token.endswith(">")


def earnings22_split(conv_ids: Sequence[str]) -> dict[str, str]:
    """Call id → ``"train"``, ``"val"`` or ``"test"``: in sorted order, every fifth call from
    the first is test, every fifth from the second is val (25 + 25 of 125), the rest train."""
    return {
        c: ("test", "val", "train", "train", "train")[i % 5]
        for i, c in enumerate(sorted(set(conv_ids)))
    }


def _earnings22_calls(path: str | Path, split: str) -> dict[str, list[tuple[str, ...]]]:
    """The rows ``(speaker, start, end, token, punct)`` of each call of one split."""
    per_conv: dict[str, list[tuple[str, ...]]] = {}
    for conv, spk, start, end, token, rest in read_word_rows(path):
        per_conv.setdefault(conv, []).append((spk, start, end, token, rest[0] if rest else ""))
    which = earnings22_split(list(per_conv))
    return {c: rows for c, rows in sorted(per_conv.items()) if which[c] == split}


def _interpolate(starts: list[float | None], ends: list[float | None]) -> None:
    """Fill each run of missing times evenly between the timed neighbours (in place)."""
    i = 0
    while i < len(starts):
        if starts[i] is not None:
            i += 1
            continue
        j = i
        while j < len(starts) and starts[j] is None:
            j += 1
        prev_end, next_start = ends[i - 1] if i else None, starts[j] if j < len(starts) else None
        lo = prev_end if prev_end is not None else next_start
        if lo is None:
            raise ValueError("no timed token to interpolate from")
        hi = max(next_start if next_start is not None else lo, lo)
        step = (hi - lo) / (j - i)
        for k in range(i, j):
            starts[k], ends[k] = lo + step * (k - i), lo + step * (k - i + 1)
        i = j


def load_earnings22(path: str | Path, split: str) -> list[Conversation]:
    """Earnings-22 calls of one :func:`earnings22_split` split as conversations.

    Tokens the aligner could not place get times interpolated between their timed neighbours
    in transcript order and ``timed=False``; so do the words next to a dropped tag other than
    ``<silence>`` (``<inaudible>``, ``<crosstalk>``: speech whose timing is unknown). A call with
    no timed token is left out."""
    out = []
    for conv, rows in _earnings22_calls(path, split).items():
        spks: list[str] = []
        texts: list[str] = []
        starts: list[float | None] = []
        ends: list[float | None] = []
        timed: list[bool] = []
        taint_next = False
        for spk, s, e, tok, _ in rows:
            text = clean_word(tok)
            if not text:
                if tok.strip().lower() != "<silence>":
                    taint_next = True
                    if timed:
                        timed[-1] = False
                continue
            has_time = bool(s) and bool(e)
            spks.append(spk)
            texts.append(text)
            starts.append(float(s) if has_time else None)
            ends.append(float(e) if has_time else None)
            timed.append(has_time and not taint_next)
            taint_next = False
        if all(t is None for t in starts):
            continue
        _interpolate(starts, ends)
        words = [
            Word(sp, float(st or 0.0), float(en or 0.0), t, tm)
            for sp, st, en, t, tm in zip(spks, starts, ends, texts, timed, strict=True)
        ]
        order = sorted(range(len(words)), key=lambda k: (words[k].start, k))
        out.append(Conversation(conv, tuple(words[k] for k in order)))
    return out


def load_earnings22_written(path: str | Path, split: str) -> list[list[tuple[str, str]]]:
    """Earnings-22 calls of one split as written turns ``[(speaker, text with punctuation)]``
    (maximal runs of one speaker in transcript order; tags dropped)."""
    out = []
    for rows in _earnings22_calls(path, split).values():
        turns: list[tuple[str, list[str]]] = []
        for spk, _s, _e, tok, punct in rows:
            if _is_tag(tok):
                continue
            if turns and turns[-1][0] == spk:
                turns[-1][1].append(tok + punct)
            else:
                turns.append((spk, [tok + punct]))
        out.append([(spk, " ".join(ws)) for spk, ws in turns])
    return out


def _drop_tags(text: str) -> str:
    return " ".join(w for w in text.split() if not _is_tag(w))


def load_speaker_dialogues(path: str | Path) -> list[list[tuple[str, str]]]:
    """Earnings-21 / Rev16 ``{"turns": [{"speaker": "0", "text"}]}`` → ``[(speaker, text)]``
    per file (tags such as ``<crosstalk>`` dropped)."""
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            turns = [(str(t["speaker"]), _drop_tags(t.get("text", ""))) for t in d["turns"]]
            turns = [(s, t) for s, t in turns if t]
            if turns:
                out.append(turns)
    return out


def load_commands(data: Path, split: str) -> list[str]:
    """The complete assistant requests of one of our :data:`COMMAND_SPLITS` (both sources)."""
    wanted = COMMAND_SPLITS[split]
    out = []
    for source in ("snips", "clinc150"):
        with gzip.open(
            data / "eot" / "commands" / f"{source}.jsonl.gz", "rt", encoding="utf-8"
        ) as fh:
            for line in fh:
                d = json.loads(line)
                s = d["split"]
                if source == "snips" and s == "train" and zlib.crc32(d["text"].encode()) % 10 == 0:
                    s = "train-holdout"
                if s in wanted[source]:
                    out.append(d["text"])
    return out


SHORT_COMPLETE = (
    "yes",
    "yeah",
    "yep",
    "no",
    "nope",
    "sure",
    "okay",
    "ok",
    "right",
    "correct",
    "exactly",
    "yes please",
    "no thanks",
    "no thank you",
    "yeah sure",
    "that's right",
    "sounds good",
    "that works",
    "perfect",
    "thanks",
    "thank you",
    "of course",
    "not really",
    "i think so",
    "i don't think so",
    "yeah that's fine",
    "that's it",
    "nothing else",
)
SHORT_UNFINISHED = (
    "and",
    "so",
    "but",
    "so um",
    "and uh",
    "um",
    "uh",
    "well",
    "yeah but",
    "yes and",
    "no but",
    "i mean",
    "i want",
    "it's",
    "the",
    "can you",
    "i think",
    "okay so",
    "because",
    "or",
    "if",
    "what about",
    "my",
    "yeah and",
)


def short_answer_eval(
    dialogues: Sequence[Sequence[tuple[str, str]]], *, max_items: int | None, seed: int
) -> list[tuple[list[tuple[str, str]], int]]:
    """Short user answers after a dialogue's agent question: ``(context, label)`` with label 1
    for a complete short answer (:data:`SHORT_COMPLETE`) and 0 for an unfinished start
    (:data:`SHORT_UNFINISHED`), one of each per question, the history as in the dialogue."""
    rng = random.Random(seed)
    cands = []
    for d in dialogues:
        for i, (role, text) in enumerate(d):
            if role == "agent" and text.rstrip().endswith("?"):
                cands.append(list(d[max(0, i - 3) : i + 1]))
    if max_items is not None and len(cands) > max_items:
        cands = rng.sample(cands, max_items)
    out: list[tuple[list[tuple[str, str]], int]] = []
    for hist in cands:
        out.append(([*hist, ("user", rng.choice(SHORT_COMPLETE))], 1))
        out.append(([*hist, ("user", rng.choice(SHORT_UNFINISHED))], 0))
    return out
