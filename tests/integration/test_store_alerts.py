"""Storage conformance: alerts (grouping, decisions, filters, overview counts, labels)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import date, timedelta
from typing import Any

import pytest

from aml.domain import Alert, AlertStatus, AnalystDecision, RiskLevel
from aml.errors import Conflict, NotFound
from storage.repositories import alerts as alerts_repository
from storage.repositories.alerts import OPEN_STATUSES
from storage.store import Store
from tests.factories import T0, make_alert

pytestmark = pytest.mark.integration


async def test_round_trip_keeps_every_field(store: Store) -> None:
    alert = make_alert(assignee="ana", case_id="c1", rule_ids=("R001", "R007"))
    await store.alerts.create(alert)
    got = await store.alerts.get(alert.id)
    assert got == alert
    assert got is not None and got.created_at.tzinfo is not None
    assert await store.alerts.get("nope") is None
    with pytest.raises(NotFound):
        await store.alerts.get_or_raise("nope")


async def test_second_open_alert_for_a_customer_is_grouped(store: Store) -> None:
    first = make_alert(account_id="savings:1", transaction_ids=("t1",), rule_ids=("R1",))
    second = make_alert(
        account_id="savings:1",
        transaction_ids=("t2", "t1"),
        rule_ids=("R2", "R1"),
        score=0.95,
        risk_level=RiskLevel.CRITICAL,
        updated_at=first.updated_at + timedelta(minutes=5),
    )
    assert (await store.alerts.attach_or_create(first)).id == first.id
    grouped = await store.alerts.attach_or_create(second)
    assert grouped.id == first.id
    assert grouped.transaction_ids == ("t1", "t2")
    assert grouped.rule_ids == ("R1", "R2")
    assert grouped.score == 0.95 and grouped.risk_level is RiskLevel.CRITICAL
    assert grouped.updated_at == first.updated_at + timedelta(minutes=5)
    assert await store.alerts.get(first.id) == grouped
    assert await store.alerts.count() == 1


async def test_a_full_alert_stays_open_and_the_customers_next_open_another(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once an open alert holds ``MAX_GROUPED_TRANSACTIONS``, the customer's next risky
    transactions open a new alert (one at a time or many at once) instead of growing it."""
    monkeypatch.setattr(alerts_repository, "MAX_GROUPED_TRANSACTIONS", 3)
    first = make_alert(account_id="savings:31", transaction_ids=("t1",))
    await store.alerts.attach_or_create(first)
    for t in ("t2", "t3"):
        await store.alerts.attach_or_create(
            make_alert(account_id="savings:31", transaction_ids=(t,))
        )
    full = await store.alerts.get_or_raise(first.id)
    assert full.transaction_ids == ("t1", "t2", "t3") and full.status is AlertStatus.OPEN
    assert (
        await store.alerts.get_open_for_customer(tenant="default", customer_key=first.customer_key)
        is None
    )

    second = make_alert(account_id="savings:31", transaction_ids=("t4",))
    (stored,) = await store.alerts.attach_or_create_many([second])
    assert stored.id == second.id
    again = await store.alerts.attach_or_create(
        make_alert(account_id="savings:31", transaction_ids=("t5",))
    )
    assert again.id == second.id and again.transaction_ids == ("t4", "t5")
    assert (await store.alerts.get_or_raise(first.id)).transaction_ids == ("t1", "t2", "t3")
    mine, _ = await store.alerts.list_(
        customer_key=first.customer_key, statuses=[AlertStatus.OPEN], limit=50
    )
    assert {a.id for a in mine} == {first.id, second.id}


async def test_lower_risk_transaction_never_lowers_the_alert(store: Store) -> None:
    first = make_alert(account_id="savings:2", score=0.9, risk_level=RiskLevel.HIGH)
    await store.alerts.attach_or_create(first)
    grouped = await store.alerts.attach_or_create(
        make_alert(account_id="savings:2", score=0.5, risk_level=RiskLevel.LOW)
    )
    assert grouped.score == 0.9 and grouped.risk_level is RiskLevel.HIGH


