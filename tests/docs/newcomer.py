"""A newcomer's first steps from a clone, done for real: ``nox -s newcomer`` (CI runs it).

Every install line that README.md, the plugin READMEs, the quickstarts and the examples'
docstrings give is run verbatim, from the root of the clone, in a fresh virtualenv of its own;
then whatever the page says comes with it is checked there: the packages it installs import,
and every command an example's docstring documents runs and exits 0.

    python tests/docs/newcomer.py            # the whole plan (pip installs: a few minutes)
    python tests/docs/newcomer.py --list     # print the plan, run nothing
    python tests/docs/newcomer.py --only pipecat

Nothing but ``pip install`` may reach the network: the documented commands run on the
repository's own files. What counts as an install line, and how the pages must write them:

* a line (in a fenced block, or an inline code span) that runs ``pip install``;
* "from a clone" when every one of our distributions it names is a local path (``.``,
  ``'.[server]'``, ``./plugins/livekit``): those are run. Names from PyPI
  (``livekit-plugins-caesura``) are the future form, given beside the clone form (in a
  comment or the next table column) and not run, since nothing is on PyPI yet;
* ``pip install nox && nox -s ...`` is CI's own command and is not run again here.

An example's docstring lists, indented, its install line first, then its commands; a command
ending in ``&`` is started in the background (``caesura serve &``: the plan waits for its
``/healthz``), and a command whose comment starts with ``needs`` (credentials, a LiveKit
server) is listed but not run. ``VAD_LISTEN`` is set to a free port, so ``caesura serve`` and
``examples/ws_client.py`` meet there whatever else runs on the machine.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

__all__ = [
    "EXAMPLES",
    "IMPORTS",
    "PAGES",
    "Command",
    "InstallLine",
    "Step",
    "Unit",
    "example_units",
    "free_port",
    "install_units",
    "main",
    "our_distributions",
    "parse_install",
    "plan",
    "run_commands",
    "wait_healthy",
]

ROOT = Path(__file__).resolve().parents[2]

#: The pages a newcomer installs from (relative to the repository root).
PAGES = [
    "README.md",
    "plugins/livekit/README.md",
    "plugins/pipecat/README.md",
    "docs/quickstart/python.md",
    "docs/quickstart/livekit.md",
    "docs/quickstart/pipecat.md",
    "docs/quickstart/echokit.md",
]
EXAMPLES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "examples").glob("*.py"))

#: What each of our distributions (or extra) must make importable once installed.
IMPORTS: dict[str, tuple[str, ...]] = {
    "caesura": ("caesura", "caesura.eot", "caesura.vad"),
    "caesura[server]": ("caesura.server.app",),
    "caesura[files]": ("soundfile",),
    "livekit-plugins-caesura": ("livekit.plugins.caesura",),
    "pipecat-caesura": ("pipecat_caesura",),
}

_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_SPAN = re.compile(r"`(pip install [^`]+)`")
_REQ = re.compile(r"([A-Za-z0-9_.-]+)(?:\[([\w,-]+)\])?([<>=!~].*)?")


def norm_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def our_distributions() -> dict[str, Path]:
    """Our distribution names -> their project folders (the root and plugins/*)."""
    out = {}
    for pp in (ROOT / "pyproject.toml", *sorted(ROOT.glob("plugins/*/pyproject.toml"))):
        out[norm_name(tomllib.loads(pp.read_text(encoding="utf-8"))["project"]["name"])] = pp.parent
    return out


@dataclass(frozen=True)
class InstallLine:
    """One ``pip install`` as a page writes it."""

    text: str  #: the shell line, verbatim (for a comment, the part from ``pip install`` on)
    runnable: bool  #: a real line of the page (not inside a comment)
    local: tuple[str, ...]  #: our projects it installs from a path (``caesura[server]``)
    named: tuple[str, ...]  #: our distributions it names from PyPI, with extras
    others: tuple[str, ...]  #: other requirements, verbatim (``livekit-agents>=1.8``)
    ci: bool  #: ``pip install nox && nox ...``: CI's own command

    @property
    def from_clone(self) -> bool:
        """Installs our code from the clone and names none of it from PyPI."""
        return bool(self.local) and not self.named

    def projects(self) -> set[str]:
        """Our distributions it installs, without extras."""
        return {re.sub(r"\[.*", "", d) for d in (*self.local, *self.named)}


def parse_install(text: str, *, runnable: bool = True) -> InstallLine:
    """Classify a line holding ``pip install``; raises ValueError when it cannot be read."""
    ours = our_distributions()
    start = text.index("pip install")
    command = re.split(r"&&|;|\|\||(?<!\S)#", text[start:], maxsplit=1)[0]
    args = shlex.split(command)[2:]
    local: list[str] = []
    named: list[str] = []
    others: list[str] = []
    for arg in args:
        if arg.startswith("-"):
            continue
        if arg.startswith((".", "/")):
            m = re.fullmatch(r"([^\[]+)(?:\[([\w,-]+)\])?", arg)
            if m is None:
                raise ValueError(f"cannot read the path requirement {arg!r} in {text!r}")
            folder = (ROOT / m.group(1)).resolve()
            names = [n for n, p in ours.items() if p.resolve() == folder]
            if not names:
                raise ValueError(f"{arg!r} in {text!r} is not a project of this repository")
            local += [names[0] + (f"[{e}]" if e else "") for e in _extras(m.group(2))]
            continue
        m = _REQ.fullmatch(arg)
        if m is None:
            raise ValueError(f"cannot read the requirement {arg!r} in {text!r}")
        name = norm_name(m.group(1))
        if name in ours:
            named += [name + (f"[{e}]" if e else "") for e in _extras(m.group(2))]
        else:
            others.append(arg)
    return InstallLine(
        text=text.strip() if runnable else text[start:].strip(),
        runnable=runnable,
        local=tuple(local),
        named=tuple(named),
        others=tuple(others),
        ci=bool(re.search(r"pip install\s+nox\b", text)),
    )


def _extras(group: str | None) -> list[str]:
    """``"server,files"`` -> ``["server", "files"]``; no extras -> ``[""]``."""
    return [e for e in (group or "").split(",") if e] or [""]


@dataclass(frozen=True)
class Unit:
    """Install lines a page gives together: a fenced block, a table row, a docstring."""

    where: str  #: ``README.md:12``
    lines: tuple[InstallLine, ...]

    @property
    def clone_lines(self) -> tuple[str, ...]:
        """The lines a newcomer runs, in order: real lines installing from the clone."""
        return tuple(ln.text for ln in self.lines if ln.runnable and ln.from_clone and not ln.ci)


def _md_units(page: str) -> list[Unit]:
    text = (ROOT / page).read_text(encoding="utf-8")
    units: list[Unit] = []
    fenced: list[tuple[int, int]] = []
    for m in _FENCE.finditer(text):
        fenced.append((m.start(), m.end()))
        lines: list[InstallLine] = []
        for raw in m.group(1).splitlines():
            if "pip install" not in raw:
                continue
            comment = raw.lstrip().startswith("#")
            lines.append(parse_install(raw, runnable=not comment))
            # a comment may follow a real line: "pip install . # once released: pip install x"
            if not comment and "#" in raw and "pip install" in raw.split("#", 1)[1]:
                lines.append(parse_install(raw.split("#", 1)[1], runnable=False))
        if lines:
            units.append(Unit(f"{page}:{text.count(chr(10), 0, m.start()) + 1}", tuple(lines)))
    # inline code spans: a table row is a unit, a paragraph of prose is one
    offset = 0
    para: list[tuple[int, str]] = []
    for n, raw in enumerate([*text.splitlines(keepends=True), "\n"], start=1):
        inside = any(a <= offset < b for a, b in fenced)
        offset += len(raw)
        row = raw.lstrip().startswith("|")
        if para and (inside or row or not raw.strip()):
            spans = [parse_install(s) for _, line in para for s in _SPAN.findall(line)]
            if spans:
                units.append(Unit(f"{page}:{para[0][0]}", tuple(spans)))
            para = []
        if inside:
            continue
        if row:
            spans = [parse_install(s) for s in _SPAN.findall(raw)]
            if spans:
                units.append(Unit(f"{page}:{n}", tuple(spans)))
        elif raw.strip():
            para.append((n, raw))
    return sorted(units, key=lambda u: int(u.where.rsplit(":", 1)[1]))


def install_units(pages: list[str] | None = None) -> list[Unit]:
    """Every place of the pages that says how to install something, in page order."""
    return [u for page in pages or PAGES for u in _md_units(page)]


@dataclass(frozen=True)
class Command:
    """A documented command: run with bash from the repository root."""

    where: str
    text: str  #: verbatim (continuation lines joined)
    background: bool = False  #: ends in ``&``
    needs: str | None = None  #: why it is not run offline (its ``# needs ...`` comment)


def _docstring_lines(path: str) -> tuple[int, list[str]]:
    source = (ROOT / path).read_text(encoding="utf-8")
    tree = ast.parse(source)
    doc = ast.get_docstring(tree, clean=False)
    if doc is None:
        raise ValueError(f"{path} has no module docstring")
    first = tree.body[0].lineno if tree.body else 1
    return first, doc.splitlines()


def example_units(path: str) -> tuple[Unit, list[Command]]:
    """An example's install line (its docstring's first indented line) and its commands."""
    first, lines = _docstring_lines(path)
    joined: list[tuple[int, str]] = []
    for n, raw in enumerate(lines):
        if not raw.startswith("    ") or not raw.strip():
            continue
        line = raw.strip()
        if joined and joined[-1][1].endswith("\\"):
            joined[-1] = (joined[-1][0], joined[-1][1][:-1].rstrip() + " " + line)
        else:
            joined.append((first + n, line))
    installs: list[InstallLine] = []
    commands: list[Command] = []
    for n, line in joined:
        where = f"{path}:{n}"
        if "pip install" in line and not commands:
            installs.append(parse_install(line))
            if "#" in line and "pip install" in line.split("#", 1)[1]:
                installs.append(parse_install(line.split("#", 1)[1], runnable=False))
            continue
        if not re.match(r"(python|caesura|lk|export)\b", line):
            continue  # an indented code sample of the docstring, not a shell command
        body, _, comment = line.partition(" #")
        comment = comment.strip()
        needs = comment if comment.startswith("needs") else None
        body = body.strip()
        background = body.endswith("&")
        commands.append(Command(where, body.rstrip("&").strip(), background, needs))
    return Unit(f"{path}:{first}", tuple(installs)), commands


# ----------------------------------------------------------------------------- the plan


@dataclass
class Step:
    """One fresh virtualenv: its install lines, then its checks."""

    install: tuple[str, ...]
    sources: list[str] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)

    @property
    def name(self) -> str:
        return " / ".join(self.install)


