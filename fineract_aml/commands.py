"""Sub-commands that run one part of the product (used by ``run`` and by deployments).

Each command loads nothing itself: it receives the process ``Settings`` from ``cli.main``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from aml.settings import Settings

log = logging.getLogger("fineract_aml")

DEFAULT_SERVE_CONFIG = Path("deploy") / "serve_config.yaml"


def serve_config_path(arg: str | None) -> Path:
    """The Serve config: the argument, else ``deploy/serve_config.yaml`` of the working
    directory, else the one shipped beside the source tree."""
    if arg:
        return Path(arg)
    if DEFAULT_SERVE_CONFIG.exists():
        return DEFAULT_SERVE_CONFIG
    return Path(__file__).resolve().parent.parent / DEFAULT_SERVE_CONFIG


def _join_ray(settings: Settings, address: str | None = None) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(
            address=address or settings.ray_address or "auto",
            include_dashboard=False,
            log_to_driver=False,
        )


def _cmd_serve_ingress(settings: Settings, args: argparse.Namespace) -> int:
    """The webhook ingress: joins the Ray cluster and hands transactions to Serve."""
    from aml.gc_tuning import collect_rarely
    from fineract_aml.runtime import connect_store
    from serve.fineract_client import FineractClient
    from serve.ingress.app import create_app
    from serve.scoring.client import ServeScoring, in_process_scoring

    store = connect_store(settings, appname="fineract-aml-ingress")
    handoff: Any
    probe = None
    if args.in_process:
        handoff = in_process_scoring(store, pipeline={"features": {"timezone": settings.timezone}})
    else:
        from serve.scoring.deploy import use_grpc_transport

        use_grpc_transport(settings.ray_address)
        from serve.scoring.metrics import ServeStatusProbe

        _join_ray(settings)
        handoff = ServeScoring.connect(settings.serve_app_name)
        probe = ServeStatusProbe(settings.serve_app_name)
    app = create_app(
        settings,
        store=store,
        handoff=handoff,
        fineract=FineractClient.from_settings(settings),
        metrics_token=(
            settings.metrics_token.get_secret_value() if settings.metrics_token else None
        ),
        scoring_probe=probe,
    )
    # Everything imported and connected so far stays out of the collector's passes.
    collect_rarely()
    app.run(
        host=settings.ingress_host,
        port=settings.ingress_port,
        single_process=True,
        access_log=False,
        motd=False,
    )
    return 0


def _operations(settings: Settings) -> Any:
    """Serve and scheduler hooks of the API and the dashboard: rule activation and model
    promotion reconfigure the running scorers, "run now" reaches the scheduler. Without a
    reachable Ray cluster they are left out (the pages then say so)."""
    from serve.services.jobs import Operations, ray_job_runner

    try:
        _join_ray(settings)
    except Exception as exc:  # the dashboard still serves the store's data
        log.warning(
            "Ray not reachable (%s): rule activation and promotion will not reach Serve", exc
        )
        return Operations(settings=settings)

    from serve.scoring.deploy import apply
    from serve.services.rules import ServeRuleApplier
    from training.jobs import serve_updater
    from training.promotion import ServeConfigUpdater

    def apply_rules(rule_config: dict[str, Any]) -> None:
        # The running config, read back now: re-applying it with only the rules changed keeps
        # every other deployment (and a promoted model) as it is.
        running = ServeConfigUpdater.from_cluster()
        ServeRuleApplier(running.config, apply=apply)(rule_config)

    return Operations(
        settings=settings,
        rule_applier=apply_rules,
        model_serve=serve_updater,
        run_job=ray_job_runner(),
    )


def _cmd_serve_ui(settings: Settings, _: argparse.Namespace) -> int:
    """The analyst dashboard."""
    from ui.main import run

    run(settings, ops=_operations(settings))
    return 0


def _cmd_serve_api(settings: Settings, _: argparse.Namespace) -> int:
    """The versioned REST API (/api/v1) for transactions, alerts, cases, users and audit."""
    from serve.api.app import create_app

    app = create_app(settings, ops=_operations(settings))
    app.run(
        host=settings.api_host,
        port=settings.api_port,
        single_process=True,
        access_log=False,
        motd=False,
    )
    return 0


def _cmd_deploy_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Apply the Serve config to a running cluster (scale replicas, change user_config)."""
    from serve.scoring.deploy import apply, load_serve_config, with_args
    from storage.store import resolve_mongodb_uri

    _join_ray(settings, args.address)
    from ray import serve

    config = load_serve_config(serve_config_path(args.config))
    serve.start(proxy_location=config.get("proxy_location", "Disabled"))
    uri = resolve_mongodb_uri(settings, start_embedded=False)
    apply(with_args(config, mongodb_uri=uri, mongodb_db=settings.mongodb_db))
    print(f"applied {serve_config_path(args.config)}")
    return 0


def _cmd_sweep(settings: Settings, args: argparse.Namespace) -> int:
    """Reconcile: ingest account transactions that no hook delivered."""
    from fineract_aml.runtime import connect_store
    from serve.fineract_client import FineractClient
    from serve.ingress.sweep import sweep

    client = FineractClient.from_settings(settings)
    if client is None:
        print("AML_FINERACT_BASE_URL is not set: nothing to sweep", file=sys.stderr)
        return 2

    async def _run() -> int:
        store = connect_store(settings, appname="fineract-aml-sweep")
        try:
            report = await sweep(
                store,
                client,
                date.fromisoformat(args.since),
                args.account,
                tenant=settings.fineract_tenant,
                spool_dir=settings.data_dir / "spool-sweep",
                default_currency=settings.default_currency,
                timezone=settings.timezone,
            )
        finally:
            await client.close()
            await store.close()
        print(report)
        return 0

    return asyncio.run(_run())


