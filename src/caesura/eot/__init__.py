"""Semantic end-of-turn detection: :class:`EndOfTurnModel` (onnxruntime + tokenizers only)."""

from __future__ import annotations

from caesura.eot.model import (
    EndOfTurnModel,
    EotOptions,
    EotStream,
    EotStreamPool,
    Turn,
    TurnLike,
    normalize_language,
)

__all__ = [
    "EndOfTurnModel",
    "EotOptions",
    "EotStream",
    "EotStreamPool",
    "Turn",
    "TurnLike",
    "normalize_language",
]
