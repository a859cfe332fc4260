"""Finding stored duplicates in a full transactions collection, on the embedded store.

Fineract redelivers a hook it got no answer for, and a spool replay may send events already
stored: for each such duplicate the ingress looks up the transaction stored under its tenant
and dedupe key, to answer with its id. Reversal reconciliation looks transactions up by dedupe
keys too. This seeds ``--transactions`` transactions through the repository and times:

* one ``stored_from`` per key (``--keys`` keys, ms per key);
* one ``stored_from_many`` for all the keys (what a group commit of duplicates sends);
* ``mark_reversed`` of ten keys (the reconciliation's read and write).

Run: ``.venv/bin/python -m bench duplicates [--transactions 40000 --keys 100 --label L]``.
Results go to ``bench/results/duplicates-<label>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

from bench._store import fresh_store, write_result


async def run(transactions: int, keys: int) -> dict[str, float]:
    from tests.factories import make_tx

    async with fresh_store("bench_duplicates") as store:
        txs = [
            make_tx(dedupe_key=f"SAVINGSACCOUNT|DEPOSIT|{i}", account_id=f"savings:{i % 3000}")
            for i in range(transactions)
        ]
        for start in range(0, transactions, 1000):
            await store.transactions.insert_many(txs[start : start + 1000])
        step = max(1, transactions // keys)
        wanted = [txs[i].dedupe_key for i in range(0, transactions, step)][:keys]
        out: dict[str, float] = {}
        t0 = time.perf_counter()
        for key in wanted:
            assert await store.transactions.stored_from("default", key) is not None
        out["one_read_per_key_ms"] = (time.perf_counter() - t0) * 1000 / len(wanted)
        t0 = time.perf_counter()
        found = await store.transactions.stored_from_many("default", wanted)
        out["one_read_for_all_keys_ms"] = (time.perf_counter() - t0) * 1000
        assert len(found) == len(wanted)
        t0 = time.perf_counter()
        assert len(await store.transactions.mark_reversed("default", wanted[:10])) == 10
        out["mark_reversed_10_keys_ms"] = (time.perf_counter() - t0) * 1000
        return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench duplicates", description=__doc__)
    p.add_argument("--transactions", type=int, default=40_000)
    p.add_argument("--keys", type=int, default=100)
    p.add_argument("--label", default="run")
    args = p.parse_args(argv)
    timings = asyncio.run(run(args.transactions, args.keys))
    for name, value in timings.items():
        print(f"{name:28s} {value:9.2f}")
    write_result("duplicates", args.label, vars(args), {"timings": timings})
    return 0
