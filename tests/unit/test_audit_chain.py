"""The audit log's hash chain: canonical hashing and tamper detection (pure, no store)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from aml.audit import GENESIS_HASH, build_entry, canonical_json, entry_hash, verify_chain
from aml.domain import AuditEntry

T0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)


def _chain(n: int) -> list[AuditEntry]:
    out: list[AuditEntry] = []
    for i in range(n):
        out.append(
            build_entry(
                out[-1] if out else None,
                at=T0 + timedelta(seconds=i),
                actor="ana",
                action="alert.decide",
                target_type="alert",
                target_id=f"a{i}",
                details={"decision": "legitimate", "n": i},
                ip="10.0.0.1",
            )
        )
    return out


def test_first_entry_chains_from_genesis_and_hash_covers_prev_hash() -> None:
    first = _chain(1)[0]
    assert first.seq == 1 and first.prev_hash == GENESIS_HASH
    content: dict[str, Any] = {
        "seq": 1,
        "at": first.at,
        "actor": "ana",
        "action": "alert.decide",
        "target_type": "alert",
        "target_id": "a0",
        "details": {"n": 0, "decision": "legitimate"},
        "ip": "10.0.0.1",
    }
    assert first.hash == entry_hash(GENESIS_HASH, **content)
    # The same content after another entry hashes differently.
    assert entry_hash("f" * 64, **content) != first.hash


def test_canonical_json_is_key_order_independent_and_millisecond_precise() -> None:
    a = canonical_json(
        seq=1,
        at=T0,
        actor="x",
        action="y",
        target_type="t",
        target_id=None,
        details={"b": 1, "a": [1, 2]},
        ip=None,
    )
    b = canonical_json(
        seq=1,
        at=T0.replace(microsecond=123999),
        actor="x",
        action="y",
        target_type="t",
        target_id=None,
        details={"a": (1, 2), "b": 1},
        ip=None,
    )
    assert a == b
    assert '"at":"2026-03-01T08:30:15.123+00:00"' in a


def test_intact_chain_verifies() -> None:
    assert verify_chain(_chain(5)) is None
    assert verify_chain([]) is None


def test_edited_details_are_reported_at_their_seq() -> None:
    chain = _chain(5)
    chain[2] = dataclasses.replace(chain[2], details={"decision": "suspicious", "n": 2})
    assert verify_chain(chain) == 3


def test_deleted_entry_is_reported_at_the_next_seq() -> None:
    chain = _chain(5)
    del chain[1]
    assert verify_chain(chain) == 3


def test_recomputed_hash_after_edit_still_breaks_the_next_link() -> None:
    chain = _chain(4)
    forged = build_entry(
        chain[0],
        at=chain[1].at,
        actor="mallory",
        action="alert.decide",
        target_type="alert",
        target_id="a1",
        details={"decision": "legitimate", "n": 1},
        ip="10.0.0.1",
    )
    chain[1] = forged
    assert verify_chain(chain) == 3


def test_chunked_verification_continues_from_previous_entry() -> None:
    chain = _chain(6)
    assert verify_chain(chain[3:], prev=chain[2]) is None
    assert verify_chain(chain[4:], prev=chain[2]) == 5
