"""Dashboard: rules, models and jobs pages, the STR report of a SAR case, and server-side
paging of cases and transactions, through NiceGUI's simulated user and the real store."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest
from nicegui.elements.mixins.value_element import ValueElement
from nicegui.testing.user import User

from aml.domain import ModelRecord, RiskLevel, utcnow
from aml.settings import Settings
from serve.services.jobs import Operations
from storage.repositories.jobs import DriftRun, JobState
from storage.store import Store
from tests.factories import make_case, make_tx
from tests.integration.test_str_export import SECRET, _case
from tests.ui.seed import PASSWORD, Team
from ui.pages import jobs as jobs_page

pytestmark = pytest.mark.integration


async def login(user: User, username: str) -> None:
    await user.open("/login")
    user.find(marker="username").type(username)
    user.find(marker="password").type(PASSWORD)
    user.find(marker="sign-in").click()
    await user.should_see("Sign out", retries=50)


def _set(user: User, marker: str, value: object) -> None:
    element = user.find(marker=marker).elements.pop()
    assert isinstance(element, ValueElement)
    element.value = value


PUSHED: list[dict[str, Any]] = []
RAN: list[str] = []


async def _runner(name: str) -> Mapping[str, Any]:
    RAN.append(name)
    return {"name": name, "outcome": "ok", "message": "ran from the dashboard"}


@pytest.fixture(autouse=True)
def ops() -> Iterator[Operations]:
    """The dashboard's Serve and scheduler hooks, recorded here instead of a cluster."""
    PUSHED.clear()
    RAN.clear()
    previous = jobs_page.operations()
    ops = Operations(
        settings=Settings(
            jwt_secret=SECRET,  # type: ignore[arg-type]
            reporting_entity_id="1042",
            reporting_entity_name="Caisse Mutuelle",
        ),
        rule_applier=PUSHED.append,
        run_job=_runner,
    )
    jobs_page.configure(ops)
    yield ops
    jobs_page.configure(previous)


async def test_analyst_sees_rules_read_only(user: User, team: Team) -> None:
    await login(user, "ana")
    await user.open("/rules")
    await user.should_see("Read-only", retries=40)
    await user.should_see(marker="th-XAF-large_amount")
    await user.should_not_see(marker="rules-save")


async def test_senior_edits_saves_and_activates_rules(user: User, team: Team, store: Store) -> None:
    await login(user, "sam")
    await user.open("/rules")
    await user.should_see(marker="rules-save", retries=40)
    # An inconsistent threshold is refused with the field named, and nothing is saved.
    _set(user, "th-XAF-structuring_floor", 600_000)
    user.find(marker="rules-save").click()
    await user.should_see("structuring_floor must be below large_amount", retries=40)
    assert await store.rule_config.latest() is None

    _set(user, "th-XAF-structuring_floor", 350_000)
    _set(user, "th-XAF-large_amount", 400_000)
    _set(user, "rule-state-round_number", "off")
    user.find(marker="rules-comment").type("lower XAF threshold")
    user.find(marker="rules-save").click()
    await user.should_see("Saved as version 1", retries=40)
    saved = await store.rule_config.get(1)
    assert saved is not None and saved.comment == "lower XAF threshold"
    assert saved.config["thresholds"]["XAF"]["large_amount"] == 400_000
    assert saved.config["rules"]["round_number"]["enabled"] is False

    await user.should_see(marker="rules-activate-1", retries=40)
    user.find(marker="rules-activate-1").click()
    await user.should_see("Version 1 is active", retries=40)
    active = await store.rule_config.get_active()
    assert active is not None and active.version == 1
    assert [p["thresholds"]["XAF"]["large_amount"] for p in PUSHED] == [400_000]


async def test_rules_backtest_shows_per_rule_counts(user: User, team: Team, store: Store) -> None:
    now = utcnow()
    await store.transactions.insert_many(
        [
            make_tx(
                amount_minor=420_000,
                occurred_at=now - timedelta(hours=2 + i),
                received_at=now - timedelta(hours=2 + i),
                account_id=f"savings:{700 + i}",
            )
            for i in range(2)
        ]
    )
    await login(user, "sam")
    await user.open("/rules")
    await user.should_see(marker="rules-backtest-run", retries=40)
    _set(user, "th-XAF-structuring_floor", 350_000)
    _set(user, "th-XAF-large_amount", 400_000)
    user.find(marker="rules-backtest-run").click()
    await user.should_see("2 transactions replayed", retries=100)
    table = user.find(marker="rules-backtest-table").elements.pop()
    rows = {r["rule"]: r for r in table.rows}  # type: ignore[attr-defined]
    assert rows["large_amount"]["candidate_alerts"] == 2
    assert rows["large_amount"]["active_alerts"] == 0


def _model(version: str, stage: str = "candidate") -> ModelRecord:
    return ModelRecord(
        id=f"xgb-{version}",
        kind="xgboost",
        version=version,
        feature_set_version="v1",
        features=("amount",),
        metrics={"auprc": 0.4 + 0.1 * int(version)},
        artifact_uri=f"/models/{version}.json",
        stage=stage,
        created_at=utcnow(),
    )


