"""The ``caesura`` console script.

Subcommands live in a small registry (:data:`COMMANDS`): each entry names a module that
provides ``configure(parser)`` (add arguments to the subcommand's ``argparse`` parser) and
``run(args) -> int`` (the exit status). A module is imported only when its subcommand is the
one being run, so ``caesura segment`` never imports the server extra. To add a subcommand::

    COMMANDS["serve"] = Command("caesura.server.cli", "run the VAD / turn-detection server")

``caesura segment PATH...`` -- speech segments of audio files and folders (recursive: WAV,
FLAC, OGG, Opus, MP3, see :data:`~caesura.audio.AUDIO_SUFFIXES`) as JSON (default), CSV or
RTTM. A file that cannot be read is reported on stderr (and listed with its ``error`` in JSON)
and the others are still processed; the exit status is 1 when any file failed, 2 on bad usage.
``-o DIR/`` writes one file per input, mirroring the inputs' tree below their common folder, so
no two inputs share an output.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import json
import logging
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

from caesura._version import __version__
from caesura.audio import AUDIO_SUFFIXES, read_audio
from caesura.errors import CaesuraError, InvalidOptionError, UnsupportedSampleRateError
from caesura.vad.model import SileroVAD
from caesura.vad.offline import TimestampOptions, silero_decimation, speech_timestamps

__all__ = [
    "AUDIO_SUFFIXES",
    "COMMANDS",
    "Command",
    "DefaultsHelpFormatter",
    "SegmentOptions",
    "add_vad_options",
    "configure",
    "main",
    "run",
    "segment_record",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Command:
    """A subcommand: ``module`` provides ``configure(parser)`` and ``run(args) -> int``."""

    module: str
    help: str


#: Subcommand registry, in ``--help`` order.
COMMANDS: dict[str, Command] = {
    "segment": Command("caesura.cli", "speech segments of audio files and folders"),
    "tune": Command(
        "caesura.tune", "pick threshold, hangover, pre-roll and min speech from labelled audio"
    ),
    "eot": Command("caesura.eot.cli", "score transcripts: is the user's turn over?"),
    "bench": Command("caesura.bench", "run the speed and quality benchmarks, write reports"),
    "serve": Command(
        "caesura.server.cli", "run the EchoKit-compatible VAD / turn-detection server"
    ),
}


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """``--help`` that shows each option's default: ``(default: 0.5)`` after its help text.

    Left out where the help already says it (``default`` in the text) and for defaults that
    mean "not set" (``None``, ``False``); infinite floats read ``no limit``, sequences are
    comma-separated. Every ``caesura`` subcommand uses it.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or "default" in text
        ):
            return action.help
        shown = _show_default(default).replace("%", "%%")
        return f"{text} (default: {shown})" if text else f"default: {shown}"


def _show_default(value: object) -> str:
    if isinstance(value, float):
        return "no limit" if math.isinf(value) else f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ",".join(_show_default(v) for v in value)
    return str(value)


