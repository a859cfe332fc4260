"""Model versions per kind with their metrics and stage, feature drift of the champion, the
champion against its shadow on live traffic, and promotion, shadowing and rollback.

Stage changes go through :class:`training.promotion.Promoter` (Serve first, then the store,
MLflow and the audit log), so the dashboard and the scheduler move models the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING

from aml.auth import Permission
from aml.domain import Decision, ModelRecord, utcnow
from aml.errors import BadRequest
from serve.services.actor import Actor
from serve.services.pages import Page, check_window
from storage.repositories.jobs import DriftRun
from storage.store import Store

if TYPE_CHECKING:
    from training.promotion import Promoter, ServeUpdater

KINDS = ("xgboost", "anomaly")
SHADOW_WINDOW = timedelta(days=7)
SHADOW_MAX_DECISIONS = 5_000
_PAGE = 1_000


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}", field="kind")
    return kind


async def list_models(
    store: Store, *, actor: Actor, kind: str | None = None, skip: int = 0, limit: int = 50
) -> Page[ModelRecord]:
    """Registered model versions, newest first."""
    actor.require(Permission.MODEL_READ)
    check_window(skip, limit)
    items, total = await store.models.list_(
        kind=_kind(kind) if kind else None, skip=skip, limit=limit
    )
    return Page(items=items, total=total, skip=skip, limit=limit)


async def drift_history(
    store: Store, *, actor: Actor, kind: str, limit: int = 20
) -> list[DriftRun]:
    """The latest drift runs of ``kind`` (PSI per feature against the training baseline)."""
    actor.require(Permission.MODEL_READ)
    check_window(0, limit)
    runs, _ = await store.drift.list_(model_kind=_kind(kind), limit=limit)
    return runs


@dataclass(frozen=True)
class ShadowComparison:
    """The shadow model beside the champion on the same live transactions.

    Attributes:
        count: decisions carrying a score of the shadow.
        mean_abs_diff: mean absolute difference of the two scores (``None`` without data).
        agreement: share of those decisions on which both sides of the model's alert threshold
            agree (``None`` without data).
        champion_alerts, shadow_alerts: decisions each model alone would have alerted on.
    """

    champion: ModelRecord | None
    shadow: ModelRecord | None
    count: int
    mean_abs_diff: float | None
    agreement: float | None
    champion_alerts: int
    shadow_alerts: int
    since: datetime
    until: datetime


def shadow_key(kind: str, version: str) -> str:
    """Key of a challenger's score in ``Decision.shadow_scores`` (the pipeline's own rule)."""
    return f"{kind}:{version}".replace(".", "_")


def compare(
    decisions: list[Decision],
    *,
    kind: str,
    champion: ModelRecord | None,
    shadow: ModelRecord | None,
    since: datetime,
    until: datetime,
) -> ShadowComparison:
    """Aggregate the champion's and the shadow's scores on the same decisions (pure)."""
    pairs: list[tuple[float, float]] = []
    if shadow is not None:
        key = shadow_key(kind, shadow.version)
        for d in decisions:
            challenger = d.shadow_scores.get(key)
            if challenger is None:
                continue
            main = next((s.score for s in d.scorers if s.scorer == kind and s.available), None)
            if main is not None:
                pairs.append((float(main), float(challenger)))
    cut_main = float(champion.params.get("threshold", 0.5)) if champion else 0.5
    cut_shadow = float(shadow.params.get("threshold", 0.5)) if shadow else 0.5
    main_alerts = [m >= cut_main for m, _ in pairs]
    shadow_alerts = [s >= cut_shadow for _, s in pairs]
    return ShadowComparison(
        champion=champion,
        shadow=shadow,
        count=len(pairs),
        mean_abs_diff=fmean(abs(m - s) for m, s in pairs) if pairs else None,
        agreement=(
            fmean(a == b for a, b in zip(main_alerts, shadow_alerts, strict=True))
            if pairs
            else None
        ),
        champion_alerts=sum(main_alerts),
        shadow_alerts=sum(shadow_alerts),
        since=since,
        until=until,
    )


async def shadow_comparison(
    store: Store,
    *,
    actor: Actor,
    kind: str,
    window: timedelta = SHADOW_WINDOW,
    now: datetime | None = None,
    max_decisions: int = SHADOW_MAX_DECISIONS,
) -> ShadowComparison:
    """Champion vs shadow of ``kind`` on the most recent decisions (at most ``max_decisions``
    within ``window``)."""
    actor.require(Permission.MODEL_READ)
    _kind(kind)
    until = now or utcnow()
    since = until - window
    champion = await store.models.get_champion(kind)
    shadow = await store.models.get_shadow(kind)
    decisions: list[Decision] = []
    if shadow is not None:
        skip = 0
        while len(decisions) < max_decisions:
            page, total = await store.decisions.list_(
                since=since, until=until, skip=skip, limit=min(_PAGE, max_decisions)
            )
            decisions.extend(page)
            skip += len(page)
            if not page or skip >= total:
                break
    return compare(
        decisions[:max_decisions],
        kind=kind,
        champion=champion,
        shadow=shadow,
        since=since,
        until=until,
    )


@dataclass(frozen=True)
class ModelOverview:
    kind: str
    champion: ModelRecord | None
    shadow: ModelRecord | None
    versions: list[ModelRecord]
    total_versions: int
    drift: DriftRun | None


async def overview(store: Store, *, actor: Actor, kind: str, limit: int = 20) -> ModelOverview:
    """What the models page shows for one kind."""
    actor.require(Permission.MODEL_READ)
    versions, total = await store.models.list_(kind=_kind(kind), limit=limit)
    return ModelOverview(
        kind=kind,
        champion=await store.models.get_champion(kind),
        shadow=await store.models.get_shadow(kind),
        versions=versions,
        total_versions=total,
        drift=await store.drift.latest(kind),
    )


def _promoter(store: Store, serve: ServeUpdater | None, data_dir: Path | None) -> Promoter:
    from training.promotion import Promoter

    return Promoter(store, serve=serve, data_dir=data_dir)


async def promote(
    store: Store,
    *,
    actor: Actor,
    model_id: str,
    serve: ServeUpdater | None = None,
    data_dir: Path | None = None,
) -> ModelRecord:
    """Make the model the champion of its kind (Serve, store, MLflow, audit)."""
    actor.require(Permission.MODEL_MANAGE)
    return await _promoter(store, serve, data_dir).promote(
        model_id, actor=actor.username, reason="promoted from the dashboard"
    )


async def promote_to_shadow(
    store: Store,
    *,
    actor: Actor,
    model_id: str,
    serve: ServeUpdater | None = None,
    data_dir: Path | None = None,
) -> ModelRecord:
    """Let the model score live traffic beside the champion."""
    actor.require(Permission.MODEL_MANAGE)
    return await _promoter(store, serve, data_dir).promote_to_shadow(model_id, actor=actor.username)


async def rollback(
    store: Store,
    *,
    actor: Actor,
    kind: str,
    serve: ServeUpdater | None = None,
    data_dir: Path | None = None,
) -> ModelRecord:
    """Bring back the champion the current one replaced."""
    actor.require(Permission.MODEL_MANAGE)
    return await _promoter(store, serve, data_dir).rollback(_kind(kind), actor=actor.username)
