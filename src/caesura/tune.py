"""``caesura tune``: pick threshold, hangover, pre-roll and min speech from labelled audio.

The Silero model is run **once** per recording (:meth:`caesura.vad.SileroVAD.probabilities`);
every setting of the sweep then re-runs only the streaming
:class:`~caesura.vad.Segmenter` over those cached per-window probabilities -- the very code
that runs live in the LiveKit / Pipecat adapters and the server -- so a sweep of a few
hundred settings over several minutes of audio takes seconds. Pre-roll does not change
decisions (only how much audio is kept before an onset), so it is scored analytically for
every segmentation.

Metrics, pooled over all recordings (reference = the labels, all speakers merged):

* **frame precision / recall / F1**: 10 ms frames, the segmenter's speech segments
  (unpadded) against the reference, frames within ``collar_s`` of a reference boundary not
  scored (coarse labels; 0.25 s is the usual VAD collar).
* **segment precision / recall**: share of detected segments that touch reference speech
  (dilated by the collar), share of reference regions touched by a detected segment.
* **first-word clip rate**: share of detected reference regions whose first ``clip_ms``
  (counted from the labelled onset + ``collar_s``, the label tolerance; up to the region's
  end if shorter) are *not* inside the audio a segment delivers -- pre-roll + speech +
  ``speech_pad_ms``. Regions never detected are segment-recall misses, not clips. With
  exact labels pass ``collar_s=0``.
* **false triggers / min**: detected segments that touch no reference speech, per minute of
  audio.
* **cuts / min of speech**: segment ends declared while the reference says speech goes on
  (the decision instant lies inside a reference region, beyond the collar), per minute of
  labelled speech -- the cost of a short hangover.
* **end-of-speech latency**: for every reference region followed by at least ``min_gap_s``
  of silence, from the labelled end to the moment the segmenter's ``SpeechEnd`` fires
  (median, p90); ``ends detected`` is the share of those ends that got one before the next
  region started.
* **start latency**: labelled onset to ``SpeechStart`` (median), what barge-in waits for.

:func:`recommend` picks a setting for an objective -- ``balanced``, ``responsive`` (lowest
latency that keeps clips and cuts in check) or ``robust`` (fewest false triggers and cuts) --
optionally under an end-of-speech latency budget, and :func:`config_snippets` renders it as
ready-to-paste configuration for LiveKit, Pipecat and ``caesura serve``.

**What the labels can support.** :func:`tune` first counts the decision points of the labels
(:func:`decision_points`): *onsets* (labelled speech starting after the recording's start:
where threshold, min speech and pre-roll decide when a segment opens and what it clips) and
*end-of-speech points* (labelled speech followed by at least ``min_gap_s`` of silence: where
the hangover's latency is measured). A setting whose decision points number fewer than
``ScoringOptions.min_onsets`` / ``min_end_points`` is not tuned: it is held at caesura's default
(:class:`~caesura.vad.SegmenterOptions`), the report says which and why, and a constraint it
alone could meet (the latency budget, the clip-rate limit) is not applied.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from caesura.audio import AUDIO_SUFFIXES
from caesura.errors import (
    CaesuraError,
    InvalidOptionError,
    LabelFileError,
    MissingDependencyError,
)
from caesura.labels import Labels, read_labels, speech_regions
from caesura.vad.segmenter import Segmenter, SegmenterOptions, SpeechEnd, SpeechStart

if TYPE_CHECKING:
    from caesura.vad.model import SileroVAD

__all__ = [
    "AUDIO_EXTENSIONS",
    "OBJECTIVES",
    "DecisionPoints",
    "Objective",
    "ScoringOptions",
    "SettingResult",
    "TuneGrid",
    "TuneRecording",
    "TuneReport",
    "add_tune_arguments",
    "config_snippets",
    "configure",
    "cost",
    "decision_points",
    "format_table",
    "load_recordings",
    "plot_tradeoff",
    "progress",
    "recommend",
    "run",
    "run_tune",
    "sweep",
    "tune",
]

logger = logging.getLogger(__name__)

Objective = Literal["balanced", "responsive", "robust"]
OBJECTIVES: tuple[Objective, ...] = ("balanced", "responsive", "robust")
#: File name endings taken from a folder (those of ``caesura segment``).
AUDIO_EXTENSIONS: tuple[str, ...] = AUDIO_SUFFIXES

F64 = npt.NDArray[np.float64]
T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# progress bars (tqdm when installed -- the ``bench`` extra -- else a plain stderr line)
# --------------------------------------------------------------------------------------------


def progress(
    items: Iterable[T],
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool | None = None,
) -> Iterator[T]:
    """Iterate ``items`` with a progress bar on stderr.

    ``enabled``: ``None`` shows it when stderr is a terminal, ``True`` always, ``False`` never.
    Uses tqdm when it is installed (``caesura[bench]``); otherwise prints a one-line counter.
    """
    show = sys.stderr.isatty() if enabled is None else enabled
    if not show:
        yield from items
        return
    try:
        from tqdm import tqdm  # noqa: PLC0415 - optional dependency
    except ImportError:
        tqdm = None
    if tqdm is not None:
        yield from tqdm(items, total=total, desc=desc, unit=unit, file=sys.stderr)
        return
    n_total = total if total is not None else (len(items) if isinstance(items, Sized) else None)
    last = 0.0
    count = 0
    for count, item in enumerate(items, start=1):
        now = time.monotonic()
        if now - last > 0.5:
            of = f"/{n_total}" if n_total else ""
            print(f"\r{desc}: {count}{of} {unit}", end="", file=sys.stderr, flush=True)
            last = now
        yield item
    of = f"/{n_total}" if n_total else ""
    print(f"\r{desc}: {count}{of} {unit} done", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------


def _floats(name: str, values: Iterable[float]) -> tuple[float, ...]:
    out = tuple(sorted({float(v) for v in values}))
    if not out:
        raise InvalidOptionError(f"{name}: the sweep needs at least one value")
    if any(math.isnan(v) or math.isinf(v) for v in out):
        raise InvalidOptionError(f"{name}: values must be finite, got {out}")
    return out


@dataclass(frozen=True)
class TuneGrid:
    """The settings swept (milliseconds, like :class:`~caesura.vad.SegmenterOptions`).

    Defaults cover the seeds' ranges: thresholds 0.2-0.8 (0.3 is "sensitive", 0.5 Silero's
    default), hangovers 100-1000 ms (500-800 ms is the silence-only sweet spot; LiveKit's
    streaming turn detector needs >= 250 ms), min speech 50-400 ms (250 ms rejects coughs),
    pre-roll 0-800 ms (300-500 ms is the usual advice). ``speech_pad_ms`` is held fixed.
    """

    thresholds: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    min_silence_ms: tuple[float, ...] = (100.0, 200.0, 300.0, 400.0, 550.0, 700.0, 1000.0)
    min_speech_ms: tuple[float, ...] = (50.0, 100.0, 250.0, 400.0)
    pre_roll_ms: tuple[float, ...] = (0.0, 100.0, 200.0, 300.0, 500.0, 800.0)
    speech_pad_ms: float = 30.0

    def __post_init__(self) -> None:
        for f in ("thresholds", "min_silence_ms", "min_speech_ms", "pre_roll_ms"):
            object.__setattr__(self, f, _floats(f, getattr(self, f)))
        for thr in self.thresholds:
            SegmenterOptions(threshold=thr)  # raises InvalidOptionError naming the field
        for ms in (*self.min_silence_ms, *self.min_speech_ms, *self.pre_roll_ms):
            if ms < 0:
                raise InvalidOptionError(f"durations in the sweep must be >= 0 ms, got {ms}")
        SegmenterOptions(speech_pad_ms=self.speech_pad_ms)

    @property
    def segmentations(self) -> int:
        """Segmenter runs per recording (pre-roll is scored without re-running)."""
        return len(self.thresholds) * len(self.min_silence_ms) * len(self.min_speech_ms)

    def __len__(self) -> int:
        return self.segmentations * len(self.pre_roll_ms)


@dataclass(frozen=True)
class ScoringOptions:
    """How decisions are scored against the labels (see the module docstring).

    ``min_onsets`` / ``min_end_points``: the fewest labelled onsets (end-of-speech points) on
    which :func:`tune` still tunes threshold, min speech and pre-roll (the hangover). 20 onsets
    is the fewest on which the default 5% first-word clip limit means anything (one clip in
    20); a median end-of-speech latency over fewer than 10 ends is mostly noise.
    """

    collar_s: float = 0.25
    clip_ms: float = 200.0
    min_gap_s: float = 1.0
    frame_s: float = 0.01
    min_onsets: int = 20
    min_end_points: int = 10

    def __post_init__(self) -> None:
        for name, lo in (("collar_s", 0.0), ("clip_ms", 1.0), ("min_gap_s", 0.0)):
            v = float(getattr(self, name))
            if math.isnan(v) or math.isinf(v) or v < lo:
                raise InvalidOptionError(f"{name} must be a finite number >= {lo}, got {v!r}")
        if not 0.001 <= float(self.frame_s) <= 0.1:
            raise InvalidOptionError(f"frame_s must be in [0.001, 0.1] s, got {self.frame_s!r}")
        for name in ("min_onsets", "min_end_points"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InvalidOptionError(f"{name} must be an integer >= 0, got {v!r}")


@dataclass(frozen=True)
class DecisionPoints:
    """Where the labels let a setting be measured, pooled over the recordings.

    ``onsets``: labelled speech regions starting after the recording's start (threshold, min
    speech and pre-roll decide there); ``end_points``: regions followed by at least
    ``min_gap_s`` of silence (the hangover's end-of-speech latency is measured there).
    """

    onsets: int
    end_points: int


def _end_points(regions: F64, duration_s: float, min_gap_s: float) -> npt.NDArray[np.intp]:
    """Indices of the regions followed by at least ``min_gap_s`` of silence (or audio end)."""
    if regions.size == 0:
        return np.zeros(0, dtype=np.intp)
    nxt = np.append(regions[1:, 0], duration_s)
    return np.nonzero(nxt - regions[:, 1] >= min_gap_s)[0].astype(np.intp)


def decision_points(
    recordings: Sequence[TuneRecording], scoring: ScoringOptions | None = None
) -> DecisionPoints:
    """Count the labels' onsets and end-of-speech points (see :class:`DecisionPoints`)."""
    sc = scoring or ScoringOptions()
    onsets = sum(int(np.count_nonzero(r.regions[:, 0] > 0.0)) for r in recordings)
    ends = sum(_end_points(r.regions, r.duration_s, sc.min_gap_s).size for r in recordings)
    return DecisionPoints(onsets=onsets, end_points=int(ends))


# --------------------------------------------------------------------------------------------
# recordings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TuneRecording:
    """One labelled recording, scored once by the model.

    ``probabilities``: one per model window (512 samples at 16 kHz, 256 at 8 kHz) at
    ``sample_rate`` (the model rate); ``regions``: reference speech, ``(n, 2)`` seconds.
    """

    name: str
    probabilities: npt.NDArray[np.float32]
    sample_rate: int
    duration_s: float
    regions: F64
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.sample_rate not in (8000, 16000):
            raise InvalidOptionError(
                f"{self.name}: sample_rate must be a model rate (8000 or 16000), "
                f"got {self.sample_rate}"
            )
        if self.duration_s <= 0:
            raise InvalidOptionError(f"{self.name}: the recording is empty")

    @property
    def speech_s(self) -> float:
        return float(np.sum(self.regions[:, 1] - self.regions[:, 0]))

    @classmethod
    def from_audio(
        cls,
        name: str,
        audio: npt.NDArray[Any],
        sample_rate: int,
        regions: F64 | Sequence[tuple[float, float]],
        *,
        model: SileroVAD | None = None,
        path: Path | None = None,
    ) -> TuneRecording:
        """Score ``audio`` with the model (once) and keep its probabilities."""
        from caesura.vad.model import SileroVAD  # noqa: PLC0415 - loads onnxruntime lazily

        m = model if model is not None else SileroVAD.load()
        probs = m.probabilities(audio, sample_rate)
        model_rate = m.model_rate_for(sample_rate)
        duration = len(audio) / float(sample_rate)
        return cls(
            name=name,
            probabilities=np.asarray(probs, dtype=np.float32),
            sample_rate=model_rate,
            duration_s=duration,
            regions=speech_regions(
                [(float(a), float(b)) for a, b in np.asarray(regions).reshape(-1, 2)],
                duration=duration,
            ),
            path=path,
        )


def _expand(paths: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, bool]]:
    """Files to use, each flagged ``explicit`` (named by the user) or found in a folder."""
    out: list[tuple[Path, bool]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(
                f for f in p.iterdir() if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS
            )
            if not found:
                raise InvalidOptionError(
                    f"{p}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder"
                )
            out.extend((f, False) for f in found)
        elif p.is_file():
            out.append((p, True))
        else:
            raise InvalidOptionError(f"recording not found: {p}")
    return out


def load_recordings(
    paths: Sequence[str | os.PathLike[str]],
    labels: Sequence[str | os.PathLike[str] | Labels],
    *,
    label_format: str = "auto",
    model: SileroVAD | None = None,
    show_progress: bool | None = None,
) -> list[TuneRecording]:
    """Read recordings (files or folders) and their labels, and score each with the model.

    A recording is matched to labels by its file name without extension (RTTM ``uri``, a CSV
    ``file`` column); a single recording given with labels for a single uri takes them
    whatever the names. A label file that names no recording (Audacity, plain CSV) applies to
    a single recording only. Files found in a folder without labels are skipped (logged);
    a file named explicitly without labels is an error, as is ending up with nothing.
    """
    from caesura.audio import read_audio  # noqa: PLC0415
    from caesura.vad.model import SileroVAD  # noqa: PLC0415

    if not labels:
        raise InvalidOptionError("no labels given (--labels FILE, RTTM / Audacity / CSV)")
    label_sets = [
        lab if isinstance(lab, Labels) else read_labels(lab, format=label_format) for lab in labels
    ]
    files = _expand(paths)
    if not files:
        raise InvalidOptionError("no recordings given")
    by_uri: dict[str, list[Labels]] = {}
    anonymous: list[Labels] = []
    for lab in label_sets:
        if lab.uris:
            for uri in lab.uris:
                by_uri.setdefault(uri, []).append(lab)
        else:
            anonymous.append(lab)
    if anonymous and len(files) > 1:
        names = ", ".join(str(a.path) for a in anonymous)
        raise LabelFileError(
            f"{names}: these labels name no recording, so they can only label one recording, "
            f"but {len(files)} were given; use an RTTM or a CSV with a 'file' column"
        )
    chosen: list[tuple[Path, list[tuple[float, float]]]] = []
    for f, explicit in files:
        segs: list[tuple[float, float]] = []
        matched = False
        uri = f.stem
        if uri not in by_uri and len(files) == 1 and len(by_uri) == 1:
            # one recording, labels for one recording: they belong together whatever the names
            uri = next(iter(by_uri))
            logger.info("using the labels of uri %r for %s", uri, f)
        for lab in by_uri.get(uri, []):
            segs += [(s.start, s.end) for s in lab.for_recording(uri) if s.uri == uri]
            matched = True
        for lab in anonymous:
            segs += [(s.start, s.end) for s in lab.segments]
            matched = True
        if not matched:
            if explicit:
                known = sorted(by_uri)
                raise LabelFileError(
                    f"no labels for recording {f} (looked for uri {f.stem!r}; the labels name "
                    f"{', '.join(known[:10]) or 'no recording'}{' ...' if len(known) > 10 else ''})"
                )
            logger.info("skipping %s: no labels for uri %r", f, f.stem)
            continue
        chosen.append((f, segs))
    if not chosen:
        raise LabelFileError(
            "none of the recordings has labels (recordings are matched to labels by file name "
            f"without extension; the labels name {', '.join(sorted(by_uri)[:10])})"
        )
    unused = sorted(set(by_uri) - {f.stem for f, _ in chosen})
    if unused and len(files) > 1:
        logger.info("labels for %d recording(s) not given: %s", len(unused), ", ".join(unused))
    m = model if model is not None else SileroVAD.load()
    recordings: list[TuneRecording] = []
    for f, segs in progress(
        chosen, total=len(chosen), desc="scoring audio", unit="file", enabled=show_progress
    ):
        audio, sr = read_audio(f)
        if audio.size == 0:
            raise InvalidOptionError(f"{f}: the recording is empty")
        recordings.append(TuneRecording.from_audio(f.stem, audio, sr, segs, model=m, path=f))
    return recordings


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------


def _inside(t: F64, starts: F64, ends: F64) -> npt.NDArray[np.bool_]:
    """Is each time in ``t`` inside one of the sorted disjoint ``[start, end)`` intervals?"""
    if starts.size == 0:
        return np.zeros(t.shape, dtype=bool)
    idx = np.searchsorted(starts, t, side="right") - 1
    ok = idx >= 0
    res = np.zeros(t.shape, dtype=bool)
    res[ok] = t[ok] < ends[idx[ok]]
    return res


def _overlaps(a0: F64, a1: F64, starts: F64, ends: F64) -> npt.NDArray[np.bool_]:
    """Does each interval ``[a0, a1)`` overlap one of the sorted disjoint intervals?"""
    if starts.size == 0 or a0.size == 0:
        return np.zeros(a0.shape, dtype=bool)
    # the last interval starting before a1 overlaps iff it ends after a0
    idx = np.searchsorted(starts, a1, side="left") - 1
    ok = idx >= 0
    res = np.zeros(a0.shape, dtype=bool)
    res[ok] = ends[idx[ok]] > a0[ok]
    return res


def _merge(spans: F64) -> F64:
    if spans.size == 0:
        return spans.reshape(0, 2)
    spans = spans[np.argsort(spans[:, 0], kind="stable")]
    out = [list(spans[0])]
    for a, b in spans[1:]:
        if a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return np.asarray(out, dtype=np.float64)


@dataclass
class _Prepared:
    """Per-recording arrays that do not depend on the setting."""

    rec: TuneRecording
    frames_t: F64
    ref_frames: npt.NDArray[np.bool_]
    scored_frames: npt.NDArray[np.bool_]
    dilated: F64  # reference regions dilated by the collar, merged
    onsets: F64
    onset_limit: F64  # onset + min(clip, region length)
    end_idx: npt.NDArray[np.intp]  # regions whose end is an end-of-speech decision point
    next_start: F64  # for every region: the next region's start (or the duration)
    eroded: F64  # regions shrunk by the collar (where a cut is unambiguous)


def _prepare(rec: TuneRecording, sc: ScoringOptions) -> _Prepared:
    dur = rec.duration_s
    n_frames = max(1, math.ceil(dur / sc.frame_s))
    t = (np.arange(n_frames, dtype=np.float64) + 0.5) * sc.frame_s
    r = rec.regions
    starts, ends = r[:, 0], r[:, 1]
    ref = _inside(t, starts, ends)
    bounds = np.concatenate([starts, ends])
    if bounds.size and sc.collar_s > 0:
        b = np.sort(bounds)
        pos = np.searchsorted(b, t)
        left = np.abs(t - b[np.clip(pos - 1, 0, b.size - 1)])
        right = np.abs(b[np.clip(pos, 0, b.size - 1)] - t)
        scored = np.minimum(left, right) > sc.collar_s
    else:
        scored = np.ones(n_frames, dtype=bool)
    dil = _merge(np.stack([starts - sc.collar_s, ends + sc.collar_s], axis=1)) if r.size else r
    nxt = np.append(starts[1:], dur) if r.size else np.zeros(0)
    end_idx = _end_points(r, dur, sc.min_gap_s)
    clip = sc.clip_ms / 1000.0
    er = np.stack([starts + sc.collar_s, ends - sc.collar_s], axis=1) if r.size else r
    er = er[er[:, 1] > er[:, 0]] if er.size else er.reshape(0, 2)
    return _Prepared(
        rec=rec,
        frames_t=t,
        ref_frames=ref,
        scored_frames=scored,
        dilated=dil.reshape(-1, 2),
        # label onsets are uncertain by the collar: the first clip_ms after onset + collar
        # (or up to the region's end, if shorter) must be delivered
        onsets=np.minimum(starts + sc.collar_s, ends),
        onset_limit=np.minimum(starts + sc.collar_s + clip, ends),
        end_idx=end_idx,
        next_start=nxt,
        eroded=er.reshape(-1, 2),
    )


@dataclass
class _Segmentation:
    """One recording segmented with one (threshold, min_silence, min_speech)."""

    seg: F64  # (n, 2) speech start/end seconds (unpadded)
    start_detected: F64  # (n,) SpeechStart decision time
    end_detected: F64  # (n,) SpeechEnd decision time
    end_reason: list[str]


def _segment(rec: TuneRecording, opts: SegmenterOptions) -> _Segmentation:
    s = Segmenter(opts, sample_rate=rec.sample_rate, keep_audio=False)
    events = s.process(rec.probabilities)
    events += s.flush()
    sr = float(rec.sample_rate)
    starts: list[tuple[float, float]] = []
    rows: list[tuple[float, float, float, float]] = []
    reasons: list[str] = []
    pending: float | None = None
    for ev in events:
        if isinstance(ev, SpeechStart):
            pending = ev.detected_sample / sr
            starts.append((ev.start_sample / sr, pending))
        elif isinstance(ev, SpeechEnd):
            det_start = pending if pending is not None else ev.start_sample / sr
            rows.append(
                (ev.start_sample / sr, ev.end_sample / sr, det_start, ev.detected_sample / sr)
            )
            reasons.append(ev.reason)
            pending = None
    dur = rec.duration_s
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    arr[:, :2] = np.minimum(arr[:, :2], dur)
    return _Segmentation(
        seg=arr[:, :2].copy(),
        start_detected=arr[:, 2].copy(),
        end_detected=arr[:, 3].copy(),
        end_reason=reasons,
    )


@dataclass
class _Counts:
    """Pooled counts for one (threshold, min_silence, min_speech) over all recordings."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    n_seg: int = 0
    seg_hit: int = 0
    n_ref: int = 0
    ref_hit: int = 0
    false_triggers: int = 0
    cuts: int = 0
    eos_latencies: list[float] = field(default_factory=list)
    n_end_points: int = 0
    sos_latencies: list[float] = field(default_factory=list)
    clipped: dict[float, int] = field(default_factory=dict)
    n_onsets: int = 0


def _score(p: _Prepared, s: _Segmentation, sc: ScoringOptions, grid: TuneGrid, c: _Counts) -> None:
    rec = p.rec
    seg = s.seg
    hs, he = seg[:, 0], seg[:, 1]
    # frames
    hyp = _inside(p.frames_t, hs, he)
    m = p.scored_frames
    c.tp += int(np.count_nonzero(hyp & p.ref_frames & m))
    c.fp += int(np.count_nonzero(hyp & ~p.ref_frames & m))
    c.fn += int(np.count_nonzero(~hyp & p.ref_frames & m))
    # segments
    touch = _overlaps(hs, he, p.dilated[:, 0], p.dilated[:, 1])
    c.n_seg += int(hs.size)
    c.seg_hit += int(np.count_nonzero(touch))
    c.false_triggers += int(np.count_nonzero(~touch))
    rs, re_ = rec.regions[:, 0], rec.regions[:, 1]
    c.n_ref += int(rs.size)
    detected = _overlaps(rs, re_, hs, he)
    c.ref_hit += int(np.count_nonzero(detected))
    # cuts: a silence end decided while the reference speech goes on
    silence_end = np.asarray([r == "silence" for r in s.end_reason], dtype=bool)
    if silence_end.any() and p.eroded.size:
        c.cuts += int(
            np.count_nonzero(_inside(s.end_detected[silence_end], p.eroded[:, 0], p.eroded[:, 1]))
        )
    # end-of-speech latency at real ends (regions followed by >= min_gap_s of silence)
    c.n_end_points += int(p.end_idx.size)
    for k in p.end_idx:
        lo, hi = rs[k], p.next_start[k]
        cand = np.nonzero(silence_end & (he >= lo) & (he < hi))[0]
        if cand.size:
            c.eos_latencies.append(float(s.end_detected[cand[-1]] - re_[k]))
    # start latency: the first segment overlapping a region that starts near its onset
    for k in range(rs.size):
        cand = np.nonzero((he > rs[k]) & (hs < re_[k]))[0]
        if cand.size and hs[cand[0]] >= rs[k] - sc.collar_s:
            c.sos_latencies.append(float(s.start_detected[cand[0]] - rs[k]))
    # first-word clips of the detected regions, for every pre-roll (the audio a segment
    # carries); regions missed altogether are segment-recall misses, not clips
    onsets, limits = p.onsets[detected], p.onset_limit[detected]
    c.n_onsets += int(onsets.size)
    pad = grid.speech_pad_ms / 1000.0
    cover_end = np.minimum(he + pad, np.maximum(s.end_detected, he))
    for pre in grid.pre_roll_ms:
        spans = _merge(np.stack([np.maximum(hs - pre / 1000.0, 0.0), cover_end], axis=1))
        if spans.size == 0:
            clipped = int(onsets.size)
        else:
            idx = np.searchsorted(spans[:, 0], onsets, side="right") - 1
            ok = idx >= 0
            covered = np.zeros(onsets.shape, dtype=bool)
            covered[ok] = spans[idx[ok], 1] >= limits[ok] - 1e-9
            clipped = int(np.count_nonzero(~covered))
        c.clipped[pre] = c.clipped.get(pre, 0) + clipped


@dataclass(frozen=True)
class SettingResult:
    """The metrics of one setting (see the module docstring for definitions).

    Rates are fractions in [0, 1]; latencies in milliseconds (``nan`` when no decision point
    existed).
    """

    threshold: float
    min_silence_ms: float
    min_speech_ms: float
    pre_roll_ms: float
    speech_pad_ms: float
    frame_precision: float
    frame_recall: float
    frame_f1: float
    segment_precision: float
    segment_recall: float
    clip_rate: float
    false_triggers_per_min: float
    cuts_per_min: float
    eos_latency_ms: float
    eos_latency_p90_ms: float
    ends_detected: float
    start_latency_ms: float
    segments: int

    @property
    def exit_threshold(self) -> float:
        return max(self.threshold - 0.15, 0.01)

    def options(self) -> SegmenterOptions:
        """The :class:`~caesura.vad.SegmenterOptions` of this setting."""
        return SegmenterOptions(
            threshold=self.threshold,
            min_silence_ms=self.min_silence_ms,
            min_speech_ms=self.min_speech_ms,
            pre_roll_ms=self.pre_roll_ms,
            speech_pad_ms=self.speech_pad_ms,
        )

    def to_dict(self) -> dict[str, float | int | None]:
        """A JSON-ready dict (``nan`` becomes ``None``)."""
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in asdict(self).items()
        }


def _ratio(a: int, b: int) -> float:
    return a / b if b else math.nan


def _results(
    setting: tuple[float, float, float],
    c: _Counts,
    *,
    grid: TuneGrid,
    audio_min: float,
    speech_min: float,
) -> list[SettingResult]:
    thr, sil, spk = setting
    prec = _ratio(c.tp, c.tp + c.fp)
    rec = _ratio(c.tp, c.tp + c.fn)
    f1 = _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn)
    lat = np.asarray(c.eos_latencies, dtype=np.float64) * 1000.0
    sos = np.asarray(c.sos_latencies, dtype=np.float64) * 1000.0
    base = {
        "threshold": thr,
        "min_silence_ms": sil,
        "min_speech_ms": spk,
        "speech_pad_ms": grid.speech_pad_ms,
        "frame_precision": 1.0 if math.isnan(prec) else prec,
        "frame_recall": rec,
        "frame_f1": f1,
        "segment_precision": 1.0 if c.n_seg == 0 else c.seg_hit / c.n_seg,
        "segment_recall": _ratio(c.ref_hit, c.n_ref),
        "false_triggers_per_min": c.false_triggers / audio_min if audio_min else math.nan,
        "cuts_per_min": c.cuts / speech_min if speech_min else math.nan,
        "eos_latency_ms": float(np.median(lat)) if lat.size else math.nan,
        "eos_latency_p90_ms": float(np.percentile(lat, 90)) if lat.size else math.nan,
        "ends_detected": _ratio(lat.size, c.n_end_points),
        "start_latency_ms": float(np.median(sos)) if sos.size else math.nan,
        "segments": c.n_seg,
    }
    return [
        SettingResult(pre_roll_ms=pre, clip_rate=_ratio(c.clipped[pre], c.n_onsets), **base)  # type: ignore[arg-type]
        for pre in grid.pre_roll_ms
    ]


def sweep(
    recordings: Sequence[TuneRecording],
    grid: TuneGrid | None = None,
    scoring: ScoringOptions | None = None,
    *,
    show_progress: bool | None = None,
) -> list[SettingResult]:
    """Score every setting of ``grid`` on ``recordings`` (model probabilities cached)."""
    if not recordings:
        raise InvalidOptionError("sweep needs at least one recording")
    g = grid or TuneGrid()
    sc = scoring or ScoringOptions()
    prepared = [_prepare(r, sc) for r in recordings]
    audio_min = sum(r.duration_s for r in recordings) / 60.0
    speech_min = sum(r.speech_s for r in recordings) / 60.0
    combos = [
        (thr, sil, spk)
        for thr in g.thresholds
        for sil in g.min_silence_ms
        for spk in g.min_speech_ms
    ]
    out: list[SettingResult] = []
    for thr, sil, spk in progress(
        combos, total=len(combos), desc="tuning", unit="setting", enabled=show_progress
    ):
        opts = SegmenterOptions(
            threshold=thr,
            min_silence_ms=sil,
            min_speech_ms=spk,
            speech_pad_ms=g.speech_pad_ms,
            pre_roll_ms=0.0,
            max_speech_s=max(60.0, (spk + 1.0) / 1000.0),
        )
        counts = _Counts()
        for p in prepared:
            _score(p, _segment(p.rec, opts), sc, g, counts)
        out.extend(
            _results((thr, sil, spk), counts, grid=g, audio_min=audio_min, speech_min=speech_min)
        )
    return out


# --------------------------------------------------------------------------------------------
# recommendation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Weights:
    """Cost per unit of each failure (see :func:`cost`)."""

    missed_speech: float  # per share of speech frames missed (1 - frame recall)
    false_speech: float  # per share of detected frames that are not speech (1 - precision)
    missed_regions: float  # per share of labelled regions never detected (1 - segment recall)
    clips: float  # per share of detected onsets clipped
    false_triggers: float  # per false trigger per minute
    cuts: float  # per cut per minute of speech
    latency: float  # per second of median end-of-speech latency
    start_latency: float  # per second of median start-of-speech latency (barge-in)
    missed_ends: float  # per share of real ends without a SpeechEnd before the next speech
    pre_roll: float  # per second of pre-roll (audio the STT must also process)


#: The objectives' weights. ``balanced`` prices a second of end-of-speech latency like losing
#: all speech frames, a second of start latency half that, and one cut or false trigger per
#: minute like 10% of the frames; ``responsive`` doubles the price of latency and halves that
#: of cuts and false triggers; ``robust`` triples the price of false triggers and cuts and
#: cares little about latency.
_WEIGHTS: dict[str, _Weights] = {
    "balanced": _Weights(1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 1.0, 0.5, 0.5, 0.05),
    "responsive": _Weights(1.0, 0.5, 1.0, 1.0, 0.05, 0.05, 2.0, 1.0, 0.5, 0.05),
    "robust": _Weights(0.7, 1.5, 1.0, 1.0, 0.3, 0.3, 0.2, 0.1, 0.5, 0.05),
}


def _nz(v: float, default: float) -> float:
    return default if math.isnan(v) else v


def cost(r: SettingResult, objective: str) -> float:
    """The objective's cost of a setting (lower is better): a weighted sum of its failures."""
    w = _WEIGHTS[objective]
    return (
        w.missed_speech * (1.0 - _nz(r.frame_recall, 0.0))
        + w.false_speech * (1.0 - _nz(r.frame_precision, 0.0))
        + w.missed_regions * (1.0 - _nz(r.segment_recall, 0.0))
        + w.clips * _nz(r.clip_rate, 1.0)
        + w.false_triggers * _nz(r.false_triggers_per_min, 0.0)
        + w.cuts * _nz(r.cuts_per_min, 0.0)
        + w.latency * _nz(r.eos_latency_ms, 3000.0) / 1000.0
        + w.start_latency * _nz(r.start_latency_ms, 1000.0) / 1000.0
        + w.missed_ends * (1.0 - _nz(r.ends_detected, 0.0))
        + w.pre_roll * r.pre_roll_ms / 1000.0
    )


def recommend(
    results: Sequence[SettingResult],
    objective: str = "balanced",
    *,
    latency_budget_ms: float | None = None,
    max_clip_rate: float | None = 0.05,
    min_silence_floor_ms: float = 0.0,
) -> SettingResult:
    """The lowest-cost setting for ``objective`` among those meeting the constraints.

    Constraints (each dropped, with a log line, when no setting meets it): median
    end-of-speech latency <= ``latency_budget_ms``; first-word clip rate <=
    ``max_clip_rate``; hangover >= ``min_silence_floor_ms``.
    """
    best, dropped = _recommend(
        results,
        objective,
        latency_budget_ms=latency_budget_ms,
        max_clip_rate=max_clip_rate,
        min_silence_floor_ms=min_silence_floor_ms,
    )
    for what in dropped:
        logger.warning("%s", what)
    return best


def _recommend(
    results: Sequence[SettingResult],
    objective: str,
    *,
    latency_budget_ms: float | None = None,
    max_clip_rate: float | None = 0.05,
    min_silence_floor_ms: float = 0.0,
) -> tuple[SettingResult, list[str]]:
    """:func:`recommend`, quiet: (the pick, a line per constraint dropped)."""
    if objective not in _WEIGHTS:
        raise InvalidOptionError(
            f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}"
        )
    if not results:
        raise InvalidOptionError("nothing to recommend from: the sweep is empty")
    pool = list(results)
    checks: list[tuple[str, Callable[[SettingResult], bool]]] = []
    if min_silence_floor_ms > 0:
        checks.append(
            (
                f"hangover >= {min_silence_floor_ms:g} ms",
                lambda r: r.min_silence_ms >= min_silence_floor_ms,
            )
        )
    if latency_budget_ms is not None:
        checks.append(
            (
                f"median end-of-speech latency <= {latency_budget_ms:g} ms",
                lambda r: (
                    not math.isnan(r.eos_latency_ms) and r.eos_latency_ms <= latency_budget_ms
                ),
            )
        )
    if max_clip_rate is not None:
        checks.append(
            (
                f"first-word clip rate <= {max_clip_rate:.0%}",
                lambda r: _nz(r.clip_rate, 1.0) <= max_clip_rate,
            )
        )
    dropped: list[str] = []
    for what, ok in checks:
        kept = [r for r in pool if ok(r)]
        if kept:
            pool = kept
        else:
            dropped.append(f"no setting meets {what}; constraint dropped")
    best = min(pool, key=lambda r: (cost(r, objective), r.pre_roll_ms, -r.threshold))
    return best, dropped


