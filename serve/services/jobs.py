"""The scheduler's jobs as the dashboard and API show them (last run, next run, outcome), "run
now", and the operational hooks (Serve, scheduler) the API and dashboard hand to the services.

The hooks are optional: a dashboard or API process that is not connected to the Ray cluster
still shows everything from the store; actions that need Serve or the scheduler then say so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aml.auth import Permission
from aml.errors import NotFound, ServiceUnavailable
from aml.settings import Settings
from serve.services import audit
from serve.services.actor import Actor
from serve.services.rules import RuleApplier
from storage.repositories.jobs import JobState
from storage.store import Store

if TYPE_CHECKING:
    from training.promotion import ServeUpdater

JobRunner = Callable[[str], Awaitable[Mapping[str, Any]]]
ModelServe = Callable[[], "ServeUpdater | None"]


@dataclass
class Operations:
    """What the API and the dashboard need beyond the store.

    Attributes:
        settings: the process settings (reporting entity, data directory, currency).
        rule_applier: pushes a rule configuration to the running Serve app.
        model_serve: returns the updater of the running model scorers (``None``: no Serve).
        run_job: runs one scheduler job now (the scheduler actor's ``run_now``).
    """

    settings: Settings = field(default_factory=Settings)
    rule_applier: RuleApplier | None = None
    model_serve: ModelServe | None = None
    run_job: JobRunner | None = None


def ray_job_runner(actor_name: str | None = None, namespace: str | None = None) -> JobRunner:
    """A runner calling ``run_now`` on the named scheduler actor of the connected cluster."""

    async def run(name: str) -> Mapping[str, Any]:
        import ray

        from training.scheduler import ACTOR_NAME, NAMESPACE

        try:
            handle = ray.get_actor(actor_name or ACTOR_NAME, namespace=namespace or NAMESPACE)
        except ValueError:
            raise ServiceUnavailable("the scheduler is not running") from None
        result: Mapping[str, Any] = await handle.run_now.remote(name)
        return result

    return run


async def list_jobs(store: Store, *, actor: Actor) -> list[JobState]:
    """Every job the scheduler knows, soonest due first."""
    actor.require(Permission.JOB_READ)
    return await store.jobs.list_()


async def run_now(
    store: Store, *, actor: Actor, name: str, runner: JobRunner | None
) -> Mapping[str, Any]:
    """Run one scheduler job at once through the scheduler. Audited.

    Raises:
        NotFound: the scheduler has never recorded that job.
        ServiceUnavailable: no scheduler is reachable from this process.
    """
    actor.require(Permission.JOB_RUN)
    if await store.jobs.get(name) is None:
        raise NotFound("no such job", job=name)
    if runner is None:
        raise ServiceUnavailable("this process is not connected to the scheduler")
    await audit.record(store, actor=actor, action="job.run_now", target_type="job", target_id=name)
    return await runner(name)
