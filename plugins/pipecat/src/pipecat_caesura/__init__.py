"""caesura for Pipecat: a drop-in Silero ``VADAnalyzer`` and a transcript-aware stop strategy."""

from __future__ import annotations

from pipecat_caesura._version import __version__
from pipecat_caesura.turn import CaesuraTurnStopStrategy, TurnDecision
from pipecat_caesura.vad import CaesuraVADAnalyzer, SharedVADBatcher

__all__ = [
    "CaesuraTurnStopStrategy",
    "CaesuraVADAnalyzer",
    "SharedVADBatcher",
    "TurnDecision",
    "__version__",
]
