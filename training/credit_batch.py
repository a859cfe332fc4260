"""Nightly credit scoring of every client, as Ray tasks over chunks of clients.

The work of a chunk is a plain function (:func:`score_chunk`); :func:`make_chunk_task` is the one
place that turns it into a Ray task. Each task computes the features of its whole chunk at once
from flat arrays (see :mod:`aml.credit.features`), so the batch gives exactly the profiles the
on-request path gives, at a fraction of the cost.

Sources:

* a mapping ``client_id -> transactions`` (split into chunks by the driver), or
* a :class:`ChunkLoader`, whose ``load`` runs inside the task so that reading or generating the
  data is parallel too (the scale benchmark uses this).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aml.credit.features import ClientInfo, CreditColumns, columns_from_transactions
from aml.credit.score import CreditConfig, profiles_from_columns
from aml.domain import AlertStatus, CreditProfile, Transaction, ensure_utc

if TYPE_CHECKING:
    from storage.store import Store
    from training.credit_kmeans import CreditClusterModel

ACCOUNT_AGE_HORIZON_DAYS = 365  # the account-age component saturates here


@runtime_checkable
class ChunkLoader(Protocol):
    """Produces the clients of a batch chunk by chunk (must pickle: it travels to the tasks)."""

    def chunk_keys(self) -> Sequence[Hashable]:
        """One key per chunk."""
        ...

    def load(self, key: Hashable) -> CreditColumns:
        """The chunk's clients in columnar form (runs inside a Ray task)."""
        ...


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """Where a running batch is; handed to the progress callback after every chunk."""

    chunks_done: int
    chunks_total: int
    clients_done: int
    elapsed_s: float

    @property
    def clients_per_s(self) -> float:
        return self.clients_done / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkJob:
    """Everything one task needs: either transactions per client or a loader and its key."""

    tenant: str
    as_of: datetime
    config: CreditConfig
    transactions: Mapping[str, Sequence[Transaction]] | None = None
    info: Mapping[str, ClientInfo] = field(default_factory=dict)
    loader: ChunkLoader | None = None
    key: Hashable | None = None
    cluster_model: CreditClusterModel | None = None


def score_chunk(job: ChunkJob) -> list[CreditProfile]:
    """Profiles of one chunk of clients (plain function; runs in a Ray task or in-process)."""
    if job.loader is not None:
        cols = job.loader.load(job.key)
    else:
        cols = columns_from_transactions(
            job.transactions or {},
            as_of=job.as_of,
            info=job.info,
            default_currency=job.config.default_currency,
            window_days=job.config.window_days,
        )
    profiles = profiles_from_columns(cols, tenant=job.tenant, as_of=job.as_of, config=job.config)
    if job.cluster_model is not None:
        profiles = job.cluster_model.annotate_many(profiles)
    return profiles


def make_chunk_task(num_cpus: float = 1.0) -> Any:
    """The Ray remote version of :func:`score_chunk` (the only place Ray is applied)."""
    import ray

    return ray.remote(num_cpus=num_cpus, max_retries=2)(score_chunk)


def _jobs(
    source: Mapping[str, Sequence[Transaction]] | ChunkLoader,
    *,
    tenant: str,
    as_of: datetime,
    config: CreditConfig,
    info: Mapping[str, ClientInfo],
    chunk_size: int,
    cluster_model: CreditClusterModel | None,
) -> list[ChunkJob]:
    if isinstance(source, ChunkLoader):
        return [
            ChunkJob(
                tenant=tenant,
                as_of=as_of,
                config=config,
                loader=source,
                key=k,
                cluster_model=cluster_model,
            )
            for k in source.chunk_keys()
        ]
    ids = list(source)
    jobs = []
    for start in range(0, len(ids), chunk_size):
        part = ids[start : start + chunk_size]
        jobs.append(
            ChunkJob(
                tenant=tenant,
                as_of=as_of,
                config=config,
                transactions={c: source[c] for c in part},
                info={c: info[c] for c in part if c in info},
                cluster_model=cluster_model,
            )
        )
    return jobs


