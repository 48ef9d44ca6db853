"""The turn engine: VAD windows + transcript + end-of-turn scores -> turn events.

:class:`TurnEngine` is synchronous, framework-free and driven by the audio's sample clock
(model rate, 16 or 8 kHz): nothing depends on wall time, so the same inputs always give the
same events. Feed it

* audio (:meth:`TurnEngine.push_audio`, scored by a :class:`~caesura.vad.model.SileroVAD`)
  or precomputed per-window probabilities (:meth:`TurnEngine.push_probabilities`);
* transcript updates (:meth:`TurnEngine.push_transcript`, interim or final);
* the agent's state (:meth:`TurnEngine.set_agent_speaking`,
  :meth:`TurnEngine.response_started`, :meth:`TurnEngine.response_committed`,
  :meth:`TurnEngine.add_agent_message`);
* time without audio (:meth:`TurnEngine.advance`: silence, so delays still elapse);
* the host's own decisions about the open turn (:meth:`TurnEngine.commit_turn`,
  :meth:`TurnEngine.clear_turn`, :meth:`TurnEngine.flush`);

and every call returns the :mod:`~caesura.turn.events` it caused, in order.

A failing end-of-turn scorer never escapes from the engine and is never taken for an answer:
it is logged, reported as :class:`~caesura.turn.events.ScorerFailed`, and the turn it
failed on ends at ``max_delay_ms`` (the user is not cut off early); the rest of the input
is processed as usual.

Layering: speech segments come from :class:`~caesura.vad.segmenter.Segmenter` (thresholds,
hysteresis, hangover, pre-roll, padding, max-speech split), run with its ``min_speech_ms``
at the lowest bar the engine may need. On its events the engine applies the turn-level
bars (``min_speech_ms``, the lower continuation bar in a reopenable turn, short-segment
stitching), keeps the turn state, and decides the end of the turn with
:func:`~caesura.turn.fusion.end_posterior`.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from caesura.errors import InvalidAudioError, InvalidOptionError, ModelError
from caesura.turn.events import (
    Backchannel,
    EndOfTurn,
    EndOfTurnReason,
    FlushSTT,
    Interruption,
    ProgressiveAudio,
    ScorerFailed,
    SpeechStarted,
    SpeechStopped,
    TurnEvent,
    TurnReopened,
    WordsScored,
)
from caesura.turn.fusion import PauseSurvival, end_posterior
from caesura.turn.lexical import is_backchannel, normalise_words
from caesura.turn.options import STITCH_MIN_FRAGMENT_MS, TurnOptions
from caesura.vad.model import SileroVAD, VADStream
from caesura.vad.segmenter import Segmenter, SpeechEnd, SpeechStart, VADWindow, window_size_for

__all__ = [
    "EndOfTurnScorer",
    "ScorePending",
    "SupportsPredict",
    "SupportsStream",
    "TurnEngine",
    "TurnPhase",
]

logger = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]
ChatTurn = Mapping[str, str]


class EndOfTurnScorer(Protocol):
    """A callable giving P(end of turn) for a chat history ``[{"role", "content"}, ...]``."""

    def __call__(self, turns: Sequence[ChatTurn], /) -> float: ...


@runtime_checkable
class SupportsPredict(Protocol):
    """An object with ``predict(turns) -> float`` (such as ``caesura.eot.EndOfTurnModel``);
    ``supports_language(language) -> bool`` is used too when it has one."""

    def predict(self, turns: Sequence[ChatTurn], /) -> float: ...


@runtime_checkable
class SupportsStream(Protocol):
    """A model that opens a scorer per conversation: ``stream()`` returns an object with
    ``predict(turns)`` that keeps what it computed for the words it has seen, so each call
    computes only the words that are new (``caesura.eot.EndOfTurnModel`` is one). The engine
    opens one stream and scores through it."""

    def stream(self) -> SupportsPredict: ...


class ScorePending(Exception):  # noqa: N818 -- a signal, not an error
    """Raised by a scorer whose answer is being computed elsewhere (an async host scoring
    off its event loop): the engine treats the words as not yet scored -- no decision on
    them, no silence-only fallback either -- and asks again at its next decision; the turn
    still ends at ``max_delay_ms`` at the latest. The host calls :meth:`TurnEngine.poll`
    once the answer is in."""


class TurnPhase(str, Enum):
    """Where the user's turn stands."""

    IDLE = "idle"  # no open turn
    SPEAKING = "speaking"  # the user is speaking in an open turn
    PAUSED = "paused"  # the user stopped speaking; the end of turn is being decided
    ENDED = "ended"  # EndOfTurn fired; reopenable until the window closes or a commit


class _AudioStore:
    """Model-rate audio from an absolute sample position on, with trimming."""

    def __init__(self) -> None:
        self._chunks: deque[tuple[int, Float32Array]] = deque()

    def clear(self) -> None:
        self._chunks.clear()

    @property
    def has_audio(self) -> bool:
        return bool(self._chunks)

    def append(self, start: int, audio: Float32Array) -> None:
        self._chunks.append((start, audio))

    def trim_before(self, position: int) -> None:
        while self._chunks and self._chunks[0][0] + self._chunks[0][1].size <= position:
            self._chunks.popleft()

    @property
    def size(self) -> int:
        return sum(a.size for _, a in self._chunks)

    def slice(self, start: int, end: int) -> tuple[int, Float32Array]:
        parts: list[Float32Array] = []
        first = -1
        for s, a in self._chunks:
            e = s + a.size
            if e <= start or s >= end:
                continue
            lo, hi = max(start, s) - s, min(end, e) - s
            if first < 0:
                first = s + lo
            parts.append(a[lo:hi])
        if not parts:
            return max(start, 0), np.zeros(0, dtype=np.float32)
        return first, np.concatenate(parts).astype(np.float32, copy=False)


