"""``alerts``: one open alert per customer; later risky transactions are grouped onto it.

Grouping guard: while an alert is open its ``open_key`` is ``tenant|customer_key``; once closed
it becomes ``closed|<id>``, and once it holds ``MAX_GROUPED_TRANSACTIONS`` transactions
``full|<id>`` (still open, no longer grouped onto). A unique index on ``open_key`` therefore
allows at most one alert per customer that is grouped onto, even when two scorer replicas raise
one at the same instant.

Changes are written as whole-document replacements guarded by a revision number (``rev``):
standard MongoDB, race-safe, and it keeps datetimes typed on every server we support (update
operators that write dates are not portable to the embedded store).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pymongo import ASCENDING, DESCENDING, IndexModel, ReplaceOne
from pymongo.errors import DuplicateKeyError

from aml.domain import Alert, AlertStatus, AnalystDecision, RiskLevel
from aml.errors import Conflict, NotFound
from storage.codec import from_doc, to_doc
from storage.repositories.base import (
    Document,
    Repository,
    add_ms_range,
    add_range,
    as_datetime,
    epoch_ms,
)

AlertSort = Literal["created_at", "score", "updated_at", "sla_due_at"]
Escalate = Literal["escalate"]

_RISK_RANK = {RiskLevel.LOW: 0, RiskLevel.MEDIUM: 1, RiskLevel.HIGH: 2, RiskLevel.CRITICAL: 3}
_CLOSED_BY = {
    AnalystDecision.LEGITIMATE: AlertStatus.CLOSED_LEGITIMATE,
    AnalystDecision.SUSPICIOUS: AlertStatus.CLOSED_SUSPICIOUS,
    AnalystDecision.CONFIRMED_FRAUD: AlertStatus.CLOSED_FRAUD,
}
OPEN_STATUSES = tuple(s for s in AlertStatus if s.is_open)
_MAX_RETRIES = 50
# Transactions grouped onto one alert before the customer's next ones open another (a batch's
# own may take it past, once). Every grouping rewrites the alert whole, and a customer alerting
# on every transaction for months while nobody closed the alert would otherwise grow one
# document without bound, towards MongoDB's 16 MB, past which every grouping, and so the
# scoring of that customer's transactions, would fail.
MAX_GROUPED_TRANSACTIONS = 1_000
# ``created_at`` in epoch milliseconds, beside it: the per-day counts select on it (a date range
# makes the embedded store decode every alert in Python).
CREATED_MS = "created_ms"
# ``sla_due_at`` likewise: the overdue counts and the queue's "overdue" filter select on it.
SLA_DUE_MS = "sla_due_ms"
# Fields of an alert document that never hold arrays (see ``Repository.count_matching``).
_SCALAR = ("status", "risk_level", "tenant", "customer_key", "assignee", "case_id")


def _rev_guard(doc: Document) -> Any:
    """Filter value matching ``doc``'s revision (documents written by other tools may lack it)."""
    return doc["rev"] if "rev" in doc else {"$exists": False}


def open_key(alert: Alert) -> str:
    """Value of the grouping guard for ``alert`` (unique among all alerts).

    An open alert holding ``MAX_GROUPED_TRANSACTIONS`` transactions or more gives its customer's
    key up (``full|<id>``): it stays open in the queue, and the customer's next risky
    transaction opens a new alert that later ones are grouped onto.
    """
    if not alert.status.is_open:
        return f"closed|{alert.id}"
    if len(alert.transaction_ids) >= MAX_GROUPED_TRANSACTIONS:
        return f"full|{alert.id}"
    return f"{alert.tenant}|{alert.customer_key}"


def _merge(ids: Sequence[str], more: Sequence[str]) -> tuple[str, ...]:
    seen = dict.fromkeys(ids)
    seen.update(dict.fromkeys(more))
    return tuple(seen)


def _grouped(current: Alert, candidate: Alert) -> Alert:
    risk = max(current.risk_level, candidate.risk_level, key=_RISK_RANK.__getitem__)
    return dataclasses.replace(
        current,
        transaction_ids=_merge(current.transaction_ids, candidate.transaction_ids),
        rule_ids=_merge(current.rule_ids, candidate.rule_ids),
        score=max(current.score, candidate.score),
        risk_level=risk,
        updated_at=max(current.updated_at, candidate.updated_at),
        # A riskier transaction may shorten the deadline, never extend it.
        sla_due_at=min(current.sla_due_at, candidate.sla_due_at),
    )