async def test_concurrent_alerts_for_one_customer_end_as_one(store: Store) -> None:
    candidates = [make_alert(account_id="savings:3", transaction_ids=(f"t{i}",)) for i in range(6)]
    await asyncio.gather(*(store.alerts.attach_or_create(c) for c in candidates))
    alerts, total = await store.alerts.list_(statuses=[AlertStatus.OPEN])
    assert total == 1
    assert sorted(alerts[0].transaction_ids) == [f"t{i}" for i in range(6)]


async def test_closed_alert_is_not_grouped_onto(store: Store) -> None:
    first = make_alert(account_id="savings:4")
    await store.alerts.attach_or_create(first)
    closed = await store.alerts.decide(
        first.id, decision=AnalystDecision.LEGITIMATE, by="ana", at=T0, note="salary"
    )
    assert closed.status is AlertStatus.CLOSED_LEGITIMATE
    assert closed.decided_by == "ana" and closed.decided_at == T0
    second = make_alert(account_id="savings:4")
    assert (await store.alerts.attach_or_create(second)).id == second.id
    with pytest.raises(Conflict):
        await store.alerts.create(make_alert(account_id="savings:4"))
    assert await store.alerts.count() == 2


async def test_decisions_map_to_statuses_and_closed_alerts_stay_closed(store: Store) -> None:
    a, b, c = (make_alert() for _ in range(3))
    for alert in (a, b, c):
        await store.alerts.create(alert)
    s = await store.alerts.decide(a.id, decision=AnalystDecision.SUSPICIOUS, by="x", at=T0)
    f = await store.alerts.decide(b.id, decision=AnalystDecision.CONFIRMED_FRAUD, by="x", at=T0)
    e = await store.alerts.decide(c.id, decision="escalate", by="x", at=T0, note="look")
    assert s.status is AlertStatus.CLOSED_SUSPICIOUS
    assert f.status is AlertStatus.CLOSED_FRAUD
    assert e.status is AlertStatus.ESCALATED and e.decision is None
    with pytest.raises(Conflict):
        await store.alerts.decide(a.id, decision=AnalystDecision.LEGITIMATE, by="y", at=T0)
    # An escalated alert is still open: a new transaction of that customer joins it.
    joined = await store.alerts.attach_or_create(
        make_alert(account_id=c.account_id, transaction_ids=("late",))
    )
    assert joined.id == c.id and "late" in joined.transaction_ids


async def test_assign_single_and_bulk_and_link_case(store: Store) -> None:
    alerts = [make_alert() for _ in range(3)]
    for alert in alerts:
        await store.alerts.create(alert)
    one = await store.alerts.assign(alerts[0].id, assignee="ana", at=T0 + timedelta(hours=1))
    assert one.assignee == "ana" and one.updated_at == T0 + timedelta(hours=1)
    many = await store.alerts.assign_many(
        [alerts[1].id, alerts[2].id, "missing"], assignee="bob", at=T0
    )
    assert {a.id for a in many} == {alerts[1].id, alerts[2].id}
    _, bobs = await store.alerts.list_(assignee="bob")
    assert bobs == 2
    touched, _ = await store.alerts.list_(sort="updated_at", limit=1)
    assert touched[0].id == alerts[0].id
    linked = await store.alerts.set_case([alerts[0].id], case_id="case-1", at=T0)
    assert linked[0].case_id == "case-1"
    with pytest.raises(NotFound):
        await store.alerts.assign("missing", assignee="x", at=T0)


