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

from caesura.eot._text import EOT, PAD, clean_text, linearise
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
    "Turn",
    "TurnLike",
    "normalize_language",
]

logger = logging.getLogger(__name__)

_ASSETS = "caesura.eot.assets"
_FILES = ("model.onnx", "tokenizer.json", "config.json")
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
    when several calls run in parallel); ``max_tokens`` context tokens read (≤ the model's
    trained context; default: the window the model's config recommends, ``read_tokens``)."""

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
        self._max_tokens = min(context, options.max_tokens or default)
        # with words pending one position stays free for the word to come
        self._pending_tokens = min(self._max_tokens, context - 1)
        self._pad_id = int(config["pad_id"])
        self._languages = frozenset(str(x) for x in config["languages"])
        self._thresholds = {str(k): float(v) for k, v in config["thresholds"].items()}
        self._lock = threading.Lock()  # guards the tokenizer (the ORT session is thread-safe)
        inputs = {i.name for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        self._has_slots = "next_slots" in inputs
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
    ) -> EndOfTurnModel:
        """Load the bundled model (``path=None``) or an exported model folder.

        Every file is checked against ``sha256.json``: a mismatch raises
        :class:`~caesura.errors.ModelIntegrityError`.
        """
        options = EotOptions(num_threads=num_threads, max_tokens=max_tokens)
        folder = None if path is None else Path(path)
        if folder is not None and not folder.is_dir():
            raise ModelError(f"end-of-turn model folder not found: {folder}")
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
        """Context tokens read per prediction (the last ones of the dialogue)."""
        return self._max_tokens

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
        """Below this probability the turn is unlikely to be over (chosen on Switchboard val
        so that 90% of real turn ends score above it); ``None`` for an unsupported language."""
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
    def encode(self, turns: Sequence[TurnLike], *, words_pending: bool = False) -> list[int]:
        """The token ids the model reads for ``turns`` (the last ``max_tokens``; one fewer
        with ``words_pending``, leaving the position of the word to come)."""
        text = linearise(_prepare(turns), close_last=False)
        with self._lock:
            ids: list[int] = self._tokenizer.encode(text).ids
        return ids[-self._window(words_pending) :]

    def _window(self, words_pending: bool) -> int:
        return self._pending_tokens if words_pending else self._max_tokens

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
        feed: dict[str, npt.NDArray[Any]] = {"input_ids": x, "attention_mask": m}
        if self._has_slots:
            feed["next_slots"] = self._slots if words_pending else self._no_slots
        output = "p_eot_next" if words_pending else "p_eot"
        try:
            (p,) = self._session.run([output], feed)
        except Exception as exc:  # onnxruntime raises its own exception classes
            raise ModelError(f"end-of-turn model failed: {exc}") from exc
        return np.clip(np.asarray(p, dtype=np.float32).reshape(-1), 0.0, 1.0)

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
        ids = self.encode(turns, words_pending=words_pending)
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
        window = self._window(words_pending)
        ids = [e.ids[-window:] for e in encs]
        out = np.empty(len(ids), dtype=np.float32)
        order = np.argsort([len(x) for x in ids], kind="stable")
        for s in range(0, len(ids), batch_size):
            idx = order[s : s + batch_size]
            out[idx] = self._run([ids[i] for i in idx], words_pending=words_pending)
        return [float(v) for v in out]
