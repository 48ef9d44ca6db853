"""Training data: dialogues from the corpora, the BPE tokenizer, token streams, eval sets.

Needs numpy and tokenizers only (no torch), so the benchmarks can reuse the eval-set builders.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from caesura.eot._text import EOT, SEP, SPECIAL_TOKENS, linearise, read_window
from caesura.train import corpora
from caesura.train import switchboard as sb
from caesura.train.text import stt_style, words_to_digits

__all__ = [
    "Dialogue",
    "EvalSet",
    "command_dialogues",
    "concat_sets",
    "conversation_dialogues",
    "load_written",
    "pause_eval",
    "short_answer_set",
    "speaker_dialogues",
    "text_dialogues",
    "timed_corpora",
    "token_stream",
    "train_tokenizer",
    "validation_sets",
    "written_dialogues",
    "written_truncation_eval",
]

logger = logging.getLogger(__name__)

Dialogue = list[tuple[str, str]]  # [(role "user"/"agent", text)]


def load_written(path: Path) -> list[list[tuple[str, str]]]:
    """A ``{"turns": [{"speaker", "text"}]}`` jsonl.gz file → raw dialogues (user / agent)."""
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            turns = [
                ("user" if t["speaker"] == "user" else "agent", t["text"].strip())
                for t in d["turns"]
                if t.get("text", "").strip()
            ]
            if turns:
                out.append(turns)
    return out


def styled(text: str, rng: random.Random, p_stt: float = 0.5) -> str:
    return stt_style(text, rng) if rng.random() < p_stt else " ".join(text.split())


def written_train_raw(data: Path) -> list[list[tuple[str, str]]]:
    """The written training dialogues as in the corpora: SGD train, MultiWOZ val, Taskmaster-4."""
    eot = data / "eot"
    return (
        load_written(eot / "sgd" / "train.jsonl.gz")
        + load_written(eot / "multiwoz" / "val.jsonl.gz")
        + load_written(eot / "taskmaster4" / "all.jsonl.gz")
    )


def written_dialogues(
    raw: Sequence[Sequence[tuple[str, str]]], rng: random.Random, *, copies: int = 1
) -> list[Dialogue]:
    """The written training dialogues (:func:`written_train_raw`), each turn randomly in STT
    or written style."""
    return [[(r, styled(t, rng)) for r, t in d] for _ in range(copies) for d in raw]


def conversation_dialogues(
    convs: Sequence[sb.Conversation], rng: random.Random, *, p_digits: float = 0.2
) -> list[Dialogue]:
    """Word-timed conversations as turn lists; one speaker drawn at random per conversation is
    the user, every other speaker the agent."""
    out = []
    for conv in convs:
        turns = sb.conversation_turns(conv)
        user = rng.choice(sorted({t.speaker for t in turns}))
        d = []
        for t in turns:
            text = t.text
            if rng.random() < p_digits:
                text = words_to_digits(text)
            d.append(("user" if t.speaker == user else "agent", text))
        out.append(d)
    return out


# Each word-timed corpus's split files: our name of the split → (loader, file, its split).
TIMED_SPLITS = {
    "switchboard": {"train": "train", "val": "val", "test": "test"},
    "ami": {"train": "train", "val": "dev", "test": "eval"},
    "earnings22": {"train": "train", "val": "val", "test": "test"},
}


def timed_corpora(
    data: Path, split: str, only: Sequence[str] | None = None
) -> dict[str, list[sb.Conversation]]:
    """The word-timed conversations of ``split`` (``train``, ``val`` or ``test``) of every
    corpus present under ``data/eot`` (or of those named in ``only``): Switchboard, AMI (its
    dev / eval as our val / test), Earnings-22 (split by call,
    :func:`caesura.train.corpora.earnings22_split`)."""
    eot = data / "eot"
    out: dict[str, list[sb.Conversation]] = {}
    want = set(TIMED_SPLITS if only is None else only)
    unknown = want - set(TIMED_SPLITS)
    if unknown:
        raise ValueError(f"unknown corpus {sorted(unknown)}; known: {sorted(TIMED_SPLITS)}")
    sw = eot / "switchboard" / f"{split}.tsv.gz"
    if "switchboard" in want and sw.is_file():
        out["switchboard"] = sb.load_conversations(sw)
    ami = eot / "ami" / f"{TIMED_SPLITS['ami'][split]}.tsv.gz"
    if "ami" in want and ami.is_file():
        out["ami"] = corpora.load_ami(ami)
    e22 = eot / "earnings22" / "all.tsv.gz"
    if "earnings22" in want and e22.is_file():
        out["earnings22"] = corpora.load_earnings22(e22, split)
    return out


# The short name of each word-timed corpus in metric keys ("sb_val_auc", "e22_val_auc", ...).
EVAL_KEYS = {"switchboard": "sb", "ami": "ami", "earnings22": "e22"}


def validation_sets(
    data: Path,
    *,
    val_points: int,
    max_turns: int,
    seed: int,
    limit_convs: int | None = None,
) -> dict[str, EvalSet]:
    """The val sets every choice is made on, for the corpora present: each word-timed
    corpus's END vs HOLD points (``sb_val``, ``ami_val``, ``e22_val``; all words visible),
    written user turns (SGD dev) and assistant commands complete vs cut in streaming-STT style
    (``written_val``, ``commands_val``). Sets with one class only are left out."""
    convs = timed_corpora(data, "val")
    if limit_convs:
        convs = {k: v[: max(2, limit_convs // 4)] for k, v in convs.items()}
    out: dict[str, EvalSet] = {
        f"{EVAL_KEYS[k]}_val": pause_eval(v, max_points=val_points, seed=seed)
        for k, v in convs.items()
    }
    sgd_dev = data / "eot" / "sgd" / "dev.jsonl.gz"
    if sgd_dev.is_file():
        out["written_val"] = written_truncation_eval(
            load_written(sgd_dev), style="stt", max_turns=max_turns, seed=seed
        )
    if (data / "eot" / "commands").is_dir():
        commands = command_dialogues(corpora.load_commands(data, "val"), seed)
        out["commands_val"] = written_truncation_eval(
            commands, style="stt", max_turns=max_turns, seed=seed
        )
    return {k: v for k, v in out.items() if len(set(v.labels.tolist())) == 2}


def speaker_dialogues(
    raw: Sequence[Sequence[tuple[str, str]]], rng: random.Random
) -> list[Dialogue]:
    """Dialogues of numbered speakers (calls, podcasts) → one speaker drawn as the user per
    dialogue, the others the agent; each turn in STT or written style."""
    out = []
    for d in raw:
        user = rng.choice(sorted({s for s, _ in d}))
        out.append([("user" if s == user else "agent", styled(t, rng)) for s, t in d])
    return out


def text_dialogues(data: Path, rng: random.Random) -> list[Dialogue]:
    """The spoken-register text without usable pauses, for stage 1: Earnings-22 train calls as
    punctuated turns, Earnings-21, Rev16 (whichever are present)."""
    eot = data / "eot"
    raw: list[list[tuple[str, str]]] = []
    if (eot / "earnings22" / "all.tsv.gz").is_file():
        raw += corpora.load_earnings22_written(eot / "earnings22" / "all.tsv.gz", "train")
    for name in ("earnings21", "rev16"):
        if (eot / name / "all.jsonl.gz").is_file():
            raw += corpora.load_speaker_dialogues(eot / name / "all.jsonl.gz")
    return speaker_dialogues(raw, rng)


AGENT_OPENERS = (
    "How can I help you?",
    "What can I do for you?",
    "Hi! What would you like to do?",
    "Anything else?",
    "Sure. What else can I help with?",
)


def command_dialogues(commands: Sequence[str], seed: int) -> list[list[tuple[str, str]]]:
    """Single assistant requests as raw dialogues (as written): half alone, half after an
    agent's opening question."""
    rng = random.Random(seed)
    return [
        [("user", c)] if rng.random() < 0.5 else [("agent", rng.choice(AGENT_OPENERS)), ("user", c)]
        for c in commands
    ]


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE; the special tokens get ids 0..4 in ``SPECIAL_TOKENS`` order."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def token_stream(tok: Tokenizer, dialogues: Sequence[Dialogue]) -> np.ndarray:
    """All dialogues, closed turns, separated by ``<|endoftext|>`` → one int32 id array."""
    texts = [SEP + linearise(d, close_last=True) for d in dialogues]
    ids: list[int] = []
    for enc in tok.encode_batch(texts):
        ids.extend(enc.ids)
    return np.asarray(ids, dtype=np.int32)