# --------------------------------------------------------------------------------------------
# configuration snippets
# --------------------------------------------------------------------------------------------


def _s(ms: float) -> str:
    return f"{ms / 1000.0:g}"


#: The swept :class:`SettingResult` fields and the :class:`TuneGrid` field listing their values.
_SWEPT: dict[str, str] = {
    "threshold": "thresholds",
    "min_silence_ms": "min_silence_ms",
    "min_speech_ms": "min_speech_ms",
    "pre_roll_ms": "pre_roll_ms",
}

#: How the report names each swept setting.
_SETTING_NAMES: dict[str, str] = {
    "threshold": "threshold",
    "min_silence_ms": "hangover (min_silence_ms)",
    "min_speech_ms": "min speech (min_speech_ms)",
    "pre_roll_ms": "pre-roll (pre_roll_ms)",
}


def config_snippets(r: SettingResult, *, untuned: Iterable[str] = ()) -> dict[str, str]:
    """Ready-to-paste configuration for ``livekit``, ``pipecat``, ``server`` and ``python``.

    ``untuned``: settings (``threshold``, ``min_silence_ms``, ``min_speech_ms``,
    ``pre_roll_ms``) held at caesura's default because the labels could not measure them; each
    snippet then starts with a comment saying so.
    """
    names = set(untuned)
    held = [_SETTING_NAMES[f] for f in _SWEPT if f in names]
    note = (
        f"# not tuned (the labels could not measure it), caesura's default: {', '.join(held)}\n"
        if held
        else ""
    )
    snippets = _snippets(r, "default" if "min_silence_ms" in names else "tuned")
    return {k: note + v for k, v in snippets.items()}


