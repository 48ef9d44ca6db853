"""Turn taking: is the user speaking now, and are they done?

:class:`TurnEngine` layers the streaming VAD segmenter, the transcript and an end-of-turn
scorer into typed turn events; :mod:`caesura.turn.fusion` holds the policy that fuses
P(end | words) with the silence elapsed.
"""

from __future__ import annotations

from caesura.turn.engine import (
    EndOfTurnScorer,
    ScorePending,
    SupportsPredict,
    SupportsStream,
    TurnEngine,
    TurnPhase,
)
from caesura.turn.events import (
    Backchannel,
    EndOfTurn,
    EndOfTurnReason,
    FlushSTT,
    Interruption,
    ProgressiveAudio,
    ScorerFailed,
    SpeechStarted,
    SpeechStopped,
    TurnEvent,
    TurnReopened,
    WordsScored,
)
from caesura.turn.fusion import PauseSurvival, end_posterior
from caesura.turn.lexical import is_backchannel, lexical_end_probability
from caesura.turn.options import TurnOptions

__all__ = [
    "Backchannel",
    "EndOfTurn",
    "EndOfTurnReason",
    "EndOfTurnScorer",
    "FlushSTT",
    "Interruption",
    "PauseSurvival",
    "ProgressiveAudio",
    "ScorePending",
    "ScorerFailed",
    "SpeechStarted",
    "SpeechStopped",
    "SupportsPredict",
    "SupportsStream",
    "TurnEngine",
    "TurnEvent",
    "TurnOptions",
    "TurnPhase",
    "TurnReopened",
    "WordsScored",
    "end_posterior",
    "is_backchannel",
    "lexical_end_probability",
]
