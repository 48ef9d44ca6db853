"""The server's end-of-turn predictor: one model stream per conversation (``owner``)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from caesura.eot import EndOfTurnModel
from caesura.errors import ModelError
from caesura.server.turn import TurnPredictor


class Conversation:
    """Stands for a WebSocket session: any weak-referenceable object."""


def test_each_conversation_scores_through_its_own_stream() -> None:
    try:
        model = EndOfTurnModel.load()
    except ModelError as exc:  # the model assets are not installed in this checkout
        pytest.skip(f"no bundled end-of-turn model: {exc}")
    predictor = TurnPredictor(model)
    agent = ("agent", "Which day would you like to fly, and from which airport?")
    first, second = Conversation(), Conversation()

    async def run(first: Conversation, second: Conversation) -> list[float]:
        out = []
        for words in ["on friday", "on friday from", "on friday from boston please"]:
            turns = [agent, ("user", words)]
            p, seconds = await predictor.predict(turns, owner=first)
            assert seconds > 0
            out.append(p)
            q, _ = await predictor.predict(turns, owner=second)
            assert q == pytest.approx(p, abs=1e-6)  # same calls, same computations
            pooled, _ = await predictor.predict(turns)  # no owner (HTTP): the stream pool
            assert p == pytest.approx(pooled, abs=0.05)
            chat = [{"role": r, "content": t} for r, t in turns]
            assert p == pytest.approx(model.predict(chat), abs=0.05)
        return out

    scores = asyncio.run(run(first, second))
    assert scores[-1] > scores[1]  # "... from" is unfinished
    streams = dict(predictor._streams)
    assert set(streams) == {first, second}
    assert streams[first] is not streams[second]
    assert streams[first].computed_tokens < streams[first].cached_tokens  # words added only
    pool = predictor._pool.stats
    assert pool["calls"] == 3
    assert pool["computed_tokens"] < pool["window_tokens"]
    del first, streams
    gc.collect()
    assert set(predictor._streams) == {second}  # a finished conversation frees its stream
