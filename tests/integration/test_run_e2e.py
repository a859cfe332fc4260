"""`fineract-aml run` end to end: the whole product on embedded defaults, as `make run` starts it.

A real Fineract hook goes in over HTTP and comes out as a stored decision; the one-time admin
password printed at first start logs into the REST API; SIGTERM stops every part.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient

from aml.rules import default_rule_config
from storage import embedded
from storage.embedded import free_port_for_later

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "fineract"


def _wait_for(pattern: str, log: Path, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if re.search(pattern, text):
            return text
        if proc.poll() is not None:
            raise AssertionError(f"run exited with {proc.returncode}:\n{text[-4000:]}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {pattern!r}:\n{log.read_text()[-4000:]}")


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer")


def test_run_scores_a_fineract_hook_and_stops_cleanly(tmp_path: Path) -> None:
    ports = {name: free_port_for_later() for name in ("ingress", "api", "ui")}
    # As a user starts it: no test-runner variables (NiceGUI switches to its test mode on them).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AML_", "RAY_ADDRESS", "PYTEST_", "NICEGUI_"))
    }
    env.update(
        AML_DATA_DIR=str(tmp_path / "data"),
        AML_INGRESS_PORT=str(ports["ingress"]),
        AML_API_PORT=str(ports["api"]),
        AML_UI_PORT=str(ports["ui"]),
        AML_LOG_LEVEL="WARNING",
    )
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fineract_aml.cli", "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        text = _wait_for(r"Press Ctrl-C to stop", log, proc, timeout=240)
        hook_url = re.search(r"Fineract hook URL\s+(\S+)", text)
        password = re.search(r"password: (\S+)", text)
        assert hook_url and password, text
        base = f"http://127.0.0.1:{ports['ingress']}"
        _wait_http(f"{base}/healthz", 60)

        body = (FIXTURES / "savings_deposit.json").read_bytes()
        headers = {
            "Content-Type": "application/json; charset=UTF-8",
            "X-Fineract-Entity": "SAVINGSACCOUNT",
            "X-Fineract-Action": "DEPOSIT",
            "Fineract-Platform-TenantId": "default",
        }
        first = httpx.post(hook_url.group(1), content=body, headers=headers, timeout=30)
        assert first.status_code == 200, first.text
        tx_id = first.json()["transaction_id"]
        again = httpx.post(hook_url.group(1), content=body, headers=headers, timeout=30)
        assert again.status_code == 200 and again.json()["transaction_id"] == tx_id

        server = embedded.status(tmp_path / "data")
        assert server is not None
        with MongoClient(server.uri) as client:
            db = client.fineract_aml
            deadline = time.monotonic() + 90
            decision = None
            while decision is None and time.monotonic() < deadline:
                decision = db.decisions.find_one({"_id": tx_id})
                time.sleep(0.5)
            assert decision is not None, "no decision stored"
            assert db.transactions.count_documents({}) == 1
            assert db.transactions.find_one({"_id": tx_id})["status"] == "scored"
            scorers = {s["scorer"]: s["available"] for s in decision["scorers"]}
            assert scorers["rules"] is True and scorers["anomaly"] is False
            # The product's one scheduler has registered its periodic jobs.
            deadline = time.monotonic() + 60
            while db.jobs.count_documents({}) == 0 and time.monotonic() < deadline:
                time.sleep(0.5)
            names = {j["_id"] if "name" not in j else j["name"] for j in db.jobs.find()}
            assert {"retrain-xgboost", "retrain-anomaly", "drift", "credit-score-all"} <= names, (
                names
            )

        api = f"http://127.0.0.1:{ports['api']}/api/v1"
        _wait_http(f"{api}/openapi.json", 60)
        login = httpx.post(
            f"{api}/auth/login",
            json={"username": "admin", "password": password.group(1)},
            timeout=30,
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        me = httpx.get(f"{api}/auth/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert me.status_code == 200 and json.loads(me.text)["username"] == "admin"
        assert httpx.get(f"{api}/auth/me", timeout=30).status_code == 401

        # Hot reload end to end: a rule config saved and activated through the API reaches the
        # running RuleScorer (reconfigure, no restart) and changes the next decision.
        auth = {"Authorization": f"Bearer {token}"}
        config = default_rule_config().to_dict()
        config["thresholds"]["XAF"].update(large_amount=1000, structuring_floor=900)
        saved = httpx.post(
            f"{api}/rules/versions", json={"config": config, "comment": "e2e"}, headers=auth
        )
        assert saved.status_code == 201, saved.text
        version = saved.json()["version"]
        activated = httpx.post(
            f"{api}/rules/versions/{version}/activate", headers=auth, timeout=120
        )
        assert activated.status_code == 200, activated.text
        second = body.replace(b'"resourceId":345', b'"resourceId":346')
        posted = httpx.post(hook_url.group(1), content=second, headers=headers, timeout=30)
        assert posted.status_code == 200, posted.text
        with MongoClient(server.uri) as client:
            db = client.fineract_aml
            deadline = time.monotonic() + 90
            later = None
            while later is None and time.monotonic() < deadline:
                later = db.decisions.find_one({"_id": posted.json()["transaction_id"]})
                time.sleep(0.5)
            assert later is not None, "no decision for the second hook"
            assert "large_amount" in {h["rule_id"] for h in later["rule_hits"]}
            assert later["rule_config_version"] == version

        jobs = httpx.get(f"{api}/jobs", headers=auth, timeout=30)
        assert jobs.status_code == 200, jobs.text

        _wait_http(f"http://127.0.0.1:{ports['ui']}/login", 60)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, log.read_text()[-4000:]
    assert embedded.status(tmp_path / "data") is None
