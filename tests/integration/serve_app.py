"""The shipped Serve config as the Ray tests deploy it: pointed at a test store, optionally shrunk.

Several modules deploy their own copy of the scoring application on the shared Ray; each one
starts from ``deploy/serve_config.yaml`` so the tests exercise the file operators apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serve.scoring.deploy import load_serve_config, with_args

CONFIG_PATH = Path(__file__).parents[2] / "deploy" / "serve_config.yaml"


def shipped_config(
    mongo_uri: str, db_name: str, *, shards: int, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The shipped Serve config with its application arguments pointed at ``db_name``.

    Args:
        mongo_uri: The test MongoDB.
        db_name: Database of the test store; also names the state actor group, so modules
            running side by side never share customer state.
        shards: Number of customer-state shards.
        extra: Further application arguments.

    Returns:
        The config, ready for ``serve.scoring.deploy.apply``.
    """
    return with_args(
        load_serve_config(CONFIG_PATH),
        mongodb_uri=mongo_uri,
        mongodb_db=db_name,
        state_group=db_name,
        state_shards=shards,
        detached_state=False,
        **(extra or {}),
    )


def small_config(
    mongo_uri: str,
    db_name: str,
    app_name: str,
    *,
    shards: int = 2,
    num_cpus: float = 0.01,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The shipped Serve config renamed to ``app_name`` and shrunk to fit beside others.

    Every deployment gets ``num_cpus`` and a single fixed replica, since other Serve
    applications of the session may still hold their CPU shares.

    Args:
        mongo_uri: The test MongoDB.
        db_name: Database of the test store.
        app_name: Name of the Serve application.
        shards: Number of customer-state shards.
        num_cpus: CPU share of every deployment's replicas.
        extra: Further application arguments.

    Returns:
        The config, ready for ``serve.scoring.deploy.apply``.
    """
    cfg = shipped_config(mongo_uri, db_name, shards=shards, extra=extra)
    app = cfg["applications"][0]
    app["name"] = app_name
    for dep in app["deployments"]:
        dep.setdefault("ray_actor_options", {})["num_cpus"] = num_cpus
        if "autoscaling_config" in dep:
            dep.pop("autoscaling_config")
            dep["num_replicas"] = 1
    return cfg
