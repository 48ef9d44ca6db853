"""Sphinx cross-reference roles in docstrings, rendered as mkdocs-autorefs links.

The docstrings write references the Sphinx way (``:class:`~caesura.vad.SileroVAD```,
``:meth:`TurnEngine.push_audio```); mkdocstrings reads Markdown, where they would show up raw.
``SphinxRoles`` (a griffe extension, configured in mkdocs.yml) rewrites each role, once a
package is loaded, into an optional autorefs reference to the object it names, resolved in
the scope of the documented object: a link where the API reference renders that object, its
name in code font where it does not (an external class, a private helper).

``python docs/griffe_sphinx_roles.py --check-site site`` (run by ``nox -s docs`` after the
build) fails when a built page still shows a raw role.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "ROLE", "convert", "main", "raw_roles"]

#: ``:class:`x```, ``:py:meth:`~a.B.c```, ``:func:`title <target>```.
ROLE = re.compile(
    r":(?:py:)?(?P<kind>class|func|meth|attr|mod|data|exc|obj|const):"
    r"`(?P<text>[^`]+)`"
)
#: Top-level packages: a dotted target starting with one is already a full path (inside
#: ``livekit.plugins.caesura``, ``caesura.eot.EndOfTurnModel`` is the core's, not the plugin's).
PACKAGES = frozenset({"caesura", "livekit", "pipecat", "pipecat_caesura"})
#: A role left raw in built HTML (Markdown turns its backticks into ``<code>``).
RAW_IN_HTML = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|const):(?:<code>|`)")


def _parse(text: str) -> tuple[str, str]:
    """A role's text -> (title shown, target)."""
    m = re.fullmatch(r"(?P<title>.*?)\s*<(?P<target>[^<>]+)>", text.strip())
    if m and m.group("title"):
        return m.group("title"), m.group("target").lstrip("~")
    target = text.strip()
    if target.startswith("~"):
        target = target[1:]
        title = target.rsplit(".", 1)[-1]
    else:
        title = target
    return title, target


def convert(text: str, resolve: Callable[[str], str] | None = None) -> str:
    """Rewrite every Sphinx role of ``text`` as an optional autorefs reference.

    ``resolve`` maps a target as written (``TurnEngine.push_audio``) to a full path; without
    it, targets are kept as written.
    """

    def repl(m: re.Match[str]) -> str:
        title, target = _parse(m.group("text"))
        path = target.removesuffix("()")
        full = resolve(path) if resolve is not None else path
        return (
            f'<autoref identifier="{html.escape(full)}" optional>'
            f"<code>{html.escape(title)}</code></autoref>"
        )

    return ROLE.sub(repl, text)


def raw_roles(site: Path) -> list[str]:
    """``file: excerpt`` for every raw role left in a built site's HTML."""
    found = []
    for page in sorted(site.rglob("*.html")):
        text = page.read_text(encoding="utf-8", errors="replace")
        for m in RAW_IN_HTML.finditer(text):
            excerpt = re.sub(r"\s+", " ", text[m.start() : m.end() + 60])
            found.append(f"{page.relative_to(site)}: {excerpt}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check-site", type=Path, required=True, help="a built mkdocs site")
    args = parser.parse_args(argv)
    found = raw_roles(args.check_site)
    for line in found:
        print(line, file=sys.stderr)
    if found:
        print(f"{len(found)} raw Sphinx roles in {args.check_site}", file=sys.stderr)
        return 1
    print(f"no raw Sphinx roles in {args.check_site}")
    return 0


try:
    import griffe
except ModuleNotFoundError:  # the tests use convert() where griffe is not installed
    pass
else:

    class SphinxRoles(griffe.Extension):
        """Rewrite the roles of every docstring of a loaded package (see the module doc)."""

        def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
            seen: set[int] = set()
            stack: list[griffe.Object] = [pkg]
            while stack:
                obj = stack.pop()
                if id(obj) in seen:
                    continue
                seen.add(id(obj))
                if obj.docstring is not None and ROLE.search(obj.docstring.value):
                    obj.docstring.value = convert(obj.docstring.value, _resolver(obj))
                stack += [m for m in obj.members.values() if isinstance(m, griffe.Object)]

    def _resolver(obj: griffe.Object) -> Callable[[str], str]:
        def resolve(target: str) -> str:
            head, _, rest = target.partition(".")
            if rest and head in PACKAGES:
                return target
            try:
                full = obj.resolve(head)
            except griffe.NameResolutionError:
                return target  # written in full (or external): autorefs looks it up as is
            return f"{full}.{rest}" if rest else full

        return resolve


if __name__ == "__main__":
    sys.exit(main())
