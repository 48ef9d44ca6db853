"""The fast backend: compact Silero v6.2 graphs generated from the bundled model's weights.

See :mod:`caesura.vad._fast_build` for how the graphs are made. Each takes a block of T window
steps of B streams (``[T*B, L]``), the state and per-stream step counts, and returns
``[T, B]`` probabilities and the state after each stream's last valid step -- the
whole of :meth:`caesura.vad.SileroVAD.infer_ready` in one onnxruntime call. Rows are computed
independently (onnxruntime's CPU kernels do not mix rows), so batching is bit-exact.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from caesura.errors import ModelError

__all__ = ["FAST_MODEL_SHA256", "FastBackend"]

logger = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]

#: sha256 of the generated graphs (``python -m caesura.vad._fast_build`` prints them).
FAST_MODEL_SHA256 = {
    16000: "983f8402983b62e27f6eed23b847e5a816c516d81ffcb83ab1b1eb146f7c4936",
    8000: "716600b98c2a031330d64c1ad2faca76e4a40e03d785817c7d532f058ecb808d",
}

_LOCK = threading.Lock()
_SESSIONS: dict[int, Any] = {}


def _session(rate: int) -> Any:
    from caesura.vad.model import _make_session, _read_asset  # noqa: PLC0415

    with _LOCK:
        session = _SESSIONS.get(rate)
        if session is None:
            name = f"silero_vad_fast_{rate // 1000}k.onnx"
            data = _read_asset(name, FAST_MODEL_SHA256[rate])
            session = _make_session(data, f"the bundled fast Silero VAD graph {name}")
            _SESSIONS[rate] = session
            logger.debug("loaded %s", name)
        return session


class FastBackend:
    """onnxruntime sessions of the compact graphs, one per model rate (shared per process)."""

    name = "fast"

    def __init__(self, sessions: dict[int, Any]) -> None:
        self._sessions = sessions
        self.rates = tuple(sorted(sessions, reverse=True))
        self._shapes: dict[tuple[int, int], npt.NDArray[np.int64]] = {}

    @classmethod
    def load(cls, rates: tuple[int, ...]) -> FastBackend:
        return cls({rate: _session(rate) for rate in rates})

    def run(
        self,
        x: Float32Array,
        state: Float32Array,
        lengths: npt.NDArray[np.int64],
        model_rate: int,
    ) -> tuple[Float32Array, Float32Array]:
        """``x`` [T, B, L] (row b valid for t < lengths[b]) -> (probs [T, B], final state)."""
        steps, batch, width = x.shape
        shape = self._shapes.get((steps, batch))
        if shape is None:
            shape = np.array([steps, batch, 128], dtype=np.int64)
            if len(self._shapes) < 1024:
                self._shapes[(steps, batch)] = shape
        if not state.flags.c_contiguous:
            state = np.ascontiguousarray(state)
        try:
            probs, h_n, c_n = self._sessions[model_rate].run(
                None,
                {
                    "input": x.reshape(steps * batch, width),
                    "seq_shape": shape,
                    "h": state[0:1],
                    "c": state[1:2],
                    "lengths": lengths.astype(np.int32),
                },
            )
        except Exception as exc:
            raise ModelError(f"Silero VAD inference failed: {exc}") from exc
        return probs.reshape(steps, batch), np.concatenate((h_n, c_n))

    def step(
        self, x: Float32Array, state: Float32Array, model_rate: int
    ) -> tuple[Float32Array, Float32Array]:
        """One window for each of B rows: ``x`` [B, L], ``state`` [2, B, 128]."""
        lengths = np.ones(x.shape[0], dtype=np.int64)
        probs, new_state = self.run(x[None], state, lengths, model_rate)
        return probs[0], new_state
