"""Switchboard word timings → turns, END / HOLD decision points and causal views (stdlib only).

This is the single place where the eot-bench style decision points are defined (DESIGN.md,
"Measuring end of turn"); the training recipe, ``benchmarks/eot_text.py`` and
``benchmarks/turns.py`` all use it.

* Words are cleaned (noise / laughter tokens dropped, ``[laughter-yes]`` → ``yes``,
  ``thi[s]-`` → ``thi-``, ``them_1`` → ``them``, lower-cased).
* Each speaker's words are split into inter-pausal units (IPUs) at gaps > ``IPU_GAP``.
  A listener IPU made only of backchannel words (at most ``BACKCHANNEL_MAX_WORDS``) does not
  take the floor and is dropped from the turn stream.
* The remaining IPUs, sorted by start time, are merged into turns (consecutive IPUs of the
  same speaker form one turn).
* END: the gap after a turn's last word when the next turn starts at or after that word's
  end (overlapped hand-overs are left out). HOLD: a pause of ``HOLD_MIN``-``HOLD_MAX`` s
  between consecutive words of one turn. A pause next to a word whose time was not measured
  (``Word.timed`` false: Earnings-22 tokens the aligner could not place) is neither.

The other word-timed corpora (AMI, Earnings-22) load into the same :class:`Conversation` form
in :mod:`caesura.train.corpora`, so every corpus's decision points come from this code.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BACKCHANNELS",
    "Conversation",
    "Pause",
    "Turn",
    "Word",
    "clean_word",
    "conversation_turns",
    "decision_points",
    "load_conversations",
    "read_word_rows",
    "visible_turns",
]

IPU_GAP = 0.2
HOLD_MIN = 0.2
HOLD_MAX = 5.0
BACKCHANNEL_MAX_WORDS = 3

BACKCHANNELS = frozenset(
    [
        "uh-huh",
        "um-hum",
        "mhm",
        "mm-hmm",
        "mm-hm",
        "hm",
        "hmm",
        "hum",
        "huh",
        "uh-hum",
        "hum-um",
        "huh-uh",
        "uh",
        "um",
        "mm",
        "ah",
        "oh",
        "yeah",
        "yep",
        "yes",
        "yea",
        "right",
        "okay",
        "ok",
        "sure",
        "really",
        "wow",
        "true",
        "exactly",
        "absolutely",
        "definitely",
        "gosh",
        "golly",
        "no",
        "nope",
        "alright",
        "all",
    ]
)

_BRACKET_ALT = re.compile(r"\[[^\]/]*/([^\]]*)\]")  # [bocket/bucket] -> bucket
_LAUGH_WORD = re.compile(r"^\[laughter-(.+)\]$")
_BRACKET = re.compile(r"\[[^\]]*\]")
_SUFFIX = re.compile(r"_\d+$")


def clean_word(token: str) -> str:
    """One ISIP token → its spoken word, or ``""`` for non-speech tokens."""
    tok = token.strip()
    m = _LAUGH_WORD.match(tok)
    if m:
        tok = m.group(1)
    if tok.startswith("<") and tok.endswith(">"):
        return ""
    tok = _BRACKET_ALT.sub(r"\1", tok)
    if tok.startswith("[") and tok.endswith("]") and "]" not in tok[1:-1]:
        return ""  # [noise], [laughter], [vocalized-noise], ...
    tok = _BRACKET.sub("", tok)  # thi[s]- -> thi-, -[th]ey -> -ey
    tok = tok.replace("{", "").replace("}", "")
    tok = _SUFFIX.sub("", tok)
    tok = tok.strip("-") + ("-" if tok.endswith("-") and tok.strip("-") else "")
    return tok.lower()


@dataclass(frozen=True)
class Word:
    speaker: str
    start: float
    end: float
    text: str
    timed: bool = True  # False: times interpolated (untimed token), no pause is read next to it


@dataclass(frozen=True)
class Turn:
    speaker: str
    words: tuple[Word, ...]

    @property
    def start(self) -> float:
        return self.words[0].start

    @property
    def end(self) -> float:
        return self.words[-1].end

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


@dataclass(frozen=True)
class Conversation:
    conv: str
    words: tuple[Word, ...]  # both speakers, cleaned, sorted by start time


@dataclass(frozen=True)
class Pause:
    """A decision point: the silence after ``turns[turn_index].words[word_index]``.

    ``start`` is the end time of that word (the moment the model is first queried), ``end``
    the start of the next word (same speaker for HOLD, the other speaker for END).
    """

    conv: str
    label: str  # "END" or "HOLD"
    speaker: str
    turn_index: int
    word_index: int
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def read_word_rows(path: str | Path) -> Iterator[tuple[str, str, str, str, str, list[str]]]:
    """The rows of a word-timing ``.tsv.gz`` (header ``conv speaker start end word ...``):
    ``(conv, speaker, start, end, token, [further columns])``, times as written (they may be
    empty). Rows with fewer than five columns are skipped."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        header = fh.readline()
        if not header.startswith("conv\tspeaker\tstart\tend\tword"):
            raise ValueError(f"{path}: unexpected header {header!r}")
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 5:
                conv, spk, start, end, token, *rest = parts
                yield conv, spk, start, end, token, rest


