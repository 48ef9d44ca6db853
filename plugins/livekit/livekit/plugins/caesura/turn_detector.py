"""Text end-of-turn detector for LiveKit Agents, on caesura's end-of-turn model.

``AgentSession(turn_detection=caesura.TurnDetector(), ...)``: when the VAD reports the end of
speech and a transcript exists, the session asks :meth:`TurnDetector.predict_end_of_turn` for
P(end of turn | the last turns of the conversation); below :meth:`unlikely_threshold` it
waits ``max_delay`` before answering, else ``min_delay``.

The model runs in this process, on a worker thread (no inference subprocess, so no IPC round
trip), and is shared by every detector of the process. The object deliberately has no
``stream`` attribute: LiveKit treats detectors with one as audio (streaming) detectors.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from livekit.agents import llm

from caesura.eot import EndOfTurnModel, Turn
from caesura.errors import InvalidOptionError

from .log import logger

__all__ = ["TurnDetector"]

#: Turns of history handed to the model (the model truncates further to its own budget).
MAX_HISTORY_TURNS = 6

_EXECUTOR: list[ThreadPoolExecutor] = []
_EXECUTOR_LOCK = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """One inference thread per process for every detector (predictions take milliseconds)."""
    with _EXECUTOR_LOCK:
        if not _EXECUTOR:
            _EXECUTOR.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="caesura-eot"))
        return _EXECUTOR[0]


def chat_ctx_turns(
    chat_ctx: llm.ChatContext, max_turns: int = MAX_HISTORY_TURNS
) -> list[tuple[str, str]]:
    """The last ``max_turns`` turns of ``chat_ctx`` as ``[(role, text)]``, roles ``"user"`` /
    ``"agent"``. System/developer messages, tool calls and empty messages are skipped and
    consecutive messages of one role are joined (the session may split a user turn)."""
    turns: list[tuple[str, str]] = []
    for item in chat_ctx.items:
        if not isinstance(item, llm.ChatMessage) or item.role not in ("user", "assistant"):
            continue
        text = (item.text_content or "").strip()
        if not text:
            continue
        role = "user" if item.role == "user" else "agent"
        if turns and turns[-1][0] == role:
            turns[-1] = (role, f"{turns[-1][1]} {text}")
        else:
            turns.append((role, text))
    return turns[-max_turns:]


_MODEL: list[EndOfTurnModel] = []
_MODEL_LOCK = threading.Lock()


def _default_model() -> EndOfTurnModel:
    """The bundled model, loaded once per process (it is thread-safe and shared)."""
    with _MODEL_LOCK:
        if not _MODEL:
            _MODEL.append(EndOfTurnModel.load())
        return _MODEL[0]


def _language_tag(language: object) -> str | None:
    """A LiveKit ``LanguageCode`` (a plain string in older releases) as a string; ``None``
    when the STT reported no language."""
    if language is None:
        return None
    tag = str(language).strip()
    return tag or None


class TurnDetector:
    """caesura's semantic end-of-turn model as a LiveKit text turn detector.

    Args:
        model: a loaded :class:`caesura.eot.EndOfTurnModel`; default: the bundled model
            (``EndOfTurnModel.load()``, cached per process). Loading blocks briefly: create the
            detector in your prewarm function, or pass a model loaded there.
        unlikely_threshold: override the model's per-language threshold (below it the
            session waits ``max_delay``). ``None`` (recommended) uses the model's own.
        max_history_turns: conversation turns handed to the model.

    Raises:
        caesura.ModelError: the model cannot be loaded.
    """

    def __init__(
        self,
        *,
        model: EndOfTurnModel | None = None,
        unlikely_threshold: float | None = None,
        max_history_turns: int = MAX_HISTORY_TURNS,
    ) -> None:
        if unlikely_threshold is not None and not 0.0 <= unlikely_threshold <= 1.0:
            raise InvalidOptionError(
                f"unlikely_threshold must be in [0, 1] or None, got {unlikely_threshold!r}"
            )
        if max_history_turns < 1:
            raise InvalidOptionError(f"max_history_turns must be >= 1, got {max_history_turns}")
        if model is None:
            model = _default_model()
        self._model = model
        # one detector usually serves every session of a worker (made in prewarm): each
        # prediction runs on the stream that holds the longest start of its conversation, so
        # only the words added since that conversation's last prediction are computed
        self._streams = model.stream_pool()
        self._unlikely_threshold = unlikely_threshold
        self._max_turns = max_history_turns
        self._logged: set[tuple[str, str | None]] = set()

    # ---- the protocol ---------------------------------------------------------------------

    @property
    def model(self) -> str:
        return "caesura-eot"

    @property
    def provider(self) -> str:
        return "caesura"

    @property
    def core_model(self) -> EndOfTurnModel:
        """The :class:`caesura.eot.EndOfTurnModel` predictions run on."""
        return self._model

    def _resolve(self, language: object) -> tuple[bool, str | None]:
        """(supported, language tag) for the STT's language, as the core model decides;
        unknown and unsupported languages are logged once per detector."""
        tag = _language_tag(language)
        if not self._model.supports_language(tag):
            self._log_once(
                "unsupported",
                tag,
                "the end-of-turn model does not support language %r (it knows %s); the "
                "session answers after min_delay for these turns. If the STT reports "
                "'multi', set its language to enable the model.",
                tag,
                sorted(self._model.languages),
                warning=True,
            )
            return False, tag
        if tag is None:
            self._log_once(
                "unknown",
                None,
                "the STT reports no language; the end-of-turn model assumes %s",
                " / ".join(sorted(self._model.languages)),
            )
        return True, tag

    def _log_once(
        self, kind: str, key: str | None, msg: str, *args: Any, warning: bool = False
    ) -> None:
        if (kind, key) in self._logged:
            return
        self._logged.add((kind, key))
        (logger.warning if warning else logger.info)(msg, *args)

    async def supports_language(self, language: object) -> bool:
        return self._resolve(language)[0]

    async def unlikely_threshold(self, language: object) -> float | None:
        supported, tag = self._resolve(language)
        if not supported:
            return None
        if self._unlikely_threshold is not None:
            return self._unlikely_threshold
        threshold = self._model.unlikely_threshold(tag)
        return None if threshold is None else float(threshold)

    async def predict_end_of_turn(
        self, chat_ctx: llm.ChatContext, *, timeout: float | None = 3.0
    ) -> float:
        """P(the user's turn is over | the last turns of ``chat_ctx``), computed off-loop.

        Raises ``asyncio.TimeoutError`` after ``timeout`` seconds (the session then logs it and
        answers after ``min_delay``).
        """
        turns = chat_ctx_turns(chat_ctx, self._max_turns)
        if not turns or turns[-1][0] != "user":
            # nothing the user said is pending: nothing to hold the turn open for
            return 1.0
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        fut = loop.run_in_executor(_executor(), self._predict, turns)
        p = await asyncio.wait_for(fut, timeout=timeout)
        logger.debug(
            "eot prediction",
            extra={"probability": p, "duration": round(time.perf_counter() - start, 4)},
        )
        return p

    def _predict(self, turns: Sequence[tuple[str, str]]) -> float:
        return float(self._streams.predict([Turn(role, text) for role, text in turns]))
