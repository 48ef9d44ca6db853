"""Developer sessions: ``nox -s tests`` runs the whole suite (core, server, train, plugins)."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
# ../shared/data holds the training / benchmark corpora; sessions that use it pass --data.
DATA = Path(os.environ.get("CAESURA_DATA", ROOT.parent / "shared" / "data"))
TORCH = "torch==2.13.0"  # a local CPU wheel; an unpinned torch pulls GBs of CUDA packages
LIVEKIT = "livekit-agents==1.8.9"
PIPECAT = "pipecat-ai==1.14.0"

SUITES = {
    # suite: (pip install arguments, pytest paths)
    # tests/docs runs the quickstarts' blocks; the bench extra gives `caesura tune --plot`
    "core": ([".[test,files,server,bench]"], ["tests/core", "tests/server", "tests/docs"]),
    # torch + silero-vad are here anyway, so this suite also runs the parity tests
    "train": (
        [TORCH, ".[test,files,train,server]", "silero-vad==6.2.3"],
        ["tests/train", "tests/parity"],
    ),
    "livekit": (
        [".[test,files]", "-e", "plugins/livekit", LIVEKIT, "livekit-plugins-silero==1.8.9"],
        ["tests/livekit", "tests/docs/test_quickstarts.py", "tests/docs/test_examples.py"],
    ),
    "pipecat": (
        [".[test,files]", "-e", "plugins/pipecat", f"{PIPECAT}"],
        ["tests/pipecat", "tests/docs/test_quickstarts.py", "tests/docs/test_examples.py"],
    ),
    # caesura.ray on a local Ray cluster the tests start with num_cpus=2 (about 40 s)
    "ray": ([".[test,files,ray]"], ["tests/ray"]),
}


@nox.session
@nox.parametrize("suite", list(SUITES))
def tests(session: nox.Session, suite: str) -> None:
    """The whole test suite, one virtualenv per suite (core tests run with no framework)."""
    install, paths = SUITES[suite]
    paths = [p for p in paths if (ROOT / p).exists()]
    if not paths:
        session.skip(f"no tests for suite {suite!r} yet")
    session.install(*install)
    session.run("pytest", *paths, *session.posargs, env={"CAESURA_DATA": str(DATA)})


@nox.session
def newcomer(session: nox.Session) -> None:
    """What a newcomer does from this clone, verbatim: every install line of README.md, the
    plugin READMEs, the quickstarts and the examples, each in a fresh virtualenv, then each
    example's documented command (tests/docs/newcomer.py; ``-- --list`` shows the plan)."""
    session.run("python", "tests/docs/newcomer.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("mypy>=1.11", ".[files,server,bench]", "types-psutil")
    session.run("mypy")


@nox.session
def parity(session: nox.Session) -> None:
    """Our probabilities and timestamps against silero-vad's own code (torch CPU wheel)."""
    session.install(TORCH, "silero-vad==6.2.3", ".[test,files,server]")
    session.run("pytest", "tests/parity", *session.posargs, env={"CAESURA_DATA": str(DATA)})


@nox.session
def bench(session: nox.Session) -> None:
    """Speed and quality benchmarks, each printing ratios against peers measured in the same run."""
    session.install(
        TORCH,
        "silero-vad==6.2.3",
        ".[bench,files]",
        "-e",
        "plugins/livekit",
        "-e",
        "plugins/pipecat",
        LIVEKIT,
        "livekit-plugins-silero==1.8.9",
        f"{PIPECAT}",
    )
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        if script.name.startswith("_"):
            continue
        session.run("python", str(script), "--data", str(DATA), *session.posargs)


@nox.session
def train(session: nox.Session) -> None:
    """Train the shipped end-of-turn model: ``nox -s train -- --data ../shared/data``."""
    session.install(TORCH, ".[train,files]")
    args = session.posargs or ["--data", str(DATA)]
    session.run("python", "-m", "caesura.train", *args)


@nox.session
def docs(session: nox.Session) -> None:
    session.install("mkdocs-material>=9.5", "mkdocstrings[python]>=0.25", ".[files]")
    # the env var silences mkdocs-material's end-of-life banner (not a build warning)
    session.run("mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})
    # the API reference shows links, not the docstrings' raw Sphinx roles
    session.run("python", "docs/griffe_sphinx_roles.py", "--check-site", "site")


@nox.session
def package(session: nox.Session) -> None:
    session.install("build", "twine")
    session.run("python", "-m", "build", "--outdir", "dist", ".")
    for plugin in ("plugins/livekit", "plugins/pipecat"):
        if (ROOT / plugin / "pyproject.toml").exists():
            session.run("python", "-m", "build", "--outdir", "dist", plugin)
    session.run("twine", "check", "dist/*")
