"""The end-of-turn benchmark harness (benchmarks/turns.py) on synthetic decision points."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_turns", ROOT / "benchmarks" / "turns.py")
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_turns"] = mod
    spec.loader.exec_module(mod)
    return mod


def synthetic(n_hold=400, n_end=100, seed=0):
    rng = np.random.default_rng(seed)
    dur = np.concatenate([rng.uniform(0.2, 3.0, n_hold), rng.uniform(0.2, 2.0, n_end)])
    is_end = np.concatenate([np.zeros(n_hold, bool), np.ones(n_end, bool)])
    return is_end, dur


def test_silence_only_matches_the_pause_distribution(bench):
    is_end, dur = synthetic()
    ops = bench.silence_ops(is_end, dur)
    for lat, cut, *_ in ops:
        assert cut == pytest.approx(np.mean(dur[~is_end] > lat + 1e-9))
    s = bench.summarise(ops)
    assert s["cut@300ms"][0] == pytest.approx(np.mean(dur[~is_end] > 0.3 + 1e-9))
    lat5 = s["lat@5%"][0]
    assert np.mean(dur[~is_end] > lat5 + 1e-9) <= 0.05
    assert np.mean(dur[~is_end] > lat5 - 0.1 + 1e-9) > 0.05  # the smallest such delay


def test_a_perfect_score_never_cuts_off_and_answers_at_the_first_query(bench):
    is_end, dur = synthetic()
    scores = np.where(is_end[:, None], 0.9, 0.1) * np.ones((1, bench.QUERIES.size))
    s = bench.summarise(bench.sweep(scores, is_end, dur))
    assert s["cut@300ms"][0] == 0.0
    assert s["lat@5%"][0] == pytest.approx(0.2)  # the shortest action delay
    assert bench.auc(scores[is_end, 0], scores[~is_end, 0]) == 1.0


def test_a_useless_score_does_no_better_than_silence(bench):
    is_end, dur = synthetic(seed=1)
    rng = np.random.default_rng(2)
    scores = rng.random((is_end.size, bench.QUERIES.size))
    s = bench.summarise(bench.sweep(scores, is_end, dur))
    base = bench.summarise(bench.silence_ops(is_end, dur))
    assert s["cut@300ms"][0] >= base["cut@300ms"][0] - 0.06
    assert 0.4 < bench.auc(scores[is_end, 0], scores[~is_end, 0]) < 0.6


def test_fusion_rises_with_the_query_time(bench):
    p = np.full((3, bench.QUERIES.size), 0.3)
    f = bench.fused(p)
    assert np.all(np.diff(f, axis=1) >= -1e-12)
    assert f[0, 0] == pytest.approx(0.3)
    assert f[0, -1] > 0.9


def test_auc_handles_ties(bench):
    assert bench.auc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5
    assert bench.auc(np.array([2.0, 1.0]), np.array([1.0, 0.0])) == pytest.approx(0.875)


def test_skips_cleanly_without_data(bench, tmp_path, capsys):
    assert bench.main(["--data", str(tmp_path / "nothing")]) == 0
    assert "skipping" in capsys.readouterr().out


def test_silence_at_a_latency_cuts_off_the_longer_holds(bench):
    holds = np.array([0.25, 0.5, 0.8, 1.2, 2.0])
    assert bench.silence_cut_at(holds, 0.7) == pytest.approx(3 / 5)
    assert bench.silence_cut_at(holds, 2.0) == 0.0


def test_engine_against_silence_at_equal_latency(bench):
    is_end, dur = synthetic(seed=3)
    conv = np.arange(is_end.size) % 20  # 20 conversations to resample
    opts = {"end_threshold": 0.5, "min_delay_ms": 300.0, "max_delay_ms": 3300.0}
    # words that tell END from HOLD: fires at 0.3 s on every END, never inside a HOLD
    perfect = np.where(is_end[:, None], 0.9, 0.1) * np.ones((1, bench.QUERIES.size))
    r = bench.engine_vs_silence(perfect, is_end, dur, conv, opts, n_boot=200)
    assert r["latency"] == pytest.approx(0.3)
    assert r["cut"] == pytest.approx(np.mean(dur[~is_end] > 3.3))
    assert r["silence_cut"] == pytest.approx(np.mean(dur[~is_end] > 0.3 + 1e-9))
    assert r["reduction"] == pytest.approx(1.0)
    assert r["ci95"][0] > 0.9
    # words that say nothing: the engine is a fixed silence of its own latency, no gain
    blind = np.full_like(perfect, 0.2)
    blind[:, 9:] = 0.6  # passes from the 1.0 s query on, for every pause alike
    r = bench.engine_vs_silence(blind, is_end, dur, conv, opts, n_boot=200)
    assert r["latency"] == pytest.approx(1.0)
    assert r["reduction"] == pytest.approx(0.0, abs=1e-9)
    assert r["ci95"][0] <= 0.0 <= r["ci95"][1]
