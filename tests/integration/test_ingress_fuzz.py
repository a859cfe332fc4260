"""No input reaches a 5xx: arbitrary bodies, content types and Fineract-shaped JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from serve.ingress.app import IngressApp
from storage.store import Store
from tests.integration.test_ingress_app import (  # fixtures shared with the route tests
    DEPOSIT_HEADERS,
    HOOK,
    app,
    deposit,
    handoff,
    settings,
)

__all__ = ["app", "handoff", "settings"]

pytestmark = pytest.mark.integration

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

_BASE: dict[str, Any] = json.loads(deposit(1))


@st.composite
def mutated_hooks(draw: st.DrawFn) -> bytes:
    """A valid deposit hook with some fields replaced by arbitrary JSON values."""
    body = json.loads(json.dumps(_BASE))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "request", "response"]))
        target = body if where == "top" else body.setdefault(where, {})
        if not isinstance(target, dict):
            continue
        key = draw(st.sampled_from([*target.keys(), "extra"]) if target else st.just("extra"))
        target[key] = draw(json_values)
    return json.dumps(body).encode()


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    mutated_hooks(),
)
content_types = st.sampled_from(
    [
        "application/json; charset=UTF-8",
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
        "",
        "application/json; charset=latin-1",
    ]
)


@hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies, content_type=content_types)
async def test_no_body_produces_a_server_error(
    app: IngressApp, store: Store, body: bytes, content_type: str
) -> None:
    headers = {**DEPOSIT_HEADERS, "Content-Type": content_type}
    _, resp = await app.asgi_client.post(HOOK, content=body, headers=headers)
    assert resp.status < 500, resp.text
    assert isinstance(resp.json, dict)
    if resp.status >= 400:
        assert resp.json["error"] and resp.json["message"]
