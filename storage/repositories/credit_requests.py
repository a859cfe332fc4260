"""``credit_requests``: credit applications awaiting (or past) a reviewer's decision.

A decision is only taken from ``pending_review``; it is written as a replacement guarded by the
stored status, so two reviewers deciding at once cannot both win.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from aml.domain import CreditRequest, CreditRequestStatus
from aml.errors import Conflict, NotFound
from storage.codec import from_doc, to_doc
from storage.repositories.base import Repository

_PENDING = CreditRequestStatus.PENDING_REVIEW
_FINAL = (CreditRequestStatus.APPROVED, CreditRequestStatus.REJECTED)


class CreditRequestRepository(Repository):
    collection_name = "credit_requests"
    indexes = (
        IndexModel([("status", ASCENDING), ("submitted_at", DESCENDING)]),
        IndexModel([("tenant", ASCENDING), ("client_id", ASCENDING), ("submitted_at", DESCENDING)]),
        IndexModel([("status", ASCENDING), ("expires_at", ASCENDING)]),
    )

    async def create(self, request: CreditRequest) -> CreditRequest:
        doc = to_doc(request)
        doc["pending_first"] = 0 if request.status is _PENDING else 1
        try:
            await self.col.insert_one(doc)
        except DuplicateKeyError as exc:
            raise Conflict("credit request exists", request_id=request.id) from exc
        return request

    async def get(self, request_id: str) -> CreditRequest | None:
        doc = await self.col.find_one({"_id": request_id})
        return from_doc(CreditRequest, doc) if doc else None

    async def get_or_raise(self, request_id: str) -> CreditRequest:
        request = await self.get(request_id)
        if request is None:
            raise NotFound("credit request not found", request_id=request_id)
        return request

    async def list_(
        self,
        *,
        tenant: str | None = None,
        client_id: str | None = None,
        statuses: Sequence[CreditRequestStatus] | None = None,
        skip: int = 0,
        limit: int = 50,
    ) -> tuple[list[CreditRequest], int]:
        """Page of requests: pending ones first, then newest first; with the total count."""
        query: dict[str, Any] = {}
        if tenant is not None:
            query["tenant"] = tenant
        if client_id is not None:
            query["client_id"] = client_id
        if statuses:
            query["status"] = {"$in": [s.value for s in statuses]}
        total = await self.count_matching(query, scalar=("status",))
        cursor = (
            self.col.find(query)
            .sort([("pending_first", ASCENDING), ("submitted_at", DESCENDING), ("_id", ASCENDING)])
            .skip(skip)
            .limit(limit)
        )
        return [from_doc(CreditRequest, d) async for d in cursor], int(total)

    async def decide(
        self,
        request_id: str,
        *,
        status: CreditRequestStatus,
        by: str,
        at: datetime,
        note: str | None = None,
    ) -> CreditRequest:
        """Approve or reject a pending request.

        Raises:
            NotFound: no such request.
            Conflict: the request is no longer pending (decided or expired), or ``status`` is
                not a decision.
        """
        if status not in _FINAL:
            raise Conflict("a decision is approved or rejected", status=status.value)
        current = await self.get_or_raise(request_id)
        if current.status is not _PENDING:
            raise Conflict(
                "credit request is not pending", request_id=request_id, status=current.status.value
            )
        decided = dataclasses.replace(
            current, status=status, decided_by=by, decided_at=at, decision_note=note
        )
        doc = to_doc(decided)
        doc["pending_first"] = 1
        result = await self.col.replace_one({"_id": request_id, "status": _PENDING.value}, doc)
        if result.matched_count != 1:
            raise Conflict("credit request was decided meanwhile", request_id=request_id)
        return decided

    async def expire(self, *, now: datetime) -> int:
        """Mark every pending request whose ``expires_at`` has passed as expired; returns how
        many were expired."""
        result = await self.col.update_many(
            {"status": _PENDING.value, "expires_at": {"$lt": now}},
            {"$set": {"status": CreditRequestStatus.EXPIRED.value, "pending_first": 1}},
        )
        return int(result.modified_count)

    async def approval_rate(
        self, *, since: datetime | None = None, tenant: str | None = None
    ) -> tuple[int, int, float]:
        """(approved, decided, approved/decided) over requests decided since ``since``;
        the ratio is 0.0 when nothing was decided."""
        # Conditions as ``$and`` clauses: the embedded store evaluates a date bound inside an
        # aggregation ``$match`` wrongly unless it stands in its own clause.
        clauses: list[dict[str, Any]] = [{"status": {"$in": [s.value for s in _FINAL]}}]
        if since is not None:
            clauses.append({"decided_at": {"$gte": since}})
        if tenant is not None:
            clauses.append({"tenant": tenant})
        pipeline: list[dict[str, Any]] = [
            {"$match": {"$and": clauses}},
            {"$group": {"_id": "$status", "n": {"$sum": 1}}},
        ]
        cursor = await self.col.aggregate(pipeline)
        counts = {str(d["_id"]): int(d["n"]) async for d in cursor}
        approved = counts.get(CreditRequestStatus.APPROVED.value, 0)
        decided = approved + counts.get(CreditRequestStatus.REJECTED.value, 0)
        return approved, decided, (approved / decided if decided else 0.0)
