"""Shared pieces of the store benchmarks (``bench._store``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bench import _store


def test_timed_ms_warms_up_once_then_times_every_load() -> None:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1

    timings = asyncio.run(_store.timed_ms(7, call))
    assert calls == 8
    assert set(timings) == {"p50_ms", "p95_ms"}
    assert 0.0 <= timings["p50_ms"] <= timings["p95_ms"]


def test_report_writes_the_parameters_and_results_under_the_benchmarks_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_store, "RESULTS", tmp_path)
    timings = {"one read": {"p50_ms": 1.5, "p95_ms": 2.0}}
    out = _store.report_timings("tx_search", "s1", {"loads": 3}, {"timings": timings})
    assert out == tmp_path / "tx-search-s1.json"
    written = json.loads(out.read_text())
    assert written["benchmark"] == "tx_search"
    assert written["params"] == {"loads": 3}
    assert written["timings"] == timings
    assert "one read" in capsys.readouterr().out


def test_process_cpu_counts_the_cpu_a_process_has_used() -> None:
    import os
    import time

    before = _store.process_cpu_s(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert _store.process_cpu_s(os.getpid()) - before >= 0.03  # clock ticks of 10 ms


def test_store_writes_feeds_the_end_to_end_hooks_as_the_ingress_parses_them() -> None:
    from bench.e2e import TENANT
    from bench.store_writes import hooks

    records, txs = hooks(40, 3000)
    assert len(records) == len(txs) == 40
    assert len({t.id for t in txs}) == 40
    for record, tx in zip(records, txs, strict=True):
        assert record.transaction_id == tx.id
        assert record.dedupe_key == tx.dedupe_key
        assert tx.tenant == record.tenant == TENANT
        assert record.body.startswith("{")
    # The mix's kinds, not one kind forty times.
    assert len({t.type for t in txs}) > 1
