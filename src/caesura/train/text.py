"""Text styles of the training data: streaming-STT style (lower case, no punctuation) and the
cased, punctuated written style; numbers as digits or as words. Stdlib only."""

from __future__ import annotations

import random
import re

__all__ = ["int_to_words", "stt_style", "words_to_digits"]

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_VALUE = {w: i for i, w in enumerate(_ONES)} | {w: 10 * i for i, w in enumerate(_TENS) if i >= 2}


def int_to_words(n: int) -> str:
    """0 ≤ n < 1,000,000 → English words (``125`` → ``one hundred twenty five``)."""
    if n < 0 or n >= 1_000_000:
        raise ValueError(n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        h, rest = divmod(n, 100)
        return f"{_ONES[h]} hundred" + (f" {int_to_words(rest)}" if rest else "")
    th, rest = divmod(n, 1000)
    return f"{int_to_words(th)} thousand" + (f" {int_to_words(rest)}" if rest else "")


def words_to_digits(text: str) -> str:
    """Runs of number words → digits (``twenty five dollars`` → ``25 dollars``)."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if not run:
            return
        total, current = 0, 0
        for w in run:
            if w == "hundred":
                current = max(current, 1) * 100
            elif w == "thousand":
                total += max(current, 1) * 1000
                current = 0
            else:
                current += _VALUE[w]
        out.append(str(total + current))
        run.clear()

    for w in text.split():
        if w in _VALUE or (w in ("hundred", "thousand") and run):
            # "twenty five" is one number, "five five" is two
            if (
                run
                and w in _VALUE
                and run[-1] in _VALUE
                and (_VALUE[run[-1]] < 20 or _VALUE[w] >= 10)
            ):
                flush()
            run.append(w)
        else:
            flush()
            out.append(w)
    flush()
    return " ".join(out)


_NUM = re.compile(r"\d+")
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_KEEP = re.compile(r"[^a-z0-9' \-]")


def _num_words(m: re.Match[str]) -> str:
    s = m.group(0)
    n = int(s)
    if (len(s) > 1 and s.startswith("0")) or n >= 1_000_000:
        return " ".join(_ONES[int(c)] for c in s)
    return int_to_words(n)


def stt_style(text: str, rng: random.Random, *, p_words: float = 0.5) -> str:
    """Written text → what a streaming STT would print: lower case, no punctuation,
    numbers spelled out with probability ``p_words`` (else kept as digits)."""
    t = text.lower().replace("&", " and ").replace("%", " percent").replace("$", " ")
    t = _TIME.sub(lambda m: f"{m.group(1)} {'' if m.group(2) == '00' else m.group(2)}", t)
    t = re.sub(r"(?<=\d)[-/.,](?=\d)", " ", t)
    t = _KEEP.sub(" ", t)
    t = re.sub(r"(?<![a-z])['\-]|['\-](?![a-z])", " ", t)
    if rng.random() < p_words:
        t = _NUM.sub(_num_words, t)
    return " ".join(t.split())
