"""The scheduler and the job entry functions against the real store (and the shared Ray)."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from aml.domain import AnalystDecision
from aml.features import FEATURE_NAMES, FeatureParams, feature_frame
from aml.settings import Settings
from serve.scoring.models import load_model
from storage.repositories.jobs import JobState
from storage.store import Store
from tests.factories import T0, make_alert, make_tx
from tests.integration.test_training_xgb import labelled_stream, seed_labels
from training.anomaly_tune import AnomalySearch
from training.jobs import compute_drift_job, main, train_anomaly_job, train_xgboost_job
from training.scheduler import (
    JobResult,
    JobSpec,
    Schedule,
    Scheduler,
    new_labels_trigger,
    start_scheduler,
)
from training.xgb_tune import XGBSearch

pytestmark = pytest.mark.integration


async def test_scheduler_runs_due_jobs_and_records_every_outcome(store: Store) -> None:
    calls: list[tuple[str, datetime]] = []

    async def ok(now: datetime) -> JobResult:
        calls.append(("ok", now))
        return JobResult("ok", "done", {"n": len(calls)})

    async def broken(now: datetime) -> JobResult:
        calls.append(("broken", now))
        raise RuntimeError("boom")

    scheduler = Scheduler(
        store,
        [
            JobSpec("hourly", timedelta(hours=1), ok),
            JobSpec("broken", timedelta(hours=1), broken),
            JobSpec("later", timedelta(days=1), ok, first_delay=timedelta(hours=2)),
        ],
        clock=lambda: T0,
    )
    ran = await scheduler.tick(T0)
    assert [s.name for s in ran] == ["hourly", "broken"]  # "later" is not due yet
    hourly = await store.jobs.get("hourly")
    assert hourly == JobState(
        name="hourly",
        next_run=T0 + timedelta(hours=1),
        last_run=T0,
        last_finished=T0,
        outcome="ok",
        message="done",
        runs=1,
        details={"n": 1},
    )
    failed = await store.jobs.get("broken")
    assert failed is not None and failed.outcome == "error" and "boom" in failed.message

    assert await scheduler.tick(T0 + timedelta(minutes=30)) == []
    ran = await scheduler.tick(T0 + timedelta(hours=2))
    assert {s.name for s in ran} == {"hourly", "broken", "later"}
    listed = await store.jobs.list_()
    # Dates stay dates in the store: sorted by next run, soonest first.
    assert [s.name for s in listed] == ["broken", "hourly", "later"]
    assert isinstance(listed[0].next_run, datetime)
    assert (await store.jobs.get("hourly")).runs == 2  # type: ignore[union-attr]


async def test_new_labels_trigger_a_retrain_before_its_interval(store: Store) -> None:
    async def retrain(now: datetime) -> JobResult:
        return JobResult("ok", "", {"labels": await store.alerts.count({"decision": "legitimate"})})

    spec = JobSpec(
        "retrain",
        timedelta(days=7),
        retrain,
        trigger=new_labels_trigger(store, 3),
        first_delay=timedelta(days=7),
    )
    scheduler = Scheduler(store, [spec])
    assert await scheduler.tick(T0) == []
    for _ in range(3):
        alert = await store.alerts.create(make_alert())
        await store.alerts.decide(alert.id, decision=AnalystDecision.LEGITIMATE, by="a", at=T0)
    (ran,) = await scheduler.tick(T0 + timedelta(hours=1))
    assert ran.name == "retrain" and ran.details["labels"] == 3
    assert await scheduler.tick(T0 + timedelta(hours=2)) == []  # no new labels since


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
async def test_retrain_job_promotes_the_first_model_and_drift_runs_on_later_traffic(
    store: Store, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    txs, labels = labelled_stream("job", n=600, seed=8)
    label_file = await seed_labels(store, txs, labels, tmp_path)
    lines: list[str] = []
    outcome = await train_xgboost_job(
        store,
        settings,
        label_files=[label_file],
        search=XGBSearch(
            num_samples=2, max_rounds=10, report_every=5, grace_rounds=5, cpus_per_trial=0.5
        ),
        now=T0 + timedelta(days=20),
        progress=lines.append,
    )
    assert outcome.gate is not None and outcome.gate.passed
    champion = await store.models.get_champion("xgboost")
    assert champion is not None and champion.id == outcome.record.id
    assert any(line.startswith("trial ") for line in lines)

    # Traffic after the training data: far larger amounts than anything trained on.
    rng = random.Random(2)
    later = [
        make_tx(
            tenant="job",
            account_id=f"savings:{rng.randrange(40)}",
            amount_minor=rng.randint(50_000, 90_000) * 1_000,
            occurred_at=T0 + timedelta(days=14, minutes=rng.randrange(60 * 24 * 5)),
        )
        for _ in range(200)
    ]
    await store.transactions.insert_many(later)
    (run,) = await compute_drift_job(
        store, settings, kinds=["xgboost"], now=T0 + timedelta(days=20)
    )
    assert run.model_id == champion.id and run.rows == 200  # only traffic after training
    assert "amount" in run.critical and run.level == "critical"
    assert await store.drift.latest("xgboost") == run


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
async def test_anomaly_job_tunes_feature_subsets_and_keeps_full_feature_artifacts(
    store: Store, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    txs, _ = labelled_stream("anom", n=400, seed=4)
    await store.transactions.insert_many(txs)
    outcome = await train_anomaly_job(
        store,
        settings,
        search=AnomalySearch(
            n_estimators=(50,), max_samples=(128,), cpus_per_trial=0.5, alert_rate=0.02
        ),
        now=T0 + timedelta(days=20),
        progress=print,
    )
    record = outcome.record
    assert record.params["selected_by"] == "stability"  # no labels stored
    assert record.params["subset"] in {"all", "no_time", "amount_velocity"}
    assert outcome.gate is not None and outcome.gate.passed  # the first anomaly model
    model = load_model(record.artifact_uri)  # declares the full feature list
    x = feature_frame(txs, params=FeatureParams())[list(FEATURE_NAMES)].to_numpy()[:50]
    results = model.score(x)
    assert all(r.available and 0.0 <= (r.score or 0.0) <= 1.0 for r in results)
    assert abs(record.metrics["train_alert_rate"] - 0.02) < 0.01


def test_command_line_lists_the_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(job in out for job in ("xgboost", "anomaly", "backtest", "drift"))


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
async def test_scheduler_actor_runs_the_product_jobs_and_reports_them(
    store: Store, mongo_uri: str, tmp_path: Path
) -> None:
    import ray

    settings = Settings(
        data_dir=tmp_path, mongodb_uri=SecretStr(mongo_uri), mongodb_db=store.db.name
    )
    schedule = Schedule(
        retrain_xgboost=timedelta(days=7),
        retrain_anomaly=None,
        drift=timedelta(hours=1),
        credit_score_all=None,
        credit_kmeans=None,
    )
    name = f"scheduler-{uuid.uuid4().hex[:6]}"
    handle = await asyncio.to_thread(
        start_scheduler, settings, schedule=schedule, poll_s=0.2, name=name, detached=False
    )
    try:
        # The same name gives the same actor: one scheduler however often it is started.
        again = await asyncio.to_thread(
            start_scheduler, settings, schedule=schedule, poll_s=0.2, name=name, detached=False
        )
        assert again._actor_id == handle._actor_id
        for _ in range(100):
            drift = await store.jobs.get("drift")
            if drift is not None and drift.outcome is not None:
                break
            await asyncio.sleep(0.1)
        assert drift is not None and drift.outcome == "skipped"  # no champion yet
        status = {s["name"]: s for s in await handle.status.remote()}
        assert set(status) == {"retrain-xgboost", "drift"}
        assert status["retrain-xgboost"]["outcome"] is None  # first run in a week
        assert status["drift"]["next_run"] > status["drift"]["last_run"]
    finally:
        await handle.stop.remote()
        ray.kill(handle)
