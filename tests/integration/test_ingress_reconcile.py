"""Reconciliation against a local stand-in for Fineract: what an undo or adjust reversed, and
transfers whose hook was lost, found by the sweep."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aml.domain import Transaction, TransactionStatus, TransactionType
from aml.settings import Settings
from serve.fineract_client import FineractClient
from serve.ingress.app import IngressApp, create_app
from serve.ingress.sweep import sweep
from storage.store import Store
from tests.fakes.fineract_server import FakeFineract
from tests.integration.test_ingress_app import (
    DEPOSIT_HEADERS,
    deposit,
    fixture,
    make_settings,
    serving,
)
from tests.integration.test_ingress_committer import RecordingHandoff
from tests.integration.test_ingress_enrich import make_client, post_hook, wait_for_tx

pytestmark = pytest.mark.integration

SINCE = date(2024, 1, 1)
TRANSFER_DAY = date(2024, 1, 17)


@pytest.fixture
def fake() -> Iterator[FakeFineract]:
    server = FakeFineract()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def client(fake: FakeFineract) -> AsyncIterator[FineractClient]:
    c = make_client(fake, timeout=1.0)
    yield c
    await c.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def ingress(settings: Settings, store: Store, client: FineractClient | None) -> IngressApp:
    return create_app(settings, store=store, fineract=client, name=f"i-{uuid.uuid4().hex[:10]}")


def correction_hook(action: str, response: dict[str, Any], **request: Any) -> bytes:
    """A savings or loan correction hook (wrapper shape) as Fineract sends it."""
    entity = "LOAN" if action == "ADJUST" else "SAVINGSACCOUNT"
    return json.dumps(
        {
            "createdByName": "mifos",
            "request": request,
            "clientId": 7,
            "createdBy": 1,
            "officeId": 1,
            "entityName": entity,
            "response": {"clientId": 7, **response},
            "actionName": action,
            "timestamp": "2024-01-20T08:00:00.123Z",
        }
    ).encode()


def headers_for(body: bytes) -> dict[str, str]:
    data = json.loads(body)
    return DEPOSIT_HEADERS | {
        "X-Fineract-Entity": data["entityName"],
        "X-Fineract-Action": data["actionName"],
    }


async def corrections(store: Store, account_id: str) -> list[Transaction]:
    items, _ = await store.transactions.search(account_id=account_id)
    return [tx for tx in items if tx.status is TransactionStatus.CORRECTION]


async def wait_until(check: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not seen in time")


# --- what an undo or adjust reversed -------------------------------------------------------------


async def test_undo_marks_the_deposit_fineract_shows_reversed_and_nothing_else(
    fake: FakeFineract, client: FineractClient, settings: Settings, store: Store
) -> None:
    fake.add_savings_transaction("12", "344", amount=Decimal(700))
    fake.add_savings_transaction("12", "345", amount=Decimal("1500.5"))
    app = ingress(settings, store, client)
    async with serving(app) as base:
        for tx_id in (344, 345):
            assert (await post_hook(base, deposit(tx_id), DEPOSIT_HEADERS)).status_code == 200
        kept_before = await wait_for_tx(store, "SAVINGSACCOUNT|DEPOSIT|344")
        await wait_for_tx(store, "SAVINGSACCOUNT|DEPOSIT|345")

        fake.reverse("savings", "12", "345")  # the teller undid deposit 345
        undo = correction_hook("UNDOTRANSACTION", {"savingsId": 12, "resourceId": 12})
        resp = await post_hook(base, undo, headers_for(undo))
        assert resp.status_code == 200 and resp.json()["status"] == "correction"

        async def undone() -> bool:
            tx = await store.transactions.get_by_dedupe_key("default", "SAVINGSACCOUNT|DEPOSIT|345")
            return tx is not None and bool(tx.reversed)

        await wait_until(undone, "deposit 345 reversed")
        await app.ctx.enricher.wait_idle()  # type: ignore[union-attr]

    [correction] = await corrections(store, "savings:12")
    assert correction.type is TransactionType.REVERSAL
    assert correction.reverses_external_id == "345"  # now analysts see what it undid
    assert await store.transactions.get_by_dedupe_key("default", kept_before.dedupe_key) == (
        kept_before
    )
    assert await store.transactions.count() == 3
    assert any("/savingsaccounts/12?associations=transactions" in r for r in fake.requests)


async def test_undo_while_fineract_is_down_is_still_stored_and_acknowledged(
    fake: FakeFineract,
    client: FineractClient,
    settings: Settings,
    store: Store,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.add_savings_transaction("12", "345", amount=Decimal("1500.5"))
    app = ingress(settings, store, client)
    caplog.set_level(logging.INFO, logger="serve.ingress.enrich")
    async with serving(app) as base:
        assert (await post_hook(base, deposit(345), DEPOSIT_HEADERS)).status_code == 200
        await wait_for_tx(store, "SAVINGSACCOUNT|DEPOSIT|345")
        fake.reverse("savings", "12", "345")
        fake.fail_status = 503
        undo = correction_hook("UNDOTRANSACTION", {"savingsId": 12, "resourceId": 12})
        resp = await post_hook(base, undo, headers_for(undo))
        assert resp.status_code == 200 and resp.json()["status"] == "correction"
        await app.ctx.enricher.wait_idle()  # type: ignore[union-attr]
        # The ingress keeps working: the next hook is acknowledged and stored too.
        assert (await post_hook(base, deposit(346), DEPOSIT_HEADERS)).status_code == 200

    [correction] = await corrections(store, "savings:12")
    assert correction.reverses_external_id is None and correction.enriched is False
    deposit_tx = await store.transactions.get_by_dedupe_key("default", "SAVINGSACCOUNT|DEPOSIT|345")
    assert deposit_tx is not None and deposit_tx.reversed is False
    assert await store.transactions.get_by_dedupe_key("default", "SAVINGSACCOUNT|DEPOSIT|346")
    assert any(
        "reversal check of correction" in r.getMessage() and "503" in r.getMessage()
        for r in caplog.records
    )


async def test_sweep_marks_a_reversal_the_correction_did_not_reconcile(
    fake: FakeFineract, client: FineractClient, settings: Settings, store: Store, tmp_path: Path
) -> None:
    fake.add_savings_transaction("12", "345", amount=Decimal("1500.5"))
    fake.add_savings_transaction("12", "346", amount=Decimal(90))
    app = ingress(settings, store, client)
    async with serving(app) as base:
        for tx_id in (345, 346):
            assert (await post_hook(base, deposit(tx_id), DEPOSIT_HEADERS)).status_code == 200
        await wait_for_tx(store, "SAVINGSACCOUNT|DEPOSIT|346")
    fake.reverse("savings", "12", "345")  # undone in Fineract; its hook never arrived

    report = await sweep(store, client, SINCE, ["savings:12"], spool_dir=tmp_path / "s1")
    assert report.reversed == 1 and report.ingested == 0
    undone = await store.transactions.get_by_dedupe_key("default", "SAVINGSACCOUNT|DEPOSIT|345")
    kept = await store.transactions.get_by_dedupe_key("default", "SAVINGSACCOUNT|DEPOSIT|346")
    assert undone is not None and undone.reversed is True
    assert kept is not None and kept.reversed is False
    again = await sweep(store, client, SINCE, ["savings:12"], spool_dir=tmp_path / "s2")
    assert again.reversed == 0  # already marked: nothing new to report


async def test_loan_adjust_marks_the_repayment_fineract_shows_reversed(
    fake: FakeFineract, client: FineractClient, settings: Settings, store: Store
) -> None:
    fake.add_loan_transaction("21", "501", amount=Decimal(10000), type_id=1)
    fake.add_loan_transaction("21", "502", amount=Decimal("950.75"))
    app = ingress(settings, store, client)
    async with serving(app) as base:
        for name in ("loan_disburse", "loan_repayment"):
            headers, body = fixture(name)
            assert (await post_hook(base, body, headers)).status_code == 200
        await wait_for_tx(store, "LOAN|REPAYMENT|502")
        disbursed = await wait_for_tx(store, "LOAN|DISBURSE|501")

        fake.reverse("loan", "21", "502")
        adjust = correction_hook(
            "ADJUST",
            {"loanId": 21, "resourceId": 502, "changes": {"transactionAmount": "0"}},
            transactionAmount="0",
            transactionDate="31 January 2024",
            dateFormat="dd MMMM yyyy",
            locale="en",
        )
        assert (await post_hook(base, adjust, headers_for(adjust))).status_code == 200

        async def undone() -> bool:
            tx = await store.transactions.get_by_dedupe_key("default", "LOAN|REPAYMENT|502")
            return tx is not None and bool(tx.reversed)

        await wait_until(undone, "repayment 502 reversed")
    assert await store.transactions.get_by_dedupe_key("default", "LOAN|DISBURSE|501") == disbursed


# --- transfers whose hook was lost -------------------------------------------------------------


def add_transfer_with_legs(
    fake: FakeFineract,
    detail_id: str,
    transfer_id: int,
    *,
    legs: tuple[str, str],
    to_loan: bool = False,
) -> None:
    """A transfer of 250 from savings 12 to savings 15 (or loan 21), and its two listed legs."""
    to_account = 21 if to_loan else 15
    fake.add_transfer(
        detail_id,
        transfer_id=transfer_id,
        amount=Decimal(250),
        on=TRANSFER_DAY,
        to_account=to_account,
        to_loan=to_loan,
    )
    out_leg, in_leg = legs
    fake.add_savings_transaction(
        "12", out_leg, amount=Decimal(250), type_id=2, on=TRANSFER_DAY, transfer_id=transfer_id
    )
    if to_loan:
        fake.add_loan_transaction(
            "21", in_leg, amount=Decimal(250), on=TRANSFER_DAY, transfer_id=transfer_id
        )
    else:
        fake.add_savings_transaction(
            "15", in_leg, amount=Decimal(250), on=TRANSFER_DAY, transfer_id=transfer_id
        )


async def test_swept_transfer_is_stored_once_however_often_it_is_seen(
    fake: FakeFineract, client: FineractClient, settings: Settings, store: Store, tmp_path: Path
) -> None:
    add_transfer_with_legs(fake, "88", 88, legs=("350", "351"))
    handoff = RecordingHandoff()

    first = await sweep(
        store, client, SINCE, ["savings:12"], spool_dir=tmp_path / "s1", handoff=handoff
    )
    assert (first.ingested, first.skipped, first.unresolved_transfers) == (1, 0, [])
    tx = await store.transactions.get_by_dedupe_key("default", "ACCOUNTTRANSFER|CREATE|88")
    assert tx is not None
    assert (tx.type, tx.amount_minor, tx.source) == (TransactionType.TRANSFER, 250, "sweep")
    assert (tx.account_id, tx.counterparty_account_id) == ("savings:12", "savings:15")
    assert (tx.client_id, tx.counterparty_client_id) == ("7", "9")
    assert handoff.ids == [tx.id]  # scored like any other transaction

    both = await sweep(
        store, client, SINCE, ["savings:12", "savings:15"], spool_dir=tmp_path / "s2"
    )
    assert (both.ingested, both.duplicates) == (0, 2)
    assert await store.transactions.count() == 1

    # The hook was only late, not lost: it is the same transaction.
    app = ingress(settings, store, None)
    async with serving(app) as base:
        headers, body = fixture("account_transfer")
        resp = await post_hook(base, body, headers)
    assert resp.status_code == 200
    assert resp.json()["status"] == "duplicate" and resp.json()["transaction_id"] == tx.id
    assert await store.transactions.count() == 1


async def test_savings_to_loan_transfer_is_one_transfer_not_also_a_repayment(
    fake: FakeFineract, client: FineractClient, store: Store, tmp_path: Path
) -> None:
    add_transfer_with_legs(fake, "89", 89, legs=("352", "503"), to_loan=True)
    report = await sweep(store, client, SINCE, ["loan:21", "savings:12"], spool_dir=tmp_path)
    assert (report.ingested, report.duplicates) == (1, 1)
    assert await store.transactions.count() == 1
    tx = await store.transactions.get_by_dedupe_key("default", "ACCOUNTTRANSFER|CREATE|89")
    assert tx is not None and (tx.counterparty_account_id, tx.loan_id) == ("loan:21", "21")


async def test_transfer_whose_detail_cannot_be_identified_is_reported_not_guessed(
    fake: FakeFineract, client: FineractClient, store: Store, tmp_path: Path
) -> None:
    # A standing instruction ran earlier, so detail 90's transaction has id 95.
    add_transfer_with_legs(fake, "90", 95, legs=("353", "354"))
    report = await sweep(store, client, SINCE, ["savings:12", "savings:15"], spool_dir=tmp_path)
    assert (report.ingested, report.skipped) == (0, 2)
    assert report.unresolved_transfers == ["95"]
    assert await store.transactions.count() == 0
    assert sum("accountDetailId=95" in r for r in fake.requests) == 1  # one look-up per transfer


async def test_hooked_transfer_with_drifted_ids_is_recognised_not_reported(
    fake: FakeFineract, client: FineractClient, settings: Settings, store: Store, tmp_path: Path
) -> None:
    add_transfer_with_legs(fake, "90", 95, legs=("353", "354"))
    headers, body = fixture("account_transfer")
    body = body.replace(b'"resourceId":88', b'"resourceId":90')
    app = ingress(settings, store, client)
    async with serving(app) as base:
        assert (await post_hook(base, body, headers)).status_code == 200
        hooked = await wait_for_tx(store, "ACCOUNTTRANSFER|CREATE|90")
    assert hooked.attributes["transfer_id"] == 95  # recorded by the read-back

    report = await sweep(store, client, SINCE, ["savings:12", "savings:15"], spool_dir=tmp_path)
    assert (report.ingested, report.duplicates, report.unresolved_transfers) == (0, 2, [])
    assert await store.transactions.count() == 1


async def test_scheduled_sweep_also_lists_the_accounts_hooked_transfers_paid_into(
    fake: FakeFineract, store: Store, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from pydantic import SecretStr

    from tests.factories import make_tx
    from tests.integration.test_ingress_app import make_settings
    from training.scheduler import Schedule, product_jobs

    now = datetime.now(UTC)
    hooked = make_tx(
        dedupe_key="ACCOUNTTRANSFER|CREATE|70",
        type=TransactionType.TRANSFER,
        account_id="savings:12",
        counterparty_account_id="savings:15",
        occurred_at=now - timedelta(days=1),
        received_at=now - timedelta(days=1),
    )
    await store.transactions.insert_many([hooked])
    # A deposit on the receiving account whose hook was lost.
    fake.add_savings_transaction(
        "15", "777", amount=Decimal(40), on=(now - timedelta(days=1)).date()
    )
    settings = make_settings(
        tmp_path,
        fineract_base_url=fake.base_url,
        fineract_username=fake.username,
        fineract_password=SecretStr(fake.password),
        fineract_tenant=fake.tenant,
    )
    off = Schedule(
        retrain_xgboost=None,
        retrain_anomaly=None,
        drift=None,
        credit_score_all=None,
        credit_kmeans=None,
    )
    [job] = product_jobs(store, settings, off)
    assert job.name == "fineract-sweep"
    await job.run(now)
    assert await store.transactions.get_by_dedupe_key(fake.tenant, "SAVINGSACCOUNT|DEPOSIT|777")
