"""``transactions``: every money movement, attempt and correction, one per dedupe key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument, UpdateMany

from aml.domain import RiskLevel, Transaction, TransactionStatus
from storage.codec import from_doc, to_doc
from storage.repositories.base import (
    BulkInsertResult,
    Repository,
    add_ms_range,
    add_range,
    as_datetime,
    epoch_ms,
)

# Numeric copies of ``occurred_at`` / ``received_at`` (epoch milliseconds) on every document.
OCCURRED_MS = "occurred_ms"
RECEIVED_MS = "received_ms"
# The ``ingest_log`` record of the delivery that stored the document: a spool replay tells its
# own interrupted write (same record) from a redelivery of the same hook (another record).
INGEST_ID = "ingest_id"
# Fields of a transaction document that never hold arrays (see ``Repository.count_matching``).
_SCALAR = ("tenant", "account_id", "client_id", "risk_level", "status")
# Names per ``$in`` query of ``TransactionRepository.windows``.
WINDOWS_CHUNK = 256


class TransactionRepository(Repository):
    collection_name = "transactions"
    # Hot reads (window rebuilds, the pending sweeper, alert explanations) select on one
    # account, counterparty or client and a range of the numeric time keys ``occurred_ms`` /
    # ``received_ms`` (epoch milliseconds, written beside the dates): a MongoDB index serves
    # them, and the embedded store answers numeric ranges in SQL while a date range makes it
    # decode every document in Python.
    indexes = (
        IndexModel([("tenant", ASCENDING), ("dedupe_key", ASCENDING)], unique=True),
        IndexModel([("tenant", ASCENDING), ("account_id", ASCENDING), (OCCURRED_MS, ASCENDING)]),
        IndexModel(
            [
                ("tenant", ASCENDING),
                ("counterparty_account_id", ASCENDING),
                (OCCURRED_MS, ASCENDING),
            ]
        ),
        IndexModel([("tenant", ASCENDING), ("client_id", ASCENDING), (OCCURRED_MS, ASCENDING)]),
        IndexModel([("status", ASCENDING), (RECEIVED_MS, ASCENDING)]),
        # The transactions page: newest first, by risk level, over a period.
        IndexModel([(OCCURRED_MS, DESCENDING)]),
        IndexModel([("risk_level", ASCENDING), (OCCURRED_MS, DESCENDING)]),
    )
    # The embedded store's planner uses single-field indexes only (and only for an equality),
    # so it gets those on the fields the hot reads select on, instead of compound ones it would
    # maintain on every insert and never use.
    # The unique pair still decides what is a duplicate; the lone ``dedupe_key`` serves the
    # look-ups of the stored duplicate (one per redelivered hook, and reconciliations), which
    # otherwise read every document of the collection.
    embedded_indexes = (
        IndexModel([("tenant", ASCENDING), ("dedupe_key", ASCENDING)], unique=True),
        IndexModel([("dedupe_key", ASCENDING)]),
        IndexModel([("account_id", ASCENDING)]),
        IndexModel([("counterparty_account_id", ASCENDING)]),
        IndexModel([("client_id", ASCENDING)]),
        IndexModel([("status", ASCENDING)]),
        IndexModel([(OCCURRED_MS, DESCENDING)]),
        IndexModel([("risk_level", ASCENDING), (OCCURRED_MS, DESCENDING)]),
    )

    async def insert_many(
        self, txs: Sequence[Transaction], *, ingest_ids: Sequence[str] | None = None
    ) -> BulkInsertResult:
        """Store new transactions; ones whose (tenant, dedupe_key) exists are reported as
        duplicates and left untouched.

        Args:
            ingest_ids: per transaction, the ``ingest_log`` record of the delivery it comes
                from, kept on the document (see :meth:`stored_from`).
        """
        docs = [_with_time_keys(_lean(to_doc(t)), t) for t in txs]
        if ingest_ids is not None:
            for doc, ingest_id in zip(docs, ingest_ids, strict=True):
                doc[INGEST_ID] = ingest_id
        return await self.insert_unordered(docs)

    async def ensure_indexes(self, *, embedded: bool = False) -> None:
        """Indexes, after giving documents stored before the numeric time keys existed theirs
        (the hot reads select on those keys, so such a document would otherwise be invisible
        to them)."""
        await self.backfill_time_keys(embedded=embedded)
        await super().ensure_indexes(embedded=embedded)

    async def backfill_time_keys(self, *, embedded: bool | None = None, chunk: int = 1000) -> int:
        """Write ``occurred_ms``/``received_ms`` on documents that lack them; returns how many."""

        def keys(doc: dict[str, Any]) -> dict[str, int]:
            return {
                k: epoch_ms(as_datetime(doc.get(src)))
                for k, src in ((OCCURRED_MS, "occurred_at"), (RECEIVED_MS, "received_at"))
            }

        return await self.backfill(
            OCCURRED_MS,
            keys,
            projection={"occurred_at": 1, "received_at": 1},
            server_side={
                OCCURRED_MS: {"$toLong": "$occurred_at"},
                RECEIVED_MS: {"$toLong": "$received_at"},
            },
            embedded=embedded,
            chunk=chunk,
        )

    async def get(self, tx_id: str) -> Transaction | None:
        doc = await self.col.find_one({"_id": tx_id})
        return from_doc(Transaction, doc) if doc else None

    async def get_many(self, tx_ids: Sequence[str]) -> list[Transaction]:
        cursor = self.col.find({"_id": {"$in": list(tx_ids)}})
        return [from_doc(Transaction, d) async for d in cursor]

    async def get_by_dedupe_key(self, tenant: str, dedupe_key: str) -> Transaction | None:
        found = await self.stored_from(tenant, dedupe_key)
        return found[0] if found else None

    async def stored_from(
        self, tenant: str, dedupe_key: str
    ) -> tuple[Transaction, str | None] | None:
        """The stored transaction of ``(tenant, dedupe_key)`` and the ``ingest_log`` record of
        the delivery that stored it (None for documents stored without one)."""
        found = await self.stored_from_many(tenant, [dedupe_key])
        return found.get(dedupe_key)

    async def stored_from_many(
        self, tenant: str, dedupe_keys: Sequence[str]
    ) -> dict[str, tuple[Transaction, str | None]]:
        """:meth:`stored_from` of several keys of one tenant, in one read; keys with nothing
        stored are left out."""
        keys = list(dict.fromkeys(dedupe_keys))
        if not keys:
            return {}
        value: Any = keys[0] if len(keys) == 1 else {"$in": keys}
        found: dict[str, tuple[Transaction, str | None]] = {}
        async for doc in self.col.find({"tenant": tenant, "dedupe_key": value}):
            origin = doc.get(INGEST_ID)
            found[doc["dedupe_key"]] = (
                from_doc(Transaction, doc),
                origin if isinstance(origin, str) else None,
            )
        return found

    async def set_status(
        self,
        tx_ids: Sequence[str],
        status: TransactionStatus,
        *,
        only_from: TransactionStatus | None = None,
    ) -> int:
        query: dict[str, Any] = {"_id": {"$in": list(tx_ids)}}
        if only_from is not None:
            query["status"] = only_from.value
        result = await self.col.update_many(query, {"$set": {"status": status.value}})
        return int(result.modified_count)

    async def mark_scored(self, risk_by_id: Mapping[str, RiskLevel]) -> int:
        """Mark pending transactions scored with their decision's risk level (one write: an
        update per level, sent together). Returns how many changed."""
        by_level: dict[RiskLevel, list[str]] = {}
        for tx_id, level in risk_by_id.items():
            by_level.setdefault(level, []).append(tx_id)
        if not by_level:
            return 0
        result = await self.col.bulk_write(
            [
                UpdateMany(
                    {"_id": {"$in": ids}, "status": TransactionStatus.PENDING.value},
                    {"$set": {"status": TransactionStatus.SCORED.value, "risk_level": level.value}},
                )
                for level, ids in by_level.items()
            ],
            ordered=False,
        )
        return int(result.modified_count)

    async def update_fields(self, tx_id: str, **fields: Any) -> Transaction | None:
        """Set enrichment fields (currency, balance, counterparty, reversed...)."""
        doc = await self.col.find_one_and_update(
            {"_id": tx_id},
            {"$set": to_doc_fields(fields)},
            return_document=ReturnDocument.AFTER,
        )
        return from_doc(Transaction, doc) if doc else None

    async def mark_reversed(self, tenant: str, dedupe_keys: Sequence[str]) -> list[Transaction]:
        """Mark the tenant's transactions stored under ``dedupe_keys`` as reversed in Fineract.

        Keys with no stored transaction are ignored (the movement was never delivered).

        Returns:
            The transactions this call marked, as stored afterwards; ones already marked are
            left out, so a repeated reconciliation reports nothing new.
        """
        if not dedupe_keys:
            return []
        # The embedded store can hand a boolean set by ``$set`` back as 1.
        query = {
            "tenant": tenant,
            "dedupe_key": {"$in": list(dedupe_keys)},
            "reversed": {"$nin": [True, 1]},
        }
        ids = [doc["_id"] async for doc in self.col.find(query, {"_id": 1})]
        if not ids:
            return []
        await self.col.update_many(
            {"_id": {"$in": ids}, "reversed": {"$nin": [True, 1]}}, {"$set": {"reversed": True}}
        )
        return await self.get_many(ids)

    async def list_pending(self, *, older_than: datetime, limit: int = 500) -> list[Transaction]:
        """Transactions stored but not yet scored, oldest first (the sweeper retries them)."""
        cursor = (
            self.col.find(
                {
                    "status": TransactionStatus.PENDING.value,
                    RECEIVED_MS: {"$lt": epoch_ms(older_than)},
                }
            )
            .sort(RECEIVED_MS, ASCENDING)
            .limit(limit)
        )
        return [from_doc(Transaction, d) async for d in cursor]

    async def history(
        self,
        tenant: str,
        account_id: str,
        *,
        since: datetime,
        until: datetime | None = None,
        limit: int = 10_000,
    ) -> list[Transaction]:
        """Movements touching ``account_id`` (as owner or as counterparty) in [since, until),
        ordered by the transactions' own time. Attempts and corrections are excluded.

        One query per side rather than an ``$or``: each is an index range read on both stores
        (the embedded one evaluates an ``$or`` by decoding the whole collection)."""
        sides = await asyncio.gather(
            *(
                self._window({"tenant": tenant, side: account_id}, since, until, limit)
                for side in ("account_id", "counterparty_account_id")
            )
        )
        merged = {tx.id: tx for side in sides for tx in side}
        return sorted(merged.values(), key=lambda t: (t.occurred_at, t.id))[:limit]

    async def client_history(
        self,
        tenant: str,
        client_id: str,
        *,
        since: datetime,
        until: datetime | None = None,
        limit: int = 10_000,
    ) -> list[Transaction]:
        """Movements recorded for ``client_id`` (on any of its accounts) in [since, until),
        ordered by the transactions' own time; attempts and corrections are excluded, as in
        :meth:`history`."""
        found = await self._window({"tenant": tenant, "client_id": client_id}, since, until, limit)
        return sorted(found, key=lambda t: (t.occurred_at, t.id))

    async def windows(
        self, reads: Sequence[tuple[str, str, str, datetime]], *, limit: int = 10_000
    ) -> list[list[Transaction]]:
        """For each ``(kind, tenant, name, since)``, what :meth:`history` (kind ``"account"``)
        or :meth:`client_history` (kind ``"client"``) answers, in few queries: one ``$in`` per
        tenant, side and chunk of names, from the earliest ``since`` among them.

        A state shard warming up asks for hundreds of windows per batch, and one query per
        window and side made that most of a cold start's load on the store. A chunk that
        returns more than ``limit`` movements per name is read again one window at a time, so
        that a busy account cannot cut another's window. Each stored transaction is one object
        in every window it belongs to."""
        sides = {"account": ("account_id", "counterparty_account_id"), "client": ("client_id",)}
        wanted: dict[tuple[str, str], dict[str, datetime]] = {}
        for kind, tenant, name, since in reads:
            for side in sides[kind]:
                names = wanted.setdefault((tenant, side), {})
                names[name] = min(since, names.get(name, since))
        parts = []
        for (tenant, side), names in wanted.items():
            ordered = sorted(names)
            for i in range(0, len(ordered), WINDOWS_CHUNK):
                parts.append((tenant, side, ordered[i : i + WINDOWS_CHUNK], names))
        answers = await asyncio.gather(
            *(
                self._windows_part(t, side, chunk, since_of, limit)
                for t, side, chunk, since_of in parts
            )
        )
        one: dict[str, Transaction] = {}
        found: dict[tuple[str, str, str], list[Transaction]] = {}
        for (tenant, side, _, _), answer in zip(parts, answers, strict=True):
            for name, txs in answer.items():
                found[(tenant, side, name)] = [one.setdefault(t.id, t) for t in txs]
        out: list[list[Transaction]] = []
        for kind, tenant, name, since in reads:
            start = epoch_ms(since)
            merged = {
                t.id: t
                for side in sides[kind]
                for t in found[(tenant, side, name)]
                if epoch_ms(t.occurred_at) >= start
            }
            out.append(sorted(merged.values(), key=lambda t: (t.occurred_at, t.id))[:limit])
        return out

    async def _windows_part(
        self,
        tenant: str,
        side: str,
        names: list[str],
        since_of: Mapping[str, datetime],
        limit: int,
    ) -> dict[str, list[Transaction]]:
        """One chunk of :meth:`windows`: the movements of ``names`` on ``side``, by name."""
        cap = limit * len(names)
        since = min(since_of[n] for n in names)
        txs = await self._window({"tenant": tenant, side: {"$in": names}}, since, None, cap + 1)
        if len(txs) > cap:
            alone = await asyncio.gather(
                *(
                    self._window({"tenant": tenant, side: n}, since_of[n], None, limit)
                    for n in names
                )
            )
            return dict(zip(names, alone, strict=True))
        out: dict[str, list[Transaction]] = {n: [] for n in names}
        for tx in txs:
            out[getattr(tx, side)].append(tx)
        return out

    async def _window(
        self,
        match: dict[str, Any],
        since: datetime,
        until: datetime | None,
        limit: int,
        *,
        newest_first: bool = False,
    ) -> list[Transaction]:
        """Movements matching ``match`` (equalities) with ``since <= occurred_at < until``."""
        # Stored dates have millisecond precision (BSON), so do the keys: the same bounds a date
        # range would apply.
        time_q: dict[str, Any] = {"$gte": epoch_ms(since)}
        if until is not None:
            time_q["$lt"] = epoch_ms(until)
        query = {
            **match,
            OCCURRED_MS: time_q,
            "status": {"$in": [TransactionStatus.PENDING.value, TransactionStatus.SCORED.value]},
        }
        order = DESCENDING if newest_first else ASCENDING
        cursor = self.col.find(query).sort([(OCCURRED_MS, order), ("_id", order)]).limit(limit)
        return [from_doc(Transaction, d) async for d in cursor]

    async def recent_touching(
        self,
        accounts: Sequence[tuple[str, str]],
        *,
        since: datetime,
        until: datetime,
        limit: int,
    ) -> list[Transaction]:
        """Movements touching any of the ``(tenant, account_id)`` accounts (as owner or as
        counterparty) with ``since <= occurred_at <= until``, newest first, at most ``limit``
        (one index range read per account and side, run together). Attempts and corrections are
        excluded.

        When ``limit`` is reached the answer holds every such movement newer than its oldest
        one (those sharing the oldest instant may be cut)."""
        pairs = sorted(set(accounts))
        if not pairs or limit <= 0:
            return []
        # ``until`` is inclusive here: the window ends just after it.
        end = until + timedelta(milliseconds=1)
        # One index range read per account and side (see :meth:`history`), newest first.
        parts = await asyncio.gather(
            *(
                self._window({"tenant": t, side: a}, since, end, limit, newest_first=True)
                for t, a in pairs
                for side in ("account_id", "counterparty_account_id")
            )
        )
        merged = {tx.id: tx for part in parts for tx in part}
        newest = sorted(merged.values(), key=lambda t: (t.occurred_at, t.id), reverse=True)
        return newest[:limit]

    async def search(
        self,
        *,
        tenant: str | None = None,
        account_id: str | None = None,
        client_id: str | None = None,
        min_amount_minor: int | None = None,
        max_amount_minor: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        risk_levels: Sequence[RiskLevel] = (),
        skip: int = 0,
        limit: int = 50,
    ) -> tuple[list[Transaction], int]:
        query: dict[str, Any] = {}
        if risk_levels:
            query["risk_level"] = {"$in": [r.value for r in risk_levels]}
        if tenant:
            query["tenant"] = tenant
        if account_id:
            query["account_id"] = account_id
        if client_id:
            query["client_id"] = client_id
        add_range(query, "amount_minor", gte=min_amount_minor, lte=max_amount_minor)
        # On the numeric time key, which an index serves for the range and the sort on either
        # server: a date range made the embedded store parse every stored date (0.56 s for the
        # last day's page at 200,000 transactions). Ties are broken by id, so pages never overlap.
        add_ms_range(query, OCCURRED_MS, since, until)
        total = await self.count_matching(query, scalar=_SCALAR)
        cursor = (
            self.col.find(query)
            .sort([(OCCURRED_MS, DESCENDING), ("_id", DESCENDING)])
            .skip(skip)
            .limit(limit)
        )
        return [from_doc(Transaction, d) async for d in cursor], int(total)

    async def client_ids(self, tenant: str, *, since: datetime, until: datetime) -> list[str]:
        """Every client with a transaction in [since, until), sorted; streamed from an
        aggregation cursor (a ``distinct`` answer is one document, capped at 16 MB)."""
        # On the numeric time key (its index serves the range on MongoDB); each bound in its own
        # ``$and`` clause, as every range inside an aggregation ``$match`` here.
        pipeline: list[dict[str, Any]] = [
            {
                "$match": {
                    "$and": [
                        {"tenant": tenant},
                        {OCCURRED_MS: {"$gte": epoch_ms(since)}},
                        {OCCURRED_MS: {"$lt": epoch_ms(until)}},
                        {"client_id": {"$ne": None}},
                    ]
                }
            },
            {"$group": {"_id": "$client_id"}},
            {"$sort": {"_id": ASCENDING}},
        ]
        cursor = await self.col.aggregate(pipeline)
        ids = {str(d["_id"]) async for d in cursor if d.get("_id") is not None}
        return sorted(ids)

    async def iter_client_chunks(
        self,
        tenant: str,
        *,
        since: datetime,
        until: datetime,
        clients_per_chunk: int,
        client_ids: Sequence[str] | None = None,
    ) -> AsyncGenerator[dict[str, list[Transaction]], None]:
        """Stream the tenant's transactions in [since, until) grouped by client, a chunk of
        clients at a time, each client's transactions in time order.

        The client ids are read first; each chunk is then one indexed query
        (``tenant, client_id $in, occurred_ms``) sorted by client and time, so neither the
        whole tenant nor a skip offset is ever held or walked.

        Args:
            tenant: tenant to read.
            since: first instant (inclusive).
            until: end instant (exclusive).
            clients_per_chunk: clients per yielded chunk (>= 1).
            client_ids: the clients to read, when already known (default: every client with a
                transaction in the window, see :meth:`client_ids`).

        Yields:
            ``client_id -> transactions`` for up to ``clients_per_chunk`` clients; clients
            without a transaction in the window are left out.
        """
        if clients_per_chunk < 1:
            raise ValueError("clients_per_chunk must be >= 1")
        ids = (
            list(client_ids)
            if client_ids is not None
            else await self.client_ids(tenant, since=since, until=until)
        )
        for start in range(0, len(ids), clients_per_chunk):
            part = ids[start : start + clients_per_chunk]
            # ``$in`` even for one client: a bare-value match on an indexed field can miss on
            # the embedded store.
            query = {
                "tenant": tenant,
                "client_id": {"$in": part},
                OCCURRED_MS: {"$gte": epoch_ms(since), "$lt": epoch_ms(until)},
            }
            cursor = self.col.find(query).sort(
                [("client_id", ASCENDING), (OCCURRED_MS, ASCENDING), ("_id", ASCENDING)]
            )
            chunk: dict[str, list[Transaction]] = {}
            async for doc in cursor:
                tx = from_doc(Transaction, doc)
                if tx.client_id is not None:
                    chunk.setdefault(tx.client_id, []).append(tx)
            if chunk:
                yield chunk

    async def count(self, query: dict[str, Any] | None = None) -> int:
        return await self.count_matching(query)


def _with_time_keys(doc: dict[str, Any], tx: Transaction) -> dict[str, Any]:
    doc[OCCURRED_MS] = epoch_ms(tx.occurred_at)
    doc[RECEIVED_MS] = epoch_ms(tx.received_at)
    return doc


def _lean(doc: dict[str, Any]) -> dict[str, Any]:
    """Leave out unset optional fields: about half of a hook's fields are empty, and the store's
    per-document cost grows with the field count (decoding fills the defaults back in)."""
    return {k: v for k, v in doc.items() if v is not None and v != {}}


def to_doc_fields(fields: dict[str, Any]) -> dict[str, Any]:
    from storage.codec import _encode

    return {k: _encode(v) for k, v in fields.items()}
