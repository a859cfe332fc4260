"""Scale benchmark of the nightly credit batch: synthetic clients x 180 days on Ray.

Each Ray task generates its own chunk of clients directly in columnar form (vectorised numpy)
and scores it, so the benchmark measures feature computation, scoring and profile building
rather than the driver's serialisation. Reports clients/s and writes
``bench/results/credit-scale.md``.

    .venv/bin/python -m bench.credit_scale --clients 100000 --chunk 5000
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from aml.credit.features import (
    KIND_ACTIVITY,
    KIND_INFLOW,
    KIND_LOAN_DISBURSEMENT,
    KIND_LOAN_REPAYMENT,
    KIND_OUTFLOW,
    KIND_TRANSFER_IN,
    KIND_TRANSFER_OUT,
    WINDOW_DAYS,
    CreditColumns,
)
from aml.domain import CreditTier

AS_OF = datetime(2026, 7, 1, tzinfo=UTC)
_KINDS = np.array(
    [KIND_INFLOW, KIND_TRANSFER_IN, KIND_OUTFLOW, KIND_TRANSFER_OUT, KIND_ACTIVITY], dtype=np.int64
)


@dataclass(frozen=True, slots=True)
class SyntheticClients:
    """Deterministic synthetic clients, generated chunk by chunk (a ``ChunkLoader``).

    Clients differ in activity (about ``tx_per_day`` on average), income level, spending share,
    account age, loans and repayment, counterparties, countries, round trips and fraud history,
    so that every tier is populated.
    """

    n_clients: int
    chunk_size: int = 5_000
    tx_per_day: float = 1.0
    seed: int = 7
    window_days: int = WINDOW_DAYS

    def chunk_keys(self) -> Sequence[Hashable]:
        return list(range(0, self.n_clients, self.chunk_size))

    def load(self, key: Hashable) -> CreditColumns:
        start = int(key)  # type: ignore[call-overload]
        n = min(self.chunk_size, self.n_clients - start)
        rng = np.random.default_rng([self.seed, start])
        w = float(self.window_days)

        opened = rng.uniform(20.0, 1500.0, n)
        observed = np.minimum(opened, w)
        rate = self.tx_per_day * rng.lognormal(-0.3, 0.8, n)
        counts = rng.poisson(rate * observed)
        client = np.repeat(np.arange(n, dtype=np.int64), counts)
        rows = client.size
        age = rng.uniform(0.0, 1.0, rows) * observed[client] + 1e-6

        income = rng.lognormal(11.0, 0.8, n)  # typical inflow size, XAF
        spend = rng.beta(4.0, 3.0, n)  # share of inflow spent
        p_in = np.clip(rng.normal(0.35, 0.1, n), 0.1, 0.7)
        u = rng.uniform(0.0, 1.0, rows)
        pin = p_in[client]
        kind = np.where(
            u < pin * 0.8,
            _KINDS[0],
            np.where(
                u < pin,
                _KINDS[1],
                np.where(
                    u < pin + (1 - pin) * 0.7, _KINDS[2], np.where(u < 0.97, _KINDS[3], _KINDS[4])
                ),
            ),
        )
        is_in = (kind == KIND_INFLOW) | (kind == KIND_TRANSFER_IN)
        # Balance the outflows so that each client spends about `spend` of its inflow.
        n_in = np.bincount(client[is_in], minlength=n)
        n_out = np.bincount(client[~is_in & (kind != KIND_ACTIVITY)], minlength=n)
        out_size = income * spend * n_in / np.maximum(n_out, 1)
        base = np.where(is_in, income[client], out_size[client])
        amount = np.round(base * rng.lognormal(0.0, 0.5, rows))

        contacts = rng.integers(0, 12, rows)
        counterparty = np.where(
            (kind == KIND_TRANSFER_IN) | (kind == KIND_TRANSFER_OUT) | (u > 0.9),
            client * 12 + contacts,
            -1,
        )
        n_countries = rng.choice([1, 1, 1, 1, 2, 3], n)
        country = rng.integers(0, 1 << 30, rows) % n_countries[client]

        # Round trippers: a share of their inflows goes straight back to the sender.
        tripper = rng.uniform(0.0, 1.0, n) < 0.05
        trip_rows = np.flatnonzero(is_in & tripper[client] & (counterparty >= 0))
        # Loans: a disbursement and some of it repaid.
        has_loan = rng.uniform(0.0, 1.0, n) < 0.3
        loan_clients = np.flatnonzero(has_loan & (observed > 60))
        loan_size = income[loan_clients] * rng.uniform(1.0, 5.0, loan_clients.size)
        disb_age = rng.uniform(60.0, observed[loan_clients])
        repaid = rng.beta(5.0, 1.5, loan_clients.size) * loan_size

        extra_client = np.concatenate([client[trip_rows], loan_clients, loan_clients])
        extra_age = np.concatenate(
            [
                np.maximum(age[trip_rows] - 0.5, 1e-6),
                disb_age,
                np.maximum(disb_age * 0.3, 1e-6),
            ]
        )
        extra_amount = np.concatenate([amount[trip_rows], loan_size, repaid])
        extra_kind = np.concatenate(
            [
                np.full(trip_rows.size, KIND_TRANSFER_OUT),
                np.full(loan_clients.size, KIND_LOAN_DISBURSEMENT),
                np.full(loan_clients.size, KIND_LOAN_REPAYMENT),
            ]
        )
        extra_cp = np.concatenate([counterparty[trip_rows], np.full(2 * loan_clients.size, -1)])
        extra_country = np.zeros(extra_client.size, dtype=np.int64)

        fraud = rng.uniform(0.0, 1.0, n) < 0.02
        fraud_count = np.where(fraud, rng.integers(1, 4, n), 0).astype(np.int64)
        fraud_age = np.where(fraud, rng.uniform(1.0, 700.0, n), np.nan)
        # Some clients' opening date is unknown: the first transaction then dates the account.
        opened_known = np.where(rng.uniform(0.0, 1.0, n) < 0.8, opened, np.nan)
        return CreditColumns(
            client_ids=tuple(f"s{start + i}" for i in range(n)),
            currencies=("XAF",) * n,
            client=np.concatenate([client, extra_client]),
            age_days=np.concatenate([age, extra_age]),
            amount=np.concatenate([amount, extra_amount]),
            kind=np.concatenate([kind, extra_kind]).astype(np.int64),
            counterparty=np.concatenate([counterparty, extra_cp]).astype(np.int64),
            country=np.concatenate([country, extra_country]).astype(np.int64),
            opened_age_days=opened_known,
            fraud_count=fraud_count,
            fraud_age_days=fraud_age,
        )


def main() -> None:
    """Run the benchmark and write the results table."""
    import ray

    from training.credit_batch import BatchProgress, score_all

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument("--tx-per-day", type=float, default=1.0)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/credit-scale.md"))
    args = parser.parse_args()

    root = str(Path(__file__).resolve().parent.parent)
    ray.init(
        num_cpus=args.cpus,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": root}},
    )
    source = SyntheticClients(args.clients, chunk_size=args.chunk, tx_per_day=args.tx_per_day)
    rows = sum(source.load(k).client.size for k in source.chunk_keys()[:1])

    def report(p: BatchProgress) -> None:
        print(
            f"chunk {p.chunks_done}/{p.chunks_total}: {p.clients_done} clients, "
            f"{p.clients_per_s:,.0f} clients/s",
            flush=True,
        )

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    profiles = score_all(source, tenant="bench", as_of=AS_OF, progress=report)
    elapsed = time.perf_counter() - t0
    ray.shutdown()

    tiers = {t: 0 for t in CreditTier}
    for p in profiles:
        tiers[p.tier] += 1
    per_chunk = rows / min(args.chunk, args.clients)
    lines = [
        "# Credit batch at scale",
        "",
        f"`python -m bench.credit_scale --clients {args.clients} --chunk {args.chunk} "
        f"--tx-per-day {args.tx_per_day} --cpus {args.cpus}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores visible, Ray with "
        f"{args.cpus} CPUs; synthetic clients generated inside the tasks. The machine is "
        f"shared: 1-minute load average {load_before:.1f} at the start of the run.",
        "",
        "| Clients | Window | Transactions (approx.) | Wall time | Clients/s |",
        "|---|---|---|---|---|",
        f"| {len(profiles):,} | 180 days | {per_chunk * len(profiles):,.0f} | "
        f"{elapsed:,.1f} s | {len(profiles) / elapsed:,.0f} |",
        "",
        "Tier mix: " + ", ".join(f"{t.value} {n:,}" for t, n in tiers.items()),
        "",
        "Wall time includes Ray task start-up, data generation, features, scores and building "
        "every `CreditProfile` with reasons, and returning them to the driver.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