async def test_filters_sort_and_pagination(store: Store) -> None:
    made = [
        make_alert(
            created_at=T0 + timedelta(hours=i),
            score=round(0.1 * (i % 5), 2),
            risk_level=RiskLevel.HIGH if i % 2 else RiskLevel.LOW,
            rule_ids=("R9",) if i < 3 else ("R1",),
            tenant="t2" if i == 9 else "default",
        )
        for i in range(10)
    ]
    for alert in made:
        await store.alerts.create(alert)
    page, total = await store.alerts.list_(skip=2, limit=3)
    assert total == 10
    assert [a.created_at for a in page] == [T0 + timedelta(hours=h) for h in (7, 6, 5)]
    oldest, _ = await store.alerts.list_(descending=False, limit=1)
    assert oldest[0].id == made[0].id
    by_score, _ = await store.alerts.list_(sort="score", limit=10)
    assert [a.score for a in by_score] == sorted((a.score for a in made), reverse=True)
    high, n_high = await store.alerts.list_(risk_levels=[RiskLevel.HIGH])
    assert n_high == 5 and all(a.risk_level is RiskLevel.HIGH for a in high)
    by_rule, n_rule = await store.alerts.list_(rule_id="R9")
    assert n_rule == 3 and {a.id for a in by_rule} == {a.id for a in made[:3]}
    _, n_tenant = await store.alerts.list_(tenant="t2")
    assert n_tenant == 1
    _, n_window = await store.alerts.list_(
        created_from=T0 + timedelta(hours=2), created_before=T0 + timedelta(hours=5)
    )
    assert n_window == 3
    pages = [
        a.id
        for skip in range(0, 10, 4)
        for a in (await store.alerts.list_(sort="score", skip=skip, limit=4))[0]
    ]
    assert sorted(pages) == sorted(a.id for a in made)


async def test_overview_counts(store: Store) -> None:
    day1 = [make_alert(created_at=T0 + timedelta(minutes=i)) for i in range(3)]
    day2 = [
        make_alert(created_at=T0 + timedelta(days=1, minutes=i), risk_level=RiskLevel.CRITICAL)
        for i in range(2)
    ]
    for alert in [*day1, *day2]:
        await store.alerts.create(alert)
    await store.alerts.decide(day1[0].id, decision=AnalystDecision.LEGITIMATE, by="a", at=T0)
    by_status = await store.alerts.count_by_status()
    assert by_status[AlertStatus.OPEN] == 4
    assert by_status[AlertStatus.CLOSED_LEGITIMATE] == 1
    assert by_status[AlertStatus.CLOSED_FRAUD] == 0
    by_risk = await store.alerts.count_by_risk_level()
    assert by_risk == {
        RiskLevel.LOW: 0,
        RiskLevel.MEDIUM: 2,
        RiskLevel.HIGH: 0,
        RiskLevel.CRITICAL: 2,
    }
    by_day = await store.alerts.count_by_day(
        since=T0 - timedelta(days=1), until=T0 + timedelta(days=3)
    )
    assert by_day == [(date(2026, 1, 15), 3), (date(2026, 1, 16), 2)]


async def test_alerts_stored_before_created_ms_are_backfilled_and_counted_per_day(
    store: Store,
) -> None:
    from storage.repositories.alerts import CREATED_MS, SLA_DUE_MS, AlertRepository

    alerts = [
        make_alert(created_at=T0 + timedelta(hours=9 * i), sla_due_at=T0 + timedelta(hours=i))
        for i in range(4)
    ]
    docs = []
    for a in alerts:
        doc = AlertRepository._doc(a, 0)
        del doc[CREATED_MS], doc[SLA_DUE_MS]
        docs.append(doc)
    await store.alerts.col.insert_many(docs)
    since, until = T0 - timedelta(days=1), T0 + timedelta(days=3)
    assert await store.alerts.count_by_day(since=since, until=until) == []

    assert await store.alerts.count_overdue(now=T0 + timedelta(hours=2, minutes=1)) == 0

    await store.alerts.ensure_indexes(embedded=await store.is_embedded())
    assert await store.alerts.count_overdue(now=T0 + timedelta(hours=2, minutes=1)) == 3
    # T0 is 2026-01-15 10:00 UTC: +0 h and +9 h that day, +18 h and +27 h the next.
    assert await store.alerts.count_by_day(since=since, until=until) == [
        (date(2026, 1, 15), 2),
        (date(2026, 1, 16), 2),
    ]
    # A range starting mid-day counts that day from its start only.
    assert await store.alerts.count_by_day(
        since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=20)
    ) == [(date(2026, 1, 15), 1), (date(2026, 1, 16), 1)]
    assert [await store.alerts.get(a.id) for a in alerts] == alerts


