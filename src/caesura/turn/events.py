"""Typed events of the turn engine (frozen dataclasses).

Every event carries ``sample`` (the model-rate sample clock when it was decided) and
``sample_rate``; ``time_s`` derives seconds. ``turn_id`` numbers the user's turns from 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "Backchannel",
    "EndOfTurn",
    "EndOfTurnReason",
    "FlushSTT",
    "Interruption",
    "ProgressiveAudio",
    "ScorerFailed",
    "SpeechStarted",
    "SpeechStopped",
    "TurnEvent",
    "TurnReopened",
    "WordsScored",
]

Float32Array = npt.NDArray[np.float32]

EndOfTurnReason = Literal["semantic", "silence", "max_delay", "flush", "manual"]


@dataclass(frozen=True, eq=False)
class _Event:
    sample: int
    sample_rate: int

    @property
    def time_s(self) -> float:
        """When the event was decided, in seconds of the audio clock."""
        return self.sample / self.sample_rate


@dataclass(frozen=True, eq=False)
class SpeechStarted(_Event):
    """The user started speaking (confirmed: ``min_speech_ms`` reached, or the lower
    ``min_speech_continuation_ms`` bar inside a reopenable turn).

    ``start_sample`` is the onset (the first stitched fragment's onset when short fragments
    were stitched). ``interrupt_response`` is true when the agent was speaking at that moment
    (a barge-in candidate; :class:`Interruption` or :class:`Backchannel` follows).
    ``continued`` is true for the second part of speech split at ``max_speech_ms``.
    ``audio`` (model rate, pre-roll + speech so far) is ``None`` without audio input.
    """

    turn_id: int
    start_sample: int
    interrupt_response: bool = False
    continued: bool = False
    audio: Float32Array | None = None
    audio_start_sample: int = 0
    kind: Literal["speech_started"] = field(default="speech_started", init=False)

    @property
    def start_s(self) -> float:
        return self.start_sample / self.sample_rate


@dataclass(frozen=True, eq=False)
class SpeechStopped(_Event):
    """The user stopped speaking (``min_silence_ms`` of silence; or a forced split / close).

    Speech spans ``[start_sample, end_sample)`` (unpadded); ``audio`` spans
    ``[audio_start_sample, audio_start_sample + len(audio))``: pre-roll + speech + padding.
    ``reason`` is ``"silence"``, ``"max_speech"`` (a forced split: speech goes on, the turn
    stays open) or ``"flush"`` (speech closed by the host: ``TurnEngine.flush()`` or
    ``TurnEngine.commit_turn()``).
    """

    turn_id: int
    start_sample: int
    end_sample: int
    reason: Literal["silence", "max_speech", "flush"] = "silence"
    audio: Float32Array | None = None
    audio_start_sample: int = 0
    kind: Literal["speech_stopped"] = field(default="speech_stopped", init=False)

    @property
    def end_s(self) -> float:
        return self.end_sample / self.sample_rate

    @property
    def duration_s(self) -> float:
        return (self.end_sample - self.start_sample) / self.sample_rate


@dataclass(frozen=True, eq=False)
class FlushSTT(_Event):
    """Hint: speech just ended, tell a streaming recogniser to emit its final words now
    (the "flush trick"); the end-of-turn decision waits for them."""

    turn_id: int
    end_sample: int
    kind: Literal["flush_stt"] = field(default="flush_stt", init=False)


@dataclass(frozen=True, eq=False)
class EndOfTurn(_Event):
    """The user's turn is over: the agent may answer.

    ``probability`` is the fused P(end | words, silence) at the decision (``None`` when no
    words were scored), ``words_probability`` the scorer's P(end | words), ``delay_ms`` the
    silence elapsed since the end of speech, ``min_delay_ms`` the (user-adapted) minimum
    delay in force, ``reason`` why it fired: ``"semantic"`` (the fused probability passed the
    threshold), ``"silence"`` (no words/scorer: ``fallback_delay_ms`` of silence),
    ``"max_delay"`` (``max_delay_ms`` reached; also the end of a turn whose words the scorer
    failed on, see :class:`ScorerFailed`), ``"flush"`` (end of input) or ``"manual"`` (the
    host committed the turn: ``TurnEngine.commit_turn()``).
    ``scorer_ms`` is the wall time the scorer took for these words (a metric for hosts such
    as Pipecat; decisions never depend on wall time), ``None`` when nothing was scored.
    ``words_pending``: the words were scored as still missing their end (speech went on
    after the last transcript update; ``TurnOptions.score_pending_words``).
    """

    turn_id: int
    probability: float | None
    words_probability: float | None
    delay_ms: float
    min_delay_ms: float
    reason: EndOfTurnReason
    transcript: str
    language: str | None = None
    scorer_ms: float | None = None
    words_pending: bool = False
    kind: Literal["end_of_turn"] = field(default="end_of_turn", init=False)


@dataclass(frozen=True, eq=False)
class TurnReopened(_Event):
    """The user spoke again soon after :class:`EndOfTurn` (within ``speculative_reopen_ms``,
    or ``unanswered_reopen_ms`` when no response started) before the agent committed a
    response: the new speech continues the same turn; drop any speculative response."""

    turn_id: int
    pause_ms: float
    kind: Literal["turn_reopened"] = field(default="turn_reopened", init=False)


@dataclass(frozen=True, eq=False)
class Interruption(_Event):
    """User speech while the agent speaks is a real barge-in: stop the agent.

    ``reason`` is ``"words"`` (the transcript holds more than backchannel words),
    ``"duration"`` (speech went on longer than ``backchannel_max_ms``) or ``"manual"`` (the
    host committed the turn before the engine decided: ``TurnEngine.commit_turn()``)."""

    turn_id: int
    reason: Literal["words", "duration", "manual"]
    transcript: str
    kind: Literal["interruption"] = field(default="interruption", init=False)


@dataclass(frozen=True, eq=False)
class Backchannel(_Event):
    """User speech while the agent speaks that only acknowledges ("uh-huh", "yeah",
    "right"): the agent goes on and no user turn is opened."""

    transcript: str
    start_sample: int
    end_sample: int
    kind: Literal["backchannel"] = field(default="backchannel", init=False)


@dataclass(frozen=True, eq=False)
class ProgressiveAudio(_Event):
    """Audio of the ongoing speech for live (partial) transcription.

    ``audio`` spans ``[audio_start_sample, sample)``: everything since the pre-roll before
    the onset (cumulative, so each release can be transcribed on its own). ``index`` counts
    releases within one speech segment; releases back off on long speech."""

    turn_id: int
    audio: Float32Array
    audio_start_sample: int
    index: int
    kind: Literal["progressive_audio"] = field(default="progressive_audio", init=False)


@dataclass(frozen=True, eq=False)
class ScorerFailed(_Event):
    """The end-of-turn scorer failed on the turn's words: it raised, or returned something
    other than a number in [0, 1] (then ``error`` is a :class:`~caesura.errors.ModelError`).

    Reported once per failing input (the history and this transcript); the engine also logs
    it at ERROR with the traceback and does not call the scorer again for the same words.
    The turn then has no words evidence and is never cut short: it ends at ``max_delay_ms``
    (:class:`EndOfTurn` with ``reason="max_delay"``), not at the silence-only
    ``fallback_delay_ms``, unless a new transcript update is scored successfully first.
    """

    turn_id: int
    transcript: str
    error: BaseException
    kind: Literal["scorer_failed"] = field(default="scorer_failed", init=False)


@dataclass(frozen=True, eq=False)
class WordsScored(_Event):
    """The end-of-turn scorer ran on the turn's words (one event per inference, not for the
    engine's cached answers): ``probability`` is P(end | words) before fusion with the
    silence, ``inference_ms`` the wall time of the call, ``words_pending`` whether it was
    asked with the last word(s) still coming. For hosts' metrics (Pipecat's
    ``TurnMetricsData``, the server's histograms)."""

    turn_id: int
    transcript: str
    probability: float
    inference_ms: float
    words_pending: bool = False
    kind: Literal["words_scored"] = field(default="words_scored", init=False)


TurnEvent = (
    SpeechStarted
    | SpeechStopped
    | FlushSTT
    | EndOfTurn
    | TurnReopened
    | Interruption
    | Backchannel
    | ProgressiveAudio
    | ScorerFailed
    | WordsScored
)
