"""In-process contexts (``LocalContextBuilder.contexts``) and the shard actors' path (route ->
``ShardState.answer`` -> ``merge_views``) give the same contexts and leave the same windows."""

from __future__ import annotations

import asyncio

from actors.customer_state import LocalContextBuilder, ShardState, TransferGraph
from tests.unit.test_scoring_golden import golden_stream


def _builder() -> LocalContextBuilder:
    return LocalContextBuilder(
        [ShardState(cold_start_complete=True, max_keys=60) for _ in range(3)],
        graph=TransferGraph(),
    )


def test_local_path_equals_the_shard_actors_path() -> None:
    txs = golden_stream(1_500)
    local, routed = _builder(), _builder()
    for lo in range(0, len(txs), 200):
        batch = txs[lo : lo + 200]
        got = local.contexts(batch)
        # observe_and_context routes items and answers them as the shard actors do.
        want = asyncio.run(routed.observe_and_context(batch))
        assert got == want
    assert any(ctx.client for ctx in got) and any(ctx.agent for ctx in got)
    for a, b in zip(local.shards, routed.shards, strict=True):
        # Same windows (max_keys small enough that the LRU bound evicts), same LRU order,
        # same contents and completeness.
        assert list(a._lru) == list(b._lru)
        assert a.windows.keys() == b.windows.keys()
        for key, win in a.windows.items():
            other = b.windows[key]
            assert win._txs == other._txs
            assert win.complete_since == other.complete_since
        assert a.newest == b.newest
        assert len(a.windows) == a.max_keys  # the bound was reached: evictions compared too
