"""Scoring hand-off implementations (``serve.ingress.handoff.ScoringHandoff``).

* :class:`ServeScoring` sends batches to the ``ScoringPipeline`` Serve application and writes the
  decisions and alerts to the store in bulk, then marks the transactions scored.
* :func:`in_process_scoring` runs the same ``aml`` scorers in this process, without Ray (tests of
  ingestion, and the fallback when no cluster is available).

Either way a transaction is marked scored only after its decision is stored, so a failure at any
point leaves it ``pending`` for the sweeper, and a retry is idempotent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from actors.customer_state import LocalContextBuilder, ShardState, TransferGraph
from aml.domain import Decision, Transaction
from serve.scoring.pipeline import InProcessScoring, ScoringCore, persist, scorable
from storage.store import Store

DEFAULT_BATCH = 512
DEFAULT_IN_FLIGHT = 4

__all__ = ["InProcessScoring", "ServeScoring", "in_process_scoring"]


class ServeScoring:
    """Serve-backed hand-off: batches of up to ``batch_size`` per pipeline call."""

    def __init__(
        self,
        store: Store,
        handle: Any,
        *,
        batch_size: int = DEFAULT_BATCH,
        max_in_flight: int = DEFAULT_IN_FLIGHT,
    ) -> None:
        """Args:
        store: where decisions and alerts are written.
        handle: ``DeploymentHandle`` of the ``ScoringPipeline`` (``serve.get_app_handle``).
        batch_size: transactions per pipeline call (a call costs ~5 ms; batch everything).
        max_in_flight: pipeline calls running at once per hand-off.
        """
        self.store = store
        self.handle = handle
        self.batch_size = batch_size
        self._sem = asyncio.Semaphore(max_in_flight)

    @classmethod
    def connect(cls, store: Store, app_name: str = "scoring", **kwargs: Any) -> ServeScoring:
        """Hand-off to the running Serve application ``app_name``."""
        from ray import serve

        return cls(store, serve.get_app_handle(app_name), **kwargs)

    async def _one(self, chunk: list[Transaction]) -> list[Decision]:
        async with self._sem:
            decisions: list[Decision] = await self.handle.score.remote(chunk)
        await persist(self.store, chunk, decisions)
        return decisions

    async def score_and_store(self, txs: Sequence[Transaction]) -> list[Decision]:
        """Score, store and return the decisions (in the order of the scorable ``txs``)."""
        batch = scorable(txs)
        chunks = [batch[i : i + self.batch_size] for i in range(0, len(batch), self.batch_size)]
        results = await asyncio.gather(*(self._one(c) for c in chunks))
        return [d for r in results for d in r]

    async def submit(self, txs: Sequence[Transaction]) -> None:
        """Score ``txs`` (raising leaves them pending for the sweeper)."""
        await self.score_and_store(txs)


def in_process_scoring(
    store: Store,
    *,
    shards: int = 1,
    graph_hops: int = 3,
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
