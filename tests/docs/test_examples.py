"""Every example runs as its docstring says.

The commands an example's docstring documents (tests/docs/newcomer.py reads them; ``nox -s
newcomer`` runs them in fresh virtualenvs made from the docstring's own install line) run here
in this suite's environment, from the repository root, and must exit 0 without a traceback:
the core suite runs the core and server examples, the LiveKit and Pipecat suites theirs.
Examples that install only caesura and its extras must not import anything else (``httpx``,
installed here for the tests, is hidden from them).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from newcomer import EXAMPLES, IMPORTS, example_units, free_port, run_commands, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
WS_CLIENT = "examples/ws_client.py"


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)  # caesura.server.app needs the server extra's packages
    except ImportError:
        return False
    return True


def _env(tmp_path: Path, *, hide: tuple[str, ...] = ()) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    if hide:
        stubs = tmp_path / "hidden-modules"
        stubs.mkdir(exist_ok=True)
        for mod in hide:
            (stubs / f"{mod}.py").write_text(
                f"raise ImportError('{mod} is not installed by this example\\'s install line')\n"
            )
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(stubs), env.get("PYTHONPATH")]))
    return env


@pytest.mark.parametrize("path", EXAMPLES)
def test_documented_commands_run(path: str, tmp_path: Path) -> None:
    unit, commands = example_units(path)
    dists = {d for ln in unit.lines if ln.runnable and ln.from_clone for d in ln.local}
    modules = list(
        dict.fromkeys(m for d in sorted(dists) for m in (*IMPORTS[d.split("[")[0]], *IMPORTS[d]))
    )
    missing = [m for m in modules if not _importable(m)]
    if missing:
        pytest.skip(f"{path} needs {', '.join(missing)} (`{unit.clone_lines[0]}`)")
    core_only = all(d.startswith("caesura") for d in dists)
    env = _env(tmp_path, hide=("httpx",) if core_only else ())
    runnable = [c for c in commands if c.needs is None and not c.background]
    assert runnable, f"{path}: no documented command runs offline"
    failures = run_commands(commands, env)
    assert not failures, "\n\n".join(failures)


def _serve(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["caesura", "serve", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port = int(env["VAD_LISTEN"].rsplit(":", 1)[1])
    wait_healthy(port, proc, "caesura serve")
    return proc


def _client(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, WS_CLIENT, "tests/fixtures/speech_16k.wav", "--fast", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    for mod in ("starlette", "uvicorn", "websockets", "multipart"):
        if not _importable(mod):
            pytest.skip("needs caesura[server]")
    env = _env(tmp_path, hide=("httpx",))
    env["VAD_LISTEN"] = f"127.0.0.1:{free_port()}"
    env.pop("CAESURA_TOKEN", None)
    return env


def test_ws_client_wrong_token_exits_with_the_message(server_env: dict[str, str]) -> None:
    proc = _serve(server_env, "--token", "right-token")
    try:
        for extra in ([], ["--http"]):
            out = _client(server_env, "--token", "wrong-token", *extra)
            assert out.returncode == 1, out
            assert "Traceback" not in out.stderr, out.stderr
            assert "unauthorized" in out.stderr, out.stderr
        ok = _client({**server_env, "CAESURA_TOKEN": "right-token"}, "--http")
        assert ok.returncode == 0, ok.stderr
        assert "speech_start" in ok.stdout
        assert "POST /v1/audio/vad -> 200" in ok.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_ws_client_without_a_server_says_so(server_env: dict[str, str]) -> None:
    out = _client(server_env)  # nothing listens on the free port
    assert out.returncode == 1
    assert "Traceback" not in out.stderr, out.stderr
    assert "is `caesura serve` running?" in out.stderr
