"""Alert queue: listing, detail with explanation, assignment, decisions (labels), escalation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aml.auth import Permission
from aml.domain import (
    Alert,
    AlertStatus,
    AnalystDecision,
    Decision,
    RiskLevel,
    Transaction,
    utcnow,
)
from aml.errors import BadRequest, Conflict, NotFound
from serve.services import audit
from serve.services.actor import Actor
from serve.services.pages import Page, check_window
from storage.store import Store

SORT_FIELDS = ("created_at", "score", "updated_at", "sla_due_at")
MAX_NOTE = 4000


@dataclass(frozen=True, slots=True)
class AlertDetail:
    """What an analyst needs to decide an alert."""

    alert: Alert
    transactions: Sequence[Transaction]
    decisions: Sequence[Decision]
    related: Sequence[Alert]
    recent_activity: Sequence[Transaction]


async def list_alerts(
    store: Store,
    *,
    actor: Actor,
    status: Sequence[AlertStatus] | None = None,
    risk_level: Sequence[RiskLevel] | None = None,
    rule_id: str | None = None,
    assignee: str | None = None,
    min_age: timedelta | None = None,
    sort: str = "created_at",
    descending: bool = True,
    skip: int = 0,
    limit: int = 50,
) -> Page[Alert]:
    """A page of alerts matching the filters, sorted server-side."""
    actor.require(Permission.ALERT_READ)
    check_window(skip, limit)
    if sort not in SORT_FIELDS:
        raise BadRequest(f"sort must be one of {', '.join(SORT_FIELDS)}", field="sort")
    created_before = utcnow() - min_age if min_age else None
    items, total = await store.alerts.list_(
        statuses=list(status) if status else None,
        risk_levels=list(risk_level) if risk_level else None,
        rule_id=rule_id or None,
        assignee=assignee or None,
        created_before=created_before,
        sort=sort,  # type: ignore[arg-type]
        descending=descending,
        skip=skip,
        limit=limit,
    )
    return Page(items=items, total=total, skip=skip, limit=limit)


async def get_or_raise(store: Store, *, alert_id: str) -> Alert:
    alert = await store.alerts.get(alert_id)
    if alert is None:
        raise NotFound("alert not found", alert_id=alert_id)
    return alert


async def get_detail(store: Store, *, actor: Actor, alert_id: str) -> AlertDetail:
    """The alert with its transactions, each transaction's decision, related alerts and the
    customer's recent activity."""
    actor.require(Permission.ALERT_READ)
    alert = await get_or_raise(store, alert_id=alert_id)
    txs = await store.transactions.get_many(list(alert.transaction_ids))
    txs.sort(key=lambda t: t.occurred_at)
    decisions = await store.decisions.list_for_transactions(list(alert.transaction_ids))
    related = [a for a in await store.alerts.related(alert.customer_key) if a.id != alert.id]
    recent: list[Transaction] = []
    if txs:
        last = txs[-1].occurred_at
        recent = await store.transactions.history(
            alert.tenant,
            alert.account_id,
            since=last - timedelta(days=30),
            until=last + timedelta(seconds=1),
            limit=500,
        )
    return AlertDetail(
        alert=alert,
        transactions=txs,
        decisions=decisions,
        related=related,
        recent_activity=recent,
    )


async def assign(
    store: Store, *, actor: Actor, alert_ids: Sequence[str], assignee: str | None
) -> int:
    """Assign open alerts to ``assignee`` (``None`` to unassign). Analysts may only take alerts
    for themselves; reassigning to someone else needs the approver permission."""
    actor.require(Permission.ALERT_ASSIGN)
    ids = list(dict.fromkeys(alert_ids))
    if not ids:
        raise BadRequest("no alerts given", field="alert_ids")
    if len(ids) > 500:
        raise BadRequest("at most 500 alerts per bulk assignment", field="alert_ids")
    if assignee is not None and assignee != actor.username:
        actor.require(Permission.CASE_APPROVE)
        target = await store.users.get_by_username(assignee)
        if target is None or not target.active:
            raise BadRequest("assignee is not an active user", field="assignee")
    changed = len(await store.alerts.assign_many(ids, assignee=assignee, at=utcnow()))
    await audit.record(
        store,
        actor=actor,
        action="alert.assign",
        target_type="alert",
        target_id=ids[0] if len(ids) == 1 else None,
        details={"alert_ids": ids, "assignee": assignee, "changed": changed},
    )
    return changed


