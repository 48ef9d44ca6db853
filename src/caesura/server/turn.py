"""End-of-turn predictions for the server (``POST /v1/turn/predict`` and WebSocket transcripts).

Wraps :class:`caesura.eot.EndOfTurnModel` (loaded lazily, once) behind an async
:meth:`TurnPredictor.predict` that runs the model in its own worker thread, so a prediction
never blocks the event loop or the VAD batcher. Turns are validated here: roles ``user`` and
``agent`` (``assistant``/``bot``/``system`` map to ``agent``), bounded counts and lengths.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from caesura.errors import CaesuraError, InvalidOptionError, ModelError

__all__ = [
    "MAX_TEXT_CHARS",
    "MAX_TURNS",
    "TurnPredictor",
    "TurnUnavailableError",
    "normalise_turns",
]

logger = logging.getLogger(__name__)

#: At most this many turns are sent to the model (the most recent ones).
MAX_TURNS = 32
#: Characters per turn accepted (longer text is refused, not silently cut).
MAX_TEXT_CHARS = 8000
_ROLES = {"user": "user", "agent": "agent", "assistant": "agent", "bot": "agent", "system": "agent"}


class TurnUnavailableError(CaesuraError, RuntimeError):
    """The end-of-turn model is not installed or failed to load."""


def normalise_turns(turns: object) -> list[tuple[str, str]]:
    """``[{"role": ..., "text"|"content": ...}]`` or ``[[role, text]]`` to ``[(role, text)]``.

    Raises :class:`InvalidOptionError` with a message naming the bad item.
    """
    if not isinstance(turns, list) or not turns:
        raise InvalidOptionError("'turns' must be a non-empty list of {role, text} objects")
    if len(turns) > 4 * MAX_TURNS:
        raise InvalidOptionError(f"too many turns ({len(turns)}); send at most {4 * MAX_TURNS}")
    out: list[tuple[str, str]] = []
    for i, item in enumerate(turns):
        if isinstance(item, dict):
            role = item.get("role")
            text = item.get("text", item.get("content"))
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            role, text = item
        else:
            raise InvalidOptionError(f"turns[{i}] must be an object with 'role' and 'text'")
        if not isinstance(role, str) or role.lower() not in _ROLES:
            raise InvalidOptionError(
                f"turns[{i}].role must be one of {sorted(_ROLES)}, got {role!r}"
            )
        if not isinstance(text, str):
            raise InvalidOptionError(f"turns[{i}].text must be a string")
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidOptionError(
                f"turns[{i}].text has {len(text)} characters; at most {MAX_TEXT_CHARS}"
            )
        out.append((_ROLES[role.lower()], text))
    return out[-MAX_TURNS:]


class TurnPredictor:
    """Lazily loaded end-of-turn model + a one-thread executor.

    ``model``: an object with ``predict(turns) -> float`` (tests may pass their own); ``None``
    loads :class:`caesura.eot.EndOfTurnModel` on first use.
    """

    def __init__(self, model: Any | None = None) -> None:
        self._model = model
        self._error: str | None = None
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="caesura-eot")
        # a stream of the model per conversation (``owner``), touched on the worker thread only
        self._streams: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._pool: Any = None

    def _load(self) -> Any:
        with self._lock:
            if self._model is not None:
                return self._model
            if self._error is not None:
                raise TurnUnavailableError(self._error)
            try:
                # resolved at run time: the end-of-turn package is optional for the server
                eot = importlib.import_module("caesura.eot")
                self._model = eot.EndOfTurnModel.load()
            except Exception as exc:  # ImportError, missing asset, ModelError ...
                self._error = f"the end-of-turn model is not available: {exc}"
                logger.warning("%s", self._error)
                raise TurnUnavailableError(self._error) from exc
            return self._model

    def warm(self) -> bool:
        """Load the model now; False (and a log line) when it is unavailable."""
        try:
            self._load()
        except TurnUnavailableError:
            return False
        return True

    @property
    def available(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> Any:
        """The loaded model (``None`` before :meth:`warm` or the first prediction)."""
        return self._model

    def _predict_sync(
        self, turns: Sequence[tuple[str, str]], words_pending: bool = False, owner: Any = None
    ) -> tuple[float, float]:
        model = self._load()
        if owner is not None and callable(getattr(model, "stream", None)):
            # the conversation's own stream: only the words added since its last call run
            stream = self._streams.get(owner)
            if stream is None:
                stream = self._streams[owner] = model.stream()
            model = stream
        elif owner is None and callable(getattr(model, "stream_pool", None)):
            # unknown conversation: the pool's stream that holds its longest start
            if self._pool is None:
                self._pool = model.stream_pool()
            model = self._pool
        t0 = time.perf_counter()
        chat = [{"role": r, "content": t} for r, t in turns]
        try:
            # the model takes {"role", "content"} mappings (or its Turn objects)
            if words_pending:
                p = float(model.predict(chat, words_pending=True))
            else:
                p = float(model.predict(chat))
        except CaesuraError:
            raise
        except Exception as exc:
            raise ModelError(f"end-of-turn prediction failed: {exc}") from exc
        return p, time.perf_counter() - t0

    async def predict(
        self, turns: Sequence[tuple[str, str]], *, words_pending: bool = False, owner: Any = None
    ) -> tuple[float, float]:
        """(probability, seconds) for already normalised turns; ``words_pending``: P(end after
        one more word) (see :meth:`caesura.eot.EndOfTurnModel.predict`). ``owner``: the
        conversation the turns belong to (any weak-referenceable object, e.g. a WebSocket
        session): its predictions run through one :meth:`caesura.eot.EndOfTurnModel.stream`,
        which computes only the words added since the last one; without it (HTTP requests)
        they run on a :meth:`~caesura.eot.EndOfTurnModel.stream_pool`."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self._predict_sync, turns, words_pending, owner
        )

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
