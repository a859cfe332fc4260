"""Scoring hand-off implementations (``serve.ingress.handoff.ScoringHandoff``).

* :class:`ServeScoring` sends batches to the ``ScoringPipeline`` Serve application, whose
  replicas decide them and write the decisions and alerts to the store in bulk, then mark the
  transactions scored.
* :func:`in_process_scoring` runs the same ``aml`` scorers in this process, without Ray (tests of
  ingestion, and the fallback when no cluster is available).

Either way a transaction is marked scored only after its decision is stored, so a failure at any
point leaves it ``pending`` for the sweeper, and a retry is idempotent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from actors.customer_state import (
    DEFAULT_GRAPH_HOPS,
    LocalContextBuilder,
    ShardState,
    TransferGraph,
)
from actors.ordering import OrderStamp
from aml.domain import Decision, Transaction, sealed
from serve.scoring.pipeline import InProcessScoring, ScoringCore, scorable
from storage.store import Store

# Most transactions per pipeline call. A call costs several Ray calls (pipeline, RuleScorer,
# each state actor, both model scorers) whatever its size, tens of milliseconds of CPU in all
# processes: in the scoring benchmark 96 us of CPU per transaction at 4,096 against 117 at
# 2,048 in the first runs, 105-127 against 113-133 in later alternating ones
# (bench/results/scoring-2026-11-30-s15-*.json; 415, 357, 304 and 279 us at 512 to 4,096
# before the per-transaction costs came down, scoring-2026-11-29-batch-*.json).
DEFAULT_BATCH = 4096
# Queued transactions that start another call while one is running. Below it the queue waits
# for the running call; above it calls run side by side (each takes up to DEFAULT_BATCH), so
# consecutive batches overlap in different processes (the rule replica scores one while the
# pipeline writes the other), and the state actors still observe them in hand-over order
# (actors.ordering). At 2,000 hooks/s over 3,000 accounts, whose histories make each call
# slower as the minute goes on, the receive -> decided p99 of the last 10 s was 1.6 s at 2,048,
# 0.9 s at 1,024, 0.6-0.7 s at 512 and 0.5 s at 256, whose extra calls slowed acknowledgements
# to a p99 of 1 s (bench/results/e2e-2026-11-30-s15.md). At 1,000/s the queue stays below it.
DEFAULT_OVERLAP = 512
DEFAULT_IN_FLIGHT = 4

__all__ = ["InProcessScoring", "ServeScoring", "in_process_scoring"]


class _Waiter:
    """One ``submit``: its transactions' decisions as their batches come back (only counted
    when ``wants_decisions`` is False)."""

    __slots__ = ("decisions", "future", "ids", "remaining", "wants_decisions")

    def __init__(self, txs: Sequence[Transaction], *, wants_decisions: bool) -> None:
        self.wants_decisions = wants_decisions
        self.ids = [t.id for t in txs]
        self.remaining = len(txs)
        self.decisions: dict[str, Decision] = {}
        self.future: asyncio.Future[list[Decision]] = asyncio.get_running_loop().create_future()

    def done(self, count: int, decisions: Mapping[str, Decision]) -> None:
        """``count`` of its transactions were decided and stored (``decisions`` by id)."""
        for tx_id in self.ids:
            d = decisions.get(tx_id)
            if d is not None:
                self.decisions[tx_id] = d
        self.remaining -= count
        if self.remaining <= 0 and not self.future.done():
            self.future.set_result([self.decisions[i] for i in self.ids if i in self.decisions])

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class ServeScoring:
    """Serve-backed hand-off that coalesces concurrent submits into few pipeline calls.

    A pipeline call costs milliseconds of CPU in several processes whatever its size, so the
    transactions of all ``submit`` calls are queued and sent in batches of up to ``batch_size``
    with at most ``max_in_flight`` calls running. When no call is running the queue is sent at
    once (low latency at low rates); while calls run, it grows until ``overlap_at`` are queued
    or a call returns. The pipeline replica decides each batch and writes its outcome to the store
    (``ScoringPipeline.score_and_store``); each ``submit`` returns when its own transactions are
    decided and stored, and raises if any of their batches failed, which leaves those
    transactions pending.
    """

    def __init__(
        self,
        handle: Any,
        *,
        batch_size: int = DEFAULT_BATCH,
        max_in_flight: int = DEFAULT_IN_FLIGHT,
        overlap_at: int | None = None,
    ) -> None:
        """Args:
        handle: ``DeploymentHandle`` of the ``ScoringPipeline`` (``serve.get_app_handle``);
            the application must be deployed with the store's URI (it writes the decisions).
        batch_size: most transactions per pipeline call.
        max_in_flight: pipeline calls running at once per hand-off.
        overlap_at: transactions queued that start another call while one is running
            (default: :data:`DEFAULT_OVERLAP`, at most ``batch_size``).
        """
        if batch_size < 1 or max_in_flight < 1 or (overlap_at is not None and overlap_at < 1):
            raise ValueError("batch_size, max_in_flight and overlap_at must be at least 1")
        self.handle = handle
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.overlap_at = min(batch_size, overlap_at or DEFAULT_OVERLAP)
        self.calls = 0  # pipeline calls made (observability, tests)
        self._queue: deque[tuple[list[Transaction], _Waiter]] = deque()
        self._queued = 0
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # Calls in flight together may reach the state actors in any order; numbered, they
        # are observed in the order they were handed over (see actors.ordering).
        self._orders = OrderStamp()

    @classmethod
    def connect(cls, app_name: str = "scoring", **kwargs: Any) -> ServeScoring:
        """Hand-off to the running Serve application ``app_name``."""
        from ray import serve

        return cls(serve.get_app_handle(app_name), **kwargs)

    async def score_and_store(self, txs: Sequence[Transaction]) -> list[Decision]:
        """Score, store and return the decisions (in the order of the scorable ``txs``).

        Raises:
            Exception: a batch holding some of ``txs`` failed (scoring or storing); those
                transactions stay pending.
        """
        return await self._enqueue(txs, wants_decisions=True)

    async def submit(self, txs: Sequence[Transaction]) -> None:
        """Score and store ``txs`` (raising leaves them pending for the sweeper). The decisions
        stay in the pipeline replica that wrote them."""
        await self._enqueue(txs, wants_decisions=False)

    async def _enqueue(
        self, txs: Sequence[Transaction], *, wants_decisions: bool
    ) -> list[Decision]:
        batch = scorable(txs)
        if not batch:
            return []
        waiter = _Waiter(batch, wants_decisions=wants_decisions)
        self._queue.append((batch, waiter))
        self._queued += len(batch)
        self._dispatch()
        return await waiter.future

    def _dispatch(self) -> None:
        """Start pipeline calls while the rules above allow one."""
        while self._queued and self._in_flight < self.max_in_flight:
            if self._in_flight and self._queued < self.overlap_at:
                return  # a call is running: let the queue grow until it returns
            self._in_flight += 1
            self.calls += 1
            task = asyncio.get_running_loop().create_task(self._run(self._take()))
            self._tasks.add(task)  # the loop holds tasks only weakly
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[tuple[list[Transaction], _Waiter]]:
        """Up to ``batch_size`` queued transactions, splitting a submit larger than the room."""
        parts: list[tuple[list[Transaction], _Waiter]] = []
        room = self.batch_size
        while self._queue and room:
            txs, waiter = self._queue[0]
            if len(txs) <= room:
                self._queue.popleft()
                part = txs
            else:
                part, self._queue[0] = txs[:room], (txs[room:], waiter)
            parts.append((part, waiter))
            room -= len(part)
            self._queued -= len(part)
        return parts

    async def _run(self, parts: list[tuple[list[Transaction], _Waiter]]) -> None:
        # The same transaction submitted twice (a sweep beside a fresh hand-off) is scored once.
        batch = list({t.id: t for part, _ in parts for t in part}.values())
        wanted = any(waiter.wants_decisions for _, waiter in parts)
        order = self._orders.next()
        try:
            decisions, _ = await self.handle.score_and_store.remote(sealed(batch), wanted, order)
        except Exception as exc:
            for _, waiter in parts:
                waiter.fail(exc)
            return
        finally:
            self._orders.done(order)
            self._in_flight -= 1
            self._dispatch()
        by_id = {d.transaction_id: d for d in decisions or ()}
        for part, waiter in parts:
            waiter.done(len(part), by_id)

    async def wait_idle(self) -> None:
        """Wait until every queued and running batch has finished (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def in_process_scoring(
    store: Store,
    *,
    shards: int = 1,
    graph_hops: int = DEFAULT_GRAPH_HOPS,
    rules: Mapping[str, Any] | None = None,
    anomaly: Mapping[str, Any] | None = None,
    xgboost: Mapping[str, Any] | None = None,
    pipeline: Mapping[str, Any] | None = None,
) -> InProcessScoring:
    """The Ray-free hand-off, configured with the same ``user_config`` dicts as Serve."""
    core = ScoringCore.from_user_configs(
        rules=rules, anomaly=anomaly, xgboost=xgboost, pipeline=pipeline
    )
    state = LocalContextBuilder(
        [ShardState() for _ in range(shards)],
        source=store.transactions,
        graph=TransferGraph(hops=graph_hops),
    )
    return InProcessScoring(store, core, state)
