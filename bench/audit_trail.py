"""Reading one target's trail out of a long audit log, on the embedded store.

Deciding an escalated alert checks, in the audit trail, who escalated it (four-eyes); the admin's
audit page filters and counts entries by actor, action or target. The log only grows (every
sign-in, assignment, decision, rule or model change). This seeds ``--entries`` chained entries
(built as the repository builds them, stored in bulk) about ``--targets`` alerts, then times
(p50 / p95 ms over ``--loads``):

* who escalated one alert (``serve.services.alerts._escalated_by``);
* the audit page filtered by one actor, with its total count.

Run: ``.venv/bin/python -m bench audit_trail [--entries 100000 --label L]``. Results go to
``bench/results/audit-trail-<label>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aml.audit import build_entry
from aml.domain import AuditEntry
from bench._store import fresh_store, report_timings, timed_ms
from serve.services.alerts import _escalated_by
from storage.codec import to_doc
from storage.store import Store

ACTIONS = ("auth.login", "alert.assign", "alert.decide", "alert.escalate", "case.update")


async def seed(store: Store, entries: int, targets: int) -> None:
    t0 = datetime.now(UTC) - timedelta(days=365)
    prev: AuditEntry | None = None
    docs: list[dict[str, Any]] = []
    for i in range(entries):
        entry = build_entry(
            prev,
            at=t0 + timedelta(seconds=i * 300),
            actor=f"analyst{i % 25}",
            action=ACTIONS[i % len(ACTIONS)],
            target_type="alert",
            target_id=f"alert-{i % targets}",
        )
        doc = to_doc(entry)
        doc["_id"] = entry.seq
        docs.append(doc)
        prev = entry
        if len(docs) == 5_000:
            await store.audit_log.col.insert_many(docs)
            docs = []
    if docs:
        await store.audit_log.col.insert_many(docs)


async def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    async with fresh_store("bench_audit") as store:
        await seed(store, args.entries, args.targets)
        escalated = f"alert-{ACTIONS.index('alert.escalate')}"
        assert await _escalated_by(store, escalated) is not None
        return {
            "who escalated one alert": await timed_ms(
                args.loads, lambda: _escalated_by(store, escalated)
            ),
            "audit page, one actor, with total": await timed_ms(
                args.loads, lambda: store.audit_log.list_(actor="analyst7", limit=50)
            ),
        }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench audit_trail", description=__doc__)
    p.add_argument("--entries", type=int, default=100_000)
    p.add_argument("--targets", type=int, default=20_000)
    p.add_argument("--loads", type=int, default=10)
    p.add_argument("--label", default="run")
    args = p.parse_args(argv)
    report_timings("audit_trail", args.label, vars(args), {"timings": asyncio.run(run(args))})
    return 0
