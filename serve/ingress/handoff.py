"""Hand-off of stored transactions to scoring, and the sweeper that retries what was missed.

The ingress acknowledges as soon as a batch is durable; scoring happens afterwards. A transaction
whose hand-off failed (scoring down, process killed) stays ``pending`` in the store, and the
``PendingSweeper`` re-submits pending transactions older than a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Protocol

from aml.domain import Transaction, utcnow
from serve.metrics import IngressMetrics
from storage.store import Store

log = logging.getLogger(__name__)


class ScoringHandoff(Protocol):
    """Where newly stored transactions go to be scored (Serve-backed or in-process)."""

    async def submit(self, txs: Sequence[Transaction]) -> None:
        """Score ``txs``. Raising leaves them ``pending`` for the sweeper."""
        ...


class HandoffDispatcher:
    """Runs hand-offs as background tasks so that acknowledgements never wait on scoring."""

    def __init__(self, handoff: ScoringHandoff | None, metrics: IngressMetrics) -> None:
        self._handoff = handoff
        self._metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()

    def dispatch(self, txs: Sequence[Transaction]) -> None:
        """Start one background hand-off for ``txs`` (no-op when empty or no hand-off)."""
        if not txs or self._handoff is None:
            return
        task = asyncio.get_running_loop().create_task(self._run(list(txs)))
        self._tasks.add(task)  # keep a reference: the loop holds tasks only weakly
        task.add_done_callback(self._tasks.discard)

    async def _run(self, txs: list[Transaction]) -> None:
        assert self._handoff is not None
        try:
            await self._handoff.submit(txs)
        except Exception:
            self._metrics.handoffs.labels(result="failed").inc(len(txs))
            log.exception("hand-off of %d transactions failed; they stay pending", len(txs))
            return
        self._metrics.handoffs.labels(result="ok").inc(len(txs))

    async def wait_idle(self) -> None:
        """Wait for the hand-offs in flight (used at shutdown and in tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class PendingSweeper:
    """Periodically re-submits transactions that stayed ``pending`` longer than ``grace``.

    Args:
        store: the store to read pending transactions from.
        handoff: where to submit them.
        interval: time between sweeps.
        grace: minimum age (by ``received_at``) before a pending transaction is retried, so that
            the normal hand-off of a fresh batch is not duplicated.
        batch: maximum transactions per sweep.
    """

    def __init__(
        self,
        store: Store,
        handoff: ScoringHandoff,
        *,
        interval: timedelta = timedelta(seconds=30),
        grace: timedelta = timedelta(minutes=2),
        batch: int = 500,
    ) -> None:
        self._store = store
        self._handoff = handoff
        self._interval = interval
        self._grace = grace
        self._batch = batch
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """One sweep. Returns how many transactions were re-submitted."""
        pending = await self._store.transactions.list_pending(
            older_than=utcnow() - self._grace, limit=self._batch
        )
        if pending:
            log.info("re-submitting %d pending transactions to scoring", len(pending))
            await self._handoff.submit(pending)
        return len(pending)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval.total_seconds())
            try:
                await self.run_once()
            except Exception:
                log.exception("pending sweep failed; retrying next interval")

    def start(self) -> None:
        """Start sweeping in the background."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop sweeping."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
