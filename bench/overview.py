"""The overview's counters against a day of decisions, in a fresh embedded store.

Every open dashboard overview (and ``GET /api/v1/overview``) re-reads, each refresh: alerts by
status, risk and day (14 days), decisions per minute over the last hour, the alert rate over
the last 24 hours, the oldest open alert and the overdue count. The decisions collection holds
one document per scored transaction, so at any real volume it is by far the largest thing the
overview reads: this seeds ``--decisions`` decisions spread evenly over the last 24 hours
(``--alert-share`` of them alerting) and ``--alerts`` alerts over the last 14 days, through the
repositories (the documents they write), then times each query and the whole service call,
``--loads`` times each (p50 / p95 in ms).

Run: ``.venv/bin/python -m bench overview [--decisions 200000 --alerts 20000 --label L]``.
Results go to ``bench/results/overview-<label>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aml.domain import Role
from bench._store import fresh_store, report_timings, timed_ms
from bench.dashboard import make_alerts
from serve.services import alerts as alert_service
from serve.services.actor import Actor
from storage.repositories.alerts import AlertRepository
from storage.store import Store


async def seed(store: Store, *, decisions: int, alerts: int, alert_share: float) -> float:
    """Seconds spent writing ``decisions`` decisions over the last day and ``alerts`` alerts
    over the last 14 days."""
    from tests.factories import make_decision

    now = datetime.now(UTC)
    started = time.perf_counter()
    template = make_decision()
    every = max(1, round(1 / alert_share)) if alert_share > 0 else 0
    chunk = 2_000
    for start in range(0, decisions, chunk):
        batch = [
            replace(
                template,
                transaction_id=f"bench-tx-{i}",
                decided_at=now - timedelta(seconds=86_400 * (decisions - i) / decisions),
                alert=bool(every) and i % every == 0,
            )
            for i in range(start, min(start + chunk, decisions))
        ]
        await store.decisions.insert_many(batch)
    # make_alerts spreads its alerts over 90 days: ask for enough that 14 days hold ``alerts``.
    spread = make_alerts(alerts * 90 // 14, now)
    recent = [a for a in spread if a.created_at >= now - timedelta(days=14)][-alerts:]
    for start in range(0, len(recent), chunk):
        docs = [AlertRepository._doc(a, 0) for a in recent[start : start + chunk]]
        await store.alerts.col.insert_many(docs, ordered=False)
    return time.perf_counter() - started


async def measure(store: Store, loads: int) -> dict[str, dict[str, float]]:
    """p50 / p95 of each overview query and of the whole service call."""
    from tests.factories import make_user

    actor = Actor(user=make_user(role=Role.ANALYST))
    now = datetime.now(UTC)
    parts: dict[str, Callable[[], Awaitable[Any]]] = {
        "alerts by status": store.alerts.count_by_status,
        "alerts by risk": store.alerts.count_by_risk_level,
        "alerts per day, 14 days": lambda: store.alerts.count_by_day(
            since=now - timedelta(days=14), until=now
        ),
        "decisions per minute, 60 min": lambda: store.decisions.per_minute(
            since=now - timedelta(minutes=60), until=now
        ),
        "alert rate, 24 h": lambda: store.decisions.alert_rate(
            since=now - timedelta(hours=24), until=now
        ),
        "oldest open alert": store.alerts.oldest_open,
        "overdue alerts": lambda: store.alerts.count_overdue(now=now),
        "overview (service, all of the above)": lambda: alert_service.overview(store, actor=actor),
    }
    return {name: await timed_ms(loads, call) for name, call in parts.items()}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with fresh_store("bench_overview") as store:
        seconds = await seed(
            store, decisions=args.decisions, alerts=args.alerts, alert_share=args.alert_share
        )
        print(f"seeded in {seconds:.1f} s")
        return {
            "machine": {"python": platform.python_version()},
            "seed_s": seconds,
            "timings": await measure(store, args.loads),
        }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench overview", description=__doc__)
    p.add_argument("--decisions", type=int, default=200_000)
    p.add_argument("--alerts", type=int, default=20_000)
    p.add_argument("--alert-share", type=float, default=0.03)
    p.add_argument("--loads", type=int, default=10)
    p.add_argument("--label", default="run")
    args = p.parse_args(argv)
    report_timings("overview", args.label, vars(args), asyncio.run(run(args)))
    return 0