async def test_oldest_open_alert_is_the_first_created_of_any_open_status(store: Store) -> None:
    assert await store.alerts.oldest_open() is None
    closed = make_alert(created_at=T0 - timedelta(days=3))
    escalated = make_alert(created_at=T0 - timedelta(days=1), status=AlertStatus.ESCALATED)
    reviewed = make_alert(created_at=T0, status=AlertStatus.UNDER_REVIEW)
    other_tenant = make_alert(created_at=T0 - timedelta(days=2), tenant="t2")
    for alert in (closed, escalated, reviewed, other_tenant):
        await store.alerts.create(alert)
    await store.alerts.decide(closed.id, decision=AnalystDecision.LEGITIMATE, by="a", at=T0)
    assert await store.alerts.oldest_open() == other_tenant
    assert await store.alerts.oldest_open(tenant="default") == escalated
    # Same instant: the smaller id first, as the queue orders them.
    twin = make_alert(created_at=escalated.created_at)
    await store.alerts.create(twin)
    assert await store.alerts.oldest_open(tenant="default") == min(
        (escalated, twin), key=lambda a: a.id
    )


async def test_labels_and_related(store: Store) -> None:
    a = make_alert(account_id="savings:50", transaction_ids=("t1", "t2"))
    b = make_alert(account_id="savings:51", transaction_ids=("t3",))
    await store.alerts.create(a)
    await store.alerts.create(b)
    await store.alerts.decide(
        a.id, decision=AnalystDecision.CONFIRMED_FRAUD, by="x", at=T0 + timedelta(days=1)
    )
    await store.alerts.decide(b.id, decision=AnalystDecision.LEGITIMATE, by="x", at=T0)
    assert await store.alerts.labels() == [
        (("t3",), AnalystDecision.LEGITIMATE),
        (("t1", "t2"), AnalystDecision.CONFIRMED_FRAUD),
    ]
    assert await store.alerts.labels(since=T0 + timedelta(hours=1)) == [
        (("t1", "t2"), AnalystDecision.CONFIRMED_FRAUD)
    ]
    again = make_alert(account_id="savings:50")
    await store.alerts.attach_or_create(again)
    related = await store.alerts.related(a.customer_key)
    assert {r.id for r in related} == {a.id, again.id}


async def test_overdue_alerts_are_open_ones_past_their_deadline(store: Store) -> None:
    late = make_alert(sla_due_at=T0)
    late_closed = make_alert(sla_due_at=T0)
    on_time = make_alert(sla_due_at=T0 + timedelta(days=2))
    for alert in (late, late_closed, on_time):
        await store.alerts.create(alert)
    await store.alerts.decide(late_closed.id, decision=AnalystDecision.LEGITIMATE, by="x", at=T0)
    now = T0 + timedelta(days=1)
    assert await store.alerts.count_overdue(now=now) == 1
    overdue, total = await store.alerts.list_(statuses=OPEN_STATUSES, sla_due_before=now)
    assert total == 1 and [a.id for a in overdue] == [late.id]


def _same_grouping(a: Alert, b: Alert) -> bool:
    """Equal but for the tenant (two tenants of one store stand for two stores)."""
    return dataclasses.replace(a, tenant="", customer_key=a.account_id, id="") == (
        dataclasses.replace(b, tenant="", customer_key=b.account_id, id="")
    )


