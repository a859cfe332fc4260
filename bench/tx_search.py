"""The analyst's transaction search over a large transactions collection, on the embedded store.

The transactions page (and ``GET /api/v1/transactions``) pages through stored transactions,
newest first, with the total count, filtered by account, client, amount, risk level and date.
This seeds ``--transactions`` transactions over the last 30 days through the repository and
times the first page with its total (p50 / p95 ms over ``--loads``) for: no filter, the last
day, the last day of high-risk ones, and one account.

Run: ``.venv/bin/python -m bench tx_search [--transactions 200000 --label L]``. Results go to
``bench/results/tx-search-<label>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from aml.domain import RiskLevel
from bench._store import fresh_store, report_timings, timed_ms
from storage.store import Store


async def seed(store: Store, n: int, now: datetime) -> None:
    from tests.factories import make_tx

    levels = list(RiskLevel)
    for start in range(0, n, 2_000):
        batch = []
        for i in range(start, min(start + 2_000, n)):
            at = now - timedelta(seconds=30 * 86_400 * (n - i) / n)
            batch.append(
                make_tx(
                    dedupe_key=f"SAVINGSACCOUNT|DEPOSIT|{i}",
                    account_id=f"savings:{i % 5000}",
                    client_id=str(i % 4000),
                    amount_minor=1_000 + (i * 7919) % 900_000,
                    occurred_at=at,
                    received_at=at,
                )
            )
        await store.transactions.insert_many(batch)
        # Scored, as the pipeline leaves them: the risk level is on the transaction.
        await store.transactions.mark_scored(
            {t.id: levels[(start + j) % len(levels)] for j, t in enumerate(batch)}
        )


async def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    async with fresh_store("bench_tx_search") as store:
        now = datetime.now(UTC)
        await seed(store, args.transactions, now)
        day = now - timedelta(days=1)
        search = store.transactions.search
        high = [RiskLevel.HIGH, RiskLevel.CRITICAL]
        return {
            "first page, no filter": await timed_ms(args.loads, lambda: search(limit=50)),
            "last day": await timed_ms(args.loads, lambda: search(since=day, limit=50)),
            "last day, high risk": await timed_ms(
                args.loads, lambda: search(since=day, risk_levels=high, limit=50)
            ),
            "one account": await timed_ms(
                args.loads, lambda: search(account_id="savings:42", limit=50)
            ),
        }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench tx_search", description=__doc__)
    p.add_argument("--transactions", type=int, default=200_000)
    p.add_argument("--loads", type=int, default=5)
    p.add_argument("--label", default="run")
    args = p.parse_args(argv)
    report_timings("tx_search", args.label, vars(args), {"timings": asyncio.run(run(args))})
    return 0
