"""The single error hierarchy of caesura.

Every exception raised on purpose by caesura derives from :class:`CaesuraError`.
Where a built-in category is natural the subclass also inherits it, so callers
may catch ``ValueError`` for bad input or ``ImportError`` for a missing extra.
"""

from __future__ import annotations

__all__ = [
    "AudioDecodeError",
    "CaesuraError",
    "InvalidAudioError",
    "InvalidOptionError",
    "LabelFileError",
    "MissingDependencyError",
    "ModelError",
    "ModelIntegrityError",
    "UnsupportedLanguageError",
    "UnsupportedModelError",
    "UnsupportedSampleRateError",
]


class CaesuraError(Exception):
    """Base class of every error caesura raises on purpose."""


class InvalidAudioError(CaesuraError, ValueError):
    """Audio that cannot be processed: wrong dtype, shape, NaN/inf, empty, odd byte count."""


class UnsupportedSampleRateError(InvalidAudioError):
    """A sample rate the model cannot take (and resampling was disabled or is impossible)."""


class AudioDecodeError(InvalidAudioError):
    """An audio file or byte string that cannot be decoded (corrupt, truncated, unknown codec)."""


class InvalidOptionError(CaesuraError, ValueError):
    """An option outside its valid range (negative duration, threshold outside [0, 1], ...)."""


class LabelFileError(CaesuraError, ValueError):
    """A reference-label file (RTTM, Audacity, CSV) that is missing or malformed.

    The message names the file and, when known, the 1-based line; both are also attributes.
    """

    def __init__(self, message: str, *, path: object = None, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


class UnsupportedLanguageError(CaesuraError, ValueError):
    """A language the end-of-turn model was not trained for."""


class ModelError(CaesuraError, RuntimeError):
    """The model failed to load or to run. Never reported as "silence"."""


class ModelIntegrityError(ModelError):
    """A bundled model file whose sha256 does not match the one shipped with the package."""


class UnsupportedModelError(ModelError, ValueError):
    """A user-supplied model file that is not a supported model (wrong version or export)."""


class MissingDependencyError(CaesuraError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"{package!r} is required{what} but is not installed; "
            f"install it with: pip install 'caesura[{extra}]'"
        )
        self.package = package
        self.extra = extra
