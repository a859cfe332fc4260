"""How the Serve hand-off cuts submits into pipeline calls (a stand-in for Serve's handle)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from actors.ordering import BatchOrder
from aml.domain import Transaction
from serve.scoring.client import DEFAULT_BATCH, DEFAULT_OVERLAP, ServeScoring
from serve.scoring.pipeline import PersistResult
from tests.factories import make_tx


class _Call:
    def __init__(self, batch: Sequence[Transaction], order: BatchOrder) -> None:
        self.batch = list(batch)
        self.order = order
        self.release = asyncio.Event()


class _Pipeline:
    """Records each ``score_and_store`` call and finishes it when the test says so."""

    def __init__(self) -> None:
        self.calls: list[_Call] = []
        self.score_and_store = self

    def remote(self, batch: Sequence[Transaction], wanted: bool, order: BatchOrder) -> Any:
        call = _Call(batch, order)
        self.calls.append(call)

        async def run() -> tuple[None, PersistResult]:
            await call.release.wait()
            return None, PersistResult(len(call.batch), (), len(call.batch))

        return run()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_backlog_overlaps_calls_past_the_threshold_in_batches_up_to_the_size() -> None:
    pipeline = _Pipeline()
    handoff = ServeScoring(pipeline, batch_size=8, max_in_flight=3, overlap_at=4)
    first = asyncio.create_task(handoff.submit([make_tx()]))
    await _settle()
    assert [len(c.batch) for c in pipeline.calls] == [1]  # nothing running: sent at once
    waiting = [asyncio.create_task(handoff.submit([make_tx()])) for _ in range(3)]
    await _settle()
    assert len(pipeline.calls) == 1  # three queued, below the threshold: they wait
    waiting += [asyncio.create_task(handoff.submit([make_tx() for _ in range(7)]))]
    await _settle()
    # Ten queued: another call starts with a full batch, and the last two wait again.
    assert [len(c.batch) for c in pipeline.calls] == [1, 8]
    pipeline.calls[0].release.set()
    await _settle()
    assert [len(c.batch) for c in pipeline.calls] == [1, 8]  # the second still runs
    pipeline.calls[1].release.set()
    await _settle()
    assert [len(c.batch) for c in pipeline.calls] == [1, 8, 2]  # none runs: sent at once
    pipeline.calls[2].release.set()
    await asyncio.gather(first, *waiting)
    orders = [c.order for c in pipeline.calls]
    assert [o.seq for o in orders] == [0, 1, 2]
    # The second was handed over while the first ran; the third after both had finished.
    assert [o.since for o in orders] == [0, 0, 2]
    assert len({o.sender for o in orders}) == 1


def test_defaults_overlap_below_the_batch_size() -> None:
    assert ServeScoring(_Pipeline()).overlap_at == DEFAULT_OVERLAP < DEFAULT_BATCH
    # A small batch size overlaps at a full batch, as before the threshold existed.
    assert ServeScoring(_Pipeline(), batch_size=64).overlap_at == 64
