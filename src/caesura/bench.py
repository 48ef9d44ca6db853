"""``caesura bench``: one entry point to the speed and quality benchmarks.

The benchmarks are scripts in the repository's ``benchmarks/`` folder (each also runs on its
own, and ``nox -s bench`` runs them all in a virtualenv with LiveKit, Pipecat and silero-vad
installed for the side-by-side peers). ``caesura bench`` runs the ones asked for (all by
default) one after the other with a progress bar, prints each one's tables, and writes:

* ``<out>/results/<name>.txt`` -- the exact command, the machine, the git commit, the
  duration and exit status, how busy other processes kept the machine meanwhile (a run
  beside a training job or a test suite is flagged: its timings are inflated), then the
  script's full output (the benchmark pages in ``docs/`` include these files, so the
  published numbers are always the latest run's);
* ``<out>/results/<name>.json`` -- the script's machine-readable results, for scripts that
  take ``--json``;
* ``<out>/<name>.png`` -- a plot, for benchmarks whose JSON results have a plotter here
  (needs matplotlib from ``caesura[bench]``).

A script that fails (a peer not installed, no data) is reported and the others still run;
the exit status is 1 when any failed. Must be run from a source checkout (or pass
``--benchmarks-dir``): the benchmark scripts are not part of the wheel. ``--list`` works
anywhere: without the scripts it lists the known benchmarks and says how to get them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caesura._version import __version__
from caesura.errors import CaesuraError, InvalidOptionError, MissingDependencyError
from caesura.tune import _command_line, progress

__all__ = [
    "BENCHMARKS",
    "BUSY_CPUS",
    "SOURCE_URL",
    "BenchResult",
    "Benchmark",
    "OtherLoad",
    "configure",
    "discover",
    "machine_description",
    "run",
    "run_benchmark",
]

logger = logging.getLogger(__name__)

#: Where the benchmark scripts live (they are not in the wheel).
SOURCE_URL = "https://github.com/caesura-voice/caesura"
_GET_SCRIPTS = (
    "the benchmark scripts are not installed with the package; get them with a source "
    f"checkout: git clone {SOURCE_URL} && cd caesura && pip install '.[bench]' && caesura "
    "bench --list (or pass --benchmarks-dir DIR)"
)


@dataclass(frozen=True)
class Benchmark:
    """A benchmark script and what it needs."""

    name: str
    title: str
    needs: str = ""
    quick_args: tuple[str, ...] = ()


#: Known benchmarks, in run order (scripts found in the folder but not listed run after them).
BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "vad_speed",
            "VAD speed: µs per 32 ms window, single and batched, against LiveKit and Pipecat",
            "livekit-agents, livekit-plugins-silero and pipecat-ai for the peers",
        ),
        Benchmark(
            "vad_quality",
            "VAD quality on AMI: frame scores, segment F1, event delays, false triggers",
            "the shared data (--data); webrtcvad-wheels and silero-vad for the peers",
            ("--quick",),
        ),
        Benchmark(
            "eot_text",
            "End-of-turn model accuracy per corpus: Switchboard, AMI, Earnings-22, written turns,"
            " assistant commands, short answers",
            "the shared data (--data)",
        ),
        Benchmark(
            "eot_speed",
            "End-of-turn model latency against smart-turn and LiveKit's turn detector",
            "pipecat-ai and livekit-agents for the peers",
        ),
        Benchmark(
            "turns",
            "End-of-turn policies per corpus (eot-bench protocol): Switchboard, AMI, Earnings-22",
            "the shared data (--data)",
            ("--max-conversations", "60"),
        ),
        Benchmark(
            "vad_offline_speed",
            "Offline file segmentation speed against silero-vad's get_speech_timestamps",
            "silero-vad (torch) for the peer",
        ),
        Benchmark(
            "resampler_delay",
            "Streaming resampler: added delay before (soxr HQ) and after, quality against the"
            " offline resample",
        ),
        Benchmark(
            "livekit_vad",
            "LiveKit plugin: CPU per stream-second against livekit-plugins-silero",
            "livekit-agents and livekit-plugins-silero",
        ),
        Benchmark(
            "pipecat_bench",
            "Pipecat plugin: per-window and end-of-turn cost against Pipecat's analyzers",
            "pipecat-ai",
        ),
        Benchmark(
            "server_load",
            "caesura serve: concurrent real-time WebSocket streams",
            "the server extra (caesura[server]) and psutil",
            ("--streams", "25,50,100", "--seconds", "5", "--mode", "batched"),
        ),
        Benchmark(
            "server_soak",
            "caesura serve: 10-minute soak, memory over time",
            "the server extra (caesura[server]) and psutil",
        ),
    )
}


def _find_benchmarks_dir(explicit: Path | None) -> Path:
    if explicit is not None:
        if not explicit.is_dir():
            raise InvalidOptionError(f"benchmarks folder not found: {explicit}")
        return explicit
    candidates = [Path.cwd() / "benchmarks", Path(__file__).resolve().parents[2] / "benchmarks"]
    for c in candidates:
        if c.is_dir():
            return c
    raise InvalidOptionError(f"no benchmarks/ folder here: {_GET_SCRIPTS}")


def discover(folder: Path) -> dict[str, Path]:
    """Benchmark scripts in ``folder`` (``*.py`` not starting with ``_``), known ones first."""
    found = {p.stem: p for p in sorted(folder.glob("*.py")) if not p.name.startswith("_")}
    order = [n for n in BENCHMARKS if n in found] + [n for n in found if n not in BENCHMARKS]
    return {n: found[n] for n in order}


def machine_description() -> str:
    """CPU model and count, OS, Python: the context every number needs."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}"
    )


