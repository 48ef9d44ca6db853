"""The API reference renders the docstrings' Sphinx roles as links, not as raw text.

docs/griffe_sphinx_roles.py (a griffe extension that mkdocs.yml configures) rewrites roles
such as ``:class:`~caesura.vad.SileroVAD``` into autorefs references when mkdocstrings loads
the packages; ``nox -s docs`` builds the site and then fails if any built page still shows a
raw role. These tests run without mkdocs: every docstring of the documented packages, once
rewritten, holds no role left, and the build is configured to do both.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What mkdocs.yml's mkdocstrings ``paths`` document.
SOURCES = [ROOT / "src" / "caesura", ROOT / "plugins" / "livekit", ROOT / "plugins" / "pipecat"]
#: Any role-like text, whatever its kind: a kind the extension does not know stays raw.
ANY_ROLE = re.compile(r":(?:py:)?[a-z]+:`[^`]+`")


@pytest.fixture(scope="module")
def roles() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "griffe_sphinx_roles", ROOT / "docs" / "griffe_sphinx_roles.py"
    )
    assert spec is not None, "docs/griffe_sphinx_roles.py is missing"
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def _docstrings() -> list[tuple[str, str]]:
    out = []
    for base in SOURCES:
        for path in sorted(base.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(
                    node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
                ):
                    doc = ast.get_docstring(node, clean=False)
                    if doc:
                        line = getattr(node, "lineno", 1)
                        out.append((f"{path.relative_to(ROOT)}:{line}", doc))
    return out


def test_roles_become_autorefs(roles: ModuleType) -> None:
    text = (
        "See :class:`~caesura.vad.SileroVAD`, :meth:`TurnEngine.push_audio`, "
        ":func:`speech_timestamps()`, :py:attr:`x.y` and :class:`the model <caesura.eot.X>`."
    )
    out = roles.convert(
        text, lambda t: {"TurnEngine.push_audio": "a.b.TurnEngine.push_audio"}.get(t, t)
    )
    assert not ANY_ROLE.search(out), out
    assert '<autoref identifier="caesura.vad.SileroVAD" optional><code>SileroVAD</code>' in out
    assert 'identifier="a.b.TurnEngine.push_audio"' in out
    assert 'identifier="speech_timestamps" optional><code>speech_timestamps()</code>' in out
    assert 'identifier="x.y" optional><code>x.y</code>' in out
    assert 'identifier="caesura.eot.X" optional><code>the model</code>' in out


def test_no_docstring_keeps_a_raw_role(roles: ModuleType) -> None:
    docs = _docstrings()
    with_roles = [(where, d) for where, d in docs if ANY_ROLE.search(d)]
    assert with_roles, "no roles in the docstrings: this test checks nothing"
    left = [
        f"{where}: {m.group(0)}"
        for where, d in with_roles
        for m in ANY_ROLE.finditer(roles.convert(d))
    ]
    assert not left, "roles the extension does not rewrite:\n" + "\n".join(left)


def test_the_site_check_finds_raw_roles(roles: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "ok.html").write_text('<p><a href="#x"><code>SileroVAD</code></a></p>')
    assert roles.raw_roles(tmp_path) == []
    (tmp_path / "bad.html").write_text("<p>see :class:<code>SileroVAD</code></p>")
    assert len(roles.raw_roles(tmp_path)) == 1
    assert roles.main(["--check-site", str(tmp_path)]) == 1


def test_the_docs_build_uses_the_extension_and_checks_the_site() -> None:
    mkdocs = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert "docs/griffe_sphinx_roles.py:SphinxRoles" in mkdocs
    noxfile = (ROOT / "noxfile.py").read_text(encoding="utf-8")
    docs_session = noxfile[noxfile.index("def docs(") :].split("\n@nox.session", 1)[0]
    assert '"docs/griffe_sphinx_roles.py", "--check-site", "site"' in docs_session
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^python3 -m nox -s docs\b", ci, re.M), ".ci/run does not build the docs"
