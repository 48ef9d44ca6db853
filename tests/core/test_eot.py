"""The bundled end-of-turn model at run time (onnxruntime + tokenizers; no torch)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import caesura
from caesura.eot import EndOfTurnModel, Turn
from caesura.eot._text import EOT, SPECIAL_TOKENS, linearise
from caesura.errors import (
    CaesuraError,
    InvalidOptionError,
    ModelError,
    ModelIntegrityError,
    UnsupportedLanguageError,
    UnsupportedModelError,
)

ASSETS = Path(caesura.__file__).parent / "eot" / "assets"


@pytest.fixture(scope="module")
def model() -> EndOfTurnModel:
    return EndOfTurnModel.load()


def u(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def a(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def test_exported_from_package() -> None:
    assert caesura.EndOfTurnModel is EndOfTurnModel
    assert caesura.Turn is Turn


def test_bundled_assets_are_small() -> None:
    size = sum(p.stat().st_size for p in ASSETS.iterdir() if p.is_file())
    assert size < 15 * 1024 * 1024
    cfg = json.loads((ASSETS / "config.json").read_text())
    assert cfg["format"] == "caesura-eot"
    assert (ASSETS / "MODEL_CARD.md").is_file()


@pytest.mark.parametrize(
    ("complete", "incomplete"),
    [
        ("what time is it", "i want to book a table for"),
        ("can you book a table for two at seven", "can you book a table for two at"),
        ("I'd like a medium latte please.", "I'd like a medium latte and a"),
        ("yes that's correct", "yes and also um"),
    ],
)
def test_complete_scores_above_incomplete(
    model: EndOfTurnModel, complete: str, incomplete: str
) -> None:
    ctx = [a("How can I help you?")]
    assert model.predict([*ctx, u(complete)]) > model.predict([*ctx, u(incomplete)])


def test_probability_range_and_types(model: EndOfTurnModel) -> None:
    p = model.predict([u("hello there")])
    assert isinstance(p, float)
    assert 0.0 <= p <= 1.0


def test_turn_dataclass_and_mappings_agree(model: EndOfTurnModel) -> None:
    d1 = [a("What time works?"), u("tomorrow at five")]
    d2 = [Turn("assistant", "What time works?"), Turn("user", "tomorrow at five")]
    d3 = [
        {"role": "agent", "text": "What time works?"},
        {"role": "user", "text": "tomorrow at five"},
    ]
    assert model.predict(d1) == model.predict(d2) == model.predict(d3)


def test_system_turns_ignored_and_same_role_merged(model: EndOfTurnModel) -> None:
    base = model.predict([a("Hi."), u("i need a taxi")])
    assert (
        model.predict([{"role": "system", "content": "be nice"}, a("Hi."), u("i need a taxi")])
        == base
    )
    assert model.encode([a("Hi."), u("i need"), u("a taxi")]) == model.encode(
        [a("Hi."), u("i need a taxi")]
    )


def test_batch_matches_single(model: EndOfTurnModel) -> None:
    dialogues = [
        [u("what time is it")],
        [a("Where to?"), u("to the airport")],
        [a("Where to?"), u("to the")],
        [u("so i was thinking that maybe we could " * 5)],
    ]
    single = [model.predict(d) for d in dialogues]
    assert model.predict_many(dialogues) == single
    # padded batches: dynamic int8 quantisation scales activations per call, so only close
    batched = model.predict_many(dialogues, batch_size=4)
    assert batched == pytest.approx(single, abs=0.05)
    assert model.predict_many([]) == []


def test_long_text_is_truncated_to_the_context(model: EndOfTurnModel) -> None:
    huge = "and then we went to the store " * 20000
    ids = model.encode([u(huge)])
    assert model.max_tokens - model.window_hop < len(ids) <= model.max_tokens
    assert 0.0 <= model.predict([a("x" * 100000), u(huge)]) <= 1.0


def test_context_window_from_config_and_option(tmp_path: Path) -> None:
    """``read_tokens`` in config.json sets the default window; ``max_tokens`` overrides it up
    to the trained context less one position (for a pending word); without ``window_hop``
    the score reads exactly the last ``max_tokens`` tokens."""
    folder = _copy_with_config(tmp_path, read_tokens=40, window_hop=None)
    context = int(json.loads((folder / "config.json").read_text())["context"])
    long_turn = [u("and then we went to the store and bought some bread " * 30)]
    short = EndOfTurnModel.load(folder)
    assert short.max_tokens == 40
    assert short.window_hop == 1
    assert len(short.encode(long_turn)) == 40
    full = EndOfTurnModel.load(folder, max_tokens=10_000)
    assert full.max_tokens == context - 1
    same = EndOfTurnModel.load(folder, max_tokens=40)
    assert same.predict(long_turn) == short.predict(long_turn)
    assert full.predict(long_turn) != short.predict(long_turn)  # it really reads more


def _copy_with_config(tmp_path: Path, **changes: object) -> Path:
    import hashlib  # noqa: PLC0415

    folder = tmp_path / "eot"
    shutil.copytree(ASSETS, folder, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    cfg = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    sums = json.loads((folder / "sha256.json").read_text())
    sums["config.json"] = hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()
    (folder / "sha256.json").write_text(json.dumps(sums))
    return folder


def test_pending_words_score_the_turn_after_one_more_word(model: EndOfTurnModel) -> None:
    """``words_pending=True``: the recogniser has not delivered the last word yet."""
    assert model.supports_pending_words
    assert model.config["pending_candidates"] >= 1
    cut = [a("How many people?"), u("a table for")]
    done = [a("How many people?"), u("a table for two please")]
    # "a table for" is unfinished now, but one more word ("two") may well finish it
    assert model.predict(cut, words_pending=True) > 5 * model.predict(cut)
    # a finished request followed by more words is less likely to be over than it is now
    assert model.predict(done, words_pending=True) < model.predict(done)
    dialogues = [cut, done, [u("so i was thinking")]]
    single = [model.predict(d, words_pending=True) for d in dialogues]
    assert model.predict_many(dialogues, words_pending=True) == single
    assert all(0.0 <= p <= 1.0 for p in single)
    # one position is left for the word to come, even with the whole trained context
    wide = EndOfTurnModel.load(max_tokens=10_000)
    long_turn = [u("and then we went to the store " * 100)]
    assert wide.max_tokens == wide.config["context"] - 1
    assert len(wide.encode(long_turn)) <= wide.max_tokens
    assert 0.0 <= wide.predict(long_turn, words_pending=True) <= 1.0
    with pytest.raises(InvalidOptionError, match="words_pending"):
        model.predict(cut, words_pending="yes")  # type: ignore[arg-type]


def test_pending_words_need_a_model_exported_with_them(tmp_path: Path) -> None:
    old = EndOfTurnModel.load(_copy_with_config(tmp_path, pending_candidates=None))
    assert not old.supports_pending_words
    assert 0.0 <= old.predict([u("a table for")]) <= 1.0
    with pytest.raises(UnsupportedModelError, match="next-word"):
        old.predict([u("a table for")], words_pending=True)


def test_tokenizer_round_trip(model: EndOfTurnModel) -> None:
    tok = model._tokenizer
    text = linearise(
        [("agent", "How can I help?"), ("user", "i'd like 2 coffees, please")], close_last=False
    )
    assert tok.decode(tok.encode(text).ids, skip_special_tokens=False) == text
    for special in SPECIAL_TOKENS:
        assert tok.token_to_id(special) is not None
    assert tok.token_to_id(EOT) == model.config["eot_id"]


def test_user_text_cannot_inject_special_tokens(model: EndOfTurnModel) -> None:
    assert model.encode([u("hello <|eot|> there")]) == model.encode([u("hello there")])


@pytest.mark.parametrize(
    "turns",
    [
        [],
        [u("")],
        [u("   ")],
        [a("what can i do for you")],
        [u("hi"), a("hello")],
        [{"role": "user", "content": 42}],
        [{"role": "user"}],
        [{"role": "narrator", "content": "hi"}],
        ["hello"],
        "hello",
        None,
    ],
)
def test_bad_input_gets_a_clear_error(model: EndOfTurnModel, turns: object) -> None:
    with pytest.raises(InvalidOptionError):
        model.predict(turns)  # type: ignore[arg-type]


def test_languages(model: EndOfTurnModel) -> None:
    for lang in ("en", "en-US", "EN", "english", "en_GB", None):
        assert model.supports_language(lang)
    for lang in ("fr", "zh", "multi", "de-DE"):
        assert not model.supports_language(lang)
    thr = model.unlikely_threshold("en")
    assert thr is not None
    assert 0.0 < thr < 1.0
    assert model.unlikely_threshold("en-US") == thr == model.unlikely_threshold(None)
    assert model.unlikely_threshold("fr") is None
    with pytest.raises(UnsupportedLanguageError):
        model.predict([u("bonjour")], language="fr")
    with pytest.raises(UnsupportedLanguageError):
        model.predict_many([[u("bonjour")]], language="multi")
    with pytest.raises(InvalidOptionError):
        model.supports_language("")
    assert model.predict([u("hi")], language="en-US") == model.predict([u("hi")])


def test_options_validated() -> None:
    with pytest.raises(InvalidOptionError):
        EndOfTurnModel.load(num_threads=0)
    with pytest.raises(InvalidOptionError):
        EndOfTurnModel.load(max_tokens=2)
    m = EndOfTurnModel.load(max_tokens=32, num_threads=2)
    assert m.max_tokens == 32
    assert m.window_hop == 16  # at most half the window
    assert 16 < len(m.encode([u("word " * 100)])) <= 32


def test_load_is_cached_per_process_and_a_rewritten_folder_reloads(tmp_path: Path) -> None:
    assert EndOfTurnModel.load() is EndOfTurnModel.load()
    assert EndOfTurnModel.load(cache=False) is not EndOfTurnModel.load()
    assert EndOfTurnModel.load(num_threads=2) is not EndOfTurnModel.load()
    folder = tmp_path / "eot"
    shutil.copytree(ASSETS, folder, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    first = EndOfTurnModel.load(folder)
    assert EndOfTurnModel.load(folder) is first
    # a re-export in place is loaded (and verified) again
    (folder / "config.json").write_bytes((folder / "config.json").read_bytes())
    os.utime(folder / "config.json", ns=(1, 1))
    assert EndOfTurnModel.load(folder) is not first


def test_corrupt_copy_is_detected(tmp_path: Path) -> None:
    folder = tmp_path / "eot"
    shutil.copytree(ASSETS, folder, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    assert EndOfTurnModel.load(folder).predict([u("hello")]) >= 0.0
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError):
        EndOfTurnModel.load(folder)


def test_missing_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        EndOfTurnModel.load(tmp_path / "nope")
    with pytest.raises(ModelError):
        EndOfTurnModel.load(tmp_path)
    assert issubclass(ModelIntegrityError, CaesuraError)


def _in_threads(n: int, work: Callable[[], list[float]]) -> list[list[float]]:
    """``work()`` in ``n`` threads at once; their results (any exception is re-raised)."""
    results: list[list[float]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(work())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_thread_safe(model: EndOfTurnModel) -> None:
    dialogues = [[a("Where to?"), u(f"to gate {i} please")] for i in range(8)]
    expected = [model.predict(d) for d in dialogues]
    results = _in_threads(6, lambda: [model.predict(d) for d in dialogues for _ in range(3)][::3])
    for got in results:
        assert got == expected


AGENT_REPLY = (
    "Sure, I can help you with that. We have tables at six thirty, seven fifteen and eight "
    "o'clock tomorrow evening. Which of those would suit you, and how many people will there be?"
)
USER_SAYS = (
    "uh seven fifteen would be great and there will be four of us um two adults and two kids "
    "and could we have a table by the window if that is possible because my daughter loves "
    "watching the boats go by in the harbour and oh one more thing do you have a kids menu"
)
USER_WORDS = USER_SAYS.split(" ")


def test_stream_reuses_the_growing_dialogue(model: EndOfTurnModel) -> None:
    """A stream scores a dialogue that grows word by word like ``predict`` does, computing
    only the new tokens while the window keeps its start, and the whole window again when
    the window's start moves on its grid."""
    stream = model.stream()
    assert stream.computed_tokens == stream.cached_tokens == 0
    saw_reuse = saw_move = False
    for n in range(1, len(USER_WORDS) + 1):
        chat = [a(AGENT_REPLY), u(" ".join(USER_WORDS[:n]))]
        pending = n % 3 == 0
        before = stream.cached_tokens
        got = stream.predict(chat, words_pending=pending)
        want = model.predict(chat, words_pending=pending)
        ids = model.encode(chat)
        assert got == pytest.approx(want, abs=0.05), n  # int8 activation rounding only
        assert stream.cached_tokens == len(ids)
        if stream.computed_tokens < len(ids):
            saw_reuse = True
            assert stream.computed_tokens <= 4  # one word is a token or a few
        else:
            saw_move = saw_move or before > 0
    assert saw_reuse
    assert saw_move
    assert model.max_tokens - model.window_hop < stream.cached_tokens <= model.max_tokens
    # the same dialogue again: one token re-runs (its output is the score)
    again = stream.predict(chat)
    assert stream.computed_tokens == 1
    assert again == pytest.approx(model.predict(chat), abs=0.05)
    # another dialogue shares nothing: computed in full, and equal to predict's own run
    other = [u("what time is it")]
    assert stream.predict(other) == pytest.approx(model.predict(other), abs=1e-6)
    assert stream.computed_tokens == len(model.encode(other))
    stream.reset()
    assert stream.cached_tokens == 0


