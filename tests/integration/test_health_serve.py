"""Readiness against the real Serve application, and rescaling a scorer under load.

Deploys ``deploy/serve_config.yaml`` under its own application name on the shared Ray (see
``tests.integration.serve_app.small_config``). The rescale test is what an operator does: edit
``num_replicas`` and re-apply the file while transactions flow; no request may fail and the
ingress must stay ready throughout.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from ray import serve

from serve.ingress.app import IngressApp, create_app
from serve.scoring.client import ServeScoring
from serve.scoring.deploy import apply
from serve.scoring.metrics import ServeStatusProbe
from storage.store import Store
from tests.factories import T0, make_tx
from tests.integration.serve_app import small_config
from tests.integration.test_ingress_app import make_settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.usefixtures("ray_session"),
]

APP = "scoring-health-test"


@pytest.fixture(scope="module")
def config(module_store: Store, mongo_uri: str, ray_session: None) -> Iterator[dict[str, Any]]:
    cfg = small_config(mongo_uri, module_store.db.name, APP)
    apply(cfg)
    try:
        yield cfg
    finally:
        serve.delete(APP)


def ingress(tmp_path: Path, store: Store, probe: ServeStatusProbe) -> IngressApp:
    return create_app(
        make_settings(tmp_path),
        store=store,
        handoff=ServeScoring.connect(APP),
        scoring_probe=probe,
        name=f"h-{uuid.uuid4().hex[:8]}",
    )


def with_replicas(config: dict[str, Any], deployment: str, n: int) -> dict[str, Any]:
    out = copy.deepcopy(config)
    for dep in out["applications"][0]["deployments"]:
        if dep["name"] == deployment:
            dep["num_replicas"] = n
    return out


def replicas_of(deployment: str) -> int:
    status = serve.status().applications[APP].deployments[deployment]
    return sum(status.replica_states.values())


async def test_running_application_is_ready_with_ray_and_serve_parts(
    tmp_path: Path, module_store: Store, config: dict[str, Any]
) -> None:
    app = ingress(tmp_path, module_store, ServeStatusProbe(APP, ttl_s=0))
    _, resp = await app.asgi_client.get("/readyz")
    assert resp.status == 200, resp.json
    parts = resp.json["components"]
    assert parts["ray"]["ok"] is True and parts["ray"]["address"]
    assert parts["serve"]["status"] == "RUNNING"
    assert set(parts["serve"]["deployments"]) == {
        "ScoringPipeline",
        "RuleScorer",
        "AnomalyScorer",
        "XGBoostScorer",
    }


async def test_missing_application_is_503(
    tmp_path: Path, module_store: Store, config: dict[str, Any]
) -> None:
    app = ingress(tmp_path, module_store, ServeStatusProbe("no-such-app", ttl_s=0))
    _, resp = await app.asgi_client.get("/readyz")
    assert resp.status == 503
    assert resp.json["components"]["serve"] == {
        "ok": False,
        "app": "no-such-app",
        "status": "NOT_FOUND",
    }
    assert resp.json["components"]["store"] == {"ok": True}


async def test_probe_answers_from_cache_within_its_ttl(config: dict[str, Any]) -> None:
    probe = ServeStatusProbe(APP, ttl_s=60)
    first = await probe()
    second = await probe()
    assert second is first  # one controller round trip per ttl, however often it is probed


async def test_scaling_a_scorer_under_load_drops_nothing_and_stays_ready(
    module_store: Store, config: dict[str, Any]
) -> None:
    handoff = ServeScoring.connect(APP, batch_size=16)
    probe = ServeStatusProbe(APP, ttl_s=0)
    stop = asyncio.Event()
    sent: list[str] = []
    failures: list[BaseException] = []
    unready: list[dict[str, Any]] = []

    async def load(worker: int) -> None:
        i = 0
        while not stop.is_set():
            txs = [
                make_tx(
                    account_id=f"savings:scale-{worker}-{i % 5}",
                    occurred_at=T0 + timedelta(minutes=i, seconds=k),
                )
                for k in range(8)
            ]
            i += 1
            await module_store.transactions.insert_many(txs)
            try:
                await handoff.submit(txs)
            except Exception as exc:  # counted: the test asserts there are none
                failures.append(exc)
            sent.extend(t.id for t in txs)

    async def watch() -> None:
        while not stop.is_set():
            parts = await probe()
            if not all(p["ok"] for p in parts.values()):
                unready.append(parts)
            await asyncio.sleep(0.2)

    workers = [asyncio.create_task(load(w)) for w in range(3)]
    watcher = asyncio.create_task(watch())
    try:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(apply, with_replicas(config, "XGBoostScorer", 2))
        scaled_up = replicas_of("XGBoostScorer")
        await asyncio.sleep(1.0)
        await asyncio.to_thread(apply, config)
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.gather(*workers, watcher)

    assert scaled_up == 2
    assert failures == []
    assert unready == []
    decisions = await module_store.decisions.list_for_transactions(sent)
    assert len(sent) > 50
    assert len({d.transaction_id for d in decisions}) == len(sent)
    for d in decisions:
        xgb = next(s for s in d.scorers if s.scorer == "xgboost")
        assert xgb.reason == "no model"  # answered by a replica, never "scorer unavailable"


async def test_scorer_left_without_replicas_during_an_update_is_not_ready(
    tmp_path: Path, module_store: Store, config: dict[str, Any]
) -> None:
    import ray

    probe = ServeStatusProbe(APP, ttl_s=0)
    assert (await probe())["serve"]["ok"] is True
    # An update whose new replicas can never be placed (like replacements for a lost node):
    # the old replica keeps serving, then it dies.
    stuck = copy.deepcopy(config)
    for dep in stuck["applications"][0]["deployments"]:
        if dep["name"] == "XGBoostScorer":
            dep["ray_actor_options"]["resources"] = {"no-such-node": 1}
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    serve_start().deploy_apps(ServeDeploySchema.parse_obj(stuck))
    try:
        updating = await wait_for_serve(probe, lambda s: s["status"] == "DEPLOYING")
        assert updating["ok"] is True  # the old replica still answers
        assert updating["running_replicas"]["XGBoostScorer"] == 1
        for actor in ray.util.list_named_actors(all_namespaces=True):
            if f"{APP}#XGBoostScorer#" in actor["name"]:
                ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]))
        lost = await wait_for_serve(probe, lambda s: s["running_replicas"]["XGBoostScorer"] == 0)
        assert lost["ok"] is False
        app = ingress(tmp_path, module_store, probe)
        _, resp = await app.asgi_client.get("/readyz")
        assert resp.status == 503
        _, ingest = await app.asgi_client.get("/readyz", params={"scope": "ingest"})
        assert ingest.status == 200
    finally:
        await asyncio.to_thread(apply, config)
    assert (await probe())["serve"]["ok"] is True


async def wait_for_serve(
    probe: ServeStatusProbe, check: Any, timeout_s: float = 60.0
) -> dict[str, Any]:
    """The probe's ``serve`` part once ``check`` accepts it."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        part = (await probe())["serve"]
        if "running_replicas" in part and check(part):
            return part
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"Serve never reached the expected state: {part}")
        await asyncio.sleep(0.5)
