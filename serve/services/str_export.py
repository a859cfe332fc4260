"""Suspicious-transaction report (STR) export of a SAR-filed case, in the structure of UNODC goAML.

Only a case closed as *SAR filed* — a transition a second user approved (four-eyes) — can be
exported. The report is assembled once as a :class:`StrReport` and rendered two ways: goAML
report XML (built with ``xml.etree.ElementTree``, so every value is escaped by the serialiser,
never templated into text) and a printable, escaped HTML page. Every export is audited.

goAML lookups (transmission modes, funds types) are published by each FIU; the codes below are
the common defaults and are kept in one mapping so an institution can align them with its FIU.
"""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aml.auth import Permission
from aml.domain import (
    Alert,
    Case,
    CaseStatus,
    Direction,
    Transaction,
    TransactionType,
    utcnow,
)
from aml.errors import Conflict, Unprocessable
from aml.money import exponent, to_major_decimal
from aml.settings import Settings
from serve.services import audit
from serve.services.actor import Actor
from serve.services.cases import get_or_raise
from storage.store import Store

SUBMISSION_CODE = "E"  # electronic submission
REPORT_CODE = "STR"

# goAML "transmission mode" codes by transaction type (FIU lookup; common defaults).
TRANSMODE: dict[TransactionType, str] = {
    TransactionType.DEPOSIT: "K",  # cash
    TransactionType.WITHDRAWAL: "K",
    TransactionType.TRANSFER: "B",  # account-to-account
    TransactionType.PAYMENT: "B",
    TransactionType.LOAN_DISBURSEMENT: "B",
    TransactionType.LOAN_REPAYMENT: "B",
}
DEFAULT_TRANSMODE = "O"  # other
CASH_FUNDS = "K"
ACCOUNT_FUNDS = "A"


@dataclass(frozen=True, slots=True)
class ReportingEntity:
    """The institution filing the report (``rentity_id`` is issued by the FIU)."""

    id: str
    name: str


def reporting_entity(settings: Settings) -> ReportingEntity:
    """The reporting entity from settings.

    Raises:
        Unprocessable: naming the ``AML_REPORTING_ENTITY_*`` variable that is not set.
    """
    missing = [
        name
        for name, value in (
            ("AML_REPORTING_ENTITY_ID", settings.reporting_entity_id),
            ("AML_REPORTING_ENTITY_NAME", settings.reporting_entity_name),
        )
        if not (value or "").strip()
    ]
    if missing:
        raise Unprocessable(
            f"{' and '.join(missing)} must be set to export suspicious-transaction reports",
            variables=missing,
        )
    return ReportingEntity(
        id=(settings.reporting_entity_id or "").strip(),
        name=(settings.reporting_entity_name or "").strip(),
    )


@dataclass(frozen=True, slots=True)
class Party:
    """One side of a transaction: an account (ours or a counterparty's) or an unknown source."""

    my_client: bool
    account: str | None
    client_id: str | None
    name: str | None
    funds_code: str
    country: str | None


@dataclass(frozen=True, slots=True)
class ReportTransaction:
    transaction: Transaction
    amount_local: str
    transmode_code: str
    source: Party
    destination: Party


@dataclass(frozen=True, slots=True)
class StrReport:
    """Everything the report says, before it is rendered as goAML XML or HTML."""

    entity: ReportingEntity
    case: Case
    submitted_at: datetime
    currency_local: str
    reporting_person: str
    reporting_person_name: str
    location_country: str | None
    reason: str
    action: str
    transactions: tuple[ReportTransaction, ...]
    indicators: tuple[str, ...]

    @property
    def filename(self) -> str:
        return f"STR-{self.case.number or self.case.id}"


def _goaml_datetime(value: datetime) -> str:
    # goAML takes local-less xs:dateTime values; ours are UTC throughout.
    return value.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat()


def _amount(tx: Transaction) -> str:
    return f"{to_major_decimal(tx.amount_minor, tx.currency):.{exponent(tx.currency)}f}"


def _parties(tx: Transaction) -> tuple[Party, Party]:
    ours = Party(
        my_client=True,
        account=tx.account_no or tx.account_id,
        client_id=tx.client_id,
        name=None,
        funds_code=ACCOUNT_FUNDS,
        country=tx.country_code,
    )
    cash = tx.type in (TransactionType.DEPOSIT, TransactionType.WITHDRAWAL)
    other = Party(
        my_client=False,
        account=tx.counterparty_account_id,
        client_id=tx.counterparty_client_id,
        name=tx.counterparty_name,
        funds_code=CASH_FUNDS if cash and not tx.counterparty_account_id else ACCOUNT_FUNDS,
        country=None,
    )
    # A counterparty that is one of the institution's own clients is reported as such.
    if other.client_id:
        other = Party(True, other.account, other.client_id, other.name, other.funds_code, None)
    return (other, ours) if tx.direction == Direction.IN else (ours, other)


