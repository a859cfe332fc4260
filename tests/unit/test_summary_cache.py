"""``SummaryCache``: an account's history summary kept up to date from its previous call,
always exactly ``summarise`` of the history given (and so the same feature vector)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aml.domain import Direction, Transaction, TransactionType
from aml.features import AccountSummary, FeatureParams, feature_vector, summarise
from aml.history import build_context
from aml.summaries import SummaryCache
from tests.factories import busy_account_record, make_tx, mirror_leg

T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
ACCOUNT = "savings:busy"
PARAMS = FeatureParams()


def _norm(summary: AccountSummary) -> tuple[Any, ...]:
    """The summary with its collections as plain sets and dict (the cache answers counts)."""
    head, sets, countries = summary[:15], summary[15:22], summary[22]
    return (*head, *(frozenset(s) for s in sets), dict(countries))


def _touching(seen: Sequence[Transaction], tx: Transaction, span: timedelta) -> list[Transaction]:
    """Records of ``tx``'s account in ``span`` before it, point-in-time ordered (what
    ``build_context`` gives with a longer look-back)."""
    key = (tx.occurred_at, tx.id)
    return sorted(
        (
            o
            for o in seen
            if ACCOUNT in (o.account_id, o.counterparty_account_id)
            and (o.occurred_at, o.id) < key
            and tx.occurred_at - o.occurred_at <= span
        ),
        key=lambda o: (o.occurred_at, o.id),
    )


def _gap(rng: random.Random) -> timedelta:
    """Mostly minutes apart; now and then hours or days (records leave the 1 h, 24 h and 7 d
    windows, sometimes more than the history's front can drop at once)."""
    roll = rng.random()
    if roll < 0.8:
        return timedelta(seconds=rng.randrange(1, 900))
    if roll < 0.95:
        return timedelta(hours=rng.randrange(1, 30))
    return timedelta(days=rng.randrange(1, 9))


def test_every_answer_equals_summarise_of_the_history_given() -> None:
    """Point-in-time histories of a busy account as serving gives them, one transaction after
    another: windows that move on (by minutes, hours, days), late arrivals (answered before
    records they precede, then inserted among them), mirrored legs, other currencies,
    records of no money, reloaded windows (equal copies) and other accounts in between. Every
    answer is exactly ``summarise``'s, and most are the cache's own."""
    rng = random.Random(29)
    own_answers = passes = 0
    for trial in range(40):
        cache = SummaryCache(min_items=rng.choice([1, 4, 16]), max_items=rng.choice([60, 10_000]))
        wide = trial % 3 == 2
        seen: list[Transaction] = []
        at = T0
        for step in range(150):
            at += _gap(rng)
            o = busy_account_record(rng, at)
            seen.append(o)
            if o.counterparty_account_id and rng.random() < 0.03:
                seen.append(mirror_leg(o, timedelta(minutes=rng.choice([0, 2, 30]))))
            if rng.random() < 0.03:  # a record arriving days late: inserted far back
                seen.append(busy_account_record(rng, at - timedelta(hours=rng.randrange(2, 150))))
            event = rng.random()
            if event < 0.06:  # a late transaction: occurred before records already seen
                tx = make_tx(
                    account_id=ACCOUNT, occurred_at=at - timedelta(minutes=rng.randrange(1, 300))
                )
            else:
                tx = make_tx(
                    account_id=ACCOUNT,
                    type=rng.choice([TransactionType.TRANSFER, TransactionType.DEPOSIT]),
                    direction=rng.choice([Direction.OUT, Direction.IN]),
                    counterparty_account_id=rng.choice([None, "savings:1", "savings:2"]),
                    amount_minor=rng.choice([5_000, 10_000, 77_700]),
                    currency="XAF" if rng.random() < 0.95 else "EUR",
                    occurred_at=at + timedelta(seconds=1),
                    ip_address=rng.choice([None, "10.0.0.1", "10.9.9.9"]),
                    device_id=rng.choice([None, "dev-a", "dev-z"]),
                    country_code=rng.choice([None, "CM", "NG"]),
                )
            history: Sequence[Transaction] = build_context(tx, seen).account
            if wide:  # a superset: records from up to 9 days back, which summarise leaves out
                history = _touching(seen, tx, timedelta(days=9))
            if event > 0.97:  # the window reloaded: equal copies, other objects
                history = [dataclasses.replace(h) for h in history]
            if rng.random() < 0.2:  # another account's call in between
                other = make_tx(account_id="savings:1", occurred_at=at)
                cache.summarise(other, build_context(other, seen).account)
            got = cache.summarise(tx, history)
            assert _norm(got) == _norm(summarise(tx, history)), (trial, step, event)
            seen.append(tx)
        own_answers += cache.extended - cache.passes
        passes += cache.passes
        assert cache.items <= cache.max_items
    # Both kinds of answer were compared (of 6,000 calls).
    assert own_answers > 2_000 and passes > 100


def test_the_feature_vector_is_the_same_with_the_cache() -> None:
    """``feature_vector`` with a cache computes what it computes without one, transaction by
    transaction of a busy account's day."""
    rng = random.Random(5)
    cache = SummaryCache(min_items=1)
    seen: list[Transaction] = []
    at = T0
    for _ in range(400):
        at += timedelta(seconds=rng.randrange(1, 400))
        seen.append(busy_account_record(rng, at, round_amounts=0.0))
        tx = make_tx(account_id=ACCOUNT, amount_minor=rng.randrange(1, 10**6), occurred_at=at)
        ctx = build_context(tx, seen)
        assert feature_vector(tx, ctx, params=PARAMS, summaries=cache) == feature_vector(
            tx, ctx, params=PARAMS
        )
        seen.append(tx)
    assert cache.extended > 300 and cache.passes < 100


def test_a_record_that_may_mirror_one_of_the_accounts_own_is_answered_by_a_pass() -> None:
    """A counterparty-side record with the key of one of the account's own records (both legs of
    one transfer): ``summarise`` counts it once, and so does the cache (by making the pass)."""
    cache = SummaryCache(min_items=1)
    legs = [
        make_tx(
            account_id=ACCOUNT,
            type=TransactionType.TRANSFER,
            direction=Direction.OUT,
            counterparty_account_id="savings:2",
            amount_minor=40_000,
            occurred_at=T0 + timedelta(minutes=i),
        )
        for i in range(3)
    ]
    history = list(legs)
    tx = make_tx(account_id=ACCOUNT, occurred_at=T0 + timedelta(hours=1))
    assert _norm(cache.summarise(tx, history)) == _norm(summarise(tx, history))
    assert cache.passes == 0
    history.insert(1, mirror_leg(legs[0], timedelta(seconds=30)))  # arrives late, in time order
    tx = make_tx(account_id=ACCOUNT, occurred_at=T0 + timedelta(hours=2))
    got = cache.summarise(tx, history)
    assert _norm(got) == _norm(summarise(tx, history))
    assert got[2] == 3  # the mirrored leg is not counted twice
    assert cache.passes == 1
    # Once the mirrored pair has left the history, the cache answers again.
    history = [*history[3:], make_tx(account_id=ACCOUNT, occurred_at=T0 + timedelta(hours=3))]
    tx = make_tx(account_id=ACCOUNT, occurred_at=T0 + timedelta(hours=4))
    assert _norm(cache.summarise(tx, history)) == _norm(summarise(tx, history))
    assert cache.passes == 1 and cache.extended == 2
    # The transaction itself is the other leg of a counterparty-side record.
    incoming = mirror_leg(legs[1])
    history = [*legs[:1], incoming]
    tx = dataclasses.replace(
        mirror_leg(incoming), id="own-leg", occurred_at=incoming.occurred_at + timedelta(minutes=1)
    )
    cache.clear()
    assert _norm(cache.summarise(tx, history)) == _norm(summarise(tx, history))
    assert cache.passes == 2


def test_a_transaction_in_another_currency_is_answered_by_a_pass() -> None:
    cache = SummaryCache(min_items=1)
    history = [make_tx(account_id=ACCOUNT, occurred_at=T0 + timedelta(minutes=i)) for i in range(5)]
    xaf = make_tx(account_id=ACCOUNT, occurred_at=T0 + timedelta(hours=1))
    eur = make_tx(account_id=ACCOUNT, currency="EUR", occurred_at=T0 + timedelta(hours=1))
    assert _norm(cache.summarise(xaf, history)) == _norm(summarise(xaf, history))
    assert _norm(cache.summarise(eur, history)) == _norm(summarise(eur, history))
    assert cache.summarise(eur, history)[5] == 0.0  # no EUR history: nothing summed
    assert cache.passes == 2


def test_a_history_changed_by_its_caller_afterwards_is_not_trusted() -> None:
    """The cache keeps its own list of the history: a caller's list changed in place after the
    call does not make the next answer wrong."""
    cache = SummaryCache(min_items=1)
    history = [
        make_tx(
            account_id=ACCOUNT, amount_minor=1_000 * (i + 1), occurred_at=T0 + timedelta(minutes=i)
        )
        for i in range(4)
    ]
    tx = make_tx(account_id=ACCOUNT, occurred_at=T0 + timedelta(hours=1))
    cache.summarise(tx, history)
    history[2] = make_tx(
        account_id=ACCOUNT, amount_minor=999_000, occurred_at=history[2].occurred_at
    )
    assert _norm(cache.summarise(tx, history)) == _norm(summarise(tx, history))


def test_short_histories_and_the_bounds() -> None:
    """Histories under ``min_items`` are summarised directly and not kept; the accounts and
    records kept stay within the bounds; a full cache takes a newcomer in only in place of a
    history idle for ``idle_calls`` calls (least recently used first), and answers it by a pass
    otherwise; a kept history that grows past the bound pushes the least recently used out."""

    def call(cache: SummaryCache, account: str, n: int) -> None:
        history = [
            make_tx(account_id=account, occurred_at=T0 + timedelta(seconds=i)) for i in range(n)
        ]
        tx = make_tx(account_id=account, occurred_at=T0 + timedelta(hours=1))
        assert _norm(cache.summarise(tx, history)) == _norm(summarise(tx, history))

    cache = SummaryCache(min_items=3, max_accounts=2, max_items=100, idle_calls=3)
    call(cache, ACCOUNT, 2)
    assert len(cache) == 0
    call(cache, "savings:a", 10)
    call(cache, "savings:b", 11)
    call(cache, "savings:c", 12)  # full, and a and b were used within the last 3 calls
    assert sorted(a for _, a in cache._last) == ["savings:a", "savings:b"]
    assert cache.declined == 1
    call(cache, "savings:b", 11)
    call(cache, "savings:b", 11)
    call(cache, "savings:c", 12)  # a has been idle for 4 calls: c takes its place
    assert sorted(a for _, a in cache._last) == ["savings:b", "savings:c"]
    assert cache.items == 11 + 12
    call(cache, "savings:d", 101)  # larger than the whole cache: never kept
    assert cache.declined == 2 and len(cache) == 2
    cache.idle_calls = 0
    call(cache, "savings:d", 90)  # room is made for it
    assert [a for _, a in cache._last] == ["savings:d"] and cache.items == 90


def test_a_full_cache_does_not_build_histories_again_in_turn() -> None:
    """More busy accounts than fit, each scored in turn: the ones kept stay kept and answer
    from their windows; the others are summarised by a pass (none is built again and again)."""
    cache = SummaryCache(min_items=1, max_items=100, idle_calls=1_000)
    histories: dict[str, list[Transaction]] = {f"savings:{i}": [] for i in range(6)}
    at = T0
    for _ in range(30):
        for account, history in histories.items():
            at += timedelta(seconds=1)
            history.append(make_tx(account_id=account, occurred_at=at))
            tx = make_tx(account_id=account, occurred_at=at + timedelta(milliseconds=1))
            assert _norm(cache.summarise(tx, history)) == _norm(summarise(tx, history))
    kept = len(cache)
    assert 0 < kept < 6
    # Every call of a kept account after its first continued its history.
    assert cache.extended >= kept * 29 - 6
