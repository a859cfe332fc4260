"""``jobs``: the scheduler's record of every periodic job; ``drift``: one document per drift run.

Job documents are written whole with ``replace_one`` (never with ``$set``): dates then stay BSON
dates on every backend, so "next run before now" queries and sorting work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from storage.codec import from_doc, to_doc
from storage.repositories.base import Repository


@dataclass(frozen=True, slots=True, kw_only=True)
class JobState:
    """What the scheduler knows about one job.

    Attributes:
        name: the job's name (unique).
        next_run: when it is due next.
        last_run: start of the last run (``None`` before the first).
        last_finished: end of the last run.
        outcome: ``"ok"``, ``"skipped"`` or ``"error"`` of the last run (``None`` before it).
        message: short result or error text of the last run.
        runs: number of runs so far.
        details: job-specific values of the last run (e.g. the label count it trained on).
    """

    name: str
    next_run: datetime
    last_run: datetime | None = None
    last_finished: datetime | None = None
    outcome: str | None = None
    message: str = ""
    runs: int = 0
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftRun:
    """Population stability of every feature of recent traffic against a model's training data.

    Attributes:
        psi: PSI per feature.
        level: worst level over the features: ``"ok"``, ``"warning"`` or ``"critical"``.
        warning, critical: features at those levels.
    """

    id: str
    model_id: str
    model_kind: str
    model_version: str
    computed_at: datetime
    window_from: datetime
    window_until: datetime
    rows: int
    psi: Mapping[str, float]
    level: str
    warning: tuple[str, ...] = ()
    critical: tuple[str, ...] = ()


class JobRepository(Repository):
    collection_name = "jobs"
    indexes = (IndexModel([("next_run", ASCENDING)]),)

    async def get(self, name: str) -> JobState | None:
        doc = await self.col.find_one({"_id": name})
        return from_doc(JobState, doc, id_field="name") if doc else None

    async def list_(self) -> list[JobState]:
        """Every job, soonest due first."""
        cursor = self.col.find({}).sort([("next_run", ASCENDING), ("_id", ASCENDING)])
        return [from_doc(JobState, d, id_field="name") async for d in cursor]

    async def save(self, state: JobState) -> JobState:
        """Store the job's state (created or replaced whole)."""
        await self.col.replace_one({"_id": state.name}, to_doc(state, id_field="name"), upsert=True)
        return state


class DriftRepository(Repository):
    collection_name = "drift"
    indexes = (
        IndexModel([("model_kind", ASCENDING), ("computed_at", DESCENDING)]),
        IndexModel([("model_id", ASCENDING), ("computed_at", DESCENDING)]),
    )

    async def insert(self, run: DriftRun) -> DriftRun:
        await self.col.insert_one(to_doc(run))
        return run

    async def latest(self, model_kind: str) -> DriftRun | None:
        cursor = self.col.find({"model_kind": model_kind}).sort("computed_at", DESCENDING).limit(1)
        async for doc in cursor:
            return from_doc(DriftRun, doc)
        return None

    async def list_(
        self, *, model_kind: str | None = None, skip: int = 0, limit: int = 50
    ) -> tuple[list[DriftRun], int]:
        """Page of drift runs, newest first, with the total matching count."""
        query: dict[str, Any] = {} if model_kind is None else {"model_kind": model_kind}
        total = await self.count_matching(query)
        cursor = self.col.find(query).sort("computed_at", DESCENDING).skip(skip).limit(limit)
        return [from_doc(DriftRun, d) async for d in cursor], int(total)
