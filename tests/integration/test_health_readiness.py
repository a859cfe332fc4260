"""``/readyz`` without Ray: the store and spool parts, and what a load balancer sees."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from serve.ingress.app import create_app
from storage.embedded import free_port
from storage.store import Store, open_store
from tests.integration.test_ingress_app import (
    DEPOSIT_HEADERS,
    HOOK,
    deposit,
    make_settings,
    serving,
)

pytestmark = pytest.mark.integration


class StaticProbe:
    """A scoring side in a fixed state (the Ray-backed probe is tested in test_health_serve)."""

    def __init__(self, parts: Mapping[str, Mapping[str, Any]]) -> None:
        self.parts = parts

    async def __call__(self) -> Mapping[str, Mapping[str, Any]]:
        return self.parts


async def test_ready_with_store_and_spool_reports_each_component(
    tmp_path: Path, store: Store
) -> None:
    app = create_app(make_settings(tmp_path), store=store, name=f"r-{uuid.uuid4().hex[:8]}")
    _, resp = await app.asgi_client.get("/readyz")
    assert resp.status == 200
    assert resp.json["ready"] is True
    assert resp.json["components"] == {
        "ingress": {"ok": True},
        "store": {"ok": True},
        "spool": {"ok": True},
    }


async def test_store_down_and_spool_gone_is_503_naming_both(tmp_path: Path) -> None:
    # Nothing listens on this port: the committer starts in spool mode.
    dead = open_store(f"mongodb://127.0.0.1:{free_port()}/", "nowhere", timeout_ms=300)
    app = create_app(make_settings(tmp_path), store=dead, name=f"r-{uuid.uuid4().hex[:8]}")
    try:
        async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
            ok = await http.post(HOOK, content=deposit(5001), headers=DEPOSIT_HEADERS)
            spool_only = await http.get("/readyz")
            shutil.rmtree(tmp_path / "spool")
            gone = await http.get("/readyz")
    finally:
        await dead.close()
    assert ok.status_code == 200 and ok.json()["spooled"] is True
    assert spool_only.status_code == 200  # acks are still durable: keep taking traffic
    assert spool_only.json()["components"]["store"] == {"ok": False}
    assert gone.status_code == 503
    assert gone.json()["ready"] is False
    assert gone.json()["components"]["store"] == {"ok": False}
    assert gone.json()["components"]["spool"] == {"ok": False}


async def test_a_failing_scoring_part_makes_the_ingress_unready(
    tmp_path: Path, store: Store
) -> None:
    down = StaticProbe(
        {
            "ray": {"ok": True, "address": "127.0.0.1:6379"},
            "serve": {"ok": False, "app": "scoring", "status": "DEPLOY_FAILED"},
        }
    )
    app = create_app(
        make_settings(tmp_path),
        store=store,
        scoring_probe=down,
        name=f"r-{uuid.uuid4().hex[:8]}",
    )
    _, resp = await app.asgi_client.get("/readyz")
    assert resp.status == 503
    assert resp.json["components"]["serve"]["status"] == "DEPLOY_FAILED"
    assert resp.json["components"]["store"] == {"ok": True}
    _, health = await app.asgi_client.get("/healthz")
    assert health.status == 200  # alive: restarting the pod would not bring Serve back
    _, ingest = await app.asgi_client.get("/readyz", params={"scope": "ingest"})
    assert ingest.status == 200  # hooks are still acknowledged durably and scored later
    assert ingest.json["components"]["serve"]["status"] == "DEPLOY_FAILED"