# The queue sorted by deadline reads the numeric key: the ``(status, sla_due_ms)`` index then
# serves an open queue's filter and order together (the same order: both hold the same
# instant), where the date's own index left the embedded store sorting every open alert.
_SORT_FIELD: dict[str, str] = {"sla_due_at": SLA_DUE_MS}


class AlertRepository(Repository):
    collection_name = "alerts"
    indexes = (
        IndexModel([("open_key", ASCENDING)], unique=True),
        IndexModel([("status", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel(
            [("tenant", ASCENDING), ("customer_key", ASCENDING), ("created_at", DESCENDING)]
        ),
        IndexModel([("risk_level", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("assignee", ASCENDING), ("status", ASCENDING)]),
        IndexModel([("rule_ids", ASCENDING)]),
        IndexModel([("decided_at", ASCENDING)]),
        IndexModel([("case_id", ASCENDING)]),
        # The queue's sort keys: the first page is then read in order instead of sorting every
        # matching alert (100,000 alerts: 2 s to a few ms on the embedded store).
        IndexModel([("created_at", DESCENDING)]),
        IndexModel([("score", DESCENDING)]),
        IndexModel([(SLA_DUE_MS, ASCENDING)]),
        IndexModel([(CREATED_MS, ASCENDING)]),
        # The overview's counters, answered from these alone: open alerts per risk level,
        # open alerts past their deadline.
        IndexModel([("risk_level", ASCENDING), ("status", ASCENDING)]),
        # An alert's related alerts (its detail page): the customer's, of any tenant filter. The
        # compound index above serves them only with the tenant given, and the embedded store
        # searches an index for an equality only when one is on the field alone.
        IndexModel([("customer_key", ASCENDING)]),
        # An analyst's own queue, likewise (the pair with status serves it on MongoDB only).
        IndexModel([("assignee", ASCENDING)]),
        IndexModel([("status", ASCENDING), (SLA_DUE_MS, ASCENDING)]),
    )

    @staticmethod
    def _doc(alert: Alert, rev: int) -> Document:
        doc = to_doc(alert)
        doc["open_key"] = open_key(alert)
        doc["rev"] = rev
        doc[CREATED_MS] = epoch_ms(alert.created_at)
        doc[SLA_DUE_MS] = epoch_ms(alert.sla_due_at)
        return doc

    async def ensure_indexes(self, *, embedded: bool = False) -> None:
        """Indexes, after giving alerts stored before the numeric time keys existed theirs."""
        await self.backfill(
            SLA_DUE_MS,
            lambda doc: {
                CREATED_MS: epoch_ms(as_datetime(doc.get("created_at"))),
                SLA_DUE_MS: epoch_ms(as_datetime(doc.get("sla_due_at"))),
            },
            projection={"created_at": 1, "sla_due_at": 1},
            embedded=embedded,
            server_side={
                CREATED_MS: {"$toLong": "$created_at"},
                SLA_DUE_MS: {"$toLong": "$sla_due_at"},
            },
        )
        await super().ensure_indexes(embedded=embedded)

    async def create(self, alert: Alert) -> Alert:
        """Insert ``alert``; Conflict if its id exists or its customer already has an open one."""
        try:
            await self.col.insert_one(self._doc(alert, 0))
        except DuplicateKeyError as exc:
            raise Conflict("alert exists", alert_id=alert.id) from exc
        return alert

    async def get(self, alert_id: str) -> Alert | None:
        doc = await self.col.find_one({"_id": alert_id})
        return from_doc(Alert, doc) if doc else None

    async def get_or_raise(self, alert_id: str) -> Alert:
        alert = await self.get(alert_id)
        if alert is None:
            raise NotFound("alert not found", alert_id=alert_id)
        return alert

    async def get_open_for_customer(self, *, tenant: str, customer_key: str) -> Alert | None:
        doc = await self.col.find_one({"open_key": f"{tenant}|{customer_key}"})
        return from_doc(Alert, doc) if doc else None

    async def _replace(self, doc: Document, alert: Alert) -> bool:
        rev = int(doc.get("rev", 0))
        result = await self.col.replace_one(
            {"_id": doc["_id"], "rev": _rev_guard(doc)}, self._doc(alert, rev + 1)
        )
        return result.matched_count == 1

    async def _update(self, alert_id: str, change: Callable[[Alert], Alert]) -> Alert:
        """Apply ``change`` to the stored alert, retrying when someone else wrote in between."""
        for _ in range(_MAX_RETRIES):
            doc = await self.col.find_one({"_id": alert_id})
            if doc is None:
                raise NotFound("alert not found", alert_id=alert_id)
            updated = change(from_doc(Alert, doc))
            if await self._replace(doc, updated):
                return updated
        raise Conflict("alert is being changed concurrently", alert_id=alert_id)

    async def attach_or_create(self, candidate: Alert) -> Alert:
        """Group ``candidate`` onto the customer's open alert, or store it as a new alert.

        The open alert gains the candidate's transaction and rule ids (no duplicates), the higher
        score and risk level, and a bumped ``updated_at``. Returns the stored alert: its id is the
        candidate's id exactly when a new alert was created (or had been, by an earlier attempt
        to store the same candidate: that alert is returned as it is now, open or closed).
        """
        key = f"{candidate.tenant}|{candidate.customer_key}"
        for _ in range(_MAX_RETRIES):
            doc = await self.col.find_one({"open_key": key})
            if doc is not None:
                grouped = _grouped(from_doc(Alert, doc), candidate)
                if await self._replace(doc, grouped):
                    return grouped
                continue  # changed or closed meanwhile: look again
            try:
                await self.col.insert_one(self._doc(candidate, 0))
                return candidate
            except DuplicateKeyError:
                stored = await self.get(candidate.id)
                if stored is not None:
                    return stored  # stored by an earlier attempt (closed since, or grouped on)
                continue  # another writer opened one first: group onto it
        raise Conflict("alert grouping kept colliding", customer_key=candidate.customer_key)

    async def attach_or_create_many(self, candidates: Sequence[Alert]) -> list[Alert]:
        """``attach_or_create`` for each candidate, in three writes for the whole set when no
        other writer touches the same alerts: one read of the customers' open alerts, one
        unordered insert of the new ones, one unordered bulk of the grouped replacements.

        A candidate whose write lost a race (a customer's alert opened, grouped onto or closed
        by someone else meanwhile) goes through ``attach_or_create``. A bulk replacement does not
        say which of its documents matched, so after a partial match each grouped alert is read
        back: a candidate whose transactions are all on its customer's alert (open, or closed
        since) is done, the others are grouped again. Returns the stored alerts in the
        candidates' order; candidates of the same customer are grouped one after the other.
        """
        keys = [f"{c.tenant}|{c.customer_key}" for c in candidates]
        if len(set(keys)) != len(keys):
            return [await self.attach_or_create(c) for c in candidates]
        found = {d["open_key"]: d async for d in self.col.find({"open_key": {"$in": keys}})}
        out: dict[int, Alert] = {}
        again: list[int] = []
        new = [i for i, k in enumerate(keys) if k not in found]
        if new:
            stored = await self.insert_unordered([self._doc(candidates[i], 0) for i in new])
            out.update((new[j], candidates[new[j]]) for j in stored.inserted)
            again += [new[j] for j in stored.duplicates]
        grouping = {i: found[k] for i, k in enumerate(keys) if k in found}
        if grouping:
            grouped = {i: _grouped(from_doc(Alert, d), candidates[i]) for i, d in grouping.items()}
            result = await self.col.bulk_write(
                [
                    ReplaceOne(
                        {"_id": d["_id"], "rev": _rev_guard(d)},
                        self._doc(grouped[i], int(d.get("rev", 0)) + 1),
                    )
                    for i, d in grouping.items()
                ],
                ordered=False,
            )
            if result.matched_count == len(grouping):
                out.update(grouped)
            else:
                ids = [d["_id"] for d in grouping.values()]
                now = {d["_id"]: d async for d in self.col.find({"_id": {"$in": ids}})}
                for i, d in grouping.items():
                    current = now.get(d["_id"])
                    if current is not None and set(candidates[i].transaction_ids) <= set(
                        current.get("transaction_ids", ())
                    ):
                        out[i] = from_doc(Alert, current)
                    else:
                        again.append(i)
        for i in sorted(again):
            out[i] = await self.attach_or_create(candidates[i])
        return [out[i] for i in range(len(candidates))]

    async def assign(self, alert_id: str, *, assignee: str | None, at: datetime) -> Alert:
        """Set (or clear, with None) the analyst working on the alert."""
        return await self._update(
            alert_id, lambda a: dataclasses.replace(a, assignee=assignee, updated_at=at)
        )

    async def assign_many(
        self, alert_ids: Sequence[str], *, assignee: str | None, at: datetime
    ) -> list[Alert]:
        """Bulk assignment; unknown ids are skipped. Returns the alerts that were assigned."""
        done: list[Alert] = []
        for alert_id in dict.fromkeys(alert_ids):
            try:
                done.append(await self.assign(alert_id, assignee=assignee, at=at))
            except NotFound:
                continue
        return done

    async def decide(
        self,
        alert_id: str,
        *,
        decision: AnalystDecision | Escalate,
        by: str,
        at: datetime,
        note: str | None = None,
    ) -> Alert:
        """Record an analyst's verdict and close the alert (or escalate it).

        Raises:
            NotFound: no such alert.
            Conflict: the alert is already closed.
        """

        def change(alert: Alert) -> Alert:
            if not alert.status.is_open:
                raise Conflict("alert is closed", alert_id=alert_id, status=alert.status.value)
            if decision == "escalate":
                return dataclasses.replace(
                    alert, status=AlertStatus.ESCALATED, decision_note=note, updated_at=at
                )
            return dataclasses.replace(
                alert,
                status=_CLOSED_BY[decision],
                decision=decision,
                decision_note=note,
                decided_by=by,
                decided_at=at,
                updated_at=at,
            )

        return await self._update(alert_id, change)

    async def set_status(self, alert_id: str, *, status: AlertStatus, at: datetime) -> Alert:
        """Move an open alert between open states (e.g. open -> under_review)."""

        def change(alert: Alert) -> Alert:
            if not (alert.status.is_open and status.is_open):
                raise Conflict("use decide to close an alert", alert_id=alert_id)
            return dataclasses.replace(alert, status=status, updated_at=at)

        return await self._update(alert_id, change)

    async def set_case(
        self, alert_ids: Sequence[str], *, case_id: str | None, at: datetime
    ) -> list[Alert]:
        """Link alerts to a case (None unlinks). Unknown ids are skipped."""
        done: list[Alert] = []
        for alert_id in dict.fromkeys(alert_ids):
            try:
                done.append(
                    await self._update(
                        alert_id, lambda a: dataclasses.replace(a, case_id=case_id, updated_at=at)
                    )
                )
            except NotFound:
                continue
        return done

    async def list_(
        self,
        *,
        tenant: str | None = None,
        statuses: Sequence[AlertStatus] | None = None,
        risk_levels: Sequence[RiskLevel] | None = None,
        rule_id: str | None = None,
        assignee: str | None = None,
        customer_key: str | None = None,
        created_from: datetime | None = None,
        created_before: datetime | None = None,
        sla_due_before: datetime | None = None,
        sort: AlertSort = "created_at",
        descending: bool = True,
        skip: int = 0,
        limit: int = 50,
    ) -> tuple[list[Alert], int]:
        """Filtered page of alerts and the total matching count.

        ``created_before`` doubles as a minimum age (pass ``now - age``); ``sla_due_before=now``
        lists overdue alerts. Ties are broken by id so pages never overlap.
        """
        query: dict[str, Any] = {}
        if tenant is not None:
            query["tenant"] = tenant
        # One value as a plain equality: the embedded store searches its index for that, and
        # scans the whole collection for ``$in``.
        if statuses:
            values = [s.value for s in statuses]
            query["status"] = values[0] if len(values) == 1 else {"$in": values}
        if risk_levels:
            levels = [r.value for r in risk_levels]
            query["risk_level"] = levels[0] if len(levels) == 1 else {"$in": levels}
        if rule_id is not None:
            # ``$in`` rather than a bare value: the embedded store's index lookup on array
            # fields misses bare-value matches; both forms mean the same to MongoDB.
            query["rule_ids"] = {"$in": [rule_id]}
        if assignee is not None:
            query["assignee"] = assignee
        if customer_key is not None:
            query["customer_key"] = customer_key
        add_range(query, "created_at", gte=created_from, lt=created_before)
        if sla_due_before is not None:
            add_ms_range(query, SLA_DUE_MS, None, sla_due_before)
        direction = DESCENDING if descending else ASCENDING
        total = await self._count(query)
        cursor = (
            self.col.find(query)
            .sort([(_SORT_FIELD.get(sort, sort), direction), ("_id", direction)])
            .skip(skip)
            .limit(limit)
        )
        return [from_doc(Alert, d) async for d in cursor], int(total)

    async def _count(self, query: dict[str, Any]) -> int:
        """Matching alerts, counted for the queue's pager (see ``Repository.count_matching``)."""
        return await self.count_matching(query, scalar=_SCALAR)

    async def count_overdue(self, *, now: datetime, tenant: str | None = None) -> int:
        """Open alerts whose SLA deadline has passed at ``now``."""
        query: dict[str, Any] = {
            "status": {"$in": [s.value for s in OPEN_STATUSES]},
            SLA_DUE_MS: {"$lt": epoch_ms(now)},
        }
        if tenant is not None:
            query["tenant"] = tenant
        return await self._count(query)

    async def oldest_open(self, *, tenant: str | None = None) -> Alert | None:
        """The open alert created first (ties by id), or None.

        The oldest of each open status, read in the ``(status, created_at)`` index's order:
        asking for all open statuses at once made the embedded store sort every open alert."""
        base: dict[str, Any] = {"tenant": tenant} if tenant is not None else {}
        found: list[Alert] = []
        for status in OPEN_STATUSES:
            doc = await self.col.find_one(
                {**base, "status": status.value},
                sort=[("created_at", ASCENDING), ("_id", ASCENDING)],
            )
            if doc is not None:
                found.append(from_doc(Alert, doc))
        return min(found, key=lambda a: (a.created_at, a.id), default=None)

    async def related(
        self, customer_key: str, *, tenant: str | None = None, limit: int = 50
    ) -> list[Alert]:
        """Every alert of the customer, newest first (for the alert detail page)."""
        page, _ = await self.list_(tenant=tenant, customer_key=customer_key, limit=limit)
        return page

    async def labels(
        self, *, since: datetime | None = None
    ) -> list[tuple[tuple[str, ...], AnalystDecision]]:
        """(transaction ids, verdict) of every decided alert, oldest decision first: the
        training labels."""
        query: dict[str, Any] = {"decision": {"$in": [d.value for d in AnalystDecision]}}
        if since is not None:
            query["decided_at"] = {"$gte": since}
        cursor = self.col.find(query, {"transaction_ids": 1, "decision": 1}).sort(
            [("decided_at", ASCENDING), ("_id", ASCENDING)]
        )
        return [
            (tuple(str(t) for t in d.get("transaction_ids", [])), AnalystDecision(d["decision"]))
            async for d in cursor
        ]

    async def count_by_status(self, *, tenant: str | None = None) -> dict[AlertStatus, int]:
        """Number of alerts per status (every status present, zero when none)."""
        # One indexed count per status: a $group reads every alert on the embedded store.
        base: dict[str, Any] = {"tenant": tenant} if tenant else {}
        return {s: await self._count({**base, "status": s.value}) for s in AlertStatus}

    async def count_by_risk_level(
        self, *, tenant: str | None = None, open_only: bool = True
    ) -> dict[RiskLevel, int]:
        """Number of alerts per risk level, by default of open alerts only."""
        match: dict[str, Any] = {"tenant": tenant} if tenant else {}
        if open_only:
            match["status"] = {"$in": [s.value for s in OPEN_STATUSES]}
        return {r: await self._count({**match, "risk_level": r.value}) for r in RiskLevel}

    async def count_by_day(
        self, *, since: datetime, until: datetime, tenant: str | None = None
    ) -> list[tuple[date, int]]:
        """Alerts created per UTC day in [since, until), days without alerts omitted.

        One indexed count per day rather than a ``$group``, which the embedded store answers by
        decoding every alert of the period."""
        days: list[tuple[date, datetime, datetime]] = []
        day = since.astimezone(UTC).date()
        while (start := datetime.combine(day, datetime.min.time(), tzinfo=UTC)) < until:
            end = start + timedelta(days=1)
            days.append((day, max(start, since), min(end, until)))
            day += timedelta(days=1)
        base: Document = {"tenant": tenant} if tenant is not None else {}
        counts = await self.count_each(
            [add_ms_range(dict(base), CREATED_MS, lo, hi) for _, lo, hi in days],
            scalar=_SCALAR,
        )
        return [(d, n) for (d, _, _), n in zip(days, counts, strict=True) if n]

    async def count(self, query: dict[str, Any] | None = None) -> int:
        return await self.count_matching(query)
