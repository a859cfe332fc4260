"""The ingress over HTTP: routes, secrets, every Fineract body shape into the store, bad input."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr

from aml.domain import IngestOutcome, TransactionType
from aml.settings import Settings
from serve.ingress.app import IngressApp, create_app
from storage.embedded import free_port
from storage.store import Store
from tests.integration.test_ingress_committer import RecordingHandoff

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fineract"
SECRET = "s" * 40
OLD_SECRET = "o" * 40
GENERIC_SECRET = "g" * 40
METRICS_TOKEN = "m" * 32


def fixture(name: str) -> tuple[dict[str, str], bytes]:
    """Headers and raw body of one documented Fineract hook delivery."""
    headers = json.loads((FIXTURES / "headers.json").read_text())[name]
    headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
    return headers, (FIXTURES / f"{name}.json").read_bytes().rstrip(b"\n")


def deposit(resource_id: int, amount: str = "1500.5", savings_id: int = 12) -> bytes:
    """A savings deposit hook body (wrapper shape) with a chosen transaction id."""
    return (
        '{"createdByName":"mifos","request":{"locale":"en","dateFormat":"dd MMMM yyyy",'
        f'"transactionDate":"15 January 2024","transactionAmount":{amount},"paymentTypeId":1.0}},'
        '"clientId":7,"createdBy":1,"officeId":1,"entityName":"SAVINGSACCOUNT",'
        f'"response":{{"clientId":7,"savingsId":{savings_id},"resourceId":{resource_id},'
        '"changes":{"paymentTypeId":1}},"createdByFullName":"App Administrator",'
        '"actionName":"DEPOSIT","timestamp":"2024-01-15T10:20:31.482913Z"}'
    ).encode()


DEPOSIT_HEADERS = {
    "X-Fineract-Entity": "SAVINGSACCOUNT",
    "X-Fineract-Action": "DEPOSIT",
    "Fineract-Platform-TenantId": "default",
    "Content-Type": "application/json; charset=UTF-8",
}


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "data_dir": tmp_path,
        "fineract_webhook_secrets": SecretStr(f"{SECRET},{OLD_SECRET}"),
        "generic_webhook_secret": SecretStr(GENERIC_SECRET),
        "jwt_secret": SecretStr("j" * 48),
        "ingest_batch_wait_ms": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


def make_app(
    settings: Settings, store: Store, handoff: RecordingHandoff | None = None
) -> IngressApp:
    return create_app(
        settings,
        store=store,
        handoff=handoff,
        metrics_token=METRICS_TOKEN,
        name=f"ingress-{uuid.uuid4().hex[:10]}",
    )


@contextlib.asynccontextmanager
async def serving(app: IngressApp) -> AsyncIterator[str]:
    """Run ``app`` as a real HTTP server on loopback inside the current event loop."""
    # Sanic rewrites its protocol classes once per process ("touchup"); a second server in the
    # same process would try to rewrite the rewritten source and fail.
    app.config.TOUCHUP = False
    port = free_port()
    server = await app.create_server(
        host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False
    )
    assert server is not None
    await server.startup()  # type: ignore[no-untyped-call]
    await server.before_start()  # type: ignore[no-untyped-call]
    await server.after_start()  # type: ignore[no-untyped-call]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await server.before_stop()  # type: ignore[no-untyped-call]
        await server.close()  # type: ignore[no-untyped-call]
        await server.after_stop()  # type: ignore[no-untyped-call]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def handoff() -> RecordingHandoff:
    return RecordingHandoff()


@pytest.fixture
def app(settings: Settings, store: Store, handoff: RecordingHandoff) -> IngressApp:
    return make_app(settings, store, handoff)


HOOK = f"/webhooks/fineract/{SECRET}/"


# --- routes and secrets -------------------------------------------------------------------------


async def test_get_probe_answers_with_and_without_trailing_slash(app: IngressApp) -> None:
    _, with_slash = await app.asgi_client.get(HOOK)
    _, without = await app.asgi_client.get(HOOK.rstrip("/"))
    assert with_slash.status == 200 and without.status == 200
    assert with_slash.json == {"status": "ok"}


async def test_post_without_trailing_slash_is_served_not_redirected(
    app: IngressApp, store: Store
) -> None:
    _, resp = await app.asgi_client.post(
        HOOK.rstrip("/"), content=deposit(901), headers=DEPOSIT_HEADERS
    )
    assert resp.status == 200
    assert resp.json["status"] == "accepted"
    assert await store.transactions.count() == 1


async def test_wrong_secret_is_404_and_counted_and_logged_without_the_secret(
    app: IngressApp, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "w" * 40
    with caplog.at_level(logging.WARNING):
        _, resp = await app.asgi_client.post(
            f"/webhooks/fineract/{wrong}/", content=deposit(902), headers=DEPOSIT_HEADERS
        )
    assert resp.status == 404
    assert resp.json["error"] == "not_found"
    assert await store.transactions.count() == 0
    assert any("unknown secret" in r.getMessage() for r in caplog.records)
    assert all(wrong not in r.getMessage() for r in caplog.records)
    _, metrics = await app.asgi_client.get(
        "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert 'aml_ingest_rejected_requests_total{reason="wrong_secret",source="fineract"} 1.0' in (
        metrics.text
    )


async def test_old_and_new_secret_both_work_during_rotation(app: IngressApp, store: Store) -> None:
    for secret, rid in ((SECRET, 903), (OLD_SECRET, 904)):
        _, resp = await app.asgi_client.post(
            f"/webhooks/fineract/{secret}/", content=deposit(rid), headers=DEPOSIT_HEADERS
        )
        assert resp.status == 200, resp.text
    assert await store.transactions.count() == 2


@pytest.mark.parametrize(("overload_ms", "overloaded"), [(0.001, True), (500.0, False)])
async def test_the_overload_threshold_setting_reaches_the_committer(
    tmp_path: Path,
    store: Store,
    handoff: RecordingHandoff,
    caplog: pytest.LogCaptureFixture,
    overload_ms: float,
    overloaded: bool,
) -> None:
    """``AML_INGEST_OVERLOAD_ACK_MS``: with a threshold no write can meet the committer reports
    the store as not keeping up (and moves acks to the spool); with the default it does not.
    Every hook is stored once either way."""
    settings = make_settings(tmp_path, ingest_overload_ack_ms=overload_ms)
    app = make_app(settings, store, handoff)
    for rid in (921, 922, 923):
        _, resp = await app.asgi_client.post(HOOK, content=deposit(rid), headers=DEPOSIT_HEADERS)
        assert resp.status == 200, resp.text
    assert ("store cannot keep up" in caplog.text) is overloaded
    deadline = asyncio.get_running_loop().time() + 20  # a spooled hook is stored by the drainer
    while await store.transactions.count() < 3 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert await store.transactions.count() == 3


async def test_health_ready_and_metrics(app: IngressApp) -> None:
    _, health = await app.asgi_client.get("/healthz")
    assert health.status == 200 and health.json == {"status": "ok"}
    _, ready = await app.asgi_client.get("/readyz")
    assert ready.status == 200 and ready.json["ready"] is True and ready.json["store"] is True
    _, anonymous = await app.asgi_client.get("/metrics")
    assert anonymous.status == 404  # the test client is not a loopback peer
    _, wrong = await app.asgi_client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 404
    _, ok = await app.asgi_client.get(
        "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert ok.status == 200 and "aml_ingest_ack_seconds" in ok.text


async def test_metrics_are_open_to_loopback_peers(app: IngressApp) -> None:
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as client:
        resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")


async def test_unknown_route_is_json_404(app: IngressApp) -> None:
    _, resp = await app.asgi_client.get("/nope")
    assert resp.status == 404 and resp.json["error"] == "not_found"


# --- every body shape end to end --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "dedupe_key", "tx_type", "amount_minor"),
    [
        ("savings_deposit", "SAVINGSACCOUNT|DEPOSIT|345", TransactionType.DEPOSIT, 1500),
        ("savings_withdrawal", "SAVINGSACCOUNT|WITHDRAWAL|346", TransactionType.WITHDRAWAL, 1000),
        ("account_transfer", "ACCOUNTTRANSFER|CREATE|88", TransactionType.TRANSFER, 250),
        ("loan_disburse", "LOAN|DISBURSE|501", TransactionType.LOAN_DISBURSEMENT, 10000),
        ("loan_repayment", "LOAN|REPAYMENT|502", TransactionType.LOAN_REPAYMENT, 951),
    ],
)
async def test_documented_hooks_become_transactions(
    app: IngressApp,
    store: Store,
    handoff: RecordingHandoff,
    name: str,
    dedupe_key: str,
    tx_type: TransactionType,
    amount_minor: int,
) -> None:
    headers, body = fixture(name)
    _, resp = await app.asgi_client.post(HOOK, content=body, headers=headers)
    assert resp.status == 200, resp.text
    assert resp.json["status"] == "accepted"
    tx = await store.transactions.get_by_dedupe_key("default", dedupe_key)
    assert tx is not None and tx.id == resp.json["transaction_id"]
    assert tx.type is tx_type
    assert tx.currency == "XAF" and tx.amount_minor == amount_minor
    record = await store.ingest_log.get(resp.json["event_id"])
    assert record is not None and record.body == body.decode()  # raw body kept as received
    assert record.outcome is IngestOutcome.ACCEPTED
    assert handoff.ids == [tx.id]


async def test_legacy_bare_result_body_is_accepted(app: IngressApp, store: Store) -> None:
    _, body = fixture("legacy_savings_deposit")
    headers = {**DEPOSIT_HEADERS}
    _, resp = await app.asgi_client.post(HOOK, content=body, headers=headers)
    assert resp.status == 200, resp.text
    assert resp.json["status"] in {"accepted", "unsupported"}
    assert await store.ingest_log.get(resp.json["event_id"]) is not None


async def test_form_body_end_to_end(app: IngressApp, store: Store) -> None:
    def enc(text: str) -> str:
        return quote(text, safe="")

    request = (
        "{locale=en, dateFormat=dd MMMM yyyy, transactionDate=15 January 2024, "
        "transactionAmount=1500.5, paymentTypeId=1.0}"
    )
    response = "{clientId=7.0, savingsId=12.0, resourceId=777.0, changes={paymentTypeId=1.0}}"
    body = (
        f"createdByName=mifos&request={enc(request)}&clientId=7.0&createdBy=1.0&officeId=1.0"
        f"&entityName=SAVINGSACCOUNT&response={enc(response)}"
        f"&createdByFullName={enc('App Administrator')}&actionName=DEPOSIT"
        f"&timestamp={enc('2024-01-15T10:20:31.482913Z')}"
    ).encode()
    headers = {**DEPOSIT_HEADERS, "Content-Type": "application/x-www-form-urlencoded"}
    _, resp = await app.asgi_client.post(HOOK, content=body, headers=headers)
    assert resp.status == 200, resp.text
    assert resp.json["status"] == "accepted"
    tx = await store.transactions.get_by_dedupe_key("default", "SAVINGSACCOUNT|DEPOSIT|777")
    assert tx is not None and tx.account_id == "savings:12"


async def test_failed_command_is_logged_as_rejected_and_answered_200(
    app: IngressApp, store: Store, handoff: RecordingHandoff
) -> None:
    headers, body = fixture("failed_withdrawal")
    _, resp = await app.asgi_client.post(HOOK, content=body, headers=headers)
    assert resp.status == 200
    assert resp.json["status"] == "rejected_command"
    assert await store.transactions.count() == 0
    assert await store.ingest_log.count_by_outcome() == {"rejected_command": 1}
    assert handoff.calls == []


async def test_unknown_entity_is_stored_raw_and_answered_200(app: IngressApp, store: Store) -> None:
    body = (
        b'{"createdByName":"mifos","request":{"firstname":"A"},"createdBy":1,'
        b'"entityName":"CLIENT","response":{"clientId":9,"resourceId":9},'
        b'"actionName":"CREATE","timestamp":"2024-01-15T10:20:31Z"}'
    )
    headers = {**DEPOSIT_HEADERS, "X-Fineract-Entity": "CLIENT", "X-Fineract-Action": "CREATE"}
    _, resp = await app.asgi_client.post(HOOK, content=body, headers=headers)
    assert resp.status == 200
    assert resp.json["status"] == "unsupported"
    record = await store.ingest_log.get(resp.json["event_id"])
    assert record is not None and record.body == body.decode()


async def test_same_hook_twice_is_one_transaction(
    app: IngressApp, store: Store, handoff: RecordingHandoff
) -> None:
    _, first = await app.asgi_client.post(HOOK, content=deposit(905), headers=DEPOSIT_HEADERS)
    _, second = await app.asgi_client.post(HOOK, content=deposit(905), headers=DEPOSIT_HEADERS)
    assert first.json["status"] == "accepted"
    assert second.json["status"] == "duplicate"
    assert second.json["transaction_id"] == first.json["transaction_id"]
    assert await store.transactions.count() == 1
    assert len(handoff.ids) == 1


async def test_twenty_concurrent_identical_posts_make_one_transaction_and_one_handoff(
    app: IngressApp, store: Store, handoff: RecordingHandoff
) -> None:
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as client:
        responses = await asyncio.gather(
            *(client.post(HOOK, content=deposit(906), headers=DEPOSIT_HEADERS) for _ in range(20))
        )
    assert all(r.status_code == 200 for r in responses)
    statuses = sorted(r.json()["status"] for r in responses)
    assert statuses == ["accepted"] + ["duplicate"] * 19
    assert len({r.json()["transaction_id"] for r in responses}) == 1
    assert await store.transactions.count() == 1
    assert len(handoff.ids) == 1


# --- bad input: 4xx JSON naming the problem, raw body kept -------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"entityName": "SAVINGSACCOUNT", ', "application/json", 400),
        (b"\xff\xfe\x00garbage", "application/json", 400),
        (b"[1, 2, 3]", "application/json", 422),
        (deposit(907, amount='"lots"'), "application/json", 422),
        (deposit(908, amount="1.0E15"), "application/json", 422),
        (deposit(909), "text/plain", 415),
    ],
)
async def test_bad_input_is_a_clear_4xx_and_kept_raw(
    app: IngressApp, store: Store, body: bytes, content_type: str, status: int
) -> None:
    headers = {**DEPOSIT_HEADERS, "Content-Type": content_type}
    _, resp = await app.asgi_client.post(HOOK, content=body, headers=headers)
    assert resp.status == status, resp.text
    assert resp.json["error"] and resp.json["message"]
    assert await store.transactions.count() == 0
    (record,) = await store.ingest_log.list_recent()
    assert record.outcome is IngestOutcome.INVALID
    assert record.error and record.error.startswith(resp.json["error"])


async def test_date_far_in_the_future_is_refused(app: IngressApp, store: Store) -> None:
    body = deposit(910).replace(b"15 January 2024", b"15 January 2099")
    _, resp = await app.asgi_client.post(HOOK, content=body, headers=DEPOSIT_HEADERS)
    assert resp.status == 422
    assert await store.transactions.count() == 0


async def test_oversized_body_is_413(app: IngressApp, store: Store, settings: Settings) -> None:
    body = b'{"pad":"' + b"x" * settings.max_body_bytes + b'"}'
    _, resp = await app.asgi_client.post(HOOK, content=body, headers=DEPOSIT_HEADERS)
    assert resp.status == 413 and resp.json["error"] == "payload_too_large"
    (record,) = await store.ingest_log.list_recent()
    assert record.outcome is IngestOutcome.INVALID
    assert len(record.body) == settings.max_body_bytes  # kept, truncated to the limit


async def test_request_fields_are_redacted_in_logs_but_stored_raw(
    app: IngressApp, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    body = deposit(911, amount='"lots"').replace(b'"locale":"en"', b'"locale":"en","pin":"4242"')
    with caplog.at_level(logging.INFO):
        _, resp = await app.asgi_client.post(HOOK, content=body, headers=DEPOSIT_HEADERS)
    assert resp.status == 422
    assert all("4242" not in r.getMessage() for r in caplog.records)
    assert any("invalid fineract event" in r.getMessage() for r in caplog.records)
    (record,) = await store.ingest_log.list_recent()
    assert "4242" in record.body


# --- generic source -------------------------------------------------------------------------------


def generic_body(tx_id: str = "g-1") -> bytes:
    return json.dumps(
        {
            "transaction_id": tx_id,
            "transaction_type": "deposit",
            "account_id": "acc-1",
            "client_id": "c-1",
            "amount": "2500",
            "currency": "XAF",
            "transaction_date": "2026-01-15T10:00:00Z",
        }
    ).encode()


def sign(body: bytes) -> str:
    return hmac.new(GENERIC_SECRET.encode(), body, hashlib.sha256).hexdigest()


async def test_generic_signed_event_is_stored(app: IngressApp, store: Store) -> None:
    body = generic_body()
    _, resp = await app.asgi_client.post(
        "/webhooks/generic",
        content=body,
        headers={"Content-Type": "application/json", "X-Webhook-Signature": sign(body)},
    )
    assert resp.status == 200, resp.text
    assert resp.json["status"] == "accepted"
    tx = await store.transactions.get(resp.json["transaction_id"])
    assert tx is not None and tx.source == "generic" and tx.amount_minor == 2500


@pytest.mark.parametrize("signature", [None, "0" * 64, "not-hex"])
async def test_generic_without_valid_signature_is_401_and_not_stored(
    app: IngressApp, store: Store, signature: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Webhook-Signature"] = signature
    _, resp = await app.asgi_client.post(
        "/webhooks/generic", content=generic_body(), headers=headers
    )
    assert resp.status == 401 and resp.json["error"] == "unauthorized"
    assert await store.ingest_log.count_by_outcome() == {}
