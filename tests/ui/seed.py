"""Data builders shared by the API, dashboard and browser tests: users of every role and a small
alert queue with transactions and decisions, all written through the real store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from aml.domain import Alert, Decision, RiskLevel, Role, Transaction, User, utcnow
from serve.services import Actor, users
from storage.store import Store
from tests.factories import make_alert, make_decision, make_tx

PASSWORD = "correct horse battery staple"
USERNAMES = {
    Role.ANALYST: "ana",
    Role.SENIOR_ANALYST: "sam",
    Role.ML_ENGINEER: "mel",
    Role.ADMIN: "root",
}


@dataclass
class Team:
    by_role: dict[Role, User]
    second_senior: User

    def actor(self, role: Role) -> Actor:
        return Actor(user=self.by_role[role], ip="10.0.0.1")


async def seed_team(store: Store) -> Team:
    """One active user per role plus a second senior analyst (for four-eyes)."""
    admin = await users.create_admin(store, USERNAMES[Role.ADMIN], PASSWORD)
    boss = Actor(user=admin, ip="127.0.0.1")
    by_role = {Role.ADMIN: admin}
    for role in (Role.ANALYST, Role.SENIOR_ANALYST, Role.ML_ENGINEER):
        by_role[role] = await users.create(
            store, actor=boss, username=USERNAMES[role], password=PASSWORD, role=role
        )
    second = await users.create(
        store, actor=boss, username="sue", password=PASSWORD, role=Role.SENIOR_ANALYST
    )
    return Team(by_role=by_role, second_senior=second)


@dataclass
class Seeded:
    alert: Alert
    transaction: Transaction
    decision: Decision


async def seed_alerts(store: Store, count: int = 3) -> list[Seeded]:
    """``count`` open alerts, newest last, each with a transaction and its scored decision."""
    now = utcnow()
    out: list[Seeded] = []
    risks = [RiskLevel.CRITICAL, RiskLevel.HIGH, RiskLevel.MEDIUM, RiskLevel.LOW]
    for i in range(count):
        at = now - timedelta(minutes=10 * (count - i))
        tx = make_tx(occurred_at=at, received_at=at, account_id=f"savings:{100 + i}")
        risk = risks[i % len(risks)]
        dec = make_decision(
            transaction_id=tx.id, decided_at=at, risk_level=risk, score=0.95 - 0.1 * i
        )
        alert = make_alert(
            account_id=tx.account_id,
            transaction_ids=(tx.id,),
            created_at=at,
            sla_due_at=at + timedelta(hours=4),
            risk_level=risk,
            score=0.95 - 0.1 * i,
            rule_ids=("R001", f"R00{2 + i}"),
            title=f"Structuring on {tx.account_id}",
        )
        await store.transactions.insert_many([tx])
        await store.decisions.insert_many([dec])
        await store.alerts.create(alert)
        out.append(Seeded(alert=alert, transaction=tx, decision=dec))
    return out
