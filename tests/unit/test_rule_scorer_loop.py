"""``RuleScorer`` computes features and rules off its event loop: Serve answers the replica's
health checks on that loop, and a replica whose loop stayed busy past the check's timeout was
replaced mid-load, caches and view links with it."""

from __future__ import annotations

import asyncio
import time

from actors.customer_state import LocalContextBuilder, ShardState, TransferGraph
from aml.features import FeatureParams
from bench.scoring import synthetic_stream
from serve.scoring.deployments import RuleScorer
from serve.scoring.pipeline import ScoringCore


def _in_memory_state() -> LocalContextBuilder:
    """The replica's state actors in this process (the same shard and graph code)."""
    return LocalContextBuilder([ShardState(cold_start_complete=True)], graph=TransferGraph())


async def test_the_event_loop_keeps_turning_while_a_batch_is_computed() -> None:
    scorer = RuleScorer.func_or_class()  # type: ignore[attr-defined]
    scorer._state = _in_memory_state()
    # A few accounts with long histories: seconds of features and rules in all.
    stream = synthetic_stream(6_000, accounts=40)
    warm, batch = stream[:3_000], stream[3_000:]
    await scorer.score(warm, FeatureParams())
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    evaluations, x, _ = await scorer.score(batch, FeatureParams())
    elapsed = time.perf_counter() - started
    task.cancel()

    assert len(evaluations) == len(batch) and x.shape[0] == len(batch)
    # Computed on the loop, nothing else runs until the batch is done (a tick at most).
    assert elapsed > 0.1
    assert ticks >= 5, (ticks, elapsed)
    # And it decides what the in-process core decides for the same stream.
    core = ScoringCore.from_user_configs()
    local = _in_memory_state()
    await local.observe_and_context(warm)
    contexts = await local.observe_and_context(batch)
    want = core.rules.evaluate_batch(list(zip(batch, contexts, strict=True)))
    assert [e.hits for e in evaluations] == [e.hits for e in want]
