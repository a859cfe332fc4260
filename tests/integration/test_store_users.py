"""Storage conformance: users (case-insensitive unique usernames, token invalidation)."""

from __future__ import annotations

import asyncio

import pytest

from aml.domain import Role
from aml.errors import Conflict, NotFound
from storage.codec import to_doc
from storage.store import Store
from tests.factories import make_user

pytestmark = pytest.mark.integration


async def test_round_trip_and_case_insensitive_lookup(store: Store) -> None:
    user = make_user(username="Alice", role=Role.SENIOR_ANALYST)
    await store.users.create(user)
    assert await store.users.get(user.id) == user
    assert await store.users.get_by_username("aLiCe") == user
    assert await store.users.get_by_username("bob") is None
    with pytest.raises(NotFound):
        await store.users.get_or_raise("missing")


async def test_duplicate_username_in_other_case_is_a_conflict(store: Store) -> None:
    await store.users.create(make_user(username="alice"))
    with pytest.raises(Conflict):
        await store.users.create(make_user(username="ALICE"))
    assert await store.users.count() == 1


async def test_concurrent_creates_of_one_username_store_one(store: Store) -> None:
    results = await asyncio.gather(
        *(store.users.create(make_user(username="Carol")) for _ in range(5)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))


async def test_role_password_and_deactivation(store: Store) -> None:
    user = await store.users.create(make_user())
    admin = await store.users.update_role(user.id, role=Role.ADMIN)
    assert admin.role is Role.ADMIN and admin.token_version == 0
    rehashed = await store.users.set_password_hash(user.id, password_hash="$argon2id$new")
    assert rehashed.password_hash == "$argon2id$new" and rehashed.token_version == 1
    off = await store.users.deactivate(user.id)
    assert off.active is False and off.token_version == 2
    assert (await store.users.activate(user.id)).active is True
    renamed = await store.users.update_profile(user.id, full_name="Ada L.", email="a@b.org")
    assert (renamed.full_name, renamed.email) == ("Ada L.", "a@b.org")
    with pytest.raises(NotFound):
        await store.users.deactivate("missing")
    await store.users.deactivate(user.id)
    inactive, n = await store.users.list_(active=False)
    assert n == 1 and inactive[0].id == user.id and inactive[0].active is False


async def test_list_filters_and_orders_by_username(store: Store) -> None:
    for name, role in [("zed", Role.ADMIN), ("Amy", Role.ANALYST), ("bea", Role.ANALYST)]:
        await store.users.create(make_user(username=name, role=role))
    page, total = await store.users.list_()
    assert total == 3 and [u.username for u in page] == ["Amy", "bea", "zed"]
    analysts, n = await store.users.list_(role=Role.ANALYST, skip=1, limit=1)
    assert n == 2 and [u.username for u in analysts] == ["bea"]


async def test_user_written_by_another_tool_can_still_be_changed(store: Store) -> None:
    user = make_user()
    # As a seed script or an older release would write it: no revision field.
    await store.users.col.insert_one({**to_doc(user), "username_lower": user.username})
    off = await store.users.deactivate(user.id)
    assert off.active is False and (await store.users.get_or_raise(user.id)).token_version == 1
