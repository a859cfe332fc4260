"""``MovementCache``: an account's movements extended from its previous call, always equal to
``movements`` of the history given."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from aml.domain import Direction, Transaction, TransactionType
from aml.history import build_context
from aml.rules import RuleEngine, default_rule_config
from aml.rules.catalog import Movement, MovementCache, movements
from tests.factories import busy_account_record, make_tx, mirror_leg

T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
ACCOUNT = "savings:busy"


def _shape(moves: Sequence[Movement]) -> list[tuple[object, ...]]:
    """Every field, and the transaction by identity (equal copies are not the same answer)."""
    return [(*m[:5], id(m.tx)) for m in moves]


def _moves(
    cache: MovementCache, account: str, txs: Sequence[Transaction], **where: str
) -> list[Movement]:
    """The cache's movements (its tally aside)."""
    return cache.tallied(account, txs, **where)[0]


def test_every_answer_equals_movements_of_the_history_given() -> None:
    """A window that moves on (records appended, the oldest dropped) is extended; late arrivals,
    copies, mirrored legs, a reloaded window and other accounts' calls in between are built
    anew or extended correctly; the answer always equals ``movements`` of what was given."""
    rng = random.Random(13)
    for trial in range(60):
        cache = MovementCache(min_items=rng.choice([1, 4, 16]))
        stream: list[Transaction] = []
        at = T0
        start = 0
        for step in range(80):
            for _ in range(rng.choice([1, 1, 1, 2, 5])):
                at += timedelta(seconds=rng.randrange(1, 600))
                o = busy_account_record(rng, at, round_amounts=0.75)
                stream.append(o)
                if o.counterparty_account_id and rng.random() < 0.05:
                    stream.append(mirror_leg(o))  # both legs reach the product: folded
            start += rng.choice([0, 0, 0, 1, 2, 3])  # the window's start moves on
            start = min(start, len(stream) - 1)
            history: list[Transaction] = stream[start:]
            event = rng.random()
            if event < 0.05 and len(history) > 3:  # a late arrival inside the window
                late = make_tx(account_id=ACCOUNT, occurred_at=history[1].occurred_at)
                history = [history[0], late, *history[1:]]
            elif event < 0.08:  # the window reloaded: equal copies, other objects
                history = [dataclasses.replace(o) for o in history]
            elif event < 0.1 and history:  # a redelivered record: a copy next to it
                j = rng.randrange(len(history))
                history = [*history[: j + 1], dataclasses.replace(history[j]), *history[j + 1 :]]
            if rng.random() < 0.2:  # another account's call in between
                _moves(cache, "savings:1", stream[-20:])
            view = "counterparty" if rng.random() < 0.2 else "account"
            got = _moves(cache, ACCOUNT, history, view=view)
            want = movements(ACCOUNT, history)
            assert _shape(got) == _shape(want), (trial, step, event)
        assert cache.extended > 0


def test_answers_are_the_callers_own_lists() -> None:
    """Changing an answer (built anew or extended) changes neither the cache nor the next
    answer."""
    cache = MovementCache(min_items=1)
    history = [make_tx(account_id=ACCOUNT, occurred_at=T0 + timedelta(minutes=i)) for i in range(5)]
    for extra in range(3):
        answer = _moves(cache, ACCOUNT, history)
        assert _shape(answer) == _shape(movements(ACCOUNT, history))
        answer.clear()
        history.append(make_tx(account_id=ACCOUNT, occurred_at=T0 + timedelta(hours=1 + extra)))
    assert cache.extended == 2


def test_a_history_given_as_a_list_and_changed_afterwards_is_not_trusted() -> None:
    """The cache keeps its own copy of a history (built anew or extended): a caller's list
    changed in place after the call does not make the next answer wrong."""
    cache = MovementCache(min_items=1)
    history = [make_tx(account_id=ACCOUNT, occurred_at=T0 + timedelta(minutes=i)) for i in range(4)]
    for step in range(3):
        _moves(cache, ACCOUNT, history)
        if step == 1:
            history.append(make_tx(account_id=ACCOUNT, occurred_at=T0 + timedelta(hours=1)))
        history[2] = make_tx(
            account_id=ACCOUNT, amount_minor=77_700 + step, occurred_at=history[2].occurred_at
        )
        got = _moves(cache, ACCOUNT, history)
        assert _shape(got) == _shape(movements(ACCOUNT, history))