def _snippets(r: SettingResult, hangover_is: str) -> dict[str, str]:
    thr = f"{r.threshold:g}"
    neg = f"{r.exit_threshold:g}"
    lk_sil = max(r.min_silence_ms, 250.0)
    lk_note = (
        f"  # {hangover_is}: {_s(r.min_silence_ms)}; LiveKit's turn detector needs >= 0.25\n"
        if lk_sil != r.min_silence_ms
        else "\n"
    )
    livekit = (
        "from livekit.plugins import caesura\n\n"
        "vad = caesura.VAD.load(\n"
        f"    activation_threshold={thr},\n"
        f"    deactivation_threshold={neg},\n"
        f"    min_speech_duration={_s(r.min_speech_ms)},\n"
        f"    min_silence_duration={_s(lk_sil)},{lk_note}"
        f"    prefix_padding_duration={_s(r.pre_roll_ms)},\n"
        ")\n"
    )
    pipecat = (
        "from pipecat.audio.vad.vad_analyzer import VADParams\n"
        "from pipecat_caesura import CaesuraVADAnalyzer\n\n"
        "# Pipecat runs its own start/stop state machine on our probabilities (one threshold,\n"
        "# no exit threshold) and streams all audio to the STT, so pre-roll needs no setting.\n"
        "vad_analyzer = CaesuraVADAnalyzer(\n"
        "    params=VADParams(\n"
        f"        confidence={thr},\n"
        f"        start_secs={_s(r.min_speech_ms)},\n"
        f"        stop_secs={_s(r.min_silence_ms)},\n"
        "    )\n"
        ")\n"
    )
    query = (
        f"threshold={thr}&min_speech_ms={r.min_speech_ms:g}&min_silence_ms={r.min_silence_ms:g}"
        f"&speech_pad_ms={r.speech_pad_ms:g}"
    )
    server = (
        "# server-wide defaults\n"
        f"caesura serve --threshold {thr} --min-speech-ms {r.min_speech_ms:g} "
        f"--min-silence-ms {r.min_silence_ms:g} --speech-pad-ms {r.speech_pad_ms:g}\n"
        "# or per WebSocket connection\n"
        f"ws://127.0.0.1:9093/v1/audio/realtime_vad?{query}\n"
    )
    python = (
        "from caesura.vad import SegmenterOptions\n\n"
        "options = SegmenterOptions(\n"
        f"    threshold={thr},\n"
        f"    min_speech_ms={r.min_speech_ms:g},\n"
        f"    min_silence_ms={r.min_silence_ms:g},\n"
        f"    pre_roll_ms={r.pre_roll_ms:g},\n"
        f"    speech_pad_ms={r.speech_pad_ms:g},\n"
        ")\n"
    )
    return {"livekit": livekit, "pipecat": pipecat, "server": server, "python": python}


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------