async def test_many_at_once_stores_what_one_by_one_stores(store: Store) -> None:
    # Per tenant the same history: open alerts for accounts 0-2 (account 2's closed later),
    # then one round of candidates for accounts 0-5, one by one in tenant "a", at once in "b".
    def history(tenant: str) -> tuple[list[Alert], list[Alert]]:
        before = [
            make_alert(
                tenant=tenant,
                account_id=f"savings:{i}",
                transaction_ids=(f"old{i}",),
                created_at=T0 + timedelta(minutes=i),
            )
            for i in range(3)
        ]
        later = [
            make_alert(
                tenant=tenant,
                account_id=f"savings:{i}",
                transaction_ids=(f"new{i}", f"old{i}"),
                created_at=T0 + timedelta(days=1),
                rule_ids=("R002", "R001"),
                score=0.3 + 0.1 * i,
                risk_level=RiskLevel.HIGH if i % 2 else RiskLevel.LOW,
                updated_at=T0 + timedelta(days=1, minutes=i),
                sla_due_at=T0 + timedelta(hours=i),
            )
            for i in range(6)
        ]
        return before, later

    results = {}
    for tenant in ("a", "b"):
        before, later = history(tenant)
        for alert in before:
            await store.alerts.attach_or_create(alert)
        await store.alerts.decide(before[2].id, decision=AnalystDecision.LEGITIMATE, by="x", at=T0)
        if tenant == "a":
            results[tenant] = [await store.alerts.attach_or_create(c) for c in later]
        else:
            results[tenant] = await store.alerts.attach_or_create_many(later)
    one_by_one, at_once = results["a"], results["b"]
    assert [a.account_id for a in at_once] == [f"savings:{i}" for i in range(6)]
    assert all(_same_grouping(x, y) for x, y in zip(one_by_one, at_once, strict=True))
    stored = {t: sorted((await store.alerts.list_(tenant=t, limit=50))[0], key=str) for t in "ab"}
    assert len(stored["a"]) == len(stored["b"]) == 7  # 3 earlier (one closed) + 4 new
    for x in at_once:
        assert await store.alerts.get(x.id) == x
    grouped = at_once[0]
    assert grouped.transaction_ids == ("old0", "new0")
    assert grouped.rule_ids == ("R001", "R002")


