"""caesura for LiveKit Agents: a drop-in ``VAD`` and a text end-of-turn ``TurnDetector``.

Two lines change in an agent::

    from livekit.plugins import caesura

    session = AgentSession(
        vad=caesura.VAD.load(),              # was: silero.VAD.load()
        turn_detection=caesura.TurnDetector(),  # was: MultilingualModel() / EnglishModel()
        ...
    )

Both run in-process on CPU (onnxruntime), share one model per process, and download nothing.
"""

from __future__ import annotations

from livekit.agents import Plugin

from .log import logger
from .turn_detector import TurnDetector
from .vad import VAD, VADStream
from .version import __version__

__all__ = ["VAD", "TurnDetector", "VADStream", "__version__"]


class CaesuraPlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__ or __name__, logger)


Plugin.register_plugin(CaesuraPlugin())