class TurnEngine:
    """Turn-taking decisions for one conversation (one audio stream). Not thread-safe.

    Args:
        options: :class:`~caesura.turn.TurnOptions` (defaults when ``None``).
        scorer: P(end | words): a callable ``scorer(turns) -> float`` or an object with
            ``predict(turns)``; a model with ``stream()`` (:class:`SupportsStream`, e.g.
            ``caesura.eot.EndOfTurnModel.load()``) is scored through its own stream: each
            call computes only the words that are new; ``None`` for
            silence-only endpointing (``fallback_delay_ms``). If it raises (any
            ``Exception``) or returns something other than a number in [0, 1], the engine
            logs it, emits :class:`~caesura.turn.events.ScorerFailed` once for those words
            and lets that turn end at ``max_delay_ms``; it retries on the next transcript
            update.
        vad: a :class:`~caesura.vad.model.SileroVAD` for :meth:`push_audio` (not needed with
            :meth:`push_probabilities`).
        sample_rate: the model rate and clock of the engine (16000 or 8000).
        input_sample_rate: rate of the audio given to :meth:`push_audio` (default
            ``sample_rate``; other rates are resampled by the VAD stream).
        survival: the pause survival curve (default: the shipped Switchboard curve).
    """

    def __init__(
        self,
        options: TurnOptions | None = None,
        *,
        scorer: EndOfTurnScorer | SupportsPredict | None = None,
        vad: SileroVAD | None = None,
        sample_rate: int = 16000,
        input_sample_rate: int | None = None,
        survival: PauseSurvival | None = None,
    ) -> None:
        if options is not None and not isinstance(options, TurnOptions):
            raise InvalidOptionError(f"options must be a TurnOptions, got {type(options).__name__}")
        self._opts = options or TurnOptions()
        self.sample_rate = int(sample_rate)
        self.window_size = window_size_for(self.sample_rate)
        self._predict, self._supports_language, self._predict_pending = _scorer_functions(scorer)
        self._input_rate = self.sample_rate if input_sample_rate is None else int(input_sample_rate)
        self._vad_stream: VADStream | None = None
        if vad is not None:
            if not isinstance(vad, SileroVAD):
                raise InvalidOptionError(
                    f"vad must be a SileroVAD (SileroVAD.load()), got {type(vad).__name__}"
                )
            stream = vad.stream(self._input_rate)
            if int(stream.model_rate) != self.sample_rate:
                raise InvalidOptionError(
                    f"the VAD runs at {stream.model_rate} Hz for {self._input_rate} Hz input but "
                    f"the engine clock is {self.sample_rate} Hz; pass sample_rate="
                    f"{stream.model_rate}"
                )
            self._vad_stream = stream
        self._base_survival = survival if survival is not None else PauseSurvival.default()
        if not isinstance(self._base_survival, PauseSurvival):
            raise InvalidOptionError("survival must be a PauseSurvival")
        self._segmenter = Segmenter(
            self._opts.segmenter_options(),
            sample_rate=self.sample_rate,
            keep_audio=False,
            window_events=True,
        )
        self._warned_languages: set[str] = set()
        self._user_pauses: deque[float] = deque(maxlen=200)
        self._history: list[dict[str, str]] = []
        self._reset_state()

    # ================================================================== public state
    @property
    def options(self) -> TurnOptions:
        return self._opts

    @property
    def sample(self) -> int:
        """The sample clock (model rate): samples consumed so far."""
        return self._now

    @property
    def time_s(self) -> float:
        return self._now / self.sample_rate

    @property
    def phase(self) -> TurnPhase:
        return self._phase

    @property
    def turn_id(self) -> int:
        """Id of the current (or last) user turn; 0 before the first one."""
        return self._turn_id

    @property
    def transcript(self) -> str:
        """Text of the current (or last) user turn: final words + the pending interim."""
        return _join(self._finals, self._interim)

    @property
    def history(self) -> list[dict[str, str]]:
        """The chat history given to the scorer (a copy)."""
        return [dict(t) for t in self._history]

    @property
    def user_pauses_s(self) -> list[float]:
        """Mid-turn pauses observed from this user (seconds), most recent last."""
        return list(self._user_pauses)

    @property
    def agent_speaking(self) -> bool:
        return self._agent_speaking

    @property
    def buffered_audio_samples(self) -> int:
        """Model-rate samples of audio held for events (pre-roll, open speech, fragments)."""
        return self._audio.size

    def current_min_delay_ms(self) -> float:
        """The minimum endpointing delay in force (adapted to the user's pauses)."""
        return self._min_delay_ms

    def update_options(self, options: TurnOptions) -> None:
        """Swap options on a live engine; the open turn continues under them."""
        if not isinstance(options, TurnOptions):
            raise InvalidOptionError(f"options must be a TurnOptions, got {type(options).__name__}")
        self._opts = options
        self._segmenter.update_options(options.segmenter_options())
        self._refresh_adaptation()

    def reset(self) -> None:
        """Forget everything (turn, history, user adaptation, clock back to 0)."""
        self._segmenter.reset()
        if self._vad_stream is not None:
            self._vad_stream.reset()
        self._user_pauses.clear()
        self._history = []
        self._reset_state()

    def _reset_state(self) -> None:
        self._now = 0
        self._audio = _AudioStore()
        self._audio_mode = False
        # candidate segment from the segmenter
        self._cand_open = False
        self._cand_onset = 0
        self._cand_speech_end = 0
        self._cand_confirmed = False
        self._held: list[tuple[int, int]] = []  # stitched fragments (onset, speech end)
        # turn
        self._phase = TurnPhase.IDLE
        self._turn_id = 0
        self._turn_open = False  # a turn exists that transcripts attach to
        self._finals: list[str] = []
        self._interim = ""
        self._language: str | None = None
        self._words_fresh = False  # a transcript update arrived since the last speech onset
        self._words_sample = -1  # clock of the last transcript update
        self._speech_start = 0  # onset of the current speech (for audio spans)
        self._silence_start = 0  # end of the last speech of the turn
        self._history_index: int | None = None  # index of this turn's entry in history
        # agent
        self._agent_speaking = False
        self._response_started = False
        self._response_committed = False
        # barge-in decision pending: (turn id, onset, speech end or None)
        self._overlap: tuple[int, int, int | None] | None = None
        self._after_backchannel = False
        # progressive audio
        self._prog_next = 0
        self._prog_index = 0
        # scoring cache
        self._score_key: tuple[Any, ...] | None = None
        self._score_value: float | None = None
        self._score_ms: float | None = None
        self._score_pending = False
        self._transcript_rev = 0  # counts transcript updates (a failed scoring retries on one)
        self._failed_key: tuple[Any, ...] | None = None  # the input the scorer last failed on
        self._refresh_adaptation()

    # ================================================================== inputs
    def push_audio(self, chunk: npt.NDArray[Any]) -> list[TurnEvent]:
        """Feed audio (int16 or float32 mono at ``input_sample_rate``, any length)."""
        if self._vad_stream is None:
            raise InvalidOptionError(
                "push_audio needs a VAD: TurnEngine(vad=SileroVAD.load()); "
                "or feed probabilities with push_probabilities()"
            )
        probs, windows = self._vad_stream.process(chunk, return_audio=True)
        return self._windows(np.asarray(probs, dtype=np.float64), windows.reshape(-1))

    def push_probabilities(
        self,
        probabilities: Sequence[float] | npt.NDArray[Any],
        audio: npt.NDArray[np.float32] | None = None,
    ) -> list[TurnEvent]:
        """Feed Silero probabilities of consecutive windows (``window_size`` samples each),
        optionally with their model-rate audio (exactly ``len(probabilities) * window_size``
        float32 samples) so that events carry audio."""
        probs = np.asarray(probabilities, dtype=np.float64).reshape(-1)
        if probs.size and (not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1):
            raise InvalidAudioError("probabilities must be finite and lie in [0, 1]")
        if audio is not None:
            if not isinstance(audio, np.ndarray) or audio.ndim != 1:
                raise InvalidAudioError("audio must be a 1-D float32 numpy array")
            if audio.size != probs.size * self.window_size:
                raise InvalidAudioError(
                    f"audio has {audio.size} samples for {probs.size} window(s); expected "
                    f"{probs.size * self.window_size}"
                )
            audio = np.ascontiguousarray(audio, dtype=np.float32)
        return self._windows(probs, audio)

    def advance(self, to_sample: int) -> list[TurnEvent]:
        """Let time pass without audio, as silence, up to ``to_sample`` (whole windows), so
        that silence-based decisions fire. A target at or behind the clock is a no-op."""
        if isinstance(to_sample, bool) or not isinstance(to_sample, (int, np.integer)):
            raise InvalidOptionError(f"to_sample must be an int, got {to_sample!r}")
        n = (int(to_sample) - self._now) // self.window_size
        if n <= 0:
            return []
        audio = np.zeros(n * self.window_size, dtype=np.float32) if self._audio_mode else None
        return self._windows(np.zeros(n), audio)

    def poll(self) -> list[TurnEvent]:
        """Decide again now, without moving the clock: for a host whose scorer raised
        :class:`ScorePending`, once the answer has arrived."""
        events: list[TurnEvent] = []
        self._tick(events)
        return events

    def advance_ms(self, ms: float) -> list[TurnEvent]:
        """:meth:`advance` by ``ms`` milliseconds of silence."""
        if not math.isfinite(ms) or ms < 0:
            raise InvalidOptionError(f"ms must be a finite number >= 0, got {ms!r}")
        return self.advance(self._now + round(ms * self.sample_rate / 1000.0))

    def push_transcript(
        self, text: str, *, final: bool, language: str | None = None
    ) -> list[TurnEvent]:
        """A transcript update for the user's current turn.

        Interim text replaces the previous interim; final text is appended to the turn's
        words and clears the interim. Text arriving after :class:`EndOfTurn` (a late final)
        still belongs to that turn. ``language`` (e.g. ``"en"``) selects whether words are
        scored (the scorer's ``supports_language``).
        """
        if not isinstance(text, str):
            raise InvalidOptionError(f"text must be a str, got {type(text).__name__}")
        if language is not None and not isinstance(language, str):
            raise InvalidOptionError(f"language must be a str or None, got {language!r}")
        events: list[TurnEvent] = []
        text = " ".join(text.split())
        if not self._turn_open:
            if not text or (self._after_backchannel and is_backchannel(text)):
                return events  # nothing, or the late words of a backchannel
            # words without detected speech (VAD missed it, or text-only use): open a turn
            self._new_turn()
            self._phase = TurnPhase.PAUSED
            self._silence_start = self._now
        if language:
            self._language = language
        self._words_fresh = True
        self._words_sample = self._now
        self._transcript_rev += 1
        if final:
            if text:
                self._finals.append(text)
            self._interim = ""
        else:
            self._interim = text
        if self._phase in (TurnPhase.ENDED, TurnPhase.IDLE) and self.transcript:
            # late words of an ended turn: keep the history the scorer sees up to date
            if self._history_index is None:
                self._history.append({"role": "user", "content": self.transcript})
                self._history_index = len(self._history) - 1
            else:
                self._history[self._history_index]["content"] = self.transcript
        if self._overlap is not None:
            self._check_overlap_words(events)
        self._tick(events)
        return events

    def set_agent_speaking(self, speaking: bool) -> list[TurnEvent]:
        """The agent's audio started (True) or stopped (False) playing."""
        self._agent_speaking = bool(speaking)
        if speaking and self._phase is TurnPhase.ENDED:
            self._response_started = True
        return []

    def response_started(self) -> list[TurnEvent]:
        """The agent started producing a response to the ended turn (reopen window becomes
        ``speculative_reopen_ms``)."""
        self._response_started = True
        events: list[TurnEvent] = []
        self._tick(events)
        return events

    def response_committed(self) -> list[TurnEvent]:
        """The response to the ended turn is committed: the turn can no longer reopen."""
        self._response_committed = True
        self._response_started = True
        if self._phase is TurnPhase.ENDED:
            self._phase = TurnPhase.IDLE
        return []

    def add_agent_message(self, text: str) -> None:
        """Append what the agent said to the history the scorer sees."""
        if not isinstance(text, str):
            raise InvalidOptionError(f"text must be a str, got {type(text).__name__}")
        text = " ".join(text.split())
        if text:
            self._history.append({"role": "assistant", "content": text})

    def push_speech_start(self, start_sample: int | None = None) -> list[TurnEvent]:
        """Speech started, as decided by an external VAD (e.g. Pipecat's ``VADAnalyzer``).

        For hosts that run their own VAD and only report its decisions: the engine skips its
        own speech confirmation (the host applied its own minimum) and keeps the turn logic
        (re-opening, barge-in, end of turn). ``start_sample`` (default: now) is the onset on
        the engine clock; move the clock with :meth:`advance`. Don't mix with audio or
        probabilities on the same engine.
        """
        onset = self._clock_arg("start_sample", start_sample)
        events: list[TurnEvent] = []
        if self._phase is TurnPhase.SPEAKING:
            return events
        self._tick(events)  # let an expired reopen window close first
        self._user_speech_started(onset, events)
        return events

    def push_speech_end(self, end_sample: int | None = None) -> list[TurnEvent]:
        """Speech stopped, as decided by an external VAD (see :meth:`push_speech_start`).

        ``end_sample`` (default: now) is where the speech ended: hosts that decide after a
        hangover pass ``now - hangover`` so that the endpointing delay counts from there.
        """
        end = self._clock_arg("end_sample", end_sample)
        events: list[TurnEvent] = []
        if self._phase is not TurnPhase.SPEAKING:
            return events
        stop = SpeechEnd(
            start_sample=self._speech_start,
            end_sample=max(end, self._speech_start),
            detected_sample=self._now,
            sample_rate=self.sample_rate,
            reason="silence",
            audio_start_sample=self._speech_start,
            audio_end_sample=self._speech_start,
        )
        self._speech_stopped(stop, events)
        self._tick(events)
        return events

    def _clock_arg(self, name: str, value: int | None) -> int:
        if value is None:
            return self._now
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InvalidOptionError(f"{name} must be an int sample index, got {value!r}")
        if not 0 <= int(value) <= self._now:
            raise InvalidOptionError(
                f"{name}={value} must lie in [0, now={self._now}] (move the clock with advance())"
            )
        return int(value)

    def flush(self) -> list[TurnEvent]:
        """End of input: close open speech and decide the open turn now (reason "flush")."""
        events: list[TurnEvent] = []
        if self._vad_stream is not None and self._audio_mode:
            probs, windows = self._vad_stream.flush(return_audio=True)
            events += self._windows(np.asarray(probs, dtype=np.float64), windows.reshape(-1))
            self._vad_stream.reset()
        self._close_speech(events)
        if self._overlap is not None:
            self._resolve_backchannel(events)
        if self._phase in (TurnPhase.SPEAKING, TurnPhase.PAUSED):
            self._fire("flush", None, None, events)
        return events

    def commit_turn(self) -> list[TurnEvent]:
        """The host ends the open user turn now (like LiveKit's ``commit_user_turn()``, e.g.
        push-to-talk released): :class:`~caesura.turn.events.EndOfTurn` with
        ``reason="manual"``, whatever the words and the silence say.

        Ongoing speech is closed first (:class:`~caesura.turn.events.SpeechStopped`,
        ``reason="flush"``); a barge-in still undecided becomes an
        :class:`~caesura.turn.events.Interruption` (``reason="manual"``). The turn's words
        join the history as usual, but a committed turn does not reopen: speech after it
        starts a new turn. The VAD stream and the clock go on untouched (audio already given
        stays scored; nothing is padded). Returns ``[]`` when no turn is open (idle, or its
        end of turn already fired).
        """
        events: list[TurnEvent] = []
        if self._phase not in (TurnPhase.SPEAKING, TurnPhase.PAUSED):
            return events
        if self._overlap is not None:
            self._resolve_interruption("manual", events)
        self._close_speech(events)
        self._fire("manual", None, None, events)
        self._phase = TurnPhase.IDLE  # the host's decision: no speculative re-opening
        return events

    def clear_turn(self) -> None:
        """The host discards the open user turn (like LiveKit's ``clear_user_turn()``): its
        transcript (final and interim words), pending short fragments and buffered audio
        are dropped, no :class:`~caesura.turn.events.EndOfTurn` ever fires for it, and the
        history is left as it was. The phase goes back to idle; the next speech starts a new
        turn. The clock, the history and the user's pause adaptation are unchanged, and so
        is an ended turn (only an open turn, speaking or paused, is discarded).

        Words the recogniser still delivers afterwards for the discarded speech would open a
        new turn: reset or clear the recogniser's stream too.
        """
        self._segmenter.flush()  # drop the open segment without reporting it
        self._drop_candidates()
        self._audio.clear()
        if self._phase not in (TurnPhase.SPEAKING, TurnPhase.PAUSED):
            return
        self._phase = TurnPhase.IDLE
        self._turn_open = False
        self._finals = []
        self._interim = ""
        self._words_fresh = False
        self._overlap = None
        self._score_key = None
        self._failed_key = None

    def _drop_candidates(self) -> None:
        """Forget the unconfirmed candidate segment and the held (stitchable) fragments."""
        self._cand_open = False
        self._cand_confirmed = False
        self._held.clear()

    def _close_speech(self, events: list[TurnEvent]) -> None:
        """Close open speech now (:class:`SpeechStopped`, ``reason="flush"``) and drop
        unconfirmed candidates; the VAD stream is left alone."""
        for ev in self._segmenter.flush():
            self._on_segment_event(ev, events)
        self._drop_candidates()
        if self._phase is TurnPhase.SPEAKING:
            # speech reported by an external VAD (push_speech_start): the segmenter had none
            self._speech_stopped(
                SpeechEnd(
                    start_sample=self._speech_start,
                    end_sample=max(self._now, self._speech_start),
                    detected_sample=self._now,
                    sample_rate=self.sample_rate,
                    reason="flush",
                    audio_start_sample=self._speech_start,
                    audio_end_sample=self._speech_start,
                ),
                events,
            )

    # ================================================================== window loop
    def _windows(
        self, probs: npt.NDArray[np.float64], audio: Float32Array | None
    ) -> list[TurnEvent]:
        events: list[TurnEvent] = []
        ws = self.window_size
        if audio is not None:
            self._audio_mode = True
        for i in range(probs.size):
            start = self._now
            if audio is not None:
                win = audio[i * ws : (i + 1) * ws]
                self._audio.append(start, win.copy())
            for ev in self._segmenter.process(probs[i : i + 1]):
                if isinstance(ev, VADWindow):
                    self._now = ev.end_sample
                    self._on_window(ev, events)
                else:
                    self._on_segment_event(ev, events)
            self._trim_audio()
        return events

    def _trim_audio(self) -> None:
        if not self._audio.has_audio:
            return
        pre = self._ms(self._opts.pre_roll_ms)
        if self._phase is TurnPhase.SPEAKING:
            keep = self._speech_start - pre
            if self._cand_open:
                keep = min(keep, self._cand_onset - pre)
        elif self._cand_open:
            keep = self._cand_onset - pre
        else:
            # a segment the segmenter has not confirmed yet may have started up to its
            # min_speech + min_silence ago: keep enough for its pre-roll
            seg = self._segmenter.options
            pending = self._ms(seg.min_speech_ms + seg.min_silence_ms) + 2 * self.window_size
            keep = self._now - pre - pending - self._ms(self._opts.stitch_ms)
        if self._held:
            keep = min(keep, self._held[0][0] - pre)
        self._audio.trim_before(keep)

    def _ms(self, ms: float) -> int:
        return round(ms * self.sample_rate / 1000.0)

    def _to_ms(self, samples: int) -> float:
        return samples * 1000.0 / self.sample_rate

    # ================================================================== segmenter events
    def _on_segment_event(
        self, ev: SpeechStart | SpeechEnd | VADWindow, events: list[TurnEvent]
    ) -> None:
        if isinstance(ev, SpeechStart):
            self._now = max(self._now, ev.detected_sample)
            self._cand_open = True
            self._cand_onset = ev.start_sample
            self._cand_speech_end = ev.detected_sample
            if ev.continued and self._phase is TurnPhase.SPEAKING:
                # the rest of a segment split at max_speech: same speech, same turn
                self._cand_confirmed = True
                self._speech_start = ev.start_sample
                self._emit_started(ev.start_sample, events, continued=True)
                return
            self._cand_confirmed = False
            self._check_confirm(events)
        elif isinstance(ev, SpeechEnd):
            was_confirmed = self._cand_open and self._cand_confirmed
            self._cand_open = False
            if was_confirmed:
                self._speech_stopped(ev, events)
            elif self._opts.stitch_ms > 0 and (
                ev.end_sample - ev.start_sample >= self._ms(STITCH_MIN_FRAGMENT_MS)
            ):
                self._held.append((ev.start_sample, ev.end_sample))
            self._cand_confirmed = False

    def _on_window(self, w: VADWindow, events: list[TurnEvent]) -> None:
        if self._cand_open and w.is_speech and w.speaking:
            self._cand_speech_end = w.end_sample
        if self._cand_open and not self._cand_confirmed:
            self._check_confirm(events)
        if self._held:
            limit = self._ms(self._opts.stitch_ms)
            while self._held and self._now - self._held[0][0] > limit:
                dropped = self._held.pop(0)
                logger.debug("dropped a short speech fragment %s (not stitched in time)", dropped)
        if self._phase is TurnPhase.SPEAKING:
            self._progressive(events)
        if self._overlap is not None:
            self._check_overlap_time(events)
        self._tick(events)

    def _required_bar(self) -> int:
        """Samples of speech needed to confirm the candidate as user speech."""
        o = self._opts
        if self._agent_speaking and self._phase in (TurnPhase.IDLE, TurnPhase.ENDED):
            return self._ms(o.min_speech_ms)  # barge-in needs the full bar
        if self._phase is TurnPhase.PAUSED or (
            self._phase is TurnPhase.ENDED and self._reopenable()
        ):
            return self._ms(o.continuation_bar_ms)
        return self._ms(o.min_speech_ms)

    def _check_confirm(self, events: list[TurnEvent]) -> None:
        span = self._cand_speech_end - self._cand_onset
        held = sum(e - s for s, e in self._held)
        if span + held < self._required_bar():
            return
        onset = self._held[0][0] if self._held else self._cand_onset
        self._held.clear()
        self._cand_confirmed = True
        self._user_speech_started(onset, events)

    # ================================================================== turn logic
    def _new_turn(self) -> None:
        self._turn_id += 1
        self._turn_open = True
        self._finals = []
        self._interim = ""
        self._language = None
        self._history_index = None
        self._response_started = False
        self._response_committed = False
        self._score_key = None
        self._failed_key = None

    def _reopen_window_ms(self) -> float:
        o = self._opts
        if self._response_started:
            return o.speculative_reopen_ms
        return max(o.unanswered_reopen_ms, o.speculative_reopen_ms)

    def _reopenable(self) -> bool:
        if self._phase is not TurnPhase.ENDED or self._response_committed:
            return False
        return self._to_ms(self._now - self._silence_start) <= self._reopen_window_ms()

    def _user_speech_started(self, onset: int, events: list[TurnEvent]) -> None:
        interrupt = self._agent_speaking
        self._after_backchannel = False
        pause_ms = self._to_ms(onset - self._silence_start)
        if self._phase is TurnPhase.PAUSED:
            self._record_pause(pause_ms)
        elif self._phase is TurnPhase.ENDED and self._reopenable() and onset >= self._silence_start:
            self._record_pause(pause_ms)
            if self._history_index is not None and self._history_index == len(self._history) - 1:
                self._history.pop()
            self._history_index = None
            events.append(
                TurnReopened(self._now, self.sample_rate, turn_id=self._turn_id, pause_ms=pause_ms)
            )
        else:
            self._new_turn()
            if interrupt:
                self._overlap = (self._turn_id, onset, None)
        self._phase = TurnPhase.SPEAKING
        self._speech_start = onset
        self._words_fresh = False
        self._emit_started(onset, events, interrupt=interrupt)
        if self._opts.progressive_interval_ms > 0:
            self._prog_index = 0
            self._prog_next = onset + self._ms(self._opts.progressive_interval_ms)
        if self._overlap is not None:
            self._check_overlap_words(events)

    def _emit_started(
        self,
        onset: int,
        events: list[TurnEvent],
        *,
        interrupt: bool = False,
        continued: bool = False,
    ) -> None:
        a0, audio = self._audio_span(onset - self._ms(self._opts.pre_roll_ms), self._now)
        events.append(
            SpeechStarted(
                self._now,
                self.sample_rate,
                turn_id=self._turn_id,
                start_sample=onset,
                interrupt_response=interrupt,
                continued=continued,
                audio=audio,
                audio_start_sample=a0,
            )
        )

    def _audio_span(self, start: int, end: int) -> tuple[int, Float32Array | None]:
        start = max(0, start)
        if not self._audio_mode:
            return start, None
        return self._audio.slice(start, end)

    def _speech_stopped(self, ev: SpeechEnd, events: list[TurnEvent]) -> None:
        start = self._speech_start if ev.reason != "max_speech" else ev.start_sample
        start = min(start, ev.start_sample)
        a_end = min(ev.end_sample + self._ms(self._opts.speech_pad_ms), self._now)
        a0, audio = self._audio_span(start - self._ms(self._opts.pre_roll_ms), a_end)
        events.append(
            SpeechStopped(
                self._now,
                self.sample_rate,
                turn_id=self._turn_id,
                start_sample=start,
                end_sample=ev.end_sample,
                reason=ev.reason,
                audio=audio,
                audio_start_sample=a0,
            )
        )
        if ev.reason == "max_speech":
            return  # the segmenter continues the speech at once; the turn stays open
        self._phase = TurnPhase.PAUSED
        self._silence_start = ev.end_sample
        self._score_key = None
        if ev.reason == "silence":
            events.append(
                FlushSTT(
                    self._now, self.sample_rate, turn_id=self._turn_id, end_sample=ev.end_sample
                )
            )
        if self._overlap is not None:
            tid, onset, _ = self._overlap
            self._overlap = (tid, onset, ev.end_sample)
            text = self.transcript
            if text and is_backchannel(text):
                self._resolve_backchannel(events)

    def _progressive(self, events: list[TurnEvent]) -> None:
        o = self._opts
        if o.progressive_interval_ms <= 0 or not self._audio_mode or self._now < self._prog_next:
            return
        a0, audio = self._audio_span(self._speech_start - self._ms(o.pre_roll_ms), self._now)
        if audio is None:
            return
        events.append(
            ProgressiveAudio(
                self._now,
                self.sample_rate,
                turn_id=self._turn_id,
                audio=audio,
                audio_start_sample=a0,
                index=self._prog_index,
            )
        )
        self._prog_index += 1
        elapsed_ms = self._to_ms(self._now - self._speech_start)
        doublings = int(elapsed_ms // o.progressive_backoff_ms)
        interval = min(o.progressive_interval_ms * (2.0**doublings), o.progressive_max_interval_ms)
        self._prog_next = self._now + self._ms(interval)

    # ------------------------------------------------------------------ barge-in
    def _check_overlap_words(self, events: list[TurnEvent]) -> None:
        text = self.transcript
        if normalise_words(text) and not is_backchannel(text):
            self._resolve_interruption("words", events)

    def _check_overlap_time(self, events: list[TurnEvent]) -> None:
        assert self._overlap is not None
        _, onset, ended = self._overlap
        if self._phase is TurnPhase.SPEAKING:
            if self._to_ms(self._now - onset) >= self._opts.backchannel_max_ms:
                self._resolve_interruption("duration", events)
        elif ended is not None and self._to_ms(self._now - ended) >= self._opts.backchannel_wait_ms:
            self._resolve_backchannel(events)

    def _resolve_interruption(
        self, reason: Literal["words", "duration", "manual"], events: list[TurnEvent]
    ) -> None:
        assert self._overlap is not None
        self._overlap = None
        events.append(
            Interruption(
                self._now,
                self.sample_rate,
                turn_id=self._turn_id,
                reason=reason,
                transcript=self.transcript,
            )
        )

    def _resolve_backchannel(self, events: list[TurnEvent]) -> None:
        assert self._overlap is not None
        _, onset, ended = self._overlap
        self._overlap = None
        events.append(
            Backchannel(
                self._now,
                self.sample_rate,
                transcript=self.transcript,
                start_sample=onset,
                end_sample=ended if ended is not None else self._now,
            )
        )
        # a backchannel opens no turn
        self._after_backchannel = True
        self._phase = TurnPhase.IDLE
        self._turn_open = False
        self._finals = []
        self._interim = ""

    # ------------------------------------------------------------------ end of turn
    def _record_pause(self, pause_ms: float) -> None:
        if pause_ms > 0:
            self._user_pauses.append(pause_ms / 1000.0)
            self._refresh_adaptation()

    def _refresh_adaptation(self) -> None:
        o = self._opts
        if o.adapt_min_delay and self._user_pauses:
            # pauses shorter than the hangover are never observed: compare like with like
            m = o.min_silence_ms / 1000.0
            surv = self._base_survival.personalized(
                list(self._user_pauses), o.adapt_prior_pauses, observed_from_s=m
            )
            ratio = surv.quantile(0.5, given_s=m) / max(
                self._base_survival.quantile(0.5, given_s=m), 1e-3
            )
            ratio = min(max(ratio, 1.0 / o.adapt_max_factor), o.adapt_max_factor)
            self._survival = surv
            self._min_delay_ms = min(o.min_delay_ms * ratio, o.max_delay_ms)
        else:
            self._survival = self._base_survival
            self._min_delay_ms = float(o.min_delay_ms)

    def _words_probability(self, events: list[TurnEvent]) -> tuple[float | None, bool]:
        """``(P(end | words), failed)``. P is None when there is nothing (current) to score:
        no scorer, no words, an unsupported language, or no transcript update since the user
        last started speaking (the words would be stale: the recogniser has not caught up);
        or when the scorer failed on these words (``failed``: reported once as
        :class:`ScorerFailed`, not retried before the next transcript update) or has not
        answered yet (``failed`` too: it raised :class:`ScorePending`; asked again next
        time)."""
        if self._predict is None or not self._words_fresh:
            return None, False
        text = self.transcript
        if not normalise_words(text):
            return None, False
        lang = self._language
        if (
            lang is not None
            and self._supports_language is not None
            and not self._supports_language(lang)
        ):
            if lang not in self._warned_languages:
                self._warned_languages.add(lang)
                logger.warning(
                    "end-of-turn scorer does not support language %r: silence-only "
                    "endpointing (%.0f ms) for it",
                    lang,
                    self._opts.fallback_delay_ms,
                )
            return None, False
        predict, pending = self._predict, False
        # speech went on after the last transcript update: the last word(s) are still coming
        if (
            self._opts.score_pending_words
            and self._predict_pending is not None
            and self._words_sample < self._silence_start
        ):
            predict, pending = self._predict_pending, True
        key = (
            len(self._history),
            tuple(t["content"] for t in self._history[-2:]),
            text,
            lang,
            pending,
        )
        if key == self._score_key:
            return self._score_value, False
        failed_key = (self._transcript_rev, *key)
        if failed_key == self._failed_key:
            return None, True
        ctx = (
            self._history[-(self._opts.max_history_turns - 1) :]
            if (self._opts.max_history_turns > 1)
            else []
        )
        turns = [*ctx, {"role": "user", "content": text}]
        t0 = time.perf_counter()
        try:
            value = _probability(predict(turns))
        except ScorePending:
            return None, True  # being computed: no decision on these words yet, no fallback
        except Exception as exc:  # a model failure is reported, never taken for an answer
            self._failed_key = failed_key
            self._score_key = None
            logger.error(
                "end-of-turn scorer failed on turn %d (%r): no words evidence, the turn ends "
                "at max_delay (%.0f ms): %s",
                self._turn_id,
                text,
                self._opts.max_delay_ms,
                exc,
                exc_info=exc,
            )
            events.append(
                ScorerFailed(
                    self._now,
                    self.sample_rate,
                    turn_id=self._turn_id,
                    transcript=text,
                    error=exc,
                )
            )
            return None, True
        self._score_ms = (time.perf_counter() - t0) * 1000.0
        self._score_key, self._score_value, self._score_pending = key, value, pending
        events.append(
            WordsScored(
                self._now,
                self.sample_rate,
                turn_id=self._turn_id,
                transcript=text,
                probability=value,
                inference_ms=self._score_ms,
                words_pending=pending,
            )
        )
        return value, False

    def _tick(self, events: list[TurnEvent]) -> None:
        if self._phase is TurnPhase.ENDED:
            if self._response_committed or not self._reopenable():
                self._phase = TurnPhase.IDLE
            return
        if self._phase is not TurnPhase.PAUSED or self._overlap is not None:
            return
        o = self._opts
        t_ms = self._to_ms(self._now - self._silence_start)
        if t_ms >= o.max_delay_ms:
            p, _ = self._words_probability(events)
            post = None if p is None else self._posterior(p, t_ms)
            self._fire("max_delay", post, p, events)
            return
        if t_ms < self._min_delay_ms:
            return
        p, failed = self._words_probability(events)
        if p is None:
            # no words: silence-only endpointing; failed scoring: wait for max_delay_ms
            if not failed and t_ms >= o.fallback_delay_ms:
                self._fire("silence", None, None, events)
            return
        if o.wait_for_final and self._interim:
            return
        post = self._posterior(p, t_ms)
        if post >= o.end_threshold:
            self._fire("semantic", post, p, events)

    def _posterior(self, p: float, t_ms: float) -> float:
        return end_posterior(p, t_ms / 1000.0, self._survival, logit_scale=self._opts.logit_scale)

    def _fire(
        self,
        reason: EndOfTurnReason,
        post: float | None,
        p: float | None,
        events: list[TurnEvent],
    ) -> None:
        text = self.transcript
        events.append(
            EndOfTurn(
                self._now,
                self.sample_rate,
                turn_id=self._turn_id,
                probability=post,
                words_probability=p,
                delay_ms=max(0.0, self._to_ms(self._now - self._silence_start)),
                min_delay_ms=self._min_delay_ms,
                reason=reason,
                transcript=text,
                language=self._language,
                scorer_ms=self._score_ms if p is not None else None,
                words_pending=self._score_pending if p is not None else False,
            )
        )
        if text:
            self._history.append({"role": "user", "content": text})
            self._history_index = len(self._history) - 1
            excess = len(self._history) - 4 * self._opts.max_history_turns
            if excess > 0:
                del self._history[:excess]
                self._history_index -= excess
        if reason == "flush":
            self._silence_start = min(self._silence_start, self._now)
        self._phase = TurnPhase.ENDED
        self._response_started = False
        self._response_committed = False

    def __repr__(self) -> str:
        return (
            f"TurnEngine(sample_rate={self.sample_rate}, phase={self._phase.value}, "
            f"turn_id={self._turn_id}, t={self.time_s:.3f}s)"
        )


def _join(finals: Sequence[str], interim: str) -> str:
    return " ".join([*finals, interim] if interim else finals)


def _probability(p: object) -> float:
    """The scorer's answer as a probability, or a :class:`ModelError`."""
    try:
        value = float(p)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ModelError(f"end-of-turn scorer returned {p!r}, not a number") from exc
    if not 0.0 <= value <= 1.0:
        raise ModelError(f"end-of-turn scorer returned {value!r}, outside [0, 1]")
    return value


def _scorer_functions(
    scorer: object,
) -> tuple[
    Callable[[Sequence[ChatTurn]], float] | None,
    Callable[[str], bool] | None,
    Callable[[Sequence[ChatTurn]], float] | None,
]:
    """``(predict, supports_language, predict with the last words pending)`` of a scorer;
    the last is ``None`` unless the scorer says ``supports_pending_words``."""
    if scorer is None:
        return None, None, None
    if isinstance(scorer, SupportsStream) and not isinstance(scorer, type):
        # one conversation per engine: its own stream computes only the words that are new
        scorer = scorer.stream()
    supports = getattr(scorer, "supports_language", None)
    supports_fn = supports if callable(supports) else None
    predict = getattr(scorer, "predict", None)
    if callable(predict):
        pending_fn = None
        if getattr(scorer, "supports_pending_words", False) is True:

            def pending_fn(turns: Sequence[ChatTurn], /) -> float:
                return float(predict(turns, words_pending=True))

        return predict, supports_fn, pending_fn
    if callable(scorer):
        return scorer, supports_fn, None
    raise InvalidOptionError(
        "scorer must be a callable turns -> float or an object with predict(turns)"
    )
