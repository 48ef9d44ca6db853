"""Voice activity detection: Silero VAD v6.2 streams, batching, segmenting, offline timestamps."""

from __future__ import annotations

from caesura.vad.batching import VADBatcher, VADBatchResult
from caesura.vad.model import (
    CONTEXT_SIZES,
    MODEL_RATES,
    WINDOW_SIZES,
    SileroVAD,
    VADStream,
)
from caesura.vad.offline import (
    TimestampOptions,
    speech_probabilities,
    speech_timestamps,
    timestamps_from_probabilities,
)
from caesura.vad.segmenter import (
    EnergyGate,
    Segmenter,
    SegmenterEvent,
    SegmenterOptions,
    SpeechEnd,
    SpeechStart,
    VADWindow,
)
from caesura.vad.session import VADSession

__all__ = [
    "CONTEXT_SIZES",
    "MODEL_RATES",
    "WINDOW_SIZES",
    "EnergyGate",
    "Segmenter",
    "SegmenterEvent",
    "SegmenterOptions",
    "SileroVAD",
    "SpeechEnd",
    "SpeechStart",
    "TimestampOptions",
    "VADBatchResult",
    "VADBatcher",
    "VADSession",
    "VADStream",
    "VADWindow",
    "speech_probabilities",
    "speech_timestamps",
    "timestamps_from_probabilities",
]
