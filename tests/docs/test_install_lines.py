"""Every install line works from a clone (nothing is on PyPI yet).

README.md, the plugin READMEs, the docs' home page and the quickstarts give each install in
the form that works from a clone (``pip install . ./plugins/livekit``) beside the future PyPI
name; a plugin is never installed from the clone without the core from the same clone (its
``caesura>=0.1`` requirement cannot be met from PyPI). ``nox -s newcomer`` (tests/docs/
newcomer.py, run by CI) runs those lines verbatim in fresh virtualenvs; these tests check the
pages and the plan without installing anything.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from newcomer import EXAMPLES, IMPORTS, PAGES, example_units, install_units, our_distributions, plan

ROOT = Path(__file__).resolve().parents[2]
#: Pages that tell a newcomer how to install: the newcomer's pages and the docs' home page.
INSTALL_PAGES = [*PAGES, "docs/index.md"]


@pytest.mark.parametrize("page", INSTALL_PAGES)
def test_pypi_names_come_with_the_form_that_works_from_a_clone(page: str) -> None:
    units = install_units([page])
    assert units, f"{page} gives no install line"
    assert any(u.clone_lines for u in units), f"{page}: no install line works from a clone"
    for unit in units:
        from_pypi = {d for ln in unit.lines for d in ln.named}
        from_clone = {d for ln in unit.lines if ln.runnable and ln.from_clone for d in ln.local}
        missing = from_pypi - from_clone
        assert not missing, (
            f"{unit.where}: {sorted(missing)} named from PyPI (not published yet) without the "
            f"install from a clone beside it (e.g. `pip install . ./plugins/livekit`)"
        )


def _all_lines() -> list[tuple[str, str, set[str]]]:
    out = []
    for unit in install_units(INSTALL_PAGES):
        out += [(unit.where, ln.text, ln.projects()) for ln in unit.lines if ln.from_clone]
    for path in EXAMPLES:
        unit, _ = example_units(path)
        out += [(unit.where, ln.text, ln.projects()) for ln in unit.lines if ln.from_clone]
    return out


def test_a_plugin_from_the_clone_comes_with_the_core_from_the_clone() -> None:
    lines = _all_lines()
    plugins = set(our_distributions()) - {"caesura"}
    assert {p for _, _, projects in lines for p in projects} >= plugins
    for where, text, projects in lines:
        if projects & plugins:
            assert "caesura" in projects, (
                f"{where}: `{text}` installs a plugin without the core from the clone; pip then "
                "looks for caesura on PyPI and fails"
            )


def test_every_example_says_how_to_install_it_from_a_clone() -> None:
    for path in EXAMPLES:
        unit, commands = example_units(path)
        assert unit.clone_lines, f"{path}: the docstring gives no `pip install` from a clone"
        assert [c for c in commands if c.needs is None], f"{path}: no command to run offline"


def test_the_newcomer_plan_installs_and_imports_every_package() -> None:
    steps = plan()
    imported = {m for s in steps for m in s.imports}
    for dist in our_distributions():
        assert set(IMPORTS[dist]) <= imported, f"nothing the newcomer installs imports {dist}"
    for s in steps:
        assert "caesura" in s.imports, f"{s.name}: caesura not checked"
    commands = {c.where.split(":")[0] for s in steps for c in s.commands}
    assert commands == set(EXAMPLES)


def test_ci_runs_the_newcomer_session() -> None:
    noxfile = (ROOT / "noxfile.py").read_text(encoding="utf-8")
    assert re.search(r"^def newcomer\(", noxfile, re.M), "noxfile.py has no newcomer session"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^python3 -m nox -s newcomer\b", ci, re.M), ".ci/run does not run it"
