"""Word lists used by the turn engine: backchannels and a last-word end-of-turn heuristic.

``lexical_end_probability`` is the "VAD + lexical heuristic" baseline of
``benchmarks/turns.py`` and the engine's fallback scorer when no end-of-turn model is given
(``TurnEngine(scorer=lexical_end_probability)``). It looks only at the last word of the
user's turn: conjunctions, prepositions, articles, fillers and cut-off words say "more to
come"; everything else is a coin flip leaning towards "done". On Switchboard it barely beats
silence alone (ROC-AUC ≈ 0.6), which is the point of having a model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

__all__ = [
    "BACKCHANNEL_PHRASES",
    "BACKCHANNEL_WORDS",
    "is_backchannel",
    "lexical_end_probability",
    "normalise_words",
]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Words that, alone or together, make a listener response that does not take the floor.
BACKCHANNEL_WORDS = _words(
    """uh-huh uhhuh uh-hum um-hum mhm mhmm mm-hmm mm-hm mmhmm mm hm hmm huh ah oh ooh
    yeah yep yes yea ya right okay ok sure wow true exactly absolutely definitely alright
    cool nice great gotcha totally indeed uh um"""
)

#: Multi-word backchannels ("i see", "got it").
BACKCHANNEL_PHRASES = frozenset(
    {
        "i see",
        "got it",
        "all right",
        "that's right",
        "makes sense",
        "go on",
        "of course",
        "oh yeah",
        "oh okay",
        "okay okay",
        "yeah yeah",
        "uh huh",
        "mm hmm",
        "that's true",
    }
)

_CONTINUATION = _words(
    """and but or so because cause if when while than then that which who whose whom where
    the a an this these those my your his her its our their some any no every each
    to of in on at for with from by about into onto over under after before like as
    is are was were be been am i we you he she they it it's i'm we're you're they're
    uh um er erm ah well just very really not don't didn't can't could would should will
    can may might must have has had do does did get got going gonna wanna kind sort lot"""
)
_FINAL = _words(
    """yeah yes yep no nope right okay ok sure know too either though anyway thanks thank
    please bye goodbye exactly definitely absolutely probably maybe now there here
    them him me us all"""
)

_WORD = re.compile(r"[a-z0-9][a-z0-9'\-]*")


def normalise_words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (punctuation dropped, apostrophes and hyphens kept)."""
    return _WORD.findall(text.lower())


def is_backchannel(text: str, *, max_words: int = 4) -> bool:
    """True when ``text`` is only a listener response ("uh-huh", "yeah right", "i see").

    Empty text is not a backchannel. ``"wait, stop"``, ``"yeah but"`` or anything longer than
    ``max_words`` words is not.
    """
    words = normalise_words(text)
    if not words or len(words) > max_words:
        return False
    i = 0
    while i < len(words):
        if i + 1 < len(words) and f"{words[i]} {words[i + 1]}" in BACKCHANNEL_PHRASES:
            i += 2
        elif words[i] in BACKCHANNEL_WORDS:
            i += 1
        else:
            return False
    return True


def _last_user_text(turns: Sequence[Mapping[str, str]]) -> str:
    for t in reversed(turns):
        if t.get("role") == "user":
            return t.get("content", "")
    return ""


def lexical_end_probability(turns: Sequence[Mapping[str, str]]) -> float:
    """A crude P(end of turn) from the last word of the last user turn.

    ``turns`` is a chat history ``[{"role": "user"|"assistant", "content": str}, ...]`` (the
    same shape :class:`~caesura.eot.EndOfTurnModel` takes).
    """
    text = _last_user_text(turns).strip()
    words = normalise_words(text)
    if not words:
        return 0.5
    last = words[-1]
    if text.endswith(("?", ".", "!")):
        return 0.8
    if last.endswith("-"):  # a cut-off word: the speaker restarts
        return 0.1
    if last in _CONTINUATION:
        return 0.15
    if last in _FINAL or is_backchannel(" ".join(words[-2:])):
        return 0.6
    return 0.4
