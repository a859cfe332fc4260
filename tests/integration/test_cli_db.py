"""`fineract-aml db start|status|stop` and data surviving a restart of the embedded store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pymongo import MongoClient

from storage import embedded

pytestmark = pytest.mark.integration


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AML_")}
    env["AML_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "fineract_aml.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_db_commands_and_persistence(tmp_path: Path) -> None:
    assert _cli(tmp_path, "db", "status").returncode == 1
    started = _cli(tmp_path, "db", "start")
    assert started.returncode == 0, started.stderr
    server = embedded.status(tmp_path)
    assert server is not None
    try:
        status = _cli(tmp_path, "db", "status")
        assert status.returncode == 0 and server.uri in status.stdout
        # Starting again reuses the running server.
        assert _cli(tmp_path, "db", "start").returncode == 0
        assert embedded.status(tmp_path) == server
        with MongoClient(server.uri) as client:
            client.fineract_aml.probe.insert_one({"_id": "kept", "n": 1})
    finally:
        stopped = _cli(tmp_path, "db", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert embedded.status(tmp_path) is None
    assert _cli(tmp_path, "db", "stop").stdout.strip() == "embedded store was not running"

    again = embedded.start(tmp_path)
    try:
        with MongoClient(again.uri) as client:
            assert client.fineract_aml.probe.find_one({"_id": "kept"}) == {"_id": "kept", "n": 1}
    finally:
        embedded.stop(tmp_path)


def test_version_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fineract_aml.cli", "version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("fineract-aml ")


def test_invalid_setting_fails_naming_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AML_")}
    env.update(AML_DATA_DIR=str(tmp_path), AML_UI_PORT="eighty")
    out = subprocess.run(
        [sys.executable, "-m", "fineract_aml.cli", "version"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert "AML_UI_PORT" in out.stderr
