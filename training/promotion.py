"""Promotion of trained models: the gate, champion/challenger, hot swap in Serve, rollback.

* The gate: a candidate replaces the champion only if it beats it on the *same* held-out rows
  (the candidate's test split, on which the champion is re-scored) by ``GateConfig.margin`` on
  ``GateConfig.metric``; otherwise it stays registered as a candidate.
* ``promote_to_shadow``: the model scores live traffic beside the champion (the Serve scorer's
  ``user_config.shadow``); its scores are recorded on decisions and never change them.
* ``promote``: Serve is reconfigured first (``user_config.model`` re-applied: replicas swap the
  model in place, no restart, no dropped request), then the store's stage and the MLflow
  ``champion`` alias move. If Serve refuses the artifact nothing else changes.
* ``rollback``: the champion before the current one comes back through the same path.

Every action is appended to the audit log (``model.promote``, ``model.shadow``,
``model.rollback``, ``model.gate_rejected``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import yaml

from aml.domain import ModelRecord, utcnow
from aml.errors import ConfigError, Conflict, NotFound
from serve.scoring.models import ANOMALY, XGBOOST, load_model
from storage.store import Store
from training.dataset_build import LabelledSet
from training.tracking import CHAMPION_ALIAS, SHADOW_ALIAS, Tracker
from training.xgb_tune import classification_metrics

DEPLOYMENTS: Mapping[str, str] = {XGBOOST: "XGBoostScorer", ANOMALY: "AnomalyScorer"}


@dataclass(frozen=True, kw_only=True)
class GateConfig:
    """What a candidate must show to replace the champion.

    Attributes:
        metric: test metric compared (``auprc``, ``f1`` or ``roc_auc``).
        margin: absolute improvement over the champion required.
        min_positives: fewest positive rows in the held-out data for a comparison to count.
    """

    metric: str = "auprc"
    margin: float = 0.01
    min_positives: int = 5


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str
    candidate: dict[str, float]
    champion: dict[str, float] | None


def model_scores(artifact: str | Mapping[str, Any], x: npt.NDArray[np.float64]) -> Any:
    """Scores in [0, 1] of a model artifact on a feature matrix (``FEATURE_NAMES`` columns)."""
    model = load_model(artifact)
    if len(x) == 0:
        return np.zeros(0, dtype=np.float64)
    return np.asarray(model.score_block(x).scores, dtype=np.float64)


def gate(
    candidate: Mapping[str, float], champion: Mapping[str, float] | None, config: GateConfig
) -> GateResult:
    """Decide from the two models' metrics on the same held-out rows (pure)."""
    cand = dict(candidate)
    if cand.get("positives", 0.0) < config.min_positives:
        return GateResult(
            False,
            f"held-out data has {int(cand.get('positives', 0))} positives, "
            f"fewer than {config.min_positives}",
            cand,
            dict(champion) if champion else None,
        )
    value = cand.get(config.metric, float("nan"))
    if not np.isfinite(value):
        return GateResult(False, f"candidate {config.metric} is undefined", cand, None)
    if champion is None:
        return GateResult(True, "no champion yet", cand, None)
    best = champion.get(config.metric, float("nan"))
    if not np.isfinite(best) or value >= best + config.margin:
        return GateResult(
            True,
            f"{config.metric} {value:.4f} beats the champion's {best:.4f} by at least "
            f"{config.margin}",
            cand,
            dict(champion),
        )
    return GateResult(
        False,
        f"{config.metric} {value:.4f} does not beat the champion's {best:.4f} by {config.margin}",
        cand,
        dict(champion),
    )


class ServeUpdater(Protocol):
    """Pushes model artifacts to the running scorers (``reconfigure``)."""

    def set_models(self, kind: str, *, model: str | None, shadow: str | None) -> None: ...


class ServeConfigUpdater:
    """Re-applies the Serve config with the scorer's ``user_config`` changed (no restart).

    The updated config is written back to ``path`` when given, so a restart keeps the champion.
    """

    def __init__(self, config: Mapping[str, Any], *, path: Path | None = None) -> None:
        self.config = dict(config)
        self.path = path

    @classmethod
    def from_cluster(cls, *, path: Path | None = None) -> ServeConfigUpdater:
        """The config of every application running on the connected Ray cluster (re-applying
        a subset would delete the others; changed ``args`` would restart them).

        Raises:
            ConfigError: no Serve application is running.
        """
        from ray.serve._private.api import serve_start

        details = serve_start().get_serve_details()
        apps = [
            dict(app["deployed_app_config"])
            for app in (details.get("applications") or {}).values()
            if app.get("deployed_app_config")
        ]
        if not apps:
            raise ConfigError("no Serve application is running to update")
        config: dict[str, Any] = {"applications": apps}
        if details.get("proxy_location"):
            config["proxy_location"] = details["proxy_location"]
        return cls(config, path=path)

    def set_models(self, kind: str, *, model: str | None, shadow: str | None) -> None:
        from serve.scoring.deploy import apply, with_user_config

        updated = with_user_config(
            self.config, DEPLOYMENTS[kind], {"model": model, "shadow": shadow}
        )
        apply(updated)
        self.config = updated
        if self.path is not None:
            self.path.write_text(yaml.safe_dump(updated, sort_keys=False))


def _registry(record: ModelRecord) -> tuple[str, str] | None:
    name = record.params.get("registered_model")
    version = record.params.get("registry_version")
    return (str(name), str(version)) if name and version else None


