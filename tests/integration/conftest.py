"""One local Ray instance (with Serve, no HTTP proxy) shared by every Ray test of a session, and
one store per module for the modules that deploy a Serve application once."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from storage.store import Store, open_store


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """Start Ray once per session: start-up costs about ten seconds on this machine."""
    import ray
    from ray import serve

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    serve.start(proxy_location="Disabled", http_options={"port": 0})
    try:
        yield
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


@pytest.fixture(scope="module")
async def module_store(mongo_uri: str) -> AsyncIterator[Store]:
    """A fresh database shared by one module's tests, dropped after the module.

    Modules that deploy a Serve application once point it at this store: deploying is the
    expensive part, so their tests share it and keep apart by using distinct accounts.
    """
    name = f"t_mod_{uuid.uuid4().hex[:8]}"
    st = open_store(mongo_uri, name)
    await st.ensure_indexes()
    try:
        yield st
    finally:
        await st.client.drop_database(name)
        await st.close()
