"""caesura: is the user speaking now, and are they done?"""

from __future__ import annotations

from caesura._version import __version__
from caesura.errors import (
    AudioDecodeError,
    CaesuraError,
    InvalidAudioError,
    InvalidOptionError,
    MissingDependencyError,
    ModelError,
    ModelIntegrityError,
    UnsupportedLanguageError,
    UnsupportedModelError,
    UnsupportedSampleRateError,
)

__all__ = [
    "AudioDecodeError",
    "CaesuraError",
    "InvalidAudioError",
    "InvalidOptionError",
    "MissingDependencyError",
    "ModelError",
    "ModelIntegrityError",
    "UnsupportedLanguageError",
    "UnsupportedModelError",
    "UnsupportedSampleRateError",
    "__version__",
]
