"""Dashboard page logic through NiceGUI's simulated user and the real store."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from nicegui import ui
from nicegui.testing.user import User

from aml.domain import AlertStatus, AnalystDecision, Role
from serve.services import users
from storage.embedded import free_port_for_later
from storage.store import Store, open_store
from tests.factories import make_alert
from tests.ui.seed import PASSWORD, USERNAMES, Team, seed_alerts
from ui import context

pytestmark = pytest.mark.integration


async def login(user: User, username: str, password: str = PASSWORD) -> None:
    await user.open("/login")
    user.find(marker="username").type(username)
    user.find(marker="password").type(password)
    user.find(marker="sign-in").click()
    await user.should_see("Sign out", retries=50)


async def test_unauthenticated_visit_is_sent_to_login(user: User, team: Team) -> None:
    await user.open("/alerts")
    await user.should_see("Sign in to review alerts and cases", retries=40)


async def test_wrong_password_shows_an_error(user: User, team: Team) -> None:
    await user.open("/login")
    user.find(marker="username").type("ana")
    user.find(marker="password").type("wrong wrong wrong")
    user.find(marker="sign-in").click()
    await user.should_see("invalid username or password", retries=40)


async def test_navigation_shows_only_what_the_role_may_open(user: User, team: Team) -> None:
    await login(user, "ana")
    await user.should_see(marker="nav-/alerts", retries=40)
    await user.should_not_see(marker="nav-/users", retries=40)
    await user.should_not_see(marker="nav-/audit", retries=40)
    await user.open("/users")
    await user.should_see("Your role does not give access to this page.", retries=40)


async def test_overview_counts(user: User, team: Team, store: Store) -> None:
    await seed_alerts(store, 3)
    await login(user, "ana")
    await user.open("/")
    await user.should_see("Open alerts", retries=40)
    card = user.find(marker="card-open").elements.pop()
    assert "3" in [el.text for el in card.descendants() if isinstance(el, ui.label)]


async def test_queue_lists_sorts_and_assigns_to_me(user: User, team: Team, store: Store) -> None:
    seeded = await seed_alerts(store, 3)
    await login(user, "ana")
    await user.open("/alerts")
    await user.should_see("3 alerts", retries=40)
    for s in seeded:
        await user.should_see(marker=f"row-{s.alert.id}", retries=40)
    user.find(marker=f"assign-{seeded[1].alert.id}").click()
    await user.should_see("Assigned to you", retries=40)
    stored = await store.alerts.get(seeded[1].alert.id)
    assert stored is not None and stored.assignee == "ana"


async def test_queue_filters_by_risk(user: User, team: Team, store: Store) -> None:
    seeded = await seed_alerts(store, 3)
    await login(user, "ana")
    await user.open("/alerts")
    user.find(marker="filter-risk").elements.pop().value = ["critical"]
    user.find(marker="apply").click()
    await user.should_see("1 alerts", retries=40)
    await user.should_see(marker=f"row-{seeded[0].alert.id}", retries=40)
    await user.should_not_see(marker=f"row-{seeded[1].alert.id}", retries=40)


async def test_new_alerts_appear_without_reload(user: User, team: Team, store: Store) -> None:
    await seed_alerts(store, 1)
    await login(user, "ana")
    await user.open("/alerts")
    await user.should_see("1 alerts", retries=40)
    fresh = make_alert(title="Fresh burst of deposits")
    await store.alerts.create(fresh)
    await asyncio.sleep(1.2)  # the queue polls every 0.5 s in tests
    await user.should_see(marker=f"row-{fresh.id}", retries=40)
    await user.should_see("2 alerts", retries=40)


async def test_bulk_assign_by_a_senior(user: User, team: Team, store: Store) -> None:
    seeded = await seed_alerts(store, 3)
    await login(user, "sam")
    await user.open("/alerts")
    for s in seeded[:2]:
        user.find(marker=f"select-{s.alert.id}").click()
    user.find(marker="bulk-assignee").type("ana")
    user.find(marker="bulk-assign").click()
    await user.should_see("Assigned 2 alerts to ana", retries=40)
    _, total = await store.alerts.list_(assignee="ana")
    assert total == 2


async def test_decide_requires_a_note_then_stores_the_label(
    user: User, team: Team, store: Store
) -> None:
    seeded = await seed_alerts(store, 2)
    target = seeded[0]
    await login(user, "ana")
    await user.open(f"/alerts/{target.alert.id}")
    await user.should_see(marker="transactions", retries=40)
    table = user.find(marker="transactions").elements.pop()
    assert isinstance(table, ui.table)
    assert table.rows[0]["external_id"] == target.transaction.external_id
    assert table.rows[0]["client_id"] == target.transaction.client_id
    await user.should_see("R001 (structuring, 0.80): count=5, window=24h, threshold=1000.5")
    await user.should_see("amount_z = 4.5", retries=40)
    await user.should_see("xgboost: unavailable (no model)")
    user.find(marker="decision-choice").elements.pop().value = "confirmed_fraud"
    user.find(marker="decide").click()
    await user.should_see("a note is required", retries=40)
    assert (await store.alerts.get(target.alert.id)).status == AlertStatus.OPEN  # type: ignore[union-attr]
    user.find(marker="decision-note").type("cash mule, confirmed with branch")
    user.find(marker="decide").click()
    await user.should_see("Alert queue", retries=40)
    stored = await store.alerts.get(target.alert.id)
    assert stored is not None and stored.status == AlertStatus.CLOSED_FRAUD
    assert stored.decision_note == "cash mule, confirmed with branch"
    assert (
        (target.transaction.id,),
        AnalystDecision.CONFIRMED_FRAUD,
    ) in await store.alerts.labels()
    await user.should_not_see(marker=f"row-{target.alert.id}", retries=40)


async def test_case_from_two_alerts_and_four_eyes(user: User, team: Team, store: Store) -> None:
    seeded = await seed_alerts(store, 3)
    await login(user, "sam")
    await user.open("/alerts")
    for s in seeded[:2]:
        user.find(marker=f"select-{s.alert.id}").click()
    user.find(marker="bulk-case-title").type("Mule ring")
    user.find(marker="bulk-case").click()
    await user.should_see(marker="case-status", retries=30)
    cases, total = await store.cases.list_()
    assert total == 1 and set(cases[0].alert_ids) == {s.alert.id for s in seeded[:2]}
    user.find(marker="to-investigating").click()
    await user.should_see("Status: Investigating", retries=40)
    user.find(marker="case-reason").type("SAR ANIF-2026-0042")
    user.find(marker="to-closed_sar_filed").click()
    await user.should_see(marker="case-pending", retries=40)
    user.find(marker="case-approve").click()
    await user.should_see("four-eyes: a second user must approve your own request", retries=40)
    case = await store.cases.get(cases[0].id)
    assert case is not None and case.pending_status is not None and case.approved_by is None


async def test_audit_page_for_senior_with_verify(user: User, team: Team, store: Store) -> None:
    await login(user, "sam")
    await user.open("/audit")
    table = user.find(marker="audit-table").elements.pop()
    assert isinstance(table, ui.table)
    assert {"user.create", "auth.login"} <= {row["action"] for row in table.rows}
    user.find(marker="audit-verify").click()
    await user.should_see("Chain intact", retries=40)


async def test_admin_deactivation_ends_the_session_at_once(
    user: User, team: Team, store: Store
) -> None:
    await login(user, USERNAMES[Role.ADMIN])
    await user.open("/users")
    await user.should_see(marker="user-ana", retries=40)
    user.find(marker="deactivate-ana").click()
    await user.should_see("User deactivated; their sessions end now", retries=40)
    ana = await store.users.get_by_username("ana")
    assert ana is not None and not ana.active


async def test_deactivated_analyst_is_signed_out_on_next_page(
    user: User, team: Team, store: Store
) -> None:
    await login(user, "ana")
    await user.open("/alerts")
    await user.should_see("Alert queue", retries=40)
    await users.deactivate(
        store, actor=team.actor(Role.ADMIN), user_id=team.by_role[Role.ANALYST].id
    )
    await user.open("/alerts")
    await user.should_see("Sign in to review alerts and cases", retries=40)


async def test_an_unavailable_store_is_said_at_sign_in_and_on_pages(
    user: User, team: Team, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = context.get()
    # A store that does not answer: nothing listens where it points.
    down = open_store(f"mongodb://127.0.0.1:{free_port_for_later()}", "nowhere", timeout_ms=300)
    try:
        context.configure(dataclasses.replace(ctx, store=down))
        await user.open("/login")
        user.find(marker="username").type("ana")
        user.find(marker="password").type(PASSWORD)
        user.find(marker="sign-in").click()
        await user.should_see("the database is unreachable", retries=40)

        context.configure(ctx)
        await login(user, "ana")
        context.configure(dataclasses.replace(ctx, store=down))
        # NiceGUI answers a page that failed with 500 (the simulated user only opens 200s),
        # built by the dashboard's error page.
        response = await user.http_client.get("/alerts")
        assert response.status_code == 500
        assert "The database is unavailable" in response.text
        assert "the database is unreachable or did not answer in time" in response.text
        assert "could not be shown" not in response.text
    finally:
        context.configure(ctx)
        await down.client.close()
    # NiceGUI logs the page that failed, with its traceback, for the operators.
    assert any(r.levelname == "ERROR" and r.exc_info for r in caplog.get_records("call"))
    caplog.clear()


async def test_a_page_that_fails_otherwise_says_the_error_was_logged(
    user: User, team: Team, caplog: pytest.LogCaptureFixture
) -> None:
    @ui.page("/fails")
    def fails() -> None:
        raise RuntimeError("a bug")

    await login(user, "ana")
    response = await user.http_client.get("/fails")
    assert response.status_code == 500
    assert "This page could not be shown" in response.text
    assert "The database is unavailable" not in response.text
    assert any(r.levelname == "ERROR" and r.exc_info for r in caplog.get_records("call"))
    caplog.clear()
