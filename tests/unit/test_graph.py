"""Bounded cycle and chain search, and the incremental edge index."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from aml.graph import EdgeIndex, SearchStats, find_chains, find_cycles
from aml.history import TransferEdge

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
_ids = iter(range(10**9))


def edge(src: str, dst: str, amount: float, minutes: float) -> TransferEdge:
    return TransferEdge(src, dst, amount, T0 + timedelta(minutes=minutes), f"e{next(_ids)}")


def cycles(edges: list[TransferEdge], new: TransferEdge, **kw: object) -> list[list[str]]:
    args: dict[str, object] = {
        "max_hops": 4,
        "window": timedelta(hours=24),
        "amount_tolerance": 0.2,
    }
    args.update(kw)
    found = find_cycles(edges, new, **args)  # type: ignore[arg-type]
    return [[c[0].src, *(e.dst for e in c)] for c in found]


def test_two_hop_round_trip_is_a_cycle() -> None:
    out = edge("A", "B", 1000, 0)
    back = edge("B", "A", 950, 60)
    assert cycles([out], back) == [["A", "B", "A"]]


def test_repeated_payments_in_the_same_direction_are_not_a_cycle() -> None:
    # The predecessor flagged this (same payee, similar amount); money never came back.
    first = edge("A", "B", 1000, 0)
    again = edge("A", "B", 1000, 60)
    assert cycles([first], again) == []


def test_longer_cycle_is_found_in_time_order() -> None:
    e1, e2, e3 = edge("A", "B", 1000, 0), edge("B", "C", 980, 10), edge("C", "D", 960, 20)
    close = edge("D", "A", 940, 30)
    found = find_cycles(
        [e3, e1, e2], close, max_hops=4, window=timedelta(hours=1), amount_tolerance=0.2
    )
    assert found == [[e1, e2, e3, close]]


def test_cycle_longer_than_max_hops_is_not_reported() -> None:
    hops = [edge("A", "B", 1000, 0), edge("B", "C", 1000, 1), edge("C", "D", 1000, 2)]
    close = edge("D", "A", 1000, 3)
    assert cycles(hops, close, max_hops=3) == []
    assert cycles(hops, close, max_hops=4) == [["A", "B", "C", "D", "A"]]


def test_hops_must_respect_time_order() -> None:
    # B->C happened before A->B: the money that reached B could not have been forwarded.
    bc = edge("B", "C", 1000, 0)
    ab = edge("A", "B", 1000, 10)
    close = edge("C", "A", 1000, 20)
    assert cycles([bc, ab], close) == []


def test_window_and_amount_tolerance_bound_the_cycle() -> None:
    old = edge("A", "B", 1000, 0)
    back = edge("B", "A", 1000, 25 * 60)
    assert cycles([old], back, window=timedelta(hours=24)) == []
    assert cycles([old], back, window=timedelta(hours=26)) == [["A", "B", "A"]]
    small_back = edge("B", "A", 700, 60)
    assert cycles([old], small_back, amount_tolerance=0.2) == []
    assert cycles([old], small_back, amount_tolerance=0.35) == [["A", "B", "A"]]


def test_later_edges_and_the_edge_itself_are_ignored() -> None:
    back = edge("B", "A", 1000, 60)
    later = edge("A", "B", 1000, 120)
    assert cycles([later, back], back) == []


def test_stacking_chain_needs_min_hops_and_similar_amounts() -> None:
    e1, e2 = edge("A", "B", 1000, 0), edge("B", "C", 1100, 5)
    e3 = edge("C", "D", 1000, 10)
    chains = find_chains([e1, e2], e3, min_hops=3, window=timedelta(minutes=30), ratio=(0.8, 1.2))
    assert chains == [[e1, e2, e3]]
    assert find_chains([e2], e3, min_hops=3, window=timedelta(minutes=30), ratio=(0.8, 1.2)) == []
    jump = edge("C", "D", 2000, 10)  # 2000 / 1100 is outside 0.8-1.2
    assert (
        find_chains([e1, e2], jump, min_hops=3, window=timedelta(minutes=30), ratio=(0.8, 1.2))
        == []
    )


def test_stacking_chain_outside_window_is_ignored() -> None:
    e1, e2 = edge("A", "B", 1000, 0), edge("B", "C", 1000, 5)
    e3 = edge("C", "D", 1000, 40)
    assert (
        find_chains([e1, e2], e3, min_hops=3, window=timedelta(minutes=30), ratio=(0.8, 1.2)) == []
    )
    assert (
        len(find_chains([e1, e2], e3, min_hops=3, window=timedelta(hours=1), ratio=(0.8, 1.2))) == 1
    )


def _random_graph(n_nodes: int, n_edges: int, seed: int) -> list[TransferEdge]:
    rng = random.Random(seed)
    out = []
    for i in range(n_edges):
        a, b = rng.sample(range(n_nodes), 2)
        # Skewed node choice makes hubs, which is what makes naive search explode.
        if rng.random() < 0.3:
            b = rng.randrange(5)
        if a == b:
            continue
        out.append(
            TransferEdge(
                f"n{a}",
                f"n{b}",
                1000 * rng.uniform(0.9, 1.1),
                T0 + timedelta(seconds=i * 8),
                f"r{i}",
            )
        )
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_search_on_a_10k_edge_graph_is_bounded_by_the_expansion_budget(seed: int) -> None:
    edges = _random_graph(300, 10_000, seed)
    new = TransferEdge("n0", "n1", 1000.0, T0 + timedelta(days=1), "new")
    stats = SearchStats()
    find_cycles(
        edges,
        new,
        max_hops=6,
        window=timedelta(days=2),
        amount_tolerance=0.2,
        max_fanout=16,
        max_expansions=500,
        max_results=10**6,
        stats=stats,
    )
    assert stats.expansions <= 500
    chain_stats = SearchStats()
    find_chains(
        edges,
        new,
        min_hops=3,
        window=timedelta(days=2),
        ratio=(0.8, 1.2),
        max_expansions=500,
        max_results=10**6,
        stats=chain_stats,
    )
    assert chain_stats.expansions <= 500
    # A hub-heavy graph with these loose bounds would need far more: the budget did bite.
    assert stats.truncated or chain_stats.truncated


def test_fanout_cap_limits_expansions_even_without_a_budget() -> None:
    # 50 senders into A, each fed by 50 senders: 2,550 candidate edges.
    edges = []
    for i in range(50):
        edges.append(edge(f"s{i}", "A", 1000, 10))
        edges.extend(edge(f"t{i}_{j}", f"s{i}", 1000, 5) for j in range(50))
    new = edge("A", "Z", 1000, 20)
    stats = SearchStats()
    find_cycles(
        edges, new, max_hops=3, window=timedelta(hours=1), amount_tolerance=0.2,
        max_fanout=4, max_expansions=10**6, stats=stats,
    )  # fmt: skip
    assert stats.expansions == 4 + 4 * 4
    assert not stats.truncated


def test_edge_index_evicts_by_window_relative_to_the_newest_edge() -> None:
    index = EdgeIndex(timedelta(hours=1))
    a = edge("A", "B", 1, 0)
    b = edge("B", "C", 1, 30)
    c = edge("C", "D", 1, 90)
    for e in (a, b, c):
        index.add(e)
    assert a.tx_id not in index
    assert b.tx_id in index and c.tx_id in index
    # A late edge older than the window is dropped; a late edge inside it is kept in order.
    assert index.add(edge("X", "Y", 1, 10)) is False
    late = edge("B", "X", 1, 40)
    assert index.add(late) is True
    assert index.edges_near("B", hops=1) == [b, late]


def test_edge_index_is_idempotent_and_bounded_in_size() -> None:
    index = EdgeIndex(timedelta(days=1), max_edges=3)
    edges = [edge("A", f"B{i}", 1, i) for i in range(5)]
    for e in edges:
        index.add(e)
        index.add(e)
    assert len(index) == 3
    assert index.edges_near("A", hops=1) == edges[2:]


def test_edge_index_caps_edges_per_node() -> None:
    index = EdgeIndex(timedelta(days=1), max_per_node=2)
    edges = [edge(f"S{i}", "HUB", 1, i) for i in range(4)]
    for e in edges:
        index.add(e)
    assert index.edges_near("HUB", hops=1) == edges[2:]
    # The older edges are still reachable from their other end.
    assert index.edges_near("S0", hops=1) == [edges[0]]


def test_edges_near_walks_hops_and_honours_point_in_time() -> None:
    index = EdgeIndex(timedelta(days=1))
    ab, bc, cd = edge("A", "B", 1, 0), edge("B", "C", 1, 1), edge("C", "D", 1, 2)
    later = edge("A", "E", 1, 10)
    for e in (ab, bc, cd, later):
        index.add(e)
    assert index.edges_near("A", hops=1) == [ab, later]
    assert index.edges_near("A", hops=2) == [ab, bc, later]
    assert index.edges_near("A", hops=3, before=(later.at, later.tx_id)) == [ab, bc, cd]


def test_index_feeds_cycle_search() -> None:
    index = EdgeIndex(timedelta(days=1))
    hops = [edge("A", "B", 1000, 0), edge("B", "C", 1000, 5), edge("C", "D", 5, 6)]
    for e in hops:
        index.add(e)
    close = edge("C", "A", 990, 10)
    near = index.edges_near(close.src, hops=3, before=(close.at, close.tx_id))
    assert cycles(near, close) == [["A", "B", "C", "A"]]


def _dense_graph(seed: int, n_edges: int, accounts: int) -> list[TransferEdge]:
    """Random transfers among few accounts over a day, with similar amounts (so that many
    paths are cycles and chains within the rules' tolerances)."""
    rng = random.Random(seed)
    out = []
    for i in range(n_edges):
        src, dst = rng.sample(range(accounts), 2)
        out.append(edge(f"a{src}", f"a{dst}", rng.uniform(900, 1100), i * 1440 / n_edges))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rule_edges_hold_exactly_what_the_searches_find_over_every_edge(seed: int) -> None:
    """The index runs the cycle and chain searches over its own per-account lists: the rules,
    searching the few edges it hands out, find the same cycles and chains as over the whole
    edge list (what training and backtests give them), and nothing else is handed out."""
    from aml.rules import RuleEngine, default_rule_config

    search = RuleEngine(default_rule_config()).graph_search
    edges = _dense_graph(seed, 1_500, 40)
    index = EdgeIndex(timedelta(days=7))
    found_any = 0
    for i, new in enumerate(edges):
        index.add(new)
        if i % 7:
            continue  # every seventh transfer is scored: enough, and the test stays fast
        before = edges[:i]
        got = index.rule_edges(new, search, max_hops=8)
        assert all((e.at, e.tx_id) < (new.at, new.tx_id) for e in got)
        cycle_args = {
            "max_hops": search.cycle_max_hops,
            "window": search.cycle_window,
            "amount_tolerance": search.cycle_tolerance,
            "max_results": search.cycle_results,
        }
        chain_args = {
            "min_hops": search.chain_min_hops,
            "window": search.chain_window,
            "ratio": search.chain_ratio,
            "max_results": search.chain_results,
        }
        full = (
            find_cycles(before, new, **cycle_args),  # type: ignore[arg-type]
            find_chains(before, new, **chain_args),  # type: ignore[arg-type]
        )
        small = (
            find_cycles(got, new, **cycle_args),  # type: ignore[arg-type]
            find_chains(got, new, **chain_args),  # type: ignore[arg-type]
        )
        assert small == full
        on_paths = {e.tx_id for paths in full for path in paths for e in path} - {new.tx_id}
        assert {e.tx_id for e in got} == on_paths
        found_any += bool(on_paths)
    assert found_any > 20  # the graph is dense enough for the searches to find things


def test_rule_edges_around_a_hub_stay_small() -> None:
    """Thousands of customers pay one merchant: a transfer into it gets no edges (it closes no
    cycle and ends no chain) instead of the hub's whole neighbourhood; a real cycle through
    the hub is still handed out whole."""
    from aml.rules import RuleEngine, default_rule_config

    search = RuleEngine(default_rule_config()).graph_search
    index = EdgeIndex(timedelta(days=7))
    for i in range(3_000):
        index.add(edge(f"c{i}", "HUB", 50 + i % 400, i * 0.1))
    payment = edge("c9999", "HUB", 120, 400)
    index.add(payment)
    assert index.rule_edges(payment, search, max_hops=8) == []
    # What the neighbourhood was: the edges the index keeps per account (256, this one among
    # them), for every payment.
    assert len(index.edges_near("HUB", 1, before=(payment.at, payment.tx_id))) == 255
    out = edge("HUB", "x", 5_000, 401)
    back = edge("x", "c42", 4_900, 402)
    closing = edge("c42", "HUB", 4_800, 403)
    for e in (out, back, closing):
        index.add(e)
    assert index.rule_edges(closing, search, max_hops=8) == [out, back]
