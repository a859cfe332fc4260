"""Shared pieces of the repositories."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

Document = dict[str, Any]

DUPLICATE_KEY = 11000


@dataclass(frozen=True)
class BulkInsertResult:
    """Outcome of an unordered bulk insert on a unique key."""

    inserted: tuple[int, ...]  # positions in the input that were stored now
    duplicates: tuple[int, ...]  # positions rejected by a unique index (already stored)


def add_range(
    query: Document, field: str, *, gte: Any = None, lt: Any = None, lte: Any = None
) -> None:
    """Constrain ``field`` of ``query`` to the bounds given; a bound of None stays open.

    Adds nothing when every bound is None, so an unbounded search keeps using any index.
    """
    bounds = {op: v for op, v in (("$gte", gte), ("$lt", lt), ("$lte", lte)) if v is not None}
    if bounds:
        query[field] = bounds


class Repository:
    """Base: one collection, its indexes."""

    collection_name: str = ""
    indexes: Sequence[IndexModel] = ()
    # Indexes for the embedded server when they differ (its planner uses other shapes).
    embedded_indexes: Sequence[IndexModel] | None = None

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.col: AsyncCollection[Document] = db[self.collection_name]

    async def ensure_indexes(self, *, embedded: bool = False) -> None:
        """Idempotent: creating an existing index with the same spec is a no-op.

        Args:
            embedded: the store is the embedded server, which gets ``embedded_indexes`` when a
                repository declares them.
        """
        chosen = self.embedded_indexes if embedded and self.embedded_indexes is not None else None
        indexes = chosen if chosen is not None else self.indexes
        if indexes:
            await self.col.create_indexes(list(indexes))

    async def count_matching(
        self, query: Document | None = None, *, in_as_or: Sequence[str] = ()
    ) -> int:
        """Documents matching ``query``, for pagers and overviews.

        The ``count`` command rather than ``count_documents``: the latter is an aggregation that
        the embedded store answers by reading every matching document (1.1-1.4 s for any filter
        over 40,000 transactions, 14 matches or all), while ``count`` is answered in SQL (4-60
        ms there) and from the indexes by MongoDB. A multi-valued ``$in`` on a scalar field named
        in ``in_as_or`` is counted as ``$or`` of equalities, which the embedded store can answer
        from an index and MongoDB reads the same way (never for array fields: ``$in`` there
        matches any element).
        """
        clauses: list[Document] = []
        rest: Document = {}
        for key, value in (query or {}).items():
            if key in in_as_or and isinstance(value, dict) and list(value) == ["$in"]:
                clauses.append({"$or": [{key: v} for v in value["$in"]]})
            else:
                rest[key] = value
        counted = {"$and": [rest, *clauses]} if clauses else rest
        reply = await self.col.database.command("count", self.col.name, query=counted)
        return int(reply["n"])

    async def insert_unordered(self, docs: Sequence[Document]) -> BulkInsertResult:
        """Insert ``docs`` in one unordered bulk write; duplicates on unique keys are reported,
        not raised. Any other write error is raised."""
        if not docs:
            return BulkInsertResult((), ())
        try:
            await self.col.insert_many(list(docs), ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            dup = {int(e["index"]) for e in errors if e.get("code") == DUPLICATE_KEY}
            if len(dup) != len(errors):
                raise
            ok = tuple(i for i in range(len(docs)) if i not in dup)
            return BulkInsertResult(ok, tuple(sorted(dup)))
        return BulkInsertResult(tuple(range(len(docs))), ())
