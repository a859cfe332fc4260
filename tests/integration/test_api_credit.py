"""``/api/v1/credit`` through the real app and the embedded store (the auth matrix over these
routes is generated in ``test_api_auth_matrix.py`` from the route table)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import SecretStr

from aml.auth import Permission, roles_with, roles_without
from aml.domain import Role
from aml.settings import Settings
from serve.api.app import API_PREFIX, ApiApp, all_route_specs, create_app
from serve.auth import LoginRateLimiter, TokenService
from serve.services.credit import CreditWorkflowPolicy
from storage.store import Store
from tests.integration.api_client import signed_in
from tests.integration.credit_seed import now_ms, seed_clients
from tests.ui.seed import seed_team

pytestmark = pytest.mark.integration
SECRET = "k" * 48


def _app(store: Store) -> ApiApp:
    app = create_app(
        Settings(jwt_secret=SecretStr(SECRET)),
        store=store,
        tokens=TokenService(SECRET),
        limiter=LoginRateLimiter(max_attempts=1000),
    )
    app.ctx.credit_policy = CreditWorkflowPolicy(senior_approval_above={"XAF": Decimal(8_000)})
    return app


def test_credit_routes_are_declared_with_their_permissions() -> None:
    credit = {(s.method, s.path): s.permission for s in all_route_specs() if "/credit" in s.path}
    assert credit == {
        ("GET", "/credit/profiles"): Permission.CREDIT_READ,
        ("GET", "/credit/profiles/<client_id:str>"): Permission.CREDIT_READ,
        ("POST", "/credit/profiles/<client_id:str>/refresh"): Permission.CREDIT_REQUEST,
        ("GET", "/credit/requests"): Permission.CREDIT_READ,
        ("POST", "/credit/requests"): Permission.CREDIT_REQUEST,
        ("GET", "/credit/requests/<request_id:str>"): Permission.CREDIT_READ,
        ("POST", "/credit/requests/<request_id:str>/approve"): Permission.CREDIT_DECIDE,
        ("POST", "/credit/requests/<request_id:str>/reject"): Permission.CREDIT_DECIDE,
        ("GET", "/credit/analytics"): Permission.CREDIT_READ,
    }
    # Analysts submit and review, ML engineers only read; seniors approve large amounts.
    assert roles_without([Permission.CREDIT_READ]) == ()
    assert roles_without([Permission.CREDIT_REQUEST]) == (Role.ML_ENGINEER,)
    assert roles_without([Permission.CREDIT_DECIDE]) == (Role.ML_ENGINEER,)
    assert roles_with(Permission.CREDIT_APPROVE_LARGE) == (Role.SENIOR_ANALYST, Role.ADMIN)


async def test_submit_review_and_four_eyes_over_http(store: Store) -> None:
    await seed_team(store)
    await seed_clients(store, as_of=now_ms())
    app = _app(store)
    ana, sam, sue, mel = await signed_in(app, "ana", "sam", "sue", "mel")

    status, data = await ana.post("/credit/requests", {"client_id": "ghost", "amount": "100"})
    assert status == 404 and data["error"] == "not_found"
    status, data = await ana.post("/credit/requests", {"client_id": "good", "amount": "lots"})
    assert status == 400 and data["details"]["field"] == "amount"
    status, _ = await mel.post("/credit/requests", {"client_id": "good", "amount": "100"})
    assert status == 403

    status, small = await ana.post(
        "/credit/requests", {"client_id": "good", "amount": "5000", "currency": "XAF"}
    )
    assert status == 201, small
    assert small["status"] == "pending_review" and small["recommendation"] == "approve"
    assert small["amount_minor"] == 5_000 and small["tier_at_request"] == "B"
    assert small["inflation_flag"] is False and small["reasons"]

    status, data = await ana.post(f"/credit/requests/{small['id']}/approve", {"note": "mine"})
    assert status == 403 and "four-eyes" in data["message"]
    status, data = await sam.post(f"/credit/requests/{small['id']}/approve", {})
    assert status == 400 and data["details"]["field"] == "note"
    status, data = await sam.post(f"/credit/requests/{small['id']}/approve", {"note": "fine"})
    assert status == 200 and data["status"] == "approved" and data["decided_by"] == "sam"
    status, data = await sue.post(f"/credit/requests/{small['id']}/reject", {"note": "late"})
    assert status == 409

    status, large = await sam.post("/credit/requests", {"client_id": "good", "amount_minor": 9_000})
    assert status == 201
    status, data = await ana.post(f"/credit/requests/{large['id']}/approve", {"note": "ok"})
    assert status == 403 and "senior analyst" in data["message"]
    status, data = await ana.post(f"/credit/requests/{large['id']}/reject", {"note": "no"})
    assert status == 200 and data["status"] == "rejected"

    status, page = await mel.get("/credit/requests", status="approved")
    assert status == 200 and [r["id"] for r in page["items"]] == [small["id"]]
    status, one = await mel.get(f"/credit/requests/{large['id']}")
    assert status == 200 and one["decision_note"] == "no"
    status, _ = await mel.get("/credit/requests", status="bogus")
    assert status == 400


async def test_profiles_detail_refresh_and_analytics(store: Store) -> None:
    await seed_team(store)
    await seed_clients(store, as_of=now_ms())
    app = _app(store)
    ana, mel = await signed_in(app, "ana", "mel")

    status, _ = await mel.post("/credit/profiles/good/refresh", {})
    assert status == 403
    for cid in ("good", "thin", "inflated"):
        status, profile = await ana.post(f"/credit/profiles/{cid}/refresh", {"tenant": "default"})
        assert status == 200 and profile["client_id"] == cid
    status, _ = await ana.post("/credit/profiles/ghost/refresh", {})
    assert status == 404

    status, page = await mel.get("/credit/profiles", tier="b")
    assert status == 200 and [p["client_id"] for p in page["items"]] == ["good"]
    status, page = await mel.get("/credit/profiles")
    assert page["total"] == 3
    status, _ = await mel.get("/credit/profiles", tier="Z")
    assert status == 400

    status, detail = await mel.get("/credit/profiles/good")
    assert status == 200
    assert detail["profile"]["tier"] == "B" and detail["tier_gap"] is None
    assert detail["profile"]["components"]["round_trip_penalty"] <= 0
    assert len(detail["activity"]) == 26 and sum(b["count"] for b in detail["activity"]) > 0
    status, _ = await mel.get("/credit/profiles/ghost")
    assert status == 404

    await ana.post("/credit/requests", {"client_id": "good", "amount": 1000})
    status, data = await mel.get("/credit/analytics", weeks="2")
    assert status == 200
    assert data["tier_distribution"]["B"] == 1 and data["tier_distribution"]["E"] == 1
    assert data["average_limits_minor"]["XAF"]["B"] == 20_000
    assert data["pending_count"] == 1 and len(data["approval_rates"]) == 2
    assert data["approval_rates"][-1] == {
        **data["approval_rates"][-1],
        "approved": 0,
        "decided": 0,
        "rate": 0.0,
    }
    status, _ = await mel.get("/credit/analytics", weeks="0")
    assert status == 400


async def test_openapi_lists_the_credit_routes(store: Store) -> None:
    app = _app(store)
    _, resp = await app.asgi_client.get(API_PREFIX + "/openapi.json")
    paths = resp.json["paths"]
    assert paths[API_PREFIX + "/credit/requests/{request_id}/approve"]["post"]["x-permission"] == (
        "credit:decide"
    )
