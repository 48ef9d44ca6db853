"""Fit the pause survival table shipped in ``caesura/turn/pause_survival.json``.

``python -m caesura.turn._fit_survival --data ../shared/data [--corpora switchboard,ami,...]``
reads the *train* splits (never test) of the word-timed corpora named, extracts the eot-bench
decision points with :mod:`caesura.train.switchboard` and writes, on a 10 ms grid from 0 to
5 s, each corpus weighing the same:

* ``hold``: S_hold(t) = P(a within-turn pause lasts at least t), over HOLD pauses (0.2-5 s);
* ``end``: S_end(t) = P(the other speaker has not yet started t after a turn end), over END
  gaps -- kept for reference; the engine does not use it (see ``caesura.turn.fusion``).

Only the table is committed, never the data. Development-time script: it needs the data
folder and is not imported at runtime.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

GRID_STEP_S = 0.01
GRID_MAX_S = 5.0


def survival(durations: np.ndarray, grid: np.ndarray) -> list[float]:
    d = np.sort(durations)
    # P(D >= t) = 1 - (#{D < t} / n)
    below = np.searchsorted(d, grid - 1e-9, side="left")
    s = 1.0 - below / d.size
    return [round(float(x), 6) for x in s]


def survival_weighted(durations: list[np.ndarray], grid: np.ndarray) -> list[float]:
    """The survival of a mixture in which each corpus's pauses weigh the same in total."""
    curves = np.asarray([survival(d, grid) for d in durations if d.size])
    return [round(float(x), 6) for x in curves.mean(axis=0)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "pause_survival.json"
    )
    ap.add_argument(
        "--corpora",
        default="switchboard",
        help="word-timed corpora (train splits) whose pauses are pooled, each weighing the same",
    )
    args = ap.parse_args(argv)
    from caesura.train.data import timed_corpora  # noqa: PLC0415
    from caesura.train.switchboard import iter_points  # noqa: PLC0415

    names = [c.strip() for c in args.corpora.split(",") if c.strip()]
    found = timed_corpora(args.data, "train", only=names)
    if not found:
        print(f"none of {names} found under {args.data / 'eot'}; nothing to fit", file=sys.stderr)
        return 2
    per_hold: list[np.ndarray] = []
    per_end: list[np.ndarray] = []
    for convs in found.values():
        holds: list[float] = []
        ends: list[float] = []
        for _conv, _turns, p in iter_points(convs):
            (holds if p.label == "HOLD" else ends).append(p.duration)
        per_hold.append(np.asarray(holds))
        per_end.append(np.asarray(ends))
    grid = np.round(np.arange(0.0, GRID_MAX_S + GRID_STEP_S / 2, GRID_STEP_S), 6)
    h = np.concatenate(per_hold)
    e = np.concatenate(per_end)
    table: dict[str, Any] = {
        "description": (
            f"Survival of pauses in the train splits of {', '.join(found)} (eot-bench "
            "decision points; each corpus weighs the same): hold[i] = P(within-turn pause >= "
            "grid_s[i]); end[i] = P(turn-end gap >= grid_s[i]). Written by python -m "
            f"caesura.turn._fit_survival --corpora {','.join(found)}."
        ),
        "source": [f"{k} train" for k in found],
        "n_hold": int(h.size),
        "n_end": int(e.size),
        "hold_median_s": round(float(np.median(h)), 4),
        "end_median_s": round(float(np.median(e)), 4),
        "grid_step_s": GRID_STEP_S,
        "grid_s": [float(x) for x in grid],
        "hold": survival_weighted(per_hold, grid),
        "end": survival_weighted(per_end, grid),
    }
    args.out.write_text(json.dumps(table, separators=(",", ":")) + "\n", encoding="utf-8")
    print(
        f"wrote {args.out}: {h.size} holds (median {np.median(h):.3f} s), "
        f"{e.size} ends (median {np.median(e):.3f} s)"
    )
    for t in (0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0):
        i = round(t / GRID_STEP_S)
        print(f"  t={t:.1f}s  S_hold={table['hold'][i]:.4f}  S_end={table['end'][i]:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
