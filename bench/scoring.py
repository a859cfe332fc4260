"""Scoring throughput: the Serve pipeline in batches vs the same ``aml`` scorers in-process.

Both paths score the same synthetic stream (many accounts, transfers between them, agents) with
the same configuration: rules, a fitted Isolation Forest (fitted on the head of the stream) and
the policy. The in-process path runs :class:`serve.scoring.pipeline.ScoringCore` over in-memory
shards; the Serve path deploys ``deploy/serve_config.yaml`` on a local Ray (memory-only state,
no store: this measures scoring, not persistence) and sends batches through the pipeline handle
with a few calls in flight. The pipeline returns each batch's counts (``score_summary``), as
the ingress gets counts from ``score_and_store``, not the decisions. Reported: transactions/s of
each, Ray overhead (``1 - serve / in-process``), whether both paths came to the same counts, and
the peak resident memory of all Ray worker processes.

Targets: >= 20,000 tx/s batched through Serve and <= 25 % Ray overhead.

Each path runs ``--rounds`` times (3 by default; the Serve rounds one after the other in the same
deployment, each under a tenant of its own so that its histories start empty) and the round
with the median throughput is reported, all of them kept: a round lasts about a second, and one
alone moved by 10 % from run to run on these machines.

Run: ``.venv/bin/python -m bench scoring [--transactions 60000 --batch 4096 --in-flight 4
--rounds 3 --label name]``. Results go to ``bench/results/scoring-<date>[-<label>].json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from actors.ordering import OrderStamp
from aml.domain import (
    ActorType,
    Direction,
    Transaction,
    TransactionType,
    sealed,
    stable_id,
)
from serve.scoring.client import DEFAULT_BATCH
from serve.scoring.pipeline import DecisionSummary

RESULTS = Path(__file__).parent / "results"
CONFIG = Path(__file__).parents[1] / "deploy" / "serve_config.yaml"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
TARGET_TX_S = 20_000
TARGET_OVERHEAD = 0.25


def synthetic_stream(n: int, *, accounts: int, seed: int = 11) -> list[Transaction]:
    """A day-spanning stream: deposits, withdrawals and transfers, some through agents."""
    rng = random.Random(seed)
    span_s = 3 * 24 * 3600
    out = []
    for i in range(n):
        acct = f"savings:{rng.randrange(accounts)}"
        kind = rng.random()
        cp = None
        if kind < 0.3:
            ttype, direction = TransactionType.TRANSFER, Direction.OUT
            cp = f"savings:{rng.randrange(accounts)}"
        elif kind < 0.65:
            ttype, direction = TransactionType.DEPOSIT, Direction.IN
        else:
            ttype, direction = TransactionType.WITHDRAWAL, Direction.OUT
        agent = f"agent:{rng.randrange(50)}" if rng.random() < 0.2 else None
        at = T0 + timedelta(seconds=span_s * i / n + rng.uniform(-120, 0))
        key = f"BENCH|{i}"
        out.append(
            bench_tx(
                key,
                at,
                ttype,
                direction,
                amount_minor=int(rng.lognormvariate(10, 1.2)),
                account_id=acct,
                counterparty_account_id=cp,
                client_id=acct.split(":")[1],
                agent_id=agent,
                actor_type=ActorType.AGENT if agent else ActorType.CUSTOMER,
                device_id=f"dev-{rng.randrange(accounts * 2)}",
            )
        )
    return out


def bench_tx(
    key: str, at: datetime, ttype: TransactionType, direction: Direction, **fields: Any
) -> Transaction:
    """A generic-source XAF transaction of the ``bench`` tenant, received when it occurred."""
    return Transaction(
        id=stable_id("bench", key),
        tenant="bench",
        dedupe_key=key,
        source="generic",
        type=ttype,
        direction=direction,
        currency="XAF",
        occurred_at=at,
        received_at=at,
        **fields,
    )


def _batches(txs: Sequence[Transaction], size: int) -> list[list[Transaction]]:
    return [list(txs[i : i + size]) for i in range(0, len(txs), size)]


def fit_model(train: list[Transaction], out_dir: Path) -> str:
    """Fit the anomaly model on the head of the stream (the same model for both paths)."""
    from aml.features import FeatureParams
    from serve.scoring.models import save_anomaly_artifact
    from training.fit_anomaly import AnomalyFitConfig, fit_isolation_forest

    est, cal, _ = fit_isolation_forest(
        train, params=FeatureParams(), config=AnomalyFitConfig(n_estimators=100)
    )
    path = save_anomaly_artifact(
        out_dir / "bench.joblib", version="bench", estimator=est, calibrator=cal
    )
    return str(path)


def run_in_process(txs: Sequence[Transaction], batch: int, model: str) -> dict[str, Any]:
    """Score every batch in this process with in-memory shards."""
    from actors.customer_state import LocalContextBuilder, ShardState, TransferGraph
    from aml.gc_tuning import collect_rarely
    from serve.scoring.pipeline import ScoringCore

    core = ScoringCore.from_user_configs(anomaly={"model": model})
    state = LocalContextBuilder([ShardState(cold_start_complete=True)], graph=TransferGraph())
    # The Serve replicas tune the collector the same way: compare like with like.
    collect_rarely()
    start = time.perf_counter()
    cpu_start = time.process_time()
    outcome = DecisionSummary.empty()
    for b in _batches(txs, batch):
        outcome += DecisionSummary.of(core.score(b, state.contexts(b), decided_at=T0))
    cpu = time.process_time() - cpu_start
    elapsed = time.perf_counter() - start
    return {**_rates(outcome.decided, elapsed, cpu), "outcome": _outcome(outcome)}


def _outcome(summary: DecisionSummary) -> dict[str, Any]:
    return {"decided": summary.decided, "alerts": summary.alerts, "by_risk": dict(summary.by_risk)}


def _rates(n: int, elapsed: float, cpu: float) -> dict[str, float]:
    """Throughput of ``n`` transactions scored in ``elapsed`` seconds using ``cpu`` CPU seconds."""
    return {
        "transactions": n,
        "seconds": elapsed,
        "tx_per_s": n / elapsed,
        "cpu_us_per_tx": 1e6 * cpu / n,
        "tx_per_cpu_s": n / cpu,
    }


def _descendants(root: int) -> set[int]:
    """Process ids below ``root`` (the local Ray's raylet and workers are children of it)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _ray_workers_rss() -> int:
    """Resident bytes of this benchmark's Ray worker processes (``ray::`` titles).

    Only descendants of this process count: other Ray instances on a shared machine do not.
    """
    total = 0
    for pid in _descendants(os.getpid()):
        try:
            if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"):
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            continue
    return total


def _cpu_seconds(pids: set[int]) -> float:
    """User plus system CPU seconds consumed so far by the given processes."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    return total / ticks


def _process_name(pid: int) -> str:
    """A short name for a process: the Ray worker title (``ray::RuleScorer``) or the program."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return "?"
    if raw.startswith("ray::"):
        return raw.split(".", 1)[0].split(" ", 1)[0]
    return Path(raw.split(" ", 1)[0]).name or "?"


def _cpu_by_process() -> dict[str, float]:
    """CPU seconds so far of this driver and every process of the local Ray, by name."""
    out: dict[str, float] = {"driver": time.process_time()}
    for pid in _descendants(os.getpid()):
        name = _process_name(pid)
        out[name] = out.get(name, 0.0) + _cpu_seconds({pid})
    return out


class _PeakSampler:
    def __init__(self, every_s: float = 0.2) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    def _run(self, every_s: float) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _ray_workers_rss())
            self._stop.wait(every_s)

    def __enter__(self) -> _PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _ray_workers_rss())


