"""Alert queue at scale: 100,000 alerts in a fresh embedded store, then the queue as the API and
the dashboard serve it.

Measured (p50/p95 over ``--loads`` loads each):

* API ``GET /api/v1/alerts`` through the real Sanic app (in-process ASGI, real store): the first
  page, a deep page, and filtered/sorted pages (open + high risk, one rule, by SLA due date);
* API ``GET /api/v1/alerts/<id>`` (alert detail with its transactions and decisions);
* the dashboard over HTTP: a real dashboard process, signed in once with headless Chromium, then
  ``GET /alerts`` and ``GET /alerts/<id>`` with that session cookie (the page function runs
  before the HTML is sent, so the time includes the store queries and the rendered rows);
* whether the queries use an index (``explain`` where the server supports it).

Seeding writes encoded domain objects with ``insert_many`` (what the repository stores).
Run: ``.venv/bin/python -m bench dashboard [--alerts 100000] [--loads 30]``; results go to
``bench/results/dashboard-<date>.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from aml.domain import Alert, AlertStatus, RiskLevel, Role, stable_id
from storage.repositories.alerts import AlertRepository
from storage.store import Store, open_store

RESULTS = Path(__file__).parent / "results"
SECRET = "bench-" + "d" * 42
PASSWORD = "bench dashboard passphrase"
RULES = [f"R{i:03d}" for i in range(1, 31)]
STATUSES = [
    (AlertStatus.OPEN, 0.55),
    (AlertStatus.UNDER_REVIEW, 0.15),
    (AlertStatus.ESCALATED, 0.05),
    (AlertStatus.CLOSED_LEGITIMATE, 0.20),
    (AlertStatus.CLOSED_SUSPICIOUS, 0.05),
]
RISKS = [RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH, RiskLevel.CRITICAL]
NEWCOMER = "analyst-new"


@dataclass
class Timing:
    name: str
    samples: list[float]
    note: str = ""

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _status(i: int) -> AlertStatus:
    x = (i * 7919 % 1000) / 1000
    acc = 0.0
    for status, share in STATUSES:
        acc += share
        if x < acc:
            return status
    return AlertStatus.OPEN


def make_alerts(n: int, now: datetime) -> list[Alert]:
    """``n`` alerts over the last 90 days, one customer each, mixed statuses, risks and rules."""
    out = []
    for i in range(n):
        created = now - timedelta(minutes=(n - i) * 90 * 24 * 60 / n)
        account = f"savings:{100_000 + i}"
        risk = RISKS[i * 31 % 4]
        out.append(
            Alert(
                id=stable_id("bench-alert", i),
                tenant="default",
                customer_key=f"default|{account}",
                account_id=account,
                client_id=str(10_000 + i),
                status=_status(i),
                risk_level=risk,
                score=round(0.5 + 0.5 * ((i * 104_729) % 1000) / 1000, 3),
                transaction_ids=(stable_id("bench-tx", i),),
                rule_ids=(RULES[i % len(RULES)], RULES[(i * 7) % len(RULES)]),
                created_at=created,
                updated_at=created,
                sla_due_at=created + timedelta(hours=24),
                title=f"Rule hits on {account}",
                # Most work is spread over five analysts; one newcomer holds a handful.
                assignee=NEWCOMER if i % 10_000 == 5 else (None if i % 3 else f"analyst{i % 5}"),
            )
        )
    return out


async def seed(store: Store, n: int, *, with_transactions: int) -> tuple[list[Alert], float]:
    """Insert ``n`` alerts (and transactions/decisions for the newest ``with_transactions``)."""
    from tests.factories import make_decision, make_tx

    now = datetime.now(UTC)
    alerts = make_alerts(n, now)
    started = time.perf_counter()
    chunk = 5_000
    for start in range(0, n, chunk):
        docs = [AlertRepository._doc(a, 0) for a in alerts[start : start + chunk]]
        await store.alerts.col.insert_many(docs, ordered=False)
    detailed = alerts[-with_transactions:]
    txs = [
        make_tx(
            id=a.transaction_ids[0],
            dedupe_key=f"bench|{a.id}",
            account_id=a.account_id,
            occurred_at=a.created_at,
            received_at=a.created_at,
        )
        for a in detailed
    ]
    await store.transactions.insert_many(txs)
    await store.decisions.insert_many(
        [make_decision(transaction_id=t.id, decided_at=t.occurred_at) for t in txs]
    )
    return alerts, time.perf_counter() - started


async def timed(n: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    for attempt in range(10):  # warm-up: connection, caches, a page still building
        try:
            await call()
            break
        except AssertionError:
            if attempt == 9:
                raise
            await asyncio.sleep(3)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def explain(store: Store, query: dict[str, Any], sort: dict[str, int]) -> str:
    """The winning plan's stage names, or why there is none."""
    try:
        plan = await store.db.command(
            "explain", {"find": "alerts", "filter": query, "sort": sort, "limit": 25}
        )
    except Exception as exc:
        return f"explain not supported ({type(exc).__name__}: {str(exc)[:80]})"
    winning = (plan.get("queryPlanner") or {}).get("winningPlan") or plan
    stages: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "detail" in node:  # the embedded store reports SQLite's plan lines
                stages.append(str(node["detail"]))
            if "stage" in node:
                stages.append(
                    str(node["stage"]) + (f"({node['indexName']})" if "indexName" in node else "")
                )
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(winning)
    return " > ".join(stages) or str(plan)[:200]


