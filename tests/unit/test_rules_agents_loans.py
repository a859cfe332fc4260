"""Agent typologies and the post-disbursement loan pack."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aml.domain import ActorType, Direction, RuleHit, Transaction, TransactionType
from aml.history import build_context
from aml.rules import RuleEngine, default_rule_config
from tests.factories import make_tx

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
ENGINE = RuleEngine(default_rule_config())


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def hits(tx: Transaction, history: Sequence[Transaction] = ()) -> dict[str, RuleHit]:
    ctx = build_context(tx, list(history))
    return {h.rule_id: h for h in ENGINE.evaluate(tx, ctx).hits}


def agent_tx(
    agent: str,
    amount: int,
    minutes: float,
    *,
    cash_in: bool = True,
    client: str = "7",
    **kw: Any,
) -> Transaction:
    fields: dict[str, Any] = {
        "type": TransactionType.DEPOSIT if cash_in else TransactionType.WITHDRAWAL,
        "direction": Direction.IN if cash_in else Direction.OUT,
        "actor_type": ActorType.AGENT,
        "agent_id": agent,
        "amount_minor": amount,
        "occurred_at": at(minutes),
        "client_id": client,
        "account_id": f"savings:{client}",
    }
    fields.update(kw)
    return make_tx(**fields)


# --- agents ----------------------------------------------------------------------------------


def test_agent_rapid_transactions_within_the_hour() -> None:
    prior = [agent_tx("A1", 5_000, i, client=str(i)) for i in range(28)]
    assert "agent_rapid_transactions" not in hits(agent_tx("A1", 5_000, 40), prior)
    h = hits(agent_tx("A1", 5_000, 40), [*prior, agent_tx("A1", 5_000, 30)])
    assert h["agent_rapid_transactions"].values["count"] == 30
    # The predecessor counted the whole day: 29 spread over 24 h is an ordinary agent.
    spread = [agent_tx("A1", 5_000, -i * 45, client=str(i)) for i in range(1, 30)]
    assert "agent_rapid_transactions" not in hits(agent_tx("A1", 5_000, 0), spread)


def test_agent_float_volume_ignores_balanced_busy_agents() -> None:
    # 12 million XAF through the agent, balanced: business as usual (the predecessor fired).
    busy = [
        agent_tx("A1", 1_000_000, -i * 60, cash_in=i % 2 == 0, client=str(i)) for i in range(12)
    ]
    assert "agent_float_volume" not in hits(agent_tx("A1", 10_000, 0), busy)
    # 5 million net cash-in in a day drains the agent's e-float.
    one_sided = [agent_tx("A1", 1_000_000, -i * 60, client=str(i)) for i in range(1, 5)]
    h = hits(agent_tx("A1", 1_000_000, 0), one_sided)
    assert h["agent_float_volume"].values["net"] == 5_000_000
    assert "agent_float_volume" not in hits(agent_tx("A1", 999_999, 0), one_sided)


def test_agent_float_anomaly_share_and_minimum_volume() -> None:
    ins = [agent_tx("A1", 300_000, -i * 30, client=str(i)) for i in range(1, 5)]
    h = hits(agent_tx("A1", 300_000, 0), ins)
    assert h["agent_float_anomaly"].values["side"] == "cash-in"
    # One cash-out of 10 % breaks the 95 % share.
    mixed = [*ins, agent_tx("A1", 150_000, -200, cash_in=False, client="x")]
    assert "agent_float_anomaly" not in hits(agent_tx("A1", 300_000, 0), mixed)
    # Too little volume to judge.
    tiny = [agent_tx("A1", 10_000, -i * 30, client=str(i)) for i in range(1, 5)]
    assert "agent_float_anomaly" not in hits(agent_tx("A1", 10_000, 0), tiny)


def test_agent_structuring_five_band_deposits_in_an_hour() -> None:
    band = [agent_tx("A1", 480_000, i * 10, client=str(i)) for i in range(4)]
    h = hits(agent_tx("A1", 460_000, 45), band)
    assert h["agent_structuring"].values["count"] == 5
    assert h["agent_structuring"].severity == pytest.approx(0.6)
    assert "agent_structuring" not in hits(agent_tx("A1", 460_000, 45), band[:3])
    # Out of band (not just below the threshold) does not count.
    assert "agent_structuring" not in hits(agent_tx("A1", 440_000, 45), band)
    # Another agent's deposits do not count.
    other = [agent_tx("B2", 480_000, i * 10, client=str(i)) for i in range(4)]
    assert "agent_structuring" not in hits(agent_tx("A1", 460_000, 45), other)


def test_agent_account_farming_counts_distinct_low_kyc_clients() -> None:
    low = [agent_tx("A1", 5_000, -(i + 1) * 60, client=f"c{i}", kyc_level=1) for i in range(8)]
    high = [agent_tx("A1", 5_000, -(i + 1) * 60, client=f"h{i}", kyc_level=3) for i in range(7)]
    h = hits(agent_tx("A1", 5_000, 0, client="c99", kyc_level=1), [*low[:7], *high])
    assert h["agent_account_farming"].values["clients"] == 8
    # The same client again is not a new account.
    assert "agent_account_farming" not in hits(
        agent_tx("A1", 5_000, 0, client="c3", kyc_level=1), low[:7]
    )
    # A fully verified client's transaction is not what farming looks like.
    verified = agent_tx("A1", 5_000, 0, client="z", kyc_level=3)
    assert "agent_account_farming" not in hits(verified, low)


def test_agent_customer_collusion_deposit_then_withdrawal_via_another_agent() -> None:
    dep = agent_tx("A1", 200_000, 0, client="12")
    h = hits(agent_tx("B2", 190_000, 40, cash_in=False, client="12"), [dep])
    assert h["agent_customer_collusion"].values["deposit_agent"] == "A1"
    assert "agent_customer_collusion" not in hits(
        agent_tx("A1", 190_000, 40, cash_in=False, client="12"), [dep]
    )
    assert "agent_customer_collusion" not in hits(
        agent_tx("B2", 190_000, 61, cash_in=False, client="12"), [dep]
    )
    assert "agent_customer_collusion" not in hits(
        agent_tx("B2", 10_000, 40, cash_in=False, client="12"), [dep]
    )


# --- loans -----------------------------------------------------------------------------------

SAVINGS = "savings:12"


def disbursement(amount: int, minutes: float, **kw: Any) -> Transaction:
    """Recorded on the loan account, paid into the client's savings account."""
    fields: dict[str, Any] = {
        "type": TransactionType.LOAN_DISBURSEMENT,
        "direction": Direction.OUT,
        "account_id": "loan:21",
        "loan_id": "21",
        "counterparty_account_id": SAVINGS,
        "amount_minor": amount,
        "occurred_at": at(minutes),
        "client_id": "7",
    }
    fields.update(kw)
    return make_tx(**fields)