async def test_many_regroups_what_another_writer_changed_meanwhile(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    grouped_elsewhere, closed_meanwhile, untouched = (
        make_alert(account_id=f"savings:7{i}", transaction_ids=(f"x{i}",)) for i in range(3)
    )
    for alert in (grouped_elsewhere, closed_meanwhile, untouched):
        await store.alerts.create(alert)
    opened_meanwhile = make_alert(account_id="savings:74", transaction_ids=("other",))
    candidates = [
        make_alert(account_id=f"savings:7{i}", transaction_ids=(f"y{i}",), score=0.9)
        for i in range(5)
    ]
    col = store.alerts.col
    real_bulk_write, real_insert_many = col.bulk_write, col.insert_many

    async def racing_bulk_write(*args: Any, **kwargs: Any) -> Any:
        # Between the read and the replacements: one alert grouped on, one closed.
        await store.alerts.attach_or_create(
            make_alert(account_id="savings:70", transaction_ids=("z",))
        )
        await store.alerts.decide(
            closed_meanwhile.id, decision=AnalystDecision.LEGITIMATE, by="x", at=T0
        )
        return await real_bulk_write(*args, **kwargs)

    async def racing_insert_many(*args: Any, **kwargs: Any) -> Any:
        await store.alerts.create(opened_meanwhile)  # account 74 got an open alert first
        return await real_insert_many(*args, **kwargs)

    monkeypatch.setattr(col, "bulk_write", racing_bulk_write)
    monkeypatch.setattr(col, "insert_many", racing_insert_many)
    out = await store.alerts.attach_or_create_many(candidates)
    monkeypatch.undo()

    assert out[0].id == grouped_elsewhere.id
    assert set(out[0].transaction_ids) == {"x0", "z", "y0"}  # neither grouping lost
    assert out[1].id == candidates[1].id  # its alert was closed: a new one
    assert out[2].id == untouched.id and out[2].transaction_ids == ("x2", "y2")
    assert out[3].id == candidates[3].id  # new customer
    assert out[4].id == opened_meanwhile.id and out[4].transaction_ids == ("other", "y4")
    for alert in out:
        assert await store.alerts.get(alert.id) == alert
    closed = await store.alerts.get_or_raise(closed_meanwhile.id)
    assert closed.status is AlertStatus.CLOSED_LEGITIMATE and "y1" not in closed.transaction_ids
    assert len((await store.alerts.list_(statuses=[AlertStatus.OPEN], limit=50))[0]) == 5


async def test_a_candidate_stored_before_is_not_stored_again(store: Store) -> None:
    # A batch written twice (its first write's outcome lost): the alert it created has since
    # been closed, so the customer has no open alert and the candidate's own id is taken.
    candidate = make_alert(account_id="savings:80")
    other = make_alert(account_id="savings:81")
    await store.alerts.attach_or_create(candidate)
    await store.alerts.decide(candidate.id, decision=AnalystDecision.LEGITIMATE, by="x", at=T0)
    again = await store.alerts.attach_or_create(candidate)
    assert again.id == candidate.id and again.status is AlertStatus.CLOSED_LEGITIMATE
    both = await store.alerts.attach_or_create_many([candidate, other])
    assert [a.id for a in both] == [candidate.id, other.id]
    assert both[0].status is AlertStatus.CLOSED_LEGITIMATE
    assert await store.alerts.count() == 2


async def test_many_with_two_candidates_of_one_customer_groups_both(store: Store) -> None:
    first = make_alert(account_id="savings:90", transaction_ids=("a",))
    second = make_alert(account_id="savings:90", transaction_ids=("b",))
    out = await store.alerts.attach_or_create_many([first, second])
    assert [a.id for a in out] == [first.id, first.id]
    assert out[1].transaction_ids == ("a", "b")
    assert await store.alerts.attach_or_create_many([]) == []


async def test_the_queue_by_deadline_lists_what_is_due_first_across_pages(store: Store) -> None:
    """Sorted by deadline: earliest first, ties by id, pages that never overlap; an alert
    stored before the numeric deadline key existed takes its place once backfilled, and a
    grouped alert whose deadline moved earlier moves up."""
    from storage.repositories.alerts import SLA_DUE_MS, AlertRepository

    due = [5, 1, 3, 1, 4, 2]  # hours after T0; two alerts due at +1 h
    alerts = [
        make_alert(customer_key=f"t|c{i}", sla_due_at=T0 + timedelta(hours=h))
        for i, h in enumerate(due)
    ]
    for a in alerts[:-1]:
        await store.alerts.create(a)
    old = AlertRepository._doc(alerts[-1], 0)
    del old[SLA_DUE_MS]  # written by a version without the key
    await store.alerts.col.insert_one(old)
    await store.alerts.ensure_indexes(embedded=await store.is_embedded())
    closed = make_alert(
        customer_key="t|closed", sla_due_at=T0, status=AlertStatus.CLOSED_LEGITIMATE
    )
    await store.alerts.create(closed)

    def expected(items: list[Alert]) -> list[str]:
        return [a.id for a in sorted(items, key=lambda a: (a.sla_due_at, a.id))]

    pages = [
        await store.alerts.list_(
            statuses=[AlertStatus.OPEN], sort="sla_due_at", descending=False, skip=s, limit=4
        )
        for s in (0, 4)
    ]
    assert [a.id for page, _ in pages for a in page] == expected(alerts)
    assert pages[0][1] == pages[1][1] == len(alerts)

    # A transaction grouped onto the alert due last brings its deadline forward.
    last = max(alerts, key=lambda a: a.sla_due_at)
    grouped = await store.alerts.attach_or_create(
        dataclasses.replace(
            last, id="newer", transaction_ids=("tx-newer",), sla_due_at=T0 - timedelta(hours=1)
        )
    )
    assert grouped.id == last.id
    page, _ = await store.alerts.list_(
        statuses=[AlertStatus.OPEN], sort="sla_due_at", descending=False, limit=1
    )
    assert [a.id for a in page] == [last.id]
