"""Scoring metrics as an operator scrapes them: from the Ray nodes' metrics endpoints.

The application is deployed from ``deploy/serve_config.yaml`` under its own name (other modules
keep the ``scoring`` application running on the shared Ray), with CPU shares shrunk so both fit.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import ray
from ray import serve

from aml.domain import Transaction
from serve.scoring.client import ServeScoring
from serve.scoring.deploy import apply
from storage.store import Store
from tests.factories import T0, make_tx
from tests.integration.serve_app import small_config

pytestmark = [
    pytest.mark.integration,
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.usefixtures("ray_session"),
]

APP = "scoring-metrics-test"
# Ray's metrics agent reports every ~10 s; leave room for two rounds.
SCRAPE_DEADLINE_S = 45.0


@pytest.fixture(scope="module")
def deployed(module_store: Store, mongo_uri: str, ray_session: None) -> Iterator[None]:
    apply(small_config(mongo_uri, module_store.db.name, APP))
    try:
        yield
    finally:
        serve.delete(APP)


def scrape_all_nodes() -> str:
    """The Prometheus text of every alive Ray node's metrics agent, concatenated."""
    texts = []
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        if not node.get("Alive") or not node.get("MetricsExportPort"):
            continue
        url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        try:
            texts.append(httpx.get(url, timeout=5).text)
        except httpx.HTTPError:
            continue
    return "\n".join(texts)


def series_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}\{{([^}}]*)\}} ([0-9.eE+-]+)$", text, re.MULTILINE):
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


async def wait_for_metrics(check: Any, deadline_s: float = SCRAPE_DEADLINE_S) -> str:
    end = time.monotonic() + deadline_s
    text = ""
    while time.monotonic() < end:
        text = await asyncio.to_thread(scrape_all_nodes)
        if check(text):
            return text
        await asyncio.sleep(2)
    return text


async def test_decisions_alerts_latency_and_state_are_exported(
    module_store: Store, deployed: None
) -> None:
    handoff = ServeScoring.connect(APP, batch_size=32)
    acct = f"savings:{uuid.uuid4().hex[:8]}"
    small = [
        make_tx(account_id=acct, amount_minor=1_000, occurred_at=T0 + timedelta(minutes=i))
        for i in range(30)
    ]
    big = [
        make_tx(account_id=acct, amount_minor=9_000_000, occurred_at=T0 + timedelta(hours=2 + i))
        for i in range(2)
    ]
    txs: list[Transaction] = [*small, *big]
    await module_store.transactions.insert_many(txs)
    decisions = await handoff.score_and_store(txs)
    alerting = sum(d.alert for d in decisions)
    assert alerting >= 2

    def complete(text: str) -> bool:
        return (
            series_sum(text, "ray_aml_scoring_decisions_total", application=APP) >= len(txs)
            and series_sum(text, "ray_aml_state_actors_alive", application=APP) >= 2
            and series_sum(text, "ray_aml_state_entries", application=APP) >= len(txs)
            and "ray_aml_state_order_skipped{" in text
        )

    text = await wait_for_metrics(complete)

    assert series_sum(text, "ray_aml_scoring_decisions_total", application=APP) == len(txs)
    assert series_sum(text, "ray_aml_scoring_alerting_decisions_total", application=APP) == (
        alerting
    )
    assert series_sum(text, "ray_aml_scoring_batch_size_count", application=APP) == 1
    for stage in ("state", "rules", "anomaly", "xgboost"):
        assert (
            series_sum(text, "ray_aml_scoring_stage_seconds_count", application=APP, stage=stage)
            == 1
        ), stage
    assert series_sum(text, "ray_aml_state_actors_alive", application=APP) == 2
    # Exported per shard; one batch: nothing waited for an earlier one, nothing passed over.
    assert text.count("ray_aml_state_order_held{") >= 2
    assert series_sum(text, "ray_aml_state_order_skipped", application=APP) == 0
    assert series_sum(text, "ray_aml_state_order_held", application=APP) == 0
    # Each transaction is held by its own account's window on one of the two shards.
    assert series_sum(text, "ray_aml_state_entries", application=APP) >= len(txs)
