"""Swept transfers and reversal look-ups agree with the hook parser's keys and fields."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aml.domain import Direction, TransactionType
from serve.fineract_client import parse_json
from serve.ingest.events import ParseOptions
from serve.ingest.fineract import parse_fineract
from serve.ingress.enrich import reversed_keys
from serve.ingress.sweep import loan_transaction, savings_transaction, transfer_transaction

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fineract"
RECEIVED = datetime(2024, 1, 18, 8, 0, tzinfo=UTC)

# ``GET /accounttransfers?accountDetailId=88`` for the documented transfer (§2.3 and §2.7 of the
# Fineract events notes): 250 XAF from savings 12 (client 7) to savings 15 (client 9).
TRANSFER_DATA = parse_json(
    b'{"id":88,"reversed":false,"currency":{"code":"XAF","name":"CFA Franc BEAC",'
    b'"decimalPlaces":0,"inMultiplesOf":1,"displaySymbol":"FCFA","nameCode":"currency.XAF",'
    b'"displayLabel":"CFA Franc BEAC (FCFA)"},"transferAmount":250.000000,'
    b'"transferDate":[2024,1,17],"transferDescription":"Rent share",'
    b'"fromOffice":{"id":1,"name":"Head Office"},'
    b'"fromClient":{"id":7,"displayName":"Ama Client","officeId":1,"officeName":"Head Office"},'
    b'"fromAccountType":{"id":2,"code":"accountType.savings","value":"Savings"},'
    b'"fromAccount":{"id":12,"accountNo":"000000012"},'
    b'"toOffice":{"id":1,"name":"Head Office"},'
    b'"toClient":{"id":9,"displayName":"Kofi Receiver","officeId":1,"officeName":"Head Office"},'
    b'"toAccountType":{"id":2,"code":"accountType.savings","value":"Savings"},'
    b'"toAccount":{"id":15,"accountNo":"000000015"}}'
)


def hooked_transfer() -> Any:
    event = parse_fineract(
        {"Fineract-Platform-TenantId": "default"},
        (FIXTURES / "account_transfer.json").read_bytes(),
        content_type="application/json; charset=UTF-8",
        received_at=RECEIVED,
        options=ParseOptions(),
    )
    assert event.transaction is not None
    return event.transaction


def swept(data: dict[str, Any], detail_id: str = "88") -> Any:
    return transfer_transaction(
        data,
        detail_id=detail_id,
        tenant="default",
        received_at=RECEIVED,
        default_currency="XAF",
        tz="Africa/Douala",
    )


def test_swept_transfer_is_the_transaction_its_hook_would_have_stored() -> None:
    hook = hooked_transfer()
    tx = swept(TRANSFER_DATA)
    assert (tx.id, tx.dedupe_key, tx.external_id) == (hook.id, hook.dedupe_key, hook.external_id)
    assert tx.dedupe_key == "ACCOUNTTRANSFER|CREATE|88"
    for name in (
        "type",
        "direction",
        "amount_minor",
        "currency",
        "occurred_at",
        "account_id",
        "client_id",
        "office_id",
        "branch_id",
        "loan_id",
        "counterparty_account_id",
        "counterparty_client_id",
        "description",
    ):
        assert getattr(tx, name) == getattr(hook, name), name
    assert (tx.type, tx.direction) == (TransactionType.TRANSFER, Direction.OUT)
    assert (tx.account_id, tx.counterparty_account_id) == ("savings:12", "savings:15")
    assert (tx.counterparty_name, tx.account_no, tx.source) == (
        "Kofi Receiver",
        "000000012",
        "sweep",
    )


def test_savings_to_loan_transfer_names_the_loan() -> None:
    data = TRANSFER_DATA | {
        "toAccountType": {"id": 1, "code": "accountType.loan", "value": "Loan"},
        "toAccount": {"id": 21, "accountNo": "000000021"},
    }
    tx = swept(data)
    assert (tx.counterparty_account_id, tx.loan_id) == ("loan:21", "21")


def test_reversed_or_incomplete_transfers_are_not_swept() -> None:
    assert swept(TRANSFER_DATA | {"reversed": True}) is None
    assert swept({k: v for k, v in TRANSFER_DATA.items() if k != "fromAccount"}) is None
    assert swept({k: v for k, v in TRANSFER_DATA.items() if k != "transferDate"}) is None


def test_transfer_legs_are_not_swept_as_deposits_or_repayments() -> None:
    common: dict[str, Any] = {
        "tenant": "default",
        "client_id": "7",
        "received_at": RECEIVED,
        "default_currency": "XAF",
        "tz": "Africa/Douala",
    }
    deposit_leg = {
        "id": 351,
        "transactionType": {"id": 1, "deposit": True, "withdrawal": False},
        "date": [2024, 1, 17],
        "amount": 250,
        "transfer": {"id": 88, "reversed": False},
    }
    repayment_leg = {
        "id": 503,
        "type": {"id": 2, "repayment": True, "disbursement": False},
        "date": [2024, 1, 17],
        "amount": 250,
        "transfer": {"id": 88, "reversed": False},
    }
    assert savings_transaction(deposit_leg, savings_id="15", **common) is None
    assert loan_transaction(repayment_leg, loan_id="21", **common) is None
    del deposit_leg["transfer"], repayment_leg["transfer"]
    assert savings_transaction(deposit_leg, savings_id="15", **common) is not None
    assert loan_transaction(repayment_leg, loan_id="21", **common) is not None
    # The entry a REVERSETRANSACTION adds undoes money; it is not a new deposit.
    assert (
        savings_transaction(deposit_leg | {"isReversal": True}, savings_id="15", **common) is None
    )


def test_reversed_keys_name_only_reversed_money_movements_as_hooks_key_them() -> None:
    savings = [
        {"id": 345, "transactionType": {"deposit": True}, "reversed": True},
        {"id": 346, "transactionType": {"withdrawal": True}, "reversed": True},
        {"id": 347, "transactionType": {"deposit": True}, "reversed": False},
        {"id": 348, "transactionType": {"interestPosting": True}, "reversed": True},
        {"id": 349, "transactionType": {"withdrawal": True}, "reversed": True, "transfer": {}},
    ]
    assert reversed_keys("savings", savings) == [
        "SAVINGSACCOUNT|DEPOSIT|345",
        "SAVINGSACCOUNT|WITHDRAWAL|346",
    ]
    loans = [
        {"id": 501, "type": {"disbursement": True}, "manuallyReversed": True},
        {"id": 502, "type": {"repayment": True}, "manuallyReversed": True},
        {"id": 503, "type": {"repayment": True}, "manuallyReversed": False},
    ]
    assert reversed_keys("loan", loans) == ["LOAN|DISBURSE|501", "LOAN|REPAYMENT|502"]
