"""``caesura eot``: score transcripts with the end-of-turn model from the command line.

::

    caesura eot "i want to book a table for" "i want to book a table for four"
    caesura eot --agent "how many people?" "four"
    caesura eot --jsonl dialogues.jsonl --format jsonl   # or --jsonl - for stdin

Each positional TEXT is one user turn, scored on its own (after ``--agent``'s words when
given). ``--jsonl`` reads one dialogue per line: a JSON array of ``{"role", "content"}``
turns, or an object with ``"turns"`` (that array) or ``"text"`` (one user turn) and,
optionally, ``"id"`` and ``"language"``. A line or text that cannot be scored is reported on
stderr with its line number and the others are still scored; the exit status is then 1
(2 on bad usage, an unknown language or a model that cannot be loaded).

With ``--format jsonl`` every input gives exactly one output line, in input order, so outputs
join to inputs: ``{"line", "id", "probability", "unlikely", "threshold"}`` for a scored
``--jsonl`` line (``line`` is its 1-based number; ``id`` when the input has one), and
``{"line", "id", "error"}`` for a line that could not be scored (a blank line included).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from caesura.eot.model import EndOfTurnModel, TurnLike, _turn_fields
from caesura.errors import CaesuraError, InvalidOptionError

__all__ = ["configure", "run"]


@dataclass(frozen=True)
class _Item:
    where: str  # "TEXT 2" or "line 7": how an error names it
    id: Any
    turns: Sequence[TurnLike] | None
    language: str | None
    error: str | None = None
    line: int | None = None  # the --jsonl line number


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``caesura eot``."""
    parser.add_argument(
        "texts", nargs="*", metavar="TEXT", help="a user turn to score (each one on its own)"
    )
    parser.add_argument(
        "--agent", metavar="TEXT", help="the agent's turn before each positional TEXT"
    )
    parser.add_argument(
        "--jsonl",
        metavar="PATH",
        help="score the dialogues of a JSON-lines file ('-': standard input)",
    )
    parser.add_argument(
        "--language",
        default=None,
        help="language of the transcripts (default: English); a language the model was not "
        "trained for is an error, not a score",
    )
    parser.add_argument(
        "--pending",
        action="store_true",
        help="the recogniser has not delivered the last word yet: score P(the turn ends after "
        "one more word)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="below this probability the turn is 'unlikely' to be over and a voice agent waits "
        "its longer delay (default: the model's unlikely_threshold for the language, chosen on "
        "every corpus's val set: see the model card)",
    )
    parser.add_argument(
        "--model", metavar="DIR", default=None, help="an exported model folder (default: bundled)"
    )
    parser.add_argument(
        "-f",
        "--format",
        choices=("text", "jsonl"),
        default="text",
        help="text: probability, 'unlikely' or 'possible', the user's words; jsonl: one JSON "
        "object per input, in order (line, id, probability, unlikely, threshold; or line, id, "
        "error)",
    )


def _positional(texts: Sequence[str], agent: str | None, language: str | None) -> Iterator[_Item]:
    for n, text in enumerate(texts, 1):
        turns: list[dict[str, str]] = []
        if agent is not None:
            turns.append({"role": "assistant", "content": agent})
        turns.append({"role": "user", "content": text})
        yield _Item(f"TEXT {n}", None, turns, language)


def _parse_line(obj: object, language: str | None) -> tuple[Any, Sequence[TurnLike], str | None]:
    if isinstance(obj, list):
        return None, obj, language
    if not isinstance(obj, dict):
        raise InvalidOptionError(
            f"expected a JSON array of turns or an object, got {type(obj).__name__}"
        )
    lang = obj.get("language", language)
    if lang is not None and not isinstance(lang, str):
        raise InvalidOptionError(f"'language' must be a string, got {lang!r}")
    if "turns" in obj:
        turns = obj["turns"]
        if not isinstance(turns, list):
            raise InvalidOptionError(f"'turns' must be an array, got {type(turns).__name__}")
        return obj.get("id"), turns, lang
    if "text" in obj:
        return obj.get("id"), [{"role": "user", "content": obj["text"]}], lang
    raise InvalidOptionError("an object needs 'turns' (an array of turns) or 'text'")


