"""Promotion under live scoring: the champion changes while a stream is being scored by the
Serve application (deployed from ``deploy/serve_config.yaml`` on the shared Ray)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from ray import serve

from aml.domain import Decision, ModelRecord
from serve.scoring.client import ServeScoring
from serve.scoring.deploy import apply
from storage.store import Store
from tests.factories import T0, make_tx
from tests.integration.serve_app import small_config
from tests.integration.test_training_xgb import PARAMS, labelled_stream, register_booster
from training.dataset_build import build_dataset, time_split
from training.promotion import Promoter, ServeConfigUpdater

pytestmark = [
    pytest.mark.integration,
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.usefixtures("ray_session"),
]

APP = "training-hotswap"


@pytest.fixture(scope="module")
def app_config(module_store: Store, mongo_uri: str, ray_session: None) -> Iterator[dict[str, Any]]:
    cfg = small_config(mongo_uri, module_store.db.name, APP, shards=1, num_cpus=0.05)
    yield cfg
    with contextlib.suppress(Exception):
        serve.delete(APP)


async def _models(store: Store, tmp: Path) -> tuple[ModelRecord, ModelRecord]:
    txs, labels = labelled_stream("swap-train", n=400)
    split = time_split(build_dataset(txs, labels, params=PARAMS))
    a = await register_booster(store, split.train, tmp, "xgb-a", rounds=5)
    b = await register_booster(store, split.train, tmp, "xgb-b", rounds=40)
    return a, b


def _xgb(d: Decision) -> str | None:
    return next((s.model_version for s in d.scorers if s.scorer == "xgboost" and s.available), None)


async def test_champion_changes_under_a_live_stream_without_errors(
    module_store: Store, app_config: dict[str, Any], tmp_path: Path
) -> None:
    await asyncio.to_thread(apply, app_config)
    a, b = await _models(module_store, tmp_path)
    # The updater reads back what the cluster runs, as the scheduler's jobs do.
    updater = await asyncio.to_thread(ServeConfigUpdater.from_cluster)
    assert APP in {app["name"] for app in updater.config["applications"]}
    promoter = Promoter(module_store, serve=updater)
    await promoter.promote(a.id, actor="ml")
    handoff = ServeScoring(serve.get_app_handle(APP), batch_size=8)

    decisions: list[Decision] = []
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def stream() -> None:
        i = 0
        while not stop.is_set():
            tx = make_tx(
                tenant="swap",
                account_id=f"savings:{i % 5}",
                amount_minor=(i % 7 + 1) * 50_000,
                occurred_at=T0 + timedelta(minutes=10 * i),
            )
            i += 1
            try:
                await module_store.transactions.insert_many([tx])
                decisions.extend(await handoff.score_and_store([tx]))
            except Exception as exc:
                errors.append(exc)

    task = asyncio.create_task(stream())
    while len(decisions) < 5:
        await asyncio.sleep(0.05)
    pids = await serve.get_app_handle(APP).info.remote()
    await promoter.promote(b.id, actor="ml")  # the stream keeps running meanwhile
    during = len(decisions) + 1  # the stream is sequential: at most one request in flight
    while len(decisions) < during + 5:
        await asyncio.sleep(0.05)
    stop.set()
    await task

    assert errors == []
    versions = [_xgb(d) for d in decisions]
    assert set(versions) <= {"xgb-a", "xgb-b"}
    assert versions[0] == "xgb-a"
    assert versions[during:] == ["xgb-b"] * (len(versions) - during)
    first_b = versions.index("xgb-b")
    assert all(v == "xgb-b" for v in versions[first_b:])  # no flapping back
    after_swap = await serve.get_app_handle(APP).info.remote()
    # Swapped in place by reconfigure: the same replica processes, no restart.
    assert after_swap["xgboost"]["pid"] == pids["xgboost"]["pid"]
    assert after_swap["pid"] == pids["pid"]

    # The former champion scores in the shadow beside the new one, without changing decisions.
    await promoter.promote_to_shadow(a.id, actor="ml")
    tx = make_tx(tenant="swap", account_id="savings:99", occurred_at=T0 + timedelta(days=30))
    await module_store.transactions.insert_many([tx])
    (shadowed,) = await handoff.score_and_store([tx])
    assert _xgb(shadowed) == "xgb-b"
    assert set(shadowed.shadow_scores) == {"xgboost:xgb-a"}

    # Rollback brings the previous champion back.
    back = await promoter.rollback("xgboost", actor="ml")
    assert back.id == a.id
    tx2 = make_tx(tenant="swap", account_id="savings:98", occurred_at=T0 + timedelta(days=31))
    await module_store.transactions.insert_many([tx2])
    (after,) = await handoff.score_and_store([tx2])
    assert _xgb(after) == "xgb-a"
    info = await serve.get_app_handle(APP).info.remote()
    assert info["xgboost"]["model_version"] == "xgb-a"