#: Other processes' load (CPUs kept busy on average) above which a run's timings are flagged.
BUSY_CPUS = 0.25


def _cpu_seconds() -> tuple[float, float]:
    """``(CPU seconds the whole machine has spent busy, CPU seconds this process's finished
    children have used)``; the first is NaN where ``/proc/stat`` is not available."""
    import resource  # noqa: PLC0415  (POSIX only; bench runs there)

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = children.ru_utime + children.ru_stime
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return math.nan, own
    # user nice system idle iowait irq softirq steal: all but idle and iowait are busy
    busy = sum(fields) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK"), own


class OtherLoad:
    """Context manager measuring how many CPUs *other* processes kept busy, on average,
    while its block ran (the machine's busy time less this process's children's CPU time,
    so the benchmark's own subprocesses don't count): the load that inflates a timing
    without showing in it. ``cpus`` is NaN where ``/proc/stat`` is not available."""

    def __init__(self) -> None:
        self.cpus = math.nan
        self._start = (math.nan, 0.0, 0.0)

    def __enter__(self) -> OtherLoad:
        self._start = (*_cpu_seconds(), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        machine0, ours0, t0 = self._start
        machine1, ours1 = _cpu_seconds()
        seconds = max(time.perf_counter() - t0, 1e-9)
        self.cpus = ((machine1 - machine0) - (ours1 - ours0)) / seconds

    @property
    def busy(self) -> bool:
        """More than :data:`BUSY_CPUS` of other work: the block's timings are inflated."""
        return self.cpus > BUSY_CPUS

    def describe(self) -> str:
        if math.isnan(self.cpus):
            return "not measured (no /proc/stat)"
        text = (
            f"other processes kept {max(self.cpus, 0.0):.2f} of {os.cpu_count()} CPUs busy"
            " on average during the run"
        )
        if self.busy:
            text += (
                " -- WARNING: timings are inflated; rerun on a quiet machine before quoting them"
            )
        return text


def _git_commit(cwd: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def _accepts(script: Path, python: str, flag: str) -> bool:
    """Does ``script --help`` mention ``flag``? (Cheap: scripts parse args before work.)"""
    try:
        out = subprocess.run(
            [python, str(script), "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return flag in out.stdout


@dataclass
class BenchResult:
    """One benchmark run."""

    name: str
    command: list[str]
    returncode: int
    seconds: float
    output: str
    results_txt: Path | None = None
    results_json: Path | None = None
    plot: Path | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_benchmark(
    name: str,
    script: Path,
    *,
    out_dir: Path,
    data: Path | None,
    python: str = sys.executable,
    extra_args: Sequence[str] = (),
    timeout_s: float = 3600.0,
    cwd: Path | None = None,
    invoked_as: str = "",
) -> BenchResult:
    """Run one benchmark script, save its output (and JSON) under ``out_dir / "results"``.

    Relative ``out_dir`` and ``data`` are the caller's (the script runs in ``cwd``, the
    repository, so it is given them absolute).
    """
    cwd = cwd or script.parent.parent
    results = out_dir / "results"
    results.mkdir(parents=True, exist_ok=True)
    cmd = [python, str(script.absolute())]
    if data is not None:
        cmd += ["--data", str(data.absolute())]
    json_path: Path | None = None
    if _accepts(script, python, "--json"):
        json_path = results / f"{name}.json"
        cmd += ["--json", str(json_path.absolute())]
    cmd += list(extra_args)
    logger.info("running %s", shlex.join(cmd))
    t0 = time.perf_counter()
    load = OtherLoad()
    try:
        with load:
            proc = subprocess.run(
                cmd,
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        code, output = (
            proc.returncode,
            proc.stdout + (f"\n[stderr]\n{proc.stderr}" if proc.returncode and proc.stderr else ""),
        )
    except subprocess.TimeoutExpired as exc:
        code = 124
        partial = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        output = partial + f"\n[timed out after {timeout_s:g} s]"
    seconds = time.perf_counter() - t0
    if load.busy:
        logger.warning("%s: %s", name, load.describe())
    shown = [
        _display_path(Path(c), cwd) if i and os.path.isabs(c) else c for i, c in enumerate(cmd)
    ]
    shown[0] = "python"
    # the invoking command too, with this machine's absolute paths relative to the repository
    produced = " ".join(
        _display_path(Path(a), cwd) if os.path.isabs(a) and Path(a).exists() else a
        for a in (invoked_as or f"caesura bench {name}").split(" ")
    )
    header = [
        f"$ {shlex.join(shown)}",
        f"# produced by: {produced}",
        f"# caesura {__version__}, git {_git_commit(cwd)}, "
        f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"# machine: {machine_description()}",
        f"# exit status {code}, {seconds:.0f} s",
        f"# load: {load.describe()}",
        "",
    ]
    txt = results / f"{name}.txt"
    txt.write_text("\n".join(header) + output.rstrip() + "\n", encoding="utf-8")
    res = BenchResult(
        name=name,
        command=cmd,
        returncode=code,
        seconds=seconds,
        output=output,
        results_txt=txt,
        results_json=json_path if json_path is not None and json_path.exists() else None,
    )
    if res.ok and res.results_json is not None and name in PLOTTERS:
        try:
            res.plot = PLOTTERS[name](
                json.loads(res.results_json.read_text()), out_dir / f"{name}.png"
            )
        except MissingDependencyError:
            raise
        except Exception as exc:  # a plot must never lose the numbers
            logger.warning("%s: could not plot the results (%s)", name, exc)
    return res


def _display_path(p: Path, cwd: Path) -> str:
    try:
        return os.path.relpath(p, cwd)
    except ValueError:
        return str(p)


# --------------------------------------------------------------------------------------------
# plots (one per benchmark whose JSON layout is known)
# --------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        raise MissingDependencyError("matplotlib", "bench", "benchmark plots") from None
    return plt


def _bar_plot(
    labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str, path: Path
) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) + 1.2))
    ax.barh(range(len(labels)), values, color="#4c72b0")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,.0f}" if v >= 100 else f" {v:.3g}", va="center", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _rows(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict):
        for key in ("rows", "results", "systems"):
            if isinstance(data.get(key), list):
                return [r for r in data[key] if isinstance(r, dict)]
    if isinstance(data, list):
        return [r for r in data if isinstance(r, dict)]
    return []


def _plot_generic_rows(
    data: Any, path: Path, *, label_keys: Sequence[str], value_keys: Sequence[str], title: str
) -> Path:
    rows = _rows(data)
    labels: list[str] = []
    values: list[float] = []
    value_key = ""
    for r in rows:
        vk = next((k for k in value_keys if isinstance(r.get(k), (int, float))), None)
        lk = next((k for k in label_keys if r.get(k) is not None), None)
        if vk is None or lk is None:
            continue
        value_key = value_key or vk
        if vk != value_key:
            continue
        labels.append(" ".join(str(r[k]) for k in label_keys if r.get(k) is not None))
        values.append(float(r[vk]))
    if not labels:
        raise ValueError(f"no rows with {'/'.join(value_keys)} in the JSON results")
    return _bar_plot(labels, values, title=title, xlabel=value_key, path=path)


#: Plotters by benchmark name: ``(json_data, png_path) -> png_path``.
PLOTTERS: dict[str, Callable[[Any, Path], Path]] = {
    "vad_speed": lambda d, p: _plot_generic_rows(
        d,
        p,
        label_keys=("system", "name", "config", "B", "batch"),
        value_keys=("us_per_window", "us", "cpu_us_per_window"),
        title="CPU per 32 ms window (µs, 1 thread; lower is better)",
    ),
    "server_load": lambda d, p: _plot_generic_rows(
        d,
        p,
        label_keys=("mode", "streams", "n"),
        value_keys=("p99_ms", "latency_p99_ms"),
        title="event latency p99 (ms) by concurrent streams",
    ),
}


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    """``caesura bench``'s arguments."""
    default_data = os.environ.get("CAESURA_DATA")
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help="benchmarks to run (default: all; see --list)"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(default_data) if default_data else None,
        help="the shared data folder (default: $CAESURA_DATA, else ../shared/data if present)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("docs/benchmarks"),
        help="where results and plots go (default: docs/benchmarks)",
    )
    parser.add_argument("--benchmarks-dir", type=Path, default=None, help="the scripts' folder")
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter to run the scripts with"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller runs where a benchmark supports it"
    )
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds per benchmark (default 3600)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _list(scripts: dict[str, Path] | None) -> int:
    """``--list``: the scripts found, or (none found) the known benchmarks and where to get
    them."""
    names = list(scripts) if scripts is not None else list(BENCHMARKS)
    for name in names:
        b = BENCHMARKS.get(name)
        print(f"{name:16s} {b.title if b else scripts[name].name if scripts else name}")
        if b and b.needs:
            print(f"{'':16s} needs: {b.needs}")
    if scripts is None:
        print(f"\n{_GET_SCRIPTS[0].upper()}{_GET_SCRIPTS[1:]}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``caesura bench``; 0 when every benchmark run succeeded."""
    if args.list and args.benchmarks_dir is None:
        try:
            folder = _find_benchmarks_dir(None)
        except InvalidOptionError:
            return _list(None)
        return _list(discover(folder))
    folder = _find_benchmarks_dir(args.benchmarks_dir)
    scripts = discover(folder)
    if args.list:
        return _list(scripts)
    names = list(args.names) or list(scripts)
    unknown = [n for n in names if n not in scripts]
    if unknown:
        raise InvalidOptionError(
            f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(scripts)}"
        )
    data = args.data
    if data is None:
        guess = folder.parent.parent / "shared" / "data"
        data = guess if guess.is_dir() else None
    invoked = _command_line("bench") or "caesura bench"
    _pyplot_available()
    failed: list[str] = []
    bar = progress(
        names,
        total=len(names),
        desc="benchmarks",
        unit="bench",
        enabled=False if args.no_progress else None,
    )
    for name in bar:
        b = BENCHMARKS.get(name)
        extra = b.quick_args if (args.quick and b is not None) else ()
        res = run_benchmark(
            name,
            scripts[name],
            out_dir=args.out,
            data=data,
            python=args.python,
            extra_args=extra,
            timeout_s=args.timeout,
            cwd=folder.parent,
            invoked_as=invoked if len(names) == 1 else f"{invoked} (benchmark {name})",
        )
        status = "ok" if res.ok else f"FAILED (exit {res.returncode})"
        print(f"\n=== {name}: {status}, {res.seconds:.0f} s ===")
        print(res.output.rstrip())
        print(f"--> {res.results_txt}" + (f", plot {res.plot}" if res.plot else ""))
        if not res.ok:
            failed.append(name)
    if failed:
        print(f"\n{len(failed)} benchmark(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _pyplot_available() -> None:
    try:
        _pyplot()
    except MissingDependencyError as exc:
        logger.warning("%s; benchmarks run without plots", exc)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m caesura.bench`` (the same as ``caesura bench``)."""
    parser = argparse.ArgumentParser(prog="caesura bench", description=__doc__.splitlines()[0])
    configure(parser)
    try:
        return run(parser.parse_args(argv))
    except CaesuraError as exc:
        print(f"caesura bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
