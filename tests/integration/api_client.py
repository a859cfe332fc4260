"""A signed-in user of the REST API, driving the real app through its ASGI client."""

from __future__ import annotations

from typing import Any

from serve.api.app import API_PREFIX, ApiApp
from tests.ui.seed import PASSWORD


class Client:
    """One API user: logs in through ``/auth/login`` and sends its bearer token afterwards."""

    def __init__(self, app: ApiApp) -> None:
        self.app = app
        self.token: str | None = None

    async def login(self, username: str, password: str = PASSWORD) -> dict[str, Any]:
        """Sign in (the seeded password by default); the login must succeed.

        Returns:
            The login response body.
        """
        status, data = await self.post("/auth/login", {"username": username, "password": password})
        assert status == 200, data
        self.token = str(data["access_token"])
        return dict(data)

    async def _req(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        _, resp = await self.app.asgi_client.request(
            method, API_PREFIX + path, headers=headers, **kw
        )
        return int(resp.status), resp.json

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        """GET ``path`` under the API prefix with query ``params``: (status, JSON body)."""
        return await self._req("get", path, params=params)

    async def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """POST ``body`` (an empty object by default) to ``path``: (status, JSON body)."""
        return await self._req("post", path, json=body or {})


async def signed_in(app: ApiApp, *usernames: str) -> list[Client]:
    """One client per username, each logged in with the seeded password."""
    out = []
    for name in usernames:
        c = Client(app)
        await c.login(name)
        out.append(c)
    return out
