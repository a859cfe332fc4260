"""The types that cross Ray process boundaries on every batch pickle back exactly.

Every field of every sample differs from its default, so a field that the fast pickling left
out would come back with its default and fail the comparison.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from datetime import timedelta
from typing import Any

import pytest
from ray import cloudpickle

from actors.customer_state import Role, ShardItem, WindowKey
from aml.domain import (
    ActorType,
    Alert,
    AlertStatus,
    AnalystDecision,
    Decision,
    Direction,
    FeatureContribution,
    PackedList,
    RiskLevel,
    RuleHit,
    ScorerResult,
    SealedBatch,
    Transaction,
    TransactionStatus,
    TransactionType,
    sealed,
)
from aml.history import HistoryContext, TransferEdge
from aml.rules.engine import RuleEvaluation
from tests.factories import T0, make_tx

FULL_TX = Transaction(
    id="tx-1",
    tenant="t1",
    dedupe_key="k|1",
    source="fineract",
    type=TransactionType.TRANSFER,
    direction=Direction.OUT,
    amount_minor=123_456,
    currency="EUR",
    occurred_at=T0,
    received_at=T0 + timedelta(seconds=3),
    account_id="savings:1",
    status=TransactionStatus.SCORED,
    risk_level=RiskLevel.HIGH,
    external_id="99",
    client_id="c1",
    office_id="o1",
    group_id="g1",
    loan_id="l1",
    counterparty_account_id="savings:2",
    counterparty_client_id="c2",
    counterparty_name="Ada",
    actor_type=ActorType.AGENT,
    agent_id="agent:1",
    branch_id="b1",
    merchant_id="m1",
    device_id="dev-1",
    ip_address="10.0.0.1",
    country_code="CM",
    kyc_level=2,
    description="rent",
    reverses_external_id="98",
    reversed=True,
    enriched=True,
    running_balance_minor=5,
    account_no="000123",
    attributes={"channel": "ussd", "nested": {"a": [1, 2]}},
)
CONTRIBUTION = FeatureContribution(feature="amount", value=1.5, contribution=-0.25)
HIT = RuleHit(
    rule_id="large_amount",
    category="amount",
    severity=0.7,
    values={"amount": 1.0, "path": ["a", "b"]},
    description="big",
)
RESULT = ScorerResult(
    scorer="anomaly",
    available=False,
    score=0.4,
    model_version="v3",
    reason="stale",
    contributions=(CONTRIBUTION,),
)
DECISION = Decision(
    transaction_id="tx-1",
    tenant="t1",
    score=0.9,
    risk_level=RiskLevel.CRITICAL,
    alert=True,
    decided_at=T0,
    scorers=(RESULT,),
    rule_hits=(HIT,),
    feature_set_version="fs-1",
    rule_config_version=4,
    shadow_scores={"xgboost:v2": 0.3},
    explanation="CRITICAL risk",
)
ALERT = Alert(
    id="a1",
    tenant="t1",
    customer_key="t1|savings:1",
    account_id="savings:1",
    client_id="c1",
    status=AlertStatus.ESCALATED,
    risk_level=RiskLevel.HIGH,
    score=0.8,
    transaction_ids=("tx-1",),
    rule_ids=("large_amount",),
    created_at=T0,
    updated_at=T0,
    sla_due_at=T0 + timedelta(hours=4),
    title="big",
    assignee="ana",
    decision=AnalystDecision.SUSPICIOUS,
    decision_note="checked",
    decided_by="ana",
    decided_at=T0,
    case_id="case-1",
)
EDGE = TransferEdge(src="savings:1", dst="savings:2", amount=1234.56, at=T0, tx_id="tx-1")
CONTEXT = HistoryContext(
    account=[make_tx()],
    counterparty=[make_tx()],
    agent=[make_tx()],
    edges=(EDGE,),
    client=[make_tx(account_id="savings:13")],
)
EVALUATION = RuleEvaluation(score=0.7, hits=(HIT,), config_version=3)
KEY = WindowKey("account", "t1", "savings:1")
ITEM = ShardItem(5, Role.COUNTERPARTY, KEY, FULL_TX)

SAMPLES: list[Any] = [
    FULL_TX,
    CONTRIBUTION,
    HIT,
    RESULT,
    DECISION,
    ALERT,
    EDGE,
    CONTEXT,
    EVALUATION,
    KEY,
    ITEM,
]


def _defaults(field: dataclasses.Field[Any]) -> list[Any]:
    if field.default is not dataclasses.MISSING:
        return [field.default]
    if field.default_factory is not dataclasses.MISSING:
        return [field.default_factory()]
    return []


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_every_field_survives_a_pickle_round_trip(sample: Any, protocol: int) -> None:
    for field in dataclasses.fields(sample):
        assert getattr(sample, field.name) not in _defaults(field), field.name
    back = pickle.loads(pickle.dumps(sample, protocol=protocol))
    assert type(back) is type(sample)
    assert back == sample
    for field in dataclasses.fields(sample):
        value = getattr(back, field.name)
        assert value == getattr(sample, field.name), field.name
        assert type(value) is type(getattr(sample, field.name)), field.name


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
def test_copies_are_equal_and_still_frozen(sample: Any) -> None:
    for clone in (copy.copy(sample), copy.deepcopy(sample)):
        assert clone == sample
        with pytest.raises(dataclasses.FrozenInstanceError):
            clone.__setattr__(dataclasses.fields(sample)[0].name, None)


def test_a_transaction_shared_by_several_contexts_stays_one_object() -> None:
    # Batches of contexts repeat the same history transactions many times: pickle's memo must
    # still send each of them once.
    shared = make_tx()
    contexts = [HistoryContext(account=[shared]), HistoryContext(agent=[shared])]
    once = len(pickle.dumps([shared]))
    twice = len(pickle.dumps(contexts))
    back = pickle.loads(pickle.dumps(contexts))
    assert back == contexts
    assert back[0].account[0] is back[1].agent[0]
    assert twice < 2 * once


def test_window_keys_find_their_windows_after_a_round_trip() -> None:
    windows = {KEY: "window"}
    assert windows[pickle.loads(pickle.dumps(KEY))] == "window"


def test_amount_in_major_units_is_unchanged() -> None:
    assert make_tx(amount_minor=123_456, currency="EUR").amount == 1234.56
    assert make_tx(amount_minor=123_456, currency="xaf").amount == 123_456.0
    assert make_tx(amount_minor=1_234, currency="KWD").amount == 1.234


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_a_packed_list_arrives_as_the_same_plain_list(dumps: Any) -> None:
    shared = make_tx()
    contexts = PackedList([HistoryContext(account=[shared]), HistoryContext(agent=[shared])])
    back = pickle.loads(dumps(PackedList([contexts, PackedList([FULL_TX, DECISION])])))
    assert back == [contexts, [FULL_TX, DECISION]]
    assert type(back) is list and type(back[0]) is list
    assert back[0][0].account[0] is back[0][1].agent[0]
    packed = PackedList([1, 2])
    packed.append(3)  # an ordinary list in-process
    assert packed == [1, 2, 3] and isinstance(packed, list)


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_a_sealed_batch_is_pickled_once_and_passed_on_as_the_bytes_it_came_in(
    dumps: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = make_tx()
    batch = sealed([FULL_TX, other])
    assert sealed(batch) is batch
    received = pickle.loads(dumps(batch))
    assert isinstance(received, SealedBatch) and received == batch
    assert list(received) == [FULL_TX, other]
    # Passing it on does not pickle a transaction again: the same bytes go out.
    calls = 0
    reduce = Transaction.__reduce__

    def counting(self: Transaction, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        return reduce(self)

    monkeypatch.setattr(Transaction, "__reduce_ex__", counting)
    again = dumps(received)
    assert calls == 0
    assert pickle.loads(again) == batch
    assert pickle.loads(dumps(sealed([FULL_TX]))) == (FULL_TX,)
    assert calls == 1