async def test_models_page_promotes_and_shows_drift(user: User, team: Team, store: Store) -> None:
    await store.models.register(_model("1", "champion"))
    await store.models.register(_model("2"))
    now = utcnow().replace(microsecond=0)
    await store.drift.insert(
        DriftRun(
            id="d1",
            model_id="xgb-1",
            model_kind="xgboost",
            model_version="1",
            computed_at=now,
            window_from=now - timedelta(days=7),
            window_until=now,
            rows=321,
            psi={"amount_log": 0.4123, "hour_sin": 0.0123},
            level="critical",
            critical=("amount_log",),
        )
    )
    await login(user, "mel")
    await user.open("/models")
    await user.should_see("amount_log", retries=40)
    await user.should_see("0.412")
    await user.should_see("321 rows", retries=5)
    user.find(marker="promote-xgb-2").click()
    await user.should_see("2 is the champion", retries=40)
    champion = await store.models.get_champion("xgboost")
    assert champion is not None and champion.id == "xgb-2"
    entries, _ = await store.audit_log.list_(action="model.promote")
    assert entries and entries[0].actor == "mel"


async def test_analyst_cannot_open_models_or_jobs(user: User, team: Team) -> None:
    await login(user, "ana")
    await user.open("/jobs")
    await user.should_see("Your role does not give access to this page.", retries=40)
    await user.should_not_see(marker="nav-/models")


async def test_jobs_page_shows_outcomes_and_runs_now(user: User, team: Team, store: Store) -> None:
    now = utcnow().replace(microsecond=0)
    await store.jobs.save(
        JobState(
            name="drift",
            next_run=now + timedelta(days=1),
            last_run=now,
            outcome="error",
            message="ValueError: no baseline",
            runs=4,
        )
    )
    await login(user, "root")
    await user.open("/jobs")
    await user.should_see("ValueError: no baseline", retries=40)
    await user.should_see("Runs: 4")
    user.find(marker="job-run-drift").click()
    await user.should_see("ran from the dashboard", retries=40)
    assert RAN == ["drift"]


async def test_sar_case_report_page_and_xml_download(user: User, team: Team, store: Store) -> None:
    case_id = await _case(store, team)
    await login(user, "sam")
    await user.open(f"/cases/{case_id}")
    await user.should_see(marker="case-str", retries=40)
    user.find(marker="case-str").click()
    await user.should_see("Caisse Mutuelle (1042)", retries=40)
    await user.should_see("R001, R003")
    user.find(marker="str-xml").click()
    response = await user.download.next(timeout=5)
    root = ET.fromstring(response.content)
    assert root.findtext("rentity_id") == "1042"
    assert len(root.findall("transaction")) == 2
    entries, _ = await store.audit_log.list_(action="case.str_export", target_id=case_id)
    assert len(entries) == 1


async def test_report_of_an_open_case_is_refused(user: User, team: Team, store: Store) -> None:
    case_id = await _case(store, team, sar=False)
    await login(user, "sam")
    await user.open(f"/cases/{case_id}")
    await user.should_see(marker="case-status", retries=40)
    await user.should_not_see(marker="case-str")
    await user.open(f"/cases/{case_id}/report")
    await user.should_see("only a case closed as SAR filed", retries=40)


async def test_cases_list_pages_on_the_server(user: User, team: Team, store: Store) -> None:
    for i in range(30):
        await store.cases.create(make_case(title=f"Case {i:02d}", created_at=utcnow()))
    await login(user, "ana")
    await user.open("/cases")
    await user.should_see("1-25 of 30", retries=40)
    user.find(marker="case-next").click()
    await user.should_see("26-30 of 30", retries=40)


async def test_transactions_filter_by_amount_range_and_page(
    user: User, team: Team, store: Store
) -> None:
    await store.transactions.insert_many(
        [make_tx(amount_minor=1_000 * (i + 1), account_id="savings:5") for i in range(60)]
    )
    await login(user, "ana")
    await user.open("/transactions")
    await user.should_see("1-50 of 60", retries=40)
    user.find(marker="tx-next").click()
    await user.should_see("51-60 of 60", retries=40)
    _set(user, "tx-min", 10_000)
    _set(user, "tx-max", 20_000)
    user.find(marker="tx-search").click()
    await user.should_see("11 transactions", retries=40)
    page, _ = await store.transactions.search(min_amount_minor=10_000, max_amount_minor=12_000)
    await store.transactions.mark_scored({t.id: RiskLevel.HIGH for t in page})
    _set(user, "tx-risk", ["high"])
    user.find(marker="tx-search").click()
    await user.should_see("3 transactions", retries=40)


async def test_transactions_table_marks_a_transaction_fineract_reversed(
    user: User, team: Team, store: Store
) -> None:
    kept = make_tx(amount_minor=5_000, account_id="savings:8")
    undone = make_tx(amount_minor=7_000, account_id="savings:8")
    await store.transactions.insert_many([kept, undone])
    await store.transactions.mark_reversed(undone.tenant, [undone.dedupe_key])
    await login(user, "ana")
    await user.open("/transactions")
    await user.should_see("2 transactions", retries=40)
    table = user.find(marker="tx-table").elements.pop()
    status = {row["id"]: row["status"] for row in table.rows}
    assert status[undone.id].endswith("· reversed")
    assert "reversed" not in status[kept.id]
