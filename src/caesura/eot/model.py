"""The semantic end-of-turn model at run time: onnxruntime + tokenizers, no torch.

>>> model = EndOfTurnModel.load()
>>> model.predict([{"role": "assistant", "content": "What time works for you?"},
...                {"role": "user", "content": "tomorrow at"}])  # doctest: +SKIP
0.03

The bundled model is a small causal language model over the linearised dialogue; the score
is its probability that ``<|eot|>`` (end of turn) comes next after the user's words.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from caesura.eot._text import EOT, PAD, clean_text, linearise, read_window
from caesura.errors import (
    InvalidOptionError,
    ModelError,
    ModelIntegrityError,
    UnsupportedLanguageError,
    UnsupportedModelError,
)

__all__ = [
    "MAX_TURN_CHARS",
    "EndOfTurnModel",
    "EotOptions",
    "EotStream",
    "EotStreamPool",
    "Turn",
    "TurnLike",
    "normalize_language",
]

logger = logging.getLogger(__name__)

_ASSETS = "caesura.eot.assets"
_FILES = ("model.onnx", "tokenizer.json", "config.json")
# EndOfTurnModel.load(cache=True): one model per (folder, threads, max_tokens) per process
_CACHE: dict[tuple[object, ...], EndOfTurnModel] = {}
_CACHE_LOCK = threading.Lock()
#: Only the last this-many characters of a turn are read (a huge text cannot stall a call).
MAX_TURN_CHARS = 2000
#: Only the last this-many turns are read (the model's context is ~128 tokens anyway).
MAX_TURNS = 8
_ROLES = {"user": "user", "human": "user", "assistant": "agent", "agent": "agent", "bot": "agent"}
_SKIPPED_ROLES = frozenset({"system", "developer", "tool", "function"})
_LANGUAGE_NAMES = {"english": "en", "eng": "en"}


@dataclass(frozen=True)
class Turn:
    """One dialogue turn: ``role`` is ``"user"``, ``"assistant"``/``"agent"`` or ``"system"``."""

    role: str
    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.role, str) or not isinstance(self.text, str):
            raise InvalidOptionError("Turn(role, text) takes two strings")


TurnLike = Turn | Mapping[str, Any]


@dataclass(frozen=True)
class EotOptions:
    """Run-time options: ``num_threads`` onnxruntime intra-op threads (1 is fastest per call
    when several calls run in parallel); ``max_tokens`` the most context tokens read (< the
    model's trained context: one position stays free for a pending word; default: the
    model config's ``read_tokens``)."""

    num_threads: int = 1
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.num_threads, int) or isinstance(self.num_threads, bool):
            raise InvalidOptionError(f"num_threads must be an int, got {self.num_threads!r}")
        if not 1 <= self.num_threads <= 64:
            raise InvalidOptionError(f"num_threads must be in [1, 64], got {self.num_threads}")
        if self.max_tokens is not None and (
            not isinstance(self.max_tokens, int) or self.max_tokens < 8
        ):
            raise InvalidOptionError(f"max_tokens must be an int ≥ 8, got {self.max_tokens!r}")


def normalize_language(language: str | None) -> str | None:
    """``"en-US"``, ``"EN"``, ``"english"``, ``"en_GB"`` → ``"en"``; ``None`` stays ``None``."""
    if language is None:
        return None
    if not isinstance(language, str) or not language.strip():
        raise InvalidOptionError(f"language must be a non-empty string or None, got {language!r}")
    tag = language.strip().lower().replace("_", "-")
    tag = _LANGUAGE_NAMES.get(tag, tag)
    return tag.split("-", 1)[0]


def empty_past(session: Any, batch: int = 1) -> npt.NDArray[np.float32] | None:
    """The ``past`` input of a fresh context (keys and values of no earlier tokens) for an
    exported end-of-turn graph's onnxruntime ``session``; ``None`` for a graph exported
    without keys and values in and out."""
    inputs = {i.name: i.shape for i in session.get_inputs()}
    if "past" not in inputs or "present" not in {o.name for o in session.get_outputs()}:
        return None
    layers, two, _, heads, _, head_dim = inputs["past"]
    return np.zeros((int(layers), int(two), batch, int(heads), 0, int(head_dim)), np.float32)


