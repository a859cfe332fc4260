"""CPU per transaction of the views a state shard sends a rule replica (``actors.view_link``).

Replays the scoring benchmark's stream through in-process shards and their links, batch by
batch, as the shard actors and ``ShardedState`` do across processes, and times each step with
``time.process_time``:

* ``answer``: the shards observe their items and answer each one's view;
* ``encode``: the views to slots (and the transactions sent for the first time);
* ``dumps`` / ``loads``: the reply crossing a process boundary;
* ``apply``: the replica turning the reply back into views.

Every view is checked against the one answered, and the transactions sent again (their slot
dropped) are counted. ``--slots-only`` names every view by slots, as before views continued the
window's previous one; ``--capacity`` sets the slots (and kept records) per shard and link.
Only the second half of the stream is measured (the links full, the windows grown).

Run: ``.venv/bin/python -m bench link_cost [--transactions 120000 --accounts 3000 --label L]``.
Results go to ``bench/results/link-cost-<label>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from actors.customer_state import ShardState, route
from actors.factory import own_transactions
from actors.view_link import DEFAULT_LINK_CAPACITY, ViewLink, ViewSender
from aml.domain import Transaction
from bench.scoring import RESULTS, _batches, synthetic_stream

STEPS = ("answer", "encode", "dumps", "loads", "apply")


async def measure(
    txs: Sequence[Transaction],
    *,
    batch: int = 2048,
    shards: int = 2,
    capacity: int = DEFAULT_LINK_CAPACITY,
    keyed: bool = True,
) -> dict[str, Any]:
    """Microseconds per transaction of each step over the second half of ``txs``, with the
    slots named and the transactions sent per transaction."""
    states = [ShardState(cold_start_complete=True) for _ in range(shards)]
    senders = [ViewSender(capacity=capacity) for _ in range(shards)]
    links = [ViewLink() for _ in range(shards)]
    cpu = dict.fromkeys(STEPS, 0.0)
    counted = named = sent = wire = 0
    half = len(txs) // 2
    for start, chunk in zip(range(0, len(txs), batch), _batches(txs, batch), strict=True):
        measured = start >= half
        for shard, items in sorted(route(chunk, shards).items()):
            t0 = time.process_time()
            views, keys = states[shard].answer_keyed(items)
            t1 = time.process_time()
            ticket, link_id = links[shard].request()
            own = own_transactions(items)
            reply = senders[shard].encode(link_id, views, own, keys if keyed else None)
            t2 = time.process_time()
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
            t3 = time.process_time()
            arrived = pickle.loads(data)
            t4 = time.process_time()
            got = await links[shard].receive(ticket, arrived, own)
            t5 = time.process_time()
            if [list(v) for v in got] != [list(v) for v in views]:
                raise AssertionError(f"shard {shard} batch at {start}: views differ")
            if measured:
                for step, a, b in zip(
                    STEPS, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5), strict=True
                ):
                    cpu[step] += b - a
                named += len(reply.slots)
                sent += len(reply.new)
                wire += len(data)
        if measured:
            counted += len(chunk)
    per_tx = {step: 1e6 * seconds / max(counted, 1) for step, seconds in cpu.items()}
    return {
        "transactions_measured": counted,
        "us_per_tx": per_tx,
        "link_us_per_tx": sum(v for k, v in per_tx.items() if k != "answer"),
        "slots_named_per_tx": named / max(counted, 1),
        "sent_per_tx": sent / max(counted, 1),
        "reply_bytes_per_tx": wire / max(counted, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench link_cost")
    p.add_argument("--transactions", type=int, default=120_000)
    p.add_argument("--accounts", type=int, default=3_000)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--capacity", type=int, default=DEFAULT_LINK_CAPACITY)
    p.add_argument("--slots-only", action="store_true", help="views not continued")
    p.add_argument("--label", default=f"{datetime.now(UTC):%Y-%m-%d}")
    args = p.parse_args(list(argv) if argv is not None else None)
    from aml.gc_tuning import collect_rarely

    collect_rarely()  # as the shard and rule replicas do
    stream = synthetic_stream(args.transactions, accounts=args.accounts)
    result = asyncio.run(
        measure(
            stream,
            batch=args.batch,
            shards=args.shards,
            capacity=args.capacity,
            keyed=not args.slots_only,
        )
    )
    for step, us in result["us_per_tx"].items():
        print(f"  {step:<8} {us:7.2f} us per transaction")
    print(
        f"link {result['link_us_per_tx']:.1f} us, {result['slots_named_per_tx']:.1f} slots named "
        f"and {result['sent_per_tx']:.2f} transactions sent per transaction"
    )
    out = RESULTS / f"link-cost-{args.label}.json"
    RESULTS.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "link_cost",
                "at": datetime.now(UTC).isoformat(),
                "params": vars(args),
                **result,
            },
            indent=2,
        )
    )
    print(f"written to {out}")
    return 0