_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (field, header, format)
    ("threshold", "thr", "{:.2f}"),
    ("min_silence_ms", "hang ms", "{:.0f}"),
    ("min_speech_ms", "minsp ms", "{:.0f}"),
    ("pre_roll_ms", "pre ms", "{:.0f}"),
    ("frame_precision", "frame P", "{:.3f}"),
    ("frame_recall", "frame R", "{:.3f}"),
    ("frame_f1", "F1", "{:.3f}"),
    ("segment_precision", "seg P", "{:.3f}"),
    ("segment_recall", "seg R", "{:.3f}"),
    ("clip_rate", "clips", "{:.1%}"),
    ("false_triggers_per_min", "FT/min", "{:.2f}"),
    ("cuts_per_min", "cuts/min", "{:.2f}"),
    ("eos_latency_ms", "EOS ms", "{:.0f}"),
    ("eos_latency_p90_ms", "EOS p90", "{:.0f}"),
    ("ends_detected", "ends", "{:.0%}"),
    ("start_latency_ms", "SOS ms", "{:.0f}"),
)


def _fmt(fmt: str, v: Any) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return fmt.format(v)


def format_table(rows: Sequence[SettingResult], *, markdown: bool = False) -> str:
    """A fixed-width (or Markdown) table of ``rows``."""
    heads = [h for _, h, _ in _COLUMNS]
    cells = [[_fmt(f, getattr(r, name)) for name, _, f in _COLUMNS] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---:" for _ in heads) + "|"]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    widths = [
        max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(heads)
    ]
    out = ["  ".join(h.rjust(w) for h, w in zip(heads, widths, strict=True))]
    out += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