def _read_bytes(path: Path | None, name: str) -> bytes:
    try:
        if path is None:
            return importlib.resources.files(_ASSETS).joinpath(name).read_bytes()
        return (path / name).read_bytes()
    except (OSError, ModuleNotFoundError) as exc:
        where = "the package" if path is None else str(path)
        raise ModelError(f"end-of-turn model file {name!r} is missing from {where}: {exc}") from exc


def _turn_fields(turn: object, i: int) -> tuple[str, str]:
    if isinstance(turn, Turn):
        return turn.role, turn.text
    if isinstance(turn, Mapping):
        role = turn.get("role")
        text = turn.get("content", turn.get("text"))
        if not isinstance(role, str):
            raise InvalidOptionError(f"turn {i}: 'role' must be a string, got {role!r}")
        if not isinstance(text, str):
            raise InvalidOptionError(
                f"turn {i}: 'content' must be a string, got {type(text).__name__}"
            )
        return role, text
    raise InvalidOptionError(
        f"turn {i}: expected a Turn or a {{'role', 'content'}} mapping, got {type(turn).__name__}"
    )


def _prepare(turns: Sequence[TurnLike]) -> list[tuple[str, str]]:
    """Validate and normalise a dialogue: roles mapped, system turns dropped, same-role turns
    merged, texts cleaned and bounded; the last turn must be the user's and non-empty."""
    if isinstance(turns, (str, bytes)) or not isinstance(turns, Sequence):
        raise InvalidOptionError(
            "turns must be a sequence of {'role', 'content'} mappings or Turn objects, "
            f"got {type(turns).__name__}"
        )
    if len(turns) == 0:
        raise InvalidOptionError("no turns to score: pass at least the user's current turn")
    out: list[tuple[str, str]] = []
    for i, turn in enumerate(turns[-4 * MAX_TURNS :]):
        role, text = _turn_fields(turn, i)
        key = role.strip().lower()
        if key in _SKIPPED_ROLES:
            continue
        if key not in _ROLES:
            raise InvalidOptionError(
                f"turn {i}: unknown role {role!r} (use 'user', 'assistant'/'agent' or 'system')"
            )
        mapped = _ROLES[key]
        body = clean_text(text[-MAX_TURN_CHARS:])
        if out and out[-1][0] == mapped:
            out[-1] = (mapped, f"{out[-1][1]} {body}".strip())
        else:
            out.append((mapped, body))
    if not out or out[-1][0] != "user":
        raise InvalidOptionError("the last (non-system) turn must be the user's turn to score")
    if not out[-1][1]:
        raise InvalidOptionError("the user's turn is empty: there is nothing to score")
    return [(r, t[-MAX_TURN_CHARS:]) for r, t in out[-MAX_TURNS:] if t or r == "user"]


