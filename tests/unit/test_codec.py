"""The document codec: generated per-class encoders and decoding plans give the documented
conversions (enums by value, UTC datetimes, arrays, sub-documents, numeric coercions)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from aml.domain import (
    Decision,
    FeatureContribution,
    RiskLevel,
    RuleHit,
    ScorerResult,
    Transaction,
    TransactionType,
)
from storage.codec import from_doc, to_doc
from tests.factories import make_tx


class Colour(enum.Enum):
    RED = 1
    BLUE = 2


@dataclass(frozen=True, slots=True)
class Inner:
    label: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Outer:
    id: str
    colour: Colour
    kind: TransactionType
    ratio: float
    count: int
    flag: bool
    at: datetime
    inner: Inner | None = None
    inners: tuple[Inner | None, ...] = ()
    tags: list[str] = field(default_factory=list)
    values: Mapping[Any, Any] = field(default_factory=dict)
    nested: Mapping[str, Inner] = field(default_factory=dict)


@dataclass
class Checked:
    """Not slotted, with ``__post_init__``: decoded by calling the class, so it still runs."""

    id: str
    amount: int
    doubled: int = 0

    def __post_init__(self) -> None:
        self.doubled = 2 * self.amount


NAIVE = datetime(2026, 3, 1, 12, 30, 15, 123000)
AWARE = datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=UTC)


def test_encoding_follows_the_documented_conversions() -> None:
    value = Outer(
        id="x1",
        colour=Colour.BLUE,
        kind=TransactionType.TRANSFER,
        ratio=0.5,
        count=3,
        flag=True,
        at=NAIVE,
        inner=Inner("a", AWARE),
        inners=(Inner("b", NAIVE), Inner("c", AWARE)),
        tags=["t"],
        values={"k": (1, 2), 7: Colour.RED},
        nested={"n": Inner("d", NAIVE)},
    )
    doc = to_doc(value)
    assert doc == {
        "_id": "x1",
        "colour": 2,
        "kind": "transfer",
        "ratio": 0.5,
        "count": 3,
        "flag": True,
        "at": AWARE,
        "inner": {"label": "a", "at": AWARE},
        "inners": [{"label": "b", "at": AWARE}, {"label": "c", "at": AWARE}],
        "tags": ["t"],
        "values": {"k": [1, 2], "7": 1},
        "nested": {"n": {"label": "d", "at": AWARE}},
    }
    assert "id" not in doc
    # A str enum is stored as its text; naive datetimes are read as UTC.
    assert isinstance(doc["kind"], str) and doc["kind"] == "transfer"
    assert doc["at"].tzinfo is not None


def test_documents_decode_back_with_coercions() -> None:
    doc = {
        "_id": "x2",
        "colour": 1,
        "kind": "deposit",
        "ratio": 2,  # an integer stored for a float field
        "count": 4.0,  # a float holding an integer, for an int field
        "flag": 1,  # an int for a bool
        "at": "2026-03-01T12:30:15.123000",  # ISO text written by an update operator
        "inner": {"label": "a", "at": NAIVE},
        "inners": [{"label": "b", "at": AWARE}, None],
        "values": {"k": [1, 2]},
        "nested": {"n": {"label": "d", "at": NAIVE}, "m": None},
        "unknown": "ignored",
    }
    value = from_doc(Outer, doc)
    assert value.id == "x2"
    assert value.colour is Colour.RED and value.kind is TransactionType.DEPOSIT
    assert value.ratio == 2.0 and isinstance(value.ratio, float)
    assert value.count == 4 and isinstance(value.count, int)
    assert value.flag is True
    assert value.at == AWARE
    assert value.inner == Inner("a", AWARE)
    assert value.inners == (Inner("b", AWARE), None)
    assert value.tags == []  # missing: the default factory
    assert value.values == {"k": [1, 2]}
    assert value.nested == {"n": Inner("d", AWARE), "m": None}
    assert from_doc(Outer, {**doc, "count": 4.5}).count == 4.5  # not an integer: as stored


def test_a_class_with_post_init_is_built_by_calling_it() -> None:
    assert from_doc(Checked, {"_id": "c", "amount": 21}) == Checked("c", 21, 42)
    assert to_doc(Checked("c", 21)) == {"_id": "c", "amount": 21, "doubled": 42}


def test_hot_domain_types_round_trip() -> None:
    tx = make_tx(
        amount_minor=123_450,
        occurred_at=AWARE + timedelta(minutes=5),
        counterparty_account_id="savings:9",
        device_id="d-1",
    )
    assert from_doc(Transaction, to_doc(tx)) == tx
    decision = Decision(
        transaction_id=tx.id,
        tenant=tx.tenant,
        score=0.75,
        risk_level=RiskLevel.HIGH,
        alert=True,
        rule_hits=(
            RuleHit(
                rule_id="large_amount",
                category="threshold",
                severity=0.7,
                values={"amount": 1234.5},
            ),
        ),
        scorers=(
            ScorerResult(scorer="rules", available=True, score=0.7),
            ScorerResult(
                scorer="anomaly",
                available=True,
                score=0.4,
                model_version="if-1",
                contributions=(FeatureContribution(feature="amount", value=3.0, contribution=1.5),),
            ),
            ScorerResult(scorer="xgboost", available=False, reason="no model"),
        ),
        decided_at=AWARE.astimezone(timezone(timedelta(hours=1))),
    )
    back = from_doc(
        Decision, to_doc(decision, id_field="transaction_id"), id_field="transaction_id"
    )
    assert back == decision
