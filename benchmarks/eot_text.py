"""End-of-turn model quality on held-out text, beside a last-word lexical heuristic.

* Every word-timed corpus's test split, each on its own: Switchboard test, AMI eval,
  Earnings-22 test calls (decision points from ``caesura.train.switchboard``, loaders in
  ``caesura.train.corpora``; DESIGN.md "Measuring end of turn"): ROC-AUC of END vs HOLD with
  all words visible (lag 0) and with the words of the last 0.3 s and 0.5 s hidden (a word is
  visible when its end time is at most ``pause start - lag``); TPR / TNR at the shipped
  threshold (``unlikely_threshold('en')``) and the best TNR reachable at TPR ≥ 90%. At a lag
  the word before the pause is always hidden, so the model is also asked what the turn engine
  asks then (``model, pending``: ``words_pending=True``, P(end after one more word)).
* Written turns (SGD test + MultiWOZ test, never trained on) and assistant commands (SNIPS
  validate + Clinc150 test): each user turn complete vs cut at a random word boundary, in
  streaming-STT style (lower case, no punctuation) and as written; balanced accuracy at the
  shipped threshold and ROC-AUC.
* Short answers after an agent's question in the written test dialogues: "yeah", "no thanks"
  (complete) vs "and", "so um" (unfinished).

The heuristic is ``caesura.turn.lexical.lexical_end_probability`` (last word a filler,
conjunction, preposition, article or cut-off → not done). A point whose user words are all
still hidden scores 0 for both ("nothing said yet").

    python benchmarks/eot_text.py --data ../shared/data [--max-points 8000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("benchmarks.eot_text")


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    labels = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ss = s[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and ss[j + 1] == ss[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def rates(labels: np.ndarray, scores: np.ndarray, thr: float) -> tuple[float, float]:
    y = np.asarray(labels).astype(bool)
    pred = np.asarray(scores) >= thr
    return float(pred[y].mean()), float((~pred[~y]).mean())


def tnr_at_tpr(labels: np.ndarray, scores: np.ndarray, tpr: float = 0.9) -> tuple[float, float]:
    """Best TNR with TPR ≥ ``tpr`` (and that threshold), from the ROC of this very set."""
    y = np.asarray(labels).astype(bool)
    pos = np.sort(np.asarray(scores)[y])
    k = int(np.floor((1 - tpr) * len(pos)))
    thr = float(pos[min(k, len(pos) - 1)])
    return rates(y, scores, thr)[1], thr


def score(model, contexts, batch_size: int = 1, words_pending: bool = False) -> np.ndarray:
    """One context per call, exactly as ``predict`` scores it at run time."""
    out = np.zeros(len(contexts))
    idx = [i for i, c in enumerate(contexts) if c[-1][1].strip()]
    chats = [
        [{"role": "user" if r == "user" else "assistant", "content": t} for r, t in contexts[i]]
        for i in idx
    ]
    if chats:
        out[idx] = model.predict_many(chats, batch_size=batch_size, words_pending=words_pending)
    return out


def heuristic(contexts) -> np.ndarray:
    from caesura.turn.lexical import lexical_end_probability  # noqa: PLC0415

    out = np.zeros(len(contexts))
    for i, c in enumerate(contexts):
        if c[-1][1].strip():
            out[i] = lexical_end_probability(
                [{"role": "user" if r == "user" else "assistant", "content": t} for r, t in c]
            )
    return out


def add_turn_rows(res: dict, lines: list, key: str, style: str, ev, model, thr: float) -> None:
    """Complete (1) vs unfinished (0) turns: the model at the shipped threshold, the heuristic."""
    y = ev.labels
    for name, s in (("model", score(model, ev.contexts)), ("heuristic", heuristic(ev.contexts))):
        t_use = thr if name == "model" else 0.5
        tpr, tnr = rates(y, s, t_use)
        a = auc(y, s)
        res.setdefault(key, {})[f"{name}@{style}"] = {
            "auc": a,
            "balanced_accuracy": (tpr + tnr) / 2,
            "tpr": tpr,
            "tnr": tnr,
            "examples": len(y),
        }
        lines.append(f"{style:8s} {name:15s}{a:8.3f}{(tpr + tnr) / 2:9.1%}{tpr:9.1%}{tnr:9.1%}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("CAESURA_DATA", ROOT.parent / "shared" / "data")),
    )
    ap.add_argument(
        "--model-path", type=Path, default=None, help="exported folder (default: bundled)"
    )
    ap.add_argument("--split", default="test")
    ap.add_argument(
        "--max-points",
        type=int,
        default=8000,
        help="decision points sampled per corpus (seeded); 0 = all",
    )
    ap.add_argument("--max-turns", type=int, default=3000, help="written user turns sampled")
    ap.add_argument("--lags", default="0,0.3,0.5")
    ap.add_argument(
        "--corpora",
        default="switchboard,ami,earnings22",
        help="word-timed corpora, each reported on its own",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--max-tokens", type=int, default=None, help="context window read (default: the model's)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    eot = args.data / "eot"
    if not (eot / "switchboard" / f"{args.split}.tsv.gz").is_file():
        print(f"skipping benchmarks/eot_text.py: corpora not found under {eot} (pass --data)")
        return 0
    try:
        from caesura.eot import EndOfTurnModel  # noqa: PLC0415
        from caesura.train import corpora  # noqa: PLC0415
        from caesura.train import data as tdata  # noqa: PLC0415
        from caesura.train import switchboard as sb  # noqa: PLC0415
    except ImportError as exc:
        print(f"skipping benchmarks/eot_text.py: {exc}")
        return 0
    model = EndOfTurnModel.load(
        args.model_path, num_threads=args.threads, max_tokens=args.max_tokens
    )
    thr = model.unlikely_threshold("en")
    t0 = time.perf_counter()
    max_points = args.max_points or None
    res: dict = {"model": model.config.get("name"), "threshold": thr, "written": {}}
    lines = [
        f"model {model.config.get('name')} ({args.model_path or 'bundled'}), "
        f"shipped threshold {thr:.4f}, context ≤ {model.max_tokens} tokens"
        + (f" (window start on a {model.window_hop}-token grid)" if model.window_hop > 1 else "")
    ]
    corpora_wanted = [c.strip() for c in args.corpora.split(",") if c.strip()]
    for corpus, convs in tdata.timed_corpora(args.data, args.split, corpora_wanted).items():
        n_all = sum(len(sb.decision_points(c)) for c in convs)
        res[corpus] = {}
        lines.append(
            f"{corpus} {args.split} ({tdata.TIMED_SPLITS[corpus][args.split]}): {len(convs)}"
            f" conversations, {n_all} decision points"
            f"{f', {max_points} sampled (seed {args.seed})' if max_points else ''}"
        )
        lines.append(f"{'':24s}{'AUC':>8s}{'TPR@thr':>9s}{'TNR@thr':>9s}{'TNR@TPR90':>11s}")
        for lag in [float(x) for x in args.lags.split(",")]:
            ev = tdata.pause_eval(convs, lag=lag, max_points=max_points, seed=args.seed)
            y = ev.labels
            rows = [("model", score(model, ev.contexts))]
            if lag > 0 and getattr(model, "supports_pending_words", False):
                # at the pause start the word before it is always hidden at a lag: ask the
                # model for P(end after one more word), as the turn engine does then
                rows.append(("model, pending", score(model, ev.contexts, words_pending=True)))
            rows.append(("heuristic", heuristic(ev.contexts)))
            for name, s in rows:
                t_use = thr if name.startswith("model") else 0.5
                tpr, tnr = rates(y, s, t_use)
                best_tnr, _ = tnr_at_tpr(y, s)
                a = auc(y, s)
                res[corpus][f"{name}@lag{lag}"] = {
                    "auc": a,
                    "tpr_at_threshold": tpr,
                    "tnr_at_threshold": tnr,
                    "tnr_at_tpr90": best_tnr,
                    "points": len(y),
                    "end": int(y.sum()),
                }
                lines.append(
                    f"lag {lag:.1f} s {name:14s}{a:8.3f}{tpr:9.1%}{tnr:9.1%}{best_tnr:11.1%}"
                )
            log.info("%s lag %.1f done (%.0f s)", corpus, lag, time.perf_counter() - t0)
    written = tdata.load_written(eot / "sgd" / "test.jsonl.gz") + tdata.load_written(
        eot / "multiwoz" / "test.jsonl.gz"
    )
    turn_sets = [("written", "written turns (SGD test + MultiWOZ test)", written)]
    if (eot / "commands").is_dir():
        commands = tdata.command_dialogues(corpora.load_commands(args.data, "test"), args.seed)
        turn_sets.append(("commands", "commands (SNIPS validate + Clinc150 test)", commands))
    random.seed(args.seed)
    for key, title, dialogues in turn_sets:
        lines.append(f"{title}, {args.max_turns} user turns complete vs truncated at a random word")
        lines.append(f"{'':24s}{'AUC':>8s}{'bal.acc':>9s}{'TPR':>9s}{'TNR':>9s}")
        for style in ("stt", "written"):
            ev = tdata.written_truncation_eval(
                dialogues, style=style, max_turns=args.max_turns, seed=args.seed
            )
            add_turn_rows(res, lines, key, style, ev, model, thr)
    ev = tdata.short_answer_set(written, max_items=args.max_turns // 2, seed=args.seed)
    lines.append(
        "short answers after an agent's question in the written test dialogues: complete"
        " ('yeah', 'no thanks') vs unfinished ('and', 'so um')"
    )
    lines.append(f"{'':24s}{'AUC':>8s}{'bal.acc':>9s}{'TPR':>9s}{'TNR':>9s}")
    add_turn_rows(res, lines, "short", "stt", ev, model, thr)
    lines.append(f"({time.perf_counter() - t0:.0f} s)")
    text = "\n".join(lines)
    print(text)
    res["text"] = text
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