@dataclass
class TuneReport:
    """Everything a tuning run produced: the sweep, the pick, and where it came from."""

    recordings: list[dict[str, Any]]
    grid: TuneGrid
    scoring: ScoringOptions
    results: list[SettingResult]
    objective: str
    recommended: SettingResult
    latency_budget_ms: float | None = None
    max_clip_rate: float | None = 0.05
    seconds: float = 0.0
    command: str = ""
    #: the labels' decision points (``None``: not counted)
    points: DecisionPoints | None = None
    #: settings held at caesura's default, with why (the labels could not measure them)
    held: dict[str, str] = field(default_factory=dict)
    #: warnings of the run, each once (constraints not applied or dropped)
    notes: list[str] = field(default_factory=list)
    _best: dict[str, SettingResult] | None = field(default=None, repr=False)

    @property
    def audio_s(self) -> float:
        return float(sum(r["duration_s"] for r in self.recordings))

    def best_per_objective(self) -> dict[str, SettingResult]:
        """The pick of every objective under the same constraints (computed once)."""
        if self._best is None:
            self._best = {
                obj: _recommend(
                    self.results,
                    obj,
                    latency_budget_ms=self.latency_budget_ms,
                    max_clip_rate=self.max_clip_rate,
                )[0]
                for obj in OBJECTIVES
            }
        return self._best

    @property
    def tuned(self) -> list[str]:
        """The swept settings that were tuned (not held at the default)."""
        return [f for f in _SWEPT if f not in self.held]

    def snippets(self) -> dict[str, str]:
        """:func:`config_snippets` of the recommended setting, noting what was not tuned."""
        return config_snippets(self.recommended, untuned=self.held)

    def _findings(self) -> list[str]:
        """What the labels support: decision points, settings held, warnings (text lines)."""
        out: list[str] = []
        if self.points is not None:
            out.append(
                f"decision points: {self.points.onsets} onset(s), {self.points.end_points} "
                f"end-of-speech point(s) (labelled speech followed by >= "
                f"{self.scoring.min_gap_s:g} s of silence)"
            )
        if self.held:
            if not self.tuned:
                out.append(
                    "nothing could be tuned from these labels: the configurations below are "
                    "caesura's defaults"
                )
            out.append("not tuned, held at caesura's default (the labels cannot measure it):")
            d = SegmenterOptions()
            by_reason: dict[str, list[str]] = {}
            for f in _SWEPT:
                if f in self.held:
                    unit = "" if f == "threshold" else " ms"
                    value = f"{_SETTING_NAMES[f]} {getattr(d, f):g}{unit}"
                    by_reason.setdefault(self.held[f], []).append(value)
            out += [f"  - {', '.join(v)}: {why}" for why, v in by_reason.items()]
        out += [f"warning: {n}" for n in self.notes]
        return out

    def baseline(self) -> SettingResult | None:
        """The caesura default segmenter options (threshold 0.5, 200 ms, 100 ms, 300 ms)."""
        d = SegmenterOptions()
        for r in self.results:
            if (
                r.threshold == d.threshold
                and r.min_silence_ms == d.min_silence_ms
                and r.min_speech_ms == d.min_speech_ms
                and r.pre_roll_ms == d.pre_roll_ms
            ):
                return r
        return None

    def summary(self) -> str:
        """A human-readable report: data, the pick per objective, and snippets."""
        lines = [
            f"caesura tune: {len(self.recordings)} recording(s), {self.audio_s / 60:.1f} min of "
            f"audio, {sum(r['speech_s'] for r in self.recordings) / 60:.1f} min labelled speech; "
            f"{len(self.results)} setting(s) in {self.seconds:.1f} s",
            *self._findings(),
            "",
            "best setting per objective"
            + (
                f" (end-of-speech latency budget {self.latency_budget_ms:g} ms)"
                if self.latency_budget_ms
                else ""
            )
            + (
                f", first-word clips <= {self.max_clip_rate:.0%}"
                if self.max_clip_rate is not None
                else ""
            )
            + ":",
        ]
        rows = list(self.best_per_objective().values())
        base = self.baseline()
        labels: list[str] = [*OBJECTIVES]
        if base is not None:
            rows.append(base)
            labels.append("default")
        table = format_table(rows).splitlines()
        width = max(len(x) for x in labels)
        lines.append(" " * (width + 2) + table[0])
        for lab, row in zip(labels, table[1:], strict=True):
            lines.append(lab.ljust(width + 2) + row)
        lines += ["", f"recommended ({self.objective}):", ""]
        for name, snippet in self.snippets().items():
            lines += [f"--- {name} ---", snippet]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "objective": self.objective,
            "latency_budget_ms": self.latency_budget_ms,
            "max_clip_rate": self.max_clip_rate,
            "recordings": self.recordings,
            "grid": asdict(self.grid),
            "scoring": asdict(self.scoring),
            "decision_points": None if self.points is None else asdict(self.points),
            "held": dict(self.held),
            "notes": list(self.notes),
            "recommended": self.recommended.to_dict(),
            "best_per_objective": {k: v.to_dict() for k, v in self.best_per_objective().items()},
            "snippets": self.snippets(),
            "results": [r.to_dict() for r in self.results],
            "seconds": round(self.seconds, 2),
        }

    def markdown(self, *, plot_name: str | None = None) -> str:
        """A Markdown page (used for ``docs/benchmarks/tune-ami.md``)."""
        best = self.best_per_objective()
        rows = list(best.values())
        base = self.baseline()
        names = list(best)
        if base is not None:
            rows.append(base)
            names.append("caesura default")
        table = format_table(rows, markdown=True).splitlines()
        table[0] = "| objective " + table[0]
        table[1] = "|---" + table[1]
        table[2:] = [f"| {n} " + t for n, t in zip(names, table[2:], strict=True)]
        out = [f"Produced by `{self.command}`.", ""] if self.command else []
        out += [
            f"Recordings: {len(self.recordings)} ({self.audio_s / 60:.1f} min, "
            f"{sum(r['speech_s'] for r in self.recordings) / 60:.1f} min labelled speech). "
            f"{len(self.results)} settings scored in {self.seconds:.1f} s.",
            "",
        ]
        findings = self._findings()
        if findings:
            out += [ln if ln.startswith("  - ") else f"{ln}  " for ln in findings] + [""]
        out += ["\n".join(table), ""]
        if plot_name:
            out += [f"![trade-off plot]({plot_name})", ""]
        out += [f"Recommended ({self.objective}):", ""]
        for name, snippet in self.snippets().items():
            lang = "bash" if name == "server" else "python"
            out += [f'=== "{name}"', "", f"    ```{lang}"]
            out += [f"    {ln}" if ln else "" for ln in snippet.rstrip().splitlines()]
            out += ["    ```", ""]
        return "\n".join(out)


