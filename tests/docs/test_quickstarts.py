"""Every code block of the quickstarts (and of the tune / segment guides) runs.

Blocks are read from the Markdown in page order and run in a temporary folder holding
``speech.wav`` (tests/fixtures/speech_16k.wav), ``meeting.wav`` and ``meeting.rttm`` (the AMI
fixture). The fence says how (see docs/quickstart/index.md, "How these pages are tested"):

* ``python``: executed; the blocks of one page share a namespace, in order;
* ``bash``: run with bash (``caesura`` on the PATH); must exit 0;
* ``data-env="pip"``: not run (no network here); every distribution and extra it names must
  exist in this repository's pyproject files (ours, or a dependency of ours);
* ``data-env="livekit"`` / ``"pipecat"``: executed where that framework is installed (the
  livekit / pipecat nox suites), else the page is skipped with the reason;
* ``data-env="server"``: ``caesura serve`` started in the background on a free port (the
  page's ``9093`` is replaced by it); later server blocks talk to it;
* ``data-env="toml"``: parsed; its localhost URLs must name routes the server has.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib
from newcomer import free_port, norm_name, parse_install

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FIXTURES = ROOT / "tests" / "fixtures"

#: Pages whose every block must run.
PAGES = [
    "quickstart/python.md",
    "quickstart/livekit.md",
    "quickstart/pipecat.md",
    "quickstart/echokit.md",
    "guides/tune.md",
    "guides/segment.md",
]
RUNNABLE = {"python", "bash", "toml"}
#: env -> (modules that must import, why / where it runs)
REQUIREMENTS = {
    "livekit": (
        ("livekit.agents", "livekit.plugins.caesura"),
        "needs livekit-agents + livekit-plugins-caesura: runs in nox -s \"tests(suite='livekit')\"",
    ),
    "pipecat": (
        ("pipecat", "pipecat_caesura"),
        "needs pipecat-ai + pipecat-caesura: runs in nox -s \"tests(suite='pipecat')\"",
    ),
    "server": (
        ("starlette", "uvicorn", "websockets", "multipart"),
        "needs caesura[server]: runs in nox -s \"tests(suite='core')\"",
    ),
}
PORT = "9093"
ROUTES = {"/v1/audio/vad", "/v1/audio/realtime_vad", "/v1/turn/predict", "/healthz", "/metrics"}

_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    page: str
    index: int
    line: int
    lang: str
    env: str
    code: str

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line} (block {self.index})"


def parse_info(info: str) -> tuple[str, str | None]:
    """``python`` / ``{ .python data-env="x" title="y" }`` -> (lang, env or None)."""
    info = info.strip()
    if info.startswith("{"):
        lang = re.search(r"\.([\w-]+)", info)
        env = re.search(r'data-env="([^"]+)"', info)
        return (lang.group(1) if lang else ""), (env.group(1) if env else None)
    return (info.split()[0] if info else ""), None


def blocks(page: str) -> list[Block]:
    text = (DOCS / page).read_text(encoding="utf-8")
    out = []
    for i, m in enumerate(_FENCE.finditer(text), start=1):
        lang, env = parse_info(m.group(1))
        if env is None:
            env = {"python": "core", "bash": "shell", "toml": "toml"}.get(lang, "display")
        line = text.count("\n", 0, m.start()) + 1
        out.append(Block(page, i, line, lang, env, m.group(2)))
    return out


def test_pages_exist_and_have_blocks() -> None:
    for page in PAGES:
        assert blocks(page), f"docs/{page} has no code blocks"


@pytest.mark.parametrize("page", PAGES)
def test_every_block_is_runnable(page: str) -> None:
    for b in blocks(page):
        assert b.lang in RUNNABLE, f"{b.where}: a ```{b.lang} block cannot be run by this test"
        assert b.env in {"core", "shell", "toml", "pip", *REQUIREMENTS}, f"{b.where}: env {b.env}"


# ----------------------------------------------------------------------------- pip blocks


def _known_distributions() -> dict[str, set[str]]:
    """Our distributions with their extras, and every dependency they declare (no extras)."""
    known: dict[str, set[str]] = {}
    deps: list[str] = []
    for pp in (ROOT / "pyproject.toml", *ROOT.glob("plugins/*/pyproject.toml")):
        project = tomllib.loads(pp.read_text())["project"]
        known[norm_name(project["name"])] = set(project.get("optional-dependencies", {}))
        deps += project.get("dependencies", [])
        for extra in project.get("optional-dependencies", {}).values():
            deps += extra
    for d in deps:
        name = norm_name(re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0])
        known.setdefault(name, set())
    return known


def test_pip_blocks_name_real_distributions_and_extras() -> None:
    """Every requirement of a pip block (its comments' future PyPI forms too) exists here:
    a folder of this repository with a pyproject (``.``, ``./plugins/livekit``), one of our
    distributions or a dependency of ours, with extras that distribution has."""
    known = _known_distributions()
    seen = 0
    for page in [*PAGES, "guides/train.md"]:
        for b in blocks(page):
            if b.env != "pip":
                continue
            for raw in b.code.splitlines():
                if "pip install" not in raw:
                    code = raw.split("#", 1)[0].strip()
                    assert not code, f"{b.where}: not a pip install: {raw!r}"
                    continue
                try:
                    line = parse_install(raw, runnable=not raw.lstrip().startswith("#"))
                except ValueError as exc:
                    raise AssertionError(f"{b.where}: {exc}") from None
                for req in (*line.local, *line.named):
                    m = re.fullmatch(r"([\w-]+)(?:\[(\w+)\])?", req)
                    assert m, req
                    if m.group(2):
                        assert m.group(2) in known[m.group(1)], f"{b.where}: no extra {req!r}"
                for req in line.others:
                    name = norm_name(re.split(r"[\[<>=!~]", req, maxsplit=1)[0])
                    assert name in known, f"{b.where}: {req!r} is not ours nor a dependency"
                seen += 1
    assert seen >= 5


# ----------------------------------------------------------------------------- running pages


def _missing(env: str) -> str | None:
    mods, why = REQUIREMENTS[env]
    for mod in mods:
        try:
            if importlib.util.find_spec(mod) is None:
                return why
        except (ImportError, ValueError):
            return why
    return None


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(FIXTURES / "speech_16k.wav", tmp_path / "speech.wav")
    shutil.copy(FIXTURES / "ami_sample_16k.wav", tmp_path / "meeting.wav")
    shutil.copy(FIXTURES / "ami_sample.rttm", tmp_path / "meeting.rttm")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _shell_env() -> dict[str, str]:
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _run_shell(b: Block, code: str, cwd: Path) -> None:
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=cwd,
        env=_shell_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{b.where} exited {proc.returncode}:\n{code}\n--- stdout\n{proc.stdout[-3000:]}"
        f"\n--- stderr\n{proc.stderr[-3000:]}"
    )


@contextlib.contextmanager
def _server(b: Block, code: str, cwd: Path, port: str) -> Iterator[None]:
    args = shlex.split(code.strip())
    assert args[:2] == ["caesura", "serve"], f"{b.where}: the first server block must start it"
    exe = Path(sys.executable).parent / "caesura"
    cmd = [str(exe) if exe.exists() else "caesura", *args[1:]]
    log = (cwd / "server.log").open("w")
    proc = subprocess.Popen(cmd, cwd=cwd, env=_shell_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (
                f"{b.where}: the server exited:\n" + (cwd / "server.log").read_text()
            )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{b.where}: the server did not come up"
            time.sleep(0.3)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _check_toml(b: Block) -> None:
    data = tomllib.loads(b.code)
    urls = []

    def walk(v: object) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, str) and re.match(r"(https?|wss?)://(localhost|127\.0\.0\.1):", v):
            urls.append(v)

    walk(data)
    assert urls, f"{b.where}: no localhost URL to check"
    for url in urls:
        path = "/" + url.split("/", 3)[3].split("?")[0]
        assert path in ROUTES, f"{b.where}: {url} is not a route of caesura serve"
        assert f":{PORT}/" in url, f"{b.where}: {url} is not on the documented port {PORT}"


@pytest.mark.parametrize("page", PAGES)
def test_page_runs(page: str, workdir: Path) -> None:
    page_blocks = [b for b in blocks(page) if b.env != "pip"]
    for env in sorted({b.env for b in page_blocks} & set(REQUIREMENTS)):
        why = _missing(env)
        if why:
            pytest.skip(f"docs/{page}: {why}")
    if (
        any("--plot" in b.code for b in page_blocks)
        and importlib.util.find_spec("matplotlib") is None
    ):
        pytest.skip(f"docs/{page}: needs caesura[bench] (matplotlib) for --plot")
    port = str(free_port())
    namespace: dict[str, object] = {"__name__": "__docs__"}
    with contextlib.ExitStack() as stack:
        for b in page_blocks:
            code = b.code.replace(PORT, port) if b.env == "server" else b.code
            if b.env == "toml":
                _check_toml(b)
            elif (
                b.lang == "bash" and b.env == "server" and code.lstrip().startswith("caesura serve")
            ):
                stack.enter_context(_server(b, code, workdir, port))
            elif b.lang == "bash":
                _run_shell(b, code, workdir)
            else:
                exec(compile(code, b.where, "exec"), namespace)


def test_pipecat_quickstart_wires_the_stop_strategy_into_user_turn_strategies() -> None:
    """The page shows (and the Pipecat suite runs) CaesuraTurnStopStrategy as a stop strategy
    of Pipecat's UserTurnStrategies, in the user aggregator's parameters."""
    code = "\n".join(b.code for b in blocks("quickstart/pipecat.md") if b.env == "pipecat")
    m = re.search(r"user_turn_strategies=UserTurnStrategies\((.*?)\n    \)", code, re.S)
    assert m, "no LLMUserAggregatorParams(user_turn_strategies=UserTurnStrategies(...))"
    assert re.search(r"stop=\[CaesuraTurnStopStrategy\(", m.group(1)), m.group(1)
    assert "LLMContextAggregatorPair(" in code
