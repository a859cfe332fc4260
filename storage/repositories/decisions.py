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
from storage.repositories.base import BulkInsertResult, Repository

_MINUTE = "%Y-%m-%dT%H:%M:00Z"


def _as_id(decision: Decision) -> dict[str, Any]:
    return to_doc(decision, id_field="transaction_id")


def _from(doc: dict[str, Any]) -> Decision:
    return from_doc(Decision, doc, id_field="transaction_id")


class DecisionRepository(Repository):
    collection_name = "decisions"
    indexes = (
        IndexModel([("decided_at", DESCENDING)]),
        IndexModel([("tenant", ASCENDING), ("decided_at", DESCENDING)]),
        IndexModel([("alert", ASCENDING), ("decided_at", DESCENDING)]),
    )

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
            .sort([("decided_at", DESCENDING), ("_id", ASCENDING)])
            .skip(skip)
            .limit(limit)
        )
        return [_from(d) async for d in cursor], int(total)

    @staticmethod
    def _range(
        since: datetime | None, until: datetime | None, tenant: str | None
    ) -> dict[str, Any]:
        # Each bound is its own ``$and`` clause: the embedded store evaluates a combined date
        # range inside an aggregation ``$match`` wrongly, while this equivalent form is right
        # on every server.
        clauses: list[dict[str, Any]] = []
        if since is not None:
            clauses.append({"decided_at": {"$gte": since}})
        if until is not None:
            clauses.append({"decided_at": {"$lt": until}})
        if tenant is not None:
            clauses.append({"tenant": tenant})
        return {"$and": clauses} if clauses else {}

    async def per_minute(
        self, *, since: datetime, until: datetime, tenant: str | None = None
    ) -> list[tuple[datetime, int]]:
        """Decisions per UTC minute in [since, until), one entry per minute (zeros included)."""
        pipeline: list[dict[str, Any]] = [
            {"$match": self._range(since, until, tenant)},
            {
                "$group": {
                    "_id": {"$dateToString": {"date": "$decided_at", "format": _MINUTE}},
                    "n": {"$sum": 1},
                }
            },
        ]
        cursor = await self.col.aggregate(pipeline)
        counts = {
            datetime.strptime(str(d["_id"]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC): int(d["n"])
            async for d in cursor
        }
        start = since.astimezone(UTC).replace(second=0, microsecond=0)
        out: list[tuple[datetime, int]] = []
        minute = start
        while minute < until:
            out.append((minute, counts.get(minute, 0)))
            minute += timedelta(minutes=1)
        return out

    async def alert_rate(
        self, *, since: datetime, until: datetime, tenant: str | None = None
    ) -> tuple[int, int, float]:
        """(decisions, alerting decisions, their ratio) in [since, until); ratio 0.0 when empty."""
        query = self._range(since, until, tenant)
        total = await self.count_matching(query)
        alerts = await self.count_matching({"$and": [query, {"alert": True}]})
        return total, alerts, (alerts / total if total else 0.0)

    async def count(self, query: dict[str, Any] | None = None) -> int:
        return await self.count_matching(query)