def test_stream_tokenises_turn_by_turn_like_the_whole_dialogue(model: EndOfTurnModel) -> None:
    """A stream tokenises only the turns it has not seen; the ids equal ``encode``'s (no
    token spans two turns), for text with punctuation, digits, case, unicode and spaces."""
    rng = np.random.default_rng(0)
    vocab = [
        "okay",
        "I'd",
        "like",
        "2",
        "coffees,",
        "please.",
        "Wait—",
        "café",
        "naïve",
        "$12.50",
        "to-morrow",
        "  ",
        "uh",
        "UM",
        "?",
        "... ",
        "'s",
        "B-52",
        "日本",
        "emoji🙂",
        "the",
    ]
    memo: dict[tuple[str, str, bool], list[int]] = {}
    history: list[dict[str, str]] = []
    for step in range(60):
        text = " ".join(rng.choice(vocab, size=int(rng.integers(1, 25))))
        if step % 7 == 6:
            history.append(a(text))
            continue
        chat = [*history, u(text)]
        assert model._encode_memo(chat, memo) == model.encode(chat), chat
        if step % 5 == 4:
            history.append(u(text))
    assert len(memo) <= 9  # only the last dialogue's turns are kept


def test_stream_rejects_bad_input_and_keeps_its_cache(model: EndOfTurnModel) -> None:
    stream = model.stream()
    stream.predict([a("Where to?"), u("to the airport")])
    cached = stream.cached_tokens
    with pytest.raises(InvalidOptionError):
        stream.predict([u("")])
    with pytest.raises(UnsupportedLanguageError):
        stream.predict([u("bonjour")], language="fr")
    with pytest.raises(InvalidOptionError, match="words_pending"):
        stream.predict([u("hi")], words_pending=1)  # type: ignore[arg-type]
    assert stream.cached_tokens == cached
    stream.predict([a("Where to?"), u("to the airport please")])
    assert stream.computed_tokens < stream.cached_tokens
    assert stream.supports_language("en-US")
    assert not stream.supports_language("fr")
    assert stream.unlikely_threshold("en") == model.unlikely_threshold("en")
    assert stream.supports_pending_words
    assert stream.model is model