def spend(amount: int, minutes: float, to: str | None = "savings:90", **kw: Any) -> Transaction:
    fields: dict[str, Any] = {
        "type": TransactionType.TRANSFER if to else TransactionType.WITHDRAWAL,
        "direction": Direction.OUT,
        "account_id": SAVINGS,
        "counterparty_account_id": to,
        "amount_minor": amount,
        "occurred_at": at(minutes),
        "client_id": "7",
    }
    fields.update(kw)
    return make_tx(**fields)


def test_immediate_cash_out_of_the_loan() -> None:
    loan = disbursement(1_000_000, 0)
    h = hits(spend(850_000, 20, to=None), [loan])
    assert h["immediate_cash_out"].values["loan_id"] == "21"
    assert "loan_and_run" in h
    assert "immediate_cash_out" not in hits(spend(850_000, 31, to=None), [loan])
    assert "immediate_cash_out" not in hits(spend(790_000, 20, to=None), [loan])


def test_loan_and_run_over_several_outflows() -> None:
    loan = disbursement(1_000_000, 0)
    prior = [spend(400_000, 60, to="savings:91"), spend(300_000, 120, to="savings:92")]
    h = hits(spend(150_000, 180, to="savings:93"), [loan, *prior])
    assert h["loan_and_run"].values["share"] == pytest.approx(0.85)
    assert "loan_and_run" not in hits(spend(100_000, 180), [loan, *prior])  # exactly 80 %
    # A repayment is not running with the money, and money older than the loan does not count.
    before = spend(900_000, -60)
    assert "loan_and_run" not in hits(spend(100_000, 180), [before, loan])
    # After the 48 h watch the loan no longer explains the outflow.
    assert "loan_and_run" not in hits(spend(900_000, 49 * 60), [loan])


