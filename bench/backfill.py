"""The first start after an upgrade that added numeric time keys, on the embedded store.

Decisions written before ``decided_ms`` / ``alert_ms`` existed get them from
``DecisionRepository.ensure_indexes`` (run by every process at start-up) before the overview's
counters can find them. The embedded store takes no pipeline updates, so the keys are computed
in Python and written back. This writes ``--decisions`` decision documents the way an earlier
version stored them (without the keys) and times ``ensure_indexes``.

Run: ``.venv/bin/python -m bench backfill [--decisions 200000 --label L]``. Results go to
``bench/results/backfill-<label>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bench._store import fresh_store, write_result
from storage.repositories.decisions import ALERT_MS, DECIDED_MS, _as_id


async def run(decisions: int) -> dict[str, float]:
    from tests.factories import make_decision

    async with fresh_store("bench_backfill", ensure_indexes=False) as store:
        template = make_decision()
        now = datetime.now(UTC)
        for start in range(0, decisions, 5_000):
            docs = []
            for i in range(start, min(start + 5_000, decisions)):
                doc = _as_id(
                    replace(
                        template,
                        transaction_id=f"bench-tx-{i}",
                        decided_at=now - timedelta(seconds=i),
                        alert=i % 33 == 0,
                    )
                )
                del doc[DECIDED_MS]
                doc.pop(ALERT_MS, None)
                docs.append(doc)
            await store.decisions.col.insert_many(docs)
        t0 = time.perf_counter()
        await store.decisions.ensure_indexes(embedded=True)
        seconds = time.perf_counter() - t0
        left = await store.decisions.col.count_documents({DECIDED_MS: {"$exists": False}})
        assert left == 0, left
        return {"ensure_indexes_s": seconds, "per_document_us": seconds / decisions * 1e6}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench backfill", description=__doc__)
    p.add_argument("--decisions", type=int, default=200_000)
    p.add_argument("--label", default="run")
    args = p.parse_args(argv)
    timings = asyncio.run(run(args.decisions))
    print(
        f"ensure_indexes over {args.decisions:,} decisions without the keys: "
        f"{timings['ensure_indexes_s']:.1f} s ({timings['per_document_us']:.0f} µs each)"
    )
    write_result("backfill", args.label, vars(args), {"timings": timings})
    return 0