class _CommandModule(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------


def _selected(argv: Sequence[str]) -> str | None:
    for a in argv:
        if not a.startswith("-"):
            return a
    return None


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The top-level parser; only the selected subcommand's module is imported."""
    parser = argparse.ArgumentParser(
        prog="caesura",
        description="Is the user speaking now, and are they done? Streaming Silero VAD and "
        "end-of-turn detection for voice agents.",
    )
    parser.add_argument("--version", action="version", version=f"caesura {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _selected(argv)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(
            name, help=cmd.help, description=cmd.help, formatter_class=DefaultsHelpFormatter
        )
        if name == chosen:
            module: _CommandModule = importlib.import_module(cmd.module)
            module.configure(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the console script; returns the exit status (also used by ``python -m``)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(int(args.verbose), 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    runner: Callable[[argparse.Namespace], int] | None = getattr(args, "_run", None)
    if runner is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(runner(args))
    except CaesuraError as exc:
        print(f"caesura {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`caesura eot ... | head`): stop quietly, as Unix tools do,
        # and keep the interpreter's final flush from failing again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


# --------------------------------------------------------------------------------------------
# caesura segment
# --------------------------------------------------------------------------------------------


def add_vad_options(
    group: argparse._ActionsContainer,
    *,
    threshold: float,
    min_speech_ms: float,
    min_silence_ms: float,
    speech_pad_ms: float,
    max_speech_s: float,
    help_texts: Mapping[str, str] | None = None,
) -> None:
    """Add the VAD flags ``caesura segment`` and ``caesura serve`` share to ``group``.

    ``--threshold``, ``--neg-threshold`` (default ``None``: derived from the threshold),
    ``--min-speech-ms``, ``--min-silence-ms``, ``--speech-pad-ms`` and ``--max-speech-s``, all
    floats; dests are the flag names in snake case. The defaults differ per command (offline
    silero-compatible vs realtime), so they are arguments; ``help_texts`` replaces or adds the help
    text of a flag, keyed by its dest.
    """
    texts: dict[str, str] = {
        "threshold": "speech probability at which speech starts",
        "neg_threshold": "exit threshold (default: max(threshold - 0.15, 0.01))",
        "min_speech_ms": "speech shorter than this is dropped, ms",
        "min_silence_ms": "silence that ends a segment (the hangover), ms",
        "speech_pad_ms": "padding added to both ends of a segment, ms",
        "max_speech_s": "split segments longer than this at their longest pause, s",
    }
    unknown = sorted(set(help_texts or {}) - set(texts))
    if unknown:
        raise ValueError(f"no VAD flag(s) {unknown}; known: {sorted(texts)}")
    texts.update(help_texts or {})
    defaults: dict[str, float | None] = {
        "threshold": threshold,
        "neg_threshold": None,
        "min_speech_ms": min_speech_ms,
        "min_silence_ms": min_silence_ms,
        "speech_pad_ms": speech_pad_ms,
        "max_speech_s": max_speech_s,
    }
    for dest, default in defaults.items():
        group.add_argument(
            "--" + dest.replace("_", "-"), type=float, default=default, help=texts[dest]
        )


#: The dests of :func:`add_vad_options`' flags (the option names of ``SegmentOptions`` and
#: the server's ``StreamOptions`` too).
VAD_OPTION_DESTS = (
    "threshold",
    "neg_threshold",
    "min_speech_ms",
    "min_silence_ms",
    "speech_pad_ms",
    "max_speech_s",
)


def vad_option_values(args: argparse.Namespace) -> dict[str, Any]:
    """The values of :func:`add_vad_options`' flags in a parsed command line, by dest."""
    return {dest: getattr(args, dest) for dest in VAD_OPTION_DESTS}


def output_is_dir(output: str | None) -> bool:
    """Whether ``-o OUTPUT`` names a folder (an existing one, or a path ending in a slash)."""
    return output is not None and (Path(output).is_dir() or output.endswith(("/", os.sep)))


_TS = TimestampOptions()


@dataclass(frozen=True)
class SegmentOptions:
    """The VAD options of ``caesura segment``, one field per flag (defaults: silero-vad's
    ``get_speech_timestamps``, as the flags' defaults).

    ``neg_threshold`` ``None`` derives the exit threshold from ``threshold``; ``compat``
    ``"silero"`` is ``--compat silero``. Invalid values raise
    :class:`~caesura.errors.InvalidOptionError` (the CLI exits 2). :meth:`timestamp_options`
    gives :func:`~caesura.vad.offline.speech_timestamps`' keywords, which ``caesura segment``'s
    JSON lists as its ``options``.
    """

    threshold: float = _TS.threshold
    neg_threshold: float | None = None
    min_speech_ms: float = _TS.min_speech_duration_ms
    min_silence_ms: float = _TS.min_silence_duration_ms
    speech_pad_ms: float = _TS.speech_pad_ms
    max_speech_s: float = _TS.max_speech_duration_s
    compat: Literal["silero"] | None = None

    def __post_init__(self) -> None:
        if self.compat not in (None, "silero"):
            raise InvalidOptionError(f"compat must be None or 'silero', got {self.compat!r}")
        TimestampOptions.from_kwargs(**self.timestamp_options())

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SegmentOptions:
        """The options of a parsed ``caesura segment`` command line."""
        return cls(**vad_option_values(args), compat=args.compat)

    def timestamp_options(self) -> dict[str, Any]:
        """:func:`~caesura.vad.offline.speech_timestamps`' keyword options (``neg_threshold``
        only when set)."""
        options: dict[str, Any] = {
            "threshold": self.threshold,
            "min_speech_duration_ms": self.min_speech_ms,
            "min_silence_duration_ms": self.min_silence_ms,
            "speech_pad_ms": self.speech_pad_ms,
            "max_speech_duration_s": self.max_speech_s,
        }
        if self.neg_threshold is not None:
            options["neg_threshold"] = self.neg_threshold
        return options

    def json_options(self) -> dict[str, Any]:
        """The ``options`` object of ``caesura segment``'s JSON (no limit is ``null``)."""
        return _json_options(self.timestamp_options())


def _json_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in options.items()}


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``caesura segment`` (defaults: silero-vad's ``get_speech_timestamps``)."""
    d = TimestampOptions()
    parser.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders")
    parser.add_argument(
        "-f",
        "--format",
        choices=("json", "csv", "rttm", "jsonl", "parquet"),
        default=None,
        help="output format (default: json); --ray writes jsonl, one record per file (its "
        "default), or parquet (its default for -o *.parquet)",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="output file, or a folder (existing, or ending in '/') for one file per input, "
        "named after the input's path below the inputs' common folder (a/x.wav b/x.wav -> "
        "DIR/a/x.json, DIR/b/x.json; x.flac x.ogg -> DIR/x.flac.json, DIR/x.ogg.json); "
        "default: stdout",
    )
    g = parser.add_argument_group("VAD options")
    add_vad_options(
        g,
        threshold=d.threshold,
        min_speech_ms=d.min_speech_duration_ms,
        min_silence_ms=d.min_silence_duration_ms,
        speech_pad_ms=d.speech_pad_ms,
        max_speech_s=d.max_speech_duration_s,
        help_texts={
            "max_speech_s": "split longer segments at their longest pause (default: no limit)"
        },
    )
    g.add_argument(
        "--compat",
        choices=("silero",),
        default=None,
        help="reproduce silero-vad's get_speech_timestamps exactly (reference model path; "
        "8/16 kHz and multiples of 16 kHz only)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    r = parser.add_argument_group("Ray (pip install 'caesura[ray]'; see caesura.ray)")
    r.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="segment on a Ray cluster: --ray alone (after the paths) starts a local one; "
        "--ray auto or --ray ray://HEAD:10001 connects to a running one (every node must "
        "see the paths: a shared folder or URIs such as s3://bucket/prefix/)",
    )
    r.add_argument(
        "--ray-workers",
        type=int,
        default=None,
        metavar="N",
        help="actors in the pool, one model each (default: 1 up to the cluster's CPUs)",
    )
    r.add_argument(
        "--ray-batch-size",
        type=int,
        default=None,
        metavar="N",
        help="files an actor segments per batch, the unit Ray runs again when an actor dies "
        "(default: 4)",
    )


@dataclass
class _Result:
    path: Path | str  # str: a name kept as given (a URI)
    uri: str
    sample_rate: int
    num_samples: int
    segments: list[dict[str, float]]

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate


@dataclass(frozen=True)
class _Input:
    """A path to segment: a file with the folder it was found under, or a path in error."""

    path: Path
    root: Path  # the folder named on the command line, or the file's own folder
    error: str | None = None

    @property
    def rel(self) -> Path:
        """The path below the folder it was found in (a named file: its name)."""
        return self.path.relative_to(self.root)


def _discover(paths: Iterable[str]) -> tuple[list[_Input], bool]:
    """(inputs in command-line order, each file once; any folder given)."""
    inputs: list[_Input] = []
    seen: set[str] = set()
    folder = False
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            folder = True
            found = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
            )
            if not found:
                inputs.append(_Input(p, p, f"no {'/'.join(AUDIO_SUFFIXES)} files in this folder"))
            pairs = [(f, p) for f in found]
        elif p.is_file():
            pairs = [(p, p.parent)]
        else:
            inputs.append(_Input(p, p.parent, "no such file or directory"))
            continue
        for f, root in pairs:
            real = os.path.realpath(f)
            if real not in seen:  # a file named twice (or inside a folder also given) runs once
                seen.add(real)
                inputs.append(_Input(f, root))
    return inputs, folder


def _names(inputs: Sequence[_Input]) -> dict[Path, Path]:
    """Each file's output name without extension: its path below the common parent folder.

    ``a/x.wav b/x.wav`` give ``a/x`` and ``b/x``; a folder's files keep their place below it.
    Files whose names would still coincide (``x.flac`` beside ``x.ogg``, names differing only
    in case) keep their audio suffix: ``x.flac``, ``x.ogg``.
    """
    files = [i for i in inputs if i.error is None]
    if not files:
        return {}
    roots = [os.path.abspath(i.root) for i in files]
    try:
        common = os.path.commonpath(roots)
    except ValueError:  # different drives: keep each path whole
        common = ""
    rels: dict[Path, Path] = {}
    for i in files:
        full = os.path.abspath(i.path)
        rel = Path(os.path.relpath(full, common)) if common else Path(*Path(full).parts[1:])
        rels[i.path] = rel
    stems: dict[str, list[Path]] = {}
    for path, rel in rels.items():
        stems.setdefault(str(rel.with_suffix("")).casefold(), []).append(path)
    return {
        path: rel if len(stems[str(rel.with_suffix("")).casefold()]) > 1 else rel.with_suffix("")
        for path, rel in rels.items()
    }


def _output_targets(inputs: Sequence[_Input], out_dir: Path, ext: str) -> dict[Path, Path]:
    """Each file's output file under ``out_dir``; refuses (before anything is written) when
    two inputs would share one."""
    targets: dict[Path, Path] = {}
    claimed: dict[str, Path] = {}
    for path, name in _names(inputs).items():
        target = out_dir / (str(name) + ext)
        other = claimed.setdefault(str(target).casefold(), path)
        if other != path:
            raise InvalidOptionError(
                f"{other} and {path} would both be written to {target} (names that differ "
                "only in case collide on some file systems); nothing was written -- rename "
                "one, or write everything to one file with -o FILE"
            )
        targets[path] = target
    return targets


class _Progress:
    """tqdm when installed, else a one-line bar on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self.done = 0
        self._tqdm: Any = None
        self._t0 = time.monotonic()
        if not enabled:
            return
        try:
            from tqdm import tqdm  # noqa: PLC0415 (optional)
        except ImportError:
            self._tqdm = None
        else:
            self._tqdm = tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True)

    def update(self, name: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(name[-40:], refresh=False)
            self._tqdm.update(1)
            return
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        el = time.monotonic() - self._t0
        sys.stderr.write(f"\r[{bar}] {self.done}/{self.total} {el:5.1f}s {name[-40:]:<40}")
        sys.stderr.flush()

    def message(self, text: str) -> None:
        """Print a line on stderr without breaking the bar."""
        if self.enabled and self._tqdm is not None:
            self._tqdm.write(text, file=sys.stderr)
            return
        if self.enabled and self.done:
            sys.stderr.write("\n")
        print(text, file=sys.stderr)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._tqdm is not None:
            self._tqdm.close()
        else:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _segment_file(
    path: Path | str,
    model: Any,
    compat: str | None,
    options: dict[str, Any],
    data: bytes | Callable[[], bytes] | None = None,
) -> _Result:
    audio, sr = read_audio(path, data() if callable(data) else data)
    if compat == "silero" and silero_decimation(sr) is None:
        raise UnsupportedSampleRateError(
            f"{path}: --compat silero takes 8000, 16000 Hz or multiples of 16000 Hz (like "
            f"silero-vad), this file is {sr} Hz; leave out --compat silero (caesura resamples "
            f"any rate), or convert the file first: ffmpeg -i {shlex.quote(str(path))} -ar "
            "16000 out.wav"
        )
    segs = speech_timestamps(audio, sr, compat=compat, model=model, **options)  # type: ignore[arg-type]
    # silero's compat mode scales decimated rates back by `step`; all results are input samples
    return _Result(path, Path(path).stem, sr, int(audio.size), segs)


@dataclass(frozen=True)
class _Failure:
    """An input that could not be segmented (it is listed, with its error, in JSON)."""

    path: Path | str
    error: str


def _seg_records(r: _Result) -> list[dict[str, Any]]:
    return [
        {
            "start": round(s["start"] / r.sample_rate, 3),
            "end": round(s["end"] / r.sample_rate, 3),
            "start_sample": int(s["start"]),
            "end_sample": int(s["end"]),
        }
        for s in r.segments
    ]


def _uri(rel: Path) -> str:
    return str(rel.with_suffix("")).replace(os.sep, "/").replace(" ", "_")


def _segment_one(
    path: Path | str,
    model: Any,
    compat: str | None,
    options: dict[str, Any],
    data: bytes | Callable[[], bytes] | None = None,
) -> _Result | _Failure:
    """Segment one file; a file that cannot be read or segmented is a failure."""
    try:
        return _segment_file(path, model, compat, options, data)
    except (CaesuraError, OSError) as exc:
        msg = str(exc)
        prefix = f"{path}: "
        why = msg[len(prefix) :] if msg.startswith(prefix) else msg
        logger.debug("failed on %s", path, exc_info=True)
        return _Failure(path, why)


def segment_record(
    path: str | os.PathLike[str],
    options: SegmentOptions,
    *,
    model: SileroVAD | None = None,
    data: bytes | Callable[[], bytes] | None = None,
) -> dict[str, Any]:
    """The record of one file in ``caesura segment``'s JSON ``files`` list.

    ``{"path", "sample_rate", "duration_s", "speech_s", "segments": [{"start", "end",
    "start_sample", "end_sample"}]}`` (seconds rounded to ms, samples at the file's rate), or
    ``{"path", "error"}`` for a file that cannot be read or segmented -- this never raises for
    a bad file. ``data``: the file's bytes (or a function reading them), when they do not come
    from the local ``path``.
    """
    m = model if model is not None else SileroVAD.load()
    p = os.fspath(path)  # as given: Path() would turn s3://b/k into s3:/b/k
    return _file_record(_segment_one(p, m, options.compat, options.timestamp_options(), data))


def _file_record(r: _Result | _Failure) -> dict[str, Any]:
    if isinstance(r, _Failure):
        return {"path": str(r.path), "error": r.error}
    return {
        "path": str(r.path),
        "sample_rate": r.sample_rate,
        "duration_s": round(r.duration_s, 3),
        "speech_s": round(sum(s["end"] - s["start"] for s in r.segments) / r.sample_rate, 3),
        "segments": _seg_records(r),
    }


def _write(
    items: Sequence[_Result | _Failure], fmt: str, out: TextIO, options: dict[str, Any]
) -> None:
    results = [r for r in items if isinstance(r, _Result)]
    if fmt == "json":
        doc = {
            "caesura": __version__,
            "options": _json_options(options),
            "files": [_file_record(r) for r in items],
        }
        json.dump(doc, out, indent=2)
        out.write("\n")
    elif fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["file", "start", "end", "start_sample", "end_sample", "sample_rate"])
        for r in results:
            for s in _seg_records(r):
                w.writerow(
                    [
                        str(r.path),
                        f"{s['start']:.3f}",
                        f"{s['end']:.3f}",
                        s["start_sample"],
                        s["end_sample"],
                        r.sample_rate,
                    ]
                )
    else:  # rttm
        for r in results:
            uri = r.uri
            for s in r.segments:
                start = s["start"] / r.sample_rate
                dur = (s["end"] - s["start"]) / r.sample_rate
                out.write(f"SPEAKER {uri} 1 {start:.3f} {dur:.3f} <NA> <NA> speech <NA> <NA>\n")


def _render(items: Sequence[_Result | _Failure], fmt: str, options: dict[str, Any]) -> str:
    buf = io.StringIO()
    _write(items, fmt, buf, options)
    return buf.getvalue()


def _iter_results(
    *,
    inputs: list[_Input],
    model: Any,
    compat: str | None,
    options: dict[str, Any],
    progress: _Progress,
) -> Iterator[_Result | _Failure]:
    """Segment the inputs in order; an input in error, or one that fails, is a failure."""
    for item in inputs:
        path = item.path
        if item.error is not None:
            progress.message(f"caesura segment: {path}: {item.error}")
            yield _Failure(path, item.error)
            continue
        r = _segment_one(path, model, compat, options)
        if isinstance(r, _Failure):
            progress.message(f"caesura segment: {path}: {r.error}")
        else:
            r.uri = _uri(item.rel)
        progress.update(path.name)
        yield r


def run(args: argparse.Namespace) -> int:
    """``caesura segment``: returns 0, or 1 when any input failed."""
    seg_options = SegmentOptions.from_args(args)  # bad options: InvalidOptionError, exit 2
    options = seg_options.timestamp_options()
    if args.ray is not None:
        from caesura.ray import run_cli  # noqa: PLC0415 (the ray extra)

        return run_cli(args, seg_options)
    args.format = args.format or "json"
    if args.format not in ("json", "csv", "rttm"):
        raise InvalidOptionError(f"-f {args.format} is a --ray format; add --ray")

    inputs, folder = _discover(args.paths)
    files = [i for i in inputs if i.error is None]
    ext = {"json": ".json", "csv": ".csv", "rttm": ".rttm"}[args.format]
    out_dir: Path | None = None
    targets: dict[Path, Path] = {}
    if output_is_dir(args.output):
        out_dir = Path(args.output)
        targets = _output_targets(inputs, out_dir, ext)  # refuses before writing anything
        out_dir.mkdir(parents=True, exist_ok=True)

    model = SileroVAD.load() if files else None
    progress = _Progress(len(files), enabled=folder and not args.no_progress and len(files) > 1)
    items: list[_Result | _Failure] = []
    try:
        for r in _iter_results(
            inputs=inputs,
            model=model,
            compat=seg_options.compat,
            options=options,
            progress=progress,
        ):
            if out_dir is None:
                items.append(r)
                continue
            if isinstance(r, _Failure):
                items.append(r)
                if r.path not in targets or args.format != "json":
                    continue  # a missing path has no output; CSV / RTTM cannot hold an error
            target = targets[Path(r.path)]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_render([r], args.format, options), encoding="utf-8")
    finally:
        progress.close()

    if out_dir is None:
        text = _render(items, args.format, options)
        if args.output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            target = Path(args.output)
            if target.parent != Path():
                target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    failures = [r for r in items if isinstance(r, _Failure)]
    if failures:
        print(
            f"caesura segment: {len(failures)} of {len(inputs)} input(s) failed",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
