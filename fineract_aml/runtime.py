"""Process supervision for ``fineract-aml run``: store, Ray + Serve, ingress, dashboard."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from aml.settings import Settings
from storage import embedded
from storage.store import Store, open_store, resolve_mongodb_uri

log = logging.getLogger("fineract_aml.run")

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVE_CONFIG = REPO_ROOT / "deploy" / "serve_config.yaml"


def connect_store(settings: Settings, *, appname: str | None = None) -> Store:
    """Open the configured store (starting the embedded server when no URI is set)."""
    uri = resolve_mongodb_uri(settings)
    return open_store(
        uri, settings.mongodb_db, timeout_ms=settings.mongodb_timeout_ms, appname=appname
    )


async def create_admin(settings: Settings, *, username: str, password: str) -> None:
    from serve.services.users import create_admin as create

    store = connect_store(settings)
    try:
        await store.ensure_indexes()
        await create(store, username=username, password=password)
    finally:
        await store.close()


async def _prepare_store(settings: Settings) -> str | None:
    """Indexes, first admin. Returns a one-time admin password when one was generated."""
    from serve.services.users import ensure_first_admin

    store = connect_store(settings)
    try:
        await store.ensure_indexes()
        return await ensure_first_admin(store)
    finally:
        await store.close()


@dataclass
class Supervisor:
    """Starts children, forwards Ctrl-C, stops everything in reverse order."""

    settings: Settings
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    started_embedded: bool = False
    stopping: bool = False

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        cmd = [sys.executable, "-m", "fineract_aml.cli", *args]
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        self.children.append((name, proc))

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        for name, proc in reversed(self.children):
            if proc.poll() is None:
                log.info("stopping %s", name)
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, proc in reversed(self.children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        try:
            import ray

            # The local cluster belongs to this driver: shutting Ray down ends the Serve
            # controller and replicas with it. (A joined cluster keeps running.)
            if ray.is_initialized():
                ray.shutdown()
        except Exception:  # shutting down: report, never mask the original exit
            log.exception("error while stopping Ray")
        if self.started_embedded:
            embedded.stop(self.settings.data_dir)


def run_all(settings: Settings) -> int:
    """Run the whole product on this machine until Ctrl-C."""
    sup = Supervisor(settings)
    env = dict(os.environ)

    if settings.mongodb_uri is None:
        was_running = embedded.status(settings.data_dir) is not None
        uri = resolve_mongodb_uri(settings)
        sup.started_embedded = not was_running
        env["AML_MONGODB_URI"] = uri
    else:
        uri = settings.mongodb_uri.get_secret_value()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_signal)
    try:
        one_time_password = asyncio.run(_prepare_store(settings))

        from serve.scoring.deploy import deploy_from_config

        address = deploy_from_config(settings, SERVE_CONFIG, mongodb_uri=uri)
        from pydantic import SecretStr

        from training.scheduler import start_scheduler

        # One scheduler for every periodic job (retraining, drift, sweep, credit batches).
        start_scheduler(settings.model_copy(update={"mongodb_uri": SecretStr(uri)}))
        # ray.init installs its own SIGTERM handler; ours stops the children first.
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        env["AML_RAY_ADDRESS"] = address
        # Ray enables token authentication for a new local cluster in this process's
        # environment (the token itself is in ~/.ray/auth_token); the children must join with it.
        env.update({k: v for k, v in os.environ.items() if k.startswith("RAY_AUTH")})
        # Secrets generated for this data dir must reach the children unchanged.
        for key in ("jwt_secret", "fineract_webhook_secrets", "generic_webhook_secret"):
            value = getattr(settings, key)
            if value is not None:
                env[f"AML_{key.upper()}"] = value.get_secret_value()

        sup.spawn("ingress", ["serve-ingress"], env)
        sup.spawn("api", ["serve-api"], env)
        sup.spawn("dashboard", ["serve-ui"], env)
        _print_banner(settings, uri, address, one_time_password)
        while True:
            for name, proc in sup.children:
                if proc.poll() is not None:
                    log.error("%s exited with code %s; stopping", name, proc.returncode)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        sup.stop()


def _print_banner(settings: Settings, uri: str, ray_address: str, password: str | None) -> None:
    secret = settings.webhook_secrets()[0]
    base = f"http://{settings.ingress_host}:{settings.ingress_port}"
    ui = f"http://{settings.ui_host}:{settings.ui_port}"
    api = f"http://{settings.api_host}:{settings.api_port}/api/v1"
    store_desc = "embedded nx-27017" if settings.mongodb_uri is None else "external MongoDB"
    lines = [
        "",
        "fineract-aml is running",
        f"  Dashboard            {ui}/",
        f"  REST API             {api}  (OpenAPI: {api}/openapi.json)",
        f"  Fineract hook URL    {base}/webhooks/fineract/{secret}/",
        f"  Generic webhook      {base}/webhooks/generic  (HMAC-SHA256 in X-Webhook-Signature)",
        f"  Health / metrics     {base}/healthz  {base}/readyz  {base}/metrics",
        f"  Store ({store_desc})  {uri if settings.mongodb_uri is None else '(AML_MONGODB_URI)'}",
        f"  Ray cluster          {ray_address}",
        f"  Secrets              {settings.secrets_file} (development only)",
    ]
    if password:
        lines += [
            "",
            "  First start: an administrator account was created.",
            "    username: admin",
            f"    password: {password}   (shown once; change it after logging in)",
        ]
    lines.append("\nPress Ctrl-C to stop.\n")
    print("\n".join(lines), flush=True)
