"""Amount, velocity, timing, transfer and network rules: fire / do not fire at the boundaries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aml.domain import ActorType, Direction, RuleHit, Transaction, TransactionType
from aml.history import build_context
from aml.rules import RuleConfig, RuleEngine, default_rule_config
from aml.rules.catalog import edge_of
from tests.factories import make_tx

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)  # 11:00 in Douala
ENGINE = RuleEngine(default_rule_config())


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def xaf(amount: int) -> int:
    return amount  # XAF has no minor unit


def hits(
    tx: Transaction, history: Sequence[Transaction] = (), config: RuleConfig | None = None
) -> dict[str, RuleHit]:
    edges = [e for o in history if (e := edge_of(o)) is not None]
    ctx = build_context(tx, list(history), edges=edges)
    engine = ENGINE if config is None else RuleEngine(config)
    return {h.rule_id: h for h in engine.evaluate(tx, ctx).hits}


def with_params(**params: Any) -> RuleConfig:
    data = default_rule_config().to_dict()
    data["params"].update(params)
    return RuleConfig.model_validate(data)


def out(src: str, dst: str, amount: int, minutes: float, **kw: Any) -> Transaction:
    """Transfer debited from ``src`` (recorded on the sender's account)."""
    return make_tx(
        type=TransactionType.TRANSFER,
        direction=Direction.OUT,
        account_id=src,
        counterparty_account_id=dst,
        amount_minor=xaf(amount),
        occurred_at=at(minutes),
        **kw,
    )


def into(dst: str, src: str, amount: int, minutes: float, **kw: Any) -> Transaction:
    """Transfer credited to ``dst`` (recorded on the receiver's account)."""
    return make_tx(
        type=TransactionType.TRANSFER,
        direction=Direction.IN,
        account_id=dst,
        counterparty_account_id=src,
        amount_minor=xaf(amount),
        occurred_at=at(minutes),
        **kw,
    )


def deposit(amount: int, minutes: float, account: str = "savings:12", **kw: Any) -> Transaction:
    return make_tx(amount_minor=amount, occurred_at=at(minutes), account_id=account, **kw)


# --- amount --------------------------------------------------------------------------------


def test_large_amount_boundary_and_severity_scaling() -> None:
    assert "large_amount" not in hits(deposit(499_999, 0))
    at_limit = hits(deposit(500_000, 0))["large_amount"]
    assert at_limit.severity == pytest.approx(0.5)
    assert at_limit.values["threshold"] == 500_000
    assert hits(deposit(1_000_000, 0))["large_amount"].severity == 1.0


def test_structuring_band_is_just_below_the_threshold() -> None:
    assert "structuring" not in hits(deposit(449_999, 0))
    h = hits(deposit(450_000, 0))
    assert "structuring" in h and "large_amount" not in h
    assert "structuring" in hits(deposit(499_999, 0))
    assert "structuring" not in hits(deposit(500_000, 0))


def test_round_number_fires_only_when_enabled() -> None:
    tx = deposit(20_000, 0)
    assert "round_number" not in hits(tx)
    data = default_rule_config().to_dict()
    data["rules"] = {"round_number": {"enabled": True}}
    enabled = RuleConfig.model_validate(data)
    assert "round_number" in hits(tx, config=enabled)
    assert "round_number" not in hits(deposit(20_500, 0), config=enabled)


def test_cash_threshold_report_single_and_same_day_aggregate() -> None:
    single = hits(deposit(5_000_000, 0))["cash_threshold_report"]
    assert single.severity <= 0.2
    assert "cash_threshold_report" not in hits(deposit(4_999_999, 0))
    earlier = [deposit(2_000_000, 0), deposit(2_500_000, 30)]
    crossing = deposit(600_000, 60)
    assert hits(crossing, earlier)["cash_threshold_report"].values["day_total"] == 5_100_000
    # Only the crossing transaction reports; the next one the same day does not repeat it.
    after = deposit(100_000, 90)
    assert "cash_threshold_report" not in hits(after, [*earlier, crossing])
    # Transfers are not cash.
    assert "cash_threshold_report" not in hits(out("savings:12", "savings:9", 6_000_000, 0))


def test_cash_aggregate_resets_on_the_local_day() -> None:
    # 22:30 UTC on the 14th is 23:30 local on the 14th; 23:30 UTC is 00:30 local on the 15th.
    yesterday = make_tx(
        amount_minor=4_000_000, occurred_at=datetime(2026, 1, 14, 22, 30, tzinfo=UTC)
    )
    today = make_tx(amount_minor=1_500_000, occurred_at=datetime(2026, 1, 14, 23, 30, tzinfo=UTC))
    assert "cash_threshold_report" not in hits(today, [yesterday])


def test_cash_aggregate_follows_the_local_date_on_a_day_the_clocks_change() -> None:
    """Paris sets its clocks back at 03:00 on 2026-10-25: that day's bounds are not two fixed
    instants, and each movement's local date decides."""
    from datetime import date

    from aml.rules.catalog import _local_day

    assert _local_day(date(2026, 10, 25), "Europe/Paris") is None
    paris = with_params(timezone="Europe/Paris")
    day_before = make_tx(  # 23:30 on the 24th, local
        amount_minor=4_000_000, occurred_at=datetime(2026, 10, 24, 21, 30, tzinfo=UTC)
    )
    early = make_tx(  # 00:30 on the 25th, local (UTC+2 until 03:00)
        amount_minor=2_000_000, occurred_at=datetime(2026, 10, 24, 22, 30, tzinfo=UTC)
    )
    crossing = make_tx(  # 23:00 on the 25th, local (UTC+1 by then)
        amount_minor=3_100_000, occurred_at=datetime(2026, 10, 25, 22, 0, tzinfo=UTC)
    )
    hit = hits(crossing, [day_before, early], config=paris)["cash_threshold_report"]
    assert hit.values["day_total"] == 5_100_000 and hit.values["day"] == "2026-10-25"


def test_high_value_anonymous_payment() -> None:
    anon = make_tx(type=TransactionType.PAYMENT, direction=Direction.OUT, amount_minor=100_000)
    assert "high_value_anonymous_payment" in hits(anon)
    assert "high_value_anonymous_payment" not in hits(anon.replace(amount_minor=99_999))
    named = anon.replace(counterparty_name="Boutique Akwa")
    assert "high_value_anonymous_payment" not in hits(named)


# --- velocity and timing ---------------------------------------------------------------------


def test_rapid_transactions_counts_the_current_transaction_once() -> None:
    prior = [deposit(1_000, i) for i in range(18)]
    assert "rapid_transactions" not in hits(deposit(1_000, 30), prior)  # 19
    h = hits(deposit(1_000, 30), [*prior, deposit(1_000, 20)])  # 20
    assert h["rapid_transactions"].values["count"] == 20
    # Outside the hour they do not count.
    old = [deposit(1_000, i - 120) for i in range(19)]
    assert "rapid_transactions" not in hits(deposit(1_000, 30), old)


def test_high_velocity_volume_does_not_double_count() -> None:
    # Threshold is 3 x 500,000 = 1,500,000 within the hour.
    prior = [deposit(400_000, 0), deposit(400_000, 10), deposit(400_000, 20)]
    assert "high_velocity_volume" not in hits(deposit(299_999, 30), prior)
    h = hits(deposit(300_000, 30), prior)
    assert h["high_velocity_volume"].values["total"] == 1_500_000


def test_mirrored_records_of_one_transfer_count_once() -> None:
    debit = out("savings:9", "savings:12", 800_000, 0)
    credit = into("savings:12", "savings:9", 800_000, 0)
    # 800,000 + 699,999 < 1,500,000 only if the mirrored credit is not counted twice.
    assert "high_velocity_volume" not in hits(deposit(699_999, 10), [debit, credit])


@pytest.mark.parametrize(("local_hour", "fires"), [(1, False), (2, True), (5, True), (6, False)])
def test_unusual_hours_uses_local_time(local_hour: int, fires: bool) -> None:
    tx = make_tx(occurred_at=datetime(2026, 1, 15, (local_hour - 1) % 24, 59, tzinfo=UTC))
    assert ("unusual_hours" in hits(tx)) is fires


def test_unusual_hours_window_can_wrap_midnight() -> None:
    config = with_params(unusual_start_hour=23, unusual_end_hour=4, timezone="UTC")
    assert "unusual_hours" in hits(
        make_tx(occurred_at=datetime(2026, 1, 15, 23, 5, tzinfo=UTC)), config=config
    )
    assert "unusual_hours" in hits(
        make_tx(occurred_at=datetime(2026, 1, 15, 3, 5, tzinfo=UTC)), config=config
    )
    assert "unusual_hours" not in hits(
        make_tx(occurred_at=datetime(2026, 1, 15, 4, 5, tzinfo=UTC)), config=config
    )


# --- transfers -------------------------------------------------------------------------------


def test_new_counterparty_needs_a_baseline_and_uses_the_whole_history() -> None:
    a = "savings:12"
    first = out(a, "savings:1", 10_000, 0)
    assert "new_counterparty" not in hits(first)  # first-ever transfer: no baseline
    history = [out(a, f"savings:{i}", 10_000, -3 * 24 * 60 + i) for i in range(1, 4)]
    h = hits(out(a, "savings:99", 10_000, 0), history)
    assert h["new_counterparty"].values["prior_transfers"] == 3
    # Known from three days ago (beyond the predecessor's 24 h) is not new.
    assert "new_counterparty" not in hits(out(a, "savings:2", 10_000, 0), history)
    # Someone who paid us before is not new either.
    payer = into(a, "savings:77", 5_000, -60)
    assert "new_counterparty" not in hits(out(a, "savings:77", 10_000, 0), [*history, payer])


def test_rapid_pair_transfers_boundary() -> None:
    a, b = "savings:12", "savings:5"
    two = [out(a, b, 1_000, 0)]
    assert "rapid_pair_transfers" not in hits(out(a, b, 1_000, 10), two)
    h = hits(out(a, b, 1_000, 20), [*two, out(a, b, 1_000, 10)])
    assert h["rapid_pair_transfers"].values["count"] == 3
    assert h["rapid_pair_transfers"].severity == pytest.approx(0.5)
    # 25 h ago is outside the window.
    stale = [out(a, b, 1_000, -25 * 60), out(a, b, 1_000, -25 * 60 + 1)]
    assert "rapid_pair_transfers" not in hits(out(a, b, 1_000, 0), stale)


def test_cross_account_structuring_requires_each_amount_below_threshold() -> None:
    c = "savings:500"
    senders = [out(f"savings:{i}", c, 200_000, i) for i in range(1, 3)]
    tx = out("savings:3", c, 200_000, 10)
    h = hits(tx, senders)
    assert h["cross_account_structuring"].values["senders"] == 3
    assert h["cross_account_structuring"].values["total"] == 600_000
    # Two senders only.
    assert "cross_account_structuring" not in hits(tx, senders[:1])
    # The predecessor fired on big payments too; a payment over the threshold is not splitting.
    big = [out(f"savings:{i}", c, 900_000, i) for i in range(1, 3)]
    assert "cross_account_structuring" not in hits(out("savings:3", c, 100_000, 10), big)
    # Together still below the threshold: nothing was split to avoid it.
    small = [out(f"savings:{i}", c, 100_000, i) for i in range(1, 3)]
    assert "cross_account_structuring" not in hits(out("savings:3", c, 100_000, 10), small)


def test_cross_account_structuring_seen_from_the_collector() -> None:
    c = "savings:500"
    credits = [into(c, f"savings:{i}", 200_000, i) for i in range(1, 3)]
    assert "cross_account_structuring" in hits(into(c, "savings:3", 200_000, 10), credits)


def test_circular_transfer_is_direction_aware() -> None:
    a, b = "savings:12", "savings:40"
    sent = out(a, b, 100_000, 0)
    back = out(b, a, 95_000, 60)
    h = hits(back, [sent])
    assert h["circular_transfer"].values["path"] == [a, b, a]
    # Paying the same payee twice is not circular (the predecessor's false positive).
    assert "circular_transfer" not in hits(out(a, b, 100_000, 60), [sent])
    # Outside the 72 h window or the 20 % tolerance.
    assert "circular_transfer" not in hits(out(b, a, 95_000, 73 * 60), [sent])
    assert "circular_transfer" not in hits(out(b, a, 70_000, 60), [sent])


def test_circular_transfer_across_three_accounts() -> None:
    legs = [out("savings:1", "savings:2", 300_000, 0), out("savings:2", "savings:3", 290_000, 30)]
    close = into("savings:1", "savings:3", 285_000, 90)
    assert hits(close, legs)["circular_transfer"].values["hops"] == 3


def test_stacking_chain_of_three_similar_hops_within_thirty_minutes() -> None:
    legs = [out("savings:1", "savings:2", 100_000, 0), out("savings:2", "savings:3", 110_000, 10)]
    third = out("savings:3", "savings:4", 100_000, 20)
    assert hits(third, legs)["stacking"].values["hops"] == 3
    assert "stacking" not in hits(third, legs[1:])
    late = out("savings:3", "savings:4", 100_000, 31)
    assert "stacking" not in hits(late, legs)


def test_fan_in_and_fan_out_boundaries() -> None:
    hub = "savings:12"
    five_in = [into(hub, f"savings:{i}", 1_000, i) for i in range(5)]
    assert "fan_in" not in hits(into(hub, "savings:4", 1_000, 10), five_in)  # repeat sender
    assert hits(into(hub, "savings:50", 1_000, 10), five_in)["fan_in"].values["senders"] == 6
    five_out = [out(hub, f"savings:{i}", 1_000, i) for i in range(5)]
    assert "fan_out" not in hits(out(hub, "savings:1", 1_000, 10), five_out)
    assert hits(out(hub, "savings:51", 1_000, 10), five_out)["fan_out"].values["recipients"] == 6


def test_scatter_gather_one_large_outflow_after_many_senders() -> None:
    hub = "savings:12"
    gathered = [into(hub, f"savings:{i}", 50_000, i * 60) for i in range(8)]
    h = hits(out(hub, "savings:999", 200_000, 10 * 60), gathered)
    assert h["scatter_gather"].values["senders"] == 8
    assert "scatter_gather" not in hits(out(hub, "savings:999", 199_999, 600), gathered)
    assert "scatter_gather" not in hits(out(hub, "savings:999", 400_000, 600), gathered[:7])


def test_bipartite_layering_needs_both_sides() -> None:
    hub = "savings:12"
    sources = [into(hub, f"savings:{i}", 1_000, i) for i in range(5)]
    sinks = [out(hub, f"savings:{100 + i}", 1_000, 10 + i) for i in range(4)]
    assert "bipartite_layering" in hits(out(hub, "savings:200", 1_000, 30), [*sources, *sinks])
    assert "bipartite_layering" not in hits(
        out(hub, "savings:200", 1_000, 30), [*sources[:4], *sinks]
    )


def test_merchant_collection_account() -> None:
    shop = "savings:12"
    pays = [into(shop, f"savings:{i}", 500_000, i * 60) for i in range(5)]
    h = hits(into(shop, "savings:9", 100_000, 600), pays)
    assert h["merchant_collection_account"].values["payers"] == 6
    # Exactly 5 x threshold is not more than it.
    assert "merchant_collection_account" not in hits(
        into(shop, "savings:1", 1, 600), [*pays[:4], into(shop, "savings:4", 499_999, 300)]
    )
    # Any outflow in the week means it is not a pure collection account.
    spent = out(shop, "savings:77", 10_000, 30)
    assert "merchant_collection_account" not in hits(
        into(shop, "savings:9", 100_000, 600), [*pays, spent]
    )


def test_an_ordinary_daytime_transfer_raises_nothing() -> None:
    tx = out("savings:12", "savings:5", 1_000, 0, actor_type=ActorType.MERCHANT)
    assert hits(tx) == {}


def test_rules_sharing_one_pass_over_counterparties_match_their_definitions() -> None:
    """``new_counterparty``, ``scatter_gather`` and ``bipartite_layering`` read the prior
    movements' counterparties from one shared pass; on random histories (both directions,
    movements without a counterparty, two currencies, repeated parties, mirrored legs) they
    fire exactly when, and with exactly the values, their definitions give."""
    import random

    from aml.rules.catalog import RuleInput, _money

    rng = random.Random(11)
    fired = {"new_counterparty": 0, "scatter_gather": 0, "bipartite_layering": 0}
    for case in range(400):
        hub = "savings:12"
        history: list[Transaction] = []
        for _ in range(rng.randrange(0, 40)):
            party = f"savings:{rng.randrange(1, 12)}"
            currency = "XAF" if rng.random() < 0.9 else "EUR"
            amount = rng.randrange(1_000, 90_000)
            minutes = -rng.randrange(1, 7 * 24 * 60)
            kind = rng.random()
            if kind < 0.4:
                history.append(out(hub, party, amount, minutes, currency=currency))
            elif kind < 0.8:
                history.append(into(hub, party, amount, minutes, currency=currency))
                if rng.random() < 0.2:  # the payer's own leg, folded into the same movement
                    history.append(out(party, hub, amount, minutes, currency=currency))
            else:
                history.append(
                    make_tx(
                        type=TransactionType.DEPOSIT,
                        direction=Direction.IN,
                        account_id=hub,
                        amount_minor=amount,
                        currency=currency,
                        occurred_at=at(minutes),
                    )
                )
        party = f"savings:{rng.randrange(1, 15)}"
        amount = rng.randrange(1_000, 400_000)
        tx = out(hub, party, amount, 0) if case % 2 else into(hub, party, amount, 0)
        history.sort(key=lambda t: t.occurred_at)
        ctx = build_context(tx, history)
        engine = RuleEngine(with_params(new_counterparty_min_prior=2, scatter_min_senders=3))
        got = hits(tx, history, engine.config)
        p = engine.config.params
        ri = RuleInput(tx, ctx, p, engine.config.thresholds_for(tx.currency))
        moves, cur = ri.moves, ri.current
        assert cur is not None
        # new_counterparty, as defined: outgoing transfers to a payee never seen before.
        prior_out = [m for m in moves if m.direction is Direction.OUT and m.counterparty]
        known = {m.counterparty for m in moves if m.counterparty}
        expected_new = (
            cur.direction is Direction.OUT
            and len(moves) >= 2
            and len(prior_out) >= 2
            and cur.counterparty not in known
        )
        assert ("new_counterparty" in got) is expected_new, case
        if expected_new:
            values = got["new_counterparty"].values
            assert values["prior_transfers"] == len(prior_out)
            assert values["known_counterparties"] == len(known)
        # scatter_gather: same-currency inflows from distinct senders, then one large outflow.
        inflows = [m for m in moves if m.currency == tx.currency and m.direction is Direction.IN]
        senders = {m.counterparty for m in inflows if m.counterparty}
        gathered = sum([m.amount for m in inflows if m.counterparty])
        expected_scatter = (
            cur.direction is Direction.OUT
            and len(moves) >= 3
            and len(senders) >= 3
            and tx.amount >= p.scatter_outflow_share * gathered
        )
        assert ("scatter_gather" in got) is expected_scatter, case
        if expected_scatter:
            assert got["scatter_gather"].values["senders"] == len(senders)
            assert got["scatter_gather"].values["gathered"] == _money(gathered)
        # bipartite_layering: k sources and k recipients, the current movement included.
        items = [*moves, cur]
        sources = {m.counterparty for m in items if m.direction is Direction.IN and m.counterparty}
        sinks = {m.counterparty for m in items if m.direction is Direction.OUT and m.counterparty}
        k = p.bipartite_min
        expected_bipartite = len(moves) + 1 >= 2 * k and len(sources) >= k and len(sinks) >= k
        assert ("bipartite_layering" in got) is expected_bipartite, case
        if expected_bipartite:
            values = got["bipartite_layering"].values
            assert (values["sources"], values["recipients"]) == (len(sources), len(sinks))
        for rule in fired:
            fired[rule] += rule in got
    assert all(n > 10 for n in fired.values()), fired  # each rule fired on many cases


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("Africa/Douala", "2026-11-30"),
        ("Europe/Paris", "2026-03-29"),  # clocks forward at 02:00
        ("Europe/Paris", "2026-10-25"),  # clocks back at 03:00
        ("America/Sao_Paulo", "2018-11-04"),  # midnight does not exist
        ("America/Sao_Paulo", "2018-11-03"),
        ("America/St_Johns", "2007-11-03"),  # set back at 00:01 to 23:01 of the day before
        ("America/St_Johns", "2007-11-04"),
        ("Pacific/Apia", "2011-12-29"),  # the day before a day that was skipped
        ("Pacific/Apia", "2011-12-31"),
        ("Australia/Lord_Howe", "2026-04-05"),  # half an hour back
    ],
)
def test_a_local_day_as_instants_holds_exactly_the_instants_of_that_date(
    zone: str, day: str
) -> None:
    """The day's bounds, when given, hold an instant exactly when its local date is the day,
    every 7 minutes from a day and a half before to two and a half days after."""
    from datetime import date

    from aml.rules.catalog import _local_date, _local_day

    d = date.fromisoformat(day)
    bounds = _local_day(d, zone)
    if zone == "Africa/Douala":
        assert bounds is not None
    if bounds is None:
        return
    start, end = bounds
    at = start - timedelta(hours=36)
    while at < end + timedelta(hours=60):
        assert (start <= at < end) == (_local_date(at, zone) == d), at
        at += timedelta(minutes=7)