def iter_scores(
    source: Mapping[str, Sequence[Transaction]] | ChunkLoader,
    *,
    tenant: str,
    as_of: datetime,
    config: CreditConfig | None = None,
    info: Mapping[str, ClientInfo] | None = None,
    chunk_size: int = 2_000,
    max_in_flight: int | None = None,
    cluster_model: CreditClusterModel | None = None,
) -> Iterator[tuple[BatchProgress, list[CreditProfile]]]:
    """Score every client chunk by chunk on Ray, yielding each chunk's profiles as it finishes.

    Starts a local Ray when none is running. At most ``max_in_flight`` chunks are submitted at a
    time (default: twice the cluster's CPUs) so that memory stays bounded.
    """
    import ray

    if not ray.is_initialized():
        ray.init()
    config = config or CreditConfig()
    as_of = ensure_utc(as_of)
    jobs = _jobs(
        source,
        tenant=tenant,
        as_of=as_of,
        config=config,
        info=info or {},
        chunk_size=chunk_size,
        cluster_model=cluster_model,
    )
    task = make_chunk_task()
    cpus = ray.cluster_resources().get("CPU", 1)  # type: ignore[no-untyped-call]
    limit = max_in_flight or max(2, 2 * int(cpus))
    started = time.perf_counter()
    pending: list[Any] = []
    nxt = done = clients = 0
    while nxt < len(jobs) or pending:
        while nxt < len(jobs) and len(pending) < limit:
            pending.append(task.remote(jobs[nxt]))
            nxt += 1
        ready, pending = ray.wait(pending, num_returns=1)
        profiles: list[CreditProfile] = ray.get(ready[0])
        done += 1
        clients += len(profiles)
        yield BatchProgress(done, len(jobs), clients, time.perf_counter() - started), profiles


def score_all(
    source: Mapping[str, Sequence[Transaction]] | ChunkLoader,
    *,
    tenant: str,
    as_of: datetime,
    config: CreditConfig | None = None,
    info: Mapping[str, ClientInfo] | None = None,
    chunk_size: int = 2_000,
    progress: Callable[[BatchProgress], None] | None = None,
    max_in_flight: int | None = None,
    cluster_model: CreditClusterModel | None = None,
) -> list[CreditProfile]:
    """Score every client of ``source`` at ``as_of`` as Ray tasks over chunks of clients.

    Args:
        source: transactions per client, or a loader producing columnar chunks.
        tenant: tenant of the clients.
        as_of: end of the scoring window (the batch's clock value).
        config: scoring configuration (defaults when omitted).
        info: opening dates and confirmed-fraud alerts per client (mapping source only).
        chunk_size: clients per task (mapping source only).
        progress: called after every finished chunk.
        max_in_flight: chunks submitted at once.
        cluster_model: when given, every scored profile gets the behavioural cluster's tier
            and the review flag when it is more than one tier from the rule tier.

    Returns:
        Every client's profile (chunks in completion order).
    """
    out: list[CreditProfile] = []
    for state, profiles in iter_scores(
        source,
        tenant=tenant,
        as_of=as_of,
        config=config,
        info=info,
        chunk_size=chunk_size,
        max_in_flight=max_in_flight,
        cluster_model=cluster_model,
    ):
        out.extend(profiles)
        if progress is not None:
            progress(state)
    return out


async def _fraud_alert_dates(
    store: Store, *, tenant: str, until: datetime, page_size: int
) -> dict[str, list[datetime]]:
    dates: dict[str, list[datetime]] = {}
    skip = 0
    while True:
        page, _total = await store.alerts.list_(
            tenant=tenant,
            statuses=[AlertStatus.CLOSED_FRAUD],
            created_before=until,
            skip=skip,
            limit=page_size,
        )
        for alert in page:
            if alert.client_id is not None:
                dates.setdefault(alert.client_id, []).append(alert.created_at)
        if len(page) < page_size:
            return dates
        skip += page_size