def assemble(
    case: Case,
    transactions: Sequence[Transaction],
    alerts: Sequence[Alert],
    *,
    entity: ReportingEntity,
    reporting_person: str,
    reporting_person_name: str,
    currency_local: str,
    submitted_at: datetime,
) -> StrReport:
    """The report of a SAR-filed case (pure).

    Raises:
        Conflict: the case is not closed as SAR filed with a second user's approval.
        Unprocessable: the case has no transactions, or one is not in the local currency.
    """
    if case.status != CaseStatus.CLOSED_SAR_FILED or not case.approved_by:
        raise Conflict(
            "only a case closed as SAR filed (four-eyes approved) can be exported",
            case_id=case.id,
            status=case.status.value,
        )
    if not transactions:
        raise Unprocessable("the case has no transactions to report", case_id=case.id)
    foreign = sorted({t.currency for t in transactions if t.currency != currency_local})
    if foreign:
        raise Unprocessable(
            f"goAML amounts are in the local currency {currency_local}; the case has "
            f"transactions in {', '.join(foreign)} and no exchange rate",
            currencies=foreign,
        )
    rows = []
    for tx in sorted(transactions, key=lambda t: (t.occurred_at, t.id)):
        source, destination = _parties(tx)
        rows.append(
            ReportTransaction(
                transaction=tx,
                amount_local=_amount(tx),
                transmode_code=TRANSMODE.get(tx.type, DEFAULT_TRANSMODE),
                source=source,
                destination=destination,
            )
        )
    narrative = "\n".join(f"[{n.at:%Y-%m-%d %H:%M} UTC, {n.author}] {n.text}" for n in case.notes)
    reason = f"{case.title}\n{narrative}".strip()
    action = (
        f"Case {case.number or case.id} closed as SAR filed; approved by {case.approved_by}. "
        f"{len(rows)} transactions reported."
    )
    indicators = tuple(sorted({r for a in alerts for r in a.rule_ids}))
    countries = {t.country_code for t in transactions if t.country_code}
    return StrReport(
        entity=entity,
        case=case,
        submitted_at=submitted_at,
        currency_local=currency_local,
        reporting_person=reporting_person,
        reporting_person_name=reporting_person_name,
        location_country=countries.pop() if len(countries) == 1 else None,
        reason=reason,
        action=action,
        transactions=tuple(rows),
        indicators=indicators,
    )


def _text(parent: ET.Element, tag: str, value: object | None) -> ET.Element | None:
    if value is None or value == "":
        return None
    el = ET.SubElement(parent, tag)
    el.text = str(value)
    return el


def _party_xml(parent: ET.Element, side: str, party: Party, entity: ReportingEntity) -> None:
    tag = f"t_{side}_my_client" if party.my_client else f"t_{side}"
    el = ET.SubElement(parent, tag)
    _text(el, f"{side}_funds_code", party.funds_code)
    if party.account:
        account = ET.SubElement(el, f"{side}_account")
        if party.my_client:
            _text(account, "institution_name", entity.name)
        _text(account, "account", party.account)
        _text(account, "client_number", party.client_id)
        _text(account, "account_name", party.name)
    _text(el, f"{side}_country", party.country)


def to_xml(report: StrReport) -> bytes:
    """The goAML report XML (UTF-8, with declaration)."""
    root = ET.Element("report")
    _text(root, "rentity_id", report.entity.id)
    _text(root, "submission_code", SUBMISSION_CODE)
    _text(root, "report_code", REPORT_CODE)
    _text(root, "entity_reference", report.case.number or report.case.id)
    _text(root, "submission_date", _goaml_datetime(report.submitted_at))
    _text(root, "currency_code_local", report.currency_local)
    person = ET.SubElement(root, "reporting_person")
    first, _, last = (report.reporting_person_name or report.reporting_person).partition(" ")
    _text(person, "first_name", first)
    _text(person, "last_name", last or first)
    _text(person, "occupation", "Compliance")
    location = ET.SubElement(root, "location")
    _text(location, "address_type", "B")  # business address
    _text(location, "address", report.entity.name)
    _text(location, "country_code", report.location_country)
    _text(root, "reason", report.reason)
    _text(root, "action", report.action)
    for row in report.transactions:
        tx = row.transaction
        el = ET.SubElement(root, "transaction")
        _text(el, "transactionnumber", tx.external_id or tx.id)
        _text(el, "internal_ref_number", tx.id)
        _text(el, "transaction_location", tx.branch_id or tx.office_id or report.entity.name)
        _text(el, "transaction_description", tx.description or tx.type.value)
        _text(el, "date_transaction", _goaml_datetime(tx.occurred_at))
        _text(el, "value_date", _goaml_datetime(tx.occurred_at))
        _text(el, "transmode_code", row.transmode_code)
        _text(el, "amount_local", row.amount_local)
        _party_xml(el, "from", row.source, report.entity)
        _party_xml(el, "to", row.destination, report.entity)
    indicators = ET.SubElement(root, "report_indicators")
    for code in report.indicators:
        _text(indicators, "indicator", code)
    ET.indent(root)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _party_html(party: Party) -> str:
    parts = [
        "our client" if party.my_client else "third party",
        party.account or ("cash" if party.funds_code == CASH_FUNDS else "unknown account"),
    ]
    if party.client_id:
        parts.append(f"client {party.client_id}")
    if party.name:
        parts.append(party.name)
    return html.escape(" · ".join(parts))


