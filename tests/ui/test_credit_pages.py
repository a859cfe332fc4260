"""Credit dashboard pages through NiceGUI's simulated user and the real store."""

from __future__ import annotations

from typing import Any

import pytest
from nicegui import ui
from nicegui.testing.user import User

from aml.credit.score import COMPONENT_NAMES
from aml.domain import CreditRequestStatus, CreditTier, Role
from serve.services import credit
from storage.store import Store
from tests.factories import make_credit_profile
from tests.integration.credit_seed import now_ms, seed_clients
from tests.ui.seed import PASSWORD, Team

pytestmark = pytest.mark.integration


async def login(user: User, username: str) -> None:
    await user.open("/login")
    user.find(marker="username").type(username)
    user.find(marker="password").type(PASSWORD)
    user.find(marker="sign-in").click()
    await user.should_see("Sign out", retries=50)


async def _profiles(store: Store, team: Team) -> None:
    await seed_clients(store, as_of=now_ms())
    for cid in ("good", "thin", "inflated"):
        await credit.refresh_profile(
            store, actor=team.actor(Role.ANALYST), tenant="default", client_id=cid
        )


def _options(user: User, marker: str) -> dict[str, Any]:
    chart = user.find(marker=marker).elements.pop()
    assert isinstance(chart, ui.echart)
    return dict(chart.options)


async def test_credit_pages_are_in_the_navigation_for_readers(user: User, team: Team) -> None:
    await login(user, "mel")
    await user.should_see(marker="nav-/credit")
    await user.should_see(marker="nav-/credit/requests")
    await user.should_see(marker="nav-/credit/analytics")
    await user.open("/credit/requests")
    await user.should_see("Credit requests")
    # ML engineers read but neither submit nor decide.
    await user.should_not_see(marker="req-submit")


async def test_profile_list_filters_by_tier(user: User, team: Team, store: Store) -> None:
    await _profiles(store, team)
    await login(user, "ana")
    await user.open("/credit")
    await user.should_see("3 profiles")
    tier_filter = user.find(marker="credit-filter-tier").elements.pop()
    assert isinstance(tier_filter, ui.select)
    tier_filter.value = ["B"]
    user.find(marker="credit-apply").click()
    await user.should_see("1 profiles")
    await user.should_see(marker="profile-good")
    await user.should_not_see(marker="profile-thin")


async def test_rescore_from_the_list_opens_the_fresh_profile(
    user: User, team: Team, store: Store
) -> None:
    await seed_clients(store, as_of=now_ms())
    await login(user, "ana")
    await user.open("/credit")
    await user.should_see("0 profiles")
    user.find(marker="rescore-client").type("good")
    user.find(marker="rescore").click()
    await user.should_see("Client good · credit profile", retries=50)
    assert await store.credit_profiles.get(tenant="default", client_id="good") is not None


async def test_profile_detail_shows_components_deduction_activity_and_cluster(
    user: User, team: Team, store: Store
) -> None:
    components = {n: 0.5 for n in COMPONENT_NAMES} | {"round_trip_penalty": -0.12}
    profile = make_credit_profile(
        client_id="rt",
        tier=CreditTier.B,
        cluster_id=3,
        cluster_tier=CreditTier.E,
        needs_review=True,
        components=components,
        reasons=("score 0.70 gives tier B (cut-off 0.65)",),
    )
    await store.credit_profiles.upsert(profile)
    await login(user, "ana")
    await user.open("/credit/clients/default/rt")
    await user.should_see(marker="profile-needs-review")
    await user.should_see("Cluster 3 suggests tier E: 3 tiers from the rule tier B")
    await user.should_see("-0.12")
    await user.should_see("score 0.70 gives tier B (cut-off 0.65)")
    bars = _options(user, "profile-components")
    # The deduction is not drawn as a 0-1 component.
    assert len(bars["yAxis"]["data"]) == len(COMPONENT_NAMES)
    assert bars["series"][0]["data"] == [0.5] * len(COMPONENT_NAMES)
    activity = _options(user, "profile-activity")
    assert len(activity["xAxis"]["data"]) == 26
    await user.open("/credit/clients/default/nobody")
    await user.should_see("Credit profile not found")