def _lines(fh: BinaryIO, language: str | None) -> Iterator[_Item]:
    """One item per line of ``fh``, blank and malformed lines included (as errors)."""
    for n, raw in enumerate(fh, 1):
        where = f"line {n}"
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            yield _Item(where, None, None, None, f"not UTF-8 text: {exc}", n)
            continue
        if not line:
            yield _Item(where, None, None, None, "blank line: nothing to score", n)
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield _Item(where, None, None, None, f"not valid JSON: {exc}", n)
            continue
        try:
            ident, turns, lang = _parse_line(obj, language)
        except InvalidOptionError as exc:
            ident = obj.get("id") if isinstance(obj, dict) else None
            yield _Item(where, ident, None, None, str(exc), n)
            continue
        yield _Item(where, ident, turns, lang, None, n)


def _check_threshold(value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise InvalidOptionError(f"--threshold must be in [0, 1], got {value}")


def _record(item: _Item, **fields: Any) -> str:
    record: dict[str, Any] = {}
    if item.line is not None:
        record["line"] = item.line
    if item.id is not None:
        record["id"] = item.id
    record.update(fields)
    return json.dumps(record, ensure_ascii=False) + "\n"


def _score(
    model: EndOfTurnModel, items: Iterator[_Item], args: argparse.Namespace, out: TextIO
) -> tuple[int, int]:
    """Score and print each item; returns (items seen, items failed)."""
    seen = failed = 0
    for item in items:
        seen += 1
        try:
            if item.turns is None:
                raise InvalidOptionError(item.error or "nothing to score")
            threshold = args.threshold
            if threshold is None:
                threshold = model.unlikely_threshold(item.language)
            p = model.predict(item.turns, language=item.language, words_pending=args.pending)
        except CaesuraError as exc:
            failed += 1
            print(f"caesura eot: {item.where}: {exc}", file=sys.stderr)
            if args.format == "jsonl":  # one output line per input: joins to the inputs
                out.write(_record(item, error=str(exc)))
                out.flush()
            continue
        unlikely = threshold is not None and p < threshold
        if args.format == "jsonl":
            out.write(
                _record(item, probability=round(p, 6), unlikely=unlikely, threshold=threshold)
            )
        else:
            verdict = "unlikely" if unlikely else "possible"
            # the dialogue was just scored, so its last turn is well formed
            words = _turn_fields(item.turns[-1], len(item.turns) - 1)[1]
            out.write(f"{p:.3f}  {verdict:<8}  {words}\n")
        out.flush()
    return seen, failed


def run(args: argparse.Namespace) -> int:
    """``caesura eot``: returns 0, or 1 when any input could not be scored."""
    _check_threshold(args.threshold)
    if not args.texts and args.jsonl is None:
        raise InvalidOptionError("nothing to score: give TEXT arguments or --jsonl PATH")
    if args.jsonl is not None and args.texts:
        raise InvalidOptionError("give TEXT arguments or --jsonl, not both")
    if args.agent is not None and args.jsonl is not None:
        raise InvalidOptionError(
            "--agent applies to TEXT arguments; put the agent's turns in each JSON line instead"
        )
    model = EndOfTurnModel.load(args.model)
    model._check_language(args.language)  # one error (exit 2), not one per input
    if args.jsonl is None:
        seen, failed = _score(
            model, _positional(args.texts, args.agent, args.language), args, sys.stdout
        )
    elif args.jsonl == "-":
        seen, failed = _score(model, _lines(sys.stdin.buffer, args.language), args, sys.stdout)
    else:
        path = Path(args.jsonl)
        try:
            fh = path.open("rb")
        except OSError as exc:
            raise InvalidOptionError(f"cannot read {path}: {exc.strerror or exc}") from exc
        with fh:
            seen, failed = _score(model, _lines(fh, args.language), args, sys.stdout)
    if failed:
        print(f"caesura eot: {failed} of {seen} input(s) could not be scored", file=sys.stderr)
        return 1
    return 0