async def api_timings(store: Store, alerts: Sequence[Alert], loads: int) -> list[Timing]:
    from pydantic import SecretStr

    from aml.settings import Settings
    from serve.api.app import API_PREFIX, create_app
    from serve.auth import LoginRateLimiter, TokenService

    tokens = TokenService(SECRET)
    app = create_app(
        Settings(jwt_secret=SecretStr(SECRET)),
        store=store,
        tokens=tokens,
        limiter=LoginRateLimiter(max_attempts=1000),
    )
    user = await store.users.get_by_username("bench-analyst")
    assert user is not None
    headers = {"Authorization": f"Bearer {tokens.issue(user).access_token}"}
    deep = len(alerts) // 2

    def get(path: str, params: dict[str, Any] | None = None) -> Callable[[], Awaitable[Any]]:
        async def call() -> Any:
            _, resp = await app.asgi_client.get(
                API_PREFIX + path, params=params or {}, headers=headers
            )
            assert resp.status == 200, resp.body[:300]
            return resp

        return call

    cases: list[tuple[str, str, dict[str, Any] | None]] = [
        ("API queue, first page (all, newest)", "/alerts", {"limit": 25}),
        ("API queue, deep page (skip 50%)", "/alerts", {"limit": 25, "skip": deep}),
        (
            "API queue, open + high risk, by score",
            "/alerts",
            {"status": "open", "risk_level": "high", "sort": "score", "limit": 25},
        ),
        ("API queue, one rule", "/alerts", {"rule_id": "R007", "limit": 25}),
        (
            "API queue, open by SLA due, page 40",
            "/alerts",
            {"status": "open", "sort": "sla_due_at", "order": "asc", "skip": 1000, "limit": 25},
        ),
        (
            "API queue, one analyst's alerts (10 of all)",
            "/alerts",
            {"assignee": NEWCOMER, "limit": 25},
        ),
        ("API alert detail", f"/alerts/{alerts[-1].id}", None),
        ("API overview (counts by status, risk, day)", "/overview", None),
    ]
    out = []
    for name, path, params in cases:
        out.append(Timing(name, await timed(loads, get(path, params))))
    # The pager's totals must be right, not only fast.
    expected = {
        "/alerts?rule_id=R007": sum("R007" in a.rule_ids for a in alerts),
        "/alerts?status=open&risk_level=high": sum(
            a.status == AlertStatus.OPEN and a.risk_level == RiskLevel.HIGH for a in alerts
        ),
        f"/alerts?assignee={NEWCOMER}": sum(a.assignee == NEWCOMER for a in alerts),
    }
    for query, want in expected.items():
        path, _, raw = query.partition("?")
        params = dict(p.split("=") for p in raw.split("&"))
        resp = await get(path, params)()
        assert resp.json["total"] == want, (query, resp.json["total"], want)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def browser_cookies(url: str) -> dict[str, str]:
    """Sign in once with headless Chromium; the session cookie it gets."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        raise RuntimeError("chromium and chromedriver are needed for the dashboard timings")
    profile = tempfile.mkdtemp(prefix="bench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(f"{url}/login?redirect_to=/alerts")
        wait = WebDriverWait(driver, 60)

        def field(label: str) -> Any:
            xpath = f"//label[.//*[normalize-space()='{label}']]//input"
            return wait.until(ec.visibility_of_element_located((By.XPATH, xpath)))

        field("Username").send_keys("bench-analyst")
        field("Password").send_keys(PASSWORD)
        driver.find_element(By.XPATH, "//button[.//span[normalize-space()='Sign in']]").click()
        # Signed in once the page moves on; the overview it opens is not what is measured.
        wait.until(lambda d: "/login" not in d.current_url)
        return {c["name"]: c["value"] for c in driver.get_cookies()}
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def ui_timings(uri: str, db: str, alerts: Sequence[Alert], loads: int, work: Path) -> list[Timing]:
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "NICEGUI"))},
        "AML_MONGODB_URI": uri,
        "AML_MONGODB_DB": db,
        "AML_JWT_SECRET": SECRET,
        "AML_UI_PORT": str(port),
        "AML_DATA_DIR": str(work),
        "AML_LOG_LEVEL": "WARNING",
    }
    root = Path(__file__).resolve().parents[1]
    log = (work / "dashboard.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from aml.settings import load_settings\nfrom ui.main import run\nrun(load_settings())",
        ],
        cwd=work,
        env={**env, "PYTHONPATH": str(root)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/login", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((work / "dashboard.log").read_text())
            time.sleep(0.3)
        cookies = browser_cookies(url)
        out = []
        with httpx.Client(base_url=url, cookies=cookies, timeout=60) as client:
            open_total = sum(a.status.is_open for a in alerts)
            for name, path, expect in (
                ("Dashboard /alerts (queue page, rendered)", "/alerts", f"{open_total} alerts"),
                (
                    "Dashboard /alerts/<id> (detail, rendered)",
                    f"/alerts/{alerts[-1].id}",
                    alerts[-1].account_id,
                ),
            ):

                async def call(path: str = path, expect: str = expect) -> None:
                    resp = client.get(path)
                    assert resp.status_code == 200, resp.status_code
                    assert expect in resp.text, f"{expect!r} missing from {path}"

                out.append(Timing(name, asyncio.run(timed(loads, call))))
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def render(
    n: int, seed_s: float, api: Sequence[Timing], ui: Sequence[Timing], plans: dict[str, str]
) -> str:
    rows = "".join(
        f"| {t.name} | {len(t.samples)} | {t.p50:.1f} | {t.p95:.1f} |\n" for t in [*api, *ui]
    )
    plan_rows = "".join(f"| {k} | {v} |\n" for k, v in plans.items())
    return (
        f"# Dashboard at {n:,} alerts — {datetime.now(UTC):%Y-%m-%d}\n\n"
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; store: embedded MongoDB-wire server (SQLite). "
        f"Seeding {n:,} alerts with insert_many: {seed_s:.1f} s.\n\n"
        "| what | loads | p50 ms | p95 ms |\n|---|---:|---:|---:|\n"
        f"{rows}\n## Query plans\n\n| query | plan |\n|---|---|\n{plan_rows}"
    )


async def run_bench(n: int, loads: int, with_ui: bool) -> str:
    from serve.services import users
    from storage import embedded

    work = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    server = embedded.start(work / "store")
    db = f"bench_dashboard_{uuid.uuid4().hex[:8]}"
    store = open_store(server.uri, db, timeout_ms=120_000)
    try:
        await store.ensure_indexes()
        admin = await users.create_admin(store, "bench-admin", PASSWORD)
        from serve.services import Actor

        await users.create(
            store,
            actor=Actor(user=admin),
            username="bench-analyst",
            password=PASSWORD,
            role=Role.ANALYST,
        )
        alerts, seed_s = await seed(store, n, with_transactions=min(n, 1_000))
        print(f"seeded {n} alerts in {seed_s:.1f} s", flush=True)
        api = await api_timings(store, alerts, loads)
        for t in api:
            print(f"{t.name}: p50 {t.p50:.1f} ms, p95 {t.p95:.1f} ms", flush=True)
        plans = {
            "newest first": await explain(store, {}, {"created_at": -1, "_id": -1}),
            "open queue (3 statuses), by score": await explain(
                store,
                {"status": {"$in": ["open", "under_review", "escalated"]}},
                {"score": -1, "_id": -1},
            ),
            "open + high, by score": await explain(
                store,
                {"status": "open", "risk_level": "high"},
                {"score": -1, "_id": -1},
            ),
            "one rule": await explain(
                store, {"rule_ids": {"$in": ["R007"]}}, {"created_at": -1, "_id": -1}
            ),
        }
        ui: list[Timing] = []
        if with_ui:
            ui = await asyncio.to_thread(ui_timings, server.uri, db, alerts, loads, work)
            for t in ui:
                print(f"{t.name}: p50 {t.p50:.1f} ms, p95 {t.p95:.1f} ms", flush=True)
        return render(n, seed_s, api, ui, plans)
    finally:
        await store.client.drop_database(db)
        await store.close()
        embedded.stop(work / "store")
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench dashboard")
    p.add_argument("--alerts", type=int, default=100_000)
    p.add_argument("--loads", type=int, default=30)
    p.add_argument("--no-ui", action="store_true", help="skip the dashboard process timings")
    args = p.parse_args(argv)
    report = asyncio.run(run_bench(args.alerts, args.loads, not args.no_ui))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"dashboard-{datetime.now(UTC):%Y-%m-%d}.md"
    out.write_text(report)
    print(report)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