def load_conversations(path: str | Path) -> list[Conversation]:
    """Read one word-timing file — ``switchboard/{split}.tsv.gz``, or ``ami/{split}.tsv.gz``
    (its ``seg`` column is not needed: its word times already put the gaps between
    segments) — into conversations of cleaned words sorted by start time."""
    per_conv: dict[str, list[Word]] = {}
    for conv, spk, start, end, token, _ in read_word_rows(path):
        text = clean_word(token)
        if text:
            per_conv.setdefault(conv, []).append(Word(spk, float(start), float(end), text))
    return [
        Conversation(conv, tuple(sorted(ws, key=lambda w: (w.start, w.end))))
        for conv, ws in sorted(per_conv.items())
    ]


def _ipus(words: Sequence[Word]) -> list[list[Word]]:
    out: list[list[Word]] = []
    for w in words:
        if out and w.start - out[-1][-1].end <= IPU_GAP:
            out[-1].append(w)
        else:
            out.append([w])
    return out


def _is_backchannel(ipu: Sequence[Word]) -> bool:
    return len(ipu) <= BACKCHANNEL_MAX_WORDS and all(w.text in BACKCHANNELS for w in ipu)


def conversation_turns(conv: Conversation) -> list[Turn]:
    """The floor-taking turns of a conversation, in order (backchannels dropped)."""
    ipus: list[list[Word]] = []
    for spk in sorted({w.speaker for w in conv.words}):
        ipus.extend(_ipus([w for w in conv.words if w.speaker == spk]))
    ipus.sort(key=lambda ipu: (ipu[0].start, ipu[0].speaker))
    # A backchannel only counts as one when the other speaker holds the floor around it.
    kept: list[list[Word]] = []
    for i, ipu in enumerate(ipus):
        if _is_backchannel(ipu) and kept and kept[-1][0].speaker != ipu[0].speaker:
            nxt = next((p for p in ipus[i + 1 :] if not _is_backchannel(p)), None)
            if nxt is None or nxt[0].speaker != ipu[0].speaker:
                continue
        kept.append(ipu)
    turns: list[Turn] = []
    for ipu in kept:
        if turns and turns[-1].speaker == ipu[0].speaker:
            turns[-1] = Turn(ipu[0].speaker, turns[-1].words + tuple(ipu))
        else:
            turns.append(Turn(ipu[0].speaker, tuple(ipu)))
    return turns


def decision_points(conv: Conversation, turns: Sequence[Turn] | None = None) -> list[Pause]:
    """Every HOLD (0.2-5 s pause inside a turn) and END (non-overlapped hand-over) point."""
    turns = conversation_turns(conv) if turns is None else turns
    out: list[Pause] = []
    for ti, turn in enumerate(turns):
        ws = turn.words
        for wi in range(len(ws) - 1):
            gap = ws[wi + 1].start - ws[wi].end
            if HOLD_MIN <= gap <= HOLD_MAX and ws[wi].timed and ws[wi + 1].timed:
                out.append(
                    Pause(conv.conv, "HOLD", turn.speaker, ti, wi, ws[wi].end, ws[wi + 1].start)
                )
        if (
            ti + 1 < len(turns)
            and turns[ti + 1].start >= turn.end
            and ws[-1].timed
            and turns[ti + 1].words[0].timed
        ):
            out.append(
                Pause(
                    conv.conv, "END", turn.speaker, ti, len(ws) - 1, turn.end, turns[ti + 1].start
                )
            )
    return out


def visible_turns(
    turns: Sequence[Turn],
    pause: Pause,
    *,
    query_time: float | None = None,
    lag: float = 0.0,
    max_turns: int = 8,
) -> list[tuple[str, str]]:
    """What a causal model sees at ``query_time`` (default: the pause start) with STT ``lag``.

    Returns ``[(role, text), ...]`` with role ``"user"`` for the pausing speaker and
    ``"agent"`` for the other one; the last item is always the pausing speaker's current turn
    (its text may be ``""`` when every word of it is still hidden). Only words whose end time
    is at most ``query_time - lag`` are visible.
    """
    t = (pause.start if query_time is None else query_time) - lag
    eps = 1e-6
    cur = turns[pause.turn_index]
    cur_words = [w.text for w in cur.words[: pause.word_index + 1] if w.end <= t + eps]
    out: list[tuple[str, str]] = []
    for turn in turns[max(0, pause.turn_index - max_turns) : pause.turn_index]:
        words = [w.text for w in turn.words if w.end <= t + eps]
        if not words:
            continue
        role = "user" if turn.speaker == pause.speaker else "agent"
        if out and out[-1][0] == role:
            out[-1] = (role, out[-1][1] + " " + " ".join(words))
        else:
            out.append((role, " ".join(words)))
    if out and out[-1][0] == "user":
        # The pausing speaker's previous turn is fully visible but the other speaker's
        # intervening turn is not yet: it is all one open turn from the model's point of view.
        prev = out.pop()[1]
        cur_words = [prev, *cur_words]
    out.append(("user", " ".join(cur_words)))
    return out


def iter_points(
    convs: Sequence[Conversation],
) -> Iterator[tuple[Conversation, list[Turn], Pause]]:
    """``(conversation, turns, pause)`` for every decision point of every conversation."""
    for conv in convs:
        turns = conversation_turns(conv)
        for p in decision_points(conv, turns):
            yield conv, turns, p
