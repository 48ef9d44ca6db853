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

from caesura.train.switchboard import Conversation, Word, clean_word

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


def _words(path: Path, *, extra: int) -> dict[str, list[tuple[str, str, str, str, list[str]]]]:
    per_conv: dict[str, list[tuple[str, str, str, str, list[str]]]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        header = fh.readline()
        if not header.startswith("conv\tspeaker\tstart\tend\tword"):
            raise ValueError(f"{path}: unexpected header {header!r}")
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 5 + extra:
                continue
            conv, spk, start, end, token, *rest = parts
            per_conv.setdefault(conv, []).append((spk, start, end, token, rest))
    return per_conv


def load_ami(path: str | Path) -> list[Conversation]:
    """One ``ami/{split}.tsv.gz`` file → conversations (all speakers, cleaned, by start time)."""
    out = []
    for conv, rows in sorted(_words(Path(path), extra=1).items()):
        words = [
            Word(spk, float(s), float(e), text)
            for spk, s, e, tok, _ in rows
            if (text := clean_word(tok))
        ]
        out.append(Conversation(conv, tuple(sorted(words, key=lambda w: (w.start, w.end)))))
    return out


def earnings22_split(conv_ids: Sequence[str]) -> dict[str, str]:
    """Call id → ``"train"``, ``"val"`` or ``"test"``: in sorted order, every fifth call from
    the first is test, every fifth from the second is val (25 + 25 of 125), the rest train."""
    return {
        c: ("test", "val", "train", "train", "train")[i % 5]
        for i, c in enumerate(sorted(set(conv_ids)))
    }


def load_earnings22(path: str | Path, split: str) -> list[Conversation]:
    """Earnings-22 calls of one :func:`earnings22_split` split as conversations.

    Tokens the aligner could not place get times interpolated between their timed neighbours
    in transcript order and ``timed=False``; so do the words next to a dropped tag other than
    ``<silence>`` (``<inaudible>``, ``<crosstalk>``: speech whose timing is unknown). A call with
    no timed token is left out."""
    per_conv = _words(Path(path), extra=1)
    which = earnings22_split(list(per_conv))
    out = []
    for conv in sorted(per_conv):
        if which[conv] != split:
            continue
        rows = per_conv[conv]
        items: list[list[object]] = []  # [speaker, start|None, end|None, text, timed]
        taint_next = False
        for spk, s, e, tok, _ in rows:
            text = clean_word(tok)
            if not text:
                if tok.strip().lower() != "<silence>":
                    taint_next = True
                    if items:
                        items[-1][4] = False
                continue
            has_time = bool(s) and bool(e)
            items.append(
                [
                    spk,
                    float(s) if has_time else None,
                    float(e) if has_time else None,
                    text,
                    has_time and not taint_next,
                ]
            )
            taint_next = False
        timed_idx = [i for i, it in enumerate(items) if it[1] is not None]
        if not timed_idx:
            continue
        i = 0
        while i < len(items):
            if items[i][1] is not None:
                i += 1
                continue
            j = i
            while j < len(items) and items[j][1] is None:
                j += 1
            lo = float(items[i - 1][2]) if i > 0 else float(items[j][1])  # type: ignore[arg-type]
            hi = float(items[j][1]) if j < len(items) else lo  # type: ignore[arg-type]
            hi = max(hi, lo)
            step = (hi - lo) / (j - i)
            for k in range(i, j):
                items[k][1] = lo + step * (k - i)
                items[k][2] = lo + step * (k - i + 1)
            i = j
        words = [
            (k, Word(str(sp), float(s), float(e), str(t), bool(tm)))  # type: ignore[arg-type]
            for k, (sp, s, e, t, tm) in enumerate(items)
        ]
        words.sort(key=lambda kw: (kw[1].start, kw[0]))
        out.append(Conversation(conv, tuple(w for _, w in words)))
    return out


def load_earnings22_written(path: str | Path, split: str) -> list[list[tuple[str, str]]]:
    """Earnings-22 calls of one split as written turns ``[(speaker, text with punctuation)]``
    (maximal runs of one speaker in transcript order; tags dropped)."""
    per_conv = _words(Path(path), extra=1)
    which = earnings22_split(list(per_conv))
    out = []
    for conv in sorted(per_conv):
        if which[conv] != split:
            continue
        turns: list[tuple[str, list[str]]] = []
        for spk, _s, _e, tok, rest in per_conv[conv]:
            if tok.startswith("<") and tok.endswith(">"):
                continue
            piece = tok + (rest[0] if rest else "")
            if turns and turns[-1][0] == spk:
                turns[-1][1].append(piece)
            else:
                turns.append((spk, [piece]))
        out.append([(spk, " ".join(ws)) for spk, ws in turns])
    return out


def _drop_tags(text: str) -> str:
    return " ".join(w for w in text.split() if not (w.startswith("<") and w.endswith(">")))


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