def test_stream_pool_finds_each_conversation_again(model: EndOfTurnModel) -> None:
    """Calls that do not say which conversation they belong to, interleaved: each runs on the
    stream that holds its conversation's start, so only its new words are computed."""
    pool = model.stream_pool(size=3)
    talks = [
        [a("Where to?"), u("to the airport please and")],
        [a("How many people?"), u("there will be four of us and maybe")],
        [a("Which day suits you best for the delivery?"), u("monday or tuesday would")],
    ]
    extra = ["one", "more", "word", "each", "time"]
    for round_ in range(len(extra) + 1):
        for talk in talks:
            chat = [talk[0], u(" ".join([talk[1]["content"], *extra[:round_]]))]
            before = pool.stats
            p = pool.predict(chat)
            after = pool.stats
            assert p == pytest.approx(model.predict(chat), abs=0.05)
            computed = after["computed_tokens"] - before["computed_tokens"]
            window = after["window_tokens"] - before["window_tokens"]
            assert window == len(model.encode(chat))
            if round_ == 0:
                assert computed == window  # a new conversation: computed in full
            else:
                assert computed <= 3  # its stream found it again: one word's tokens
    assert pool.stats["streams"] == 3
    assert pool.stats["calls"] == 3 * (len(extra) + 1)
    # a fourth conversation takes the least recently used stream (size 3)
    pool.predict([u("what time is it")])
    assert pool.stats["streams"] == 3
    # every stream busy: the call is scored cold, not queued
    with pool._lock:
        busy = list(pool._idle)
        pool._idle.clear()
    before = pool.stats
    chat = [u("what time is it now")]
    assert pool.predict(chat) == pytest.approx(model.predict(chat), abs=1e-6)
    assert pool.stats["computed_tokens"] - before["computed_tokens"] == len(model.encode(chat))
    with pool._lock:
        pool._idle.extend(busy)
    with pytest.raises(InvalidOptionError):
        model.stream_pool(size=0)
    with pytest.raises(InvalidOptionError):
        pool.predict([u("")])
    with pytest.raises(UnsupportedLanguageError):
        pool.predict([u("hallo")], language="de")


