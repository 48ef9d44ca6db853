"""Silero VAD v6.2 on onnxruntime: one model per process, cheap streams, batched inference.

Three objects:

* :class:`SileroVAD` -- the loaded model (``SileroVAD.load()``), shared by every stream in the
  process and safe to use from several threads (each stream from one thread at a time).
* :class:`VADStream` -- per-stream state: the 128-dim LSTM state (h and c), the 64-sample
  (32 at 8 kHz) context carried from the previous window, the input buffer and an optional
  resampler. Created by :meth:`SileroVAD.stream`.
* :meth:`SileroVAD.infer_ready` -- one batched inference over the windows that many streams
  have ready: the server and the framework adapters call ``stream.feed(chunk)`` per stream and
  then ``model.infer_ready(streams)`` once per tick. Results are bit-identical to running each
  stream alone with :meth:`VADStream.process`, and streams join, reset and leave at any time.

Window sizes: 512 samples (32 ms) at 16 kHz, 256 samples (32 ms) at 8 kHz. Every window is fed
to the model with the last 64 (32) samples of the previous window prepended -- zeros at the
start of a stream -- exactly as silero-vad's own ``OnnxWrapper`` does. Input at any rate other
than 8 or 16 kHz is resampled to 16 kHz with soxr (anti-aliased, chunking-invariant).

Two backends compute the same function: ``"onnx"`` runs Silero's own ``silero_vad.onnx``
unchanged (the ground truth) and ``"fast"`` runs a compact graph generated from the same weights
(``caesura/vad/_fast_build.py``) -- within 1e-4 of the reference, several times faster, and
batching whole window sequences into one onnxruntime call.

Hot paths (fast backend): a stream with one ready window (``process`` in real time, or a batch
of one) runs through its own preallocated onnxruntime IOBinding
(:class:`caesura.vad._fast.SingleStepper`: no per-call allocation or input conversion); a batch
where every stream has one window ready is gathered with one concatenation and scattered back
as views, with no per-stream array work beyond slicing. Other shapes take the general path
(window sequences of different lengths in one call). All paths run the same graph and kernels,
so their results are bit-identical.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import numpy.typing as npt

from caesura.audio import Resampler, resample, validate_audio, validate_sample_rate
from caesura.errors import (
    InvalidOptionError,
    ModelError,
    ModelIntegrityError,
    UnsupportedModelError,
    UnsupportedSampleRateError,
)

if TYPE_CHECKING:
    from caesura.vad._fast import FastBackend, SingleStepper

__all__ = [
    "BUNDLED_MODEL_SHA256",
    "CONTEXT_SIZES",
    "MODEL_RATES",
    "STATE_SIZE",
    "WINDOW_SIZES",
    "SileroVAD",
    "VADStream",
]

logger = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]
Backend = Literal["auto", "fast", "onnx"]

#: Sample rates the model runs at natively.
MODEL_RATES = (16000, 8000)
#: Samples per window at each model rate (32 ms).
WINDOW_SIZES = {16000: 512, 8000: 256}
#: Samples of the previous window prepended to each window at each model rate.
CONTEXT_SIZES = {16000: 64, 8000: 32}
#: Width of the LSTM state (h and c each).
STATE_SIZE = 128

#: sha256 of the vendored ``silero_vad.onnx`` (silero-vad 6.2.3, Silero VAD v6.2).
BUNDLED_MODEL_SHA256 = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"
_BUNDLED_MODEL = "silero_vad.onnx"
_ASSETS = "caesura.vad.assets"

#: Offline inference processes at most this many windows per backend call (bounded memory).
_OFFLINE_BLOCK = 2048
#: A user model must reproduce the bundled model's probe probabilities within this tolerance.
_PROBE_TOLERANCE = 1e-3


# --------------------------------------------------------------------------------------------
# assets and sessions
# --------------------------------------------------------------------------------------------


def _read_asset(name: str, sha256: str) -> bytes:
    """Read a vendored file and verify its sha256 (:class:`ModelIntegrityError` on mismatch)."""
    try:
        data = importlib.resources.files(_ASSETS).joinpath(name).read_bytes()
    except (OSError, ModuleNotFoundError) as exc:
        raise ModelError(f"bundled model file {name!r} is missing from the package: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ModelIntegrityError(
            f"bundled model file {name!r} is corrupt: sha256 {digest}, expected {sha256} "
            "(reinstall caesura)"
        )
    return data


def _session_options() -> Any:
    import onnxruntime as ort  # noqa: PLC0415

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def _make_session(model: bytes | str, what: str, *, error: type[ModelError] = ModelError) -> Any:
    import onnxruntime as ort  # noqa: PLC0415

    try:
        return ort.InferenceSession(
            model, sess_options=_session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... classes
        raise error(f"cannot load {what} with onnxruntime: {exc}") from exc


class ReferenceBackend:
    """Silero's ``silero_vad.onnx`` run by onnxruntime, one window step per ``run`` call."""

    name = "onnx"

    def __init__(self, session: Any, rates: tuple[int, ...]) -> None:
        self._session = session
        self.rates = rates
        self._sr = {rate: np.array(rate, dtype=np.int64) for rate in rates}

    def step(
        self, x: Float32Array, state: Float32Array, model_rate: int
    ) -> tuple[Float32Array, Float32Array]:
        """One window for each of B rows: ``x`` [B, context + window], ``state`` [2, B, 128]."""
        try:
            out, new_state = self._session.run(
                None, {"input": x, "state": state, "sr": self._sr[model_rate]}
            )
        except Exception as exc:
            raise ModelError(f"Silero VAD inference failed: {exc}") from exc
        return (
            np.asarray(out, dtype=np.float32).reshape(-1),
            np.asarray(new_state, dtype=np.float32),
        )

    def run(
        self,
        x: Float32Array,
        state: Float32Array,
        lengths: npt.NDArray[np.int64],
        model_rate: int,
    ) -> tuple[Float32Array, Float32Array]:
        """``x`` [T, B, L] (row b valid for t < lengths[b]) -> (probs [T, B], final state)."""
        steps, batch = x.shape[0], x.shape[1]
        probs = np.zeros((steps, batch), dtype=np.float32)
        state = np.array(state, dtype=np.float32, copy=True)
        for t in range(steps):
            active = np.flatnonzero(lengths > t)
            if active.size == batch:
                p, state = self.step(np.ascontiguousarray(x[t]), state, model_rate)
                probs[t] = p
            else:
                p, new = self.step(
                    np.ascontiguousarray(x[t, active]),
                    np.ascontiguousarray(state[:, active]),
                    model_rate,
                )
                probs[t, active] = p
                state[:, active] = new
        return probs, state


