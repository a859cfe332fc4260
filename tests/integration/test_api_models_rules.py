"""Rules, models and jobs over HTTP: validated rule versions, activation pushed through the
applier, backtest of a candidate, promotion/shadow/rollback, drift, champion vs shadow, jobs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from aml.domain import Decision, ModelRecord, Role, ScorerResult, utcnow
from aml.rules.config import default_rule_config
from aml.settings import Settings
from serve.api.app import API_PREFIX, ApiApp, create_app
from serve.auth import LoginRateLimiter, TokenService
from serve.scoring.deploy import load_serve_config
from serve.services import rules
from serve.services.jobs import Operations
from storage.repositories.jobs import DriftRun, JobState
from storage.store import Store
from tests.factories import make_decision, make_tx
from tests.integration.test_str_export import SECRET
from tests.ui.seed import Team, seed_team

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


class Api:
    def __init__(self, app: ApiApp, tokens: TokenService, team: Team) -> None:
        self.app, self.tokens, self.team = app, tokens, team

    async def call(
        self, role: Role, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> tuple[int, Any]:
        token = self.tokens.issue(self.team.by_role[role]).access_token
        kwargs: dict[str, Any] = {"headers": {"Authorization": f"Bearer {token}"}}
        if method != "get":
            kwargs["json"] = dict(body or {})
        _, resp = await self.app.asgi_client.request(method, API_PREFIX + path, **kwargs)
        return int(resp.status), resp.json


async def _api(store: Store, ops: Operations | None = None) -> Api:
    team = await seed_team(store)
    tokens = TokenService(SECRET)
    settings = Settings(jwt_secret=SecretStr(SECRET))
    app = create_app(
        settings,
        store=store,
        tokens=tokens,
        limiter=LoginRateLimiter(max_attempts=100),
        ops=ops,
    )
    return Api(app, tokens, team)


async def test_rule_versions_are_validated_saved_and_activated_through_the_applier(
    store: Store,
) -> None:
    pushed: list[dict[str, Any]] = []
    api = await _api(store, Operations(rule_applier=pushed.append))

    status, data = await api.call(Role.ANALYST, "get", "/rules")
    assert status == 200 and data["active"] is None
    assert data["config"]["thresholds"]["XAF"]["large_amount"] == 500_000

    config = default_rule_config().to_dict()
    bad = {**config, "thresholds": {"XAF": {**config["thresholds"]["XAF"], "large_amount": -5}}}
    status, data = await api.call(Role.SENIOR_ANALYST, "post", "/rules/versions", {"config": bad})
    assert status == 422
    fields = {e["field"] for e in data["details"]["errors"]}
    assert "thresholds.XAF.large_amount" in fields

    status, _ = await api.call(Role.ANALYST, "post", "/rules/versions", {"config": config})
    assert status == 403

    lower = {
        **config,
        "thresholds": {**config["thresholds"], "XAF": {**config["thresholds"]["XAF"]}},
        "rules": {"round_number": {"enabled": False}},
    }
    lower["thresholds"]["XAF"]["large_amount"] = 400_000
    lower["thresholds"]["XAF"]["structuring_floor"] = 350_000
    status, saved = await api.call(
        Role.SENIOR_ANALYST, "post", "/rules/versions", {"config": lower, "comment": "lower"}
    )
    assert status == 201 and saved["version"] == 1 and saved["active"] is False
    assert pushed == []

    status, active = await api.call(Role.ADMIN, "post", "/rules/versions/1/activate")
    assert status == 200 and active["active"] is True
    assert len(pushed) == 1
    assert pushed[0]["version"] == 1
    assert pushed[0]["thresholds"]["XAF"]["large_amount"] == 400_000
    assert pushed[0]["rules"]["round_number"]["enabled"] is False

    status, data = await api.call(Role.ANALYST, "get", "/rules")
    assert data["active"]["version"] == 1
    status, page = await api.call(Role.ANALYST, "get", "/rules/versions")
    assert page["total"] == 1
    actions = [e.action for e in (await store.audit_log.list_(target_type="rule_config"))[0]]
    assert set(actions) == {"rules.save", "rules.activate"}


async def test_a_refused_push_leaves_the_active_version_unchanged(store: Store) -> None:
    def refuse(config: dict[str, Any]) -> None:
        raise RuntimeError("Serve refused the config")

    api = await _api(store, Operations(rule_applier=refuse))
    config = default_rule_config().to_dict()
    await api.call(Role.SENIOR_ANALYST, "post", "/rules/versions", {"config": config})
    status, _ = await api.call(Role.SENIOR_ANALYST, "post", "/rules/versions/1/activate")
    assert status == 500
    assert await store.rule_config.get_active() is None


async def test_backtest_compares_candidate_and_active_per_rule(store: Store) -> None:
    now = utcnow()
    txs = [
        make_tx(
            amount_minor=420_000 + i,
            occurred_at=now - timedelta(hours=5 - i),
            received_at=now - timedelta(hours=5 - i),
            account_id=f"savings:{900 + i}",
        )
        for i in range(3)
    ]
    await store.transactions.insert_many(txs)
    api = await _api(store)
    config = default_rule_config().to_dict()
    candidate = {**config, "thresholds": {**config["thresholds"]}}
    candidate["thresholds"]["XAF"] = {
        **config["thresholds"]["XAF"],
        "large_amount": 400_000,
        "structuring_floor": 350_000,
    }
    status, data = await api.call(
        Role.SENIOR_ANALYST, "post", "/rules/backtest", {"config": candidate, "days": 2}
    )
    assert status == 200, data
    assert data["transactions"] == 3
    rows = {r["rule"]: r for r in data["rows"]}
    assert rows["large_amount"]["candidate_alerts"] == 3
    assert rows["large_amount"]["active_alerts"] == 0


def _model(version: str, **overrides: Any) -> ModelRecord:
    fields: dict[str, Any] = {
        "id": f"xgb-{version}",
        "kind": "xgboost",
        "version": version,
        "feature_set_version": "v1",
        "features": ("amount",),
        "metrics": {"auprc": 0.5},
        "artifact_uri": f"/models/{version}.json",
        "stage": "candidate",
        "created_at": utcnow(),
        "params": {"threshold": 0.5},
    }
    fields.update(overrides)
    return ModelRecord(**fields)


async def test_promote_shadow_rollback_and_comparison(store: Store) -> None:
    for v in ("1", "2", "3"):
        await store.models.register(_model(v))
    api = await _api(store)

    status, _ = await api.call(Role.ANALYST, "post", "/models/xgb-1/promote")
    assert status == 403
    assert (await api.call(Role.ML_ENGINEER, "post", "/models/xgb-1/promote"))[0] == 200
    assert (await api.call(Role.ML_ENGINEER, "post", "/models/xgb-2/promote"))[0] == 200
    assert (await api.call(Role.ML_ENGINEER, "post", "/models/xgb-3/shadow"))[0] == 200

    status, data = await api.call(Role.ML_ENGINEER, "get", "/models/xgboost/overview")
    assert status == 200
    assert data["champion"]["id"] == "xgb-2" and data["shadow"]["id"] == "xgb-3"
    assert data["total_versions"] == 3

    # Live decisions: the champion (v2) and the shadow (v3) on the same transactions.
    now = utcnow()
    pairs = [(0.9, 0.8), (0.2, 0.7), (0.1, 0.15)]
    decisions: list[Decision] = [
        make_decision(
            decided_at=now - timedelta(minutes=i + 1),
            scorers=(ScorerResult(scorer="xgboost", available=True, score=c, model_version="2"),),
            shadow_scores={"xgboost:3": s},
        )
        for i, (c, s) in enumerate(pairs)
    ]
    await store.decisions.insert_many(decisions)
    status, cmp = await api.call(Role.ML_ENGINEER, "get", "/models/xgboost/shadow")
    assert status == 200
    assert cmp["count"] == 3
    assert cmp["mean_abs_diff"] == pytest.approx((0.1 + 0.5 + 0.05) / 3)
    assert cmp["agreement"] == pytest.approx(2 / 3)
    assert (cmp["champion_alerts"], cmp["shadow_alerts"]) == (1, 2)

    status, back = await api.call(Role.ADMIN, "post", "/models/xgboost/rollback")
    assert status == 200 and back["id"] == "xgb-1"
    assert (await store.models.get_champion("xgboost")).id == "xgb-1"  # type: ignore[union-attr]
    actions = {e.action for e in (await store.audit_log.list_(target_type="model"))[0]}
    assert {"model.promote", "model.shadow", "model.rollback"} <= actions


async def test_drift_runs_and_jobs(store: Store) -> None:
    now = utcnow().replace(microsecond=0)
    await store.drift.insert(
        DriftRun(
            id="d1",
            model_id="xgb-1",
            model_kind="xgboost",
            model_version="1",
            computed_at=now,
            window_from=now - timedelta(days=7),
            window_until=now,
            rows=500,
            psi={"amount": 0.31, "hour": 0.02},
            level="critical",
            critical=("amount",),
        )
    )
    await store.jobs.save(
        JobState(name="drift", next_run=now + timedelta(days=1), last_run=now, outcome="ok")
    )
    ran: list[str] = []

    async def runner(name: str) -> Mapping[str, Any]:
        ran.append(name)
        return {"name": name, "outcome": "ok", "message": "done"}

    api = await _api(store, Operations(run_job=runner))
    status, data = await api.call(Role.ML_ENGINEER, "get", "/models/xgboost/drift")
    assert status == 200 and data["items"][0]["psi"]["amount"] == pytest.approx(0.31)

    status, data = await api.call(Role.ADMIN, "get", "/jobs")
    assert status == 200 and data["items"][0]["name"] == "drift"
    assert data["items"][0]["outcome"] == "ok"
    assert (await api.call(Role.ANALYST, "get", "/jobs"))[0] == 403

    status, data = await api.call(Role.ML_ENGINEER, "post", "/jobs/drift/run")
    assert status == 200 and data["outcome"] == "ok" and ran == ["drift"]
    assert (await api.call(Role.ML_ENGINEER, "post", "/jobs/nope/run"))[0] == 404


async def test_run_now_without_a_scheduler_says_so(store: Store) -> None:
    await store.jobs.save(JobState(name="drift", next_run=utcnow()))
    api = await _api(store)
    status, data = await api.call(Role.ADMIN, "post", "/jobs/drift/run")
    assert status == 503 and "scheduler" in data["message"]


async def test_serve_rule_applier_sets_the_rule_scorer_user_config(
    store: Store, tmp_path: Path
) -> None:
    """Activation re-applies the whole Serve config with only ``RuleScorer.user_config``
    changed (the real config file; the deploy function is recorded instead of a cluster)."""
    config = load_serve_config(ROOT / "deploy" / "serve_config.yaml")
    applied: list[Mapping[str, Any]] = []
    written = tmp_path / "serve_config.yaml"
    applier = rules.ServeRuleApplier(config, apply=applied.append, path=written)
    team = await seed_team(store)
    saved = await rules.save(
        store, actor=team.actor(Role.SENIOR_ANALYST), config=default_rule_config().to_dict()
    )
    await rules.activate(
        store, actor=team.actor(Role.SENIOR_ANALYST), version=saved.version, apply=applier
    )

    (deployed,) = applied
    by_name = {d["name"]: d for app in deployed["applications"] for d in app["deployments"]}
    assert by_name["RuleScorer"]["user_config"]["rule_config"]["version"] == saved.version
    before = {d["name"]: d for app in config["applications"] for d in app["deployments"]}
    assert {k: v for k, v in by_name.items() if k != "RuleScorer"} == {
        k: v for k, v in before.items() if k != "RuleScorer"
    }
    assert [a["import_path"] for a in deployed["applications"]] == [
        a["import_path"] for a in config["applications"]
    ]
    assert load_serve_config(written) == deployed  # a restart keeps the active rules
