"""``ingest_log``: every received event, raw, with its outcome (kept for inspection/replay)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from aml.domain import IngestOutcome, IngestRecord
from storage.codec import from_doc, to_doc
from storage.repositories.base import BulkInsertResult, Repository


class IngestLogRepository(Repository):
    collection_name = "ingest_log"
    indexes = (
        IndexModel([("received_at", DESCENDING)]),
        IndexModel([("outcome", ASCENDING), ("received_at", DESCENDING)]),
        IndexModel([("tenant", ASCENDING), ("dedupe_key", ASCENDING)]),
    )

    async def insert_many(self, records: Sequence[IngestRecord]) -> BulkInsertResult:
        """Idempotent on ``id`` (a replayed spool entry is not logged twice)."""
        return await self.insert_unordered([to_doc(r) for r in records])

    async def get(self, record_id: str) -> IngestRecord | None:
        doc = await self.col.find_one({"_id": record_id})
        return from_doc(IngestRecord, doc) if doc else None

    async def list_recent(
        self, *, outcome: IngestOutcome | None = None, skip: int = 0, limit: int = 50
    ) -> list[IngestRecord]:
        query: dict[str, Any] = {}
        if outcome is not None:
            query["outcome"] = outcome.value
        cursor = self.col.find(query).sort("received_at", DESCENDING).skip(skip).limit(limit)
        return [from_doc(IngestRecord, d) async for d in cursor]

    async def count_by_outcome(self) -> dict[str, int]:
        cursor = await self.col.aggregate(
            [{"$group": {"_id": "$outcome", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}]
        )
        return {str(d["_id"]): int(d["n"]) async for d in cursor}