# --------------------------------------------------------------------------------------------
# model validation (user-supplied files)
# --------------------------------------------------------------------------------------------


def probe_signal(rate: int, seconds: float = 1.5) -> Float32Array:
    """A deterministic speech-like test signal (voiced harmonics with syllabic modulation,
    pauses and noise) used to check that a user-supplied model behaves like Silero v6.2."""
    n = int(rate * seconds)
    t = np.arange(n, dtype=np.float64) / rate
    rng = np.random.default_rng(20240601)
    f0 = 120.0 + 30.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * 3.5 * t), 0.0, None) ** 0.5
    gate = (t % 0.75) < 0.5  # speech bursts separated by pauses
    signal = 0.25 * voiced * syllables * gate + 0.01 * rng.standard_normal(n)
    return signal.astype(np.float32)


def _check_user_session(session: Any, path: str) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = session.get_outputs()
    expected = {"input", "state", "sr"}
    if set(inputs) != expected:
        raise UnsupportedModelError(
            f"{path} is not a supported Silero v6 model: inputs are {sorted(inputs)}, "
            f"expected {sorted(expected)} (Silero v5 exports such as silero_vad_half.onnx "
            "are not supported)"
        )
    state_shape = list(inputs["state"].shape)
    if len(state_shape) != 3 or state_shape[0] != 2 or state_shape[2] != STATE_SIZE:
        raise UnsupportedModelError(
            f"{path} is not a supported Silero v6 model: state shape {state_shape}, "
            f"expected [2, batch, {STATE_SIZE}]"
        )
    if inputs["input"].type != "tensor(float)" or inputs["sr"].type != "tensor(int64)":
        raise UnsupportedModelError(
            f"{path} is not a supported Silero v6 model: input types "
            f"{inputs['input'].type}/{inputs['sr'].type}, expected float/int64"
        )
    if len(outputs) != 2:
        raise UnsupportedModelError(
            f"{path} is not a supported Silero v6 model: {len(outputs)} outputs, expected 2"
        )


