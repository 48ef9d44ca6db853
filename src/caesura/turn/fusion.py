"""Fusion of P(end | words) with the silence elapsed: Bayes over pause survival curves.

At a pause, two hypotheses compete: the user is done (END) or is pausing mid-turn (HOLD).
The end-of-turn model gives ``p = P(END | words)`` at the start of the pause. A pause that has
already lasted ``t`` is evidence too: most mid-turn pauses are short, so

    odds(END | words, silence >= t) = odds(END | words) * S_end(t) / S_hold(t)

where ``S_hold(t) = P(a mid-turn pause lasts >= t)``, learnt from the Switchboard train split
(``pause_survival.json``, written by ``python -m caesura.turn._fit_survival``), and
``S_end(t)`` is the probability that a user who *is* done has not spoken again after ``t``.
In a human conversation the END gap ends when the other person answers; with an agent
nobody answers until we decide, so a finished user stays silent: ``S_end = 1``. The
posterior therefore rises with the silence elapsed, fast where the words say "done" and
slowly where they say "more to come". ``benchmarks/turns.py`` measures it: on Switchboard
test (120 conversations, lag 0.3 s, an early end-of-turn checkpoint with ROC-AUC 0.69) the
fused policy beats the same model with a fixed threshold at every budget but one (false
cut-offs at 600 ms: 32.9% vs 36.0%; latency at 10%: 1,105 vs 1,136 ms) and silence-only
everywhere (82.9% / 40.2% / 1,600 ms / 1,200 ms).

:class:`PauseSurvival` also adapts to one user: :meth:`PauseSurvival.personalized` blends
the population curve with the user's own observed mid-turn pauses.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources

import numpy as np
import numpy.typing as npt

from caesura.errors import InvalidOptionError

__all__ = ["PauseSurvival", "end_posterior", "logit"]

logger = logging.getLogger(__name__)

_TABLE = "pause_survival.json"
#: Floor of S_hold in the tail, so the odds stay finite (1 pause in ~10,000 lasts that long).
_S_FLOOR = 1e-4
_EPS = 1e-6


def logit(p: float) -> float:
    """log(p / (1 - p)) with p clipped to [1e-6, 1 - 1e-6]."""
    q = min(max(float(p), _EPS), 1.0 - _EPS)
    return math.log(q / (1.0 - q))


class PauseSurvival:
    """S_hold(t): the probability that a mid-turn pause lasts at least ``t`` seconds.

    Tabulated on a regular grid starting at 0 s and interpolated linearly; beyond the table
    the last value (floored at 1e-4) holds. :meth:`default` loads the shipped Switchboard
    curve.
    """

    def __init__(self, step_s: float, hold: Sequence[float] | npt.NDArray[np.float64]) -> None:
        arr = np.asarray(hold, dtype=np.float64).reshape(-1)
        if not (isinstance(step_s, (int, float)) and step_s > 0 and math.isfinite(step_s)):
            raise InvalidOptionError(f"step_s must be a positive number, got {step_s!r}")
        if arr.size < 2:
            raise InvalidOptionError("a survival table needs at least two points")
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise InvalidOptionError("survival values must lie in [0, 1]")
        if np.any(np.diff(arr) > 1e-9):
            raise InvalidOptionError("a survival curve must be non-increasing")
        self.step_s = float(step_s)
        self._hold = np.maximum(arr, _S_FLOOR)

    @classmethod
    def default(cls) -> PauseSurvival:
        """The curve shipped with caesura (Switchboard train, within-turn pauses 0.2-5 s)."""
        return _default_survival()

    @property
    def values(self) -> npt.NDArray[np.float64]:
        """The tabulated S_hold on the grid (a copy)."""
        return self._hold.copy()

    @property
    def max_s(self) -> float:
        return self.step_s * (self._hold.size - 1)

    def hold(self, t_s: float) -> float:
        """S_hold(t_s): probability that a mid-turn pause lasts at least ``t_s`` seconds."""
        if t_s <= 0.0:
            return float(self._hold[0])
        x = t_s / self.step_s
        i = int(x)
        if i >= self._hold.size - 1:
            return float(self._hold[-1])
        f = x - i
        return float(self._hold[i] * (1.0 - f) + self._hold[i + 1] * f)

    def quantile(self, q: float, *, given_s: float = 0.0) -> float:
        """Seconds ``t`` such that a fraction ``q`` of mid-turn pauses is shorter than ``t``;
        with ``given_s``, among the pauses that last at least ``given_s``."""
        if not 0.0 < q < 1.0:
            raise InvalidOptionError(f"q must be in (0, 1), got {q!r}")
        target = (1.0 - q) * self.hold(given_s)
        idx = int(np.searchsorted(-self._hold, -target, side="left"))
        return max(min(idx, self._hold.size - 1) * self.step_s, given_s)

    def personalized(
        self, pauses_s: Sequence[float], prior_weight: float, *, observed_from_s: float = 0.0
    ) -> PauseSurvival:
        """Blend this curve with a user's observed mid-turn pauses (seconds).

        The result is the survival of a mixture: ``prior_weight`` pseudo-pauses drawn from
        this curve plus the observed ones, i.e. a Bayesian estimate that moves towards the
        user's own habit as evidence accumulates. ``observed_from_s``: the shortest pause
        that could have been observed (the VAD's hangover); the blend then applies to pauses
        at least that long, and the curve below it is kept.
        """
        if prior_weight < 0 or not math.isfinite(prior_weight):
            raise InvalidOptionError(f"prior_weight must be >= 0, got {prior_weight!r}")
        m = max(0.0, float(observed_from_s))
        obs = np.asarray([float(p) for p in pauses_s if p >= m and p > 0], dtype=np.float64)
        if obs.size == 0:
            return self
        grid = np.arange(self._hold.size) * self.step_s
        s_m = self.hold(m)
        below = np.searchsorted(np.sort(obs), grid - 1e-9, side="left")
        emp = 1.0 - below / obs.size
        cond = np.minimum(self._hold / s_m, 1.0)
        mixed = s_m * (prior_weight * cond + obs.size * emp) / (prior_weight + obs.size)
        out = np.where(grid < m, self._hold, mixed)
        return PauseSurvival(self.step_s, np.minimum.accumulate(np.clip(out, 0.0, 1.0)))


@lru_cache(maxsize=1)
def _default_survival() -> PauseSurvival:
    raw = resources.files("caesura.turn").joinpath(_TABLE).read_text(encoding="utf-8")
    table = json.loads(raw)
    surv = PauseSurvival(float(table["grid_step_s"]), table["hold"])
    logger.debug("loaded pause survival table (%d holds)", table.get("n_hold", -1))
    return surv


def end_posterior(
    p_words: float,
    silence_s: float,
    survival: PauseSurvival,
    *,
    logit_scale: float = 1.0,
    logit_bias: float = 0.0,
) -> float:
    """P(END | words, silence >= ``silence_s``) from the model's ``p_words``.

    ``logit_scale`` / ``logit_bias`` recalibrate the model's log-odds first (identity by
    default); then ``log S_hold(silence_s)`` is subtracted (S_end = 1, see the module doc).
    """
    z = logit_scale * logit(p_words) + logit_bias - math.log(survival.hold(silence_s))
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)