def _cmd_fit_anomaly(settings: Settings, args: argparse.Namespace) -> int:
    """Fit a first Isolation Forest from stored history and register it as a candidate."""
    from aml.features import FeatureParams
    from fineract_aml.runtime import connect_store
    from training.fit_anomaly import AnomalyFitConfig, fit_anomaly

    async def _run() -> int:
        store = connect_store(settings, appname="fineract-aml-train")
        try:
            record = await fit_anomaly(
                store,
                out_dir=settings.data_dir / "models",
                params=FeatureParams.from_settings(settings),
                config=AnomalyFitConfig(alert_rate=args.alert_rate),
            )
        finally:
            await store.close()
        print(f"anomaly model {record.version} written to {record.artifact_uri}")
        print("activate it: set AnomalyScorer.user_config.model to that path and deploy-serve")
        return 0

    return asyncio.run(_run())


def _cmd_credit_score_all(settings: Settings, args: argparse.Namespace) -> int:
    """Nightly credit batch: score every client of the tenant on Ray."""
    from fineract_aml.runtime import connect_store
    from training.credit_batch import BatchProgress, score_all_from_store
    from training.credit_kmeans import load_champion_clusters

    if args.local_ray:
        import ray

        ray.init(include_dashboard=False, log_to_driver=False)
    else:
        _join_ray(settings)

    def _progress(p: BatchProgress) -> None:
        print(f"\r{p}", end="", flush=True)

    async def _run() -> int:
        store = connect_store(settings, appname="fineract-aml-credit")
        try:
            profiles = await score_all_from_store(
                store,
                tenant=args.tenant or settings.default_tenant,
                as_of=datetime.now(UTC),
                progress=_progress,
                cluster_model=await load_champion_clusters(store),
            )
        finally:
            await store.close()
        print(f"\nscored {len(profiles)} clients")
        return 0

    return asyncio.run(_run())


def _cmd_credit_clusters(settings: Settings, args: argparse.Namespace) -> int:
    """Fit the K-Means credit tiers on Ray Tune over the stored profiles and publish them."""
    from fineract_aml.runtime import connect_store
    from training.credit_kmeans import train_and_publish

    _join_ray(settings)

    async def _run() -> int:
        store = connect_store(settings, appname="fineract-aml-credit")
        try:
            record, run_id = await train_and_publish(
                store,
                tenant=args.tenant or settings.default_tenant,
                now=datetime.now(UTC),
                data_dir=settings.data_dir,
            )
        finally:
            await store.close()
        print(f"credit clusters {record.version} are the champion (MLflow run {run_id})")
        return 0

    return asyncio.run(_run())


def register(sub: Any) -> None:
    """Add the per-component sub-commands to the top-level parser."""
    p = sub.add_parser("serve-ingress", help="run the Fineract webhook ingress")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="score in this process instead of through Ray Serve (single-machine fallback)",
    )
    p.set_defaults(func=_cmd_serve_ingress)

    p = sub.add_parser("serve-ui", help="run the analyst dashboard and REST API")
    p.set_defaults(func=_cmd_serve_ui)

    p = sub.add_parser("serve-api", help="run the REST API (/api/v1)")
    p.set_defaults(func=_cmd_serve_api)

    p = sub.add_parser("deploy-serve", help="apply deploy/serve_config.yaml to a Ray cluster")
    p.add_argument("--config", help="Serve config file (default deploy/serve_config.yaml)")
    p.add_argument("--address", help="Ray address (default AML_RAY_ADDRESS or 'auto')")
    p.set_defaults(func=_cmd_deploy_serve)

    p = sub.add_parser("sweep", help="ingest Fineract transactions that no hook delivered")
    p.add_argument("--since", required=True, help="first value date, YYYY-MM-DD")
    p.add_argument(
        "--account",
        action="append",
        required=True,
        help="account to sweep, e.g. savings:12 or loan:21 (repeatable)",
    )
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("fit-anomaly", help="fit a first Isolation Forest from stored history")
    p.add_argument("--alert-rate", type=float, default=0.005)
    p.set_defaults(func=_cmd_fit_anomaly)

    from training import jobs

    train = sub.add_parser("train", help="retrain a model on Ray Tune (MLflow-tracked)")
    jobs.add_train_parsers(train.add_subparsers(dest="model", required=True))
    train.set_defaults(func=jobs.run_job)
    p = sub.add_parser("backtest", help="replay transactions through rules and models")
    jobs.add_backtest_arguments(p)
    p.set_defaults(func=jobs.run_job)
    p = sub.add_parser("drift", help="PSI of recent traffic against the champions' baselines")
    jobs.add_drift_arguments(p)
    p.set_defaults(func=jobs.run_job)

    credit = sub.add_parser("credit", help="credit scoring jobs")
    csub = credit.add_subparsers(dest="credit_command", required=True)
    p = csub.add_parser("score-all", help="score every client (nightly batch on Ray)")
    p.add_argument("--tenant", help="tenant to score (default AML_DEFAULT_TENANT)")
    p.add_argument("--local-ray", action="store_true", help="start a local Ray for this job")
    p.set_defaults(func=_cmd_credit_score_all)
    p = csub.add_parser("clusters", help="fit K-Means credit tiers on Ray Tune and publish them")
    p.add_argument("--tenant", help="tenant whose profiles to cluster (default AML_DEFAULT_TENANT)")
    p.set_defaults(func=_cmd_credit_clusters)