@dataclass
class EvalSet:
    """Scored contexts: ``contexts[i]`` (turn list) with binary ``labels[i]`` (1 = end)."""

    contexts: list[Dialogue]
    labels: np.ndarray
    meta: list[dict[str, float | str]]


def pause_eval(
    convs: Sequence[sb.Conversation],
    *,
    lag: float = 0.0,
    max_points: int | None = None,
    seed: int = 0,
) -> EvalSet:
    """END (1) vs HOLD (0) points, the visible context queried at the pause start."""
    items = []
    for _conv, turns, p in sb.iter_points(convs):
        items.append((turns, p))
    if max_points is not None and len(items) > max_points:
        idx = sorted(random.Random(seed).sample(range(len(items)), max_points))
        items = [items[i] for i in idx]
    ctxs, labels = [], []
    meta: list[dict[str, float | str]] = []
    for turns, p in items:
        ctxs.append(sb.visible_turns(turns, p, lag=lag))
        labels.append(1 if p.label == "END" else 0)
        meta.append({"conv": p.conv, "duration": p.duration})
    return EvalSet(ctxs, np.asarray(labels, dtype=np.int8), meta)


def written_truncation_eval(
    dialogues: Sequence[Sequence[tuple[str, str]]],
    *,
    style: str = "stt",
    max_turns: int | None = None,
    seed: int = 0,
) -> EvalSet:
    """Each user turn (of ≥ 2 words) once complete (1) and once cut at a random word boundary (0).

    ``style`` ``"stt"`` (lower case, no punctuation, numbers as words or digits) or
    ``"written"`` (as in the corpus). The context is the dialogue up to that turn.
    """
    rng = random.Random(seed)
    cands = []
    for d in dialogues:
        for i, (role, text) in enumerate(d):
            if role == "user" and len(text.split()) >= 2:
                cands.append((d, i))
    if max_turns is not None and len(cands) > max_turns:
        cands = rng.sample(cands, max_turns)
    ctxs, labels = [], []
    meta: list[dict[str, float | str]] = []
    for d, i in cands:
        hist = [(r, stt_style(t, rng) if style == "stt" else t) for r, t in d[: i + 1]]
        hist = [(r, t) for r, t in hist if t]
        words = hist[-1][1].split()
        if len(words) < 2:
            continue
        cut = rng.randint(1, len(words) - 1)
        ctxs.append(hist)
        labels.append(1)
        meta.append({"kind": "complete"})
        ctxs.append([*hist[:-1], ("user", " ".join(words[:cut]))])
        labels.append(0)
        meta.append({"kind": "truncated"})
    return EvalSet(ctxs, np.asarray(labels, dtype=np.int8), meta)


