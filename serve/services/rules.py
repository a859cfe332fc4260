"""Rule configuration: the active version and its history, validated edits saved as new
versions, activation pushed to the running Serve app, and a backtest of a candidate against
the active configuration on recent stored transactions.

Activation goes to Serve first (re-applying the Serve config with ``RuleScorer``'s
``user_config.rule_config`` changed reconfigures the running replicas without a restart), then
the store: if Serve refuses the configuration nothing else changes. The function that applies
the config is passed in, so tests pass the real ``apply`` on a Ray cluster or none at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from aml.auth import Permission
from aml.domain import RuleConfigVersion, utcnow
from aml.errors import Unprocessable
from aml.rules.config import RuleConfig, default_rule_config
from serve.services import audit
from serve.services.actor import Actor
from serve.services.pages import Page, check_window
from storage.store import Store

RULE_DEPLOYMENT = "RuleScorer"
MAX_COMMENT = 500
BACKTEST_MAX_TRANSACTIONS = 50_000

# Pushes a RuleConfig dict to the running scorers; blocking (it waits for the replicas).
RuleApplier = Callable[[dict[str, Any]], None]


class ServeRuleApplier:
    """Re-applies a Serve config with ``RuleScorer.user_config.rule_config`` set.

    Args:
        config: the full Serve config of the running applications (re-applying a subset would
            delete the others).
        apply: the function deploying a config (``serve.scoring.deploy.apply``).
        path: when given, the updated config is written back so a restart keeps the rules.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        apply: Callable[[Mapping[str, Any]], None],
        path: Path | None = None,
    ) -> None:
        self.config = dict(config)
        self.apply = apply
        self.path = path

    def __call__(self, rule_config: dict[str, Any]) -> None:
        from serve.scoring.deploy import with_user_config

        updated = with_user_config(self.config, RULE_DEPLOYMENT, {"rule_config": rule_config})
        self.apply(updated)
        self.config = updated
        if self.path is not None:
            import yaml

            self.path.write_text(yaml.safe_dump(updated, sort_keys=False))


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as ``{"field": "thresholds.XAF.large_amount", "message": ...}``."""
    return [
        {
            "field": ".".join(str(p) for p in err["loc"]) or "config",
            "message": str(err["msg"]).removeprefix("Value error, "),
        }
        for err in exc.errors()
    ]


def validate(config: Mapping[str, Any]) -> RuleConfig:
    """Validate a rule configuration.

    Raises:
        Unprocessable: listing every offending field (``details["errors"]``).
    """
    try:
        return RuleConfig.model_validate(dict(config))
    except ValidationError as exc:
        errors = field_errors(exc)
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise Unprocessable(f"invalid rule configuration: {summary}", errors=errors) from None


def effective(record: RuleConfigVersion | None) -> RuleConfig:
    """The configuration a stored version stands for, carrying the stored version number
    (no version stored: the shipped defaults)."""
    if record is None:
        return default_rule_config()
    return RuleConfig.model_validate({**dict(record.config), "version": record.version})


async def get_active(store: Store, *, actor: Actor) -> RuleConfigVersion | None:
    """The active version (``None``: nothing saved yet, the shipped defaults are in force)."""
    actor.require(Permission.RULE_READ)
    return await store.rule_config.get_active()


async def active_config(store: Store, *, actor: Actor) -> RuleConfig:
    """The configuration in force."""
    return effective(await get_active(store, actor=actor))


async def get_or_raise(store: Store, *, actor: Actor, version: int) -> RuleConfigVersion:
    actor.require(Permission.RULE_READ)
    return await store.rule_config.get_or_raise(version)


async def list_versions(
    store: Store, *, actor: Actor, skip: int = 0, limit: int = 50
) -> Page[RuleConfigVersion]:
    """Saved versions, newest first."""
    actor.require(Permission.RULE_READ)
    check_window(skip, limit)
    items, total = await store.rule_config.list_versions(skip=skip, limit=limit)
    return Page(items=items, total=total, skip=skip, limit=limit)


async def save(
    store: Store, *, actor: Actor, config: Mapping[str, Any], comment: str = ""
) -> RuleConfigVersion:
    """Validate ``config`` and save it as the next (inactive) version. Audited.

    Raises:
        Unprocessable: the configuration is invalid (every field named).
    """
    actor.require(Permission.RULE_CONFIG)
    if len(comment) > MAX_COMMENT:
        raise Unprocessable(f"comment is longer than {MAX_COMMENT} characters", field="comment")
    checked = validate(config)
    record = await store.rule_config.create_version(
        config=checked.to_dict(),
        created_by=actor.username,
        created_at=utcnow(),
        comment=comment.strip(),
    )
    await audit.record(
        store,
        actor=actor,
        action="rules.save",
        target_type="rule_config",
        target_id=str(record.version),
        details={"comment": record.comment},
    )
    return record


async def activate(
    store: Store, *, actor: Actor, version: int, apply: RuleApplier | None = None
) -> RuleConfigVersion:
    """Make ``version`` the active configuration: pushed to Serve first (when ``apply`` is
    given), then marked active in the store. Audited.

    Raises:
        NotFound: no such version.
        Unprocessable: the stored configuration no longer validates.
    """
    actor.require(Permission.RULE_CONFIG)
    record = await store.rule_config.get_or_raise(version)
    previous = await store.rule_config.get_active()
    config = effective(record).to_dict()
    if apply is not None:
        # In a thread: applying waits for the replicas, and this loop keeps serving.
        await asyncio.to_thread(apply, config)
    activated = await store.rule_config.activate(version)
    await audit.record(
        store,
        actor=actor,
        action="rules.activate",
        target_type="rule_config",
        target_id=str(version),
        details={
            "previous": previous.version if previous else None,
            "pushed_to_serve": apply is not None,
        },
    )
    return activated


@dataclass(frozen=True)
class RuleComparison:
    """Per-rule outcome of one rule in the candidate and the active configuration."""

    rule: str
    active_alerts: int
    candidate_alerts: int
    active_precision: float | None
    candidate_precision: float | None


@dataclass(frozen=True)
class BacktestComparison:
    """A candidate configuration against the active one on the same stored transactions."""

    since: datetime
    until: datetime
    transactions: int
    labelled: int
    positives: int
    rows: list[RuleComparison]


async def backtest(
    store: Store,
    *,
    actor: Actor,
    candidate: Mapping[str, Any],
    days: int = 30,
    now: datetime | None = None,
    max_transactions: int = BACKTEST_MAX_TRANSACTIONS,
) -> BacktestComparison:
    """Replay the last ``days`` of stored transactions through the candidate and the active
    rule configuration and compare alert counts and precision per rule (labels: analysts'
    verdicts). Audited.

    Raises:
        Unprocessable: the candidate is invalid, or there are no stored transactions.
    """
    from training.backtest import backtest as run_backtest
    from training.dataset_build import load_labels, load_window

    actor.require(Permission.RULE_CONFIG)
    if not 1 <= days <= 366:
        raise Unprocessable("days must be between 1 and 366", field="days")
    checked = validate(candidate).to_dict()
    active = (await active_config(store, actor=actor)).to_dict()
    until = now or utcnow()
    since = until - timedelta(days=days)
    txs = await load_window(store, since=since, until=until)
    if not txs:
        raise Unprocessable(f"no stored transactions in the last {days} days to replay")
    # Keep the newest when the window is too large to replay interactively.
    txs = sorted(txs, key=lambda t: t.occurred_at)[-max_transactions:]
    labels = await load_labels(store)
    new, old = await asyncio.gather(
        asyncio.to_thread(run_backtest, txs, labels, rules_config=checked),
        asyncio.to_thread(run_backtest, txs, labels, rules_config=active),
    )
    by_old = {c.name: c for c in old.rows()}
    by_new = {c.name: c for c in new.rows()}
    rows = [
        RuleComparison(
            rule=name,
            active_alerts=by_old[name].alerts if name in by_old else 0,
            candidate_alerts=by_new[name].alerts if name in by_new else 0,
            active_precision=by_old[name].precision if name in by_old else None,
            candidate_precision=by_new[name].precision if name in by_new else None,
        )
        for name in [old.overall.name, *sorted((set(by_old) | set(by_new)) - {old.overall.name})]
    ]
    await audit.record(
        store,
        actor=actor,
        action="rules.backtest",
        target_type="rule_config",
        details={"days": days, "transactions": new.transactions},
    )
    return BacktestComparison(
        since=since,
        until=until,
        transactions=new.transactions,
        labelled=new.labelled,
        positives=new.positives,
        rows=rows,
    )
