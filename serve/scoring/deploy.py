"""Apply ``deploy/serve_config.yaml`` to a Ray cluster from Python (the ``run`` command, tests).

Goes through Serve's declarative path (the same as ``serve deploy``): the application's code
version depends on its import path and arguments only, so re-applying a file in which only
``user_config`` changed calls ``reconfigure`` on the running replicas instead of restarting them.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from aml.errors import ConfigError
from aml.settings import Settings

log = logging.getLogger(__name__)


# Serve's direct gRPC channel for handle calls, in place of Ray actor tasks and the object store:
# on the scoring path about 7 us of CPU less per transaction (`bench scoring`). The replicas get
# it from the application's ``runtime_env`` in ``deploy/serve_config.yaml`` (the pipeline calls
# each scorer); a process that calls the pipeline sets it with :func:`use_grpc_transport`.
# Requests and replies are whole batches (4,096 transactions: about 0.6 MB, their feature matrix
# 1.2 MB), so the replicas accept messages of up to 256 MB instead of gRPC's default 4 MB.
GRPC_TRANSPORT_ENV: Mapping[str, str] = {
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH": str(256 * 2**20),
}


def use_grpc_transport(address: str | None = None) -> bool:
    """Make this process's Serve handles call replicas over gRPC (see
    :data:`GRPC_TRANSPORT_ENV`); values already in the environment are kept.

    Call it before Ray Serve is imported: Serve reads the setting once, at import. Not through
    Ray Client (``ray://`` addresses), whose handles run on the cluster's side.

    Returns:
        Whether the setting applies to this process.
    """
    if address is not None and address.startswith("ray://"):
        return False
    if "ray.serve._private.constants" in sys.modules:
        log.warning("Ray Serve already imported: its handles keep Ray's own transport")
        return False
    for key, value in GRPC_TRANSPORT_ENV.items():
        os.environ.setdefault(key, value)
    return True


def load_serve_config(path: Path) -> dict[str, Any]:
    """Read a Serve config file.

    Raises:
        ConfigError: naming the file when it is missing or not a Serve config.
    """
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read Serve config {path}: {exc}", file=str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("applications"), list):
        raise ConfigError(f"{path} has no 'applications' list", file=str(path))
    return data


def with_args(config: Mapping[str, Any], **args: Any) -> dict[str, Any]:
    """A copy of ``config`` with ``args`` merged into every application's ``args``."""
    out = copy.deepcopy(dict(config))
    for app in out["applications"]:
        app["args"] = {**(app.get("args") or {}), **args}
    return out


def with_user_config(
    config: Mapping[str, Any], deployment: str, user_config: Mapping[str, Any]
) -> dict[str, Any]:
    """A copy of ``config`` with the given keys set in ``deployment``'s ``user_config``."""
    out = copy.deepcopy(dict(config))
    for app in out["applications"]:
        for dep in app.get("deployments", []):
            if dep.get("name") == deployment:
                dep["user_config"] = {**(dep.get("user_config") or {}), **user_config}
    return out


def apply(config: Mapping[str, Any], *, timeout_s: float = 120.0) -> None:
    """Deploy (or update) the applications of ``config`` and wait until they run.

    Raises:
        RuntimeError: an application failed to deploy (the message is Serve's).
    """
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    client = serve_start()
    schema = ServeDeploySchema.parse_obj(dict(config))
    client.deploy_apps(schema)
    for app in config["applications"]:
        client._wait_for_application_running(app["name"], timeout_s=int(timeout_s))


def with_settings(config: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """A copy of ``config`` carrying what the process settings decide: the store's database and
    the institution's time zone (hours, nights and weekends are local; ``AML_TIMEZONE`` is the
    one place it is set, so the scorers and the alert explanations written by the pipeline always
    agree)."""
    out = with_args(config, mongodb_db=settings.mongodb_db)
    for app in out["applications"]:
        for dep in app.get("deployments", []):
            if dep.get("name") == "ScoringPipeline":
                user_config = dict(dep.get("user_config") or {})
                features = dict(user_config.get("features") or {})
                user_config["features"] = {**features, "timezone": settings.timezone}
                dep["user_config"] = user_config
    return out


def deploy_from_config(settings: Settings, path: Path, *, mongodb_uri: str) -> str:
    """Start or join Ray, apply the Serve config with the store injected, return the address."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(address=settings.ray_address, include_dashboard=False)
    config = load_serve_config(path)
    serve.start(proxy_location=config.get("proxy_location", "Disabled"))
    apply(with_args(with_settings(config, settings), mongodb_uri=mongodb_uri))
    return str(ray.get_runtime_context().gcs_address)
