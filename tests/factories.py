"""Test data builders (domain objects with sensible defaults)."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aml.domain import (
    Alert,
    AlertStatus,
    Case,
    CaseNote,
    CaseStatus,
    CreditProfile,
    CreditRecommendation,
    CreditRequest,
    CreditRequestStatus,
    CreditTier,
    Decision,
    Direction,
    FeatureContribution,
    ModelRecord,
    RiskLevel,
    Role,
    RuleHit,
    ScorerResult,
    Transaction,
    TransactionStatus,
    TransactionType,
    User,
    stable_id,
)

_seq = itertools.count(1)
FACTORY_IDS = 1_000_000_000
T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


def _daytime(n: int) -> datetime:
    """The n-th default time: increasing with n, always within local business hours (rules on
    unusual hours must not fire by accident however many transactions a session has built)."""
    return T0 + timedelta(days=n // 480, minutes=n % 480)


def make_tx(**overrides: Any) -> Transaction:
    n = next(_seq)
    tenant = overrides.pop("tenant", "default")
    # Resource ids far above any a test writes by hand ("SAVINGSACCOUNT|DEPOSIT|9001"): a
    # session builds thousands of transactions, and a default key equal to a hand-written one
    # makes two "different" transactions duplicates of each other.
    dedupe_key = overrides.pop("dedupe_key", f"SAVINGSACCOUNT|DEPOSIT|{FACTORY_IDS + n}")
    fields: dict[str, Any] = {
        "id": stable_id(tenant, dedupe_key),
        "tenant": tenant,
        "dedupe_key": dedupe_key,
        "source": "fineract",
        "type": TransactionType.DEPOSIT,
        "direction": Direction.IN,
        "amount_minor": 10_000,
        "currency": "XAF",
        "occurred_at": _daytime(n),
        "received_at": _daytime(n) + timedelta(seconds=1),
        "account_id": "savings:12",
        "client_id": "7",
        "external_id": str(n),
    }
    fields.update(overrides)
    return Transaction(**fields)


def make_transfer(src: str, dst: str, at: datetime, **overrides: Any) -> Transaction:
    """A transfer out of ``src`` into ``dst`` at ``at`` (any other field overridable)."""
    return make_tx(
        account_id=src,
        counterparty_account_id=dst,
        type=TransactionType.TRANSFER,
        direction=Direction.OUT,
        occurred_at=at,
        **overrides,
    )


def busy_account_record(
    rng: random.Random, at: datetime, account: str = "savings:busy", *, round_amounts: float = 0.1
) -> Transaction:
    """A random record of a busy account's week: a transfer recorded on the account or on the
    other side (to itself now and then), a deposit, withdrawal, loan disbursement or reversal
    (some in another currency, some with no direction), another account's record, or an attempt
    that moved no money; IPs, devices and countries drawn from small sets. ``round_amounts`` is
    the share of amounts drawn from two round values (records with the same key as others)."""
    kind = rng.random()
    if rng.random() < round_amounts:
        amount = rng.choice([5_000, 10_000])
    else:
        amount = rng.randrange(1_000, 900_000)
    cp = f"savings:{rng.randrange(8)}"
    extra: dict[str, Any] = {
        "ip_address": rng.choice([None, "10.0.0.1", "10.0.0.2", f"10.1.0.{rng.randrange(9)}"]),
        "device_id": rng.choice([None, "dev-a", f"dev-{rng.randrange(5)}"]),
        "country_code": rng.choice([None, "CM", "CM", "GA", "NG"]),
    }
    if kind < 0.5:
        ours = kind < 0.3
        return make_tx(
            account_id=account if ours else cp,
            type=TransactionType.TRANSFER,
            direction=rng.choice([Direction.OUT, Direction.IN]),
            counterparty_account_id=rng.choice([cp, cp, account]) if ours else account,
            amount_minor=amount,
            occurred_at=at,
            **extra,
        )
    if kind < 0.8:
        return make_tx(
            account_id=account,
            type=rng.choice(
                [
                    TransactionType.DEPOSIT,
                    TransactionType.WITHDRAWAL,
                    TransactionType.LOAN_DISBURSEMENT,
                    TransactionType.REVERSAL,
                ]
            ),
            direction=rng.choice([Direction.IN, Direction.OUT, Direction.NONE]),
            amount_minor=amount,
            currency="XAF" if rng.random() < 0.9 else "EUR",
            occurred_at=at,
            **extra,
        )
    if kind < 0.9:
        return make_tx(account_id="savings:elsewhere", amount_minor=amount, occurred_at=at)
    return make_tx(
        account_id=account,
        amount_minor=amount,
        occurred_at=at,
        status=rng.choice([TransactionStatus.REJECTED, TransactionStatus.CORRECTION]),
    )


def mirror_leg(o: Transaction, shift: timedelta = timedelta(0)) -> Transaction:
    """The other leg of a transfer record: the same movement recorded on the counterparty's
    account (``shift`` later)."""
    assert o.counterparty_account_id is not None
    return make_tx(
        account_id=o.counterparty_account_id,
        counterparty_account_id=o.account_id,
        type=o.type,
        direction=Direction.IN if o.direction is Direction.OUT else Direction.OUT,
        amount_minor=o.amount_minor,
        occurred_at=o.occurred_at + shift,
    )


def make_decision(**overrides: Any) -> Decision:
    """A decision with every nested type filled (scorers, contributions, rule hits)."""
    n = next(_seq)
    fields: dict[str, Any] = {
        "transaction_id": stable_id("tx", n),
        "tenant": "default",
        "score": 0.82,
        "risk_level": RiskLevel.HIGH,
        "alert": True,
        "decided_at": T0 + timedelta(minutes=n, seconds=2),
        "scorers": (
            ScorerResult(
                scorer="rules",
                available=True,
                score=0.9,
                contributions=(
                    FeatureContribution(feature="amount_z", value=4.5, contribution=0.6),
                ),
            ),
            ScorerResult(scorer="xgboost", available=False, reason="no model"),
        ),
        "rule_hits": (
            RuleHit(
                rule_id="R001",
                category="structuring",
                severity=0.8,
                values={"count": 5, "window": "24h", "threshold": 1000.5},
                description="many deposits just under the limit",
            ),
        ),
        "feature_set_version": "fs-1",
        "rule_config_version": 3,
        "shadow_scores": {"xgboost-v2": 0.4},
        "explanation": "structuring pattern",
    }
    fields.update(overrides)
    return Decision(**fields)


def make_alert(**overrides: Any) -> Alert:
    n = next(_seq)
    account_id = overrides.pop("account_id", f"savings:{n}")
    tenant = overrides.get("tenant", "default")
    created = overrides.pop("created_at", T0 + timedelta(minutes=n))
    fields: dict[str, Any] = {
        "id": stable_id("alert", n),
        "tenant": tenant,
        "customer_key": f"{tenant}|{account_id}",
        "account_id": account_id,
        "client_id": "7",
        "status": AlertStatus.OPEN,
        "risk_level": RiskLevel.MEDIUM,
        "score": 0.6,
        "transaction_ids": (stable_id("tx", n),),
        "rule_ids": ("R001",),
        "created_at": created,
        "updated_at": created,
        "sla_due_at": created + timedelta(hours=24),
        "title": "Structuring",
    }
    fields.update(overrides)
    return Alert(**fields)


def make_note(**overrides: Any) -> CaseNote:
    n = next(_seq)
    fields: dict[str, Any] = {"author": "ana", "at": T0 + timedelta(minutes=n), "text": f"n{n}"}
    fields.update(overrides)
    return CaseNote(**fields)


def make_case(**overrides: Any) -> Case:
    n = next(_seq)
    created = overrides.pop("created_at", T0 + timedelta(minutes=n))
    fields: dict[str, Any] = {
        "id": stable_id("case", n),
        "number": "",
        "tenant": "default",
        "title": f"Investigation {n}",
        "status": CaseStatus.OPEN,
        "created_by": "ana",
        "created_at": created,
        "updated_at": created,
        "sla_due_at": created + timedelta(days=7),
    }
    fields.update(overrides)
    return Case(**fields)


def make_user(**overrides: Any) -> User:
    n = next(_seq)
    fields: dict[str, Any] = {
        "id": stable_id("user", n),
        "username": f"user{n}",
        "role": Role.ANALYST,
        "password_hash": "$argon2id$v=19$placeholder",
        "active": True,
        "created_at": T0,
        "full_name": f"User {n}",
        "email": f"user{n}@example.org",
    }
    fields.update(overrides)
    return User(**fields)


def make_credit_profile(**overrides: Any) -> CreditProfile:
    n = next(_seq)
    fields: dict[str, Any] = {
        "tenant": "default",
        "client_id": str(n),
        "score": 0.7,
        "tier": CreditTier.B,
        "limit_minor": 250_000,
        "currency": "XAF",
        "components": {"repayment": 0.8, "savings": 0.6},
        "features": {"avg_balance": 1200.5, "days_overdue": None},
        "computed_at": T0,
        "reasons": ("steady savings",),
        "cluster_id": 2,
        "cluster_tier": CreditTier.C,
    }
    fields.update(overrides)
    return CreditProfile(**fields)


def make_credit_request(**overrides: Any) -> CreditRequest:
    n = next(_seq)
    submitted = overrides.pop("submitted_at", T0 + timedelta(minutes=n))
    fields: dict[str, Any] = {
        "id": stable_id("credit", n),
        "tenant": "default",
        "client_id": "7",
        "amount_minor": 100_000,
        "currency": "XAF",
        "status": CreditRequestStatus.PENDING_REVIEW,
        "recommendation": CreditRecommendation.APPROVE,
        "reasons": ("within limit",),
        "score_at_request": 0.7,
        "tier_at_request": CreditTier.B,
        "limit_at_request_minor": 250_000,
        "inflation_flag": False,
        "submitted_by": "ana",
        "submitted_at": submitted,
        "expires_at": submitted + timedelta(days=7),
    }
    fields.update(overrides)
    return CreditRequest(**fields)


def make_model(**overrides: Any) -> ModelRecord:
    n = next(_seq)
    fields: dict[str, Any] = {
        "id": stable_id("model", n),
        "kind": "xgboost",
        "version": f"v{n}",
        "feature_set_version": "fs-1",
        "features": ("amount_z", "velocity_1h"),
        "metrics": {"auc_pr": 0.61},
        "artifact_uri": f"mlflow-artifacts:/models/{n}",
        "stage": "candidate",
        "created_at": T0 + timedelta(minutes=n),
        "params": {"max_depth": 6, "eta": 0.1},
    }
    fields.update(overrides)
    return ModelRecord(**fields)


def external_xgboost_artifact(
    directory: Path, x: Any, y: Any, *, version: str, rounds: int = 10
) -> Path:
    """An XGBoost model trained on ``(x, y)`` over ``FEATURE_NAMES`` and saved as an externally
    trained artifact (the native model file and its manifest) in ``directory``; returns the
    manifest's path."""
    import json

    import xgboost as xgb

    from aml.features import FEATURE_NAMES

    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2},
        xgb.DMatrix(x, label=y, feature_names=list(FEATURE_NAMES)),
        num_boost_round=rounds,
    )
    booster.save_model(str(directory / "model.ubj"))
    manifest = {
        "kind": "xgboost",
        "version": version,
        "features": list(FEATURE_NAMES),
        "path": "model.ubj",
    }
    path = directory / "model.json"
    path.write_text(json.dumps(manifest))
    return path