def plan() -> list[Step]:
    """Fresh virtualenvs to make: one per distinct sequence of install lines."""
    steps: dict[tuple[str, ...], Step] = {}

    def step_for(unit: Unit) -> Step | None:
        # the same lines with other comments are the same install
        key = tuple(re.split(r"(?<!\S)#", ln, maxsplit=1)[0].strip() for ln in unit.clone_lines)
        if not key:
            return None
        step = steps.setdefault(key, Step(unit.clone_lines))
        step.sources.append(unit.where)
        for line in unit.lines:
            if line.runnable and line.from_clone:
                for dist in line.local:
                    base = re.sub(r"\[.*", "", dist)
                    for mod in (*IMPORTS.get(base, ()), *IMPORTS.get(dist, ())):
                        if mod not in step.imports:
                            step.imports.append(mod)
        return step

    for unit in install_units():
        step_for(unit)
    for path in EXAMPLES:
        unit, commands = example_units(path)
        step = step_for(unit)
        if step is None:
            raise ValueError(f"{unit.where}: the docstring gives no install line from a clone")
        step.commands += commands
    return list(steps.values())


# ----------------------------------------------------------------------------- running


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r,
        ):
            if r.status == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: nothing answers on port {port} after 120 s")
        time.sleep(0.3)


