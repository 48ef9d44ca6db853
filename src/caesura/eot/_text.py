"""How a dialogue becomes the model's input text (shared by the runtime and the training recipe).

A dialogue is linearised as ``<|user|> words<|eot|><|agent|> words<|eot|>...``; the turn
being scored is left open (no closing ``<|eot|>``) and the model's probability of
``<|eot|>`` as the next token is P(end of turn). Pure Python: no numpy, no torch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "AGENT",
    "EOT",
    "PAD",
    "SEP",
    "SPECIAL_TOKENS",
    "USER",
    "clean_text",
    "linearise",
    "read_window",
]

PAD = "<|pad|>"
SEP = "<|endoftext|>"
USER = "<|user|>"
AGENT = "<|agent|>"
EOT = "<|eot|>"
SPECIAL_TOKENS = (PAD, SEP, USER, AGENT, EOT)

_WS = re.compile(r"\s+")
_SPECIAL = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))


def clean_text(text: str) -> str:
    """Collapse whitespace and strip our special-token strings out of user-supplied text."""
    return _WS.sub(" ", _SPECIAL.sub(" ", text)).strip()


def linearise(turns: Iterable[tuple[str, str]], *, close_last: bool) -> str:
    """``[(role, text), ...]`` with role ``"user"`` or ``"agent"`` → the model's input string.

    Every turn but the last is closed with ``<|eot|>``; the last one too when ``close_last``.
    Each word is preceded by a space, so a prefix of a turn tokenises like the whole turn.
    """
    parts: list[str] = []
    items = list(turns)
    for i, (role, text) in enumerate(items):
        marker = USER if role == "user" else AGENT
        body = clean_text(text)
        parts.append(f"{marker} {body}" if body else marker)
        if close_last or i < len(items) - 1:
            parts.append(EOT)
    return "".join(parts)


def read_window(ids: list[int], max_tokens: int, hop: int = 1) -> list[int]:
    """The tokens the model reads of a dialogue's ``ids``: all of them when they fit in
    ``max_tokens``, else those from the last window start on a grid of ``hop`` tokens that
    leaves at most ``max_tokens`` (``max_tokens - hop + 1`` at least). A grid keeps the
    window's start — and so every token's position — fixed while a dialogue grows by a few
    words, which lets a stream reuse the keys and values it computed; ``hop=1`` slides the
    window token by token (the last ``max_tokens``)."""
    over = len(ids) - max_tokens
    if over <= 0:
        return ids
    start = -(-over // hop) * hop  # over rounded up to the grid
    return ids[start:]
