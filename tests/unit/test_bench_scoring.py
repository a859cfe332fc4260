"""The scoring benchmark's rounds: the same stream under other tenants, the median round."""

from __future__ import annotations

from bench.scoring import _median, _relabelled, run_in_process, synthetic_stream


def test_a_relabelled_stream_is_decided_as_the_original() -> None:
    txs = synthetic_stream(400, accounts=40)
    again = _relabelled(txs, "r1")
    assert {t.tenant for t in again}.isdisjoint({t.tenant for t in txs})
    assert {t.id for t in again}.isdisjoint({t.id for t in txs})
    assert [t.replace(id=o.id, tenant=o.tenant) for t, o in zip(again, txs, strict=True)] == txs
    first = run_in_process(txs, 128, model=None)  # type: ignore[arg-type]
    second = run_in_process(again, 128, model=None)  # type: ignore[arg-type]
    assert first["outcome"]["decided"] == 400
    assert first["outcome"] == second["outcome"]


def test_the_median_round_is_reported() -> None:
    rounds = [{"tx_per_s": v, "n": i} for i, v in enumerate([300.0, 100.0, 200.0])]
    assert _median(rounds)["n"] == 2
    assert _median(rounds[:2])["n"] == 1  # the lower middle of an even number
    assert _median(rounds[:1])["n"] == 0
