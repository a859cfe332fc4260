"""Pure helpers of the hash-chained audit log.

Each entry's ``hash`` is ``sha256(prev_hash + canonical JSON of the entry's content)``, so editing,
deleting or reordering any stored entry breaks the chain from that entry on. Times are hashed at
millisecond precision because that is what MongoDB stores: a re-read entry must hash the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from aml.domain import AuditEntry, ensure_utc

GENESIS_HASH = "0" * 64


def truncate_ms(value: datetime) -> datetime:
    """``value`` in UTC with microseconds cut to whole milliseconds (BSON date precision)."""
    utc = ensure_utc(value)
    return utc.replace(microsecond=utc.microsecond - utc.microsecond % 1000)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return truncate_ms(value).isoformat(timespec="milliseconds")
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def canonical_json(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None,
    details: Mapping[str, Any],
    ip: str | None,
) -> str:
    """The entry's content as canonical JSON: sorted keys, no spaces, UTC millisecond times."""
    content = {
        "seq": seq,
        "at": truncate_ms(at).isoformat(timespec="milliseconds"),
        "actor": actor,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "details": dict(details),
        "ip": ip,
    }
    return json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    )


def entry_hash(
    prev_hash: str,
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None,
    details: Mapping[str, Any],
    ip: str | None,
) -> str:
    """Hex sha256 of ``prev_hash`` followed by the entry's canonical JSON."""
    body = canonical_json(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=details,
        ip=ip,
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def build_entry(
    prev: AuditEntry | None,
    *,
    at: datetime,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None = None,
    details: Mapping[str, Any] | None = None,
    ip: str | None = None,
) -> AuditEntry:
    """The entry that follows ``prev`` (or starts the chain when ``prev`` is None)."""
    seq = 1 if prev is None else prev.seq + 1
    prev_hash = GENESIS_HASH if prev is None else prev.hash
    when = truncate_ms(at)
    content = dict(details or {})
    digest = entry_hash(
        prev_hash,
        seq=seq,
        at=when,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=content,
        ip=ip,
    )
    return AuditEntry(
        seq=seq,
        at=when,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=content,
        ip=ip,
        prev_hash=prev_hash,
        hash=digest,
    )


def verify_chain(entries: Iterable[AuditEntry], *, prev: AuditEntry | None = None) -> int | None:
    """Walk ``entries`` (in seq order) and return the seq of the first broken one, else None.

    An entry is broken when its seq does not follow the previous one by exactly 1 (a deleted or
    inserted entry), its ``prev_hash`` is not the previous entry's hash, or its ``hash`` does not
    match its content. ``prev`` is the last verified entry when checking a chain in chunks.
    """
    expected_seq = 1 if prev is None else prev.seq + 1
    expected_prev = GENESIS_HASH if prev is None else prev.hash
    for entry in entries:
        recomputed = entry_hash(
            entry.prev_hash,
            seq=entry.seq,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            target_type=entry.target_type,
            target_id=entry.target_id,
            details=entry.details,
            ip=entry.ip,
        )
        if (
            entry.seq != expected_seq
            or entry.prev_hash != expected_prev
            or recomputed != entry.hash
        ):
            return entry.seq
        expected_seq = entry.seq + 1
        expected_prev = entry.hash
    return None
