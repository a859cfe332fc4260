"""``cases``: investigations grouping alerts and transactions, numbered ``CASE-YYYY-NNNNNN``.

Numbers come from an atomic per-year counter in the ``counters`` collection. Every change is a
whole-document replacement guarded by a revision number (``rev``), so concurrent writers never
lose each other's notes or links; callers that show a case and then change its status pass the
``updated_at`` they saw and get ``Conflict`` when someone changed it in between. Notes can only
be appended.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from aml.domain import Case, CaseNote, CaseStatus
from aml.errors import Conflict, Forbidden, NotFound
from storage.codec import from_doc, to_doc
from storage.repositories.base import Document, Repository, add_range

CaseSort = Literal["created_at", "updated_at", "sla_due_at"]
COUNTERS = "counters"
_MAX_RETRIES = 50
_REQUESTED_BY = "pending_requested_by"  # stored only: who asked for the pending transition


def _merge(ids: Sequence[str], more: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*ids, *more]))


def _rev_guard(doc: Document) -> Any:
    """Filter value matching ``doc``'s revision (documents written by other tools may lack it)."""
    return doc["rev"] if "rev" in doc else {"$exists": False}


class CaseRepository(Repository):
    collection_name = "cases"
    indexes = (
        IndexModel([("number", ASCENDING)], unique=True),
        IndexModel([("status", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("tenant", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("assignee", ASCENDING), ("status", ASCENDING)]),
        IndexModel([("alert_ids", ASCENDING)]),
        IndexModel([("client_id", ASCENDING)]),
    )

    async def next_number(self, year: int) -> str:
        """Allocate the next case number of ``year`` (never reused, gap-free under success)."""
        counters = self.db[COUNTERS]
        for _ in range(_MAX_RETRIES):
            try:
                doc = await counters.find_one_and_update(
                    {"_id": f"case:{year}"},
                    {"$inc": {"n": 1}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                continue  # two first-of-the-year upserts raced on a real server: retry
            if doc is not None:
                return f"CASE-{year}-{int(doc['n']):06d}"
        raise Conflict("could not allocate a case number", year=year)

    async def create(self, case: Case) -> Case:
        """Store ``case`` under a freshly allocated number (``case.number`` is ignored)."""
        number = await self.next_number(case.created_at.year)
        stored = dataclasses.replace(case, number=number)
        doc = to_doc(stored)
        doc["rev"] = 0
        try:
            await self.col.insert_one(doc)
        except DuplicateKeyError as exc:
            raise Conflict("case exists", case_id=case.id) from exc
        return stored

    async def get(self, case_id: str) -> Case | None:
        doc = await self.col.find_one({"_id": case_id})
        return from_doc(Case, doc) if doc else None

    async def get_or_raise(self, case_id: str) -> Case:
        case = await self.get(case_id)
        if case is None:
            raise NotFound("case not found", case_id=case_id)
        return case

    async def get_by_number(self, number: str) -> Case | None:
        doc = await self.col.find_one({"number": number})
        return from_doc(Case, doc) if doc else None

    async def pending_requested_by(self, case_id: str) -> str | None:
        """Who requested the case's pending transition (None when nothing is pending)."""
        doc = await self.col.find_one({"_id": case_id}, {_REQUESTED_BY: 1})
        if doc is None:
            raise NotFound("case not found", case_id=case_id)
        value = doc.get(_REQUESTED_BY)
        return str(value) if value is not None else None

    async def _update(
        self,
        case_id: str,
        change: Callable[[Case, Document], Case],
        *,
        expected_updated_at: datetime | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Case:
        for _ in range(_MAX_RETRIES):
            doc = await self.col.find_one({"_id": case_id})
            if doc is None:
                raise NotFound("case not found", case_id=case_id)
            current = from_doc(Case, doc)
            if expected_updated_at is not None and current.updated_at != expected_updated_at:
                raise Conflict(
                    "case was changed by someone else; reload it",
                    case_id=case_id,
                    updated_at=current.updated_at.isoformat(),
                )
            updated = change(current, doc)
            rev = int(doc.get("rev", 0))
            new_doc = to_doc(updated)
            new_doc["rev"] = rev + 1
            kept = doc.get(_REQUESTED_BY)
            if kept is not None:
                new_doc[_REQUESTED_BY] = kept
            new_doc.update(extra or {})
            result = await self.col.replace_one({"_id": case_id, "rev": _rev_guard(doc)}, new_doc)
            if result.matched_count == 1:
                return updated
        raise Conflict("case is being changed concurrently", case_id=case_id)

    async def add_alerts(self, case_id: str, alert_ids: Sequence[str], *, at: datetime) -> Case:
        return await self._update(
            case_id,
            lambda c, _: dataclasses.replace(
                c, alert_ids=_merge(c.alert_ids, alert_ids), updated_at=at
            ),
        )

    async def remove_alerts(self, case_id: str, alert_ids: Sequence[str], *, at: datetime) -> Case:
        gone = set(alert_ids)
        return await self._update(
            case_id,
            lambda c, _: dataclasses.replace(
                c, alert_ids=tuple(a for a in c.alert_ids if a not in gone), updated_at=at
            ),
        )

    async def add_transactions(
        self, case_id: str, transaction_ids: Sequence[str], *, at: datetime
    ) -> Case:
        return await self._update(
            case_id,
            lambda c, _: dataclasses.replace(
                c, transaction_ids=_merge(c.transaction_ids, transaction_ids), updated_at=at
            ),
        )

    async def remove_transactions(
        self, case_id: str, transaction_ids: Sequence[str], *, at: datetime
    ) -> Case:
        gone = set(transaction_ids)
        return await self._update(
            case_id,
            lambda c, _: dataclasses.replace(
                c,
                transaction_ids=tuple(t for t in c.transaction_ids if t not in gone),
                updated_at=at,
            ),
        )

    async def add_note(self, case_id: str, note: CaseNote) -> Case:
        """Append ``note``; existing notes are never changed."""
        return await self._update(
            case_id,
            lambda c, _: dataclasses.replace(c, notes=(*c.notes, note), updated_at=note.at),
        )

    async def assign(self, case_id: str, *, assignee: str | None, at: datetime) -> Case:
        return await self._update(
            case_id, lambda c, _: dataclasses.replace(c, assignee=assignee, updated_at=at)
        )

    async def update_status(
        self,
        case_id: str,
        *,
        status: CaseStatus,
        at: datetime,
        expected_updated_at: datetime | None = None,
    ) -> Case:
        """Set the status directly (clears any pending request).

        Raises:
            Conflict: ``expected_updated_at`` is given and the case changed since.
        """
        return await self._update(
            case_id,
            lambda c, _: dataclasses.replace(c, status=status, pending_status=None, updated_at=at),
            expected_updated_at=expected_updated_at,
            extra={_REQUESTED_BY: None},
        )

    async def request_status(
        self,
        case_id: str,
        *,
        status: CaseStatus,
        requested_by: str,
        at: datetime,
        expected_updated_at: datetime | None = None,
    ) -> Case:
        """Ask for a transition that needs a second user's approval (four-eyes)."""
        return await self._update(
            case_id,
            lambda c, _: dataclasses.replace(c, pending_status=status, updated_at=at),
            expected_updated_at=expected_updated_at,
            extra={_REQUESTED_BY: requested_by},
        )

    async def approve_pending(
        self,
        case_id: str,
        *,
        approver: str,
        at: datetime,
        expected_updated_at: datetime | None = None,
    ) -> Case:
        """Apply the pending transition, approved by ``approver``.

        Raises:
            Conflict: nothing is pending, or the case changed since ``expected_updated_at``.
            Forbidden: the approver is the user who requested the transition.
        """

        def change(case: Case, doc: Document) -> Case:
            if case.pending_status is None:
                raise Conflict("no transition is pending", case_id=case_id)
            if doc.get(_REQUESTED_BY) == approver:
                raise Forbidden("a second user must approve", case_id=case_id)
            return dataclasses.replace(
                case,
                status=case.pending_status,
                pending_status=None,
                approved_by=approver,
                updated_at=at,
            )

        return await self._update(
            case_id,
            change,
            expected_updated_at=expected_updated_at,
            extra={_REQUESTED_BY: None},
        )

    async def reject_pending(
        self, case_id: str, *, at: datetime, expected_updated_at: datetime | None = None
    ) -> Case:
        """Drop the pending transition without applying it."""
        return await self._update(
            case_id,
            lambda c, _: dataclasses.replace(c, pending_status=None, updated_at=at),
            expected_updated_at=expected_updated_at,
            extra={_REQUESTED_BY: None},
        )

    async def list_(
        self,
        *,
        tenant: str | None = None,
        statuses: Sequence[CaseStatus] | None = None,
        assignee: str | None = None,
        client_id: str | None = None,
        alert_id: str | None = None,
        pending_only: bool = False,
        created_from: datetime | None = None,
        created_before: datetime | None = None,
        sort: CaseSort = "created_at",
        descending: bool = True,
        skip: int = 0,
        limit: int = 50,
    ) -> tuple[list[Case], int]:
        """Filtered page of cases and the total matching count (ties broken by id)."""
        query: dict[str, Any] = {}
        if tenant is not None:
            query["tenant"] = tenant
        if statuses:
            query["status"] = {"$in": [s.value for s in statuses]}
        if assignee is not None:
            query["assignee"] = assignee
        if client_id is not None:
            query["client_id"] = client_id
        if alert_id is not None:
            # ``$in`` rather than a bare value: the embedded store's index lookup on array
            # fields misses bare-value matches; both forms mean the same to MongoDB.
            query["alert_ids"] = {"$in": [alert_id]}
        if pending_only:
            query["pending_status"] = {"$in": [s.value for s in CaseStatus]}
        add_range(query, "created_at", gte=created_from, lt=created_before)
        direction = DESCENDING if descending else ASCENDING
        total = await self.count_matching(query, scalar=("status",))
        cursor = (
            self.col.find(query)
            .sort([(sort, direction), ("_id", direction)])
            .skip(skip)
            .limit(limit)
        )
        return [from_doc(Case, d) async for d in cursor], int(total)

    async def count_by_status(self, *, tenant: str | None = None) -> dict[CaseStatus, int]:
        pipeline: list[dict[str, Any]] = [
            {"$match": {"tenant": tenant} if tenant else {}},
            {"$group": {"_id": "$status", "n": {"$sum": 1}}},
        ]
        cursor = await self.col.aggregate(pipeline)
        counts = {str(d["_id"]): int(d["n"]) async for d in cursor}
        return {s: counts.get(s.value, 0) for s in CaseStatus}
