"""Reference speech labels: RTTM, Audacity label files and CSV start/end tables.

Used by ``caesura tune`` (and the benchmarks) to score VAD decisions against a human
reference. Three formats are read, strictly -- a malformed line is an error naming the file
and the line, never silently skipped:

* **RTTM** (NIST; what pyannote, AMI and DIHARD ship): ``SPEAKER <uri> <channel> <onset>
  <duration> <NA> <NA> <speaker> <NA> <NA>``. Only ``SPEAKER`` lines are speech; other record
  types (``SPKR-INFO``, ``LEXEME``, ``NOSCORE``, ...) are ignored. The ``uri`` field names the
  recording, so one RTTM file may label many recordings.
* **Audacity label files** (*File > Export > Export Labels*): ``start<TAB>end<TAB>label`` per
  line, in seconds; the label text is optional. Spectral-selection lines (starting with
  ``\\``) are skipped.
* **CSV**: one segment per row, ``start,end`` in seconds, optional further columns. A header
  row is optional; with one, the columns are found by name (``start``/``start_s``/``begin``/
  ``onset`` and ``end``/``end_s``/``stop``/``offset``; ``file``/``uri``/``recording`` names
  the recording, ``label`` the label). Comma, semicolon and tab delimiters are accepted.

Every reader returns :class:`LabelSegment` objects; :func:`speech_regions` merges them (all
speakers, overlaps joined) into the sorted, disjoint speech regions a VAD is scored against.

Errors: a missing or unreadable file, an empty file, a line that does not parse, a negative
time or an end before its start raise :class:`~caesura.errors.LabelFileError` with the path
and 1-based line number in the message (and as ``.path`` / ``.line``).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from caesura.errors import LabelFileError

__all__ = [
    "LABEL_FORMATS",
    "LabelFormat",
    "LabelSegment",
    "Labels",
    "detect_label_format",
    "read_audacity",
    "read_csv_labels",
    "read_labels",
    "read_rttm",
    "speech_regions",
]

logger = logging.getLogger(__name__)

LabelFormat = Literal["rttm", "audacity", "csv"]
#: The formats :func:`read_labels` understands (``"auto"`` picks one of these).
LABEL_FORMATS: tuple[LabelFormat, ...] = ("rttm", "audacity", "csv")

_START_NAMES = ("start", "start_s", "start_sec", "start_time", "begin", "onset", "from")
_END_NAMES = ("end", "end_s", "end_sec", "end_time", "stop", "offset", "to")
_URI_NAMES = ("file", "uri", "recording", "path", "file_id", "filename")
_LABEL_NAMES = ("label", "speaker", "text", "class")
# Record types that RTTM files may carry besides SPEAKER (NIST RT-09 spec); ignored here.
_RTTM_OTHER_TYPES = frozenset(
    {
        "SPKR-INFO",
        "SEGMENT",
        "LEXEME",
        "NON-LEX",
        "NON-SPEECH",
        "NOSCORE",
        "NO_RT_METADATA",
        "A/P",
        "FILLER",
        "EDIT",
        "IP",
        "CB",
        "SU",
        "NORTMETADATA",
    }
)


@dataclass(frozen=True)
class LabelSegment:
    """One labelled stretch of speech, in seconds from the start of its recording.

    ``uri`` is the recording it belongs to (RTTM's file id, a CSV ``file`` column) or
    ``None`` when the label file does not say (then it labels a single recording).
    ``line`` is the 1-based line it came from, for messages.
    """

    start: float
    end: float
    label: str = "speech"
    uri: str | None = None
    line: int = 0

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Labels:
    """The segments read from one label file, with where they came from."""

    path: Path
    format: LabelFormat
    segments: tuple[LabelSegment, ...]

    @property
    def uris(self) -> list[str]:
        """Recording ids named in the file (sorted; empty when the file names none)."""
        return sorted({s.uri for s in self.segments if s.uri is not None})

    def for_recording(self, uri: str | None) -> list[LabelSegment]:
        """Segments of recording ``uri``; segments without a uri belong to every recording."""
        return [s for s in self.segments if s.uri is None or s.uri == uri]

    def __len__(self) -> int:
        return len(self.segments)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    if not path.exists():
        raise LabelFileError(f"labels file not found: {path}", path=path)
    if path.is_dir():
        raise LabelFileError(f"labels path is a directory, not a file: {path}", path=path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LabelFileError(f"cannot read labels file {path}: {exc}", path=path) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelFileError(
            f"{path}: not a UTF-8 text file (byte {exc.start}); is this really a label file?",
            path=path,
        ) from None
    if "\x00" in text:
        raise LabelFileError(
            f"{path}: contains NUL bytes; this is a binary file, not labels", path=path
        )
    return text


def _time(value: str, what: str, path: Path, line: int) -> float:
    try:
        t = float(value)
    except ValueError:
        raise LabelFileError(
            f"{path}:{line}: {what} {value!r} is not a number (seconds)", path=path, line=line
        ) from None
    if math.isnan(t) or math.isinf(t):
        raise LabelFileError(
            f"{path}:{line}: {what} must be finite, got {value!r}", path=path, line=line
        )
    if t < 0:
        raise LabelFileError(
            f"{path}:{line}: {what} must be >= 0, got {value!r}", path=path, line=line
        )
    return t


def _segment(
    start: float, end: float, label: str, uri: str | None, *, path: Path, line: int
) -> LabelSegment:
    if end < start:
        raise LabelFileError(
            f"{path}:{line}: end {end:g} s is before start {start:g} s", path=path, line=line
        )
    return LabelSegment(start=start, end=end, label=label or "speech", uri=uri, line=line)


def _finish(path: Path, fmt: LabelFormat, segments: list[LabelSegment]) -> Labels:
    if not segments:
        raise LabelFileError(
            f"{path}: no speech segments found in this {fmt} file "
            "(an empty reference cannot be scored)",
            path=path,
        )
    zero = sum(1 for s in segments if s.duration == 0.0)
    if zero:
        logger.info("%s: %d zero-length label(s) (points) carry no speech", path, zero)
    return Labels(path=path, format=fmt, segments=tuple(segments))


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------


def read_rttm(path: str | os.PathLike[str]) -> Labels:
    """Read an RTTM file: every ``SPEAKER`` line is a speech segment of recording ``uri``."""
    p = Path(path)
    text = _read_text(p)
    segments: list[LabelSegment] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith((";;", "#")):
            continue
        fields = line.split()
        kind = fields[0].upper()
        if kind in _RTTM_OTHER_TYPES:
            continue
        if kind != "SPEAKER":
            raise LabelFileError(
                f"{p}:{n}: unknown RTTM record type {fields[0]!r} "
                "(expected SPEAKER <uri> <channel> <onset> <duration> ...)",
                path=p,
                line=n,
            )
        if len(fields) < 5:
            raise LabelFileError(
                f"{p}:{n}: RTTM SPEAKER line has {len(fields)} field(s); expected at least 5 "
                "(SPEAKER <uri> <channel> <onset> <duration> <NA> <NA> <speaker> <NA> <NA>)",
                path=p,
                line=n,
            )
        onset = _time(fields[3], "onset", p, n)
        duration = _time(fields[4], "duration", p, n)
        speaker = fields[7] if len(fields) > 7 else "speech"
        segments.append(_segment(onset, onset + duration, speaker, fields[1], path=p, line=n))
    return _finish(p, "rttm", segments)


def read_audacity(path: str | os.PathLike[str]) -> Labels:
    """Read an Audacity label file: ``start<TAB>end[<TAB>label]`` per line, in seconds."""
    p = Path(path)
    text = _read_text(p)
    segments: list[LabelSegment] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        if raw.startswith("\\"):  # spectral selection of the previous label: "\ f0 f1"
            continue
        fields = raw.split("\t")
        if len(fields) < 2:
            fields = raw.split()
            if len(fields) < 2:
                raise LabelFileError(
                    f"{p}:{n}: expected 'start<TAB>end<TAB>label' (Audacity labels), "
                    f"got {raw.strip()!r}",
                    path=p,
                    line=n,
                )
            fields = [fields[0], fields[1], " ".join(fields[2:])]
        start = _time(fields[0].strip(), "start", p, n)
        end = _time(fields[1].strip(), "end", p, n)
        label = fields[2].strip() if len(fields) > 2 else ""
        segments.append(_segment(start, end, label, None, path=p, line=n))
    return _finish(p, "audacity", segments)


def _find_column(header: Sequence[str], names: Iterable[str]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def read_csv_labels(path: str | os.PathLike[str]) -> Labels:
    """Read a CSV table of ``start,end`` rows in seconds (header optional, see module doc)."""
    p = Path(path)
    text = _read_text(p)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise LabelFileError(f"{p}: the file is empty; expected rows of start,end", path=p)
    first = lines[0]
    delimiter = ","
    for cand in (",", ";", "\t"):
        if cand in first:
            delimiter = cand
            break
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    # keep 1-based physical line numbers (csv.reader yields one row per line here)
    numbered = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]
    start_col, end_col, uri_col, label_col = 0, 1, None, None
    n0, header = numbered[0]
    has_header = not (len(header) >= 2 and _is_number(header[0]) and _is_number(header[1]))
    if len(header) < 2:
        raise LabelFileError(
            f"{p}:{n0}: expected at least 2 columns (start{delimiter}end), got {first.strip()!r}",
            path=p,
            line=n0,
        )
    if has_header:
        s = _find_column(header, _START_NAMES)
        e = _find_column(header, _END_NAMES)
        if s is None or e is None:
            raise LabelFileError(
                f"{p}:{n0}: header {header!r} has no "
                f"{'start' if s is None else 'end'} column "
                f"(accepted names: {', '.join(_START_NAMES if s is None else _END_NAMES)})",
                path=p,
                line=n0,
            )
        start_col, end_col = s, e
        uri_col = _find_column(header, _URI_NAMES)
        label_col = _find_column(header, _LABEL_NAMES)
        numbered = numbered[1:]
    segments: list[LabelSegment] = []
    need = max(start_col, end_col) + 1
    for n, row in numbered:
        if len(row) < need:
            raise LabelFileError(
                f"{p}:{n}: expected at least {need} column(s) (start{delimiter}end), "
                f"got {delimiter.join(row)!r}",
                path=p,
                line=n,
            )
        start = _time(row[start_col].strip(), "start", p, n)
        end = _time(row[end_col].strip(), "end", p, n)
        uri = None
        if uri_col is not None and uri_col < len(row) and row[uri_col].strip():
            uri = Path(row[uri_col].strip()).stem
        label = row[label_col].strip() if label_col is not None and label_col < len(row) else ""
        segments.append(_segment(start, end, label, uri, path=p, line=n))
    return _finish(p, "csv", segments)


_READERS = {"rttm": read_rttm, "audacity": read_audacity, "csv": read_csv_labels}


def detect_label_format(path: str | os.PathLike[str]) -> LabelFormat:
    """Guess a label file's format from its extension, then from its first line."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext == ".rttm":
        return "rttm"
    if ext == ".csv":
        return "csv"
    text = _read_text(p)
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith((";;", "#")):
            continue
        if line.split()[0].upper() == "SPEAKER":
            return "rttm"
        if "\t" in raw:
            return "audacity"
        if "," in raw or ";" in raw:
            return "csv"
        if len(line.split()) >= 2 and all(_is_number(f) for f in line.split()[:2]):
            return "audacity"
        break
    raise LabelFileError(
        f"{p}: cannot tell the label format from its extension or first line; "
        f"pass the format explicitly (one of {', '.join(LABEL_FORMATS)})",
        path=p,
    )


def read_labels(path: str | os.PathLike[str], *, format: str = "auto") -> Labels:
    """Read a label file in ``format`` (``"auto"``, ``"rttm"``, ``"audacity"`` or ``"csv"``)."""
    if format == "auto":
        fmt: str = detect_label_format(path)
    else:
        fmt = format
    reader = _READERS.get(fmt)
    if reader is None:
        raise LabelFileError(
            f"unknown label format {format!r}; expected auto or one of {', '.join(LABEL_FORMATS)}",
            path=Path(path),
        )
    return reader(path)


def speech_regions(
    segments: Iterable[LabelSegment | tuple[float, float]],
    *,
    duration: float | None = None,
) -> npt.NDArray[np.float64]:
    """Merge segments (any speaker, overlapping or touching) into sorted disjoint regions.

    Returns a float64 array of shape ``(n, 2)`` of ``[start, end)`` seconds; zero-length
    segments are dropped and, with ``duration``, regions are clipped to ``[0, duration]``.
    """
    spans: list[tuple[float, float]] = []
    for s in segments:
        a, b = (s.start, s.end) if isinstance(s, LabelSegment) else (float(s[0]), float(s[1]))
        if duration is not None:
            a, b = max(0.0, a), min(duration, b)
        if b > a:
            spans.append((a, b))
    spans.sort()
    merged: list[list[float]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return np.asarray(merged, dtype=np.float64).reshape(-1, 2)
