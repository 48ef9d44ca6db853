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