def run_serve(
    rounds: Sequence[Sequence[Transaction]],
    batch: int,
    in_flight: int,
    model: str,
    shards: int | None,
    pipeline_replicas: int | None = None,
) -> list[dict[str, Any]]:
    """Deploy the YAML on a local Ray and push every batch of each round through the pipeline
    handle, one round after the other (each its own tenant: fresh state); one result per
    round."""
    from serve.scoring.deploy import (
        apply,
        load_serve_config,
        use_grpc_transport,
        with_args,
        with_user_config,
    )

    # This process calls the pipeline as the ingress does.
    use_grpc_transport()
    import ray
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(proxy_location="Disabled")
        cfg = load_serve_config(CONFIG)
        if shards is None:
            shards = int(cfg["applications"][0]["args"]["state_shards"])
        cfg = with_args(
            cfg, mongodb_uri=None, state_group="bench", state_shards=shards, detached_state=False
        )
        cfg = with_user_config(cfg, "AnomalyScorer", {"model": model})
        if pipeline_replicas is not None:
            for dep in cfg["applications"][0]["deployments"]:
                if dep["name"] == "ScoringPipeline":
                    dep["num_replicas"] = pipeline_replicas
        apply(cfg)
        handle = serve.get_app_handle("scoring")
        # Warm-up: replicas import, first calls compile paths.
        warm = [t.replace(id="warm" + t.id, tenant="warm") for t in rounds[0][:batch]]

        async def run_all() -> list[dict[str, Any]]:
            # One event loop for every call, as in the ingress: a handle's router may be bound
            # to the loop it first ran on (Serve's throughput-optimised mode).
            assert shards is not None
            try:
                await handle.score.remote(warm)
                return [
                    await _serve_round(handle, _batches(txs, batch), in_flight, shards)
                    for txs in rounds
                ]
            finally:
                await serve.shutdown_async()  # type: ignore[no-untyped-call]

        return asyncio.run(run_all())
    finally:
        ray.shutdown()


