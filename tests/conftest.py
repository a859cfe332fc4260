"""Session-wide fixtures: one embedded store per test session (or ``AML_TEST_MONGODB_URI``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from serve.scoring.deploy import use_grpc_transport
from storage import embedded
from storage.store import Store, open_store

# Every Serve handle of the test session calls its replicas as the product's processes do
# (before any test module imports Ray Serve, which reads the setting once).
use_grpc_transport()


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MongoDB when ``AML_TEST_MONGODB_URI`` is set, else the embedded server."""
    uri = os.environ.get("AML_TEST_MONGODB_URI")
    if uri:
        yield uri
        return
    data_dir: Path = tmp_path_factory.mktemp("embedded-store")
    server = embedded.start(data_dir)
    try:
        yield server.uri
    finally:
        embedded.stop(data_dir)


@pytest.fixture
async def store(mongo_uri: str) -> AsyncIterator[Store]:
    """A fresh database per test, indexes ensured, dropped afterwards."""
    db_name = f"t_{uuid.uuid4().hex[:12]}"
    st = open_store(mongo_uri, db_name)
    await st.ensure_indexes()
    try:
        yield st
    finally:
        await st.client.drop_database(db_name)
        await st.close()