def test_short_histories_are_not_kept_and_the_bounds_hold() -> None:
    cache = MovementCache(min_items=3, max_accounts=2, max_items=10)
    short = [make_tx(account_id="savings:a", occurred_at=T0)]
    _moves(cache, "savings:a", short)
    assert len(cache) == 0
    for name in ("b", "c", "d"):
        txs = [
            make_tx(account_id=f"savings:{name}", occurred_at=T0 + timedelta(minutes=i))
            for i in range(4)
        ]
        _moves(cache, f"savings:{name}", txs)
    assert len(cache) == 2 and cache.items == 8  # the least recently used account went
    big = [make_tx(account_id="savings:e", occurred_at=T0 + timedelta(minutes=i)) for i in range(9)]
    _moves(cache, "savings:e", big)
    assert cache.items <= 10 and len(cache) == 1


def test_the_engine_decides_a_busy_account_the_same_with_its_cache() -> None:
    """A busy account's stream scored transaction after transaction by one engine (its cache
    extending each history) gets the evaluations of an engine given every history afresh."""
    rng = random.Random(5)
    stream: list[Transaction] = []
    at = T0
    for _ in range(300):
        at += timedelta(seconds=rng.randrange(30, 900))
        stream.append(busy_account_record(rng, at, round_amounts=0.75))
    cached = RuleEngine(default_rule_config())
    hits = 0
    for i, tx in enumerate(stream):
        ctx = build_context(tx, stream[max(0, i - 250) : i])
        want = RuleEngine(default_rule_config()).evaluate(tx, ctx)
        got = cached.evaluate(tx, ctx)
        assert got == want
        hits += len(got.hits)
    assert hits > 0
    assert cached.movement_cache.extended > 100  # the stream did go through the cache


def _transfer(minutes: int, **fields: object) -> Transaction:
    return make_tx(
        account_id=ACCOUNT,
        type=TransactionType.TRANSFER,
        direction=Direction.OUT,
        counterparty_account_id="savings:2",
        occurred_at=T0 + timedelta(minutes=minutes),
        **fields,
    )


def test_a_record_equal_to_one_dropped_from_the_front_counts_again() -> None:
    """The dropped record's key leaves the fold: a copy of it later in the history is a
    movement of its own (it is not folded into a record that is no longer there)."""
    cache = MovementCache(min_items=1)
    x, a, b = _transfer(0), _transfer(1), _transfer(2)
    _moves(cache, ACCOUNT, [x, a, b])
    again = dataclasses.replace(x)
    got = _moves(cache, ACCOUNT, [a, b, again])
    assert cache.extended == 1
    assert _shape(got) == _shape(movements(ACCOUNT, [a, b, again]))
    assert len(got) == 3


def test_a_history_that_folds_is_built_anew_after_its_front_moves() -> None:
    """Two legs of one transfer fold into one movement; once the first leg leaves the window,
    the second is the movement (an account whose history folded is not extended)."""
    cache = MovementCache(min_items=1)
    leg = _transfer(0)
    other_leg = mirror_leg(leg)
    a, b = _transfer(1), _transfer(2)
    first = _moves(cache, ACCOUNT, [leg, other_leg, a])
    assert len(first) == 2
    got = _moves(cache, ACCOUNT, [other_leg, a, b])
    assert _shape(got) == _shape(movements(ACCOUNT, [other_leg, a, b]))
    assert len(got) == 3 and got[0].tx is other_leg


def test_a_late_arrival_or_an_earlier_batch_takes_back_only_the_records_after_it() -> None:
    """A record arriving late lands among the latest ones; a batch scored after a later one
    sees a shorter history: both reuse what they share with the previous history."""
    cache = MovementCache(min_items=1)
    records = [_transfer(i, amount_minor=1_000 + i) for i in range(30)]
    _moves(cache, ACCOUNT, records[:20])
    late = _transfer(17, amount_minor=55_500)  # occurred before records[18]
    with_late = [*records[:18], late, *records[18:25]]
    got = _moves(cache, ACCOUNT, with_late)
    assert _shape(got) == _shape(movements(ACCOUNT, with_late))
    earlier = records[:12]  # the batch before, scored after this one
    got = _moves(cache, ACCOUNT, earlier)
    assert _shape(got) == _shape(movements(ACCOUNT, earlier))
    got = _moves(cache, ACCOUNT, records[2:30])  # and on again, the window moved
    assert _shape(got) == _shape(movements(ACCOUNT, records[2:30]))
    assert cache.extended == 3


