"""Test data builders (domain objects with sensible defaults)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from aml.domain import Direction, Transaction, TransactionType, stable_id

_seq = itertools.count(1)
T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


def make_tx(**overrides: Any) -> Transaction:
    n = next(_seq)
    tenant = overrides.pop("tenant", "default")
    dedupe_key = overrides.pop("dedupe_key", f"SAVINGSACCOUNT|DEPOSIT|{n}")
    fields: dict[str, Any] = {
        "id": stable_id(tenant, dedupe_key),
        "tenant": tenant,
        "dedupe_key": dedupe_key,
        "source": "fineract",
        "type": TransactionType.DEPOSIT,
        "direction": Direction.IN,
        "amount_minor": 10_000,
        "currency": "XAF",
        "occurred_at": T0 + timedelta(minutes=n),
        "received_at": T0 + timedelta(minutes=n, seconds=1),
        "account_id": "savings:12",
        "client_id": "7",
        "external_id": str(n),
    }
    fields.update(overrides)
    return Transaction(**fields)
