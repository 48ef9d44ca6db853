"""Semantic end-of-turn detection: :class:`EndOfTurnModel` (onnxruntime + tokenizers only)."""

from __future__ import annotations

from caesura.eot.model import EndOfTurnModel, EotOptions, Turn, TurnLike, normalize_language

__all__ = ["EndOfTurnModel", "EotOptions", "Turn", "TurnLike", "normalize_language"]
