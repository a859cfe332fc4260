"""Cases: creation from alerts, linked alerts and transactions, append-only notes, assignment and
the status workflow with four-eyes approval.

Workflow: open → investigating → escalated → closed (no action | SAR filed). Escalation and SAR
closure are requested by one user (the maker) and take effect only when a second user holding
``case:approve`` approves; the maker can never approve their own request.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from aml.auth import Permission
from aml.domain import Case, CaseNote, CaseStatus, utcnow
from aml.errors import BadRequest, Conflict, Forbidden, NotFound
from serve.services import audit
from serve.services.actor import Actor
from serve.services.pages import Page, check_window
from storage.store import Store

CASE_SLA = timedelta(days=30)
MAX_NOTE = 8000

# Allowed direct transitions, and those needing a second user's approval.
TRANSITIONS: dict[CaseStatus, frozenset[CaseStatus]] = {
    CaseStatus.OPEN: frozenset({CaseStatus.INVESTIGATING, CaseStatus.CLOSED_NO_ACTION}),
    CaseStatus.INVESTIGATING: frozenset(
        {CaseStatus.ESCALATED, CaseStatus.CLOSED_NO_ACTION, CaseStatus.CLOSED_SAR_FILED}
    ),
    CaseStatus.ESCALATED: frozenset(
        {CaseStatus.INVESTIGATING, CaseStatus.CLOSED_NO_ACTION, CaseStatus.CLOSED_SAR_FILED}
    ),
    CaseStatus.CLOSED_NO_ACTION: frozenset(),
    CaseStatus.CLOSED_SAR_FILED: frozenset(),
}
FOUR_EYES = frozenset({CaseStatus.ESCALATED, CaseStatus.CLOSED_SAR_FILED})
CLOSED = frozenset({CaseStatus.CLOSED_NO_ACTION, CaseStatus.CLOSED_SAR_FILED})


async def get_or_raise(store: Store, *, actor: Actor, case_id: str) -> Case:
    actor.require(Permission.CASE_READ)
    case = await store.cases.get(case_id)
    if case is None:
        raise NotFound("case not found", case_id=case_id)
    return case


async def list_cases(
    store: Store,
    *,
    actor: Actor,
    status: Sequence[CaseStatus] | None = None,
    assignee: str | None = None,
    pending_only: bool = False,
    skip: int = 0,
    limit: int = 50,
) -> Page[Case]:
    """Cases, newest first."""
    actor.require(Permission.CASE_READ)
    check_window(skip, limit)
    items, total = await store.cases.list_(
        statuses=list(status) if status else None,
        assignee=assignee or None,
        pending_only=pending_only,
        skip=skip,
        limit=limit,
    )
    return Page(items=items, total=total, skip=skip, limit=limit)


def _open(case: Case) -> None:
    if case.status in CLOSED:
        raise Conflict("case is closed", case_id=case.id, status=case.status.value)


async def create(
    store: Store,
    *,
    actor: Actor,
    title: str,
    alert_ids: Sequence[str] = (),
    transaction_ids: Sequence[str] = (),
    note: str | None = None,
) -> Case:
    """Open a case from alerts (their transactions are linked too) and/or transactions.

    Raises:
        BadRequest: no title, or nothing to investigate.
        NotFound: an alert id does not exist.
        Conflict: an alert already belongs to another case.
    """
    actor.require(Permission.CASE_WRITE)
    title = (title or "").strip()
    if not title:
        raise BadRequest("a title is required", field="title")
    alert_ids = list(dict.fromkeys(alert_ids))
    found = [await store.alerts.get(a) for a in alert_ids]
    missing = [a for a, al in zip(alert_ids, found, strict=True) if al is None]
    if missing:
        raise NotFound("alert not found", alert_ids=missing)
    alerts = [a for a in found if a is not None]
    taken = [a.id for a in alerts if a.case_id]
    if taken:
        raise Conflict("alert already belongs to a case", alert_ids=taken)
    tx_ids = list(
        dict.fromkeys([*(t for a in alerts for t in a.transaction_ids), *transaction_ids])
    )
    if not alert_ids and not tx_ids:
        raise BadRequest("a case needs at least one alert or transaction", field="alert_ids")
    clients = {a.client_id for a in alerts if a.client_id}
    now = utcnow()
    case = await store.cases.create(
        Case(
            id=uuid.uuid4().hex,
            number="",
            tenant=alerts[0].tenant if alerts else "default",
            title=title[:200],
            status=CaseStatus.OPEN,
            created_by=actor.username,
            created_at=now,
            updated_at=now,
            sla_due_at=now + CASE_SLA,
            alert_ids=tuple(alert_ids),
            transaction_ids=tuple(tx_ids),
            notes=(CaseNote(author=actor.username, at=now, text=note.strip()),)
            if note and note.strip()
            else (),
            client_id=clients.pop() if len(clients) == 1 else None,
        )
    )
    if alert_ids:
        await store.alerts.set_case(alert_ids, case_id=case.id, at=now)
    await audit.record(
        store,
        actor=actor,
        action="case.create",
        target_type="case",
        target_id=case.id,
        details={"number": case.number, "alert_ids": alert_ids, "transaction_ids": tx_ids},
    )
    return case


async def add_alerts(store: Store, *, actor: Actor, case_id: str, alert_ids: Sequence[str]) -> Case:
    """Link more alerts (and their transactions) to an open case."""
    actor.require(Permission.CASE_WRITE)
    case = await get_or_raise(store, actor=actor, case_id=case_id)
    _open(case)
    ids = list(dict.fromkeys(alert_ids))
    alerts = []
    for alert_id in ids:
        alert = await store.alerts.get(alert_id)
        if alert is None:
            raise NotFound("alert not found", alert_id=alert_id)
        if alert.case_id and alert.case_id != case_id:
            raise Conflict("alert already belongs to another case", alert_id=alert_id)
        alerts.append(alert)
    now = utcnow()
    await store.cases.add_alerts(case_id, ids, at=now)
    updated = await store.cases.add_transactions(
        case_id, [t for a in alerts for t in a.transaction_ids], at=now
    )
    await store.alerts.set_case(ids, case_id=case_id, at=now)
    await audit.record(
        store,
        actor=actor,
        action="case.add_alerts",
        target_type="case",
        target_id=case_id,
        details={"alert_ids": ids},
    )
    return updated


async def remove_alerts(
    store: Store, *, actor: Actor, case_id: str, alert_ids: Sequence[str]
) -> Case:
    """Unlink alerts from an open case (their transactions stay as evidence)."""
    actor.require(Permission.CASE_WRITE)
    _open(await get_or_raise(store, actor=actor, case_id=case_id))
    ids = list(dict.fromkeys(alert_ids))
    now = utcnow()
    updated = await store.cases.remove_alerts(case_id, ids, at=now)
    await store.alerts.set_case(ids, case_id=None, at=now)
    await audit.record(
        store,
        actor=actor,
        action="case.remove_alerts",
        target_type="case",
        target_id=case_id,
        details={"alert_ids": ids},
    )
    return updated


async def add_transactions(
    store: Store, *, actor: Actor, case_id: str, transaction_ids: Sequence[str]
) -> Case:
    """Link transactions to an open case."""
    actor.require(Permission.CASE_WRITE)
    _open(await get_or_raise(store, actor=actor, case_id=case_id))
    ids = list(dict.fromkeys(transaction_ids))
    known = {t.id for t in await store.transactions.get_many(ids)}
    missing = [t for t in ids if t not in known]
    if missing:
        raise NotFound("transaction not found", transaction_ids=missing)
    updated = await store.cases.add_transactions(case_id, ids, at=utcnow())
    await audit.record(
        store,
        actor=actor,
        action="case.add_transactions",
        target_type="case",
        target_id=case_id,
        details={"transaction_ids": ids},
    )
    return updated


async def remove_transactions(
    store: Store, *, actor: Actor, case_id: str, transaction_ids: Sequence[str]
) -> Case:
    """Unlink transactions from an open case."""
    actor.require(Permission.CASE_WRITE)
    _open(await get_or_raise(store, actor=actor, case_id=case_id))
    ids = list(dict.fromkeys(transaction_ids))
    updated = await store.cases.remove_transactions(case_id, ids, at=utcnow())
    await audit.record(
        store,
        actor=actor,
        action="case.remove_transactions",
        target_type="case",
        target_id=case_id,
        details={"transaction_ids": ids},
    )
    return updated


async def add_note(store: Store, *, actor: Actor, case_id: str, text: str) -> Case:
    """Append a note (notes are never edited or removed)."""
    actor.require(Permission.CASE_WRITE)
    body = (text or "").strip()
    if not body:
        raise BadRequest("a note needs text", field="text")
    if len(body) > MAX_NOTE:
        raise BadRequest(f"note is longer than {MAX_NOTE} characters", field="text")
    await get_or_raise(store, actor=actor, case_id=case_id)
    updated = await store.cases.add_note(
        case_id, CaseNote(author=actor.username, at=utcnow(), text=body)
    )
    await audit.record(
        store,
        actor=actor,
        action="case.add_note",
        target_type="case",
        target_id=case_id,
        details={"text": body},
    )
    return updated


async def assign(store: Store, *, actor: Actor, case_id: str, assignee: str | None) -> Case:
    """Assign the case; taking it for yourself needs ``case:write``, giving it to someone else
    needs ``case:approve``."""
    actor.require(Permission.CASE_WRITE)
    case = await get_or_raise(store, actor=actor, case_id=case_id)
    _open(case)
    if assignee is not None and assignee != actor.username:
        actor.require(Permission.CASE_APPROVE)
        target = await store.users.get_by_username(assignee)
        if target is None or not target.active:
            raise BadRequest("assignee is not an active user", field="assignee")
    updated = await store.cases.assign(case_id, assignee=assignee, at=utcnow())
    await audit.record(
        store,
        actor=actor,
        action="case.assign",
        target_type="case",
        target_id=case_id,
        details={"from": case.assignee, "to": assignee},
    )
    return updated


async def change_status(
    store: Store, *, actor: Actor, case_id: str, status: CaseStatus, note: str = ""
) -> Case:
    """Move the case along the workflow.

    Escalation and SAR closure become a pending request that a second user must approve;
    other transitions apply at once.

    Raises:
        Conflict: the transition is not allowed from the current status, or one is pending.
    """
    actor.require(Permission.CASE_WRITE)
    case = await get_or_raise(store, actor=actor, case_id=case_id)
    if status not in TRANSITIONS[case.status]:
        raise Conflict(
            f"cannot move a case from {case.status.value} to {status.value}",
            status=case.status.value,
        )
    if case.pending_status is not None:
        raise Conflict(
            "a transition is awaiting approval", pending_status=case.pending_status.value
        )
    if status == CaseStatus.CLOSED_SAR_FILED and not note.strip():
        raise BadRequest("a SAR closure needs a note (reference, summary)", field="note")
    now = utcnow()
    if status in FOUR_EYES:
        updated = await store.cases.request_status(
            case_id,
            status=status,
            requested_by=actor.username,
            at=now,
            expected_updated_at=case.updated_at,
        )
        action = "case.request_status"
    else:
        updated = await store.cases.update_status(
            case_id, status=status, at=now, expected_updated_at=case.updated_at
        )
        action = "case.set_status"
    if note.strip():
        updated = await store.cases.add_note(
            case_id, CaseNote(author=actor.username, at=now, text=note.strip())
        )
    await audit.record(
        store,
        actor=actor,
        action=action,
        target_type="case",
        target_id=case_id,
        details={"from": case.status.value, "to": status.value, "note": note.strip()},
    )
    return updated


async def approve(store: Store, *, actor: Actor, case_id: str) -> Case:
    """Approve the pending transition as the second pair of eyes.

    Raises:
        Forbidden: the actor lacks ``case:approve`` or is the user who requested it.
        Conflict: nothing is pending.
    """
    actor.require(Permission.CASE_APPROVE)
    case = await get_or_raise(store, actor=actor, case_id=case_id)
    if case.pending_status is None:
        raise Conflict("no transition is pending", case_id=case_id)
    maker = await store.cases.pending_requested_by(case_id)
    if maker == actor.username:
        await audit.record(
            store,
            actor=actor,
            action="case.approve_refused",
            target_type="case",
            target_id=case_id,
            details={"reason": "maker cannot approve"},
        )
        raise Forbidden("four-eyes: a second user must approve your own request")
    updated = await store.cases.approve_pending(
        case_id, approver=actor.username, at=utcnow(), expected_updated_at=case.updated_at
    )
    await audit.record(
        store,
        actor=actor,
        action="case.approve",
        target_type="case",
        target_id=case_id,
        details={"maker": maker, "to": updated.status.value},
    )
    return updated


async def reject(store: Store, *, actor: Actor, case_id: str, note: str) -> Case:
    """Turn down the pending transition (the case keeps its status)."""
    actor.require(Permission.CASE_APPROVE)
    case = await get_or_raise(store, actor=actor, case_id=case_id)
    if case.pending_status is None:
        raise Conflict("no transition is pending", case_id=case_id)
    text = (note or "").strip()
    if not text:
        raise BadRequest("say why the request is rejected", field="note")
    now = utcnow()
    await store.cases.reject_pending(case_id, at=now, expected_updated_at=case.updated_at)
    updated = await store.cases.add_note(
        case_id, CaseNote(author=actor.username, at=now, text=f"Rejected: {text}")
    )
    await audit.record(
        store,
        actor=actor,
        action="case.reject",
        target_type="case",
        target_id=case_id,
        details={"pending": case.pending_status.value, "note": text},
    )
    return updated
