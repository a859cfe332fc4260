"""Entry functions of the training jobs (the CLI, ``ray job submit`` and the scheduler call these).

Each job has an ``async`` core taking an open store (tests and the scheduler use it) and a
synchronous wrapper taking :class:`~aml.settings.Settings` that opens the store and joins Ray::

    ray job submit -- python -m training.jobs xgboost --trials 16 --since 2026-01-01
    python -m training.jobs anomaly --since 2026-01-01
    python -m training.jobs backtest --from-store --since 2026-03-01 --out report/
    python -m training.jobs drift

Progress is printed per trial.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aml.domain import ModelRecord, Transaction, ensure_utc, utcnow
from aml.errors import Unprocessable
from aml.features import FEATURE_NAMES, FeatureParams, feature_frame
from aml.settings import Settings, load_settings
from serve.scoring.models import ANOMALY, XGBOOST
from storage.repositories.jobs import DriftRun
from storage.store import Store
from training.anomaly_tune import AnomalySearch, publish_anomaly, run_anomaly
from training.backtest import BacktestReport
from training.backtest import backtest as run_backtest
from training.dataset_build import (
    LabelledSet,
    build_from_store,
    load_labels,
    load_window,
    load_with_history,
    time_split,
)
from training.datasets import load_labelled_file
from training.drift import compute_drift as drift_for
from training.promotion import (
    GateConfig,
    GateResult,
    Promoter,
    ServeConfigUpdater,
    ServeUpdater,
)
from training.xgb_tune import XGBSearch, publish_xgboost, run_xgboost

Progress = Callable[[str], None]
MIN_LABELS = 50


@dataclass(frozen=True)
class TrainOutcome:
    """A trained candidate and what the promotion gate said (``None``: gate not run)."""

    record: ModelRecord
    gate: GateResult | None

    def __str__(self) -> str:
        verdict = "" if self.gate is None else f"; gate: {self.gate.reason}"
        promoted = " (promoted)" if self.gate and self.gate.passed else ""
        return f"{self.record.kind} model {self.record.version}{promoted}{verdict}"


def _say(progress: Progress | None) -> Progress:
    return progress or (lambda msg: print(msg, flush=True))


async def train_xgboost_job(
    store: Store,
    settings: Settings,
    *,
    trials: int = 16,
    since: datetime | None = None,
    label_files: Sequence[Path] = (),
    search: XGBSearch | None = None,
    gate: GateConfig | None = None,
    promote: bool = True,
    serve: ServeUpdater | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> TrainOutcome:
    """Build the labelled set, tune, publish a candidate and (optionally) run the gate.

    Raises:
        Unprocessable: too few labels, or a split lacks a class.
    """
    say = _say(progress)
    now = now or utcnow()
    params = FeatureParams.from_settings(settings)
    data = await build_from_store(store, params=params, since=since, label_files=label_files)
    if len(data) < MIN_LABELS:
        raise Unprocessable(f"need at least {MIN_LABELS} labelled transactions", rows=len(data))
    split = time_split(data)
    say(f"dataset: {data.summary()['rows']} rows, {int(data.labels.sum())} positive")
    search = search or XGBSearch(num_samples=trials)
    run = await asyncio.to_thread(
        run_xgboost,
        split,
        search=search,
        storage_path=settings.data_dir.resolve() / "ray_results",
        name=f"xgboost-{now:%Y%m%dT%H%M%S}",
        progress=say,
    )
    record = await publish_xgboost(run, store=store, data_dir=settings.data_dir, created_at=now)
    say(f"registered candidate {record.version}")
    result = None
    if promote:
        promoter = Promoter(store, serve=serve, data_dir=settings.data_dir)
        result = await promoter.consider(record.id, split.test, config=gate, at=now)
        say(f"gate: {result.reason}")
    return TrainOutcome(record, result)


async def train_anomaly_job(
    store: Store,
    settings: Settings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    search: AnomalySearch | None = None,
    promote: bool = True,
    serve: ServeUpdater | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> TrainOutcome:
    """Fit the anomaly model on stored traffic (earlier 80 % train, later 20 % held out),
    publish it, and promote it when nothing is champion yet or it ranks labelled held-out
    rows better (the gate, where labels exist).

    Raises:
        Unprocessable: too little traffic.
    """
    say = _say(progress)
    now = now or utcnow()
    params = FeatureParams.from_settings(settings)
    window = await load_window(store, since=since, until=until)
    txs = await _with_history(store, window)
    frame = feature_frame(txs, params=params)
    order = sorted((t for t in window if t.id in frame.index), key=lambda t: (t.occurred_at, t.id))
    if len(order) < 250:
        raise Unprocessable("need at least 250 stored transactions", rows=len(order))
    cut = int(len(order) * 0.8)
    train_ids = [t.id for t in order[:cut]]
    held_ids = [t.id for t in order[cut:]]
    labels = await load_labels(store)
    labelled = [i for i in held_ids if i in labels]
    x_train = frame.loc[train_ids, list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    x_val = frame.loc[labelled, list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    y_val = np.asarray([labels[i] for i in labelled], dtype=np.int64)
    run = await asyncio.to_thread(
        run_anomaly,
        x_train,
        search=search or AnomalySearch(),
        storage_path=settings.data_dir.resolve() / "ray_results",
        name=f"anomaly-{now:%Y%m%dT%H%M%S}",
        x_val=x_val if len(labelled) else None,
        y_val=y_val if len(labelled) else None,
        progress=say,
        trained_until=order[-1].occurred_at.isoformat(),
    )
    record = await publish_anomaly(run, store=store, data_dir=settings.data_dir, created_at=now)
    say(f"registered candidate {record.version}")
    result = None
    if promote:
        promoter = Promoter(store, serve=serve, data_dir=settings.data_dir)
        if len(np.unique(y_val)) == 2:
            held = LabelledSet(
                frame.loc[labelled, list(FEATURE_NAMES)],
                y_val,
                _times(order, labelled),
            )
            result = await promoter.consider(record.id, held, at=now)
        elif await store.models.get_champion(ANOMALY) is None:
            await promoter.promote(record.id, actor="scheduler", at=now, reason="first model")
            result = GateResult(True, "first anomaly model (no labels to compare)", {}, None)
        say(f"gate: {result.reason if result else 'no labelled held-out rows: not promoted'}")
    return TrainOutcome(record, result)


def _times(order: Sequence[Transaction], ids: Sequence[str]) -> pd.DatetimeIndex:
    at = {t.id: t.occurred_at for t in order}
    return pd.DatetimeIndex([at[i] for i in ids])


async def _with_history(store: Store, window: Sequence[Transaction]) -> list[Transaction]:
    return await load_with_history(store, [t.id for t in window])


async def compute_drift_job(
    store: Store,
    settings: Settings,
    *,
    kinds: Sequence[str] = (XGBOOST, ANOMALY),
    window: timedelta = timedelta(days=7),
    now: datetime | None = None,
) -> list[DriftRun]:
    """A stored drift run per champion that has a baseline and recent traffic."""
    now = now or utcnow()
    runs = []
    for kind in kinds:
        try:
            runs.append(
                await drift_for(
                    store,
                    kind=kind,
                    now=now,
                    window=window,
                    params=FeatureParams.from_settings(settings),
                )
            )
        except Unprocessable as exc:
            print(f"drift {kind}: {exc}", flush=True)
    return runs


async def backtest_job(
    store: Store,
    settings: Settings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    label_files: Sequence[Path] = (),
    rules_config: dict[str, Any] | None = None,
    anomaly_model: str | None = None,
    xgboost_model: str | None = None,
    out_dir: Path | None = None,
) -> BacktestReport:
    """Replay stored transactions (``--from-store``) against stored and file labels."""
    txs = await load_window(store, since=since, until=until)
    labels = await load_labels(store, files=label_files)
    report = run_backtest(
        txs,
        labels,
        rules_config=rules_config,
        anomaly_model=anomaly_model,
        xgboost_model=xgboost_model,
        pipeline={"features": {"timezone": settings.timezone}},
    )
    if out_dir is not None:
        report.write(out_dir)
    return report


# --- synchronous entry points ----------------------------------------------------------------


def _run_with_store(settings: Settings, job: Callable[[Store], Any]) -> Any:
    from storage.store import open_store, resolve_mongodb_uri

    async def _main() -> Any:
        store = open_store(
            resolve_mongodb_uri(settings),
            settings.mongodb_db,
            timeout_ms=settings.mongodb_timeout_ms,
            appname="fineract-aml-training",
        )
        try:
            await store.ensure_indexes()
            return await job(store)
        finally:
            await store.close()

    return asyncio.run(_main())


def _join_ray(settings: Settings) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address=settings.ray_address, include_dashboard=False, log_to_driver=False)


def serve_updater() -> ServeUpdater | None:
    """The updater of the Serve applications running on the connected cluster, if any."""
    try:
        return ServeConfigUpdater.from_cluster()
    except Exception as exc:  # no Serve running: the store and MLflow still move
        print(f"Serve not reachable ({exc}); promotion will not reconfigure scorers", flush=True)
        return None


def train_xgboost(
    settings: Settings,
    trials: int = 16,
    since: datetime | None = None,
    *,
    label_files: Sequence[Path] = (),
    max_rounds: int = 300,
    promote: bool = True,
) -> TrainOutcome:
    """Retrain XGBoost on Ray Tune from stored labels (and label files); gate and promote."""
    _join_ray(settings)
    serve = serve_updater() if promote else None
    result: TrainOutcome = _run_with_store(
        settings,
        lambda store: train_xgboost_job(
            store,
            settings,
            trials=trials,
            since=since,
            label_files=label_files,
            search=XGBSearch(num_samples=trials, max_rounds=max_rounds),
            promote=promote,
            serve=serve,
        ),
    )
    return result


def train_anomaly(
    settings: Settings,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    promote: bool = True,
    alert_rate: float = 0.005,
) -> TrainOutcome:
    """Retrain the Isolation Forest on Ray Tune from stored traffic; gate and promote."""
    _join_ray(settings)
    serve = serve_updater() if promote else None
    result: TrainOutcome = _run_with_store(
        settings,
        lambda store: train_anomaly_job(
            store,
            settings,
            since=since,
            until=until,
            search=AnomalySearch(alert_rate=alert_rate),
            promote=promote,
            serve=serve,
        ),
    )
    return result


def backtest(
    settings: Settings,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    data: Path | None = None,
    label_files: Sequence[Path] = (),
    rules_config: Path | None = None,
    anomaly_model: str | None = None,
    xgboost_model: str | None = None,
    out_dir: Path | None = None,
) -> BacktestReport:
    """Backtest stored transactions, or the file ``data`` (no store needed); write JSON,
    Markdown and HTML reports to ``out_dir``."""
    import json

    rules = json.loads(rules_config.read_text()) if rules_config else None
    if data is not None:
        txs, labels = load_labelled_file(data, currency=settings.default_currency)
        txs = [
            t
            for t in txs
            if (since is None or t.occurred_at >= since)
            and (until is None or t.occurred_at < until)
        ]
        replayed = run_backtest(
            txs,
            labels,
            rules_config=rules,
            anomaly_model=anomaly_model,
            xgboost_model=xgboost_model,
            pipeline={"features": {"timezone": settings.timezone}},
        )
        if out_dir is not None:
            replayed.write(out_dir)
        return replayed
    report: BacktestReport = _run_with_store(
        settings,
        lambda store: backtest_job(
            store,
            settings,
            since=since,
            until=until,
            label_files=label_files,
            rules_config=rules,
            anomaly_model=anomaly_model,
            xgboost_model=xgboost_model,
            out_dir=out_dir,
        ),
    )
    return report


def compute_drift(settings: Settings, window_days: int = 7) -> list[DriftRun]:
    """Drift of every champion over the last ``window_days`` of traffic (stored)."""
    runs: list[DriftRun] = _run_with_store(
        settings,
        lambda store: compute_drift_job(store, settings, window=timedelta(days=window_days)),
    )
    return runs


def _date(text: str) -> datetime:
    return ensure_utc(datetime.fromisoformat(text))


def add_train_parsers(sub: Any) -> None:
    """Add ``xgboost`` and ``anomaly`` sub-commands (used by ``fineract-aml train``)."""
    p = sub.add_parser("xgboost", help="retrain XGBoost on Ray Tune")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--since", type=_date, help="labels decided since (ISO date)")
    p.add_argument("--labels", type=Path, action="append", default=[], help="label CSV/Parquet")
    p.add_argument("--no-promote", action="store_true")
    p.set_defaults(job="xgboost")
    p = sub.add_parser("anomaly", help="retrain the Isolation Forest on Ray Tune")
    p.add_argument("--since", type=_date)
    p.add_argument("--until", type=_date)
    p.add_argument("--alert-rate", type=float, default=0.005)
    p.add_argument("--no-promote", action="store_true")
    p.set_defaults(job="anomaly")


def add_backtest_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-store", action="store_true", help="replay stored transactions")
    source.add_argument(
        "--data",
        type=Path,
        help="replay a file: PaySim .csv.gz, an AMLSim directory, or JSON lines of transactions",
    )
    p.add_argument("--since", type=_date)
    p.add_argument("--until", type=_date)
    p.add_argument("--labels", type=Path, action="append", default=[])
    p.add_argument("--rules", type=Path, help="RuleConfig JSON (default: shipped rules)")
    p.add_argument("--anomaly-model")
    p.add_argument("--xgboost-model")
    p.add_argument("--out", type=Path, default=Path("backtest-report"))
    p.set_defaults(job="backtest")


def add_drift_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window-days", type=int, default=7)
    p.set_defaults(job="drift")


def run_job(settings: Settings, args: argparse.Namespace) -> int:
    """Run the job selected by ``args.job`` with the parsed arguments."""
    if args.job == "xgboost":
        print(
            train_xgboost(
                settings,
                args.trials,
                args.since,
                label_files=args.labels,
                max_rounds=args.rounds,
                promote=not args.no_promote,
            )
        )
    elif args.job == "anomaly":
        print(
            train_anomaly(
                settings,
                args.since,
                args.until,
                promote=not args.no_promote,
                alert_rate=args.alert_rate,
            )
        )
    elif args.job == "backtest":
        report = backtest(
            settings,
            args.since,
            args.until,
            data=args.data,
            label_files=args.labels,
            rules_config=args.rules,
            anomaly_model=args.anomaly_model,
            xgboost_model=args.xgboost_model,
            out_dir=args.out,
        )
        print(report.to_markdown())
    else:
        for run in compute_drift(settings, args.window_days):
            print(f"{run.model_kind} {run.model_version}: {run.level} over {run.rows} rows")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.jobs {xgboost,anomaly,backtest,drift} ...`` (``ray job submit``)."""
    parser = argparse.ArgumentParser(prog="python -m training.jobs")
    sub = parser.add_subparsers(dest="job", required=True)
    add_train_parsers(sub)
    add_backtest_arguments(
        sub.add_parser("backtest", help="replay stored transactions through rules and models")
    )
    add_drift_arguments(
        sub.add_parser("drift", help="PSI of recent traffic against each champion's baseline")
    )
    args = parser.parse_args(argv)
    return run_job(load_settings(), args)


if __name__ == "__main__":
    raise SystemExit(main())
