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

__all__ = ["FAST_MODEL_SHA256", "FastBackend", "SingleStepper"]

logger = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]

#: sha256 of the generated graphs (``python -m caesura.vad._fast_build`` prints them).
FAST_MODEL_SHA256 = {
    16000: "288d8507c20158db7149ae28197e63a4da15670cc1b8de37501b95ea21540fd2",
    8000: "456f63c9f175e45a6fac7c25d27495ece4aaf1a21629b153bde90eb94fd28c76",
}

#: Width of the LSTM state (h and c each).
STATE_SIZE = 128

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


class SingleStepper:
    """One window of one stream per call, with no per-call allocation (onnxruntime IOBinding).

    Owned by one :class:`~caesura.vad.VADStream` (used by one thread at a time): the model
    input, two state buffers (read one, write the other, then swap) and the output are
    preallocated and bound once, so a call copies the window in and runs the graph. The graph
    and its kernels are the same as :meth:`FastBackend.run`'s, so the results are bit-identical
    to a run of that window in any batch.
    """

    __slots__ = ("_bindings", "_flip", "_out", "_run", "_states", "_x", "state")

    def __init__(self, session: Any, width: int) -> None:
        self._x = np.zeros((1, width), dtype=np.float32)
        self._out = np.zeros((1, 1), dtype=np.float32)
        self._states = (
            np.zeros((2, 1, STATE_SIZE), dtype=np.float32),
            np.zeros((2, 1, STATE_SIZE), dtype=np.float32),
        )
        shape = np.array([1, 1, STATE_SIZE], dtype=np.int64)
        lengths = np.ones(1, dtype=np.int32)
        bindings = []
        for src, dst in ((0, 1), (1, 0)):
            io = session.io_binding()
            io.bind_cpu_input("input", self._x)
            io.bind_cpu_input("seq_shape", shape)
            io.bind_cpu_input("lengths", lengths)
            io.bind_cpu_input("h", self._states[src][0:1])
            io.bind_cpu_input("c", self._states[src][1:2])
            out = self._states[dst]
            for name, arr in (("output", self._out), ("h_n", out[0:1]), ("c_n", out[1:2])):
                io.bind_output(name, "cpu", 0, np.float32, list(arr.shape), arr.ctypes.data)
            bindings.append(io)
        self._bindings = bindings
        self._run = session._sess.run_with_iobinding
        self._flip = 0
        #: The current state ``[2, 1, 128]``: the buffer the next call reads (do not keep it
        #: across calls, it is overwritten two calls later; copy it).
        self.state: Float32Array = self._states[0]

    def load(self, state: Float32Array) -> None:
        """Make ``state`` (``[2, 1, 128]``) the state the next call starts from."""
        np.copyto(self.state, state)

    def step(self, window: Float32Array) -> Float32Array:
        """Score one model input ``[context + window]``; return the probability as ``[1]``."""
        np.copyto(self._x[0], window)
        flip = self._flip
        try:
            self._run(self._bindings[flip]._iobinding, None)
        except Exception as exc:
            raise ModelError(f"Silero VAD inference failed: {exc}") from exc
        self._flip = flip ^ 1
        self.state = self._states[flip ^ 1]
        return self._out.reshape(1).copy()


class FastBackend:
    """onnxruntime sessions of the compact graphs, one per model rate (shared per process)."""

    name = "fast"

    def __init__(self, sessions: dict[int, Any]) -> None:
        self._sessions = sessions
        self.rates = tuple(sorted(sessions, reverse=True))
        self._shapes: dict[tuple[int, int], npt.NDArray[np.int64]] = {}
        self._ones: dict[int, npt.NDArray[np.int32]] = {}
        # the sessions' own run (skips the Python wrapper's per-call input validation)
        self._runs = {rate: _raw_run(session) for rate, session in sessions.items()}

    @classmethod
    def load(cls, rates: tuple[int, ...]) -> FastBackend:
        return cls({rate: _session(rate) for rate in rates})

    def stepper(self, model_rate: int, width: int) -> SingleStepper | None:
        """A :class:`SingleStepper` for one stream (``None`` when IOBinding is unavailable)."""
        session = self._sessions[model_rate]
        if not hasattr(getattr(session, "_sess", None), "run_with_iobinding"):
            return None
        return SingleStepper(session, width)

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
            shape = np.array([steps, batch, STATE_SIZE], dtype=np.int64)
            if len(self._shapes) < 1024:
                self._shapes[(steps, batch)] = shape
        if steps == 1:
            lens = self._ones.get(batch)
            if lens is None:
                lens = np.ones(batch, dtype=np.int32)
                if len(self._ones) < 1024:
                    self._ones[batch] = lens
        else:
            lens = lengths.astype(np.int32)
        if not state.flags.c_contiguous:
            state = np.ascontiguousarray(state)
        try:
            probs, h_n, c_n = self._runs[model_rate](
                {
                    "input": x.reshape(steps * batch, width),
                    "seq_shape": shape,
                    "h": state[0:1],
                    "c": state[1:2],
                    "lengths": lens,
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


_OUTPUTS = ["output", "h_n", "c_n"]


def _raw_run(session: Any) -> Any:
    """``feeds -> outputs`` for a session: its C++ ``run`` when reachable, else the public one."""
    inner = getattr(session, "_sess", None)
    if inner is not None and hasattr(inner, "run"):
        return lambda feeds: inner.run(_OUTPUTS, feeds, None)
    return lambda feeds: session.run(_OUTPUTS, feeds)
