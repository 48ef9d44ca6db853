"""caesura: is the user speaking now, and are they done?"""

from __future__ import annotations

from caesura._version import __version__
from caesura.audio import decode_wav, pcm16_bytes_to_float32, read_audio, validate_audio
from caesura.eot import EndOfTurnModel, Turn
from caesura.errors import (
    AudioDecodeError,
    CaesuraError,
    InvalidAudioError,
    InvalidOptionError,
    LabelFileError,
    MissingDependencyError,
    ModelError,
    ModelIntegrityError,
    UnsupportedLanguageError,
    UnsupportedModelError,
    UnsupportedSampleRateError,
)
from caesura.turn import (
    Backchannel,
    EndOfTurn,
    FlushSTT,
    Interruption,
    ProgressiveAudio,
    ScorerFailed,
    SpeechStarted,
    SpeechStopped,
    TurnEngine,
    TurnEvent,
    TurnOptions,
    TurnPhase,
    TurnReopened,
    WordsScored,
)
from caesura.vad.batching import VADBatcher
from caesura.vad.model import SileroVAD, VADStream
from caesura.vad.offline import speech_timestamps
from caesura.vad.segmenter import (
    EnergyGate,
    Segmenter,
    SegmenterOptions,
    SpeechEnd,
    SpeechStart,
    VADWindow,
)
from caesura.vad.session import VADSession

__all__ = [
    "AudioDecodeError",
    "Backchannel",
    "CaesuraError",
    "EndOfTurn",
    "EndOfTurnModel",
    "EnergyGate",
    "FlushSTT",
    "Interruption",
    "InvalidAudioError",
    "InvalidOptionError",
    "LabelFileError",
    "MissingDependencyError",
    "ModelError",
    "ModelIntegrityError",
    "ProgressiveAudio",
    "ScorerFailed",
    "Segmenter",
    "SegmenterOptions",
    "SileroVAD",
    "SpeechEnd",
    "SpeechStart",
    "SpeechStarted",
    "SpeechStopped",
    "Turn",
    "TurnEngine",
    "TurnEvent",
    "TurnOptions",
    "TurnPhase",
    "TurnReopened",
    "UnsupportedLanguageError",
    "UnsupportedModelError",
    "UnsupportedSampleRateError",
    "VADBatcher",
    "VADSession",
    "VADStream",
    "VADWindow",
    "WordsScored",
    "__version__",
    "decode_wav",
    "pcm16_bytes_to_float32",
    "read_audio",
    "speech_timestamps",
    "validate_audio",
]
