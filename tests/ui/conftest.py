"""Dashboard tests: the NiceGUI ``user`` simulation over the real embedded store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nicegui.testing.general_fixtures import pytest_configure
from nicegui.testing.user import User
from nicegui.testing.user_simulation import user_simulation

from serve.auth import LoginRateLimiter, TokenService
from storage.store import Store
from tests.ui.seed import Team, seed_team
from ui import context

# Not ``pytest_plugins = ["nicegui.testing.user_plugin"]``: pytest refuses that outside the
# top-level conftest, which would break ``pytest tests``. The plugin's configure hook (a
# throw-away storage directory per session) is all we need from it; ``user`` is defined below.
__all__ = ["pytest_configure"]

APP_MAIN = Path(__file__).with_name("app_main.py")
SECRET = "u" * 48


@pytest.fixture
async def team(store: Store) -> Team:
    """Users of every role, and the dashboard wired to this test's store."""
    context.configure(
        context.UiContext(
            store=store,
            tokens=TokenService(SECRET),
            limiter=LoginRateLimiter(max_attempts=100),
            refresh_seconds=0.5,
        )
    )
    return await seed_team(store)


@pytest.fixture
async def user(team: Team, caplog: pytest.LogCaptureFixture) -> AsyncIterator[User]:
    """The plugin's simulated browser, started after the store is wired in."""
    async with user_simulation(main_file=APP_MAIN) as simulated:
        yield simulated
        errors = [r for r in caplog.get_records("call") if r.levelname == "ERROR"]
        if errors:
            pytest.fail(f"unexpected ERROR logs: {[r.getMessage() for r in errors]}")
