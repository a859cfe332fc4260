"""CPU per transaction of features and rules against the size of the account's 7-day history.

The scoring benchmarks spread their stream over thousands of accounts, so every account has a
few dozen earlier movements at most. An agent's or a merchant's float account can have
thousands a week, and both the feature vector and the rules' shared views are built from the
transaction's whole point-in-time history, once per transaction. This measures that cost, in
one process, for an account with ``N`` earlier movements spread over the 7 days before the
transaction (transfers out to a few hundred counterparties and deposits in): features
(``aml.features.feature_vector``) and the rule engine (``RuleEngine.evaluate_batch`` over the
default rule configuration), each with ``time.process_time``: once for a history the engine
meets for the first time, and once for a stream of the account's transactions scored in turn
(each seeing the ``N`` records before it), where the engine's ``MovementCache`` extends the
previous transaction's movements instead of building them again and a ``SummaryCache``
(:mod:`aml.summaries`) moves the previous one's feature windows on (reported beside the features
of each history read whole).

Run: ``.venv/bin/python -m bench history_cost [--sizes 10,100,1000,5000 --label L]``. Results
go to ``bench/results/history-cost-<label>.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aml.domain import Direction, Transaction, TransactionType
from aml.features import FeatureParams, feature_vector
from aml.history import HistoryContext
from aml.rules.config import default_rule_config
from aml.rules.engine import RuleEngine
from aml.summaries import SummaryCache
from bench.scoring import RESULTS, bench_tx

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
WEEK_S = 7 * 24 * 3600
ACCOUNT = "savings:float"


def _tx(
    key: str, at: datetime, ttype: TransactionType, direction: Direction, **extra: Any
) -> Transaction:
    return bench_tx(key, at, ttype, direction, account_id=ACCOUNT, client_id="float-owner", **extra)


def busy_account(n: int, *, seed: int = 5) -> tuple[Transaction, list[Transaction]]:
    """A transfer out at ``T0`` and the account's ``n`` earlier movements over the week before
    it, time-ordered: 40 % transfers out to 500 counterparties, the rest deposits."""
    rng = random.Random(seed)
    history = []
    for i in range(n):
        at = T0 - timedelta(seconds=WEEK_S * (n - i) / (n + 1))
        amount = rng.randrange(1_000, 500_000)
        if rng.random() < 0.4:
            cp = f"savings:c{rng.randrange(500)}"
            history.append(
                _tx(
                    f"H|{n}|{i}",
                    at,
                    TransactionType.TRANSFER,
                    Direction.OUT,
                    amount_minor=amount,
                    counterparty_account_id=cp,
                )
            )
        else:
            history.append(
                _tx(f"H|{n}|{i}", at, TransactionType.DEPOSIT, Direction.IN, amount_minor=amount)
            )
    tx = _tx(
        f"T|{n}",
        T0,
        TransactionType.TRANSFER,
        Direction.OUT,
        amount_minor=100_000,
        counterparty_account_id="savings:c1",
    )
    return tx, history


def _cpu_us(fn: Callable[[], object], budget_s: float) -> float:
    """CPU microseconds per call of ``fn``, repeated for about ``budget_s`` of CPU."""
    fn()  # warm caches (time zones, units) out of the measurement
    calls, started = 0, time.process_time()
    while True:
        fn()
        calls += 1
        spent = time.process_time() - started
        if spent >= budget_s:
            return spent / calls * 1e6


def measure(
    sizes: Sequence[int], *, budget_s: float = 0.5, stream: int = 200
) -> list[dict[str, float]]:
    """Per history size: CPU µs per transaction of features and of rules.

    ``rules_us`` is a transaction whose history the rule engine meets for the first time (an
    account's first transaction in a replica); ``stream_rules_us`` and ``stream_features_us``
    are the account's next ``stream`` transactions scored in turn by one engine, each seeing
    the ``n`` records before it (the window moving on), as serving scores a busy account:
    the features with the account summaries kept from one to the next (as a rule replica
    keeps them, :mod:`aml.summaries`), and ``stream_features_pass_us`` reading each history
    whole.
    """
    engine = RuleEngine(default_rule_config())
    cache = engine.movement_cache
    summaries = SummaryCache()
    params = FeatureParams()
    rows = []
    for n in sizes:
        tx, history = busy_account(n)
        ctx = HistoryContext(account=history)

        def cold(tx: Transaction = tx, ctx: HistoryContext = ctx) -> object:
            cache.clear()
            return engine.evaluate_batch([(tx, ctx)])

        features = _cpu_us(lambda: feature_vector(tx, ctx, params=params), budget_s)  # noqa: B023
        rules = _cpu_us(cold, budget_s)
        records = busy_account(n + stream)[1]
        pairs = [
            (records[i], HistoryContext(account=records[i - n : i])) for i in range(n, n + stream)
        ]

        def stream_rules(pairs: list[tuple[Transaction, HistoryContext]] = pairs) -> object:
            return [engine.evaluate(t, c) for t, c in pairs]

        def stream_features(pairs: list[tuple[Transaction, HistoryContext]] = pairs) -> object:
            return [feature_vector(t, c, params=params, summaries=summaries) for t, c in pairs]

        def stream_passes(pairs: list[tuple[Transaction, HistoryContext]] = pairs) -> object:
            return [feature_vector(t, c, params=params) for t, c in pairs]

        rows.append(
            {
                "history": n,
                "features_us": features,
                "rules_us": rules,
                "stream_features_us": _cpu_us(stream_features, budget_s) / stream,
                "stream_features_pass_us": _cpu_us(stream_passes, budget_s) / stream,
                "stream_rules_us": _cpu_us(stream_rules, budget_s) / stream,
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench history_cost", description=__doc__)
    ap.add_argument("--sizes", default="10,100,1000,5000", help="earlier movements, a,b,...")
    ap.add_argument("--budget", type=float, default=0.5, help="CPU seconds per measurement")
    ap.add_argument("--stream", type=int, default=200, help="transactions scored in turn")
    ap.add_argument("--label", default="run")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows = measure(sizes, budget_s=args.budget, stream=args.stream)
    for r in rows:
        print(
            f"history {int(r['history']):6d}: features {r['features_us']:9.1f} µs, "
            f"rules {r['rules_us']:9.1f} µs per transaction; in turn: features "
            f"{r['stream_features_us']:9.1f} µs "
            f"(whole history {r['stream_features_pass_us']:.1f}), "
            f"rules {r['stream_rules_us']:9.1f} µs"
        )
    out = RESULTS / f"history-cost-{args.label}.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "history_cost",
                "at": datetime.now(UTC).isoformat(),
                "params": {
                    "sizes": sizes,
                    "budget_s": args.budget,
                    "stream": args.stream,
                    "label": args.label,
                },
                "results": rows,
            },
            indent=1,
        )
    )
    print(f"written to {out}")
    return 0