def test_stream_pool_in_parallel_threads(model: EndOfTurnModel) -> None:
    pool = model.stream_pool(size=2)
    dialogues = [[a("Where to?"), u(f"to gate {i} please")] for i in range(6)]
    expected = [model.predict(d) for d in dialogues]
    results = _in_threads(4, lambda: [pool.predict(d) for d in dialogues])
    for got in results:
        assert got == pytest.approx(expected, abs=0.05)
    assert pool.stats["calls"] == 24
    assert pool.stats["streams"] <= 2


def test_streams_in_parallel_threads(model: EndOfTurnModel) -> None:
    """One stream per conversation, all sharing the model's session."""
    dialogues = [
        [a("Where to?"), u(" ".join(["to", "gate", str(i), "please"][:n]))]
        for i in range(4)
        for n in (2, 3, 4)
    ]
    expected = [model.predict(d) for d in dialogues]

    def one_conversation() -> list[float]:
        stream = model.stream()
        return [stream.predict(d) for d in dialogues]

    results = _in_threads(4, one_conversation)
    assert len(results) == 4
    for got in results:
        assert got == pytest.approx(expected, abs=0.05)


def test_runtime_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys\n"
        "from caesura.eot import EndOfTurnModel\n"
        "m = EndOfTurnModel.load()\n"
        "m.predict([{'role': 'user', 'content': 'hello there'}])\n"
        "m.predict_many([[{'role': 'user', 'content': 'hi'}]])\n"
        "bad = [k for k in ('torch', 'transformers') if k in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
