"""CPU per transaction of every scoring stage, in-process, on the scoring benchmark's stream.

The stream, the fitted Isolation Forest and the configuration are those of
:mod:`bench.scoring`, so the numbers explain that benchmark's throughput. Every stage is timed
with ``time.process_time`` (CPU of this process only), which keeps the numbers comparable on a
shared, loaded machine where wall-clock time is not:

* ``contexts``: in-memory shards and the transfer graph observe the batch and answer contexts;
* ``features``: the feature matrix of the batch;
* ``rules``: the rule engine over the batch, and each rule alone (``rule:<id>``) after the shared
  per-transaction views (``rule_views``) are built;
* ``anomaly``: the calibrated Isolation Forest with its explanations, one call per batch;
* ``policy``: decisions from the scorers' results;
* ``persist_encoding``: decisions, alert candidates and transactions to documents (what
  ``persist`` sends to the store, without the I/O);
* ``pickle_*``: what crossing a Ray process boundary costs per transaction (dumps + loads of
  the batch, its contexts, the rule evaluations and the decisions).

With the interpreter's default garbage collection, collections land in whichever stage happens
to allocate when a threshold is crossed; ``--tune-gc`` collects as the scoring replicas do.

A second pass over a fresh state runs the whole pipeline under ``cProfile`` and lists the
hottest functions by own time.

Run: ``.venv/bin/python -m bench profile_scoring [--transactions 20000 --label before]``.
Results go to ``bench/results/profile-scoring-<label>.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pickle
import pstats
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.scoring import RESULTS, T0, _batches, fit_model, synthetic_stream


class _Clock:
    """Accumulates CPU seconds per stage."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)

    def run(self, stage: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        out = fn(*args, **kwargs)
        self.cpu[stage] += time.process_time() - start
        return out


def _roundtrip(obj: Any) -> Any:
    return pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def _per_rule(clock: _Clock, engine: Any, batch: Sequence[Any], contexts: Sequence[Any]) -> None:
    """Each enabled rule alone over the batch, after the shared views are built."""
    from aml.rules.catalog import RuleInput, is_scorable

    config = engine.config
    inputs = []

    def views() -> None:
        for tx, ctx in zip(batch, contexts, strict=True):
            if not is_scorable(tx):
                continue
            ri = RuleInput(tx, ctx, config.params, config.thresholds_for(tx.currency))
            # Touch every shared view so that rules are timed on their own work only.
            _ = (ri.moves, ri.current, ri.edge, ri.agent_txs)
            inputs.append(ri)

    clock.run("rule_views", views)
    for rule_id in engine.enabled_rules:
        from aml.rules.catalog import RULES

        spec = RULES[rule_id]

        def one(fn: Callable[[Any], Any] = spec.fn, needs: bool = spec.needs_thresholds) -> None:
            for ri in inputs:
                if needs and ri.th is None:
                    continue
                fn(ri)

        clock.run(f"rule:{rule_id}", one)


def measure(txs: Sequence[Any], batch_size: int, model: str) -> dict[str, float]:
    """CPU seconds per stage over the whole stream (fresh in-memory state)."""
    from actors.customer_state import LocalContextBuilder, ShardState, TransferGraph
    from serve.scoring.pipeline import ScoringCore, alert_candidates, decide_batch, feature_matrix
    from storage.codec import to_doc

    core = ScoringCore.from_user_configs(anomaly={"model": model})
    state = LocalContextBuilder(
        [ShardState(cold_start_complete=True), ShardState(cold_start_complete=True)],
        graph=TransferGraph(),
    )
    clock = _Clock()

    def encode(b: Sequence[Any], d: Sequence[Any]) -> None:
        for decision in d:
            to_doc(decision, id_field="transaction_id")
        for alert in alert_candidates(b, d):
            to_doc(alert)

    for b in _batches(txs, batch_size):
        clock.run("pickle_batch", _roundtrip, b)
        contexts = clock.run("contexts", state.contexts, b)
        clock.run("pickle_contexts", _roundtrip, contexts)
        x = clock.run("features", feature_matrix, b, contexts, core.features)
        pairs = list(zip(b, contexts, strict=True))
        evaluations = clock.run("rules", core.rules.evaluate_batch, pairs)
        _per_rule(clock, core.rules, b, contexts)
        clock.run("pickle_rule_evaluations", _roundtrip, evaluations)
        anomaly = clock.run("anomaly", core.anomaly.score, x)
        xgb = clock.run("xgboost", core.xgboost.score, x)
        clock.run("pickle_model_results", _roundtrip, anomaly)
        decisions = clock.run(
            "policy", decide_batch, b, evaluations, anomaly, xgb, config=core.policy, decided_at=T0
        )
        clock.run("pickle_decisions", _roundtrip, decisions)
        clock.run("persist_encoding", encode, b, decisions)
    return dict(clock.cpu)


def hot_spots(txs: Sequence[Any], batch_size: int, model: str, top: int) -> list[dict[str, Any]]:
    """The whole in-process pipeline under cProfile; the ``top`` functions by own time."""
    from actors.customer_state import LocalContextBuilder, ShardState, TransferGraph
    from serve.scoring.pipeline import ScoringCore

    core = ScoringCore.from_user_configs(anomaly={"model": model})
    state = LocalContextBuilder(
        [ShardState(cold_start_complete=True), ShardState(cold_start_complete=True)],
        graph=TransferGraph(),
    )
    # CPU time, not wall time: on a loaded machine waiting would otherwise count as cost.
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for b in _batches(txs, batch_size):
        core.score(b, state.contexts(b), decided_at=T0)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    entries: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (file, line, name), (_cc, calls, tottime, cumtime, _callers) in entries.items():
        rows.append(
            {
                "function": f"{Path(file).name}:{line}({name})",
                "calls": calls,
                "own_us_per_tx": 1e6 * tottime / len(txs),
                "cum_us_per_tx": 1e6 * cumtime / len(txs),
            }
        )
    rows.sort(key=lambda r: -float(r["own_us_per_tx"]))
    return rows[:top]


def _summary(cpu: dict[str, float], n: int) -> dict[str, float]:
    us = {stage: 1e6 * seconds / n for stage, seconds in cpu.items()}
    pipeline = ("contexts", "features", "rules", "anomaly", "xgboost", "policy")
    us["in_process_total"] = sum(us[s] for s in pipeline)
    us["pickle_total"] = sum(v for k, v in us.items() if k.startswith("pickle_"))
    return dict(sorted(us.items(), key=lambda kv: (kv[0].startswith("rule:"), kv[0])))


def main(argv: Sequence[str] | None = None) -> int:
    """Profile, print a table and store the numbers."""
    p = argparse.ArgumentParser(prog="python -m bench profile_scoring")
    p.add_argument("--transactions", type=int, default=20_000)
    p.add_argument("--accounts", type=int, default=5_000)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--train", type=int, default=5_000)
    p.add_argument("--profile-transactions", type=int, default=5_000)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--label", default=f"{datetime.now(UTC):%Y-%m-%d}")
    p.add_argument(
        "--tune-gc",
        action="store_true",
        help="collect garbage as the scoring replicas do (serve.scoring.pipeline)",
    )
    args = p.parse_args(list(argv) if argv is not None else None)
    if args.tune_gc:
        from aml.gc_tuning import collect_rarely

        collect_rarely()

    stream = synthetic_stream(args.transactions + args.train, accounts=args.accounts)
    train, txs = stream[: args.train], stream[args.train :]
    with tempfile.TemporaryDirectory() as tmp:
        model = fit_model(train, Path(tmp))
        cpu = measure(txs, args.batch, model)
        hot = hot_spots(txs[: args.profile_transactions], args.batch, model, args.top)
    us = _summary(cpu, len(txs))
    print(f"CPU us per transaction over {len(txs):,} transactions (batch {args.batch}):")
    for stage, value in us.items():
        print(f"  {stage:<40} {value:9.1f}")
    print(f"in-process CPU bound: {1e6 / us['in_process_total']:,.0f} tx/s per core")
    print("hot spots (own time, us per transaction):")
    for row in hot[:15]:
        print(f"  {row['own_us_per_tx']:8.2f}  {row['function']}")
    result = {
        "benchmark": "profile_scoring",
        "at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0]},
        "params": vars(args),
        "cpu_us_per_tx": us,
        "in_process_cpu_tx_per_s": 1e6 / us["in_process_total"],
        "hot_spots": hot,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"profile-scoring-{args.label}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"written to {out}")
    return 0