def short_answer_set(
    dialogues: Sequence[Sequence[tuple[str, str]]], *, max_items: int | None = None, seed: int = 0
) -> EvalSet:
    """Short answers after an agent's question: complete (1, "yeah", "no thanks") and
    unfinished (0, "and", "so um"); see :func:`caesura.train.corpora.short_answer_eval`."""
    items = corpora.short_answer_eval(dialogues, max_items=max_items, seed=seed)
    return EvalSet(
        [c for c, _ in items],
        np.asarray([y for _, y in items], dtype=np.int8),
        [{"kind": "short"} for _ in items],
    )


def concat_sets(sets: Sequence[EvalSet]) -> EvalSet:
    """One :class:`EvalSet` holding every item of ``sets`` in order."""
    return EvalSet(
        [c for s in sets for c in s.contexts],
        np.concatenate([s.labels for s in sets]) if sets else np.zeros(0, dtype=np.int8),
        [m for s in sets for m in s.meta],
    )


def encode_contexts(
    tok: Tokenizer, contexts: Sequence[Dialogue], max_len: int, hop: int = 1
) -> list[list[int]]:
    """Open last turn, left-truncated the way the runtime reads it
    (:func:`~caesura.eot._text.read_window`: at most ``max_len`` tokens, on a ``hop`` grid)."""
    if hop == 1:  # only the last max_len tokens are read: encode no more text than that
        contexts = [_tail(c, max_len) for c in contexts]
    encs = tok.encode_batch([linearise(c, close_last=False) for c in contexts])
    return [read_window(e.ids, max_len, hop) for e in encs]


def _tail(context: Dialogue, n_words: int) -> Dialogue:
    """The end of ``context`` holding at least ``n_words`` words (whole turns, the first kept
    one cut at a word boundary). Every word is at least one token and a word's tokens do not
    depend on what precedes it, so the last ``n_words`` tokens are those of the whole context;
    a long monologue is not tokenised in full for the few tokens read."""
    out: list[tuple[str, str]] = []
    left = n_words
    for role, text in reversed(context):
        words = text.split()
        if len(words) >= left:
            out.append((role, " ".join(words[len(words) - left :])))
            break
        out.append((role, text))
        left -= len(words)
    return out[::-1]


def eot_id(tok: Tokenizer) -> int:
    i = tok.token_to_id(EOT)
    assert i is not None
    return int(i)
