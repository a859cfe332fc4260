"""A small local stand-in for Apache Fineract's REST API (the external system in tests).

Answers the read-back endpoints the product calls, in Fineract's documented response shapes
(``BigDecimal`` as JSON numbers with scale 6, ``LocalDate`` as ``[y, m, d]``, nulls left out),
requires Basic auth and ``Fineract-Platform-TenantId``, and can be made slow or failing to
exercise timeouts and the circuit breaker. Runs a real HTTP server on loopback in a thread.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PREFIX = "/fineract-provider/api/v1"


def _dump(value: Any) -> str:
    """JSON as Fineract's Gson writes it: decimals with the database scale of 6."""
    if isinstance(value, Decimal):
        return f"{value:.6f}"
    if isinstance(value, bool) or value is None or isinstance(value, (int, str, float)):
        return json.dumps(value)
    if isinstance(value, date):
        return json.dumps([value.year, value.month, value.day])
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    raise TypeError(type(value))


def currency(code: str = "XAF", decimals: int = 0) -> dict[str, Any]:
    return {
        "code": code,
        "name": code,
        "decimalPlaces": decimals,
        "inMultiplesOf": 1,
        "displaySymbol": code,
        "nameCode": f"currency.{code}",
        "displayLabel": f"{code} ({code})",
    }


def _account_type(loan: bool) -> dict[str, Any]:
    if loan:
        return {"id": 1, "code": "accountType.loan", "value": "Loan"}
    return {"id": 2, "code": "accountType.savings", "value": "Savings"}


def _transfer_ref(
    transfer_id: int, amount: Decimal, on: date, currency_code: str, decimals: int
) -> dict[str, Any]:
    """The ``transfer`` part of a transfer leg in an account's transaction list."""
    return {
        "id": transfer_id,
        "reversed": False,
        "currency": currency(currency_code, decimals),
        "transferAmount": amount,
        "transferDate": on,
        "transferDescription": "Rent share",
    }


_SAVINGS_TYPES = {
    1: ("savingsAccountTransactionType.deposit", "Deposit", "deposit"),
    2: ("savingsAccountTransactionType.withdrawal", "Withdrawal", "withdrawal"),
    3: ("savingsAccountTransactionType.interestPosting", "Interest Posting", "interestPosting"),
}
_LOAN_TYPES = {
    1: ("loanTransactionType.disbursement", "Disbursement", "disbursement"),
    2: ("loanTransactionType.repayment", "Repayment", "repayment"),
}