def to_html(report: StrReport) -> str:
    """A printable, self-contained HTML page of the report (every value escaped)."""
    e = html.escape
    rows = "".join(
        "<tr>"
        f"<td>{e(_goaml_datetime(r.transaction.occurred_at))}</td>"
        f"<td>{e(r.transaction.external_id or r.transaction.id)}</td>"
        f"<td>{e(r.transaction.type.value)}</td>"
        f"<td class='num'>{e(r.amount_local)} {e(report.currency_local)}</td>"
        f"<td>{_party_html(r.source)}</td>"
        f"<td>{_party_html(r.destination)}</td>"
        "</tr>"
        for r in report.transactions
    )
    indicators = "".join(f"<li>{e(i)}</li>" for i in report.indicators) or "<li>none</li>"
    reason = "<br>".join(e(line) for line in report.reason.splitlines())
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{e(report.filename)}</title>"
        "<style>body{font-family:sans-serif;margin:2rem}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:4px 8px;text-align:left}.num{text-align:right}"
        "@media print{button{display:none}}</style></head><body>"
        f"<h1>Suspicious transaction report {e(report.case.number or report.case.id)}</h1>"
        "<table>"
        f"<tr><th>Reporting entity</th><td>{e(report.entity.name)} ({e(report.entity.id)})</td>"
        f"</tr><tr><th>Report</th><td>{REPORT_CODE}, submission {SUBMISSION_CODE}</td></tr>"
        f"<tr><th>Submitted</th><td>{e(_goaml_datetime(report.submitted_at))} UTC</td></tr>"
        f"<tr><th>Reporting person</th><td>{e(report.reporting_person_name)} "
        f"({e(report.reporting_person)})</td></tr>"
        f"<tr><th>Local currency</th><td>{e(report.currency_local)}</td></tr>"
        f"<tr><th>Subject client</th><td>{e(report.case.client_id or '—')}</td></tr>"
        "</table>"
        f"<h2>Reason</h2><p>{reason}</p><h2>Action</h2><p>{e(report.action)}</p>"
        "<h2>Transactions</h2><table><tr><th>Date</th><th>Number</th><th>Type</th>"
        f"<th>Amount</th><th>From</th><th>To</th></tr>{rows}</table>"
        f"<h2>Indicators</h2><ul>{indicators}</ul>"
        "<button onclick='window.print()'>Print</button></body></html>"
    )


async def build(
    store: Store, *, actor: Actor, case_id: str, settings: Settings, at: datetime | None = None
) -> StrReport:
    """The report of a SAR-filed case, read from the store (not audited: see :func:`export`).

    Raises:
        Forbidden: the actor may not export reports.
        NotFound: no such case.
        Conflict: the case is not closed as SAR filed.
        Unprocessable: the reporting entity is not configured, or the data cannot be reported.
    """
    actor.require(Permission.REPORT_EXPORT)
    case = await get_or_raise(store, actor=actor, case_id=case_id)
    entity = reporting_entity(settings)
    transactions = await store.transactions.get_many(list(case.transaction_ids))
    alerts = [a for a in [await store.alerts.get(i) for i in case.alert_ids] if a is not None]
    return assemble(
        case,
        transactions,
        alerts,
        entity=entity,
        reporting_person=actor.username,
        reporting_person_name=actor.user.full_name or actor.username,
        currency_local=settings.default_currency,
        submitted_at=at or utcnow(),
    )


async def export(
    store: Store,
    *,
    actor: Actor,
    case_id: str,
    settings: Settings,
    fmt: str = "xml",
    at: datetime | None = None,
) -> tuple[StrReport, str | bytes]:
    """Build the report and render it as ``"xml"`` (bytes) or ``"html"`` (text). Audited.

    Raises:
        Unprocessable: unknown format; and whatever :func:`build` raises.
    """
    if fmt not in ("xml", "html"):
        raise Unprocessable("format must be xml or html", field="format")
    report = await build(store, actor=actor, case_id=case_id, settings=settings, at=at)
    rendered: str | bytes = to_xml(report) if fmt == "xml" else to_html(report)
    await audit.record(
        store,
        actor=actor,
        action="case.str_export",
        target_type="case",
        target_id=case_id,
        details={
            "format": fmt,
            "number": report.case.number,
            "transactions": len(report.transactions),
            "rentity_id": report.entity.id,
        },
    )
    return report, rendered
