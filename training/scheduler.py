"""The product's one scheduler: every periodic job, its last run, next run and outcome.

:class:`Scheduler` is a plain class (tests drive it with an explicit clock through
:meth:`Scheduler.tick`); :func:`start_scheduler` runs it in a named, detached Ray actor so exactly
one instance lives in the cluster whoever starts it. Each job's state is a document of the
``jobs`` collection, written before and after every run, so the dashboard shows what ran, when
it runs next and whether it failed, and a restarted scheduler carries on from there.

A job is due when its ``next_run`` has passed, or earlier when its trigger says so (retraining:
``N`` new analyst labels since its last run). A failing job is recorded as ``error`` with its
message and retried at its next interval; it never stops the other jobs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from aml.domain import AnalystDecision, utcnow
from aml.errors import Unprocessable
from aml.settings import Settings
from storage.repositories.jobs import JobState
from storage.store import Store

log = logging.getLogger(__name__)

ACTOR_NAME = "aml-scheduler"
NAMESPACE = "fineract-aml"


@dataclass(frozen=True)
class JobResult:
    """What a run reports: ``ok`` or ``skipped`` (nothing to do), a message, values to keep."""

    outcome: str = "ok"
    message: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


JobFn = Callable[[datetime], Awaitable[JobResult]]
Trigger = Callable[[JobState, datetime], Awaitable[bool]]


@dataclass(frozen=True)
class JobSpec:
    """A periodic job.

    Attributes:
        name: unique name (the ``jobs`` document id).
        interval: time between runs.
        run: the job; receives the scheduler's clock value.
        trigger: optional early trigger, asked on every tick.
        first_delay: delay of the very first run after the job is first seen.
    """

    name: str
    interval: timedelta
    run: JobFn
    trigger: Trigger | None = None
    first_delay: timedelta = timedelta(0)


class Scheduler:
    """Runs due jobs one after another and records every outcome in the store."""

    def __init__(
        self, store: Store, jobs: Sequence[JobSpec], *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        names = [j.name for j in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate job names in {names}")
        self.store = store
        self.jobs = {j.name: j for j in jobs}
        self.clock = clock

    @staticmethod
    def _ms(at: datetime) -> datetime:
        # The store keeps milliseconds: keep what is compared equal to what is stored.
        return at.replace(microsecond=at.microsecond // 1000 * 1000)

    async def state(self, spec: JobSpec, now: datetime) -> JobState:
        """The job's stored state (created on first sight)."""
        current = await self.store.jobs.get(spec.name)
        if current is None:
            current = await self.store.jobs.save(
                JobState(name=spec.name, next_run=self._ms(now + spec.first_delay))
            )
        return current

    async def is_due(self, spec: JobSpec, now: datetime) -> bool:
        state = await self.state(spec, now)
        if state.next_run <= now:
            return True
        return spec.trigger is not None and await spec.trigger(state, now)

    async def run_job(self, name: str, now: datetime | None = None) -> JobState:
        """Run one job now (due or not) and record the outcome."""
        spec = self.jobs[name]
        now = self._ms(now or self.clock())
        state = await self.state(spec, now)
        await self.store.jobs.save(replace(state, last_run=now, message="running"))
        try:
            result = await spec.run(now)
        except Unprocessable as exc:  # nothing to do yet (no labels, no champion, ...)
            result = JobResult("skipped", str(exc))
        except Exception as exc:
            log.exception("job %s failed", name)
            result = JobResult("error", f"{type(exc).__name__}: {exc}"[:2000])
        finished = self._ms(max(self.clock(), now))
        details = {**state.details, **result.details}
        done = JobState(
            name=name,
            next_run=self._ms(now + spec.interval),
            last_run=now,
            last_finished=finished,
            outcome=result.outcome,
            message=result.message[:2000],
            runs=state.runs + 1,
            details=details,
        )
        return await self.store.jobs.save(done)

    async def tick(self, now: datetime | None = None) -> list[JobState]:
        """Run every due job once; return their new states."""
        now = now or self.clock()
        ran = []
        for name, spec in self.jobs.items():
            if await self.is_due(spec, now):
                ran.append(await self.run_job(name, now))
        return ran

    async def run_forever(self, *, poll_s: float = 30.0, stop: asyncio.Event | None = None) -> None:
        """Tick every ``poll_s`` seconds until ``stop`` is set."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:  # the store is down: try again at the next poll
                log.exception("scheduler tick failed")
            try:
                await asyncio.wait_for(stop.wait(), poll_s)
            except TimeoutError:
                pass


# --- the product's jobs ----------------------------------------------------------------------


async def count_labels(store: Store) -> int:
    """Number of decided alerts (the analysts' labels)."""
    return await store.alerts.count({"decision": {"$in": [d.value for d in AnalystDecision]}})


def new_labels_trigger(
    store: Store, min_new: int, *, min_gap: timedelta = timedelta(hours=1)
) -> Trigger:
    """Due when ``min_new`` labels were added since the job's last run recorded its count
    (and at least ``min_gap`` after that run, so a failing run is not retried every tick)."""

    async def trigger(state: JobState, now: datetime) -> bool:
        if state.last_run is not None and now - state.last_run < min_gap:
            return False
        seen = int(state.details.get("labels", 0))
        return await count_labels(store) - seen >= min_new

    return trigger


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """Intervals of the product's jobs (``None`` disables one)."""

    retrain_xgboost: timedelta | None = timedelta(days=7)
    retrain_xgboost_new_labels: int = 200
    retrain_anomaly: timedelta | None = timedelta(days=7)
    drift: timedelta | None = timedelta(days=1)
    sweep: timedelta | None = timedelta(minutes=15)
    sweep_lookback: timedelta = timedelta(days=2)
    credit_score_all: timedelta | None = timedelta(days=1)
    credit_kmeans: timedelta | None = timedelta(days=7)


def product_jobs(
    store: Store, settings: Settings, schedule: Schedule | None = None
) -> list[JobSpec]:
    """Retraining, drift, the Fineract sweep and the credit jobs, as configured."""
    from training import jobs as training_jobs

    s = schedule or Schedule()
    specs: list[JobSpec] = []

    if s.retrain_xgboost is not None:

        async def retrain_xgboost(now: datetime) -> JobResult:
            labels = await count_labels(store)
            try:
                outcome = await training_jobs.train_xgboost_job(
                    store, settings, now=now, serve=training_jobs.serve_updater()
                )
            except Unprocessable as exc:  # remember the count: wait for new labels again
                return JobResult("skipped", str(exc), {"labels": labels})
            return JobResult("ok", str(outcome), {"labels": labels})

        specs.append(
            JobSpec(
                "retrain-xgboost",
                s.retrain_xgboost,
                retrain_xgboost,
                trigger=new_labels_trigger(store, s.retrain_xgboost_new_labels),
                first_delay=s.retrain_xgboost,
            )
        )
    if s.retrain_anomaly is not None:

        async def retrain_anomaly(now: datetime) -> JobResult:
            outcome = await training_jobs.train_anomaly_job(
                store,
                settings,
                since=now - timedelta(days=30),
                until=now,
                now=now,
                serve=training_jobs.serve_updater(),
            )
            return JobResult("ok", str(outcome))

        specs.append(
            JobSpec(
                "retrain-anomaly", s.retrain_anomaly, retrain_anomaly, first_delay=s.retrain_anomaly
            )
        )
    if s.drift is not None:

        async def drift(now: datetime) -> JobResult:
            runs = await training_jobs.compute_drift_job(store, settings, now=now)
            if not runs:
                return JobResult("skipped", "no champion with a baseline and recent traffic")
            return JobResult(
                "ok", "; ".join(f"{r.model_kind}: {r.level} ({r.rows} rows)" for r in runs)
            )

        specs.append(JobSpec("drift", s.drift, drift))
    if s.sweep is not None and settings.fineract_base_url:
        lookback = s.sweep_lookback

        async def sweep(now: datetime) -> JobResult:
            from serve.fineract_client import FineractClient
            from serve.ingress.sweep import sweep as run_sweep
            from training.dataset_build import load_window

            client = FineractClient.from_settings(settings)
            if client is None:
                return JobResult("skipped", "Fineract is not configured")
            recent = await load_window(store, since=now - lookback, until=now)
            # Both sides of what hooks delivered: a lost hook on a transfer's receiving account
            # is found from the account that sent it.
            accounts = sorted(
                {
                    a
                    for t in recent
                    if t.source == "fineract"
                    for a in (t.account_id, t.counterparty_account_id)
                    if a and a.startswith(("savings:", "loan:"))
                }
            )
            try:
                report = await run_sweep(
                    store,
                    client,
                    (now - lookback).date(),
                    accounts,
                    tenant=settings.fineract_tenant,
                    spool_dir=settings.data_dir / "spool-sweep",
                    default_currency=settings.default_currency,
                    timezone=settings.timezone,
                )
            finally:
                await client.close()
            return JobResult("ok", str(report), {"accounts": len(accounts)})

        specs.append(JobSpec("fineract-sweep", s.sweep, sweep))
    if s.credit_score_all is not None:

        async def credit_score_all(now: datetime) -> JobResult:
            from training.credit_batch import score_all_from_store
            from training.credit_kmeans import load_champion_clusters

            profiles = await score_all_from_store(
                store,
                tenant=settings.default_tenant,
                as_of=now,
                cluster_model=await load_champion_clusters(store),
            )
            return JobResult("ok", f"scored {len(profiles)} clients")

        specs.append(JobSpec("credit-score-all", s.credit_score_all, credit_score_all))
    if s.credit_kmeans is not None:

        async def credit_kmeans(now: datetime) -> JobResult:
            from training.credit_kmeans import train_and_publish

            try:
                record, run_id = await train_and_publish(
                    store, tenant=settings.default_tenant, now=now, data_dir=settings.data_dir
                )
            except ValueError as exc:
                return JobResult("skipped", str(exc))
            return JobResult(
                "ok",
                f"{record.version} champion (MLflow run {run_id})",
                {"path": record.artifact_uri},
            )

        specs.append(
            JobSpec("credit-kmeans", s.credit_kmeans, credit_kmeans, first_delay=s.credit_kmeans)
        )
    return specs


class SchedulerActor:
    """Body of the detached actor: one store connection, the product's jobs, the loop."""

    def __init__(self, settings: Settings, schedule: Schedule | None = None) -> None:
        from storage.store import open_store, resolve_mongodb_uri

        self.settings = settings
        self.store = open_store(
            resolve_mongodb_uri(settings, start_embedded=False),
            settings.mongodb_db,
            timeout_ms=settings.mongodb_timeout_ms,
            appname="fineract-aml-scheduler",
        )
        self.scheduler = Scheduler(self.store, product_jobs(self.store, settings, schedule))
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, poll_s: float = 30.0) -> bool:
        """Start the loop (idempotent); True when it was not running yet."""
        if self._task is not None and not self._task.done():
            return False
        await self.store.ensure_indexes()
        self._stop.clear()
        self._task = asyncio.create_task(self.scheduler.run_forever(poll_s=poll_s, stop=self._stop))
        return True

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def run_now(self, name: str) -> dict[str, Any]:
        """Run one job at once (the dashboard's "run now")."""
        state = await self.scheduler.run_job(name)
        return {"name": state.name, "outcome": state.outcome, "message": state.message}

    async def status(self) -> list[dict[str, Any]]:
        return [
            {
                "name": s.name,
                "last_run": s.last_run,
                "next_run": s.next_run,
                "outcome": s.outcome,
                "message": s.message,
            }
            for s in await self.store.jobs.list_()
        ]


def start_scheduler(
    settings: Settings,
    *,
    schedule: Schedule | None = None,
    poll_s: float = 30.0,
    name: str = ACTOR_NAME,
    detached: bool = True,
) -> Any:
    """Get or create the named scheduler actor and start its loop; return its handle."""
    import ray

    cls = ray.remote(num_cpus=0, max_restarts=-1)(SchedulerActor)
    options: dict[str, Any] = {"name": name, "namespace": NAMESPACE, "get_if_exists": True}
    if detached:
        options["lifetime"] = "detached"
    handle = cls.options(**options).remote(settings, schedule)
    ray.get(handle.start.remote(poll_s))  # type: ignore[attr-defined]
    return handle
