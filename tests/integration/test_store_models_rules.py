"""Storage conformance: model registry (champion/shadow moves) and rule configuration versions."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from aml.errors import Conflict, NotFound
from storage.store import Store
from tests.factories import T0, make_model

pytestmark = pytest.mark.integration


async def test_model_round_trip_and_unique_version(store: Store) -> None:
    model = make_model(version="v1")
    await store.models.register(model)
    assert await store.models.get(model.id) == model
    with pytest.raises(Conflict):
        await store.models.register(make_model(version="v1"))
    with pytest.raises(NotFound):
        await store.models.get_or_raise("missing")


async def test_promotion_archives_the_previous_champion(store: Store) -> None:
    old = await store.models.register(make_model(stage="champion"))
    new = await store.models.register(make_model())
    other_kind = await store.models.register(make_model(kind="anomaly", stage="champion"))
    promoted = await store.models.set_stage(new.id, stage="champion")
    assert promoted.stage == "champion"
    assert await store.models.get_champion("xgboost") == promoted
    demoted = await store.models.get_or_raise(old.id)
    assert demoted.stage == "archived"
    assert await store.models.get_champion("anomaly") == other_kind
    shadow = await store.models.set_stage(old.id, stage="shadow")
    assert await store.models.get_shadow("xgboost") == shadow
    assert await store.models.get_shadow("anomaly") is None
    with pytest.raises(Conflict):
        await store.models.set_stage(old.id, stage="retired")


async def test_concurrent_promotions_leave_one_champion(store: Store) -> None:
    models = [await store.models.register(make_model()) for _ in range(5)]
    await asyncio.gather(*(store.models.set_stage(m.id, stage="champion") for m in models))
    champions, n = await store.models.list_(kind="xgboost", stage="champion")
    assert n == 1 and len(champions) == 1
    _, archived = await store.models.list_(stage="archived")
    assert archived == 4


async def test_model_list_by_kind_newest_first(store: Store) -> None:
    made = [make_model(kind="credit_kmeans", created_at=T0 + timedelta(days=i)) for i in range(4)]
    for m in made:
        await store.models.register(m)
    page, total = await store.models.list_(kind="credit_kmeans", skip=1, limit=2)
    assert total == 4 and [m.id for m in page] == [made[2].id, made[1].id]


async def test_rule_config_versions_and_activation(store: Store) -> None:
    assert await store.rule_config.get_active() is None
    v1 = await store.rule_config.create_version(
        config={"R001": {"threshold_minor": 500_000, "enabled": True}},
        created_by="ana",
        created_at=T0,
        comment="initial",
        activate=True,
    )
    v2 = await store.rule_config.create_version(
        config={"R001": {"threshold_minor": 400_000, "enabled": False}},
        created_by="bob",
        created_at=T0 + timedelta(hours=1),
    )
    assert (v1.version, v2.version) == (1, 2) and v1.active and not v2.active
    active = await store.rule_config.get_active()
    assert active is not None and active.version == 1 and active.comment == "initial"
    switched = await store.rule_config.activate(2)
    assert switched.active is True and switched.config["R001"]["enabled"] is False
    again = await store.rule_config.get_or_raise(1)
    assert again.active is False
    assert (await store.rule_config.get_active()) == switched
    versions, total = await store.rule_config.list_versions()
    assert total == 2 and [v.version for v in versions] == [2, 1]
    assert [v.active for v in versions] == [True, False]
    with pytest.raises(NotFound):
        await store.rule_config.activate(9)


async def test_concurrent_saves_get_consecutive_versions(store: Store) -> None:
    saved = await asyncio.gather(
        *(
            store.rule_config.create_version(config={"n": i}, created_by="x", created_at=T0)
            for i in range(6)
        )
    )
    assert sorted(v.version for v in saved) == list(range(1, 7))
    await asyncio.gather(*(store.rule_config.activate(v) for v in (2, 3, 4)))
    _, total = await store.rule_config.list_versions()
    versions, _ = await store.rule_config.list_versions(limit=10)
    assert total == 6 and sum(v.active for v in versions) == 1