def tune(
    recordings: Sequence[TuneRecording],
    *,
    grid: TuneGrid | None = None,
    scoring: ScoringOptions | None = None,
    objective: str = "balanced",
    latency_budget_ms: float | None = None,
    max_clip_rate: float | None = 0.05,
    show_progress: bool | None = None,
) -> TuneReport:
    """Sweep ``grid`` over ``recordings`` and recommend a setting for ``objective``.

    Settings the labels cannot measure (too few decision points, see
    :func:`decision_points`) are not swept but held at caesura's default; the report's
    ``held`` says which and why, and ``notes`` lists each warning once.
    """
    if objective not in _WEIGHTS:
        raise InvalidOptionError(
            f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}"
        )
    g = grid or TuneGrid()
    sc = scoring or ScoringOptions()
    t0 = time.perf_counter()
    points = decision_points(recordings, sc)
    held = _unmeasurable(points, sc)
    if held:
        d = SegmenterOptions()
        defaults: dict[str, Any] = {_SWEPT[f]: (float(getattr(d, f)),) for f in held}
        g = replace(g, **defaults)
    notes: list[str] = []
    if latency_budget_ms is not None and "min_silence_ms" in held:
        notes.append(
            f"latency budget {latency_budget_ms:g} ms not applied: end-of-speech latency "
            "cannot be measured on these labels (see the hangover above)"
        )
        latency_budget_ms = None
    if max_clip_rate is not None and "pre_roll_ms" in held:
        notes.append(
            f"first-word clip limit {max_clip_rate:.0%} not applied: {points.onsets} onset(s) "
            "cannot measure it (see the pre-roll above)"
        )
        max_clip_rate = None
    results = sweep(recordings, g, sc, show_progress=show_progress)
    best: dict[str, SettingResult] = {}
    for obj in OBJECTIVES:
        best[obj], dropped = _recommend(
            results, obj, latency_budget_ms=latency_budget_ms, max_clip_rate=max_clip_rate
        )
        notes += [n for n in dropped if n not in notes]
    for note in [*held.values(), *notes]:
        logger.info("%s", note)
    return TuneReport(
        recordings=[
            {
                "name": r.name,
                "path": str(r.path) if r.path else None,
                "duration_s": round(r.duration_s, 3),
                "speech_s": round(r.speech_s, 3),
                "regions": int(r.regions.shape[0]),
            }
            for r in recordings
        ],
        grid=g,
        scoring=sc,
        results=results,
        objective=objective,
        recommended=best[objective],
        latency_budget_ms=latency_budget_ms,
        max_clip_rate=max_clip_rate,
        seconds=time.perf_counter() - t0,
        points=points,
        held=held,
        notes=notes,
        _best=best,
    )