async def test_queue_submits_and_shows_four_eyes_and_senior_refusals(
    user: User, team: Team, store: Store
) -> None:
    await seed_clients(store, as_of=now_ms())
    big = await credit.submit_request(
        store,
        actor=team.actor(Role.SENIOR_ANALYST),
        tenant="default",
        client_id="good",
        amount_minor=25_000,
        currency="XAF",
    )
    await login(user, "ana")
    await user.open("/credit/requests")
    await user.should_see(marker=f"request-{big.id}")
    user.find(marker="req-client").type("good")
    user.find(marker="req-amount").type("5000")
    user.find(marker="req-submit").click()
    await user.should_see("Request submitted; advice: Approve", retries=50)
    page, _ = await store.credit_requests.list_(client_id="good", limit=10)
    mine = next(r for r in page if r.submitted_by == "ana")
    await user.should_see(marker=f"request-{mine.id}")
    await user.should_see("You submitted this request: another reviewer must decide it.")

    user.find(marker=f"note-{mine.id}").type("looks fine")
    user.find(marker=f"approve-{mine.id}").click()
    await user.should_see("four-eyes: you submitted this request")

    user.find(marker=f"approve-{big.id}").click()
    await user.should_see("a decision needs a note")
    user.find(marker=f"note-{big.id}").type("over my limit")
    user.find(marker=f"approve-{big.id}").click()
    await user.should_see("needs a senior analyst")
    user.find(marker=f"reject-{big.id}").click()
    await user.should_see("Rejected")
    stored = await store.credit_requests.get(big.id)
    assert stored is not None and stored.status is CreditRequestStatus.REJECTED
    assert stored.decided_by == "ana" and stored.decision_note == "over my limit"


async def test_queue_flags_inflation_and_rejects_bad_amounts(
    user: User, team: Team, store: Store
) -> None:
    await seed_clients(store, as_of=now_ms())
    await login(user, "ana")
    # The profile page links here with the client filled in.
    await user.open("/credit/requests?client_id=inflated")
    client_input = user.find(marker="req-client").elements.pop()
    assert isinstance(client_input, ui.input) and client_input.value == "inflated"
    user.find(marker="req-amount").type("abc")
    user.find(marker="req-submit").click()
    await user.should_see("the amount must be a number")
    user.find(marker="req-amount").clear().type("500")
    user.find(marker="req-submit").click()
    await user.should_see("Request submitted", retries=50)
    page, _ = await store.credit_requests.list_(client_id="inflated")
    await user.should_see(marker=f"request-inflation-{page[0].id}")
    await user.should_see("possible score inflation")


async def test_analytics_page_charts(user: User, team: Team, store: Store) -> None:
    await _profiles(store, team)
    req = await credit.submit_request(
        store,
        actor=team.actor(Role.ANALYST),
        tenant="default",
        client_id="good",
        amount_minor=1_000,
        currency="XAF",
    )
    await credit.submit_request(
        store,
        actor=team.actor(Role.ANALYST),
        tenant="default",
        client_id="good",
        amount_minor=2_000,
        currency="XAF",
    )
    await credit.decide_request(
        store, actor=team.actor(Role.SENIOR_ANALYST), request_id=req.id, approve=True, note="ok"
    )
    await login(user, "mel")
    await user.open("/credit/analytics")
    await user.should_see("Pending requests")
    await user.should_see("100% of 1")
    tiers = _options(user, "credit-chart-tiers")
    assert sum(d["value"] for d in tiers["series"][0]["data"]) == 3
    limits = _options(user, "credit-chart-limits")
    assert limits["series"][0]["name"] == "XAF" and limits["series"][0]["data"][1] == 20_000
    approvals = _options(user, "credit-chart-approvals")
    assert approvals["series"][0]["data"][-1] == 1 and approvals["series"][1]["data"][-1] == 100
