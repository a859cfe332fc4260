"""The link-cost benchmark replays real shards and links, checks every view, and counts what a
small capacity sends again."""

from __future__ import annotations

from bench.link_cost import STEPS, measure
from bench.scoring import synthetic_stream


async def test_continued_views_name_fewer_slots_than_slots_alone() -> None:
    stream = synthetic_stream(3_000, accounts=200)
    keyed = await measure(stream, batch=256)
    plain = await measure(stream, batch=256, keyed=False)
    assert set(keyed["us_per_tx"]) == set(STEPS)
    assert (
        keyed["transactions_measured"] == plain["transactions_measured"] == 1_464
    )  # batches starting past half way
    assert keyed["sent_per_tx"] == plain["sent_per_tx"] == 0
    assert keyed["slots_named_per_tx"] < plain["slots_named_per_tx"] / 2


async def test_a_small_capacity_sends_transactions_again() -> None:
    stream = synthetic_stream(3_000, accounts=200)
    assert (await measure(stream, batch=256, capacity=500))["sent_per_tx"] > 0.5