def _unmeasurable(points: DecisionPoints, sc: ScoringOptions) -> dict[str, str]:
    """The settings the labels' decision points cannot support, each with why."""
    held: dict[str, str] = {}
    if points.onsets < sc.min_onsets:
        why = (
            f"the labels have {points.onsets} onset(s); at least {sc.min_onsets} are needed to "
            "measure when speech is detected and which first words are clipped (--min-onsets)"
        )
        held.update(threshold=why, min_speech_ms=why, pre_roll_ms=why)
    if points.end_points < sc.min_end_points:
        held["min_silence_ms"] = (
            f"the labels have {points.end_points} end-of-speech point(s) (speech followed by "
            f">= {sc.min_gap_s:g} s of silence); at least {sc.min_end_points} are needed to "
            "measure end-of-speech latency (--min-ends, --min-gap)"
        )
    return {f: held[f] for f in _SWEPT if f in held}


# --------------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        raise MissingDependencyError("matplotlib", "bench", "the tuning plot") from None
    return plt


def _curves(report: TuneReport, sweep: str, curves: str) -> list[tuple[float, list[SettingResult]]]:
    """The results along ``sweep``, one list per ``curves`` value, the other two settings at
    the recommended setting's values."""
    rec = report.recommended
    fixed = [f for f in _SWEPT if f not in (sweep, curves)]
    values: tuple[float, ...] = getattr(report.grid, _SWEPT[curves])
    return [
        (
            v,
            sorted(
                (
                    r
                    for r in report.results
                    if getattr(r, curves) == v
                    and all(getattr(r, f) == getattr(rec, f) for f in fixed)
                ),
                key=lambda r: getattr(r, sweep),
            ),
        )
        for v in values
    ]