class EndOfTurnModel:
    """P(the user has finished their turn) from the recent transcript. Thread-safe."""

    def __init__(
        self,
        session: Any,
        tokenizer: Any,
        config: Mapping[str, Any],
        options: EotOptions,
    ) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._config = dict(config)
        self._options = options
        context = int(config["context"])  # positions the model was trained on
        default = int(config.get("read_tokens", context))  # the window read by default
        # one position stays free for the word to come (words_pending)
        self._max_tokens = min(context - 1, options.max_tokens or default)
        # the window starts on a grid of this many tokens (1: it slides token by token)
        self._hop = max(1, min(int(config.get("window_hop", 1)), self._max_tokens // 2))
        self._pad_id = int(config["pad_id"])
        self._languages = frozenset(str(x) for x in config["languages"])
        self._thresholds = {str(k): float(v) for k, v in config["thresholds"].items()}
        self._lock = threading.Lock()  # guards the tokenizer (the ORT session is thread-safe)
        inputs = {i.name for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        self._has_slots = "next_slots" in inputs
        # keys and values of no earlier tokens (one row); None: the graph takes none
        self._fresh_past = empty_past(session)
        self._next_words = (
            int(config.get("pending_candidates", 0))
            if self._has_slots and "p_eot_next" in outputs
            else 0
        )
        self._no_slots = np.zeros(0, dtype=np.float32)
        self._slots = np.zeros(self._next_words, dtype=np.float32)

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        num_threads: int = 1,
        max_tokens: int | None = None,
        cache: bool = True,
    ) -> EndOfTurnModel:
        """Load the bundled model (``path=None``) or an exported model folder.

        Every file is checked against ``sha256.json``: a mismatch raises
        :class:`~caesura.errors.ModelIntegrityError`. ``cache``: return the process-wide
        instance for the same arguments (like ``SileroVAD.load()``): the model is safe to
        share between threads, and each conversation opens its own :meth:`stream`.
        """
        options = EotOptions(num_threads=num_threads, max_tokens=max_tokens)
        folder = None if path is None else Path(path)
        if folder is not None and not folder.is_dir():
            raise ModelError(f"end-of-turn model folder not found: {folder}")
        if not cache:
            return cls._load_uncached(folder, options)
        key: tuple[object, ...] = (None, num_threads, max_tokens)
        if folder is not None:
            # a folder's files rewritten since (a re-export) load and verify afresh
            stats = [
                (folder / n).stat() for n in ("sha256.json", *_FILES) if (folder / n).is_file()
            ]
            files = tuple((st.st_size, st.st_mtime_ns) for st in stats)
            key = (str(folder.resolve()), num_threads, max_tokens, files)
        with _CACHE_LOCK:
            model = _CACHE.get(key)
            if model is None:
                model = _CACHE[key] = cls._load_uncached(folder, options)
            return model

    @classmethod
    def _load_uncached(cls, folder: Path | None, options: EotOptions) -> EndOfTurnModel:
        sums_raw = _read_bytes(folder, "sha256.json")
        try:
            sums = json.loads(sums_raw)
        except ValueError as exc:
            raise ModelIntegrityError(f"sha256.json is not valid JSON: {exc}") from exc
        blobs: dict[str, bytes] = {}
        for name in _FILES:
            data = _read_bytes(folder, name)
            digest = hashlib.sha256(data).hexdigest()
            if sums.get(name) != digest:
                raise ModelIntegrityError(
                    f"end-of-turn model file {name!r} is corrupt: sha256 {digest}, "
                    f"expected {sums.get(name)} (reinstall caesura or re-export the model)"
                )
            blobs[name] = data
        config = json.loads(blobs["config.json"])
        if config.get("format") != "caesura-eot" or int(config.get("version", 0)) != 1:
            raise UnsupportedModelError(
                f"not a caesura end-of-turn model (format {config.get('format')!r}, "
                f"version {config.get('version')!r})"
            )
        from tokenizers import Tokenizer  # noqa: PLC0415

        tokenizer = Tokenizer.from_str(blobs["tokenizer.json"].decode("utf-8"))
        if tokenizer.token_to_id(EOT) != int(config["eot_id"]) or tokenizer.token_to_id(PAD) != int(
            config["pad_id"]
        ):
            raise UnsupportedModelError("tokenizer and config disagree on the special tokens")
        import onnxruntime as ort  # noqa: PLC0415

        so = ort.SessionOptions()
        so.intra_op_num_threads = options.num_threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                blobs["model.onnx"], sess_options=so, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception classes
            raise ModelError(f"cannot load the end-of-turn model with onnxruntime: {exc}") from exc
        logger.debug("loaded end-of-turn model %s", config.get("name"))
        return cls(session, tokenizer, config, options)

    # ---------------------------------------------------------------- metadata
    @property
    def config(self) -> dict[str, Any]:
        """The model's config (architecture, context, thresholds, languages, metrics)."""
        return dict(self._config)

    @property
    def max_tokens(self) -> int:
        """The most context tokens read per prediction (the last ones of the dialogue)."""
        return self._max_tokens

    @property
    def window_hop(self) -> int:
        """The read window starts on a grid of this many tokens of the dialogue (so a
        dialogue that grows keeps its window, and an :class:`EotStream` its cache): a long
        dialogue is read from its last ``max_tokens - window_hop + 1`` to ``max_tokens``
        tokens. 1 for a model exported without a hop (the window slides token by token)."""
        return self._hop

    @property
    def supports_pending_words(self) -> bool:
        """Whether ``words_pending=True`` scoring is available (the bundled model: yes)."""
        return self._next_words > 0

    @property
    def languages(self) -> frozenset[str]:
        """Primary language subtags the model was trained for (``{"en"}``)."""
        return self._languages

    def supports_language(self, language: str | None) -> bool:
        """``True`` for a language the model was trained for (``"en"``, ``"en-US"``,
        ``"English"``, case-insensitive) and for ``None`` (unknown: assumed English).
        ``"multi"`` (code-switching / unknown mix) and other languages are ``False``."""
        lang = normalize_language(language)
        return lang is None or lang in self._languages

    def unlikely_threshold(self, language: str | None = None) -> float | None:
        """Below this probability the turn is unlikely to be over (chosen at export on every
        corpus's val set — conversation pauses, written turns, commands — for the smallest
        worst-set loss of balanced accuracy; the model card says how); ``None`` for an
        unsupported language."""
        lang = normalize_language(language)
        if lang is None:
            lang = sorted(self._languages)[0]
        return self._thresholds.get(lang) if lang in self._languages else None

    def _check_language(self, language: str | None) -> None:
        if not self.supports_language(language):
            raise UnsupportedLanguageError(
                f"the end-of-turn model was trained for {sorted(self._languages)} only, "
                f"not {language!r}; fall back to silence-based endpointing"
            )

    # ---------------------------------------------------------------- scoring
    def encode(self, turns: Sequence[TurnLike]) -> list[int]:
        """The token ids the model reads for ``turns``: the dialogue's tokens from the last
        window start (:attr:`window_hop`) that leaves at most :attr:`max_tokens`."""
        text = linearise(_prepare(turns), close_last=False)
        with self._lock:
            ids: list[int] = self._tokenizer.encode(text).ids
        return self._window(ids)

    def _encode_memo(
        self, turns: Sequence[TurnLike], memo: dict[tuple[str, str, bool], list[int]]
    ) -> list[int]:
        """:meth:`encode`, tokenising only the turns that are not in ``memo`` (which is
        replaced by this dialogue's turns). Equal to :meth:`encode`: special tokens are split
        off before the byte-level pre-tokeniser, so no token spans two turns."""
        prepared = _prepare(turns)
        last = len(prepared) - 1
        keys = [(role, text, i < last) for i, (role, text) in enumerate(prepared)]
        missing = [k for k in keys if k not in memo]
        if missing:
            texts = [linearise([(role, text)], close_last=closed) for role, text, closed in missing]
            with self._lock:
                encs = self._tokenizer.encode_batch(texts)
            memo.update(zip(missing, (e.ids for e in encs), strict=True))
        ids = [i for k in keys for i in memo[k]]
        kept = {k: memo[k] for k in keys}
        memo.clear()
        memo.update(kept)
        return self._window(ids)

    def _window(self, ids: list[int]) -> list[int]:
        return read_window(ids, self._max_tokens, self._hop)

    def _check_pending(self, words_pending: bool) -> None:
        if not isinstance(words_pending, bool):
            raise InvalidOptionError(f"words_pending must be a bool, got {words_pending!r}")
        if words_pending and not self._next_words:
            raise UnsupportedModelError(
                "this end-of-turn model was exported without next-word scoring "
                "(words_pending=True); re-export it with this version of caesura.train"
            )

    def _run(
        self, batch: Sequence[Sequence[int]], *, words_pending: bool = False
    ) -> npt.NDArray[np.float32]:
        width = max(len(ids) for ids in batch)
        x = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        m = np.zeros((len(batch), width), dtype=np.int64)
        for r, ids in enumerate(batch):
            x[r, width - len(ids) :] = ids
            m[r, width - len(ids) :] = 1
        past = self._fresh_past
        if past is not None and len(batch) > 1:
            past = np.zeros((*past.shape[:2], len(batch), *past.shape[3:]), dtype=np.float32)
        p, _ = self._session_run(x, m, past, words_pending, want_present=False)
        return p

    def _session_run(
        self,
        x: npt.NDArray[np.int64],
        mask: npt.NDArray[np.int64],
        past: npt.NDArray[np.float32] | None,
        words_pending: bool,
        *,
        want_present: bool,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        feed: dict[str, npt.NDArray[Any]] = {"input_ids": x, "attention_mask": mask}
        if self._has_slots:
            feed["next_slots"] = self._slots if words_pending else self._no_slots
        if past is not None:
            feed["past"] = past
        outputs = ["p_eot_next" if words_pending else "p_eot"]
        if want_present:
            outputs.append("present")
        try:
            result = self._session.run(outputs, feed)
        except Exception as exc:  # onnxruntime raises its own exception classes
            raise ModelError(f"end-of-turn model failed: {exc}") from exc
        p = np.clip(np.asarray(result[0], dtype=np.float32).reshape(-1), 0.0, 1.0)
        return p, (np.asarray(result[1], dtype=np.float32) if want_present else None)

    def stream(self) -> EotStream:
        """A scorer for one growing dialogue (one conversation) that keeps the keys and
        values of the tokens it read last time: when the next call's window starts with
        them — the same dialogue with more words, the usual case in a voice agent — only the
        new tokens are computed (~1 ms instead of ~7 ms for a 120-token window on one core).
        Streams are cheap; the model's session is shared. See :class:`EotStream`."""
        return EotStream(self)

    def stream_pool(self, size: int = 8) -> EotStreamPool:
        """Up to ``size`` streams for calls that do not say which conversation they belong to:
        each call runs on the stream that already holds the longest start of its dialogue
        (see :class:`EotStreamPool`). Use :meth:`stream` when you know the conversation."""
        return EotStreamPool(self, size)

    def predict(
        self,
        turns: Sequence[TurnLike],
        *,
        language: str | None = None,
        words_pending: bool = False,
    ) -> float:
        """P(the user's last turn is complete), in [0, 1].

        ``turns``: the dialogue so far, oldest first, each a ``{"role", "content"}`` mapping
        (OpenAI style) or a :class:`Turn`; the last non-system turn must be the user's
        (the one being scored). System turns are ignored; consecutive turns of one role are
        joined.

        ``words_pending=True``: the user spoke after the transcript's last word (the speech
        recogniser has not delivered it yet). The score is then P(the turn ends after one
        more word): the model's likeliest next words (``config["pending_candidates"]``),
        each scored, averaged by their probabilities. Scoring the stale text as if it were
        complete ranks turn ends far worse (Switchboard, see the model card).

        Raises :class:`~caesura.errors.UnsupportedLanguageError` for a language the
        model was not trained for and :class:`~caesura.errors.InvalidOptionError` for bad
        input (no turns, an empty user turn, a non-string text, an unknown role).
        """
        self._check_language(language)
        self._check_pending(words_pending)
        ids = self.encode(turns)
        return float(self._run([ids], words_pending=words_pending)[0])

    def predict_many(
        self,
        dialogues: Sequence[Sequence[TurnLike]],
        *,
        language: str | None = None,
        batch_size: int = 1,
        words_pending: bool = False,
    ) -> list[float]:
        """:meth:`predict` for several dialogues (tokenised together).

        With the default ``batch_size=1`` every dialogue runs alone and the results equal
        :meth:`predict`'s exactly. A larger ``batch_size`` runs left-padded batches, a little
        faster for offline scoring, but the int8 model quantises its activations per call, so
        scores then move by up to a few hundredths depending on the other dialogues in the batch.
        """
        self._check_language(language)
        self._check_pending(words_pending)
        if isinstance(dialogues, (str, bytes)) or not isinstance(dialogues, Sequence):
            raise InvalidOptionError("dialogues must be a sequence of turn sequences")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidOptionError(f"batch_size must be a positive int, got {batch_size!r}")
        texts = [linearise(_prepare(d), close_last=False) for d in dialogues]
        with self._lock:
            encs = self._tokenizer.encode_batch(texts)
        ids = [self._window(e.ids) for e in encs]
        out = np.empty(len(ids), dtype=np.float32)
        order = np.argsort([len(x) for x in ids], kind="stable")
        for s in range(0, len(ids), batch_size):
            idx = order[s : s + batch_size]
            out[idx] = self._run([ids[i] for i in idx], words_pending=words_pending)
        return [float(v) for v in out]


class _OnModel:
    """What a stream or a pool answers on behalf of its model (the turn engine and the
    adapters ask a scorer these)."""

    _model: EndOfTurnModel

    @property
    def model(self) -> EndOfTurnModel:
        """The :class:`EndOfTurnModel` this scores with."""
        return self._model

    @property
    def supports_pending_words(self) -> bool:
        return self._model.supports_pending_words

    def supports_language(self, language: str | None) -> bool:
        return self._model.supports_language(language)

    def unlikely_threshold(self, language: str | None = None) -> float | None:
        return self._model.unlikely_threshold(language)

    def predict(
        self,
        turns: Sequence[TurnLike],
        *,
        language: str | None = None,
        words_pending: bool = False,
    ) -> float:
        """Same arguments, errors and meaning as :meth:`EndOfTurnModel.predict`."""
        self._model._check_language(language)
        self._model._check_pending(words_pending)
        return self._score(turns, words_pending)

    def _score(self, turns: Sequence[TurnLike], words_pending: bool) -> float:
        raise NotImplementedError


class EotStream(_OnModel):
    """:meth:`EndOfTurnModel.predict` for one growing dialogue, computing only what is new.

    >>> stream = EndOfTurnModel.load().stream()  # one per conversation
    >>> stream.predict([{"role": "user", "content": "i would like to"}])  # doctest: +SKIP
    >>> stream.predict([{"role": "user", "content": "i would like to book"}])  # doctest: +SKIP

    Each call reads the same window :meth:`EndOfTurnModel.predict` reads; the keys and values
    of the tokens it shares with the previous call's window (their common start) are reused,
    so a call costs the new tokens only (and the next-word candidates with
    ``words_pending``). Scores equal :meth:`EndOfTurnModel.predict`'s up to the int8 model's
    activation rounding (it quantises each call's activations): a few thousandths on
    average, a few hundredths at most. Memory: the last window's keys and values (~0.4 MB
    for the bundled model). Thread-safe (calls are serialised); for unrelated dialogues use
    one stream each.
    """

    def __init__(self, model: EndOfTurnModel) -> None:
        self._model = model
        self._lock = threading.Lock()
        self._ids: list[int] = []
        self._present: npt.NDArray[np.float32] | None = None
        self._computed = 0
        self._memo: dict[tuple[str, str, bool], list[int]] = {}  # the last dialogue's turns

    def reset(self) -> None:
        """Forget the cached window (the next call computes its window in full)."""
        with self._lock:
            self._ids, self._present = [], None
            self._memo.clear()

    @property
    def cached_tokens(self) -> int:
        """How many tokens' keys and values the stream holds (the last call's window)."""
        return len(self._ids)

    @property
    def computed_tokens(self) -> int:
        """How many tokens the last call ran through the model (the rest of its window came
        from the cache); 0 before the first call."""
        return self._computed

    def _score(self, turns: Sequence[TurnLike], words_pending: bool) -> float:
        with self._lock:
            ids = self._model._encode_memo(turns, self._memo)
            return self._run_ids(ids, words_pending)

    def _shared_start(self, ids: list[int]) -> int:
        """How many of ``ids``' first tokens the cached window holds."""
        n = 0
        for a, b in zip(self._ids, ids, strict=False):
            if a != b:
                break
            n += 1
        return n

    def _run_ids(self, ids: list[int], words_pending: bool) -> float:
        """Score a window, reusing the cached start; the caller holds ``self._lock``."""
        model = self._model
        if model._fresh_past is None:  # exported without keys/values in and out
            self._computed = len(ids)
            return float(model._run([ids], words_pending=words_pending)[0])
        # at least one token runs: its output is the score
        reuse = min(self._shared_start(ids), len(ids) - 1)
        if reuse > 0 and self._present is not None:
            past = self._present[:, :, :, :, :reuse, :]
        else:
            past, reuse = model._fresh_past, 0
        x = np.asarray([ids[reuse:]], dtype=np.int64)
        mask = np.ones((1, len(ids)), dtype=np.int64)
        self._ids, self._present = [], None  # a failed call leaves nothing stale
        p, present = model._session_run(x, mask, past, words_pending, want_present=True)
        self._ids, self._present, self._computed = ids, present, len(ids) - reuse
        return float(p[0])


class EotStreamPool(_OnModel):
    """Streams for callers that do not say which conversation a call belongs to — a LiveKit
    turn detector shared by every session of a worker, an HTTP endpoint.

    Each call runs on the idle stream whose cached window shares the longest start with its
    own (at least 16 tokens, or half the window; else a new stream or the least recently used
    one), so a conversation that asks again finds its keys
    and values even when other conversations asked in between. Up to ``size`` streams
    (~0.4 MB each for the bundled model); concurrent calls run on different streams.
    Thread-safe; scores as :meth:`EndOfTurnModel.predict` (see :class:`EotStream`).
    """

    def __init__(self, model: EndOfTurnModel, size: int = 8) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidOptionError(f"size must be a positive int, got {size!r}")
        self._model = model
        self._size = size
        self._lock = threading.Lock()
        self._idle: list[EotStream] = []  # least recently used first
        self._streams = 0
        self._calls = 0
        self._computed = 0
        self._window = 0

    @property
    def stats(self) -> dict[str, int]:
        """Counters since creation: ``calls``, ``streams`` (created), ``window_tokens`` (read)
        and ``computed_tokens`` (run through the model; the rest came from the caches)."""
        with self._lock:
            return {
                "calls": self._calls,
                "streams": self._streams,
                "window_tokens": self._window,
                "computed_tokens": self._computed,
            }

    def _score(self, turns: Sequence[TurnLike], words_pending: bool) -> float:
        model = self._model
        ids = model.encode(turns)
        with self._lock:
            # the most recently used first: it wins a tie between equal starts
            shared = [(s._shared_start(ids), s) for s in reversed(self._idle)]
            best, stream = max(shared, key=lambda pair: pair[0], default=(0, None))
            if best < min(16, len(ids) // 2):
                # nothing worth keeping shared (a role marker or two are, by chance): leave
                # that conversation's cache alone; a fresh stream, or the least recently used
                stream = None
            if stream is None and self._streams < self._size:
                stream = EotStream(model)
                self._streams += 1
            elif stream is None and self._idle:
                stream = self._idle[0]
            if stream is not None and stream in self._idle:
                self._idle.remove(stream)
        if stream is None:  # every stream is busy: score this call cold
            p = float(model._run([ids], words_pending=words_pending)[0])
            computed = len(ids)
        else:
            try:
                with stream._lock:
                    p = stream._run_ids(ids, words_pending)
                    computed = stream._computed
            finally:
                with self._lock:
                    self._idle.append(stream)
        with self._lock:
            self._calls += 1
            self._computed += computed
            self._window += len(ids)
        return p
