"""Observability of the scoring application: Ray metrics and the Serve status probe.

:class:`ScoringMetrics` is created inside the ``ScoringPipeline`` replicas. It records through
``ray.serve.metrics`` (thin wrappers over ``ray.util.metrics`` that add the ``deployment``,
``replica`` and ``application`` tags), so the values are exported by the metrics agent of the Ray
node the replica runs on, on that node's ``--metrics-export-port``, with Ray's ``ray_`` prefix:

* ``ray_aml_scoring_batch_size``: transactions per pipeline call (histogram)
* ``ray_aml_scoring_batch_seconds``: one pipeline call, state to decisions (histogram)
* ``ray_aml_scoring_stage_seconds{stage}``: each stage as the pipeline sees it, queueing and
  retries included: ``rules`` (the ``RuleScorer`` call: contexts, features and rules),
  ``anomaly``, ``xgboost``; ``state``, the wait for the state actors inside that call as
  ``RuleScorer`` measured it; and ``persist``, writing a batch's decisions, alerts and scored
  marks to the store
* ``ray_aml_scoring_decisions_total{risk_level}`` and ``ray_aml_scoring_alerting_decisions_total
  {risk_level}``: ``rate(...[1m]) * 60`` gives decisions and alerts per minute
* ``ray_aml_state_actors_alive``: state shard actors answering their stats call
* ``ray_aml_state_windows{shard}`` / ``ray_aml_state_entries{shard}``: windows and transactions
  held in memory per shard (the bytes behind them are Ray's own ``ray_component_uss_mb`` of the
  ``ray::StateShard`` processes)
* ``ray_aml_state_order_held{shard}`` / ``ray_aml_state_order_skipped{shard}``: batches a shard
  answered "not yet" (an earlier batch of their sender had not come) and batches it observed
  past a gap (the earlier one never came within the wait), since the shard started (see
  ``actors.ordering``)

:class:`ServeStatusProbe` answers the ingress's ``/readyz`` question "is Ray connected and is the
scoring application RUNNING?" from ``serve.status()``, cached for a few seconds because every
probe of every load balancer would otherwise be a controller round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from aml.domain import Decision

log = logging.getLogger(__name__)

T = TypeVar("T")

# Ray histograms need strictly positive boundaries.
_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
_SIZES = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]
STATE_POLL_S = 15.0


class ScoringMetrics:
    """Metrics of one ``ScoringPipeline`` replica (see the module docstring for names)."""

    def __init__(self, *, state_poll_s: float = STATE_POLL_S) -> None:
        from ray.serve.metrics import Counter, Gauge, Histogram

        self.batch_size = Histogram(
            "aml_scoring_batch_size", "Transactions per pipeline call", boundaries=_SIZES
        )
        self.batch_seconds = Histogram(
            "aml_scoring_batch_seconds", "One pipeline call end to end", boundaries=_SECONDS
        )
        self.stage_seconds = Histogram(
            "aml_scoring_stage_seconds",
            "Time of one stage of a pipeline call, as the pipeline waits for it",
            boundaries=_SECONDS,
            tag_keys=("stage",),
        )
        self.decisions = Counter(
            "aml_scoring_decisions", "Decisions made, by risk level", tag_keys=("risk_level",)
        )
        self.alerting = Counter(
            "aml_scoring_alerting_decisions",
            "Decisions that raise or grow an alert, by risk level",
            tag_keys=("risk_level",),
        )
        self.state_alive = Gauge(
            "aml_state_actors_alive", "State shard actors that answered the last stats call"
        )
        self.state_windows = Gauge(
            "aml_state_windows", "Windows held in memory by a state shard", tag_keys=("shard",)
        )
        self.state_entries = Gauge(
            "aml_state_entries",
            "Transactions held in memory by a state shard",
            tag_keys=("shard",),
        )
        self.state_order_held = Gauge(
            "aml_state_order_held",
            "Batches a state shard answered 'not yet' to, awaiting their sender's earlier batch",
            tag_keys=("shard",),
        )
        self.state_order_skipped = Gauge(
            "aml_state_order_skipped",
            "Batches a state shard observed past a gap in their sender's sequence",
            tag_keys=("shard",),
        )
        self._state_poll_s = state_poll_s
        self._watcher: asyncio.Task[None] | None = None

    async def timed(self, stage: str, work: Awaitable[T]) -> T:
        """Await ``work`` and record how long it took under ``stage`` (also when it raises)."""
        started = time.perf_counter()
        try:
            return await work
        finally:
            self.stage_seconds.observe(time.perf_counter() - started, tags={"stage": stage})

    def observe_stage(self, stage: str, seconds: float) -> None:
        """Record a stage timed by another process (the state wait measured in ``RuleScorer``)."""
        self.stage_seconds.observe(seconds, tags={"stage": stage})

    def record_batch(self, decisions: Sequence[Decision], started: float) -> None:
        """Count one pipeline call's decisions; ``started`` is its ``time.perf_counter()``."""
        self.batch_seconds.observe(time.perf_counter() - started)
        self.batch_size.observe(len(decisions))
        for level, n in Tally(d.risk_level.value for d in decisions).items():
            self.decisions.inc(n, tags={"risk_level": level})
        for level, n in Tally(d.risk_level.value for d in decisions if d.alert).items():
            self.alerting.inc(n, tags={"risk_level": level})

    def watch_state(self, shards: Sequence[Any]) -> None:
        """Poll the shard actors' ``stats`` in the background (once per replica; needs a
        running event loop, so it is called from the first request)."""
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch(list(shards)))

    async def poll_state(self, shards: Sequence[Any]) -> int:
        """One stats round over ``shards``; returns how many answered."""
        results = await asyncio.gather(
            *(asyncio.wait_for(s.stats.remote(), self._state_poll_s) for s in shards),
            return_exceptions=True,
        )
        alive = 0
        for i, res in enumerate(results):
            if isinstance(res, BaseException):
                continue
            alive += 1
            self.state_windows.set(float(res["windows"]), tags={"shard": str(i)})
            self.state_entries.set(float(res["entries"]), tags={"shard": str(i)})
            self.state_order_held.set(float(res["order_held"]), tags={"shard": str(i)})
            self.state_order_skipped.set(float(res["order_skipped"]), tags={"shard": str(i)})
        self.state_alive.set(float(alive))
        return alive

    async def _watch(self, shards: list[Any]) -> None:
        while True:
            try:
                await self.poll_state(shards)
            except Exception:  # a metrics failure must never disturb scoring
                log.warning("state stats poll failed", exc_info=True)
            await asyncio.sleep(self._state_poll_s)

    async def close(self) -> None:
        """Stop the background poll."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher


class ServeStatusProbe:
    """Ray connection and Serve application status, for ``/readyz``.

    Each call returns ``{"ray": {...}, "serve": {...}}``, every part with an ``ok`` flag. The
    application is ok when ``RUNNING``, and also while ``DEPLOYING`` once it has been seen
    running if every deployment still has a running replica: re-applying the Serve config
    (scaling, new models) keeps the old replicas serving until the new ones are up. A deployment
    whose replicas are all gone (their node lost) and whose replacements cannot be placed is
    ``DEPLOYING`` too, but serves nothing: not ok. The answer is cached for ``ttl_s``; at most
    one ``serve.status()`` runs at a time (in a worker thread, bounded by ``timeout_s``) so a
    hung controller cannot pile up threads.
    """

    def __init__(self, app_name: str, *, ttl_s: float = 5.0, timeout_s: float = 3.0) -> None:
        self.app_name = app_name
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._cached: dict[str, dict[str, Any]] | None = None
        self._cached_at = 0.0
        self._lock = threading.Lock()
        self._inflight: asyncio.Future[dict[str, dict[str, Any]]] | None = None
        self._seen_running = False

    async def __call__(self) -> dict[str, dict[str, Any]]:
        """The current (or cached) status of Ray and of the Serve application."""
        now = time.monotonic()
        if self._cached is not None and now - self._cached_at < self.ttl_s:
            return self._cached
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(asyncio.to_thread(self._probe))
        try:
            # shield: a timed-out probe keeps running and its answer refreshes the cache
            result = await asyncio.wait_for(asyncio.shield(self._inflight), self.timeout_s)
        except TimeoutError:
            result = {
                "ray": {"ok": False, "error": f"no answer within {self.timeout_s:g} s"},
                "serve": {"ok": False, "app": self.app_name, "status": "UNKNOWN"},
            }
        self._cached, self._cached_at = result, time.monotonic()
        return result

    def _probe(self) -> dict[str, dict[str, Any]]:
        import ray

        with self._lock:
            if not ray.is_initialized():
                return {
                    "ray": {"ok": False, "error": "not connected"},
                    "serve": {"ok": False, "app": self.app_name, "status": "UNKNOWN"},
                }
            ray_part: dict[str, Any] = {"ok": True}
            with contextlib.suppress(Exception):  # not available through Ray Client
                ray_part["address"] = str(ray.get_runtime_context().gcs_address)
            try:
                from ray import serve

                status = serve.status()
            except Exception as exc:  # any failure here means "not ready", with the reason
                return {
                    "ray": {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]},
                    "serve": {"ok": False, "app": self.app_name, "status": "UNKNOWN"},
                }
            app = status.applications.get(self.app_name)
            if app is None:
                serve_part: dict[str, Any] = {
                    "ok": False,
                    "app": self.app_name,
                    "status": "NOT_FOUND",
                }
            else:
                app_status = str(getattr(app.status, "value", app.status))
                if app_status == "RUNNING":
                    self._seen_running = True
                running = {
                    name: sum(
                        n
                        for state, n in d.replica_states.items()
                        if getattr(state, "value", state) == "RUNNING"
                    )
                    for name, d in app.deployments.items()
                }
                serve_part = {
                    "ok": app_status == "RUNNING"
                    or (
                        app_status == "DEPLOYING"
                        and self._seen_running
                        and all(n > 0 for n in running.values())
                    ),
                    "app": self.app_name,
                    "status": app_status,
                    "deployments": {
                        name: str(getattr(d.status, "value", d.status))
                        for name, d in app.deployments.items()
                    },
                    "running_replicas": running,
                }
                if app.message:
                    serve_part["message"] = app.message[:300]
            return {"ray": ray_part, "serve": serve_part}