def test_two_tenants_with_the_same_account_number_keep_their_own_histories() -> None:
    """Banks on one deployment number their accounts alike: scored in turn, each tenant's
    account extends its own previous history instead of replacing the other's."""
    cache = MovementCache(min_items=1)
    ours = [
        make_tx(tenant="a", account_id=ACCOUNT, occurred_at=T0 + timedelta(minutes=i))
        for i in range(40)
    ]
    theirs = [
        make_tx(tenant="b", account_id=ACCOUNT, occurred_at=T0 + timedelta(minutes=i))
        for i in range(40)
    ]
    for end in range(10, 40, 5):
        for tenant, records in (("a", ours), ("b", theirs)):
            got = _moves(cache, ACCOUNT, records[:end], tenant=tenant)
            assert _shape(got) == _shape(movements(ACCOUNT, records[:end]))
    assert cache.extended == 10 and len(cache) == 2


def test_what_the_rules_count_from_the_tally_equals_what_they_count_from_the_movements() -> None:
    """Scored in turn, a busy account's rule input reads its counterparties, same-currency
    movements, time windows and disbursement flag from the cache's tally; each equals what the
    input counts from the movements without a cache, whatever came and went (moving window,
    late arrivals out of time order, loan disbursements, mirror legs, other currencies)."""
    from aml.history import HistoryContext
    from aml.rules.catalog import RuleInput

    config = default_rule_config()
    rng = random.Random(21)
    cache = MovementCache(min_items=8)
    stream: list[Transaction] = []
    at = T0
    start = 0
    tallied = 0
    for step in range(400):
        at += timedelta(seconds=rng.randrange(60, 3600))
        o = busy_account_record(rng, at, round_amounts=0.75)
        if rng.random() < 0.05:
            o = make_tx(account_id=ACCOUNT, type=TransactionType.LOAN_DISBURSEMENT, occurred_at=at)
        stream.append(o)
        if o.counterparty_account_id and rng.random() < 0.03:
            stream.append(mirror_leg(o))
        start = min(start + rng.choice([0, 0, 1, 2]), len(stream) - 1)
        window = stream[start:]
        if rng.random() < 0.1 and len(window) > 4:  # late: out of time order
            window = [
                *window[:-2],
                make_tx(account_id=ACCOUNT, occurred_at=window[-4].occurred_at),
                *window[-2:],
            ]
        tx = make_tx(
            account_id=ACCOUNT,
            occurred_at=at + timedelta(seconds=1),
            currency=rng.choice(["XAF", "XAF", "EUR"]),
        )
        ctx = HistoryContext(account=window)
        th = config.thresholds_for(tx.currency)
        cached = RuleInput(tx, ctx, config.params, th, cache)
        plain = RuleInput(tx, ctx, config.params, th)
        tallied += cached.tally is not None
        assert _shape(cached.moves) == _shape(plain.moves)
        assert cached.disbursed == plain.disbursed
        assert cached.parties() == plain.parties()
        assert _shape(cached.same_currency(cached.moves)) == _shape(
            plain.same_currency(plain.moves)
        )
        for hours in (1, 24, 24 * 7):
            span = timedelta(hours=hours)
            assert _shape(cached.since(span)) == _shape(plain.since(span)), (step, hours)
    assert tallied > 100


def test_a_history_out_of_time_order_is_never_cut_by_time_as_if_sorted() -> None:
    """The time windows cut a kept history by bisection only when its movements are in time
    order; a history kept out of order is filtered record by record."""
    from aml.history import HistoryContext
    from aml.rules.catalog import RuleInput

    config = default_rule_config()
    records = [_transfer(i * 30) for i in range(12)]
    shuffled = [*records[6:11], *records[:6]]  # the last hours first
    cache = MovementCache(min_items=1)
    span = timedelta(hours=3)
    for history in (shuffled, [*shuffled, records[11]]):  # built, then extended and tallied
        tx = _transfer(12 * 30)
        ctx = HistoryContext(account=history)
        th = config.thresholds_for(tx.currency)
        cached = RuleInput(tx, ctx, config.params, th, cache)
        plain = RuleInput(tx, ctx, config.params, th)
        assert _shape(cached.since(span)) == _shape(plain.since(span))
    assert cached.tally is not None and not cached.tally.ordered
    assert len(plain.since(span)) == 6
