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