def _check_note(note: str) -> str:
    text = (note or "").strip()
    if not text:
        raise BadRequest("a note is required", field="note")
    if len(text) > MAX_NOTE:
        raise BadRequest(f"note is longer than {MAX_NOTE} characters", field="note")
    return text


async def decide(
    store: Store, *, actor: Actor, alert_id: str, decision: AnalystDecision, note: str
) -> Alert:
    """Record the analyst's verdict (stored as the training label) and close the alert.

    An escalated alert can only be decided by an approver other than whoever escalated it.

    Raises:
        BadRequest: missing note.
        Conflict: the alert is already closed, or the escalator tries to decide it.
    """
    actor.require(Permission.ALERT_DECIDE)
    text = _check_note(note)
    alert = await get_or_raise(store, alert_id=alert_id)
    if not alert.status.is_open:
        raise Conflict("alert is already closed", status=alert.status.value)
    if alert.status == AlertStatus.ESCALATED:
        actor.require(Permission.CASE_APPROVE)
        if await _escalated_by(store, alert_id) == actor.username:
            raise Conflict("four-eyes: the analyst who escalated cannot decide the alert")
    updated = await store.alerts.decide(
        alert_id, decision=decision, note=text, by=actor.username, at=utcnow()
    )
    await audit.record(
        store,
        actor=actor,
        action="alert.decide",
        target_type="alert",
        target_id=alert_id,
        details={"decision": decision.value, "note": text, "status": updated.status.value},
    )
    return updated


async def escalate(store: Store, *, actor: Actor, alert_id: str, note: str) -> Alert:
    """Escalate an open alert for a senior decision."""
    actor.require(Permission.ALERT_ESCALATE)
    text = _check_note(note)
    alert = await get_or_raise(store, alert_id=alert_id)
    if alert.status not in (AlertStatus.OPEN, AlertStatus.UNDER_REVIEW):
        raise Conflict("only open alerts can be escalated", status=alert.status.value)
    updated = await store.alerts.decide(
        alert_id, decision="escalate", note=text, by=actor.username, at=utcnow()
    )
    await audit.record(
        store,
        actor=actor,
        action="alert.escalate",
        target_type="alert",
        target_id=alert_id,
        details={"note": text},
    )
    return updated


async def _escalated_by(store: Store, alert_id: str) -> str | None:
    """Who escalated the alert, from the audit trail (the tamper-evident record of it)."""
    entries, _ = await store.audit_log.list_(
        action="alert.escalate", target_type="alert", target_id=alert_id, skip=0, limit=1
    )
    return entries[0].actor if entries else None


@dataclass(frozen=True, slots=True)
class Overview:
    by_status: dict[str, int]
    by_risk: dict[str, int]
    by_day: list[dict[str, Any]]
    decisions_per_minute: list[dict[str, Any]]
    alert_rate: float
    open_count: int
    oldest_open_at: datetime | None
    overdue_count: int


async def overview(store: Store, *, actor: Actor, hours: int = 24) -> Overview:
    """Counters and series for the overview page."""
    actor.require(Permission.OVERVIEW_READ)
    now = utcnow()
    since = now - timedelta(hours=hours)
    by_status = await store.alerts.count_by_status()
    by_risk = await store.alerts.count_by_risk_level()
    by_day = await store.alerts.count_by_day(since=now - timedelta(days=14), until=now)
    # A per-minute series is only readable over a short window.
    per_minute = await store.decisions.per_minute(since=now - timedelta(minutes=60), until=now)
    rate = await store.decisions.alert_rate(since=since, until=now)
    oldest = await store.alerts.oldest_open()
    overdue = await store.alerts.count_overdue(now=now)
    return Overview(
        by_status={str(k): int(v) for k, v in by_status.items()},
        by_risk={str(k): int(v) for k, v in by_risk.items()},
        by_day=[{"day": d.isoformat(), "count": n} for d, n in by_day],
        decisions_per_minute=[{"minute": m.isoformat(), "count": n} for m, n in per_minute],
        alert_rate=float(rate[2]),
        open_count=sum(int(v) for k, v in by_status.items() if AlertStatus(k).is_open),
        oldest_open_at=oldest.created_at if oldest else None,
        overdue_count=overdue,
    )