@dataclass
class FakeFineract:
    """In-memory Fineract with the read endpoints the product uses."""

    username: str = "mifos"
    password: str = "password"
    tenant: str = "default"
    delay: float = 0.0  # seconds to wait before answering (slow Fineract)
    fail_status: int | None = None  # answer every request with this status (e.g. 503)
    savings_tx: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    loan_tx: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # accountDetailId -> the transfer transactions of that detail (a standing instruction's
    # detail gets one per execution, so the two ids drift apart).
    transfers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    savings_accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    loans: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    base_url: str = ""  # set by start()
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # --- data ------------------------------------------------------------------------------

    def _savings_account(self, savings_id: str) -> dict[str, Any]:
        return self.savings_accounts.setdefault(
            savings_id,
            {
                "id": int(savings_id),
                "accountNo": f"{int(savings_id):09d}",
                "clientId": 7,
                "clientName": "Ama Client",
                "currency": currency(),
                "summary": {"accountBalance": Decimal(0)},
                "transactions": [],
            },
        )

    def add_savings_transaction(
        self,
        savings_id: str,
        tx_id: str,
        *,
        amount: Decimal,
        type_id: int = 1,
        on: date = date(2024, 1, 15),
        running_balance: Decimal = Decimal(0),
        currency_code: str = "XAF",
        decimals: int = 0,
        reversed_: bool = False,
        transfer_id: int | None = None,
    ) -> dict[str, Any]:
        """Register a savings transaction (also listed under its account)."""
        code, value, flag = _SAVINGS_TYPES[type_id]
        tx: dict[str, Any] = {
            "id": int(tx_id),
            "transactionType": {
                "id": type_id,
                "code": code,
                "value": value,
                "deposit": flag == "deposit",
                "withdrawal": flag == "withdrawal",
                "interestPosting": flag == "interestPosting",
            },
            "entryType": "CREDIT" if flag != "withdrawal" else "DEBIT",
            "accountId": int(savings_id),
            "accountNo": f"{int(savings_id):09d}",
            "date": on,
            "currency": currency(currency_code, decimals),
            "amount": amount,
            "runningBalance": running_balance,
            "reversed": reversed_,
            "submittedOnDate": on,
            "isReversal": False,
            "originalTransactionId": 0,
        }
        if transfer_id is not None:
            tx["transfer"] = _transfer_ref(transfer_id, amount, on, currency_code, decimals)
        self.savings_tx[(savings_id, tx_id)] = tx
        account = self._savings_account(savings_id)
        account["currency"] = currency(currency_code, decimals)
        account["transactions"].insert(0, tx)  # Fineract lists newest first
        return tx

    def add_loan_transaction(
        self,
        loan_id: str,
        tx_id: str,
        *,
        amount: Decimal,
        type_id: int = 2,
        on: date = date(2024, 1, 31),
        outstanding: Decimal = Decimal(0),
        currency_code: str = "XAF",
        manually_reversed: bool = False,
        transfer_id: int | None = None,
    ) -> dict[str, Any]:
        """Register a loan transaction (also listed under its loan)."""
        code, value, flag = _LOAN_TYPES[type_id]
        tx: dict[str, Any] = {
            "id": int(tx_id),
            "loanId": int(loan_id),
            "officeId": 1,
            "officeName": "Head Office",
            "type": {
                "id": type_id,
                "code": code,
                "value": value,
                "disbursement": flag == "disbursement",
                "repayment": flag == "repayment",
            },
            "date": on,
            "currency": currency(currency_code),
            "amount": amount,
            "principalPortion": amount,
            "outstandingLoanBalance": outstanding,
            "manuallyReversed": manually_reversed,
        }
        if transfer_id is not None:
            tx["transfer"] = _transfer_ref(transfer_id, amount, on, currency_code, 0)
        self.loan_tx[(loan_id, tx_id)] = tx
        loan = self.loans.setdefault(
            loan_id,
            {
                "id": int(loan_id),
                "accountNo": f"{int(loan_id):09d}",
                "clientId": 7,
                "currency": currency(currency_code),
                "transactions": [],
            },
        )
        loan["transactions"].append(tx)
        return tx

    def add_transfer(
        self,
        detail_id: str,
        *,
        amount: Decimal,
        transfer_id: int | None = None,
        on: date = date(2024, 1, 17),
        from_account: int = 12,
        to_account: int = 15,
        from_client: tuple[int, str] = (7, "Ama Client"),
        to_client: tuple[int, str] = (9, "Kofi Receiver"),
        from_loan: bool = False,
        to_loan: bool = False,
        reversed_: bool = False,
    ) -> dict[str, Any]:
        """Register one transaction of account transfer detail ``detail_id`` (``AccountTransfer
        Data``), found by ``accountDetailId`` and by its own id (``transfer_id``, by default
        unlike the detail id, as in a Fineract whose standing instructions have run)."""
        data: dict[str, Any] = {
            "id": transfer_id if transfer_id is not None else int(detail_id) + 1000,
            "reversed": reversed_,
            "currency": currency(),
            "transferAmount": amount,
            "transferDate": on,
            "transferDescription": "Rent share",
            "fromOffice": {"id": 1, "name": "Head Office"},
            "fromClient": {
                "id": from_client[0],
                "displayName": from_client[1],
                "officeId": 1,
                "officeName": "Head Office",
            },
            "fromAccountType": _account_type(from_loan),
            "fromAccount": {"id": from_account, "accountNo": f"{from_account:09d}"},
            "toOffice": {"id": 1, "name": "Head Office"},
            "toClient": {
                "id": to_client[0],
                "displayName": to_client[1],
                "officeId": 1,
                "officeName": "Head Office",
            },
            "toAccountType": _account_type(to_loan),
            "toAccount": {"id": to_account, "accountNo": f"{to_account:09d}"},
        }
        self.transfers.setdefault(detail_id, []).append(data)
        return data

    def reverse(self, kind: str, account_id: str, tx_id: str) -> None:
        """Undo a registered transaction as Fineract does: it stays listed, flagged reversed."""
        if kind == "savings":
            self.savings_tx[(account_id, tx_id)]["reversed"] = True
        else:
            self.loan_tx[(account_id, tx_id)]["manuallyReversed"] = True

    # --- HTTP ------------------------------------------------------------------------------

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        parts = path.removeprefix(PREFIX).strip("/").split("/")
        found: Any = None
        if parts[0] == "savingsaccounts" and len(parts) == 4 and parts[2] == "transactions":
            found = self.savings_tx.get((parts[1], parts[3]))
        elif parts[0] == "savingsaccounts" and len(parts) == 2:
            found = self.savings_accounts.get(parts[1])
        elif parts[0] == "loans" and len(parts) == 4 and parts[2] == "transactions":
            found = self.loan_tx.get((parts[1], parts[3]))
        elif parts[0] == "loans" and len(parts) == 2:
            found = self.loans.get(parts[1])
        elif parts == ["accounttransfers"]:
            detail = (query.get("accountDetailId") or [""])[0]
            items = self.transfers.get(detail, [])
            return 200, {"totalFilteredRecords": len(items), "pageItems": items}
        elif parts[0] == "accounttransfers" and len(parts) == 2:
            found = next(
                (t for ts in self.transfers.values() for t in ts if str(t["id"]) == parts[1]),
                None,
            )
        if found is None:
            return 404, {
                "developerMessage": "The requested resource is not available.",
                "httpStatusCode": "404",
                "defaultUserMessage": "The requested resource is not available.",
                "userMessageGlobalisationCode": "error.msg.resource.not.found",
                "errors": [],
            }
        return 200, found

    def start(self) -> str:
        """Start serving on a free loopback port; returns the base URL (scheme, host, port)."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: Any) -> None:
                body = _dump(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                fake.requests.append(self.path)
                if fake.delay:
                    time.sleep(fake.delay)
                if fake.fail_status is not None:
                    self._send(fake.fail_status, {"developerMessage": "unavailable"})
                    return
                expected = base64.b64encode(f"{fake.username}:{fake.password}".encode()).decode()
                if self.headers.get("Authorization") != f"Basic {expected}":
                    self._send(401, {"developerMessage": "Unauthenticated"})
                    return
                if self.headers.get("Fineract-Platform-TenantId") != fake.tenant:
                    self._send(400, {"developerMessage": "No tenant identifier found"})
                    return
                url = urlparse(self.path)
                status, payload = fake.route(url.path, parse_qs(url.query))
                self._send(status, payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{host!s}:{port}"
        return self.base_url

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
