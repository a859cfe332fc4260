"""CPU the embedded store spends on the writes every scored transaction costs.

Every hook the ingress acknowledges is written twice (its transaction, then its ingest-log
record, one command each per group commit), and every scored transaction three times more by
the pipeline's ``persist`` (its decision, its alert when it alerts, and its transaction marked
scored). At 1,000-1,500 hooks/s end to end the embedded server is the busiest process of the
stack, so its CPU per transaction bounds the whole product's throughput on two cores.

This feeds the end-to-end benchmark's Fineract hooks (same mix, same accounts) through the
product's parser, decides them in-process with the default rules, and replays the hot path's
writes against a fresh embedded store, one kind at a time so that each is measured on its own:

* ``transactions``: the committer's ``transactions.insert_many`` in group commits of
  ``--group``;
* ``ingest_log``: its ``ingest_log.insert_many`` of the same group's records;
* ``persist``: ``serve.scoring.pipeline.persist`` per scoring batch of ``--batch`` (explained
  alerting decisions, decisions, alerts, scored marks).

For each: the store process's CPU (user + system, from ``/proc``) and this client's CPU, in
microseconds per transaction, and the wall time.

Run: ``.venv/bin/python -m bench store_writes [--hooks 30000 --label L]``.
Results go to ``bench/results/store-writes-<label>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aml.domain import Decision, IngestRecord, Transaction
from bench._store import fresh_server_store, process_cpu_s, write_result
from bench.e2e import HookMix
from serve.ingest.events import ParseOptions
from serve.ingest.fineract import parse_fineract
from serve.ingress import ingest_record, kept_headers


def hooks(n: int, accounts: int) -> tuple[list[IngestRecord], list[Transaction]]:
    """The first ``n`` hooks of the end-to-end mix, parsed as the ingress parses them."""
    received = datetime.now(UTC).replace(microsecond=0)
    spacing = 0.001
    mix = HookMix(
        secret="s" * 40,
        port=1,
        day_start=received - timedelta(seconds=n * spacing + 60),
        spacing_s=spacing,
        value_date=received.strftime("%d %B %Y"),
        accounts=accounts,
    )
    options = ParseOptions()
    records, txs = [], []
    for i in range(1, n + 1):
        head, body = mix(i).split(b"\r\n\r\n", 1)
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
        event = parse_fineract(
            headers,
            body,
            content_type=headers["Content-Type"],
            received_at=received,
            options=options,
        )
        assert event.transaction is not None, event
        txs.append(event.transaction)
        record = ingest_record(event, received, kept_headers(headers), body)
        records.append(dataclasses.replace(record, transaction_id=event.transaction.id))
    return records, txs


def decide(txs: Sequence[Transaction], batch: int) -> list[list[Decision]]:
    """The default rules' decisions, batch by batch, with in-memory state (no models)."""
    from actors.customer_state import LocalContextBuilder, ShardState, TransferGraph
    from serve.scoring.pipeline import ScoringCore

    core = ScoringCore.from_user_configs()
    state = LocalContextBuilder([ShardState(cold_start_complete=True)], graph=TransferGraph())
    out = []
    for start in range(0, len(txs), batch):
        part = list(txs[start : start + batch])
        out.append(core.score(part, state.contexts(part), decided_at=datetime.now(UTC)))
    return out


async def measured(
    pid: int, n: int, calls: Sequence[Callable[[], Awaitable[Any]]]
) -> dict[str, float]:
    """Run ``calls`` in turn; store and client CPU per transaction (``n`` of them), wall."""
    store0, client0, wall0 = process_cpu_s(pid), time.process_time(), time.perf_counter()
    for call in calls:
        await call()
    return {
        "store_cpu_us_per_tx": (process_cpu_s(pid) - store0) * 1e6 / n,
        "client_cpu_us_per_tx": (time.process_time() - client0) * 1e6 / n,
        "wall_s": time.perf_counter() - wall0,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from serve.scoring.pipeline import persist

    records, txs = hooks(args.hooks, args.accounts)
    decided = decide(txs, args.batch)
    alerting = sum(d.alert for ds in decided for d in ds)
    n = len(txs)
    groups = [(start, start + args.group) for start in range(0, n, args.group)]
    async with fresh_server_store("bench_store_writes") as (server, store):

        def insert_txs(lo: int, hi: int) -> Callable[[], Awaitable[Any]]:
            ids = [r.id for r in records[lo:hi]]
            return lambda: store.transactions.insert_many(txs[lo:hi], ingest_ids=ids)

        def log_records(lo: int, hi: int) -> Callable[[], Awaitable[Any]]:
            return lambda: store.ingest_log.insert_many(records[lo:hi])

        def persist_batch(i: int) -> Callable[[], Awaitable[Any]]:
            part = txs[i * args.batch : (i + 1) * args.batch]
            return lambda: persist(store, part, decided[i])

        phases = {
            "transactions": await measured(server.pid, n, [insert_txs(*g) for g in groups]),
            "ingest_log": await measured(server.pid, n, [log_records(*g) for g in groups]),
            "persist": await measured(
                server.pid, n, [persist_batch(i) for i in range(len(decided))]
            ),
        }
        assert await store.transactions.count_matching({"status": "scored"}) == n
    total = {
        key: sum(p[key] for p in phases.values())
        for key in ("store_cpu_us_per_tx", "client_cpu_us_per_tx", "wall_s")
    }
    return {"hooks": n, "alerting": alerting, "phases": phases, "total": total}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench store_writes", description=__doc__)
    p.add_argument("--hooks", type=int, default=30_000)
    p.add_argument("--accounts", type=int, default=3000)
    p.add_argument("--group", type=int, default=16, help="transactions per group commit")
    p.add_argument("--batch", type=int, default=512, help="transactions per scoring batch")
    p.add_argument("--label", default="run")
    args = p.parse_args(argv)
    result = asyncio.run(run(args))
    for name, phase in {**result["phases"], "total": result["total"]}.items():
        print(
            f"{name:14s} store {phase['store_cpu_us_per_tx']:7.1f} us/tx   client "
            f"{phase['client_cpu_us_per_tx']:7.1f} us/tx   wall {phase['wall_s']:6.1f} s"
        )
    params = {k: v for k, v in vars(args).items() if k != "label"}
    write_result("store_writes", args.label, params, result)
    return 0