async def score_all_from_store(
    store: Store,
    *,
    tenant: str,
    as_of: datetime,
    config: CreditConfig | None = None,
    opened_at: Mapping[str, datetime] | None = None,
    chunk_size: int = 2_000,
    progress: Callable[[BatchProgress], None] | None = None,
    page_size: int = 5_000,
    cluster_model: CreditClusterModel | None = None,
    clients_per_read: int | None = None,
) -> list[CreditProfile]:
    """Nightly job: stream the tenant's transactions from the store a slice of clients at a
    time, score each slice on Ray and store its profiles (replacing the previous ones).

    Transactions are read from ``as_of - max(window, 365 days)`` so that, without an opening
    date, the account age is known up to the point where its component saturates. Only one
    slice is scored while the next is read, so memory is bounded by the slice size rather than
    by the tenant.

    Args:
        store: the open store.
        tenant: tenant to score.
        as_of: end of the scoring window.
        config: scoring configuration (defaults when omitted).
        opened_at: account opening date per client, when known (e.g. from Fineract).
        chunk_size: clients per Ray task.
        progress: called after every finished chunk (counts over the whole job).
        page_size: alerts per store read.
        cluster_model: the promoted K-Means tier model, if any (see :func:`score_all`).
        clients_per_read: clients per store read (default: four Ray chunks, enough to keep
            a small cluster busy).

    Returns:
        The stored profiles.
    """
    config = config or CreditConfig()
    as_of = ensure_utc(as_of)
    horizon = max(config.window_days, ACCOUNT_AGE_HORIZON_DAYS)
    since = as_of - timedelta(days=horizon)
    per_read = clients_per_read or 4 * chunk_size
    alerts = await _fraud_alert_dates(store, tenant=tenant, until=as_of, page_size=page_size)
    opened = opened_at or {}
    ids = await store.transactions.client_ids(tenant, since=since, until=as_of)
    chunks_total = sum(
        -(-min(per_read, len(ids) - s) // chunk_size) for s in range(0, len(ids), per_read)
    )
    started = time.perf_counter()
    offset = [0, 0]  # chunks and clients finished in earlier slices

    def _report(state: BatchProgress) -> None:
        if progress is not None:
            progress(
                BatchProgress(
                    offset[0] + state.chunks_done,
                    chunks_total,
                    offset[1] + state.clients_done,
                    time.perf_counter() - started,
                )
            )

    stream = store.transactions.iter_client_chunks(
        tenant, since=since, until=as_of, clients_per_chunk=per_read, client_ids=ids
    )
    out: list[CreditProfile] = []
    # Read the next slice while Ray scores the current one.
    upcoming: asyncio.Future[dict[str, list[Transaction]] | None] = asyncio.ensure_future(
        anext(stream, None)
    )
    try:
        while (by_client := await upcoming) is not None:
            upcoming = asyncio.ensure_future(anext(stream, None))
            info = {
                c: ClientInfo(opened_at=opened.get(c), fraud_alert_dates=tuple(alerts.get(c, ())))
                for c in by_client
                if c in opened or c in alerts
            }
            profiles = await asyncio.to_thread(
                score_all,
                by_client,
                tenant=tenant,
                as_of=as_of,
                config=config,
                info=info,
                chunk_size=chunk_size,
                progress=_report,
                cluster_model=cluster_model,
            )
            for start in range(0, len(profiles), 1_000):
                await store.credit_profiles.upsert_many(profiles[start : start + 1_000])
            offset[0] += -(-len(by_client) // chunk_size)
            offset[1] += len(profiles)
            out.extend(profiles)
    finally:
        if not upcoming.done():
            upcoming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await upcoming
        await stream.aclose()
    return out
