"""Anomaly reasons measured against the customer's own baseline instead of the population."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest

from aml.domain import (
    Decision,
    Direction,
    FeatureContribution,
    ScorerResult,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from aml.explain import (
    ACCOUNT_HISTORY_FEATURES,
    CUSTOMER_BASELINE,
    POPULATION_BASELINE,
    contributions_basis,
    customer_anomaly_explanation,
)
from aml.features import FEATURE_NAMES, FeatureParams, compute_features
from aml.history import HistoryContext, build_context
from aml.policy import PolicyConfig, decide, with_anomaly_explanation
from aml.rules.engine import RuleEvaluation
from tests.factories import T0, make_tx

PARAMS = FeatureParams()
ACCOUNT = "savings:501"
NO_RULES = RuleEvaluation(score=0.0, hits=(), config_version=1)
POPULATION = (
    FeatureContribution(feature="hour_sin", value=-0.9, contribution=3.1),
    FeatureContribution(feature="amount", value=5000.0, contribution=0.4),
)


def usual_deposits(n: int, *, account: str = ACCOUNT, seed: int = 7) -> list[Transaction]:
    """A customer depositing about 100 every 7 hours."""
    rng = random.Random(seed)
    return [
        make_tx(
            account_id=account,
            occurred_at=T0 + timedelta(hours=7 * i),
            amount_minor=100 + rng.randint(-10, 10),
        )
        for i in range(n)
    ]


def deposit_after(history: list[Transaction], amount_minor: int) -> Transaction:
    return make_tx(
        account_id=ACCOUNT,
        occurred_at=history[-1].occurred_at + timedelta(hours=7),
        amount_minor=amount_minor,
    )


def anomaly_decision(tx: Transaction, *, rules: RuleEvaluation = NO_RULES) -> Decision:
    result = ScorerResult(
        scorer="anomaly", available=True, score=0.97, model_version="if-3", contributions=POPULATION
    )
    return decide(
        tx,
        rules,
        [result],
        config=PolicyConfig(weights={"anomaly": 1.0}),
        decided_at=datetime(2026, 3, 1, tzinfo=UTC),
    )


def test_a_5000_deposit_from_a_customer_who_deposits_about_100_is_explained_by_its_amount() -> None:
    history = usual_deposits(80)
    spike = deposit_after(history, 5_000)

    result = customer_anomaly_explanation(spike, [*history, spike], params=PARAMS)

    assert result.own_baseline
    top = result.contributions[0]
    assert top.feature == "amount"
    assert top.value == 5_000.0
    assert top.contribution > 100  # robust z: about 4,900 above a median of 100, MAD ~ 10
    assert 90 <= result.usual["amount"] <= 110
    assert result.history == 80
    assert result.basis == (
        f"{CUSTOMER_BASELINE} (median of 80 transactions over {result.days} days)"
    )
    # The transaction's values are the ones scoring computes for it.
    scored = compute_features(spike, build_context(spike, history), params=PARAMS)
    assert all(c.value == scored[c.feature] for c in result.contributions)


def test_a_usual_deposit_is_far_from_nothing() -> None:
    history = usual_deposits(80)
    normal = deposit_after(history, 100)
    result = customer_anomaly_explanation(normal, history, params=PARAMS)
    assert result.own_baseline
    assert all(abs(c.contribution) < 3 for c in result.contributions)


def test_decision_text_and_contributions_say_the_baseline_is_the_customers_own() -> None:
    history = usual_deposits(40)
    spike = deposit_after(history, 5_000)
    result = customer_anomaly_explanation(spike, history, params=PARAMS)
    decision = anomaly_decision(spike)
    assert "hour_sin=-0.9 (+3.10)" in decision.explanation

    explained = with_anomaly_explanation(
        decision, result.contributions, basis=result.basis, usual=result.usual
    )

    anomaly = next(s for s in explained.scorers if s.scorer == "anomaly")
    assert anomaly.contributions == result.contributions
    assert anomaly.reason == result.basis
    assert anomaly.score == 0.97 and anomaly.model_version == "if-3"
    usual = result.usual["amount"]
    assert (
        f"anomaly score 0.97 {CUSTOMER_BASELINE} (median of 40 transactions over "
        f"{result.days} days) [amount=5000 (+{result.contributions[0].contribution:.2f}, "
        f"{5000 / usual:.1f}x the usual {usual:.4g})"
    ) in explained.explanation
    assert "hour_sin" not in explained.explanation
    # Everything else the policy wrote stays: head, score, risk, alert.
    assert explained.explanation.startswith(decision.explanation.split(" Top reasons")[0])
    assert (explained.score, explained.alert, explained.risk_level) == (
        decision.score,
        decision.alert,
        decision.risk_level,
    )


def test_a_new_customer_keeps_the_population_explanation_and_says_so() -> None:
    history = usual_deposits(4)
    spike = deposit_after(history, 5_000)

    result = customer_anomaly_explanation(spike, history, params=PARAMS, min_history=5)

    assert not result.own_baseline
    assert result.contributions == ()
    assert result.history == 4
    assert result.basis.startswith(POPULATION_BASELINE)
    assert "4 earlier transactions, 5 are needed" in result.basis

    decision = anomaly_decision(spike)
    kept = with_anomaly_explanation(decision, POPULATION, basis=result.basis)
    anomaly = next(s for s in kept.scorers if s.scorer == "anomaly")
    assert anomaly.contributions == POPULATION
    assert f"anomaly score 0.97 {result.basis} [hour_sin=-0.9 (+3.10)" in kept.explanation


def test_same_inputs_in_any_order_give_the_same_explanation() -> None:
    history = usual_deposits(60)
    spike = deposit_after(history, 5_000)
    later = make_tx(account_id=ACCOUNT, occurred_at=spike.occurred_at + timedelta(hours=1))
    elsewhere = usual_deposits(30, account="savings:999", seed=3)
    first = customer_anomaly_explanation(spike, history, params=PARAMS)
    shuffled = [*history, spike, later, *elsewhere, history[5]]
    random.Random(11).shuffle(shuffled)

    again = customer_anomaly_explanation(spike, shuffled, params=PARAMS)

    assert again == first
    assert customer_anomaly_explanation(spike, history, params=PARAMS) == first


def test_baseline_is_the_most_recent_history_within_the_look_back() -> None:
    history = usual_deposits(300)  # 7 h apart: 87 days
    spike = deposit_after(history, 5_000)
    bounded = customer_anomaly_explanation(spike, history, params=PARAMS, max_history=50)
    assert bounded.history == 50
    assert bounded.days == 15  # 50 x 7 h back

    month = customer_anomaly_explanation(spike, history, params=PARAMS)
    assert month.history == 30 * 24 // 7  # the transactions of the last 30 days
    assert month.days == 30


def test_a_busy_account_gets_the_baseline_its_window_budget_allows() -> None:
    history = usual_deposits(300)  # 24 earlier movements in every 7-day window
    spike = deposit_after(history, 5_000)

    bounded = customer_anomaly_explanation(spike, history, params=PARAMS, max_work=1_000)

    # The transaction's own window (24) and 40 rows of 24 fit in 1,000 history items.
    assert bounded.history == 40
    assert bounded.contributions[0].feature == "amount"


def test_history_whose_window_was_not_read_stays_out_of_the_baseline() -> None:
    history = usual_deposits(60)  # 17.5 days
    spike = deposit_after(history, 5_000)
    complete_from = history[20].occurred_at

    result = customer_anomaly_explanation(
        spike, history[20:], params=PARAMS, complete_from=complete_from
    )

    # Only transactions with their whole 7-day window after ``complete_from`` count.
    window_ok = [o for o in history[20:] if o.occurred_at - timedelta(days=7) >= complete_from]
    assert result.history == len(window_ok)


def test_only_the_accounts_own_money_movements_form_the_baseline() -> None:
    history = usual_deposits(30)
    spike = deposit_after(history, 5_000)
    incoming = [
        make_tx(
            account_id=f"savings:{700 + i}",
            counterparty_account_id=ACCOUNT,
            type=TransactionType.TRANSFER,
            direction=Direction.OUT,
            amount_minor=80_000,
            occurred_at=T0 + timedelta(hours=7 * i, minutes=30),
        )
        for i in range(10)
    ]
    rejected = make_tx(
        account_id=ACCOUNT,
        occurred_at=T0 + timedelta(hours=1),
        status=TransactionStatus.REJECTED,
    )

    result = customer_anomaly_explanation(spike, [*history, *incoming, rejected], params=PARAMS)

    assert result.history == 30


def test_account_history_features_do_not_read_other_windows() -> None:
    assert set(ACCOUNT_HISTORY_FEATURES) <= set(FEATURE_NAMES)
    assert len(set(ACCOUNT_HISTORY_FEATURES)) == len(ACCOUNT_HISTORY_FEATURES)
    history = usual_deposits(20)
    tx = make_tx(
        account_id=ACCOUNT,
        occurred_at=history[-1].occurred_at + timedelta(hours=1),
        counterparty_account_id="savings:42",
        agent_id="agent-1",
        type=TransactionType.TRANSFER,
        direction=Direction.OUT,
    )
    others = [
        make_tx(
            account_id="savings:42",
            agent_id="agent-1",
            occurred_at=tx.occurred_at - timedelta(minutes=5 * (i + 1)),
            amount_minor=1_000_000 * (i + 1),
        )
        for i in range(6)
    ]
    ctx = build_context(tx, history)
    # Every window but the account's own (whatever windows the context grows) sees others.
    windows: dict[str, object] = {
        f.name: others
        for f in dataclasses.fields(HistoryContext)
        if f.name not in ("account", "edges")
    }
    crowded = dataclasses.replace(ctx, **windows)  # type: ignore[arg-type]
    alone = compute_features(tx, ctx, params=PARAMS)
    around = compute_features(tx, crowded, params=PARAMS)
    assert {n: alone[n] for n in ACCOUNT_HISTORY_FEATURES} == {
        n: around[n] for n in ACCOUNT_HISTORY_FEATURES
    }


def test_a_decision_without_an_anomaly_score_is_left_alone() -> None:
    tx = make_tx()
    decision = decide(
        tx,
        NO_RULES,
        [ScorerResult(scorer="anomaly", available=False, reason="no model")],
        config=PolicyConfig(),
        decided_at=datetime(2026, 3, 1, tzinfo=UTC),
    )
    assert with_anomaly_explanation(decision, POPULATION, basis="x") is decision


@pytest.mark.parametrize("value", [150.0, 30.0])
def test_usual_values_read_as_a_ratio_only_when_far_from_usual(value: float) -> None:
    tx = make_tx()
    decision = anomaly_decision(tx)
    c = FeatureContribution(feature="amount", value=value, contribution=2.5)
    text = with_anomaly_explanation(
        decision, (c,), basis=CUSTOMER_BASELINE, usual={"amount": 100.0}
    ).explanation
    expected = "usual 100" if value == 150.0 else "0.3x the usual 100"
    assert f"amount={value:.4g} (+2.50, {expected})" in text


def test_shown_basis_of_contributions_tells_own_baseline_from_population() -> None:
    history = usual_deposits(40)
    spike = deposit_after(history, 5_000)
    own = customer_anomaly_explanation(spike, history, params=PARAMS)
    few = customer_anomaly_explanation(spike, history[-3:], params=PARAMS)
    decision = anomaly_decision(spike)

    def basis_of(d: Decision) -> str:
        return contributions_basis(next(s for s in d.scorers if s.scorer == "anomaly"))

    assert basis_of(decision) == POPULATION_BASELINE  # as the scorer explained it
    explained = with_anomaly_explanation(decision, own.contributions, basis=own.basis)
    assert basis_of(explained).startswith(CUSTOMER_BASELINE)
    kept = with_anomaly_explanation(decision, POPULATION, basis=few.basis)
    assert basis_of(kept) == few.basis and few.basis.startswith(POPULATION_BASELINE)
    shap = ScorerResult(scorer="xgboost", available=True, score=0.5, contributions=POPULATION)
    assert contributions_basis(shap) == ""
