"""docs/concepts/semantic-endpointing.md quotes the bundled model's own scores.

The page says what the end-of-turn model gives for a few sentences, in prose (``"TEXT" scores
0.75``) and as ``caesura eot`` output (``0.004  unlikely  TEXT``). Each figure is recomputed
with :class:`caesura.eot.EndOfTurnModel` and must agree to the precision it is written with
(one unit in its last decimal, for rounding); the ``unlikely`` / ``possible`` verdicts must
match the model's ``unlikely_threshold``. A retrained model that moves a figure fails here
until the page is updated.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from caesura.eot import EndOfTurnModel

PAGE = Path(__file__).resolve().parents[2] / "docs" / "concepts" / "semantic-endpointing.md"
_PROSE = re.compile(r'"([^"]+)"\s+scores\s+(\S+)')
_CLI = re.compile(r"^(\d\.\d+)\s+(unlikely|possible)\s+(.+?)\s*$", re.M)


def _claims() -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    text = PAGE.read_text(encoding="utf-8")
    flat = re.sub(r"\s*\n\s*", " ", text)  # prose claims may wrap
    prose = [(m.group(1), m.group(2).rstrip(".,;)")) for m in _PROSE.finditer(flat)]
    cli = [(m.group(3), m.group(1), m.group(2)) for m in _CLI.finditer(text)]
    return prose, cli


@pytest.fixture(scope="module")
def model() -> EndOfTurnModel:
    return EndOfTurnModel.load()


def _agrees(quoted: str, p: float) -> bool:
    decimals = len(quoted.split(".", 1)[1])
    return abs(float(quoted) - p) <= 10.0**-decimals + 1e-9


def test_the_page_quotes_scores() -> None:
    prose, cli = _claims()
    assert len(prose) >= 2, "the page no longer quotes the model's scores in its prose"
    assert len(cli) >= 2, "the page no longer shows `caesura eot` output"
    for text, value in prose:
        assert re.fullmatch(r"\d\.\d+", value), f'"{text}" scores {value!r}: not a number'


def test_quoted_scores_are_the_bundled_models(model: EndOfTurnModel) -> None:
    prose, cli = _claims()
    threshold = model.unlikely_threshold("en")
    assert threshold is not None
    wrong = []
    for text, value in prose:
        p = model.predict([{"role": "user", "content": text}])
        if not _agrees(value, p):
            wrong.append(f'"{text}" scores {value} on the page, {p:.4f} by the model')
    for text, value, verdict in cli:
        p = model.predict([{"role": "user", "content": text}])
        if not _agrees(value, p):
            wrong.append(f"caesura eot {text!r}: {value} on the page, {p:.4f} by the model")
        if verdict != ("unlikely" if p < threshold else "possible"):
            wrong.append(f"caesura eot {text!r}: {verdict!r} on the page, threshold {threshold}")
    assert not wrong, "\n".join(wrong)
