"""``decisions``: one scoring decision per transaction, kept apart from the transaction itself.

The decision's ``_id`` is its transaction id, so a replayed decision is a duplicate, not a second
record.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from aml.domain import Decision
from storage.codec import from_doc, to_doc
from storage.repositories.base import (
    BulkInsertResult,
    Repository,
    add_ms_range,
    as_datetime,
    epoch_ms,
)

# Numeric time keys (epoch milliseconds) written beside ``decided_at``: the overview's counters
# select on them. ``alert_ms`` is written on alerting decisions only, so that counting the
# alerts of a period reads just those. A date range makes the embedded store decode every
# decision in Python, and a day of decisions is the largest thing the overview reads.
DECIDED_MS = "decided_ms"
ALERT_MS = "alert_ms"
# Fields of a decision document that never hold arrays (see ``Repository.count_matching``).
_SCALAR = ("tenant",)


def _time_keys(decided_at: Any, alert: Any) -> dict[str, int]:
    at = epoch_ms(as_datetime(decided_at))
    return {DECIDED_MS: at, ALERT_MS: at} if alert in (True, 1) else {DECIDED_MS: at}


def _as_id(decision: Decision) -> dict[str, Any]:
    doc = to_doc(decision, id_field="transaction_id")
    doc.update(_time_keys(decision.decided_at, decision.alert))
    return doc


def _from(doc: dict[str, Any]) -> Decision:
    return from_doc(Decision, doc, id_field="transaction_id")


class DecisionRepository(Repository):
    collection_name = "decisions"
    indexes = (
        IndexModel([(DECIDED_MS, DESCENDING)]),
        IndexModel([("tenant", ASCENDING), (DECIDED_MS, DESCENDING)]),
        IndexModel([("alert", ASCENDING), (DECIDED_MS, DESCENDING)]),
        IndexModel([(ALERT_MS, ASCENDING)], sparse=True),
        IndexModel([("tenant", ASCENDING), (ALERT_MS, ASCENDING)], sparse=True),
    )
    # The embedded store serves a numeric range (and the listing's sort) from a single-field
    # index; compound ones would only cost every insert (one decision per transaction).
    embedded_indexes = (
        IndexModel([(DECIDED_MS, DESCENDING)]),
        IndexModel([(ALERT_MS, ASCENDING)]),
    )

    async def ensure_indexes(self, *, embedded: bool = False) -> None:
        """Indexes, after giving decisions stored before the numeric time keys existed theirs."""
        await self.backfill(
            DECIDED_MS,
            lambda doc: _time_keys(doc.get("decided_at"), doc.get("alert")),
            projection={"decided_at": 1, "alert": 1},
            embedded=embedded,
            server_side={
                DECIDED_MS: {"$toLong": "$decided_at"},
                ALERT_MS: {
                    "$cond": [{"$eq": ["$alert", True]}, {"$toLong": "$decided_at"}, "$$REMOVE"]
                },
            },
        )
        await super().ensure_indexes(embedded=embedded)

    async def insert_many(self, decisions: Sequence[Decision]) -> BulkInsertResult:
        """Store decisions; one whose transaction already has a decision is reported as a
        duplicate and left untouched."""
        return await self.insert_unordered([_as_id(d) for d in decisions])

    async def get_by_transaction(self, transaction_id: str) -> Decision | None:
        doc = await self.col.find_one({"_id": transaction_id})
        return _from(doc) if doc else None

    async def list_for_transactions(self, transaction_ids: Sequence[str]) -> list[Decision]:
        """Decisions of the given transactions (those that have one), newest first."""
        cursor = self.col.find({"_id": {"$in": list(transaction_ids)}}).sort(
            [("decided_at", DESCENDING), ("_id", ASCENDING)]
        )
        return [_from(d) async for d in cursor]

    async def list_(
        self,
        *,
        tenant: str | None = None,
        alert: bool | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        skip: int = 0,
        limit: int = 50,
    ) -> tuple[list[Decision], int]:
        """Page of decisions, newest first, with the total matching count."""
        query = self._range(since, until, tenant)
        if alert is not None:
            query = {"$and": [query, {"alert": alert}]}
        total = await self.count_matching(query)
        cursor = (
            self.col.find(query)
            .sort([(DECIDED_MS, DESCENDING), ("_id", ASCENDING)])
            .skip(skip)
            .limit(limit)
        )
        return [_from(d) async for d in cursor], int(total)

    @staticmethod
    def _range(
        since: datetime | None, until: datetime | None, tenant: str | None
    ) -> dict[str, Any]:
        return DecisionRepository._ms_range(DECIDED_MS, since, until, tenant)

    @staticmethod
    def _ms_range(
        key: str, since: datetime | None, until: datetime | None, tenant: str | None
    ) -> dict[str, Any]:
        query: dict[str, Any] = {"tenant": tenant} if tenant is not None else {}
        return add_ms_range(query, key, since, until)

    async def per_minute(
        self, *, since: datetime, until: datetime, tenant: str | None = None
    ) -> list[tuple[datetime, int]]:
        """Decisions per UTC minute in [since, until), one entry per minute (zeros included).

        One indexed count per minute rather than a ``$group``: the embedded store answers an
        aggregation by decoding every matching decision (an hour at 1,000 a second is 3.6
        million), a count from the index alone."""
        start = since.astimezone(UTC).replace(second=0, microsecond=0)
        minutes: list[datetime] = []
        minute = start
        while minute < until:
            minutes.append(minute)
            minute += timedelta(minutes=1)
        counts = await self.count_each(
            [
                self._range(max(m, since), min(m + timedelta(minutes=1), until), tenant)
                for m in minutes
            ],
            scalar=_SCALAR,
        )
        return list(zip(minutes, counts, strict=True))

    async def alert_rate(
        self, *, since: datetime, until: datetime, tenant: str | None = None
    ) -> tuple[int, int, float]:
        """(decisions, alerting decisions, their ratio) in [since, until); ratio 0.0 when empty."""
        total, alerts = await self.count_each(
            [self._range(since, until, tenant), self._ms_range(ALERT_MS, since, until, tenant)],
            scalar=_SCALAR,
        )
        return total, alerts, (alerts / total if total else 0.0)

    async def count(self, query: dict[str, Any] | None = None) -> int:
        return await self.count_matching(query)