def _probe_probabilities(
    run_step: Any, rate: int, batch: int = 1
) -> tuple[Float32Array, tuple[int, ...]]:
    """Stream :func:`probe_signal` through ``run_step`` window by window (``batch`` copies)."""
    win, ctx = WINDOW_SIZES[rate], CONTEXT_SIZES[rate]
    audio = probe_signal(rate)
    state = np.zeros((2, batch, STATE_SIZE), dtype=np.float32)
    context = np.zeros(ctx, dtype=np.float32)
    probs = []
    shape: tuple[int, ...] = ()
    for i in range(len(audio) // win):
        window = audio[i * win : (i + 1) * win]
        x = np.tile(np.concatenate([context, window])[None, :], (batch, 1))
        p, state = run_step(x, state, rate)
        shape = tuple(state.shape)
        probs.append(np.asarray(p, dtype=np.float32).reshape(batch, -1)[:, 0])
        context = window[-ctx:]
    return np.stack(probs, axis=1), shape


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ModelInfo:
    path: str  # "<bundled>" or the user's path
    sha256: str
    backend: str
    rates: tuple[int, ...]


_CACHE: dict[tuple[str | None, str, tuple[int, ...]], SileroVAD] = {}
_CACHE_LOCK = threading.Lock()


class SileroVAD:
    """The Silero VAD v6.2 model. Load it once per process with :meth:`load` and share it.

    All methods are thread-safe: the model holds no per-stream state (that lives in
    :class:`VADStream`), and onnxruntime sessions may be run concurrently. A given stream must
    be used by one thread at a time.
    """

    def __init__(
        self,
        backend: ReferenceBackend | FastBackend,
        info: _ModelInfo,
    ) -> None:
        self._backend = backend
        self._info = info
        self._reference: ReferenceBackend | None = None

    # ---- loading ---------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        backend: Backend = "auto",
        sample_rates: Sequence[int] = MODEL_RATES,
        cache: bool = True,
    ) -> SileroVAD:
        """Load the model (cached: the same arguments return the same object).

        Args:
            path: ``None`` for the bundled ``silero_vad.onnx`` (verified by sha256, raising
                :class:`ModelIntegrityError` when the file is corrupt), or the path of a
                Silero v6.2 ONNX export of your own. A user file is checked: inputs
                ``input``/``state``/``sr``, state ``[2, B, 128]``, and a probe run at every
                rate in ``sample_rates`` whose probabilities must match the bundled model's
                (within 1e-3); anything else -- Silero v5 (``silero_vad_half.onnx``), a
                16 kHz-only export asked for 8 kHz (``silero_vad_16k_op15.onnx``), another
                network -- raises :class:`UnsupportedModelError`.
            backend: ``"fast"`` (the compact graph generated from the bundled weights; bundled
                model only), ``"onnx"`` (Silero's own graph, the reference), or ``"auto"``
                (fast for the bundled model, onnx for a user file).
            sample_rates: model rates to support, a subset of (16000, 8000) that contains
                16000. Streams at a rate the model was not loaded for are resampled to 16 kHz.
            cache: return a process-wide shared instance for identical arguments.
        """
        if backend not in ("auto", "fast", "onnx"):
            raise InvalidOptionError(f"backend must be 'auto', 'fast' or 'onnx', got {backend!r}")
        rates = _validate_model_rates(sample_rates)
        key_path = None if path is None else str(Path(path).resolve())
        key = (key_path, backend, rates)
        if cache:
            with _CACHE_LOCK:
                cached = _CACHE.get(key)
                if cached is not None:
                    return cached
                model = cls._load_uncached(path, backend, rates)
                _CACHE[key] = model
                return model
        return cls._load_uncached(path, backend, rates)

    @classmethod
    def _load_uncached(
        cls, path: str | os.PathLike[str] | None, backend: Backend, rates: tuple[int, ...]
    ) -> SileroVAD:
        if path is None:
            if backend in ("auto", "fast"):
                from caesura.vad._fast import FastBackend  # noqa: PLC0415

                fast = FastBackend.load(rates)
                info = _ModelInfo("<bundled>", BUNDLED_MODEL_SHA256, "fast", rates)
                logger.debug("loaded bundled Silero VAD (fast backend) at %s Hz", rates)
                return cls(fast, info)
            data = _read_asset(_BUNDLED_MODEL, BUNDLED_MODEL_SHA256)
            session = _make_session(data, "the bundled Silero VAD model")
            info = _ModelInfo("<bundled>", BUNDLED_MODEL_SHA256, "onnx", rates)
            logger.debug("loaded bundled Silero VAD (reference backend) at %s Hz", rates)
            return cls(ReferenceBackend(session, rates), info)

        p = os.fspath(path)
        if not os.path.isfile(p):
            raise FileNotFoundError(f"Silero VAD model file not found: {p}")
        with open(p, "rb") as fh:
            data = fh.read()
        digest = hashlib.sha256(data).hexdigest()
        if backend == "fast" and digest != BUNDLED_MODEL_SHA256:
            raise InvalidOptionError(
                "backend='fast' is built from the bundled model's weights; use backend='onnx' "
                f"(or 'auto') for the user model {p}"
            )
        if digest == BUNDLED_MODEL_SHA256 and backend in ("auto", "fast"):
            return cls._load_uncached(None, "fast", rates)
        session = _make_session(data, f"model file {p}", error=UnsupportedModelError)
        _check_user_session(session, p)
        user = ReferenceBackend(session, rates)
        if digest != BUNDLED_MODEL_SHA256:
            cls._probe(user, p, rates)
        logger.info("loaded Silero VAD model %s (sha256 %s) at %s Hz", p, digest[:12], rates)
        return cls(user, _ModelInfo(p, digest, "onnx", rates))

    @staticmethod
    def _probe(user: ReferenceBackend, path: str, rates: tuple[int, ...]) -> None:
        from caesura.vad._fast import FastBackend  # noqa: PLC0415

        reference = FastBackend.load(rates)
        for rate in rates:
            expected, _ = _probe_probabilities(reference.step, rate)
            try:
                got, shape = _probe_probabilities(user.step, rate, batch=2)
            except ModelError as exc:
                raise UnsupportedModelError(
                    f"{path} is not a supported Silero v6 model: it fails at {rate} Hz ({exc})"
                ) from exc
            if shape != (2, 2, STATE_SIZE) or got.shape[1] != expected.shape[1]:
                raise UnsupportedModelError(
                    f"{path} is not a supported Silero v6 model: state shape {shape} at {rate} Hz"
                )
            err = float(np.abs(got - expected[0]).max())
            if not err <= _PROBE_TOLERANCE:
                raise UnsupportedModelError(
                    f"{path} is not a supported Silero v6.2 model at {rate} Hz: its "
                    f"probabilities on the probe signal differ from Silero v6.2 by {err:.3g} "
                    f"(tolerance {_PROBE_TOLERANCE}); "
                    + (
                        "if this export only supports 16 kHz, load it with "
                        "sample_rates=(16000,) (8 kHz input is then resampled)"
                        if rate == 8000
                        else "only re-exports of Silero v6.2 are supported"
                    )
                )

    def _reference_backend(self) -> ReferenceBackend:
        """Silero's own graph for the same weights (the model itself when backend='onnx')."""
        if isinstance(self._backend, ReferenceBackend):
            return self._backend
        with _CACHE_LOCK:
            if self._reference is None:
                data = _read_asset(_BUNDLED_MODEL, BUNDLED_MODEL_SHA256)
                session = _make_session(data, "the bundled Silero VAD model")
                self._reference = ReferenceBackend(session, self.sample_rates)
            return self._reference

    # ---- properties ------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """``"fast"`` or ``"onnx"``."""
        return self._info.backend

    @property
    def path(self) -> str:
        """``"<bundled>"`` or the path of the user's model file."""
        return self._info.path

    @property
    def sha256(self) -> str:
        """sha256 of the ONNX file the weights come from."""
        return self._info.sha256

    @property
    def sample_rates(self) -> tuple[int, ...]:
        """Model rates this instance runs at natively (16000 and possibly 8000)."""
        return self._info.rates

    def __repr__(self) -> str:
        return (
            f"SileroVAD(path={self.path!r}, backend={self.backend!r}, "
            f"sample_rates={self.sample_rates})"
        )

    # ---- streams ---------------------------------------------------------------------------

    def stream(self, sample_rate: int = 16000, *, resample: bool = True) -> VADStream:
        """A new stream for mono audio at ``sample_rate``.

        8 kHz and 16 kHz run natively (model rate = input rate) when the model was loaded for
        that rate; any other rate (1 kHz .. 768 kHz) is resampled to 16 kHz with soxr when
        ``resample`` is true, else :class:`UnsupportedSampleRateError` is raised.
        """
        return VADStream(self, sample_rate, resample=resample)

    def infer_ready(self, streams: Sequence[VADStream]) -> list[Float32Array]:
        """Run every window the given streams have buffered (see :meth:`VADStream.feed`) in
        one batched inference and return each stream's probabilities, in order.

        A stream with k ready windows is run as k sequential steps; all streams step together
        (rows of one batch; 8 kHz and 16 kHz streams are batched separately). The result for
        each stream is bit-identical to calling :meth:`VADStream.process` on it alone. A stream
        with nothing ready gets an empty array. Each stream's :attr:`VADStream.last_windows`
        holds the audio of the windows just scored.
        """
        n = len(streams)
        for s in streams:
            if type(s) is not VADStream and not isinstance(s, VADStream):
                raise InvalidOptionError(f"infer_ready takes VADStream objects, got {type(s)}")
            if s._model is not self:
                raise InvalidOptionError("infer_ready got a stream created by another model")
            if s._closed:
                raise InvalidOptionError("infer_ready got a closed VADStream")
        if len({id(s) for s in streams}) != n:
            raise InvalidOptionError("infer_ready got the same stream twice")
        results: list[Float32Array] = [_EMPTY] * n
        ready = [i for i, s in enumerate(streams) if len(s._buf) >= s._ready_len]
        if not ready:
            return results
        rate = streams[ready[0]].model_rate
        if len(ready) == 1:
            i = ready[0]
            results[i] = self._run_one(streams[i])
            return results
        if any(streams[i].model_rate != rate for i in ready):
            by_rate: dict[int, list[int]] = {}
            for i in ready:
                by_rate.setdefault(streams[i].model_rate, []).append(i)
            groups = list(by_rate.items())
        else:
            groups = [(rate, ready)]
        for group_rate, idx in groups:
            group = [streams[i] for i in idx]
            probs = (
                [self._run_one(group[0])] if len(group) == 1 else self._run_batch(group, group_rate)
            )
            for i, p in zip(idx, probs, strict=True):
                results[i] = p
        return results

    def _run_one(self, stream: VADStream) -> Float32Array:
        """Every ready window of one stream (``process`` / ``flush`` / a batch of one)."""
        inputs = stream._take_windows()
        k = inputs.shape[0]
        if k == 1:
            stepper = stream._stepper
            if stepper is None:
                stepper = stream._stepper = self._new_stepper(stream)
            if stepper:  # the fast backend's per-stream IOBinding path
                if stream._state is not stepper.state:
                    stepper.load(stream._state)
                probs = stepper.step(inputs[0])
                stream._commit(stepper.state, inputs)
                return probs
            x = inputs.reshape(1, 1, inputs.shape[1])
            lengths = _ONE
        else:
            x = inputs.copy()[:, None, :]
            lengths = np.array([k], dtype=np.int64)
        all_probs, new_state = self._backend.run(x, stream._state, lengths, stream.model_rate)
        stream._commit(new_state, inputs)
        return all_probs[:, 0].copy()

    def _new_stepper(self, stream: VADStream) -> SingleStepper | Literal[False]:
        backend = self._backend
        if isinstance(backend, ReferenceBackend):
            return False
        stepper = backend.stepper(stream.model_rate, stream._ready_len)
        return False if stepper is None else stepper

    def _run_batch(self, group: list[VADStream], rate: int) -> list[Float32Array]:
        """Every ready window of several streams at one rate, as one backend call."""
        width = group[0]._ready_len
        bufs = [s._buf for s in group]
        batch = len(group)
        if all(len(b) < width + group[0].window_size for b in bufs):  # one window each
            x = np.concatenate([b[:width] for b in bufs]).reshape(batch, width)
            state = np.concatenate([s._state for s in group], axis=1)
            probs, new_state = self._backend.run(x[None], state, _ones(batch), rate)
            win = group[0].window_size
            # per-stream views: probabilities [1], model inputs [1, L], state [2, 1, 128]
            prob_rows = list(probs.reshape(batch, 1))
            input_rows = list(x.reshape(batch, 1, width))
            state_rows = list(new_state.reshape(2, batch, 1, STATE_SIZE).transpose(1, 0, 2, 3))
            for s, buf, inp, st in zip(group, bufs, input_rows, state_rows, strict=True):
                s._state = st
                s._last_inputs = inp
                s._buf = buf[win:]
                s._windows_processed += 1
            return prob_rows
        windows = [s._take_windows() for s in group]
        lengths = np.array([w.shape[0] for w in windows], dtype=np.int64)
        steps = int(lengths.max())
        x = np.zeros((steps, batch, width), dtype=np.float32)
        for b, w in enumerate(windows):
            x[: w.shape[0], b] = w
        state = np.concatenate([s._state for s in group], axis=1)
        probs, new_state = self._backend.run(x, state, lengths, rate)
        per_stream = probs.T.copy()  # [B, T]: each stream's values contiguous
        out = []
        for b, s in enumerate(group):
            s._commit(new_state[:, b : b + 1], windows[b])
            out.append(per_stream[b, : lengths[b]])
        return out

    # ---- offline ---------------------------------------------------------------------------

    def probabilities(
        self, audio: npt.NDArray[Any], sample_rate: int, *, reference: bool = False
    ) -> Float32Array:
        """Speech probability of every 32 ms window of a whole recording.

        ``audio``: 1-D int16/float32 mono at ``sample_rate``; 8/16 kHz run natively, other
        rates are resampled to 16 kHz in one pass (soxr). The last partial window is padded
        with zeros, as silero-vad's ``get_speech_timestamps`` does, so the result has
        ``ceil(len / window)`` values at the model rate. Window i covers model-rate samples
        ``[i * window, (i + 1) * window)``. The fast backend runs all windows' convolutional
        front end as one batch and the LSTM over the sequence; values agree with streaming to
        float32 rounding (not bit-for-bit). ``reference=True`` runs Silero's own graph window by
        window instead (bit-identical to silero-vad's ``OnnxWrapper``; slower).
        """
        backend = self._reference_backend() if reference else self._backend
        x = validate_audio(audio)
        rate = validate_sample_rate(sample_rate)
        model_rate = rate if rate in self.sample_rates else 16000
        if model_rate != rate:
            x = resample(x, rate, model_rate)
        win, ctx = WINDOW_SIZES[model_rate], CONTEXT_SIZES[model_rate]
        n = -(-len(x) // win)
        if n == 0:
            return _EMPTY.copy()
        padded = np.zeros(ctx + n * win, dtype=np.float32)
        padded[ctx : ctx + len(x)] = x
        frames = np.lib.stride_tricks.sliding_window_view(padded, ctx + win)[::win]
        state = np.zeros((2, 1, STATE_SIZE), dtype=np.float32)
        out = np.empty(n, dtype=np.float32)
        for start in range(0, n, _OFFLINE_BLOCK):
            block = np.ascontiguousarray(frames[start : start + _OFFLINE_BLOCK])
            k = block.shape[0]
            probs, state = backend.run(
                block[:, None, :], state, np.array([k], dtype=np.int64), model_rate
            )
            out[start : start + k] = probs[:, 0]
        return out

    def model_rate_for(self, sample_rate: int, *, resample: bool = True) -> int:
        """The model rate a stream at ``sample_rate`` runs at (raises when unsupported)."""
        rate = validate_sample_rate(sample_rate)
        if rate in self.sample_rates:
            return rate
        if not resample:
            raise UnsupportedSampleRateError(
                f"sample rate {rate} Hz is not supported without resampling; the model runs "
                f"at {' or '.join(map(str, self.sample_rates))} Hz (pass resample=True)"
            )
        return 16000


#: ``feed`` takes a contiguous float32 chunk of at most this many samples as it is when its dot
#: product with :data:`_FINITE_PROBE` is finite: NaN and inf propagate, and finite samples
#: (<= 3.4e38) scaled by 1e-20 cannot overflow the sum. Anything else -- other dtypes, longer
#: chunks (keeping BLAS single-threaded), bad samples -- goes through validate_audio, whose
#: checks and error messages are the reference.
_QUICK_CHECK_MAX = 8192
_FINITE_PROBE: Float32Array = np.full(_QUICK_CHECK_MAX, 1e-20, dtype=np.float32)
_FINITE_PROBE.setflags(write=False)
_F32 = np.dtype(np.float32)
_EMPTY: Float32Array = np.zeros(0, dtype=np.float32)
_EMPTY.setflags(write=False)
_ONE = np.ones(1, dtype=np.int64)
_ONE.setflags(write=False)
_ONES: dict[int, npt.NDArray[np.int64]] = {}


def _ones(batch: int) -> npt.NDArray[np.int64]:
    """``np.ones(batch, int64)``, cached (read-only) for the batch sizes in use."""
    ones = _ONES.get(batch)
    if ones is None:
        ones = np.ones(batch, dtype=np.int64)
        ones.setflags(write=False)
        if len(_ONES) < 1024:
            _ONES[batch] = ones
    return ones


def _validate_model_rates(sample_rates: Sequence[int]) -> tuple[int, ...]:
    try:
        rates = tuple(sorted({int(r) for r in sample_rates}, reverse=True))
    except (TypeError, ValueError) as exc:
        raise InvalidOptionError(f"sample_rates must be integers, got {sample_rates!r}") from exc
    if not rates or 16000 not in rates or not set(rates) <= set(MODEL_RATES):
        raise InvalidOptionError(
            f"sample_rates must be (16000,) or (16000, 8000), got {tuple(sample_rates)!r}"
        )
    return rates


# --------------------------------------------------------------------------------------------
# streams
# --------------------------------------------------------------------------------------------


class VADStream:
    """Per-stream state over a shared :class:`SileroVAD`. Create with :meth:`SileroVAD.stream`.

    Feed chunks of any size (1 sample to minutes; int16 or float32 mono; float64 converted) at
    the stream's ``sample_rate``. Audio is resampled to the model rate when needed, cut into
    windows of :attr:`window_size` samples, and each window is scored with the
    :attr:`context_size` samples before it. The probabilities do not depend on the chunking.

    Two ways to drive it:

    * ``probs = stream.process(chunk)`` -- buffer and score now (one stream);
    * ``stream.feed(chunk)`` for many streams, then ``model.infer_ready(streams)`` -- one batched
      inference for all of them, bit-identical to ``process``.

    Sample clock: :attr:`samples_processed` counts model-rate samples in scored windows; window
    ``i`` of the stream covers model-rate samples ``[i * window_size, (i + 1) * window_size)``.
    The resampler's output is time-aligned with its input (soxr compensates its delay), so
    model-rate sample ``n`` is input time ``n / model_rate`` seconds.
    """

    def __init__(self, model: SileroVAD, sample_rate: int, *, resample: bool = True) -> None:
        self._model = model
        self.sample_rate: int = validate_sample_rate(sample_rate)
        self.model_rate: int = model.model_rate_for(self.sample_rate, resample=resample)
        self.window_size: int = WINDOW_SIZES[self.model_rate]
        self.context_size: int = CONTEXT_SIZES[self.model_rate]
        self._resampler = (
            Resampler(self.sample_rate, self.model_rate)
            if self.sample_rate != self.model_rate
            else None
        )
        self._closed = False
        # the fast backend's per-stream single-window runner (created on first use; False
        # when the backend has none)
        self._stepper: SingleStepper | Literal[False] | None = None
        self.reset()

    # ---- state -----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything: LSTM state, context, buffered audio, resampler, counters."""
        self._state: Float32Array = np.zeros((2, 1, STATE_SIZE), dtype=np.float32)
        # the context (last samples of the previous window, zeros at the start) followed by
        # the samples not yet scored: window j's model input is _buf[j*win : j*win + ctx + win]
        self._buf: Float32Array = np.zeros(self.context_size, dtype=np.float32)
        self._ready_len = self.context_size + self.window_size
        self._last_inputs: Float32Array = np.zeros((0, self._ready_len), dtype=np.float32)
        self._windows_processed = 0
        if self._resampler is not None:
            self._resampler.reset()

    def close(self) -> None:
        """Release the stream; any later call raises :class:`InvalidOptionError`."""
        self._closed = True
        self._buf = np.zeros(self.context_size, dtype=np.float32)
        self._resampler = None
        self._stepper = None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def model(self) -> SileroVAD:
        return self._model

    @property
    def resampling(self) -> bool:
        """Whether input is resampled to the model rate."""
        return self.sample_rate != self.model_rate

    @property
    def windows_processed(self) -> int:
        """Windows scored since creation or the last :meth:`reset`."""
        return self._windows_processed

    @property
    def samples_processed(self) -> int:
        """Model-rate samples covered by scored windows (``windows_processed * window_size``)."""
        return self._windows_processed * self.window_size

    @property
    def pending_windows(self) -> int:
        """Complete windows buffered and waiting for inference."""
        return (len(self._buf) - self.context_size) // self.window_size

    @property
    def pending_samples(self) -> int:
        """Model-rate samples buffered (complete windows plus the partial one)."""
        return len(self._buf) - self.context_size

    @property
    def last_windows(self) -> Float32Array:
        """Model-rate audio ``[k, window_size]`` of the windows scored by the latest
        :meth:`process` / :meth:`flush` / :meth:`SileroVAD.infer_ready` call (read-only)."""
        windows = self._last_inputs[:, self.context_size :]
        windows.flags.writeable = False
        return windows

    @property
    def state(self) -> Float32Array:
        """A copy of the LSTM state ``[2, 1, 128]`` (h, c)."""
        return self._state.copy()

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidOptionError("this VADStream is closed")

    # ---- input -----------------------------------------------------------------------------

    def feed(self, chunk: npt.NDArray[Any]) -> int:
        """Buffer a chunk (no inference); return the number of complete windows now ready."""
        if self._closed:
            raise InvalidOptionError("this VADStream is closed")
        if (
            type(chunk) is np.ndarray
            and chunk.dtype is _F32
            and chunk.ndim == 1
            and chunk.flags.c_contiguous
            and chunk.size <= _QUICK_CHECK_MAX
            and math.isfinite(chunk.dot(_FINITE_PROBE[: chunk.size]))
        ):
            x: Float32Array = chunk
        else:
            x = validate_audio(chunk, name="chunk")
        if self._resampler is not None:
            x = self._resampler.process(x)
        if x.size:
            self._buf = np.concatenate((self._buf, x))
        return (len(self._buf) - self.context_size) // self.window_size

    @overload
    def process(
        self, chunk: npt.NDArray[Any], *, return_audio: Literal[False] = False
    ) -> Float32Array: ...

    @overload
    def process(
        self, chunk: npt.NDArray[Any], *, return_audio: Literal[True]
    ) -> tuple[Float32Array, Float32Array]: ...

    def process(
        self, chunk: npt.NDArray[Any], *, return_audio: bool = False
    ) -> Float32Array | tuple[Float32Array, Float32Array]:
        """Feed a chunk and score every window it completes.

        Returns the probabilities (float32, one per completed window, possibly none); with
        ``return_audio=True`` also the model-rate audio of those windows, ``[k, window_size]``.
        """
        self.feed(chunk)
        probs = self._infer()
        return (probs, self.last_windows) if return_audio else probs

    @overload
    def flush(self, *, return_audio: Literal[False] = False) -> Float32Array: ...

    @overload
    def flush(self, *, return_audio: Literal[True]) -> tuple[Float32Array, Float32Array]: ...

    def flush(
        self, *, return_audio: bool = False
    ) -> Float32Array | tuple[Float32Array, Float32Array]:
        """End of stream: drain the resampler, zero-pad the last partial window and score what
        is left (as ``get_speech_timestamps`` does with a file's tail). The stream then keeps
        its counters but holds no audio; call :meth:`reset` before reusing it for new audio."""
        self._check_open()
        if self._resampler is not None:
            tail = self._resampler.flush()
            if tail.size:
                self._buf = np.concatenate((self._buf, tail))
        rest = self.pending_samples % self.window_size
        if rest:
            pad = np.zeros(self.window_size - rest, dtype=np.float32)
            self._buf = np.concatenate((self._buf, pad))
        probs = self._infer()
        return (probs, self.last_windows) if return_audio else probs

    def _infer(self) -> Float32Array:
        if len(self._buf) < self._ready_len:
            self._last_inputs = np.zeros((0, self._ready_len), dtype=np.float32)
            return _EMPTY.copy()
        return self._model._run_one(self)

    # ---- used by SileroVAD -----------------------------------------------------------------

    def _take_windows(self) -> Float32Array:
        """Model inputs ``[k, context + window]`` of the k ready windows (a read-only view)."""
        win = self.window_size
        k = (len(self._buf) - self.context_size) // win
        if k == 1:
            return self._buf[: self._ready_len].reshape(1, self._ready_len)
        buf = self._buf
        return np.lib.stride_tricks.as_strided(
            buf,
            shape=(k, self._ready_len),
            strides=(win * buf.itemsize, buf.itemsize),
            writeable=False,
        )

    def _commit(self, state: Float32Array, inputs: Float32Array) -> None:
        # ``state`` may be a view into the batch's output; ``inputs`` views ``_buf``, which is
        # never written in place (feeding concatenates), so both are kept without copying.
        k = inputs.shape[0]
        self._state = state
        self._last_inputs = inputs
        self._buf = self._buf[k * self.window_size :]
        self._windows_processed += k

    def __repr__(self) -> str:
        return (
            f"VADStream(sample_rate={self.sample_rate}, model_rate={self.model_rate}, "
            f"windows_processed={self._windows_processed}, closed={self._closed})"
        )
