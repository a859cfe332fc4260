"""Audit trail: every analyst action is recorded (who, when, what, from where)."""

from __future__ import annotations

from typing import Any

from aml.auth import Permission
from aml.domain import AuditEntry, utcnow
from serve.services.actor import Actor
from serve.services.pages import Page
from storage.store import Store

SYSTEM_ACTOR = "system"


async def record(
    store: Store,
    *,
    actor: Actor | None,
    action: str,
    target_type: str,
    target_id: str | None = None,
    details: dict[str, Any] | None = None,
    ip: str | None = None,
) -> AuditEntry:
    """Append one entry to the hash-chained audit log."""
    return await store.audit_log.append(
        at=utcnow(),
        actor=actor.username if actor else SYSTEM_ACTOR,
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=details or {},
        ip=actor.ip if actor else ip,
    )


async def list_entries(
    store: Store,
    *,
    actor: Actor,
    who: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    skip: int = 0,
    limit: int = 50,
) -> Page[AuditEntry]:
    """Audit entries, newest first (admin and senior analysts)."""
    actor.require(Permission.AUDIT_READ)
    items, total = await store.audit_log.list_(
        actor=who,
        action=action,
        target_type=target_type,
        target_id=target_id,
        skip=skip,
        limit=limit,
    )
    return Page(items=items, total=total, skip=skip, limit=limit)


async def verify(store: Store, *, actor: Actor) -> int | None:
    """Walk the hash chain; the first broken ``seq`` or ``None`` when intact. Audited."""
    actor.require(Permission.AUDIT_READ)
    broken = await store.audit_log.verify()
    await record(
        store,
        actor=actor,
        action="audit.verify",
        target_type="audit_log",
        details={"intact": broken is None, "first_broken_seq": broken},
    )
    return broken
