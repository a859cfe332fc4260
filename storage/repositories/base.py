"""Shared pieces of the repositories."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import IndexModel, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, OperationFailure

Document = dict[str, Any]

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000


@dataclass(frozen=True)
class BulkInsertResult:
    """Outcome of an unordered bulk insert on a unique key."""

    inserted: tuple[int, ...]  # positions in the input that were stored now
    duplicates: tuple[int, ...]  # positions rejected by a unique index (already stored)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(at: datetime) -> int:
    """Milliseconds since the epoch of an aware instant (the numeric time keys)."""
    # Integer arithmetic: a float timestamp can land a millisecond low (BSON truncates).
    return (at - _EPOCH) // timedelta(milliseconds=1)


def as_datetime(value: Any) -> datetime:
    """A stored date (the embedded store may hand back text) as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def add_range(
    query: Document, field: str, *, gte: Any = None, lt: Any = None, lte: Any = None
) -> None:
    """Constrain ``field`` of ``query`` to the bounds given; a bound of None stays open.

    Adds nothing when every bound is None, so an unbounded search keeps using any index.
    """
    bounds = {op: v for op, v in (("$gte", gte), ("$lt", lt), ("$lte", lte)) if v is not None}
    if bounds:
        query[field] = bounds


def add_ms_range(
    query: Document, field: str, since: datetime | None, until: datetime | None
) -> Document:
    """:func:`add_range` of ``[since, until)`` on the numeric time key ``field`` (epoch
    milliseconds); returns ``query``."""
    add_range(
        query,
        field,
        gte=epoch_ms(since) if since is not None else None,
        lt=epoch_ms(until) if until is not None else None,
    )
    return query


def scalar_filter(query: Document, scalar: Sequence[str]) -> Document:
    """``query`` with its equalities and ``$in`` on the ``scalar`` fields (which never hold
    arrays) written as ``$eq`` (see :meth:`Repository.count_matching`)."""
    clauses: list[Document] = []
    rest: Document = {}
    for key, value in query.items():
        if key in ("$and", "$or") and isinstance(value, list):
            rest[key] = [scalar_filter(v, scalar) if isinstance(v, dict) else v for v in value]
        elif key not in scalar:
            rest[key] = value
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            rest[key] = {"$eq": value}
        elif isinstance(value, dict) and list(value) == ["$in"]:
            clauses.append({"$or": [{key: {"$eq": v}} for v in value["$in"]]})
        else:
            rest[key] = value
    return {"$and": [rest, *clauses]} if clauses else rest


async def is_embedded_server(db: AsyncDatabase[Document]) -> bool:
    """Whether ``db`` is served by the embedded MongoDB-wire store (``nx-27017``)."""
    info = await db.command("buildInfo")
    return str(info.get("process", "")).startswith("nx_27017")


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
        if embedded:
            await self._drop_obsolete_indexes(indexes)

    async def _drop_obsolete_indexes(self, indexes: Sequence[IndexModel]) -> None:
        """Drop the embedded store's indexes on fields no declared index has any more (an
        upgrade that moved a read to other fields): SQLite would keep updating them on every
        write. Only on the embedded store, whose indexes are all the product's own; a MongoDB
        deployment's indexes are its operators' to manage."""
        wanted = {tuple(k for k, _ in m.document["key"].items()) for m in indexes}
        for name, spec in (await self.col.index_information()).items():
            fields = tuple(k for k, _ in spec.get("key", ()))
            if fields and fields != ("_id",) and fields not in wanted:
                log.info("dropping index %s of %s (no longer used)", name, self.collection_name)
                try:
                    await self.col.drop_index(name)
                except OperationFailure as exc:  # another process starting dropped it first
                    log.info("index %s of %s already gone (%s)", name, self.collection_name, exc)

    async def count_matching(
        self, query: Document | None = None, *, scalar: Sequence[str] = ()
    ) -> int:
        """Documents matching ``query``, for pagers and overviews.

        The ``count`` command rather than ``count_documents``: the latter is an aggregation that
        the embedded store answers by reading every matching document (1.1-1.4 s for any filter
        over 40,000 transactions, 14 matches or all), while ``count`` is answered in SQL (4-60
        ms there) and from the indexes by MongoDB.

        Fields named in ``scalar`` never hold arrays: an equality on one is sent as ``$eq`` and a
        ``$in`` as ``$or`` of those. Both mean the same on any server, but the embedded store
        gives a plain equality MongoDB's array-containment meaning (a clause no index can serve,
        so every count read the whole collection) and ``$eq`` a plain comparison its index on
        the field answers.
        """
        counted = scalar_filter(query or {}, scalar)
        reply = await self.col.database.command("count", self.col.name, query=counted)
        return int(reply["n"])

    async def count_each(
        self, queries: Sequence[Document], *, scalar: Sequence[str] = (), in_flight: int = 8
    ) -> list[int]:
        """:meth:`count_matching` of every query, in order, at most ``in_flight`` at a time
        (a series of counts per minute or per day should not open a connection each)."""
        slots = asyncio.Semaphore(in_flight)

        async def one(query: Document) -> int:
            async with slots:
                return await self.count_matching(query, scalar=scalar)

        return list(await asyncio.gather(*(one(q) for q in queries)))

    async def backfill(
        self,
        missing: str,
        keys: Callable[[Document], Mapping[str, Any]],
        *,
        projection: Mapping[str, int],
        server_side: Document,
        embedded: bool | None = None,
        chunk: int = 1000,
    ) -> int:
        """Give every document that lacks ``missing`` its numeric time keys (documents stored
        before those keys existed, which the reads selecting on them would otherwise never
        find); returns how many were written.

        MongoDB computes them itself, in one update: ``server_side`` is the ``$set`` stage of an
        update pipeline (milliseconds of a date by ``$toLong``). The embedded store takes no
        pipeline updates: there each document is read (``projection``) and ``keys(doc)`` written.
        ``embedded`` says which server it is (asked when None).
        """
        query = {missing: {"$exists": False}}
        if embedded is None:
            embedded = await is_embedded_server(self.col.database)
        if not embedded:
            result = await self.col.update_many(query, [{"$set": server_side}])
            return int(result.modified_count)
        # One bulk write per chunk: an update per document cost a round trip each (0.6 ms).
        done = 0
        while True:
            docs = await self.col.find(query, projection).limit(chunk).to_list(None)
            if not docs:
                return done
            await self.col.bulk_write(
                [UpdateOne({"_id": d["_id"]}, {"$set": dict(keys(d))}) for d in docs],
                ordered=False,
            )
            done += len(docs)

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
