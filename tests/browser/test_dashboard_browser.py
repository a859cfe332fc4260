"""The analyst's main journeys in real headless Chromium, with screenshots of the main pages."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from aml.domain import AlertStatus, AnalystDecision, CaseStatus, Role
from serve.services import cases
from tests.browser.conftest import SCREENSHOTS, Dashboard
from tests.ui.seed import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.integration]
WAIT_S = 20


def wait_for(driver: WebDriver, xpath: str) -> WebElement:
    try:
        return WebDriverWait(driver, WAIT_S).until(
            ec.visibility_of_element_located((By.XPATH, xpath))
        )
    except TimeoutException:
        # Keep what the browser showed: the fastest way to see why a journey broke.
        failure = Path(tempfile.gettempdir()) / "aml-browser-failure.png"
        driver.save_screenshot(str(failure))
        raise AssertionError(f"not visible: {xpath} (screenshot: {failure})") from None


def button(driver: WebDriver, text: str) -> WebElement:
    return WebDriverWait(driver, WAIT_S).until(
        ec.element_to_be_clickable((By.XPATH, f"//button[.//span[normalize-space()='{text}']]"))
    )


def see(driver: WebDriver, text: str) -> WebElement:
    # The innermost element holding the text (text may be split across child nodes).
    has = f"contains(normalize-space(.), '{text}')"
    return wait_for(driver, f"//body//*[{has}][not(*[{has}])]")


def shot(driver: WebDriver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def field(driver: WebDriver, label: str, tag: str = "input") -> WebElement:
    return wait_for(driver, f"//label[.//*[normalize-space()='{label}']]//{tag}")


def sign_in(driver: WebDriver, url: str, username: str, screenshot: bool = False) -> None:
    driver.get(f"{url}/login")
    field(driver, "Username").send_keys(username)
    field(driver, "Password").send_keys(PASSWORD)
    if screenshot:
        shot(driver, "login")
    button(driver, "Sign in").click()
    button(driver, "Sign out")


async def test_decide_top_alert_as_confirmed_fraud(
    dashboard: Dashboard, browser: WebDriver
) -> None:
    top = dashboard.alerts[0]  # highest score: first in the default queue order
    sign_in(browser, dashboard.url, "ana", screenshot=True)
    see(browser, "Open alerts")
    wait_for(browser, "//canvas")
    time.sleep(1.5)  # let the charts finish their entry animation before the screenshot
    shot(browser, "overview")
    browser.get(f"{dashboard.url}/alerts")
    first = wait_for(browser, "(//a[starts-with(@href, '/alerts/')])[1]")
    assert (first.get_attribute("href") or "").endswith(f"/alerts/{top.alert.id}")
    shot(browser, "alert_queue")
    browser.get(first.get_attribute("href") or "")
    see(browser, "Why it was flagged")
    see(browser, "amount_z = 4.5")
    shot(browser, "alert_detail")
    wait_for(browser, "//*[normalize-space(text())='Confirmed fraud']").click()
    field(browser, "Note (required)", "textarea").send_keys("Mule account, confirmed by branch")
    button(browser, "Submit decision").click()
    see(browser, "Alert queue")
    WebDriverWait(browser, WAIT_S).until(
        lambda d: not d.find_elements(By.XPATH, f"//a[@href='/alerts/{top.alert.id}']")
    )
    stored = await dashboard.store.alerts.get(top.alert.id)
    assert stored is not None and stored.status == AlertStatus.CLOSED_FRAUD
    assert stored.decided_by == "ana"
    labels = await dashboard.store.alerts.labels()
    assert ((top.transaction.id,), AnalystDecision.CONFIRMED_FRAUD) in labels


async def test_create_case_from_two_alerts(dashboard: Dashboard, browser: WebDriver) -> None:
    picked = dashboard.alerts[1:3]
    sign_in(browser, dashboard.url, "ana")
    browser.get(f"{dashboard.url}/alerts")
    for s in picked:
        wait_for(
            browser,
            f"//a[@href='/alerts/{s.alert.id}']/ancestor::div[contains(@class,'grid')][1]"
            "//div[contains(@class,'q-checkbox')]",
        ).click()
    field(browser, "Case title").send_keys("Mule ring in Douala")
    button(browser, "Open case from selected").click()
    see(browser, "Status: Open")
    shot(browser, "case_detail")
    found, total = await dashboard.store.cases.list_()
    assert total >= 1
    case = next(c for c in found if c.title == "Mule ring in Douala")
    assert set(case.alert_ids) == {s.alert.id for s in picked}
    assert set(case.transaction_ids) == {s.transaction.id for s in picked}
    browser.get(f"{dashboard.url}/cases")
    see(browser, "Mule ring in Douala")
    shot(browser, "cases")


async def test_four_eyes_refuses_the_maker(dashboard: Dashboard, browser: WebDriver) -> None:

    sam = dashboard.team.actor(Role.SENIOR_ANALYST)
    case = await cases.create(
        dashboard.store,
        actor=sam,
        title="Layering via agents",
        alert_ids=[dashboard.alerts[3].alert.id],
    )
    await cases.change_status(
        dashboard.store, actor=sam, case_id=case.id, status=CaseStatus.INVESTIGATING
    )
    sign_in(browser, dashboard.url, "sam")
    browser.get(f"{dashboard.url}/cases/{case.id}")
    field(browser, "Reason / SAR reference").send_keys("SAR ANIF-2026-0042")
    button(browser, "Closed sar filed (needs approval)").click()
    see(browser, "Awaiting approval")
    button(browser, "Approve: Closed sar filed").click()
    see(browser, "four-eyes: a second user must approve your own request")
    shot(browser, "four_eyes_refusal")
    stored = await dashboard.store.cases.get(case.id)
    assert stored is not None and stored.status == CaseStatus.INVESTIGATING
    assert stored.pending_status == CaseStatus.CLOSED_SAR_FILED and stored.approved_by is None
    browser.get(f"{dashboard.url}/audit")
    see(browser, "Audit log")
    button(browser, "Verify chain").click()
    see(browser, "Chain intact")
    shot(browser, "audit_log")