def test_loan_watch_matches_the_client_not_the_loan_account() -> None:
    other_client = disbursement(1_000_000, 0, client_id="8")
    assert "loan_and_run" not in hits(spend(900_000, 60), [other_client])


def test_post_disbursement_structuring() -> None:
    loan = disbursement(1_000_000, 0)
    prior = [spend(250_000, 30, to="savings:91"), spend(250_000, 60, to="savings:92")]
    h = hits(spend(250_000, 90, to="savings:93"), [loan, *prior])
    assert h["post_disbursement_structuring"].values["transfers"] == 3
    assert "post_disbursement_structuring" not in hits(
        spend(190_000, 90, to="savings:93"), [loan, *prior]
    )
    assert "post_disbursement_structuring" not in hits(spend(250_000, 90), [loan, prior[0]])


def test_loan_dispersal_to_many_counterparties() -> None:
    loan = disbursement(1_000_000, 0)
    prior = [spend(20_000, 10 + i, to=f"savings:{100 + i}") for i in range(4)]
    h = hits(spend(20_000, 30, to="savings:200"), [loan, *prior])
    assert h["loan_dispersal"].values["counterparties"] == 5
    assert "loan_dispersal" not in hits(spend(20_000, 30, to="savings:100"), [loan, *prior])


def test_no_loan_rules_without_a_disbursement() -> None:
    h = hits(spend(900_000, 10, to=None), [])
    assert not {"loan_and_run", "immediate_cash_out", "loan_dispersal"} & set(h)


# --- loans across the client's accounts --------------------------------------------------------
# Fineract records a disbursement on the loan account only; the borrower spends from a savings
# account, often not the one the loan was paid into. The rules see every account of the client.

OTHER_SAVINGS = "savings:13"


def fineract_disbursement(amount: int, minutes: float, **kw: Any) -> Transaction:
    """As the Fineract hook records it: on the loan account, no counterparty account."""
    return disbursement(amount, minutes, counterparty_account_id=None, **kw)


def test_loan_and_run_from_another_account_of_the_client() -> None:
    loan = disbursement(1_000_000, 0)  # paid into savings:12
    moved = spend(950_000, 10, to=OTHER_SAVINGS)  # to the client's own second account
    prior = spend(400_000, 60, to="savings:90", account_id=OTHER_SAVINGS)
    run = spend(450_000, 120, to="savings:91", account_id=OTHER_SAVINGS)
    h = hits(run, [loan, moved, prior])
    assert h["loan_and_run"].values["share"] == pytest.approx(0.85)
    assert h["loan_and_run"].values["disbursement_account"] == "loan:21"
    assert h["loan_and_run"].values["outflow_accounts"] == [OTHER_SAVINGS]
    # Another client's loan explains nothing about this client's spending.
    foreign = disbursement(1_000_000, 0, client_id="8", account_id="loan:31", loan_id="31")
    assert "loan_and_run" not in hits(run, [foreign, moved, prior])


