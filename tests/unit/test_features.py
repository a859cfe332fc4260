"""Row-path features: every feature's meaning, neutral values, windows and time-zone hours."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aml.domain import (
    ActorType,
    Direction,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from aml.features import (
    FEATURE_NAMES,
    FEATURE_SET_VERSION,
    FEATURES,
    MINUTES_CAP,
    RATIO_CAP,
    FeatureParams,
    compute_features,
    feature_vector,
)
from aml.history import HistoryContext, build_context
from aml.settings import Settings
from tests.factories import make_tx

PARAMS = FeatureParams()
# Thursday 2026-01-15 10:00 UTC = 11:00 in Douala (UTC+1, no DST).
T = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
ACCT = "savings:12"


def at(minutes_before: float) -> datetime:
    return T - timedelta(minutes=minutes_before)


def feats(
    tx: Transaction, history: list[Transaction], params: FeatureParams = PARAMS
) -> dict[str, float]:
    return compute_features(tx, build_context(tx, [*history, tx]), params=params)


def tx_(**kw: Any) -> Transaction:
    kw.setdefault("occurred_at", T)
    return make_tx(**kw)


def test_registry_names_unique_and_versioned() -> None:
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == len(FEATURES) == 47
    assert re.fullmatch(r"fs-[0-9a-f]{8}", FEATURE_SET_VERSION)
    assert all(spec.description and spec.version >= 1 for spec in FEATURES)


def test_values_follow_registry_order_and_vector_matches() -> None:
    tx = tx_()
    values = feats(tx, [])
    assert tuple(values) == FEATURE_NAMES
    assert feature_vector(tx, HistoryContext(), params=PARAMS) == list(values.values())


def test_empty_history_uses_documented_neutral_values() -> None:
    tx = tx_(amount_minor=50_000, kyc_level=None, ip_address="1.2.3.4", device_id="d1")
    v = compute_features(tx, HistoryContext(), params=PARAMS)
    assert all(math.isfinite(x) for x in v.values())
    for name in (
        "tx_count_1h",
        "tx_count_24h",
        "tx_count_7d",
        "total_amount_24h",
        "avg_amount_24h",
        "max_amount_7d",
        "unique_counterparties_7d",
        "same_type_ratio_24h",
        "receiver_diversity_7d",
        "inflow_24h",
        "outflow_24h",
        "net_flow_24h",
        "unique_senders_7d",
        "has_loan_disbursement_7d",
    ):
        assert v[name] == 0.0, name
    for name in ("is_new_ip_for_account", "is_new_device", "geo_distance_from_usual"):
        assert v[name] == 0.5, name
    assert v["kyc_level_norm"] == 0.5
    assert v["is_new_kyc"] == 0.5
    assert v["tx_velocity_trend"] == 1.0
    assert v["minutes_since_last_tx"] == MINUTES_CAP == 7 * 24 * 60
    assert v["minutes_since_loan_disbursement"] == MINUTES_CAP
    # 50,000 XAF against the 10,000 XAF population floor.
    assert v["amount_vs_avg_ratio"] == v["amount_vs_7d_avg_ratio"] == v["amount_vs_max_7d"] == 5.0


def test_transaction_level_features() -> None:
    tx = tx_(type=TransactionType.WITHDRAWAL, direction=Direction.OUT, amount_minor=25_000)
    v = feats(tx, [])
    assert v["amount"] == 25_000.0
    assert v["amount_log"] == pytest.approx(math.log1p(25_000))
    assert (v["is_deposit"], v["is_withdrawal"], v["is_transfer"]) == (0.0, 1.0, 0.0)
    assert v["is_incoming"] == 0.0
    assert feats(tx_(type=TransactionType.RECURRING_DEPOSIT), [])["is_deposit"] == 1.0
    assert feats(tx_(type=TransactionType.TRANSFER), [])["is_transfer"] == 1.0
    assert feats(tx_(direction=Direction.IN), [])["is_incoming"] == 1.0


@pytest.mark.parametrize(
    ("currency", "minor", "hundred", "thousand"),
    [
        ("XAF", 5_000, 1.0, 1.0),
        ("XAF", 5_100, 1.0, 0.0),
        ("XAF", 5_150, 0.0, 0.0),
        ("XAF", 0, 0.0, 0.0),
        ("EUR", 10_000, 1.0, 0.0),  # 100.00 EUR
        ("EUR", 100_000, 1.0, 1.0),  # 1,000.00 EUR
        ("EUR", 10_050, 0.0, 0.0),  # 100.50 EUR
    ],
)
def test_round_amounts_respect_currency_exponent(
    currency: str, minor: int, hundred: float, thousand: float
) -> None:
    v = feats(tx_(currency=currency, amount_minor=minor), [])
    assert (v["is_round_hundred"], v["is_round_thousand"]) == (hundred, thousand)


def test_hours_and_weekday_are_local_not_utc() -> None:
    # Friday 23:30 UTC is Saturday 00:30 in Douala.
    tx = tx_(occurred_at=datetime(2026, 1, 16, 23, 30, tzinfo=UTC))
    local = feats(tx, [])
    assert local["day_of_week"] == 5.0
    assert local["is_weekend"] == 1.0
    assert local["is_night"] == 1.0
    assert local["hour_sin"] == pytest.approx(math.sin(2 * math.pi * 0.5 / 24))
    assert local["hour_cos"] == pytest.approx(math.cos(2 * math.pi * 0.5 / 24))

    utc = feats(tx, [], FeatureParams(timezone="UTC"))
    assert utc["day_of_week"] == 4.0
    assert utc["is_weekend"] == 0.0
    assert utc["hour_sin"] == pytest.approx(math.sin(2 * math.pi * 23.5 / 24))


def test_night_window_edges_in_local_time() -> None:
    # 05:30 UTC = 06:30 Douala: night is over locally (window 22:00-06:00) though not in UTC.
    early = tx_(occurred_at=datetime(2026, 1, 15, 5, 30, tzinfo=UTC))
    assert feats(early, [])["is_night"] == 0.0
    assert feats(early, [], FeatureParams(timezone="UTC"))["is_night"] == 1.0
    # 20:59 UTC = 21:59 local: still day; 21:00 UTC = 22:00 local: night starts.
    assert feats(tx_(occurred_at=datetime(2026, 1, 15, 20, 59, tzinfo=UTC)), [])["is_night"] == 0
    assert feats(tx_(occurred_at=datetime(2026, 1, 15, 21, 0, tzinfo=UTC)), [])["is_night"] == 1
    # A non-wrapping window (01:00-05:00).
    custom = FeatureParams(night_start_hour=1, night_end_hour=5)
    assert (
        feats(tx_(occurred_at=datetime(2026, 1, 15, 0, 30, tzinfo=UTC)), [], custom)["is_night"]
        == 1.0
    )
    assert (
        feats(tx_(occurred_at=datetime(2026, 1, 15, 23, 30, tzinfo=UTC)), [], custom)["is_night"]
        == 0.0
    )


def test_counts_exclude_the_transaction_itself_and_later_ones() -> None:
    history = [tx_(occurred_at=at(m), amount_minor=1_000) for m in (5, 30, 59)]
    tx = tx_(amount_minor=9_000)
    later = tx_(occurred_at=T + timedelta(seconds=1), amount_minor=1_000_000)
    v = feats(tx, [*history, later])
    assert v["tx_count_1h"] == 3.0
    assert v["tx_count_24h"] == 3.0
    assert v["total_amount_1h"] == 3_000.0
    assert v["max_amount_24h"] == 1_000.0


def test_window_boundaries_are_inclusive_of_the_start() -> None:
    history = [
        tx_(occurred_at=at(60)),  # exactly 1 h before: in the 1 h window
        tx_(occurred_at=at(60) - timedelta(seconds=1)),
        tx_(occurred_at=T - timedelta(hours=24)),  # exactly 24 h
        tx_(occurred_at=T - timedelta(hours=24, seconds=1)),
        tx_(occurred_at=T - timedelta(days=7)),  # exactly 7 d
        tx_(occurred_at=T - timedelta(days=7, seconds=1)),  # outside every window
    ]
    v = feats(tx_(), history)
    assert (v["tx_count_1h"], v["tx_count_24h"], v["tx_count_7d"]) == (1.0, 3.0, 5.0)


def test_aggregates_and_ratios_over_24h_and_7d() -> None:
    history = [
        tx_(occurred_at=at(10), amount_minor=20_000),
        tx_(occurred_at=at(120), amount_minor=40_000, type=TransactionType.WITHDRAWAL),
        tx_(occurred_at=T - timedelta(days=3), amount_minor=300_000),
    ]
    tx = tx_(amount_minor=600_000)
    v = feats(tx, history)
    assert v["total_amount_24h"] == 60_000.0
    assert v["avg_amount_24h"] == 30_000.0
    assert v["max_amount_24h"] == 40_000.0
    assert v["amount_vs_avg_ratio"] == 20.0
    assert v["same_type_ratio_24h"] == 0.5
    assert v["total_amount_7d"] == 360_000.0
    assert v["avg_amount_7d"] == 120_000.0
    assert v["max_amount_7d"] == 300_000.0
    assert v["amount_vs_7d_avg_ratio"] == 5.0
    assert v["amount_vs_max_7d"] == 2.0
    assert v["tx_velocity_trend"] == pytest.approx(2 / (3 / 7))
    assert v["minutes_since_last_tx"] == 10.0


def test_ratio_floor_is_per_currency_and_capped() -> None:
    small_history = [tx_(occurred_at=at(5), amount_minor=100)]  # 100 XAF, below the floor
    v = feats(tx_(amount_minor=30_000), small_history)
    assert v["amount_vs_avg_ratio"] == 3.0  # 30,000 / 10,000 floor, not / 100
    eur = feats(tx_(currency="EUR", amount_minor=30_000), [])  # 300 EUR vs 15 EUR floor
    assert eur["amount_vs_avg_ratio"] == 20.0
    huge = feats(tx_(amount_minor=10**9), [])
    assert huge["amount_vs_avg_ratio"] == RATIO_CAP
    custom = FeatureParams(amount_floors={"XAF": 1_000.0})
    assert feats(tx_(amount_minor=30_000), [], custom)["amount_vs_avg_ratio"] == 30.0
    assert FeatureParams().amount_floor("zzz") == FeatureParams().default_amount_floor


def test_other_currency_is_counted_but_not_summed() -> None:
    history = [
        tx_(occurred_at=at(5), amount_minor=10_000),
        tx_(occurred_at=at(6), amount_minor=999_999, currency="EUR"),
    ]
    v = feats(tx_(), history)
    assert v["tx_count_24h"] == 2.0
    assert v["total_amount_24h"] == 10_000.0
    assert v["avg_amount_24h"] == 10_000.0


def test_rejected_attempts_and_corrections_are_not_history() -> None:
    history = [
        tx_(occurred_at=at(5), status=TransactionStatus.REJECTED),
        tx_(occurred_at=at(6), status=TransactionStatus.CORRECTION),
        tx_(occurred_at=at(7), type=TransactionType.REVERSAL),
        tx_(occurred_at=at(8), status=TransactionStatus.SCORED),
    ]
    assert feats(tx_(), history)["tx_count_1h"] == 1.0


def test_new_ip_and_device_are_meaningful() -> None:
    history = [
        tx_(occurred_at=at(30), ip_address="10.0.0.1", device_id="phone-a"),
        tx_(occurred_at=T - timedelta(days=3), ip_address="10.0.0.2", device_id="phone-b"),
    ]
    known = feats(tx_(ip_address="10.0.0.2", device_id="phone-a"), history)
    assert (known["is_new_ip_for_account"], known["is_new_device"]) == (0.0, 0.0)
    new = feats(tx_(ip_address="10.9.9.9", device_id="phone-z"), history)
    assert (new["is_new_ip_for_account"], new["is_new_device"]) == (1.0, 1.0)
    assert new["unique_ips_24h"] == 1.0
    missing = feats(tx_(ip_address=None, device_id=None), history)
    assert (missing["is_new_ip_for_account"], missing["is_new_device"]) == (0.5, 0.5)
    no_known = feats(tx_(ip_address="10.0.0.1"), [tx_(occurred_at=at(5))])
    assert no_known["is_new_ip_for_account"] == 0.5


def test_counterparty_side_records_do_not_lend_their_ip_device_or_country() -> None:
    incoming = tx_(
        occurred_at=at(30),
        account_id="savings:99",
        counterparty_account_id=ACCT,
        type=TransactionType.TRANSFER,
        direction=Direction.OUT,
        ip_address="10.0.0.1",
        device_id="their-phone",
        country_code="NG",
    )
    v = feats(tx_(ip_address="10.0.0.1", device_id="their-phone", country_code="CM"), [incoming])
    assert v["tx_count_24h"] == 1.0
    assert v["is_new_ip_for_account"] == 0.5
    assert v["is_new_device"] == 0.5
    assert v["geo_distance_from_usual"] == 0.5


def test_geo_distance_from_modal_country() -> None:
    history = [tx_(occurred_at=at(m), country_code="CM") for m in (10, 20, 30)]
    history.append(tx_(occurred_at=at(40), country_code="NG"))
    assert feats(tx_(country_code="CM"), history)["geo_distance_from_usual"] == 0.0
    assert feats(tx_(country_code="NG"), history)["geo_distance_from_usual"] == 1.0
    assert feats(tx_(country_code=None), history)["geo_distance_from_usual"] == 0.5


def test_loan_disbursement_presence_and_minutes_since() -> None:
    disbursement = tx_(
        occurred_at=T - timedelta(hours=2),
        account_id="loan:21",
        counterparty_account_id=ACCT,
        type=TransactionType.LOAN_DISBURSEMENT,
        direction=Direction.OUT,
        amount_minor=500_000,
    )
    v = feats(tx_(type=TransactionType.WITHDRAWAL, direction=Direction.OUT), [disbursement])
    assert v["has_loan_disbursement_7d"] == 1.0
    assert v["minutes_since_loan_disbursement"] == 120.0
    assert v["inflow_24h"] == 500_000.0
    old = disbursement.replace(occurred_at=T - timedelta(days=8))
    v_old = feats(tx_(), [old])
    assert v_old["has_loan_disbursement_7d"] == 0.0
    assert v_old["minutes_since_loan_disbursement"] == MINUTES_CAP


def test_direction_aware_flows_and_counterparties() -> None:
    def transfer(minutes: float, src: str, dst: str, minor: int) -> Transaction:
        return tx_(
            occurred_at=at(minutes),
            account_id=src,
            counterparty_account_id=dst,
            type=TransactionType.TRANSFER,
            direction=Direction.OUT,
            amount_minor=minor,
        )

    history = [
        transfer(10, "savings:1", ACCT, 100_000),  # in, recorded by the sender
        transfer(20, "savings:2", ACCT, 50_000),  # in
        transfer(30, ACCT, "savings:3", 30_000),  # out, own record
        tx_(
            occurred_at=at(40),
            counterparty_account_id="savings:1",
            type=TransactionType.TRANSFER,
            direction=Direction.IN,
            amount_minor=70_000,
        ),  # in, own record
        transfer(60 * 48, ACCT, "savings:4", 1_000),  # out, outside 24 h but within 7 d
    ]
    v = feats(tx_(type=TransactionType.TRANSFER, direction=Direction.OUT), history)
    assert v["inflow_24h"] == 220_000.0
    assert v["outflow_24h"] == 30_000.0
    assert v["net_flow_24h"] == 190_000.0
    assert v["unique_senders_7d"] == 2.0
    assert v["unique_receivers_7d"] == 2.0
    assert v["unique_counterparties_24h"] == 3.0
    assert v["unique_counterparties_7d"] == 4.0
    assert v["receiver_diversity_7d"] == 4 / 5


def test_mirrored_transfer_legs_count_once() -> None:
    # The same 40,000 transfer recorded on both accounts (sender's OUT and our IN leg).
    theirs = tx_(
        occurred_at=at(31),
        account_id="savings:5",
        counterparty_account_id=ACCT,
        type=TransactionType.TRANSFER,
        direction=Direction.OUT,
        amount_minor=40_000,
    )
    ours = tx_(
        occurred_at=at(30),
        counterparty_account_id="savings:5",
        type=TransactionType.TRANSFER,
        direction=Direction.IN,
        amount_minor=40_000,
    )
    v = feats(tx_(), [theirs, ours])
    assert v["tx_count_24h"] == 1.0
    assert v["inflow_24h"] == 40_000.0
    # The sender's leg alone (our leg not yet received) is still seen.
    assert feats(tx_(), [theirs])["inflow_24h"] == 40_000.0
    # A sender leg that mirrors the transaction being scored is not its own history.
    current = ours.replace(id="current", occurred_at=T)
    assert feats(current, [theirs.replace(occurred_at=at(1))])["tx_count_24h"] == 0.0
    # Two real transfers of the same amount, only one of which we recorded: both count.
    again = theirs.replace(id="second-transfer", occurred_at=at(29))
    v2 = feats(tx_(), [theirs, ours, again])
    assert v2["tx_count_24h"] == 2.0
    assert v2["inflow_24h"] == 80_000.0


def test_actor_features() -> None:
    agent = feats(tx_(actor_type=ActorType.AGENT, kyc_level=1), [])
    assert (agent["is_agent"], agent["is_merchant"]) == (1.0, 0.0)
    assert agent["kyc_level_norm"] == 0.25
    assert agent["is_new_kyc"] == 1.0
    merchant = feats(tx_(actor_type=ActorType.MERCHANT, kyc_level=4), [])
    assert (merchant["is_agent"], merchant["is_merchant"]) == (0.0, 1.0)
    assert merchant["kyc_level_norm"] == 1.0
    assert merchant["is_new_kyc"] == 0.0
    assert feats(tx_(kyc_level=9), [])["kyc_level_norm"] == 1.0


def test_history_of_other_tenants_is_ignored() -> None:
    other = tx_(occurred_at=at(5), tenant="other-bank")
    assert feats(tx_(), [other])["tx_count_1h"] == 0.0


def test_params_validation_and_settings() -> None:
    with pytest.raises(ValueError, match="time zone"):
        FeatureParams(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="night"):
        FeatureParams(night_start_hour=24)
    with pytest.raises(ValueError, match="floor"):
        FeatureParams(amount_floors={"XAF": 0.0})
    params = FeatureParams.from_settings(Settings(timezone="Africa/Lagos"), night_end_hour=5)
    assert (params.timezone, params.night_end_hour) == ("Africa/Lagos", 5)


def test_simultaneous_transactions_are_ordered_by_id() -> None:
    first = tx_(id="a-first", amount_minor=1_000)
    second = tx_(id="b-second", amount_minor=2_000)
    assert feats(second, [first])["tx_count_1h"] == 1.0
    assert feats(second, [first])["minutes_since_last_tx"] == 0.0
    assert feats(first, [second])["tx_count_1h"] == 0.0