async def _serve_round(
    handle: Any, batches: list[list[Transaction]], in_flight: int, shards: int
) -> dict[str, Any]:
    """One round through the deployed pipeline, measured on its own."""

    async def drive() -> DecisionSummary:
        sem = asyncio.Semaphore(in_flight)
        orders = OrderStamp()

        async def one(b: list[Transaction]) -> DecisionSummary:
            async with sem:
                # Sealed and numbered as ``ServeScoring`` sends it (one pickled blob, see
                # SealedBatch; actors.ordering); counts come back, as the ingress gets
                # counts from ``score_and_store``.
                order = orders.next()
                try:
                    summary: DecisionSummary = await handle.score_summary.remote(sealed(b), order)
                finally:
                    orders.done(order)
                return summary

        summaries = await asyncio.gather(*(one(b) for b in batches))
        return sum(summaries, DecisionSummary.empty())

    with _PeakSampler() as sampler:
        cpu_start = _cpu_by_process()
        start = time.perf_counter()
        outcome = await drive()
        n = outcome.decided
        elapsed = time.perf_counter() - start
        cpu_end = _cpu_by_process()
    by_process = {name: 1e6 * (cpu_end[name] - cpu_start.get(name, 0.0)) / n for name in cpu_end}
    ordering = _order_stats(shards)
    cpu = sum(by_process.values()) * n / 1e6
    # CPU of all processes of the run (driver, replicas, actors, Ray's own daemons): on a
    # loaded machine this is the comparable number, wall-clock throughput is not.
    return {
        **_rates(n, elapsed, cpu),
        "cpu_us_per_tx_by_process": dict(sorted(by_process.items(), key=lambda kv: -kv[1])),
        "peak_ray_workers_rss_mb": sampler.peak / 2**20,
        "outcome": _outcome(outcome),
        # Batches answered "not yet" (awaiting an earlier batch) and let past a gap, by
        # state actor, since the deployment (see actors.ordering).
        "ordering": ordering,
    }


def _relabelled(txs: Sequence[Transaction], tag: str) -> list[Transaction]:
    """``txs`` under another tenant (and ids), so that they meet none of the others' state."""
    return [t.replace(id=f"{tag}-{t.id}", tenant=f"{t.tenant}-{tag}") for t in txs]