def test_outflows_are_summed_over_the_clients_accounts() -> None:
    loan = fineract_disbursement(1_000_000, 0)
    first = spend(500_000, 60, to="savings:91")  # from savings:12
    run = spend(350_000, 120, to="savings:92", account_id=OTHER_SAVINGS)
    h = hits(run, [loan, first])
    assert h["loan_and_run"].values["moved_out"] == 850_000
    assert h["loan_and_run"].values["outflow_accounts"] == [SAVINGS, OTHER_SAVINGS]
    assert "loan_and_run" not in hits(run, [loan, first.replace(client_id="8")])
    # The same transfer recorded twice (the hook and the sweep) left the client once.
    twice = first.replace(id="sweep-copy", dedupe_key="sweep-copy")
    assert hits(run, [loan, first, twice])["loan_and_run"].values["moved_out"] == 850_000


def test_moves_between_the_clients_own_accounts_are_not_running() -> None:
    loan = disbursement(1_000_000, 0)
    to_own = spend(750_000, 10, to=OTHER_SAVINGS)
    cash = spend(100_000, 30, to=None, account_id=OTHER_SAVINGS)  # savings:13 is the client's
    h = hits(spend(100_000, 60, to="savings:90"), [loan, to_own, cash])
    # 100k cash from savings:13 and 100k now: the 750k only changed the client's account.
    assert "loan_and_run" not in h
    # The same history without the client's second account in view: 85 % left savings:12.
    assert "loan_and_run" in hits(spend(100_000, 60, to="savings:90"), [loan, to_own])
    # A move to the client's own account is not an outflow of the loan at all.
    assert not {"loan_and_run", "loan_dispersal"} & set(
        hits(spend(100_000, 60, to=OTHER_SAVINGS), [loan, to_own, cash])
    )


def test_immediate_cash_out_from_another_account_of_the_client() -> None:
    loan = fineract_disbursement(1_000_000, 0)
    cash = spend(850_000, 20, to=None, account_id=OTHER_SAVINGS)
    h = hits(cash, [loan])
    assert h["immediate_cash_out"].values["loan_id"] == "21"
    assert h["immediate_cash_out"].values["disbursement_account"] == "loan:21"
    assert h["immediate_cash_out"].values["outflow_accounts"] == [OTHER_SAVINGS]
    assert "immediate_cash_out" not in hits(cash, [loan.replace(client_id="8")])
    assert "immediate_cash_out" not in hits(cash.replace(client_id=None), [loan])
    assert "immediate_cash_out" not in hits(spend(850_000, 31, to=None, account_id="x"), [loan])


def test_post_disbursement_structuring_across_accounts() -> None:
    loan = fineract_disbursement(1_000_000, 0)
    prior = [
        spend(250_000, 30, to="savings:91"),
        spend(250_000, 60, to="savings:92", account_id=OTHER_SAVINGS),
    ]
    last = spend(250_000, 90, to="savings:93", account_id="savings:14")
    h = hits(last, [loan, *prior])
    assert h["post_disbursement_structuring"].values["transfers"] == 3
    assert h["post_disbursement_structuring"].values["outflow_accounts"] == [
        SAVINGS,
        OTHER_SAVINGS,
        "savings:14",
    ]
    others = [p.replace(client_id="8") for p in prior]
    assert "post_disbursement_structuring" not in hits(last, [loan, *others])


def test_loan_dispersal_across_accounts() -> None:
    loan = fineract_disbursement(1_000_000, 0)
    prior = [
        spend(20_000, 10 + i, to=f"savings:{100 + i}", account_id=(SAVINGS, OTHER_SAVINGS)[i % 2])
        for i in range(4)
    ]
    last = spend(20_000, 30, to="savings:200", account_id=OTHER_SAVINGS)
    h = hits(last, [loan, *prior])
    assert h["loan_dispersal"].values["counterparties"] == 5
    assert h["loan_dispersal"].values["outflow_accounts"] == [SAVINGS, OTHER_SAVINGS]
    assert "loan_dispersal" not in hits(last, [loan.replace(client_id="8"), *prior])
