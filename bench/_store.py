"""Shared pieces of the benchmarks that time store reads on a fresh embedded store."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storage import embedded
from storage.store import Store, open_store

RESULTS = Path(__file__).parent / "results"


@asynccontextmanager
async def fresh_server_store(
    db_name: str, *, ensure_indexes: bool = True
) -> AsyncIterator[tuple[embedded.EmbeddedServer, Store]]:
    """An embedded server of its own in a temporary directory (stopped after) and a store on
    it."""
    with tempfile.TemporaryDirectory() as tmp:
        server = embedded.start(Path(tmp))
        store = open_store(server.uri, db_name, timeout_ms=3_600_000)
        try:
            if ensure_indexes:
                await store.ensure_indexes()
            yield server, store
        finally:
            await store.close()
            embedded.stop(Path(tmp))


@asynccontextmanager
async def fresh_store(db_name: str, *, ensure_indexes: bool = True) -> AsyncIterator[Store]:
    """A store on an embedded server of its own in a temporary directory (stopped after)."""
    async with fresh_server_store(db_name, ensure_indexes=ensure_indexes) as (_, store):
        yield store


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def timed_ms(loads: int, call: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    """p50 / p95 wall milliseconds of ``call`` over ``loads`` calls, after one warm-up call."""
    await call()
    samples = []
    for _ in range(loads):
        t0 = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - t0) * 1000)
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(samples),
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
    }


def write_result(
    benchmark: str, label: str, params: Mapping[str, Any], results: Mapping[str, Any]
) -> Path:
    """``bench/results/<benchmark>-<label>.json`` with the run's parameters and results."""
    out = RESULTS / f"{benchmark.replace('_', '-')}-{label}.json"
    document = {
        "benchmark": benchmark,
        "at": datetime.now(UTC).isoformat(),
        "params": dict(params),
        **results,
    }
    out.write_text(json.dumps(document, indent=1))
    print(f"written to {out}")
    return out


def report_timings(
    benchmark: str, label: str, params: Mapping[str, Any], results: Mapping[str, Any]
) -> Path:
    """Print ``results["timings"]`` (name -> p50 / p95) and write the result file."""
    timings: Mapping[str, Mapping[str, float]] = results["timings"]
    width = max(len(name) for name in timings) + 2
    for name, t in timings.items():
        print(f"{name:{width}s} p50 {t['p50_ms']:9.1f} ms   p95 {t['p95_ms']:9.1f} ms")
    return write_result(benchmark, label, params, results)
