"""Options of the turn engine: one frozen dataclass, durations in milliseconds."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

from caesura.errors import InvalidOptionError
from caesura.vad.segmenter import SegmenterOptions

__all__ = ["STITCH_MIN_FRAGMENT_MS", "TurnOptions"]

#: Fragments with less speech than this are never held for stitching (speech-to-speech's rule).
STITCH_MIN_FRAGMENT_MS = 100.0
#: Lower clamp of ``min_speech_continuation_ms`` (speech-to-speech's rule).
CONTINUATION_FLOOR_MS = 100.0


def _num(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidOptionError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if math.isnan(v):
        raise InvalidOptionError(f"{name} must not be NaN")
    return v


@dataclass(frozen=True)
class TurnOptions:
    """Everything the :class:`~caesura.turn.TurnEngine` decides with.

    Speech detection (passed to :class:`~caesura.vad.segmenter.Segmenter`):

    * ``threshold`` / ``neg_threshold``: Silero activation / exit probabilities (hysteresis).
    * ``min_speech_ms`` (250): speech needed to confirm that the user started speaking
      (coughs and clicks are shorter). Barge-in always needs this full bar.
    * ``min_silence_ms`` (200): silence that ends a speech segment (:class:`SpeechStopped`
      and the :class:`FlushSTT` hint). Short on purpose: whether the *turn* ended is decided
      by the fusion policy below.
    * ``pre_roll_ms`` (300): audio kept before the onset; ``speech_pad_ms`` (30): after the end.
    * ``max_speech_ms`` (60 s): longer speech is split (never dropped); the turn goes on.
    * ``stitch_ms`` (0 = off): fragments each shorter than ``min_speech_ms`` (but with at
      least 100 ms of speech) are held and stitched for up to this long; once together they
      reach ``min_speech_ms`` speech is confirmed from the first fragment's onset.

    End of turn (see :mod:`caesura.turn.fusion`):

    * ``end_threshold`` (0.665): fire when P(end | words, silence >= t) reaches it.
    * ``min_delay_ms`` (300) / ``max_delay_ms`` (3300): bounds of the endpointing delay,
      counted from the end of speech.
    * ``logit_scale`` (0.75): the scorer's log-odds are multiplied by it before fusion (the
      bundled model is over-confident against the pause-length prior).

      The delay bounds are product choices (a 300 ms floor, a 3.3 s cap); the logit scale
      and the threshold were chosen on Switchboard *val* (lag 0.3 s) with the v1 model:
      the lowest threshold that keeps false cut-offs within 10% at those bounds, and kept
      for v2 (a choice over every corpus's val did worse on test; docs/concepts)
      (``benchmarks/turns.py``, which also scores this fixed policy on test); a speculative
      re-open recovers the rare cut.
    * ``adapt_min_delay`` scales the minimum to the user's own pause habit (their observed
      mid-turn pauses against the population's), by at most ``adapt_max_factor``;
      ``adapt_prior_pauses`` pseudo-pauses of the population curve weigh against the user's
      pauses, which also personalise the survival curve.
    * ``fallback_delay_ms`` (800): silence-only endpointing when there are no words to score
      (no scorer, unsupported language, or no transcript yet). Not when the scorer *failed*
      on the words: that turn ends at ``max_delay_ms`` (see :class:`ScorerFailed`).
    * ``wait_for_final`` (True): while an interim transcript is pending, do not decide on
      words (only ``max_delay_ms`` fires).
    * ``score_pending_words`` (True): when the user spoke after the last transcript update
      (the recogniser has not delivered the last word yet), ask a scorer that supports it
      (``EndOfTurnModel``, ``supports_pending_words``) for P(end after one more word)
      instead of scoring the stale words as if they were complete.

    Re-opening (speech-to-speech's protocol):

    * ``speculative_reopen_ms`` (1500): after :class:`EndOfTurn`, speech that resumes within
      this long after the end of speech re-opens the turn, unless the response was committed.
    * ``unanswered_reopen_ms`` (7000): the window while no response has started.
    * ``min_speech_continuation_ms`` (150, 0 = off): the lower bar confirming speech that
      continues an open or reopenable turn; clamped to [100, ``min_speech_ms``].

    Barge-in: ``backchannel_max_ms`` (1500): user speech over the agent that lasts longer is
    an interruption whatever the words; ``backchannel_wait_ms`` (600): after short overlapping
    speech with no words yet, how long to wait for a transcript before calling it a backchannel.

    Progressive audio: ``progressive_interval_ms`` (0 = off) between releases during speech,
    doubling every ``progressive_backoff_ms`` of speech up to ``progressive_max_interval_ms``.

    ``max_history_turns`` (6): turns of context passed to the scorer.
    """

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_ms: float = 250.0
    min_silence_ms: float = 200.0
    pre_roll_ms: float = 300.0
    speech_pad_ms: float = 30.0
    max_speech_ms: float = 60_000.0
    stitch_ms: float = 0.0

    end_threshold: float = 0.665
    min_delay_ms: float = 300.0
    max_delay_ms: float = 3300.0
    fallback_delay_ms: float = 800.0
    wait_for_final: bool = True
    score_pending_words: bool = True
    logit_scale: float = 0.75
    adapt_min_delay: bool = True
    adapt_prior_pauses: float = 20.0
    adapt_max_factor: float = 3.0

    speculative_reopen_ms: float = 1500.0
    unanswered_reopen_ms: float = 7000.0
    min_speech_continuation_ms: float = 150.0

    backchannel_max_ms: float = 1500.0
    backchannel_wait_ms: float = 600.0

    progressive_interval_ms: float = 0.0
    progressive_backoff_ms: float = 5000.0
    progressive_max_interval_ms: float = 4000.0

    max_history_turns: int = 6

    def __post_init__(self) -> None:
        et = _num("end_threshold", self.end_threshold)
        if not 0.0 < et < 1.0:
            raise InvalidOptionError(f"end_threshold must be in (0, 1), got {et!r}")
        for f in fields(self):
            if f.name.endswith("_ms"):
                v = _num(f.name, getattr(self, f.name))
                if v < 0 or math.isinf(v):
                    raise InvalidOptionError(f"{f.name} must be a finite number >= 0, got {v!r}")
        if self.max_speech_ms <= self.min_speech_ms:
            raise InvalidOptionError(
                f"max_speech_ms ({self.max_speech_ms}) must exceed min_speech_ms "
                f"({self.min_speech_ms})"
            )
        # the speech fields (threshold, neg_threshold, ...) are the segmenter's: it validates them
        self.segmenter_options()
        if self.max_delay_ms < self.min_delay_ms:
            raise InvalidOptionError(
                f"max_delay_ms ({self.max_delay_ms}) must be >= min_delay_ms ({self.min_delay_ms})"
            )
        if self.max_delay_ms <= 0:
            raise InvalidOptionError("max_delay_ms must be > 0")
        if self.progressive_interval_ms > 0 and (
            self.progressive_max_interval_ms < self.progressive_interval_ms
        ):
            raise InvalidOptionError(
                "progressive_max_interval_ms must be >= progressive_interval_ms"
            )
        if self.progressive_interval_ms > 0 and self.progressive_backoff_ms <= 0:
            raise InvalidOptionError("progressive_backoff_ms must be > 0")
        ls = _num("logit_scale", self.logit_scale)
        if not 0.0 < ls <= 100.0:
            raise InvalidOptionError(f"logit_scale must be in (0, 100], got {ls!r}")
        w = _num("adapt_prior_pauses", self.adapt_prior_pauses)
        if w < 0 or math.isinf(w):
            raise InvalidOptionError(f"adapt_prior_pauses must be >= 0, got {w!r}")
        f_ = _num("adapt_max_factor", self.adapt_max_factor)
        if not 1.0 <= f_ <= 100.0:
            raise InvalidOptionError(f"adapt_max_factor must be in [1, 100], got {f_!r}")
        for name in ("wait_for_final", "score_pending_words", "adapt_min_delay"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidOptionError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if (
            isinstance(self.max_history_turns, bool)
            or not isinstance(self.max_history_turns, int)
            or self.max_history_turns < 1
        ):
            raise InvalidOptionError(
                f"max_history_turns must be an int >= 1, got {self.max_history_turns!r}"
            )

    # ------------------------------------------------------------------ derived
    @property
    def continuation_bar_ms(self) -> float:
        """The effective continuation bar (``min_speech_ms`` when the split is off)."""
        if self.min_speech_continuation_ms <= 0:
            return float(self.min_speech_ms)
        return min(
            max(float(self.min_speech_continuation_ms), CONTINUATION_FLOOR_MS),
            float(self.min_speech_ms),
        )

    def segmenter_options(self) -> SegmenterOptions:
        """Options of the underlying segmenter: its ``min_speech_ms`` is the lowest bar in use
        (the engine applies ``min_speech_ms`` / the continuation bar / stitching on top)."""
        floor = min(float(self.min_speech_ms), self.continuation_bar_ms)
        if self.stitch_ms > 0:
            floor = min(floor, STITCH_MIN_FRAGMENT_MS)
        return SegmenterOptions(
            threshold=self.threshold,
            neg_threshold=self.neg_threshold,
            min_speech_ms=floor,
            min_silence_ms=self.min_silence_ms,
            speech_pad_ms=self.speech_pad_ms,
            pre_roll_ms=self.pre_roll_ms,
            max_speech_s=self.max_speech_ms / 1000.0,
        )

    def replace(self, **changes: Any) -> TurnOptions:
        """A validated copy with ``changes``; unknown names raise InvalidOptionError."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InvalidOptionError(f"unknown turn option(s) {unknown}; valid: {sorted(known)}")
        return replace(self, **changes)
