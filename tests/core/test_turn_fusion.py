"""Fusion policy, pause survival table, lexical helpers and turn options."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from caesura.errors import InvalidOptionError
from caesura.turn import (
    PauseSurvival,
    TurnOptions,
    end_posterior,
    is_backchannel,
    lexical_end_probability,
)


def test_shipped_survival_table_is_a_survival_curve_fitted_on_train():
    table = json.loads(
        resources.files("caesura.turn").joinpath("pause_survival.json").read_text("utf-8")
    )
    assert table["source"].endswith("train.tsv.gz")
    assert table["n_hold"] > 10_000
    hold = np.asarray(table["hold"])
    assert hold[0] == 1.0
    assert np.all(np.diff(hold) <= 0)
    s = PauseSurvival.default()
    assert s.hold(0.0) == 1.0
    assert s.hold(0.2) == 1.0
    # DESIGN.md: silence-only cuts off about 80% of holds at 300 ms, ~5% survive 1.5 s
    assert 0.75 < s.hold(0.3) < 0.9
    assert 0.03 < s.hold(1.5) < 0.08
    assert s.hold(60.0) >= 1e-4  # floored tail: odds stay finite
    assert 0.4 < s.quantile(0.5) < 0.7


def test_posterior_is_the_words_probability_at_onset_and_rises_with_silence():
    s = PauseSurvival.default()
    assert end_posterior(0.3, 0.0, s) == pytest.approx(0.3)
    ts = np.arange(0.0, 3.0, 0.1)
    post = [end_posterior(0.3, float(t), s) for t in ts]
    assert np.all(np.diff(post) >= -1e-12)
    assert post[-1] > 0.9
    # Bayes: odds multiply by 1 / S_hold(t)
    t = 0.7
    odds = end_posterior(0.3, t, s) / (1 - end_posterior(0.3, t, s))
    assert odds == pytest.approx((0.3 / 0.7) / s.hold(t), rel=1e-6)
    # monotone in the words probability at any t
    assert end_posterior(0.2, t, s) < end_posterior(0.6, t, s)
    # recalibration
    assert end_posterior(0.8, 0.0, s, logit_scale=0.5) < 0.8
    assert end_posterior(0.5, 0.0, s, logit_bias=1.0) > 0.5
    assert 0.0 < end_posterior(0.0, 0.0, s) < 1e-5
    assert end_posterior(1.0, 5.0, s) <= 1.0


def test_personalized_survival_moves_towards_the_users_pauses():
    s = PauseSurvival.default()
    slow = s.personalized([2.0] * 50, prior_weight=20)
    assert slow.quantile(0.5) > 1.5 > s.quantile(0.5)
    assert slow.hold(1.0) > s.hold(1.0)
    assert np.all(np.diff(slow.values) <= 0)
    assert s.personalized([], 20) is s
    assert s.personalized([2.0] * 5, prior_weight=1e9).hold(1.0) == pytest.approx(s.hold(1.0))
    with pytest.raises(InvalidOptionError):
        s.personalized([1.0], prior_weight=-1)
    # only pauses longer than a 550 ms hangover can be seen: a user whose pauses match the
    # population's above that is not "slow"
    m = 0.55
    rng = np.random.default_rng(3)
    grid = np.arange(s.values.size) * s.step_s
    cdf = 1.0 - s.values  # sample the population curve by inversion, keep those >= m
    draws = np.interp(rng.random(4000), cdf, grid)
    same = s.personalized(draws[draws >= m].tolist(), prior_weight=20, observed_from_s=m)
    assert same.quantile(0.5, given_s=m) == pytest.approx(s.quantile(0.5, given_s=m), abs=0.05)
    assert same.hold(0.3) == s.hold(0.3)  # below the hangover: the population curve
    assert s.quantile(0.5, given_s=1.0) >= 1.0


def test_survival_rejects_bad_tables():
    with pytest.raises(InvalidOptionError):
        PauseSurvival(0.01, [1.0])
    with pytest.raises(InvalidOptionError):
        PauseSurvival(0.01, [1.0, 0.5, 0.7])  # increasing
    with pytest.raises(InvalidOptionError):
        PauseSurvival(0.01, [1.2, 0.5])
    with pytest.raises(InvalidOptionError):
        PauseSurvival(0.0, [1.0, 0.5])
    with pytest.raises(InvalidOptionError):
        PauseSurvival.default().quantile(1.0)
    s = PauseSurvival(0.5, [1.0, 0.5, 0.0])
    assert s.hold(0.25) == pytest.approx(0.75)
    assert s.hold(10.0) == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("uh-huh", True),
        ("Yeah.", True),
        ("right", True),
        ("mm-hmm okay", True),
        ("i see", True),
        ("wait, stop", False),
        ("yeah but", False),
        ("stop", False),
        ("", False),
        ("yeah yeah yeah yeah yeah", False),
    ],
)
def test_backchannel_words(text, expected):
    assert is_backchannel(text) is expected


def test_lexical_heuristic():
    def p(text):
        return lexical_end_probability([{"role": "user", "content": text}])

    assert p("i want to book a table for") < p("yeah") < p("that's all, thanks.")
    assert p("thi-") < 0.2
    assert p("") == 0.5
    assert lexical_end_probability([{"role": "assistant", "content": "hi"}]) == 0.5


@pytest.mark.parametrize(
    "bad",
    [
        {"min_speech_ms": -1},
        {"min_silence_ms": float("inf")},
        {"threshold": 0.0},
        {"threshold": 1.5},
        {"neg_threshold": 0.9},
        {"end_threshold": 1.0},
        {"max_speech_ms": 200},
        {"min_delay_ms": 500, "max_delay_ms": 400},
        {"max_delay_ms": 0, "min_delay_ms": 0},
        {"logit_scale": 0},
        {"adapt_max_factor": 0.5},
        {"adapt_prior_pauses": -1},
        {"wait_for_final": 1},
        {"max_history_turns": 0},
        {"min_speech_ms": "250"},
        {"speculative_reopen_ms": float("nan")},
        {"progressive_interval_ms": 500, "progressive_max_interval_ms": 100},
    ],
)
def test_options_validation(bad):
    with pytest.raises(InvalidOptionError):
        TurnOptions(**bad)


def test_options_derived_values():
    o = TurnOptions(min_speech_ms=384, min_speech_continuation_ms=192)
    assert o.continuation_bar_ms == 192
    assert o.segmenter_options().min_speech_ms == 192
    assert TurnOptions(min_speech_ms=384, min_speech_continuation_ms=50).continuation_bar_ms == 100
    assert TurnOptions(min_speech_continuation_ms=0).continuation_bar_ms == 250
    assert TurnOptions(stitch_ms=500).segmenter_options().min_speech_ms == 100
    seg = TurnOptions(max_speech_ms=30_000, pre_roll_ms=400).segmenter_options()
    assert seg.max_speech_s == 30
    assert seg.pre_roll_ms == 400
    assert TurnOptions().replace(min_delay_ms=300).min_delay_ms == 300
    with pytest.raises(InvalidOptionError, match="unknown"):
        TurnOptions().replace(min_delay=300)


def test_pooled_survival_weighs_each_corpus_the_same() -> None:
    from caesura.turn._fit_survival import survival, survival_weighted  # noqa: PLC0415

    grid = np.array([0.0, 0.5, 1.0, 2.0])
    short = np.full(1000, 0.3)  # a big corpus of short pauses
    long_ = np.array([1.5, 2.5])  # a small corpus of long ones
    pooled = survival_weighted([short, long_], grid)
    assert pooled == [1.0, 0.5, 0.5, 0.25]
    assert survival(np.concatenate([short, long_]), grid)[1] < 0.01  # unweighted: swamped