def _median(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput (the lower middle one of an even number)."""
    ranked = sorted(rounds, key=lambda r: r["tx_per_s"])
    return ranked[(len(ranked) - 1) // 2]


def _order_stats(shards: int) -> dict[str, dict[str, int]]:
    """The ordering gates' counters of the benchmark's state actors."""
    import ray

    from actors.factory import GRAPH_NAME, NAMESPACE, SHARD_NAME

    names = [SHARD_NAME.format(group="bench", index=i, count=shards) for i in range(shards)]
    out: dict[str, dict[str, int]] = {}
    for name in names:
        stats = cast(
            "dict[str, Any]", ray.get(ray.get_actor(name, namespace=NAMESPACE).stats.remote())
        )
        out[name] = {k: v for k, v in stats.items() if k.startswith("order_")}
    graph = ray.get_actor(GRAPH_NAME.format(group="bench"), namespace=NAMESPACE)
    out[GRAPH_NAME.format(group="bench")] = cast(
        "dict[str, int]", ray.get(graph.order_stats.remote())
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run both paths, print and store the comparison."""
    p = argparse.ArgumentParser(prog="python -m bench scoring")
    p.add_argument("--transactions", type=int, default=60_000)
    p.add_argument("--accounts", type=int, default=5_000)
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="the hand-off's default")
    p.add_argument("--in-flight", type=int, default=4)
    p.add_argument(
        "--shards", type=int, default=None, help="state shards (default: the YAML's state_shards)"
    )
    p.add_argument("--train", type=int, default=5_000, help="head of the stream used to fit")
    p.add_argument("--pipeline-replicas", type=int, default=None, help="override the YAML")
    p.add_argument("--label", default="", help="suffix of the results file name")
    p.add_argument(
        "--rounds", type=int, default=3, help="runs of each path (the median one is reported)"
    )
    args = p.parse_args(list(argv) if argv is not None else None)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")

    stream = synthetic_stream(args.transactions + args.train, accounts=args.accounts)
    train, txs = stream[: args.train], stream[args.train :]
    # The same stream for every Serve round, each under a tenant of its own: fresh histories
    # in the same deployment, so every round decides what the first did.
    rounds = [txs] + [_relabelled(txs, f"r{k}") for k in range(1, args.rounds)]
    with tempfile.TemporaryDirectory() as tmp:
        model = fit_model(train, Path(tmp))
        local_rounds = [run_in_process(txs, args.batch, model) for _ in range(args.rounds)]
        local = _median(local_rounds)
        print(
            f"in-process: {local['tx_per_s']:,.0f} tx/s, "
            f"{local['cpu_us_per_tx']:,.0f} us CPU per transaction (median of {args.rounds})"
        )
        remote_rounds = run_serve(
            rounds, args.batch, args.in_flight, model, args.shards, args.pipeline_replicas
        )
        remote = _median(remote_rounds)
        each = ", ".join(f"{r['tx_per_s']:,.0f}" for r in remote_rounds)
        print(
            f"serve:      {remote['tx_per_s']:,.0f} tx/s, "
            f"{remote['cpu_us_per_tx']:,.0f} us CPU per transaction (all processes; median of "
            f"{args.rounds}: {each})"
        )
    overhead = 1.0 - remote["tx_per_s"] / local["tx_per_s"]
    cpu_overhead = 1.0 - remote["tx_per_cpu_s"] / local["tx_per_cpu_s"]
    result: dict[str, Any] = {
        "benchmark": "scoring",
        "at": datetime.now(UTC).isoformat(),
        # Load average: other work on the machine shows up here, not in the throughput alone.
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m_at_end": os.getloadavg()[0],
        },
        "params": vars(args),
        "in_process": local,
        "serve": remote,
        "rounds": {"in_process": local_rounds, "serve": remote_rounds},
        "ray_overhead": overhead,
        # Both paths decide the same stream in the same batch order: the same counts, in
        # every round.
        "same_outcome": all(r["outcome"] == local["outcome"] for r in remote_rounds),
        # The same comparison by CPU spent per transaction (includes the sampler's /proc reads
        # and Ray's background daemons): less sensitive to other work on the machine.
        "ray_overhead_cpu": cpu_overhead,
        "targets": {"serve_tx_per_s": TARGET_TX_S, "max_ray_overhead": TARGET_OVERHEAD},
        "met": {
            "serve_tx_per_s": remote["tx_per_s"] >= TARGET_TX_S,
            "ray_overhead": overhead <= TARGET_OVERHEAD,
        },
    }
    RESULTS.mkdir(exist_ok=True)
    suffix = f"-{args.label}" if args.label else ""
    out = RESULTS / f"scoring-{datetime.now(UTC):%Y-%m-%d}{suffix}.json"
    out.write_text(json.dumps(result, indent=2))
    print(
        f"ray overhead {overhead:+.1%}; same outcome: {result['same_outcome']}; "
        f"peak Ray workers RSS "
        f"{remote['peak_ray_workers_rss_mb']:,.0f} MB; written to {out}"
    )
    return 0
