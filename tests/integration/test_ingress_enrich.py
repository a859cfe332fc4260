"""Read-back enrichment and reconciliation sweep against a local stand-in for Fineract's API."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from aml.domain import Transaction
from aml.errors import NotFound
from aml.settings import Settings
from serve.fineract_client import (
    BreakerState,
    CircuitBreaker,
    FineractClient,
    FineractUnavailable,
    parse_json,
)
from serve.ingress.app import create_app
from serve.ingress.sweep import sweep
from storage.store import Store
from tests.fakes.fineract_server import FakeFineract
from tests.integration.test_ingress_app import (
    DEPOSIT_HEADERS,
    HOOK,
    deposit,
    fixture,
    make_settings,
    serving,
)
from tests.integration.test_ingress_committer import RecordingHandoff

pytestmark = pytest.mark.integration


@pytest.fixture
def fake() -> Iterator[FakeFineract]:
    server = FakeFineract()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def make_client(fake: FakeFineract, **kwargs: object) -> FineractClient:
    return FineractClient(
        fake.base_url,
        username=fake.username,
        password=fake.password,
        tenant=fake.tenant,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
async def client(fake: FakeFineract) -> AsyncIterator[FineractClient]:
    c = make_client(fake, timeout=1.0)
    yield c
    await c.close()


async def wait_for_tx(store: Store, key: str, *, enriched: bool = True) -> Transaction:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        tx = await store.transactions.get_by_dedupe_key("default", key)
        if tx is not None and tx.enriched == enriched:
            return tx
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key} not enriched in time")


# --- client ------------------------------------------------------------------------------------


def test_decimals_are_parsed_as_decimal_not_float() -> None:
    data = parse_json(b'{"amount":1500.500000,"date":[2024,1,15],"n":3}')
    assert data["amount"] == Decimal("1500.500000") and isinstance(data["amount"], Decimal)
    assert data["n"] == 3


async def test_client_sends_basic_auth_and_tenant(
    fake: FakeFineract, client: FineractClient
) -> None:
    fake.add_savings_transaction("12", "345", amount=Decimal("1500.5"))
    data = await client.savings_transaction("12", "345")
    assert data["amount"] == Decimal("1500.500000")
    wrong = make_client(fake)
    wrong_tenant = FineractClient(
        fake.base_url,
        username=fake.username,
        password="nope",
        tenant=fake.tenant,
    )
    with pytest.raises(Exception, match="401"):
        await wrong_tenant.savings_transaction("12", "345")
    with pytest.raises(NotFound):
        await wrong.savings_transaction("12", "999")
    await wrong.close()
    await wrong_tenant.close()


async def test_breaker_opens_after_failures_and_half_opens_after_cool_down(
    fake: FakeFineract,
) -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=3, cooldown=30.0, clock=lambda: now[0])
    c = make_client(fake, timeout=0.2, breaker=breaker)
    fake.add_savings_transaction("12", "345", amount=Decimal(10))
    fake.delay = 0.5  # slower than the client's timeout
    try:
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(FineractUnavailable):
                await c.savings_transaction("12", "345")
            assert time.monotonic() - started < 0.45  # the timeout cut it short
        assert breaker.state is BreakerState.OPEN
        calls = len(fake.requests)
        with pytest.raises(FineractUnavailable, match="breaker is open"):
            await c.savings_transaction("12", "345")
        assert len(fake.requests) == calls  # failed fast, Fineract not called

        fake.delay = 0.0
        now[0] += 31  # cool-down over: one trial call goes out
        assert breaker.state is BreakerState.HALF_OPEN  # type: ignore[comparison-overlap]
        assert (await c.savings_transaction("12", "345"))["id"] == 345
        assert breaker.state is BreakerState.CLOSED
    finally:
        await c.close()


async def test_failed_trial_reopens_the_breaker(fake: FakeFineract) -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=1, cooldown=5.0, clock=lambda: now[0])
    c = make_client(fake, breaker=breaker)
    fake.fail_status = 503
    try:
        with pytest.raises(FineractUnavailable):
            await c.savings_transaction("12", "1")
        now[0] += 6
        with pytest.raises(FineractUnavailable, match="503"):
            await c.savings_transaction("12", "1")  # the trial
        assert breaker.state is BreakerState.OPEN
    finally:
        await c.close()


# --- enrichment through the ingress -------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


async def post_hook(base: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base) as http:
        return await http.post(HOOK, content=body, headers=headers)


async def test_hooked_deposit_is_enriched_with_currency_balance_and_account_no(
    fake: FakeFineract, client: FineractClient, settings: Settings, store: Store
) -> None:
    fake.add_savings_transaction(
        "12",
        "345",
        amount=Decimal("1500.5"),
        running_balance=Decimal("9500.5"),
        currency_code="USD",
        decimals=2,
    )
    app = create_app(settings, store=store, fineract=client, name=f"i-{uuid.uuid4().hex[:10]}")
    headers, body = fixture("savings_deposit")
    async with serving(app) as base:
        resp = await post_hook(base, body, headers)
        assert resp.status_code == 200
        tx = await wait_for_tx(store, "SAVINGSACCOUNT|DEPOSIT|345")
    assert tx.currency == "USD"
    assert tx.amount_minor == 150050  # re-read in the real currency
    assert tx.running_balance_minor == 950050
    assert tx.account_no == "000000012"
    assert tx.reversed is False
    assert "/savingsaccounts/12/transactions/345" in fake.requests[0]


async def test_transfer_gets_its_counterparty_and_reversal(
    fake: FakeFineract, client: FineractClient, settings: Settings, store: Store
) -> None:
    fake.add_transfer("88", amount=Decimal(250), to_account=15, reversed_=True)
    app = create_app(settings, store=store, fineract=client, name=f"i-{uuid.uuid4().hex[:10]}")
    headers, body = fixture("account_transfer")
    async with serving(app) as base:
        assert (await post_hook(base, body, headers)).status_code == 200
        tx = await wait_for_tx(store, "ACCOUNTTRANSFER|CREATE|88")
    assert tx.counterparty_account_id == "savings:15"
    assert tx.counterparty_client_id == "9"
    assert tx.counterparty_name == "Kofi Receiver"
    assert tx.account_no == "000000012"
    assert tx.reversed  # the embedded store hands booleans set by $set back as 1
    assert "accountDetailId=88" in fake.requests[0]


async def test_loan_repayment_gets_outstanding_balance(
    fake: FakeFineract, client: FineractClient, settings: Settings, store: Store
) -> None:
    fake.add_loan_transaction("21", "502", amount=Decimal("950.75"), outstanding=Decimal(9049))
    app = create_app(settings, store=store, fineract=client, name=f"i-{uuid.uuid4().hex[:10]}")
    headers, body = fixture("loan_repayment")
    async with serving(app) as base:
        assert (await post_hook(base, body, headers)).status_code == 200
        tx = await wait_for_tx(store, "LOAN|REPAYMENT|502")
    assert tx.running_balance_minor == 9049


async def test_slow_fineract_never_slows_the_ack(
    fake: FakeFineract, settings: Settings, store: Store
) -> None:
    fake.delay = 1.5
    slow_client = make_client(fake, timeout=1.0)
    app = create_app(settings, store=store, fineract=slow_client, name=f"i-{uuid.uuid4().hex[:10]}")
    try:
        async with serving(app) as base:
            started = time.monotonic()
            resp = await post_hook(base, deposit(4242), DEPOSIT_HEADERS)
            assert resp.status_code == 200
            assert time.monotonic() - started < 0.5
        tx = await store.transactions.get_by_dedupe_key("default", "SAVINGSACCOUNT|DEPOSIT|4242")
        assert tx is not None and tx.enriched is False  # read-back timed out: left as is
    finally:
        await slow_client.close()


# --- sweep --------------------------------------------------------------------------------------


async def test_sweep_ingests_what_hooks_missed_and_dedupes_against_hooks(
    fake: FakeFineract, client: FineractClient, settings: Settings, store: Store, tmp_path: Path
) -> None:
    day = date(2024, 1, 15)
    fake.add_savings_transaction("12", "345", amount=Decimal("1500.5"), on=day)  # hooked
    fake.add_savings_transaction("12", "346", amount=Decimal(1000), type_id=2, on=day)  # missed
    fake.add_savings_transaction("12", "347", amount=Decimal(3), type_id=3, on=day)  # interest
    fake.add_savings_transaction("12", "348", amount=Decimal(70), on=day, reversed_=True)
    fake.add_savings_transaction("12", "349", amount=Decimal(250), type_id=2, on=day, transfer_id=5)
    fake.add_savings_transaction("12", "300", amount=Decimal(5), on=date(2023, 12, 1))  # too old
    fake.add_loan_transaction("21", "501", amount=Decimal(10000), type_id=1, on=day)  # missed
    fake.add_loan_transaction("21", "502", amount=Decimal("950.75"), on=day)  # hooked

    handoff = RecordingHandoff()
    app = create_app(settings, store=store, handoff=handoff, name=f"i-{uuid.uuid4().hex[:10]}")
    async with serving(app) as base:
        for name in ("savings_deposit", "loan_repayment"):
            headers, body = fixture(name)
            assert (await post_hook(base, body, headers)).status_code == 200
    assert await store.transactions.count() == 2

    report = await sweep(
        store,
        client,
        date(2024, 1, 1),
        ["savings:12", "loan:21", "savings:404"],
        spool_dir=tmp_path / "sweep-spool",
        handoff=handoff,
    )
    assert report.listed == 7
    assert report.ingested == 2 and report.duplicates == 2 and report.skipped == 3
    assert report.failed_accounts == ["savings:404"]
    assert await store.transactions.count() == 4
    missed = await store.transactions.get_by_dedupe_key("default", "SAVINGSACCOUNT|WITHDRAWAL|346")
    assert missed is not None and missed.amount_minor == 1000 and missed.source == "sweep"
    disbursed = await store.transactions.get_by_dedupe_key("default", "LOAN|DISBURSE|501")
    assert disbursed is not None and disbursed.account_id == "loan:21"
    assert len(handoff.ids) == 4  # 2 from hooks, 2 from the sweep: each once

    again = await sweep(
        store, client, date(2024, 1, 1), ["savings:12", "loan:21"], spool_dir=tmp_path / "s2"
    )
    assert again.ingested == 0 and again.duplicates == 4
    assert await store.transactions.count() == 4
