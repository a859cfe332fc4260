"""REST API behaviour through the real app and the embedded store."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from pymongo.errors import OperationFailure

from aml.domain import AlertStatus, AnalystDecision, RiskLevel, Role, utcnow
from aml.settings import Settings
from serve.api.app import API_PREFIX, ApiApp, create_app
from serve.auth import LoginRateLimiter, TokenService
from storage.embedded import free_port_for_later
from storage.store import Store, open_store
from tests.factories import make_alert
from tests.integration.api_client import Client, signed_in
from tests.ui.seed import PASSWORD, USERNAMES, seed_alerts, seed_team

pytestmark = pytest.mark.integration
SECRET = "k" * 48


def _app(store: Store, attempts: int = 1000) -> ApiApp:
    return create_app(
        Settings(jwt_secret=SecretStr(SECRET)),
        store=store,
        tokens=TokenService(SECRET),
        limiter=LoginRateLimiter(max_attempts=attempts),
    )


async def test_login_me_refresh_and_wrong_password(store: Store) -> None:
    await seed_team(store)
    c = Client(_app(store))
    status, _ = await c.post("/auth/login", {"username": "ana", "password": "nope nope nope"})
    assert status == 401
    login = await c.login("ANA")  # usernames are case-insensitive
    assert login["token_type"] == "bearer" and 0 < login["expires_in"] <= 15 * 60
    assert "password_hash" not in login["user"]
    status, me = await c.get("/auth/me")
    assert status == 200 and me["username"] == "ana" and "alert:decide" in me["permissions"]
    status, fresh = await c.post("/auth/refresh", {"refresh_token": login["refresh_token"]})
    assert status == 200 and fresh["access_token"]
    status, _ = await c.post("/auth/refresh", {"refresh_token": login["access_token"]})
    assert status == 401
    entries, _ = await store.audit_log.list_(action="auth.login_failed")
    assert entries and entries[0].details["username"] == "ana"


async def test_login_is_rate_limited(store: Store) -> None:
    await seed_team(store)
    c = Client(_app(store, attempts=3))
    for _ in range(3):
        status, _ = await c.post("/auth/login", {"username": "ana", "password": "x" * 12})
        assert status == 401
    status, data = await c.post("/auth/login", {"username": "ana", "password": PASSWORD})
    assert status == 429 and data["error"] == "too_many_requests"


async def test_refresh_refused_after_deactivation(store: Store) -> None:
    team = await seed_team(store)
    app = _app(store)
    ana, admin = Client(app), Client(app)
    login = await ana.login("ana")
    await admin.login("root")
    status, _ = await admin.post(f"/users/{team.by_role[Role.ANALYST].id}/deactivate")
    assert status == 200
    assert (await ana.get("/auth/me"))[0] == 401
    assert (await ana.post("/auth/refresh", {"refresh_token": login["refresh_token"]}))[0] == 401
    assert (await ana.post("/auth/login", {"username": "ana", "password": PASSWORD}))[0] == 401


async def test_alert_queue_filters_sorts_and_pages(store: Store) -> None:
    await seed_team(store)
    seeded = await seed_alerts(store, 4)
    c = Client(_app(store))
    await c.login("ana")
    status, page = await c.get("/alerts", sort="score", order="desc", limit=2)
    assert status == 200 and page["total"] == 4
    assert [a["id"] for a in page["items"]] == [s.alert.id for s in seeded[:2]]
    _, page2 = await c.get("/alerts", sort="score", order="desc", limit=2, skip=2)
    assert [a["id"] for a in page2["items"]] == [s.alert.id for s in seeded[2:]]
    _, crit = await c.get("/alerts", risk_level="critical,high")
    assert {a["risk_level"] for a in crit["items"]} == {"critical", "high"}
    _, by_rule = await c.get("/alerts", rule_id="R003")
    assert [a["id"] for a in by_rule["items"]] == [seeded[1].alert.id]
    _, old = await c.get("/alerts", min_age_minutes=25)
    assert {a["id"] for a in old["items"]} == {s.alert.id for s in seeded[:2]}
    status, _ = await c.get("/alerts", sort="password")
    assert status == 400
    status, _ = await c.get("/alerts", limit=100000)
    assert status == 400


async def test_alert_detail_carries_the_explanation(store: Store) -> None:
    await seed_team(store)
    seeded = await seed_alerts(store, 2)
    c = Client(_app(store))
    await c.login("ana")
    status, detail = await c.get(f"/alerts/{seeded[0].alert.id}")
    assert status == 200
    assert detail["transactions"][0]["external_id"] == seeded[0].transaction.external_id
    decision = detail["decisions"][0]
    assert decision["rule_hits"][0]["values"]["count"] == 5
    assert {s["scorer"] for s in decision["scorers"]} == {"rules", "xgboost"}
    assert decision["scorers"][0]["contributions"][0]["feature"] == "amount_z"
    assert (await c.get("/alerts/nope"))[0] == 404


async def test_assign_to_me_and_bulk_assign(store: Store) -> None:
    await seed_team(store)
    seeded = await seed_alerts(store, 3)
    app = _app(store)
    ana, sam = await signed_in(app, "ana", "sam")
    status, alert = await ana.post(f"/alerts/{seeded[0].alert.id}/assign")
    assert status == 200 and alert["assignee"] == "ana"
    # An analyst may not hand work to someone else; a senior may.
    ids = [s.alert.id for s in seeded]
    assert (await ana.post("/alerts/assign", {"alert_ids": ids, "assignee": "sam"}))[0] == 403
    status, out = await sam.post("/alerts/assign", {"alert_ids": ids, "assignee": "ana"})
    assert status == 200 and out["assigned"] == 3
    _, mine = await ana.get("/alerts", assignee="ana")
    assert mine["total"] == 3
    entries, _ = await store.audit_log.list_(action="alert.assign")
    assert entries[0].actor == "sam" and entries[0].ip


async def test_decide_needs_a_note_and_stores_the_label(store: Store) -> None:
    await seed_team(store)
    seeded = await seed_alerts(store, 2)
    c = Client(_app(store))
    await c.login("ana")
    aid = seeded[0].alert.id
    status, err = await c.post(f"/alerts/{aid}/decision", {"decision": "confirmed_fraud"})
    assert status == 400 and err["details"]["field"] == "note"
    status, alert = await c.post(
        f"/alerts/{aid}/decision", {"decision": "confirmed_fraud", "note": "mule account"}
    )
    assert status == 200 and alert["status"] == AlertStatus.CLOSED_FRAUD.value
    labels = await store.alerts.labels()
    assert labels == [((seeded[0].transaction.id,), AnalystDecision.CONFIRMED_FRAUD)]
    _, queue = await c.get("/alerts", status="open,under_review,escalated")
    assert aid not in {a["id"] for a in queue["items"]}
    again = await c.post(f"/alerts/{aid}/decision", {"decision": "legitimate", "note": "x"})
    assert again[0] == 409
    entry = (await store.audit_log.list_(action="alert.decide"))[0][0]
    assert (entry.actor, entry.target_id, entry.details["note"]) == ("ana", aid, "mule account")


async def test_escalated_alert_needs_another_senior(store: Store) -> None:
    await seed_team(store)
    seeded = await seed_alerts(store, 1)
    app = _app(store)
    ana, sam = await signed_in(app, "ana", "sam")
    aid = seeded[0].alert.id
    status, alert = await sam.post(f"/alerts/{aid}/escalate", {"note": "big one"})
    assert status == 200 and alert["status"] == "escalated"
    body = {"decision": "suspicious", "note": "agreed"}
    assert (await ana.post(f"/alerts/{aid}/decision", body))[0] == 403
    assert (await sam.post(f"/alerts/{aid}/decision", body))[0] == 409
    sue = Client(app)
    await sue.login("sue")
    status, alert = await sue.post(f"/alerts/{aid}/decision", body)
    assert status == 200 and alert["status"] == "closed_suspicious"


async def test_case_from_two_alerts_with_notes_and_four_eyes(store: Store) -> None:
    await seed_team(store)
    seeded = await seed_alerts(store, 3)
    app = _app(store)
    ana, sam, sue = await signed_in(app, "ana", "sam", "sue")
    ids = [seeded[0].alert.id, seeded[1].alert.id]
    status, case = await ana.post("/cases", {"title": "Mule ring", "alert_ids": ids})
    assert status == 201 and case["number"].startswith("CASE-")
    assert case["transaction_ids"] == [seeded[0].transaction.id, seeded[1].transaction.id]
    cid = case["id"]
    assert (await store.alerts.get(ids[0])).case_id == cid  # type: ignore[union-attr]
    # An alert can be in only one case.
    assert (await sam.post("/cases", {"title": "dup", "alert_ids": [ids[0]]}))[0] == 409

    status, case = await ana.post(f"/cases/{cid}/alerts", {"alert_ids": [seeded[2].alert.id]})
    assert status == 200 and len(case["alert_ids"]) == 3
    status, case = await ana.post(
        f"/cases/{cid}/alerts/remove", {"alert_ids": [seeded[2].alert.id]}
    )
    assert len(case["alert_ids"]) == 2
    assert (await ana.post(f"/cases/{cid}/notes", {"text": ""}))[0] == 400
    status, case = await ana.post(f"/cases/{cid}/notes", {"text": "calls customer"})
    assert status == 201 and case["notes"][-1]["text"] == "calls customer"

    # open -> escalated directly is not a workflow step.
    assert (await ana.post(f"/cases/{cid}/status", {"status": "escalated"}))[0] == 409
    status, case = await ana.post(f"/cases/{cid}/status", {"status": "investigating"})
    assert status == 200 and case["status"] == "investigating"

    # SAR closure: maker asks, maker cannot approve, analyst cannot approve, second senior can.
    status, case = await sam.post(
        f"/cases/{cid}/status", {"status": "closed_sar_filed", "note": "SAR ANIF-2026-17"}
    )
    assert status == 202 and case["status"] == "investigating"
    assert case["pending_status"] == "closed_sar_filed"
    status, err = await sam.post(f"/cases/{cid}/approve")
    assert status == 403 and "four-eyes" in err["message"]
    assert (await ana.post(f"/cases/{cid}/approve"))[0] == 403
    status, case = await sue.post(f"/cases/{cid}/approve")
    assert status == 200 and case["status"] == "closed_sar_filed"
    assert case["approved_by"] == "sue"
    assert (await ana.post(f"/cases/{cid}/notes", {"text": "late note"}))[0] == 201
    assert (await ana.post(f"/cases/{cid}/status", {"status": "open"}))[0] == 409
    actions = [e.action for e in (await store.audit_log.list_(target_id=cid, limit=50))[0]]
    assert {"case.create", "case.request_status", "case.approve_refused", "case.approve"} <= set(
        actions
    )


async def test_users_admin_and_audit_verify(store: Store) -> None:
    await seed_team(store)
    app = _app(store)
    root = Client(app)
    await root.login(USERNAMES[Role.ADMIN])
    bad = {"username": "newbie", "password": "short", "role": "analyst"}
    assert (await root.post("/users", bad))[0] == 422
    status, user = await root.post(
        "/users", {"username": "newbie", "password": "a much longer secret", "role": "analyst"}
    )
    assert status == 201 and "password_hash" not in user
    assert (await root.post("/users", {**bad, "password": "a much longer secret"}))[0] == 409
    status, page = await root.get("/users")
    assert status == 200 and "newbie" in {u["username"] for u in page["items"]}
    status, audit = await root.get("/audit", action="user.create")
    assert status == 200 and audit["total"] >= 1
    status, result = await root.post("/audit/verify")
    assert status == 200 and result == {"intact": True, "first_broken_seq": None}
    await store.audit_log.col.update_one({"seq": 2}, {"$set": {"details.role": "admin"}})
    status, result = await root.post("/audit/verify")
    assert result == {"intact": False, "first_broken_seq": 2}


async def test_transactions_search_and_openapi(store: Store) -> None:
    await seed_team(store)
    seeded = await seed_alerts(store, 3)
    c = Client(_app(store))
    await c.login("mel")
    status, page = await c.get("/transactions", account_id=seeded[1].transaction.account_id)
    assert status == 200 and [t["id"] for t in page["items"]] == [seeded[1].transaction.id]
    status, tx = await c.get(f"/transactions/{seeded[0].transaction.id}")
    assert status == 200 and tx["amount_minor"] == seeded[0].transaction.amount_minor
    await store.transactions.mark_scored(
        {seeded[0].transaction.id: RiskLevel.CRITICAL, seeded[2].transaction.id: RiskLevel.LOW}
    )
    status, page = await c.get("/transactions", risk="critical,high")
    assert status == 200 and [t["id"] for t in page["items"]] == [seeded[0].transaction.id]
    assert page["items"][0]["risk_level"] == "critical"
    status, err = await c.get("/transactions", risk="severe")
    assert status == 400 and "risk must be one of" in err["message"]
    status, doc = await c.get("/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    assert "post" in doc["paths"][f"{API_PREFIX}/cases/{{case_id}}/approve"]


async def test_app_opens_and_closes_its_own_store(mongo_uri: str) -> None:
    db = f"t_{uuid.uuid4().hex[:12]}"
    settings = Settings(
        jwt_secret=SecretStr(SECRET), mongodb_uri=SecretStr(mongo_uri), mongodb_db=db
    )
    app = create_app(settings)
    _, resp = await app.asgi_client.post(
        f"{API_PREFIX}/auth/login", json={"username": "nobody", "password": "x" * 12}
    )
    assert resp.status == 401  # reached the store through the listener-opened client
    assert app.ctx.store is None  # closed again by before_server_stop
    cleanup = open_store(mongo_uri, db)
    assert await cleanup.audit_log.count() == 1  # the failed login was audited there
    await cleanup.client.drop_database(db)
    await cleanup.close()


async def test_overview_counts_open_overdue_and_decisions(store: Store) -> None:
    await seed_team(store)
    seeded = await seed_alerts(store, 3)
    late = make_alert(sla_due_at=utcnow() - timedelta(minutes=5), created_at=utcnow())
    await store.alerts.create(late)
    c = Client(_app(store))
    await c.login("ana")
    await c.post(
        f"/alerts/{seeded[0].alert.id}/decision", {"decision": "legitimate", "note": "salary"}
    )
    status, data = await c.get("/overview")
    assert status == 200
    assert data["open_count"] == 3 and data["overdue_count"] == 1
    assert data["by_status"]["closed_legitimate"] == 1
    assert sum(data["by_risk"].values()) == 3
    assert sum(p["count"] for p in data["decisions_per_minute"]) == 3  # seeded within the hour


async def test_an_unreachable_store_is_503_with_retry_after(store: Store) -> None:
    await seed_team(store)
    (signed,) = await signed_in(_app(store), "ana")
    # The same tokens, served by an API whose store does not answer: nothing listens there.
    down = open_store(f"mongodb://127.0.0.1:{free_port_for_later()}", "nowhere", timeout_ms=300)
    app = _app(down)
    c = Client(app)
    c.token = signed.token
    status, data = await c.get("/alerts")
    assert status == 503 and data["error"] == "service_unavailable"
    assert "retry" in data["message"] and data["details"]["reason"]
    _, resp = await app.asgi_client.get(
        API_PREFIX + "/alerts", headers={"Authorization": f"Bearer {signed.token}"}
    )
    assert resp.status == 503 and resp.headers["retry-after"] == "5"
    await down.client.close()


async def test_unexpected_errors_are_500_logged_with_their_traceback(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    app = _app(store)

    async def refused(request: Any) -> Any:
        raise OperationFailure("refused by the store", code=2)  # not an unavailable store

    async def broken(request: Any) -> Any:
        raise RuntimeError("a bug")

    app.add_route(refused, "/refused")
    app.add_route(broken, "/broken")
    for path, kind in (("/refused", OperationFailure), ("/broken", RuntimeError)):
        caplog.clear()
        _, resp = await app.asgi_client.get(path)
        assert resp.status == 500 and resp.json == {
            "error": "internal_error",
            "message": "internal error",
        }
        logged = [r for r in caplog.records if r.getMessage() == f"unhandled error on GET {path}"]
        assert logged and logged[0].exc_info and logged[0].exc_info[0] is kind
