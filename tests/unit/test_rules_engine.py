"""Engine behaviour: monotonic combination, point-in-time, out-of-order arrival, skipped records."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aml.domain import Direction, Transaction, TransactionStatus, TransactionType
from aml.history import build_context
from aml.rules import (
    RULE_IDS,
    RuleConfig,
    RuleEngine,
    RuleEvaluation,
    combine,
    default_rule_config,
)
from aml.rules.catalog import edge_of
from tests.factories import make_tx

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
ENGINE = RuleEngine(default_rule_config())
ACCOUNTS = [f"savings:{i}" for i in range(6)]

severities = st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=12)


@given(severities, st.floats(min_value=0.0, max_value=1.0))
def test_another_firing_rule_never_lowers_the_score(base: list[float], extra: float) -> None:
    before = combine(base)
    after = combine([*base, extra])
    assert 0.0 <= before <= after <= 1.0


@given(severities)
def test_score_is_at_least_the_strongest_hit_and_order_free(values: list[float]) -> None:
    score = combine(values)
    assert score >= max(values, default=0.0) - 1e-12
    assert score == pytest.approx(combine(list(reversed(values))))


def test_predecessor_counter_example_is_fixed() -> None:
    # Structuring alone 0.75; with a 0.3 rule the predecessor gave 0.60. Now it goes up.
    assert combine([0.75, 0.3]) > combine([0.75])
    assert combine([]) == 0.0


def _random_stream(seed: int, n: int = 60) -> list[Transaction]:
    """A small stream of transfers, deposits, withdrawals and agent cash between a few accounts."""
    rng = random.Random(seed)
    out: list[Transaction] = []
    for i in range(n):
        a, b = rng.sample(ACCOUNTS, 2)
        kind = rng.random()
        at = T0 + timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
        amount = rng.choice([5_000, 95_000, 100_000, 460_000, 480_000, 600_000])
        if kind < 0.5:
            out.append(
                make_tx(
                    type=TransactionType.TRANSFER,
                    direction=rng.choice([Direction.IN, Direction.OUT]),
                    account_id=a,
                    counterparty_account_id=b,
                    amount_minor=amount,
                    occurred_at=at,
                )
            )
        elif kind < 0.8:
            out.append(
                make_tx(
                    account_id=a,
                    amount_minor=amount,
                    occurred_at=at,
                    agent_id=rng.choice(["A1", "A2"]),
                    kyc_level=rng.choice([1, 2]),
                    client_id=f"c{i % 9}",
                    direction=rng.choice([Direction.IN, Direction.OUT]),
                )
            )
        else:
            out.append(
                make_tx(
                    type=TransactionType.LOAN_DISBURSEMENT,
                    account_id="loan:1",
                    counterparty_account_id=a,
                    direction=Direction.OUT,
                    amount_minor=amount,
                    occurred_at=at,
                )
            )
    return out


def _evaluate(
    tx: Transaction, candidates: list[Transaction], engine: RuleEngine = ENGINE
) -> RuleEvaluation:
    edges = [e for o in candidates if (e := edge_of(o)) is not None]
    return engine.evaluate(tx, build_context(tx, candidates, edges=edges))


@settings(max_examples=15, deadline=None)
@given(st.integers(min_value=0, max_value=10_000))
def test_later_transactions_never_influence_an_earlier_one(seed: int) -> None:
    stream = _random_stream(seed)
    ordered = sorted(stream, key=lambda t: (t.occurred_at, t.id))
    for i, tx in enumerate(ordered):
        only_past = ordered[:i]
        everything = list(stream)  # includes later ones and tx itself, in arrival order
        assert _evaluate(tx, only_past) == _evaluate(tx, everything)


@settings(max_examples=10, deadline=None)
@given(st.integers(min_value=0, max_value=10_000))
def test_out_of_order_arrival_gives_the_same_result(seed: int) -> None:
    stream = _random_stream(seed)
    shuffled = list(stream)
    random.Random(seed + 1).shuffle(shuffled)
    for tx in stream[:20]:
        assert _evaluate(tx, stream) == _evaluate(tx, shuffled)


@settings(max_examples=10, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.sampled_from(sorted(RULE_IDS)))
def test_disabling_a_rule_never_raises_the_score(seed: int, rule_id: str) -> None:
    data = default_rule_config().to_dict()
    data["rules"] = {rule_id: {"enabled": False}}
    fewer = RuleEngine(RuleConfig.model_validate(data))
    stream = _random_stream(seed, n=30)
    for tx in stream:
        full = _evaluate(tx, stream)
        reduced = _evaluate(tx, stream, fewer)
        assert reduced.score <= full.score + 1e-12


def test_hits_carry_values_descriptions_and_bounded_severities() -> None:
    seen: set[str] = set()
    for seed in range(5):
        stream = _random_stream(seed, n=120)
        for tx in stream:
            ev = _evaluate(tx, stream)
            for h in ev.hits:
                seen.add(h.rule_id)
                assert 0.0 <= h.severity <= 1.0
                assert h.values and h.description
    assert len(seen) >= 5


@pytest.mark.parametrize(
    "change",
    [
        {"status": TransactionStatus.CORRECTION},
        {"status": TransactionStatus.REJECTED},
        {"type": TransactionType.REVERSAL},
        {"reversed": True},
    ],
)
def test_corrections_and_rejected_attempts_are_not_evaluated(change: dict[str, object]) -> None:
    tx = make_tx(amount_minor=9_000_000, occurred_at=T0.replace(hour=2)).replace(**change)
    ev = ENGINE.evaluate(tx, build_context(tx, []))
    assert ev.hits == () and ev.score == 0.0
    assert ev.config_version == default_rule_config().version


def test_corrections_in_history_are_not_counted() -> None:
    prior = [
        make_tx(amount_minor=900_000, occurred_at=T0 + timedelta(minutes=i)).replace(
            status=TransactionStatus.CORRECTION
        )
        for i in range(3)
    ]
    tx = make_tx(amount_minor=10_000, occurred_at=T0 + timedelta(minutes=10))
    assert "high_velocity_volume" not in ENGINE.evaluate(tx, build_context(tx, prior)).rule_ids


def test_batch_matches_single_evaluation() -> None:
    stream = _random_stream(7)
    items = []
    for tx in stream:
        edges = [e for o in stream if (e := edge_of(o)) is not None]
        items.append((tx, build_context(tx, stream, edges=edges)))
    assert ENGINE.evaluate_batch(items) == [ENGINE.evaluate(tx, ctx) for tx, ctx in items]


def test_evaluation_is_frozen() -> None:
    tx = make_tx()
    ev = ENGINE.evaluate(tx, build_context(tx, []))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.score = 1.0  # type: ignore[misc]
