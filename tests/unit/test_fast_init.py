"""``fast_init`` builds exactly what the class builds, defaults and factories included."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, fields

import pytest

from aml.domain import (
    Decision,
    FeatureContribution,
    RiskLevel,
    RuleHit,
    ScorerResult,
    fast_init,
    fast_pickle,
)
from aml.history import HistoryContext, TransferEdge
from tests.factories import T0, make_tx


def _same(a: object, b: object) -> None:
    assert type(a) is type(b)
    assert a == b
    for f in fields(a):  # type: ignore[arg-type]
        assert type(getattr(a, f.name)) is type(getattr(b, f.name)), f.name


def test_every_field_given_builds_an_equal_instance() -> None:
    result = ScorerResult(
        scorer="anomaly",
        available=True,
        score=0.7,
        model_version="if-3",
        contributions=(FeatureContribution(feature="amount", value=9.0, contribution=2.5),),
    )
    values = {
        "transaction_id": "t1",
        "tenant": "default",
        "score": 0.7,
        "risk_level": RiskLevel.HIGH,
        "alert": True,
        "decided_at": T0,
        "scorers": (result,),
        "rule_hits": (RuleHit(rule_id="large_amount", category="amount", severity=0.6),),
        "feature_set_version": "fs-1",
        "rule_config_version": 3,
        "shadow_scores": {"anomaly:v2": 0.4},
        "explanation": "HIGH risk",
    }
    built = fast_init(Decision)(**values)
    _same(built, Decision(**values))  # type: ignore[arg-type]
    # It pickles and unpickles like any other decision.
    _same(pickle.loads(pickle.dumps(built)), built)


def test_defaults_and_factories_are_those_of_the_class_and_not_shared() -> None:
    new_hit = fast_init(RuleHit)
    a = new_hit(rule_id="r", category="c", severity=0.5)
    b = new_hit(rule_id="r", category="c", severity=0.5)
    _same(a, RuleHit(rule_id="r", category="c", severity=0.5))
    assert a.values is not b.values  # default_factory called per instance
    new_ctx = fast_init(HistoryContext)
    tx = make_tx()
    _same(new_ctx(account=[tx]), HistoryContext(account=[tx]))
    edge = fast_init(TransferEdge)(src="a", dst="b", amount=1.0, at=T0, tx_id="t")
    _same(edge, TransferEdge("a", "b", 1.0, T0, "t"))


def test_it_is_strict_like_the_class() -> None:
    new_hit = fast_init(RuleHit)
    with pytest.raises(TypeError):
        new_hit(rule_id="r", category="c")  # severity missing
    with pytest.raises(TypeError):
        new_hit(rule_id="r", category="c", severity=0.5, bogus=1)
    built = new_hit(rule_id="r", category="c", severity=0.5)
    with pytest.raises(AttributeError):
        built.severity = 1.0  # type: ignore[misc]


def test_classes_with_post_init_are_refused() -> None:
    @dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("negative")

    with pytest.raises(TypeError, match="__post_init__"):
        fast_init(Checked)


def test_rebuilt_transactions_are_transactions_frozen_and_equal() -> None:
    tx = make_tx(counterparty_account_id="savings:9", attributes={"k": "v"})
    back = pickle.loads(pickle.dumps(tx))
    _same(back, tx)
    with pytest.raises(AttributeError):
        back.amount_minor = 1  # type: ignore[misc]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Base:
    a: int


@fast_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class _Derived(_Base):
    b: str = "x"
    c: tuple[int, ...] = ()


def test_classes_with_a_slotted_base_are_built_through_the_slots() -> None:
    # No twin class of the same layout here: the fields are set through their descriptors.
    built = fast_init(_Derived)(a=1, c=(2,))
    _same(built, _Derived(a=1, c=(2,)))
    _same(pickle.loads(pickle.dumps(built)), built)
    with pytest.raises(AttributeError):
        built.a = 2  # type: ignore[misc]


def test_private_field_names_are_refused() -> None:
    @dataclass(frozen=True, slots=True, kw_only=True)
    class Private:
        _o: int

    with pytest.raises(TypeError, match="starting with '_'"):
        fast_init(Private)