@contextlib.contextmanager
def _background(commands: list[Command], env: dict[str, str], log: Path) -> Iterator[None]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with log.open("wb") as out:
            for c in commands:
                print(f"  $ {c.text} &", flush=True)
                proc = subprocess.Popen(
                    ["bash", "-c", f"exec {c.text}"],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
                procs.append(proc)
                if re.match(r"caesura serve\b", c.text):
                    port = int(env["VAD_LISTEN"].rsplit(":", 1)[1])
                    wait_healthy(port, proc, f"{c.where}: {c.text}")
            yield
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_commands(
    commands: list[Command], env: dict[str, str], *, timeout: float = 300
) -> list[str]:
    """Run documented commands in order (background ones first); the failures, as text."""
    failures: list[str] = []
    env = dict(env)
    env.setdefault("VAD_LISTEN", f"127.0.0.1:{free_port()}")
    env.setdefault("MPLBACKEND", "Agg")
    background = [c for c in commands if c.background and c.needs is None]
    with tempfile.TemporaryDirectory() as tmp, _background(background, env, Path(tmp) / "log"):
        for c in commands:
            if c.background:
                continue
            if c.needs is not None:
                print(f"  (not run: {c.text}  # {c.needs})", flush=True)
                continue
            print(f"  $ {c.text}", flush=True)
            t0 = time.monotonic()
            proc = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", c.text],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            print(f"    exit {proc.returncode} in {time.monotonic() - t0:.1f} s", flush=True)
            if proc.returncode != 0 or "Traceback (most recent call last)" in proc.stderr:
                failures.append(
                    f"{c.where}: `{c.text}` exited {proc.returncode}\n--- stdout\n"
                    f"{proc.stdout[-2000:]}\n--- stderr\n{proc.stderr[-3000:]}"
                )
    return failures


def _venv_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = str(venv / "bin") + os.pathsep + env.get("PATH", "")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run_step(step: Step, workdir: Path) -> list[str]:
    """Make a fresh virtualenv, run the step's install lines verbatim, then its checks."""
    venv = workdir / "venv"
    print(f"\n== {step.name}\n   from {', '.join(step.sources)}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = _venv_env(venv)
    for line in step.install:
        print(f"  $ {line}", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", line],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        print(f"    exit {proc.returncode} in {time.monotonic() - t0:.1f} s", flush=True)
        if proc.returncode != 0:
            return [f"{step.sources[0]}: `{line}` exited {proc.returncode}\n{proc.stderr[-3000:]}"]
    failures = []
    for mod in step.imports:
        proc = subprocess.run(
            [str(venv / "bin" / "python"), "-c", f"import {mod}"],
            cwd=workdir,  # not the clone: the installed package, not the source tree
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        print(f"  import {mod}: {'ok' if proc.returncode == 0 else 'FAILED'}", flush=True)
        if proc.returncode != 0:
            failures.append(f"{step.name}: import {mod} failed\n{proc.stderr[-2000:]}")
    failures += run_commands(step.commands, env)
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--list", action="store_true", help="print the plan and exit")
    parser.add_argument("--only", default=None, help="steps whose install line contains this")
    parser.add_argument("--keep", type=Path, default=None, help="keep the virtualenvs here")
    args = parser.parse_args(argv)
    steps = [s for s in plan() if args.only is None or args.only in s.name]
    if args.list:
        for s in steps:
            print(f"{s.name}\n  from {', '.join(s.sources)}")
            for m in s.imports:
                print(f"  import {m}")
            for c in s.commands:
                note = f"  # {c.needs}" if c.needs else ""
                print(f"  {c.text}{' &' if c.background else ''}{note}")
        return 0
    failures: list[str] = []
    t0 = time.monotonic()
    for i, step in enumerate(steps):
        work = (args.keep or Path(tempfile.mkdtemp(prefix="newcomer-"))) / f"step{i}"
        work.mkdir(parents=True, exist_ok=True)
        try:
            failures += run_step(step, work)
        finally:
            if args.keep is None:
                shutil.rmtree(work.parent, ignore_errors=True)
    print(f"\n{len(steps)} fresh virtualenvs in {time.monotonic() - t0:.0f} s", flush=True)
    for f in failures:
        print(f"\nFAILED {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
