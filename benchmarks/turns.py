"""End-of-turn policies per corpus, eot-bench protocol (DESIGN.md "Measuring end of turn").

    python benchmarks/turns.py --data ../shared/data [--corpora switchboard,ami,earnings22]
        [--lags 0,0.3,0.5] [--max-points N] [--max-conversations N]

Each word-timed corpus's test split (Switchboard test, AMI eval, Earnings-22 test calls) is
scored on its own. Decision points (caesura.train.switchboard): every within-turn pause of
0.2-5 s is a HOLD, every non-overlapped turn-end gap an END. At each pause a policy is queried
every 0.1 s of silence (0.1 ... 3.5 s), seeing only the words whose end time is at least
``lag`` before the query. A policy (threshold, action delay 0.2-1.0 s, timeout 1.0-3.5 s)
fires at the first query >= its action delay whose score passes the threshold, else at its
timeout. A HOLD is cut off when the policy fires before the speaker resumes; END latency is
the firing time.

Every policy family is swept and its best operating points are reported:

* false cut-off rate at mean END latency budgets of 300 and 600 ms,
* mean END latency at false cut-off budgets of 5% and 10%,
* ROC-AUC of END vs HOLD on the word score once the last word is visible (q = max(lag, 0.1 s)),

side by side with the relative change against silence-only (a fixed delay) run through the
same harness. Families:

* ``silence``: fixed delay (no words);
* ``lexical``: the last-word heuristic ``caesura.turn.lexical_end_probability`` (constant in t);
* ``lexical+fusion``: the same, fused with the silence elapsed (``caesura.turn.fusion``);
* ``model`` / ``model+fusion``: the end-of-turn model (``caesura.eot.EndOfTurnModel``), when
  one is installed (or ``--scorer none`` to skip it).

The fusion's logit scale and an engine threshold are calibrated on every corpus's *val* split
at once (``calibrate``: the largest worst-corpus reduction of cut-offs against silence at equal
latency, within ``--latency-budget`` of mean END latency) and printed as a recommendation.
The engine's shipped defaults (:class:`caesura.TurnOptions`) are scored on each test split
against a fixed silence of the same mean END latency, with a bootstrap CI over conversations.

Model scores are computed once per distinct visible context (a pause has one or two across
all queries and lags) and batched through ``predict_many``; ``--cache FILE`` keeps them across
runs. Exits 0 with a message when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import pickle
import random
import sys
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from caesura import TurnOptions
from caesura.eot import EndOfTurnModel
from caesura.train.data import timed_corpora
from caesura.train.switchboard import (
    conversation_turns,
    decision_points,
    visible_turns,
)
from caesura.turn.fusion import PauseSurvival
from caesura.turn.lexical import lexical_end_probability

ROOT = Path(__file__).resolve().parent.parent
QUERY_STEP = 0.1
QUERIES = np.round(np.arange(1, 36) * QUERY_STEP, 6)  # 0.1 ... 3.5 s
ACTION_DELAYS = np.round(np.arange(2, 11) * QUERY_STEP, 6)  # 0.2 ... 1.0 s
TIMEOUTS = np.round(np.arange(10, 36) * QUERY_STEP, 6)  # 1.0 ... 3.5 s
LAT_BUDGETS = (0.3, 0.6)
CUT_BUDGETS = (0.05, 0.10)

log = logging.getLogger("benchmarks.turns")


# ------------------------------------------------------------------------------ data


def load_points(
    data: Path,
    corpus: str,
    split: str,
    max_convs: int | None,
    seed: int,
    max_points: int | None = None,
):
    """One corpus's conversations of ``split`` and their decision points (at most
    ``max_convs`` conversations and ``max_points`` points, seeded samples)."""
    convs = timed_corpora(data, split, only=[corpus]).get(corpus, [])
    if max_convs is not None and max_convs < len(convs):
        rng = random.Random(seed)
        convs = sorted(rng.sample(convs, max_convs), key=lambda c: c.conv)
    points = []
    for conv in convs:
        turns = conversation_turns(conv)
        for p in decision_points(conv, turns):
            points.append((turns, p))
    if max_points is not None and max_points < len(points):
        # every metric is a rate within one class (cut-offs over HOLDs, latency over ENDs), so
        # sample the classes apart: up to half the points are ENDs, the rest HOLDs
        rng = random.Random(seed)
        ends = [i for i, (_, p) in enumerate(points) if p.label == "END"]
        holds = [i for i, (_, p) in enumerate(points) if p.label != "END"]
        ends = rng.sample(ends, min(len(ends), max_points // 2))
        holds = rng.sample(holds, min(len(holds), max_points - len(ends)))
        points = [points[i] for i in sorted(ends + holds)]
    return convs, points


def contexts_for(points, lags: Sequence[float]):
    """Per lag, per point: the context id seen at each query time; plus the contexts; plus,
    per lag, whether the speaker's words are still pending at that query (the word before
    the pause is not visible yet: the recogniser has not caught up with the end of speech,
    which a live engine knows because no transcript update came after the speech ended).

    A context only changes when a word's end crosses ``query - lag``, so it is built once
    per distinct cut-off signature and shared across queries and lags."""
    keys = {lag: np.empty((len(points), QUERIES.size), dtype=np.int64) for lag in lags}
    pending = {lag: np.zeros((len(points), QUERIES.size), dtype=bool) for lag in lags}
    ctx_of: dict[tuple, int] = {}
    ctx_list: list[tuple[tuple[str, str], ...]] = []
    for n, (turns, p) in enumerate(points):
        cur = turns[p.turn_index]
        cur_ends = [w.end for w in cur.words[: p.word_index + 1]]
        prev_ends = [w.end for w in turns[p.turn_index - 1].words] if p.turn_index else []
        by_sig: dict[tuple[int, int], int] = {}
        for lag in lags:
            row = keys[lag][n]
            for k, q in enumerate(QUERIES):
                t = p.start + q - lag + 1e-6
                sig = (bisect_right(cur_ends, t), bisect_right(prev_ends, t))
                pending[lag][n, k] = 0 < sig[0] < len(cur_ends)
                cid = by_sig.get(sig)
                if cid is None:
                    vis = tuple(visible_turns(turns, p, query_time=p.start + q, lag=lag))
                    cid = ctx_of.get(vis)
                    if cid is None:
                        cid = len(ctx_list)
                        ctx_of[vis] = cid
                        ctx_list.append(vis)
                    by_sig[sig] = cid
                row[k] = cid
    return keys, ctx_list, pending


def as_chat(vis: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"role": "user" if r == "user" else "assistant", "content": t} for r, t in vis]


# ------------------------------------------------------------------------------ scorers


def score_contexts(
    ctx_list,
    scorer: Callable[[list[dict[str, str]]], float] | None,
    model,
    cache: dict,
    *,
    only: np.ndarray | None = None,
    words_pending: bool = False,
) -> np.ndarray:
    """Scores of the contexts (``only``: of those ids; the rest stay NaN). With
    ``words_pending`` the model answers P(end after one more word) (cached apart)."""
    out = np.full(len(ctx_list), np.nan, dtype=np.float64)

    def key(vis):
        return ("pending", vis) if words_pending else vis

    todo: list[int] = []
    for i in range(len(ctx_list)) if only is None else np.unique(only):
        vis = ctx_list[i]
        if not vis[-1][1]:  # nothing of the user's turn visible yet: no opinion
            out[i] = 0.5
        elif key(vis) in cache:
            out[i] = cache[key(vis)]
        elif scorer is not None:
            out[i] = cache[key(vis)] = scorer(as_chat(vis))
        else:
            todo.append(i)
    if todo:
        t0 = time.perf_counter()
        batch = 256
        for b in range(0, len(todo), batch):
            idx = todo[b : b + batch]
            probs = model.predict_many(
                [as_chat(ctx_list[i]) for i in idx], batch_size=64, words_pending=words_pending
            )
            for i, pr in zip(idx, probs, strict=True):
                out[i] = cache[key(ctx_list[i])] = float(pr)
            if b and b % (batch * 40) == 0:
                log.info("  model: %d/%d contexts (%.0f s)", b, len(todo), time.perf_counter() - t0)
        log.info("  model: %d contexts in %.1f s", len(todo), time.perf_counter() - t0)
    return out


def model_scores(ctx_list, keys: np.ndarray, pending: np.ndarray, model, cache: dict):
    """Per point and query: the model's score of what is visible, asked as P(end after one
    more word) where the words are pending (when the model supports that). Returns
    (scores, scores with the pending words taken as complete)."""
    now = score_contexts(ctx_list, None, model, cache)[keys]
    if not getattr(model, "supports_pending_words", False) or not pending.any():
        return now, now
    later = score_contexts(ctx_list, None, model, cache, only=keys[pending], words_pending=True)
    return np.where(pending, later[keys], now), now


SURVIVAL: dict[str, PauseSurvival] = {}  # "table": --survival FILE instead of the shipped one


def fused(p_words: np.ndarray, logit_scale: float = 1.0) -> np.ndarray:
    surv = SURVIVAL.get("table") or PauseSurvival.default()
    log_s = np.log([surv.hold(float(q)) for q in QUERIES])
    p = np.clip(p_words, 1e-6, 1 - 1e-6)
    z = logit_scale * np.log(p / (1 - p)) - log_s[None, :]
    return 1.0 / (1.0 + np.exp(-z))


# ------------------------------------------------------------------------------ metrics


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(allv.size, dtype=np.float64)
    sorted_v = allv[order]
    # average ranks for ties
    i = 0
    n = allv.size
    while i < n:
        j = i
        while j + 1 < n and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    r_pos = ranks[: pos.size].sum()
    return float((r_pos - pos.size * (pos.size + 1) / 2.0) / (pos.size * neg.size))


_QS = np.append(QUERIES, np.inf)


def next_pass(passes: np.ndarray) -> np.ndarray:
    """``[points x queries]``: from each query on, the first query time at which ``passes``
    is true (inf when never). Column ``delay / QUERY_STEP - 1`` is when a policy with that
    action delay fires, unless its timeout comes first."""
    nq = QUERIES.size
    idx = np.where(passes, np.arange(nq)[None, :], nq)
    return _QS[np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]]


def _col(delay: float) -> int:
    return round(delay / QUERY_STEP) - 1


def sweep(scores: np.ndarray, is_end: np.ndarray, dur: np.ndarray, n_thr: int = 120):
    """All (mean END latency, HOLD cut-off rate, params) of threshold x delay x timeout."""
    flat = scores.reshape(-1)
    thr = np.unique(np.quantile(flat, np.linspace(0.0, 1.0, n_thr)))
    thr = np.concatenate([thr, [np.inf]])
    hold = ~is_end
    dur_h = dur[hold]
    ops = []
    for th in thr:
        nxt = next_pass(scores >= th)
        for a in ACTION_DELAYS:
            first = nxt[:, _col(a)]
            fire = np.minimum(first[:, None], TIMEOUTS[None, :])  # points x timeouts
            lat = fire[is_end].mean(axis=0)
            cut = (fire[hold] < dur_h[:, None] - 1e-9).mean(axis=0)
            for j, to in enumerate(TIMEOUTS):
                ops.append((float(lat[j]), float(cut[j]), float(th), float(a), float(to)))
    return ops


def silence_ops(is_end: np.ndarray, dur: np.ndarray):
    dur_h = dur[~is_end]
    return [(float(d), silence_cut_at(dur_h, float(d)), 0.0, float(d), float(d)) for d in QUERIES]


def summarise(ops) -> dict:
    arr = np.asarray([(o[0], o[1]) for o in ops])
    out: dict = {}
    for b in LAT_BUDGETS:
        ok = arr[:, 0] <= b + 1e-9
        if ok.any():
            i = int(np.flatnonzero(ok)[arr[ok, 1].argmin()])
            out[f"cut@{int(b * 1000)}ms"] = (arr[i, 1], ops[i])
        else:
            out[f"cut@{int(b * 1000)}ms"] = (math.nan, None)
    for c in CUT_BUDGETS:
        ok = arr[:, 1] <= c + 1e-9
        if ok.any():
            i = int(np.flatnonzero(ok)[arr[ok, 0].argmin()])
            out[f"lat@{int(c * 100)}%"] = (arr[i, 0], ops[i])
        else:
            out[f"lat@{int(c * 100)}%"] = (math.nan, None)
    return out


SCALES = (0.4, 0.5, 0.6, 0.75, 0.9, 1.0, 1.25, 1.5)
METRICS = ("cut@300ms", "cut@600ms", "lat@5%", "lat@10%")


def calibrate(
    data: Path,
    corpora: Sequence[str],
    n_convs: int,
    max_points: int | None,
    seed: int,
    model,
    cache: dict,
    latency_budget: float = 1.0,
) -> dict:
    """The fusion's logit scale and the engine's threshold, chosen on the *val* splits of every
    corpus at once (lag 0.3 s, the engine's own 300-3300 ms delay bounds), so that no register
    is traded for another: among the (scale, threshold) pairs whose mean END latency (each
    corpus weighing the same) is within ``latency_budget``, the one whose *worst* corpus has
    the largest relative reduction of false cut-offs against a fixed silence of that corpus's
    own latency. These are what :class:`caesura.TurnOptions` ships as ``logit_scale`` and
    ``end_threshold``. Returns the choice and each corpus's val operating point."""
    sets = []
    for corpus in corpora:
        _, points = load_points(data, corpus, "val", n_convs, seed, max_points)
        if not points:
            continue
        is_end = np.asarray([p.label == "END" for _, p in points])
        dur = np.asarray([p.duration for _, p in points])
        keys, ctx_list, pending = contexts_for(points, [0.3])
        pm, _ = model_scores(ctx_list, keys[0.3], pending[0.3], model, cache)
        sets.append((corpus, pm, is_end, dur))
    opts = TurnOptions()
    lo, hi = opts.min_delay_ms / 1000.0, opts.max_delay_ms / 1000.0
    best: tuple = (-math.inf, 1.0, 0.5, {})
    for scale in SCALES:
        scored = [(c, fused(pm, scale), e, d) for c, pm, e, d in sets]
        for thr in np.round(np.arange(0.30, 0.995, 0.005), 3):
            per = {}
            for c, sc, e, d in scored:
                lat, cut = fixed_policy(sc, e, d, thr, lo, hi)
                sil = silence_cut_at(d[~e], lat)
                per[c] = {
                    "latency": lat,
                    "cut": cut,
                    "silence_cut_same_latency": sil,
                    "reduction": 1.0 - cut / sil if sil > 0 else 0.0,
                }
            if np.mean([v["latency"] for v in per.values()]) > latency_budget + 1e-9:
                continue
            worst = min(v["reduction"] for v in per.values())
            if worst > best[0]:
                best = (worst, scale, float(thr), per)
        log.info("  calibration on val: logit scale %.2f done (best so far %s)", scale, best[:3])
    return {
        "logit_scale": best[1],
        "engine_threshold": best[2],
        "latency_budget": latency_budget,
        "val": best[3],
    }


def silence_cut_at(hold_durations: np.ndarray, latency: float) -> float:
    """The false cut-off rate of a fixed silence of ``latency`` seconds: its mean END latency
    is exactly that delay, and it cuts off every HOLD that lasts longer."""
    return float((latency < hold_durations - 1e-9).mean())


def engine_vs_silence(
    scores: np.ndarray,
    is_end: np.ndarray,
    dur: np.ndarray,
    conv: np.ndarray,
    opts: dict,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """The shipped engine's policy against a fixed silence at the same mean END latency:
    false cut-off rates, the relative reduction (1 - engine / silence) and its 95% CI from a
    bootstrap over conversations (each resample re-matches the silence to its own latency)."""
    lo, hi = opts["min_delay_ms"] / 1000.0, opts["max_delay_ms"] / 1000.0
    fire = policy_fire(scores, opts["end_threshold"], lo, hi)
    cut_pt = fire < dur - 1e-9

    def stats(idx: np.ndarray) -> tuple[float, float, float]:
        e, h = idx[is_end[idx]], idx[~is_end[idx]]
        lat = float(fire[e].mean())
        cut = float(cut_pt[h].mean())
        return lat, cut, silence_cut_at(dur[h], lat)

    lat, cut, sil = stats(np.arange(len(scores)))
    ids, inv = np.unique(conv, return_inverse=True)
    members = [np.flatnonzero(inv == k) for k in range(len(ids))]
    rng = np.random.default_rng(seed)
    rel = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(members), len(members))
        idx = np.concatenate([members[k] for k in pick])
        if not is_end[idx].any() or is_end[idx].all():
            continue
        _, c, sc = stats(idx)
        if sc > 0:
            rel.append(1.0 - c / sc)
    lo_ci, hi_ci = np.percentile(rel, [2.5, 97.5]) if rel else (math.nan, math.nan)
    return {
        "latency": lat,
        "cut": cut,
        "silence_cut": sil,
        "reduction": 1.0 - cut / sil if sil > 0 else math.nan,
        "ci95": [float(lo_ci), float(hi_ci)],
        "ends_at_cap": float((fire[is_end] >= hi - 1e-9).mean()),
        "conversations": len(ids),
    }


def policy_fire(scores: np.ndarray, thr, delay, timeout) -> np.ndarray:
    """Per point, when one policy fires: at the first query >= ``delay`` whose score reaches
    ``thr``, else at ``timeout``."""
    return np.minimum(next_pass(scores >= thr)[:, _col(delay)], timeout)


def fixed_policy(scores: np.ndarray, is_end: np.ndarray, dur: np.ndarray, thr, delay, timeout):
    """(mean END latency, HOLD cut-off rate) of one policy (:func:`policy_fire`)."""
    fire = policy_fire(scores, thr, delay, timeout)
    return float(fire[is_end].mean()), float((fire[~is_end] < dur[~is_end] - 1e-9).mean())


# ------------------------------------------------------------------------------ main


def load_model(kind: str, path: Path | None):
    if kind in ("none", "heuristic"):
        return None
    try:
        return EndOfTurnModel.load(path, num_threads=1)
    except Exception as exc:  # a missing bundled model is not fatal in auto mode
        if kind == "model":
            raise
        log.warning("EndOfTurnModel.load() failed (%s): lexical policies only", exc)
        return None


def evaluate_corpus(
    args, corpus: str, lags: Sequence[float], model, cache: dict, scale: float, results: dict
) -> dict | None:
    """Every policy family on one corpus's test split; None when the corpus is absent."""
    t0 = time.perf_counter()
    _convs, points = load_points(
        args.data, corpus, args.split, args.max_conversations, args.seed, args.max_points or None
    )
    if not points:
        log.warning("%s: no %s data under %s, skipped", corpus, args.split, args.data)
        return None
    is_end = np.asarray([p.label == "END" for _, p in points])
    dur = np.asarray([p.duration for _, p in points])
    conv_ids = np.asarray([p.conv for _, p in points])
    log.info(
        "%s %s: %d conversations, %d HOLD, %d END (%.1f s)",
        corpus,
        args.split,
        len({p.conv for _, p in points}),
        int((~is_end).sum()),
        int(is_end.sum()),
        time.perf_counter() - t0,
    )
    res: dict = {
        "conversations": len({p.conv for _, p in points}),
        "holds": int((~is_end).sum()),
        "ends": int(is_end.sum()),
        "lags": {},
        "engine_defaults": {},
    }
    t1 = time.perf_counter()
    all_keys, ctx_list, all_pending = contexts_for(points, lags)
    log.info("%d distinct contexts over all lags (%.1f s)", len(ctx_list), time.perf_counter() - t1)
    lex_all = score_contexts(ctx_list, lexical_end_probability, None, {})
    pm_by_lag = {}
    if model is not None:
        for lag in lags:
            pm_by_lag[lag] = model_scores(ctx_list, all_keys[lag], all_pending[lag], model, cache)
        if args.cache is not None:
            with args.cache.open("wb") as fh:
                pickle.dump(cache, fh)
    opts = results["engine_options"]
    for lag in lags:
        keys = all_keys[lag]
        k_auc = round(max(lag, QUERY_STEP) / QUERY_STEP) - 1
        fams: dict[str, tuple[list, float]] = {}
        fams["silence"] = (silence_ops(is_end, dur), 0.5)
        lex = lex_all[keys]
        a_lex = auc(lex[is_end, k_auc], lex[~is_end, k_auc])
        fams["lexical"] = (sweep(lex, is_end, dur), a_lex)
        fams["lexical+fusion"] = (sweep(fused(lex), is_end, dur), a_lex)
        if lag in pm_by_lag:
            pm, pm_stale = pm_by_lag[lag]
            a_m = auc(pm[is_end, k_auc], pm[~is_end, k_auc])
            fams["model"] = (sweep(pm, is_end, dur), a_m)
            fams["model+fusion"] = (sweep(fused(pm, scale), is_end, dur), a_m)
            if pm_stale is not pm:  # the same, with pending words scored as if complete
                fams["model+fusion, no pending"] = (sweep(fused(pm_stale, scale), is_end, dur), a_m)
            res["engine_defaults"][str(lag)] = engine_vs_silence(
                fused(pm, opts["logit_scale"]), is_end, dur, conv_ids, opts, seed=args.seed
            )
        res["lags"][str(lag)] = {
            name: {
                "auc": a,
                **{k: {"value": v, "policy": pol} for k, (v, pol) in summarise(ops).items()},
            }
            for name, (ops, a) in fams.items()
        }
    log.info("%s done in %.0f s", corpus, time.perf_counter() - t0)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("CAESURA_DATA", ROOT.parent / "shared" / "data")),
    )
    ap.add_argument("--split", default="test")
    ap.add_argument(
        "--corpora",
        default="switchboard,ami,earnings22",
        help="word-timed corpora, each scored on its own (comma separated)",
    )
    ap.add_argument("--lags", default="0,0.3,0.5")
    ap.add_argument("--max-conversations", type=int, default=None)
    ap.add_argument(
        "--max-points",
        type=int,
        default=8000,
        help="decision points per corpus (a seeded sample, up to half of them ENDs; 0 = all)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scorer", choices=("auto", "model", "heuristic", "none"), default="auto")
    ap.add_argument(
        "--model-path", type=Path, default=None, help="an exported model folder (default: bundled)"
    )
    ap.add_argument(
        "--logit-scale",
        default="calibrate",
        help="model log-odds scale in fusion: a number, or 'calibrate' (chosen on val)",
    )
    ap.add_argument(
        "--calibrate-conversations",
        type=int,
        default=200,
        help="val conversations per corpus for calibration",
    )
    ap.add_argument(
        "--latency-budget",
        type=float,
        default=1.0,
        help="calibration: the most mean END latency (s, corpora weighing the same) to accept",
    )
    ap.add_argument("--cache", type=Path, default=None, help="pickle of model scores per context")
    ap.add_argument(
        "--survival",
        type=Path,
        default=None,
        help="a pause survival table (python -m caesura.turn._fit_survival) instead of the shipped",
    )
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.survival is not None:
        table = json.loads(args.survival.read_text())
        SURVIVAL["table"] = PauseSurvival(float(table["grid_step_s"]), table["hold"])

    corpora = [c.strip() for c in args.corpora.split(",") if c.strip()]
    if not (args.data / "eot").is_dir():
        print(f"skipping benchmarks/turns.py: no eot corpora under {args.data} (pass --data)")
        return 0
    lags = [float(x) for x in args.lags.split(",")]
    model = load_model(args.scorer, args.model_path)
    model_name = None
    if model is not None:
        cfg = model.config
        model_name = f"{cfg.get('name', 'EndOfTurnModel')} ({args.model_path or 'bundled'})"
    cache: dict = {}
    if args.cache is not None and args.cache.is_file():
        with args.cache.open("rb") as fh:
            cache = pickle.load(fh)
        log.info("loaded %d cached model scores from %s", len(cache), args.cache)
    defaults = TurnOptions()
    results: dict = {
        "split": args.split,
        "model": model_name,
        "engine_options": {
            k: getattr(defaults, k)
            for k in ("logit_scale", "end_threshold", "min_delay_ms", "max_delay_ms")
        },
        "corpora": {},
    }
    scale = 1.0
    if model is not None:
        if args.logit_scale == "calibrate":
            results["calibration"] = calibrate(
                args.data,
                corpora,
                args.calibrate_conversations,
                args.max_points or None,
                args.seed,
                model,
                cache,
                args.latency_budget,
            )
            scale = results["calibration"]["logit_scale"]
        else:
            scale = float(args.logit_scale)
        log.info("fusion logit scale: %.2f", scale)
    results["logit_scale"] = scale
    for corpus in corpora:
        res = evaluate_corpus(args, corpus, lags, model, cache, scale, results)
        if res is not None:
            results["corpora"][corpus] = res
    if not results["corpora"]:
        print(f"skipping benchmarks/turns.py: none of {corpora} found under {args.data}")
        return 0
    print_table(results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def _fmt(metric: str, v: float, base: float) -> str:
    if math.isnan(v):
        return "n/a"
    rel = (v - base) / base * 100.0 if base and not math.isnan(base) else math.nan
    val = f"{v * 100:.1f}%" if metric.startswith("cut") else f"{v * 1000:.0f} ms"
    return val if metric == "silence" else f"{val} ({rel:+.0f}%)"


def print_table(results: dict) -> None:
    opts = results["engine_options"]
    print()
    print(
        f"model: {results['model']}; fusion logit scale {results.get('logit_scale', 1.0)};"
        f" split {results['split']}"
    )
    if "calibration" in results:
        cal = results["calibration"]
        print(
            f"calibrated on every corpus's val split at lag 0.3 s: logit scale "
            f"{cal['logit_scale']}, engine threshold {cal['engine_threshold']:.3f} (the largest"
            " worst-corpus reduction of cut-offs against silence at equal latency, mean END"
            f" latency <= {cal['latency_budget'] * 1000:.0f} ms)"
        )
        for c, v in cal["val"].items():
            print(
                f"  val {c}: {v['latency'] * 1000:.0f} ms / {v['cut']:.1%} cut-offs; silence at"
                f" the same latency {v['silence_cut_same_latency']:.1%}"
                f" ({v['reduction']:+.1%} fewer)"
            )
    for corpus, res in results["corpora"].items():
        print(
            f"\n## {corpus} {results['split']}: {res['conversations']} conversations, "
            f"{res['holds']} HOLD, {res['ends']} END"
        )
        for lag, r in res["engine_defaults"].items():
            print(
                f"engine defaults (TurnOptions(): logit scale {opts['logit_scale']}, threshold "
                f"{opts['end_threshold']}, delays {opts['min_delay_ms']:.0f}-"
                f"{opts['max_delay_ms']:.0f} ms) at lag {float(lag):.1f} s: mean END latency "
                f"{r['latency'] * 1000:.0f} ms, {r['cut']:.1%} false cut-offs; silence at the"
                f" same latency {r['silence_cut']:.1%}: {r['reduction']:+.1%} fewer"
                f" (95% CI {r['ci95'][0]:+.1%} .. {r['ci95'][1]:+.1%}, bootstrap over"
                f" {r['conversations']} conversations); END at the cap {r['ends_at_cap']:.1%}"
            )
        for lag, fams in res["lags"].items():
            print(f"\n### {corpus}, lag {float(lag):.1f} s\n")
            print(
                "| policy | cut-off @300 ms | cut-off @600 ms | latency @5% | latency @10% |"
                " ROC-AUC |"
            )
            print("|---|---|---|---|---|---|")
            base = fams["silence"]
            for name, r in fams.items():
                cells = []
                for m in METRICS:
                    v = r[m]["value"]
                    if name == "silence":
                        cells.append(
                            _fmt("cut" if m.startswith("cut") else "lat", v, 0.0).split(" (")[0]
                        )
                    else:
                        cells.append(_fmt(m, v, base[m]["value"]))
                print(f"| {name} | " + " | ".join(cells) + f" | {r['auc']:.3f} |")
            print()
            for name, r in fams.items():
                if name == "silence":
                    continue
                pols = []
                for m in METRICS:
                    pol = r[m]["policy"]
                    if pol is not None:
                        pols.append(
                            f"{m}: thr={pol[2]:.3f} delay={pol[3]:.1f} timeout={pol[4]:.2f}"
                        )
                print(f"- {name}: " + "; ".join(pols))


if __name__ == "__main__":
    sys.exit(main())