def _sweep_panel(
    ax: Any,
    report: TuneReport,
    cmap: Any,
    *,
    sweep: str,
    curves: str,
    curve_label: Callable[[float], str],
    x: Callable[[SettingResult], float],
    y: Callable[[SettingResult], float],
    xlabel: str,
    ylabel: str,
    title: str,
    annotate: bool = False,
    star_label: str | None = None,
    hline: float | None = None,
) -> None:
    """One trade-off panel: ``sweep`` varies along each curve, one curve per ``curves`` value.

    The other two swept settings are held at the recommended setting's values, which is
    marked with a red star; with ``annotate`` the points of the recommended curve are labelled
    with their ``sweep`` value, and ``hline`` draws a dashed grey limit.
    """
    rec = report.recommended
    values: tuple[float, ...] = getattr(report.grid, _SWEPT[curves])
    for i, (v, pts) in enumerate(_curves(report, sweep, curves)):
        ax.plot(
            [x(r) for r in pts],
            [y(r) for r in pts],
            "o-",
            ms=3,
            color=cmap(i / max(1, len(values) - 1)),
            label=curve_label(v),
        )
        if annotate and v == getattr(rec, curves):
            for r in pts:
                ax.annotate(
                    f"{getattr(r, sweep):g}",
                    (x(r), y(r)),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
    star: dict[str, Any] = {} if star_label is None else {"label": star_label}
    ax.plot([x(rec)], [y(rec)], "r*", ms=14, **star)
    if hline is not None:
        ax.axhline(hline, color="grey", ls="--", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _panels(report: TuneReport) -> list[dict[str, Any]]:
    """The trade-off panels the report supports, as :func:`_sweep_panel` arguments.

    A setting held at its default (the labels could not measure it) gets no panel, nor does a
    panel without a single measured point: no empty panel.
    """
    rec = report.recommended

    def per_threshold(thr: float) -> str:
        return f"threshold {thr:g}"

    panels: list[dict[str, Any]] = [
        # precision / recall over threshold, one curve per min speech
        {
            "sweep": "threshold",
            "curves": "min_speech_ms",
            "curve_label": lambda spk: f"min speech {spk:g} ms",
            "x": lambda r: r.frame_recall,
            "y": lambda r: r.frame_precision,
            "xlabel": "frame recall",
            "ylabel": "frame precision",
            "title": f"threshold sweep (hangover {rec.min_silence_ms:g} ms)",
            "annotate": True,
            "star_label": "recommended",
        },
        # latency vs cuts over hangover, one curve per threshold
        {
            "sweep": "min_silence_ms",
            "curves": "threshold",
            "curve_label": per_threshold,
            "x": lambda r: r.eos_latency_ms,
            "y": lambda r: r.cuts_per_min,
            "xlabel": "median end-of-speech latency (ms)",
            "ylabel": "cuts per minute of speech",
            "title": "hangover sweep (labels: hangover ms)",
            "annotate": True,
        },
        # clip rate vs pre-roll, one curve per threshold
        {
            "sweep": "pre_roll_ms",
            "curves": "threshold",
            "curve_label": per_threshold,
            "x": lambda r: r.pre_roll_ms,
            "y": lambda r: 100 * r.clip_rate,
            "xlabel": "pre-roll (ms)",
            "ylabel": f"first-word clip rate (%, first {report.scoring.clip_ms:g} ms)",
            "title": "pre-roll sweep",
            "hline": None if report.max_clip_rate is None else 100 * report.max_clip_rate,
        },
        # false triggers vs min speech, one curve per threshold
        {
            "sweep": "min_speech_ms",
            "curves": "threshold",
            "curve_label": per_threshold,
            "x": lambda r: r.min_speech_ms,
            "y": lambda r: r.false_triggers_per_min,
            "xlabel": "min speech (ms)",
            "ylabel": "false triggers per minute",
            "title": "min speech sweep",
        },
    ]
    return [
        p
        for p in panels
        if p["sweep"] not in report.held
        and any(
            math.isfinite(p["x"](r)) and math.isfinite(p["y"](r))
            for _, pts in _curves(report, p["sweep"], p["curves"])
            for r in pts
        )
    ]


#: subplot grid (rows, columns) for 1..4 panels: never an empty cell
_LAYOUTS = {1: (1, 1), 2: (1, 2), 3: (1, 3), 4: (2, 2)}


def plot_tradeoff(report: TuneReport, path: str | os.PathLike[str]) -> Path:
    """Write a PNG of the trade-offs around the recommended setting; returns its path.

    Up to four panels: frame precision vs recall (threshold sweep); end-of-speech latency vs
    cuts (hangover sweep); first-word clip rate vs pre-roll; false triggers per minute vs min
    speech. A setting the labels could not measure (held at its default) has no panel;
    :class:`~caesura.errors.InvalidOptionError` when none is left. Needs matplotlib
    (``pip install 'caesura[bench]'``).
    """
    plt = _pyplot()
    rec = report.recommended
    out = Path(path)
    panels = _panels(report)
    if not panels:
        raise InvalidOptionError(
            "nothing to plot: no setting could be tuned from these labels "
            f"({', '.join(_SETTING_NAMES[f] for f in report.held) or 'no measured point'})"
        )
    rows, cols = _LAYOUTS[len(panels)]
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.25 * rows), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, panel in zip(axes.flat, panels, strict=True):
        _sweep_panel(ax, report, cmap, **panel)
    held = f"; not tuned: {', '.join(report.held)}" if report.held else ""
    fig.suptitle(
        f"caesura tune ({report.objective}): threshold {rec.threshold:g}, hangover "
        f"{rec.min_silence_ms:g} ms, min speech {rec.min_speech_ms:g} ms, pre-roll "
        f"{rec.pre_roll_ms:g} ms -- {len(report.recordings)} recording(s), "
        f"{report.audio_s / 60:.1f} min{held}",
        fontsize=10,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``caesura tune``'s arguments to ``parser``."""
    d = TuneGrid()
    parser.add_argument(
        "recordings",
        nargs="+",
        metavar="RECORDING",
        help="audio files or folders (WAV, FLAC, OGG, Opus, MP3)",
    )
    parser.add_argument(
        "--labels",
        "-l",
        action="append",
        required=True,
        metavar="LABELS",
        help="reference labels: RTTM, Audacity label file or CSV start,end (repeatable)",
    )
    parser.add_argument(
        "--label-format",
        default="auto",
        choices=["auto", "rttm", "audacity", "csv"],
        help="label format (default: from the extension / content)",
    )
    parser.add_argument(
        "--objective",
        default="balanced",
        choices=list(OBJECTIVES),
        help="trade-off to recommend for (default: balanced)",
    )
    parser.add_argument(
        "--latency-budget-ms",
        type=float,
        default=None,
        metavar="MS",
        help="only recommend settings whose median end-of-speech latency is within MS",
    )
    parser.add_argument(
        "--max-clip-rate",
        type=float,
        default=0.05,
        metavar="FRACTION",
        help="only recommend settings clipping at most this share of first words "
        "(default 0.05; negative: no limit)",
    )
    parser.add_argument(
        "--thresholds",
        type=_float_list,
        default=d.thresholds,
        metavar="LIST",
        help="thresholds to sweep (comma-separated)",
    )
    parser.add_argument(
        "--min-silence-ms",
        type=_float_list,
        default=d.min_silence_ms,
        metavar="LIST",
        help="hangovers to sweep, ms",
    )
    parser.add_argument(
        "--min-speech-ms",
        type=_float_list,
        default=d.min_speech_ms,
        metavar="LIST",
        help="min speech durations to sweep, ms",
    )
    parser.add_argument(
        "--pre-roll-ms",
        type=_float_list,
        default=d.pre_roll_ms,
        metavar="LIST",
        help="pre-roll durations to sweep, ms",
    )
    parser.add_argument(
        "--collar",
        type=float,
        default=0.25,
        metavar="S",
        help="scoring collar around label boundaries, seconds (default 0.25)",
    )
    parser.add_argument(
        "--clip-ms",
        type=float,
        default=200.0,
        metavar="MS",
        help="a first word is clipped when these first ms of a labelled onset are not "
        "delivered (default 200)",
    )
    parser.add_argument(
        "--min-gap",
        type=float,
        default=1.0,
        metavar="S",
        help="label gaps at least this long are end-of-speech decision points (default 1.0)",
    )
    parser.add_argument(
        "--min-onsets",
        type=int,
        default=ScoringOptions.min_onsets,
        metavar="N",
        help="tune threshold, min speech and pre-roll only on labels with at least N onsets "
        "(else they keep caesura's default; default 20)",
    )
    parser.add_argument(
        "--min-ends",
        type=int,
        default=ScoringOptions.min_end_points,
        metavar="N",
        help="tune the hangover only on labels with at least N end-of-speech points (speech "
        "followed by --min-gap of silence; else it keeps caesura's default; default 10)",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="PNG",
        help="write the trade-off plot here (needs caesura[bench])",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the whole sweep and the recommendation as JSON",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        metavar="PATH",
        help="write a Markdown report (with the plot when --plot is given)",
    )
    parser.add_argument(
        "--top", type=int, default=0, metavar="N", help="also print the N lowest-cost settings"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_tune(args: argparse.Namespace) -> int:
    """Run ``caesura tune`` with parsed ``args``; returns the exit status."""
    grid = TuneGrid(
        thresholds=args.thresholds,
        min_silence_ms=args.min_silence_ms,
        min_speech_ms=args.min_speech_ms,
        pre_roll_ms=args.pre_roll_ms,
    )
    scoring = ScoringOptions(
        collar_s=args.collar,
        clip_ms=args.clip_ms,
        min_gap_s=args.min_gap,
        min_onsets=args.min_onsets,
        min_end_points=args.min_ends,
    )
    show = False if args.no_progress else None
    if args.plot is not None:
        _pyplot()  # fail before the work when matplotlib is missing
    recordings = load_recordings(
        args.recordings, args.labels, label_format=args.label_format, show_progress=show
    )
    max_clip = (
        None if args.max_clip_rate is not None and args.max_clip_rate < 0 else args.max_clip_rate
    )
    report = tune(
        recordings,
        grid=grid,
        scoring=scoring,
        objective=args.objective,
        latency_budget_ms=args.latency_budget_ms,
        max_clip_rate=max_clip,
        show_progress=show,
    )
    report.command = _command_line("tune")
    print(report.summary())
    if args.top:
        ranked = sorted(report.results, key=lambda r: cost(r, report.objective))[: args.top]
        print(f"top {len(ranked)} ({report.objective}):")
        print(format_table(ranked))
    plot_name = None
    if args.plot is not None and not _panels(report):
        print(f"plot: not written, no setting could be tuned from these labels ({args.plot})")
    elif args.plot is not None:
        p = plot_tradeoff(report, args.plot)
        print(f"plot: {p}")
        plot_name = p.name
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=1) + "\n", encoding="utf-8")
        print(f"json: {args.json}")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(report.markdown(plot_name=plot_name) + "\n", encoding="utf-8")
        print(f"markdown: {args.markdown}")
    return 0


def _command_line(name: str) -> str:
    """``caesura <name> ...`` as typed (for reports); empty when not run from the console."""
    import shlex  # noqa: PLC0415

    argv = sys.argv[1:]
    if name not in argv:
        return ""
    rest = argv[argv.index(name) + 1 :]
    return " ".join(["caesura", name, *(shlex.quote(a) for a in rest)])


#: ``caesura tune`` in the :mod:`caesura.cli` registry.
configure = add_tune_arguments
run = run_tune


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m caesura.tune`` (the same as ``caesura tune``)."""
    parser = argparse.ArgumentParser(
        prog="caesura tune", description=__doc__.splitlines()[0] if __doc__ else None
    )
    add_tune_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_tune(args)
    except CaesuraError as exc:
        print(f"caesura tune: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
