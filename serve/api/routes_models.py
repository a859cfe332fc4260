"""``/models`` and ``/jobs``: model versions, drift, champion vs shadow and stage changes
(ML engineers, admin); the scheduler's jobs and "run now"."""

from __future__ import annotations

import asyncio
from typing import Any

from sanic import Request
from sanic.response import HTTPResponse

from aml.auth import Permission
from serve.api.routes_base import RouteTable, int_arg, jsonable, ok, page_json
from serve.services import Actor, jobs, models

routes = RouteTable()


@routes.route("GET", "/models", permission=Permission.MODEL_READ)
async def list_models(request: Request, actor: Actor) -> HTTPResponse:
    """Model versions, newest first; filter ``kind``."""
    page = await models.list_models(
        request.app.ctx.store,
        actor=actor,
        kind=request.args.get("kind") or None,
        skip=int_arg(request, "skip", 0),
        limit=int_arg(request, "limit", 50),
    )
    return ok(page_json(page))


@routes.route("GET", "/models/<kind:str>/overview", permission=Permission.MODEL_READ)
async def model_overview(request: Request, actor: Actor, kind: str) -> HTTPResponse:
    """Champion, shadow, versions and the latest drift run of one kind."""
    result = await models.overview(request.app.ctx.store, actor=actor, kind=kind)
    return ok(jsonable(result))


@routes.route("GET", "/models/<kind:str>/drift", permission=Permission.MODEL_READ)
async def model_drift(request: Request, actor: Actor, kind: str) -> HTTPResponse:
    """Drift runs of one kind, newest first: PSI per feature against the training baseline."""
    runs = await models.drift_history(
        request.app.ctx.store, actor=actor, kind=kind, limit=int_arg(request, "limit", 20)
    )
    return ok({"items": jsonable(runs)})


@routes.route("GET", "/models/<kind:str>/shadow", permission=Permission.MODEL_READ)
async def model_shadow(request: Request, actor: Actor, kind: str) -> HTTPResponse:
    """Champion vs shadow on recent live decisions: count, mean abs diff, alert agreement."""
    result = await models.shadow_comparison(request.app.ctx.store, actor=actor, kind=kind)
    return ok(jsonable(result))


async def _change_stage(request: Request, change: Any, **target: Any) -> HTTPResponse:
    """Run a promotion-type change with the running scorers' updater (read in a worker thread:
    finding it asks the cluster, which must not block the event loop)."""
    ops = request.app.ctx.ops
    serve = await asyncio.to_thread(ops.model_serve) if ops.model_serve else None
    record = await change(
        request.app.ctx.store, serve=serve, data_dir=ops.settings.data_dir, **target
    )
    return ok(jsonable(record))


@routes.route("POST", "/models/<model_id:str>/promote", permission=Permission.MODEL_MANAGE)
async def promote_model(request: Request, actor: Actor, model_id: str) -> HTTPResponse:
    """Make the model its kind's champion (Serve reconfigured first)."""
    return await _change_stage(request, models.promote, actor=actor, model_id=model_id)


@routes.route("POST", "/models/<model_id:str>/shadow", permission=Permission.MODEL_MANAGE)
async def shadow_model(request: Request, actor: Actor, model_id: str) -> HTTPResponse:
    """Let the model score live traffic beside the champion."""
    return await _change_stage(request, models.promote_to_shadow, actor=actor, model_id=model_id)


@routes.route("POST", "/models/<kind:str>/rollback", permission=Permission.MODEL_MANAGE)
async def rollback_model(request: Request, actor: Actor, kind: str) -> HTTPResponse:
    """Bring back the champion the current one replaced."""
    return await _change_stage(request, models.rollback, actor=actor, kind=kind)


@routes.route("GET", "/jobs", permission=Permission.JOB_READ)
async def list_jobs(request: Request, actor: Actor) -> HTTPResponse:
    """The scheduler's jobs: last run, next run, outcome."""
    return ok({"items": jsonable(await jobs.list_jobs(request.app.ctx.store, actor=actor))})


@routes.route("POST", "/jobs/<name:str>/run", permission=Permission.JOB_RUN)
async def run_job(request: Request, actor: Actor, name: str) -> HTTPResponse:
    """Run one job now through the scheduler."""
    result = await jobs.run_now(
        request.app.ctx.store, actor=actor, name=name, runner=request.app.ctx.ops.run_job
    )
    return ok(jsonable(result))
