"""STR export: a SAR-filed case becomes goAML report XML (parsed back here) and a printable HTML
page; other cases are refused; every export is audited."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from aml.domain import CaseStatus, Direction, Role, TransactionType
from aml.errors import Conflict, Forbidden, Unprocessable
from aml.settings import Settings
from serve.api.app import API_PREFIX, create_app
from serve.auth import LoginRateLimiter, TokenService
from serve.services import cases, str_export
from storage.store import Store
from tests.factories import make_alert, make_tx
from tests.ui.seed import Team, seed_team

pytestmark = pytest.mark.integration

SECRET = "k" * 48
SETTINGS = Settings(
    jwt_secret=SecretStr(SECRET),
    reporting_entity_id="1042",
    reporting_entity_name="Caisse <Mutuelle> & Fils",
    default_currency="XAF",
)
AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


async def _case(store: Store, team: Team, *, sar: bool = True, account: str = "savings:77") -> str:
    deposit = make_tx(
        type=TransactionType.DEPOSIT,
        direction=Direction.IN,
        amount_minor=490_000,
        account_id=account,
        client_id="31",
        external_id="9001",
        description="cash <deposit> & co",
    )
    transfer = make_tx(
        type=TransactionType.TRANSFER,
        direction=Direction.OUT,
        amount_minor=480_000,
        account_id=account,
        client_id="31",
        external_id="9002",
        counterparty_account_id="savings:88",
        counterparty_name="Jean Dupont",
    )
    await store.transactions.insert_many([deposit, transfer])
    alert = make_alert(
        account_id=account,
        transaction_ids=(deposit.id,),
        rule_ids=("R003", "R001"),
    )
    await store.alerts.create(alert)
    ana, sam = team.actor(Role.ANALYST), team.actor(Role.SENIOR_ANALYST)
    case = await cases.create(
        store,
        actor=ana,
        title="Structuring just below the threshold",
        alert_ids=[alert.id],
        transaction_ids=[transfer.id],
    )
    await cases.change_status(store, actor=ana, case_id=case.id, status=CaseStatus.INVESTIGATING)
    if sar:
        await cases.change_status(
            store,
            actor=ana,
            case_id=case.id,
            status=CaseStatus.CLOSED_SAR_FILED,
            note="Two deposits under 500k on one day <see ref 7>",
        )
        await cases.approve(store, actor=sam, case_id=case.id)
    return case.id


def _t(el: ET.Element, path: str) -> str:
    found = el.find(path)
    assert found is not None, path
    return found.text or ""


async def test_sar_case_exports_goaml_xml_with_every_section(store: Store) -> None:
    team = await seed_team(store)
    case_id = await _case(store, team)
    sam = team.actor(Role.SENIOR_ANALYST)

    report, rendered = await str_export.export(
        store, actor=sam, case_id=case_id, settings=SETTINGS, at=AT
    )

    assert isinstance(rendered, bytes)
    root = ET.fromstring(rendered)
    assert root.tag == "report"
    assert _t(root, "rentity_id") == "1042"
    assert _t(root, "submission_code") == "E"
    assert _t(root, "report_code") == "STR"
    assert _t(root, "submission_date") == "2026-03-02T09:30:00"
    assert _t(root, "currency_code_local") == "XAF"
    assert _t(root, "entity_reference") == report.case.number
    assert _t(root, "reporting_person/first_name") == "sam"
    assert _t(root, "location/address") == "Caisse <Mutuelle> & Fils"  # escaped, read back
    assert "Structuring just below the threshold" in _t(root, "reason")
    assert "<see ref 7>" in _t(root, "reason")
    assert "approved by sam" in _t(root, "action")

    txs = root.findall("transaction")
    assert [_t(t, "transactionnumber") for t in txs] == ["9001", "9002"]
    deposit, transfer = txs
    assert _t(deposit, "amount_local") == "490000"
    assert _t(deposit, "transmode_code") == "K"
    assert _t(deposit, "transaction_description") == "cash <deposit> & co"
    # Money comes in from cash to our client's account.
    assert _t(deposit, "t_from/from_funds_code") == "K"
    assert _t(deposit, "t_to_my_client/to_account/account") == "savings:77"
    assert _t(deposit, "t_to_my_client/to_account/institution_name") == "Caisse <Mutuelle> & Fils"
    # The transfer goes out from our client to a third party's account.
    assert _t(transfer, "t_from_my_client/from_account/account") == "savings:77"
    assert _t(transfer, "t_to/to_account/account") == "savings:88"
    assert _t(transfer, "t_to/to_account/account_name") == "Jean Dupont"
    assert _t(transfer, "date_transaction") == _t(transfer, "value_date")
    assert [i.text for i in root.findall("report_indicators/indicator")] == ["R001", "R003"]

    entries, _ = await store.audit_log.list_(action="case.str_export", target_id=case_id)
    assert len(entries) == 1 and entries[0].actor == "sam"
    assert entries[0].details["format"] == "xml"


async def test_html_view_is_escaped_and_printable(store: Store) -> None:
    team = await seed_team(store)
    case_id = await _case(store, team)
    _, page = await str_export.export(
        store, actor=team.actor(Role.ADMIN), case_id=case_id, settings=SETTINGS, fmt="html"
    )
    assert isinstance(page, str)
    assert "Caisse &lt;Mutuelle&gt; &amp; Fils" in page
    assert "<see ref 7>" not in page and "&lt;see ref 7&gt;" in page
    assert "490000 XAF" in page and "window.print()" in page


async def test_cases_not_closed_as_sar_are_refused(store: Store) -> None:
    team = await seed_team(store)
    case_id = await _case(store, team, sar=False)
    with pytest.raises(Conflict, match="SAR filed"):
        await str_export.export(
            store, actor=team.actor(Role.SENIOR_ANALYST), case_id=case_id, settings=SETTINGS
        )
    entries, _ = await store.audit_log.list_(action="case.str_export")
    assert entries == []


async def test_missing_entity_settings_name_the_variable(store: Store) -> None:
    team = await seed_team(store)
    case_id = await _case(store, team)
    with pytest.raises(Unprocessable, match="AML_REPORTING_ENTITY_ID"):
        await str_export.export(
            store,
            actor=team.actor(Role.SENIOR_ANALYST),
            case_id=case_id,
            settings=Settings(jwt_secret=SecretStr(SECRET), reporting_entity_name="X"),
        )


async def test_analysts_cannot_export(store: Store) -> None:
    team = await seed_team(store)
    case_id = await _case(store, team)
    with pytest.raises(Forbidden):
        await str_export.export(
            store, actor=team.actor(Role.ANALYST), case_id=case_id, settings=SETTINGS
        )


async def test_api_serves_xml_download_and_refuses_open_cases(store: Store) -> None:
    team = await seed_team(store)
    sar = await _case(store, team)
    open_case = await _case(store, team, sar=False, account="savings:78")
    tokens = TokenService(SECRET)
    app = create_app(
        SETTINGS, store=store, tokens=tokens, limiter=LoginRateLimiter(max_attempts=100)
    )
    headers = {
        "Authorization": f"Bearer {tokens.issue(team.by_role[Role.SENIOR_ANALYST]).access_token}"
    }

    _, resp = await app.asgi_client.get(f"{API_PREFIX}/cases/{sar}/str", headers=headers)
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("application/xml")
    assert "attachment" in resp.headers["content-disposition"]
    assert ET.fromstring(resp.body).findtext("report_code") == "STR"

    _, resp = await app.asgi_client.get(
        f"{API_PREFIX}/cases/{sar}/str", params={"format": "html"}, headers=headers
    )
    assert resp.status == 200 and resp.headers["content-type"].startswith("text/html")

    _, resp = await app.asgi_client.get(f"{API_PREFIX}/cases/{open_case}/str", headers=headers)
    assert resp.status == 409