class Promoter:
    """Moves models between stages, keeping Serve, the store, MLflow and the audit log in step."""

    def __init__(
        self,
        store: Store,
        *,
        serve: ServeUpdater | None = None,
        data_dir: Path | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        """Args:
        store: the model registry and audit log.
        serve: scorer updater (``None``: no Serve to update, e.g. offline evaluation).
        data_dir: the product's data directory (MLflow store); ``None`` leaves MLflow alone.
        tracking_uri: MLflow tracking URI override.
        """
        self.store = store
        self.serve = serve
        self.data_dir = data_dir
        self.tracking_uri = tracking_uri

    def _alias(self, record: ModelRecord, alias: str) -> None:
        reg = _registry(record)
        if reg is None or self.data_dir is None:
            return
        name, version = reg
        tracker = Tracker.open(self.data_dir, record.kind, tracking_uri=self.tracking_uri)
        tracker.set_alias(name, alias, version)

    async def evaluate(
        self, candidate: ModelRecord, held_out: LabelledSet, config: GateConfig
    ) -> GateResult:
        """Score the candidate and the current champion on the same rows and apply the gate."""
        threshold = float(candidate.params.get("threshold", 0.5))
        cand = classification_metrics(
            held_out.labels, model_scores(candidate.artifact_uri, held_out.x), threshold=threshold
        )
        champion = await self.store.models.get_champion(candidate.kind)
        champ = None
        if champion is not None and champion.id != candidate.id:
            champ = classification_metrics(
                held_out.labels,
                model_scores(champion.artifact_uri, held_out.x),
                threshold=float(champion.params.get("threshold", 0.5)),
            )
        return gate(cand, champ, config)

    async def consider(
        self,
        candidate_id: str,
        held_out: LabelledSet,
        *,
        config: GateConfig | None = None,
        actor: str = "scheduler",
        at: datetime | None = None,
    ) -> GateResult:
        """Promote the candidate when it passes the gate; audit the outcome either way."""
        config = config or GateConfig()
        candidate = await self.store.models.get_or_raise(candidate_id)
        result = await self.evaluate(candidate, held_out, config)
        if result.passed:
            await self.promote(candidate_id, actor=actor, at=at, reason=result.reason)
        else:
            await self.store.audit_log.append(
                at=at or utcnow(),
                actor=actor,
                action="model.gate_rejected",
                target_type="model",
                target_id=candidate_id,
                details={
                    "reason": result.reason,
                    "candidate": _clean(result.candidate),
                    "champion": _clean(result.champion or {}),
                },
            )
        return result

    async def promote(
        self,
        model_id: str,
        *,
        actor: str,
        at: datetime | None = None,
        reason: str = "",
        action: str = "model.promote",
    ) -> ModelRecord:
        """Make ``model_id`` the champion of its kind (Serve first, then store, MLflow, audit).

        Raises:
            NotFound: no such model.
        """
        record = await self.store.models.get_or_raise(model_id)
        previous = await self.store.models.get_champion(record.kind)
        shadow = await self.store.models.get_shadow(record.kind)
        keep_shadow = shadow.artifact_uri if shadow and shadow.id != model_id else None
        if self.serve is not None:
            # In a thread: applying waits for the replicas, and scoring on this loop goes on.
            await asyncio.to_thread(
                self.serve.set_models, record.kind, model=record.artifact_uri, shadow=keep_shadow
            )
        promoted = await self.store.models.set_stage(model_id, stage="champion")
        self._alias(promoted, CHAMPION_ALIAS)
        await self.store.audit_log.append(
            at=at or utcnow(),
            actor=actor,
            action=action,
            target_type="model",
            target_id=model_id,
            details={
                "kind": record.kind,
                "version": record.version,
                "previous": previous.id if previous else None,
                "previous_version": previous.version if previous else None,
                "reason": reason,
            },
        )
        return promoted

    async def promote_to_shadow(
        self, model_id: str, *, actor: str, at: datetime | None = None
    ) -> ModelRecord:
        """Let ``model_id`` score live traffic beside the champion, without affecting decisions.

        Raises:
            NotFound: no such model.
            Conflict: the model is the champion.
        """
        record = await self.store.models.get_or_raise(model_id)
        champion = await self.store.models.get_champion(record.kind)
        if champion is not None and champion.id == model_id:
            raise Conflict("the champion cannot also be its own shadow", model_id=model_id)
        if self.serve is not None:
            await asyncio.to_thread(
                self.serve.set_models,
                record.kind,
                model=champion.artifact_uri if champion else None,
                shadow=record.artifact_uri,
            )
        shadowed = await self.store.models.set_stage(model_id, stage="shadow")
        self._alias(shadowed, SHADOW_ALIAS)
        await self.store.audit_log.append(
            at=at or utcnow(),
            actor=actor,
            action="model.shadow",
            target_type="model",
            target_id=model_id,
            details={"kind": record.kind, "version": record.version},
        )
        return shadowed

    async def rollback(self, kind: str, *, actor: str, at: datetime | None = None) -> ModelRecord:
        """Bring back the champion that the current one replaced.

        Raises:
            NotFound: no champion, or it replaced nothing.
        """
        current = await self.store.models.get_champion(kind)
        if current is None:
            raise NotFound("no champion to roll back", kind=kind)
        entries, _ = await self.store.audit_log.list_(
            target_type="model", target_id=current.id, limit=20
        )
        previous = next(
            (
                e.details.get("previous")
                for e in entries
                if e.action in ("model.promote", "model.rollback") and e.details.get("previous")
            ),
            None,
        )
        if previous is None:
            raise NotFound("the champion replaced no earlier model", kind=kind, model_id=current.id)
        return await self.promote(
            str(previous),
            actor=actor,
            at=at,
            reason=f"rollback from {current.version}",
            action="model.rollback",
        )


def _clean(metrics: Mapping[str, float]) -> dict[str, float | None]:
    return {k: (float(v) if np.isfinite(v) else None) for k, v in metrics.items()}
