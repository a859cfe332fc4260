"""One local Ray instance (with Serve, no HTTP proxy) shared by every Ray test of a session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


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
