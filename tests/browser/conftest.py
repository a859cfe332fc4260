"""Real headless Chromium against a real dashboard process over the embedded store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from storage.embedded import free_port_for_later
from storage.store import Store, open_store
from tests.ui.seed import Seeded, Team, seed_alerts, seed_team

ROOT = Path(__file__).resolve().parents[2]
# Page screenshots go to a scratch folder; set AML_SCREENSHOT_DIR=docs/screenshots to refresh the
# committed ones (a test run must not rewrite tracked files).
SCREENSHOTS = Path(
    os.environ.get("AML_SCREENSHOT_DIR") or Path(tempfile.gettempdir()) / "fineract-aml-screens"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@dataclass
class Dashboard:
    url: str
    store: Store
    team: Team
    alerts: list[Seeded]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dashboard(
    mongo_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Dashboard]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed")
    db_name = f"b_{uuid.uuid4().hex[:12]}"
    store = open_store(mongo_uri, db_name)
    await store.ensure_indexes()
    team = await seed_team(store)
    seeded = await seed_alerts(store, 5)
    port = free_port_for_later()
    data_dir = tmp_path_factory.mktemp("dashboard")
    # NiceGUI switches to its own test mode when it sees pytest's variables: hide them.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "NICEGUI"))},
        "AML_MONGODB_URI": mongo_uri,
        "AML_MONGODB_DB": db_name,
        "AML_JWT_SECRET": "b" * 48,
        "AML_UI_PORT": str(port),
        "AML_DATA_DIR": str(data_dir),
    }
    log = (data_dir / "dashboard.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("serve_dashboard.py"))],
        cwd=data_dir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/login", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((data_dir / "dashboard.log").read_text())
            time.sleep(0.3)
        yield Dashboard(url=url, store=store, team=team, alerts=seeded)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        await store.client.drop_database(db_name)
        await store.close()


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    profile = tempfile.mkdtemp(prefix="aml-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1440,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
