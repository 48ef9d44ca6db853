"""The model behind the server's cores: :class:`caesura.vad.SileroVAD` streams at 16 kHz.

:class:`SileroBackend` adapts the VAD core's batched API (``stream.feed`` per stream, then one
``model.infer_ready(streams)``) to the scheduler's :class:`~caesura.server.scheduler.VADBackend`
protocol. All stream calls happen in the scheduler's single worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from caesura.vad.model import SileroVAD, VADStream

__all__ = ["MODEL_RATE", "SileroBackend"]

logger = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]
#: The realtime protocol carries PCM16LE mono at 16 kHz.
MODEL_RATE = 16000


class SileroBackend:
    """Silero VAD streams on one shared :class:`SileroVAD` (``cache=False`` for a private one)."""

    def __init__(self, model: SileroVAD | None = None, *, shared: bool = True) -> None:
        self.model = model if model is not None else SileroVAD.load(cache=shared)
        self.window_size = int(self.model.stream(MODEL_RATE).window_size)

    def new_stream(self) -> VADStream:
        return self.model.stream(MODEL_RATE)

    def reset_stream(self, stream: Any) -> None:
        stream.reset()

    def close_stream(self, stream: Any) -> None:
        """Free the stream's buffers and its onnxruntime IOBinding runner now."""
        stream.close()

    def infer(self, streams: Sequence[Any], windows: Sequence[Float32Array]) -> list[Float32Array]:
        for stream, w in zip(streams, windows, strict=True):
            stream.feed(w.reshape(-1))
        return self.model.infer_ready(list(streams))
