"""``audit_log``: append-only, hash-chained record of who did what.

``seq`` carries a unique index, so two concurrent appends cannot both extend the chain from the
same entry: the loser gets a duplicate-key error, re-reads the tail and retries. Hashing lives in
``aml.audit``; this module only stores and reads entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from aml.audit import build_entry, verify_chain
from aml.domain import AuditEntry
from aml.errors import Conflict
from storage.codec import from_doc, to_doc
from storage.repositories.base import Repository, add_range

_MAX_RETRIES = 100
_VERIFY_CHUNK = 1000


# Fields of an audit entry that never hold arrays (see ``Repository.count_matching``).
_SCALAR = ("actor", "action", "target_type", "target_id")


class AuditLogRepository(Repository):
    collection_name = "audit_log"
    indexes = (
        IndexModel([("seq", ASCENDING)], unique=True),
        IndexModel([("actor", ASCENDING), ("seq", DESCENDING)]),
        IndexModel([("action", ASCENDING), ("seq", DESCENDING)]),
        IndexModel([("target_type", ASCENDING), ("target_id", ASCENDING), ("seq", DESCENDING)]),
    )
    # The embedded store searches an index for an equality in a read only when one is on the
    # field alone: the trail of one alert or case (who escalated it, checked on every decision
    # of an escalated alert) would otherwise be found by walking the whole log.
    embedded_indexes = (*indexes, IndexModel([("target_id", ASCENDING)]))

    async def last(self) -> AuditEntry | None:
        """The newest entry (the chain's tail)."""
        cursor = self.col.find({}).sort("seq", DESCENDING).limit(1)
        async for doc in cursor:
            return from_doc(AuditEntry, doc)
        return None

    async def append(
        self,
        *,
        at: datetime,
        actor: str,
        action: str,
        target_type: str,
        target_id: str | None = None,
        details: Mapping[str, Any] | None = None,
        ip: str | None = None,
    ) -> AuditEntry:
        """Chain a new entry onto the tail and store it. Safe under concurrent appends."""
        for _ in range(_MAX_RETRIES):
            entry = build_entry(
                await self.last(),
                at=at,
                actor=actor,
                action=action,
                target_type=target_type,
                target_id=target_id,
                details=details,
                ip=ip,
            )
            doc = to_doc(entry)
            doc["_id"] = entry.seq
            try:
                await self.col.insert_one(doc)
            except DuplicateKeyError:
                continue  # another append took this seq: chain onto it instead
            return entry
        raise Conflict("audit log append kept colliding", action=action)

    async def list_(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        skip: int = 0,
        limit: int = 50,
    ) -> tuple[list[AuditEntry], int]:
        """Page of entries, newest first, with the total matching count."""
        query: dict[str, Any] = {}
        if actor is not None:
            query["actor"] = actor
        if action is not None:
            query["action"] = action
        if target_type is not None:
            query["target_type"] = target_type
        if target_id is not None:
            query["target_id"] = target_id
        add_range(query, "at", gte=since, lt=until)
        total = await self.count_matching(query, scalar=_SCALAR)
        cursor = self.col.find(query).sort("seq", DESCENDING).skip(skip).limit(limit)
        return [from_doc(AuditEntry, d) async for d in cursor], int(total)

    async def verify(self) -> int | None:
        """Walk the whole chain; return the seq of the first tampered, missing-after or
        reordered entry, or None when the chain is intact."""
        prev: AuditEntry | None = None
        after = 0
        while True:
            cursor = (
                self.col.find({"seq": {"$gt": after}}).sort("seq", ASCENDING).limit(_VERIFY_CHUNK)
            )
            chunk = [from_doc(AuditEntry, d) async for d in cursor]
            if not chunk:
                return None
            broken = verify_chain(chunk, prev=prev)
            if broken is not None:
                return broken
            prev = chunk[-1]
            after = prev.seq

    async def count(self) -> int:
        return await self.count_matching()
