"""Transfer-graph neighbourhoods in contexts: given to transfers, which the cycle and chain rules
read, and not walked for anything else."""

from __future__ import annotations

from datetime import timedelta

from actors.customer_state import LocalContextBuilder, ShardState, TransferGraph
from aml.domain import Direction, Transaction, TransactionType
from aml.rules import RuleEngine, default_rule_config
from tests.factories import T0, make_transfer, make_tx


def _transfer(src: str, dst: str, minute: int) -> Transaction:
    return make_transfer(src, dst, T0 + timedelta(minutes=minute), amount_minor=300_000)


def test_only_transfers_get_the_neighbourhood_and_a_cycle_is_still_caught() -> None:
    builder = LocalContextBuilder(
        [ShardState(cold_start_complete=True) for _ in range(2)], graph=TransferGraph()
    )
    a_b, b_c = _transfer("A", "B", 1), _transfer("B", "C", 2)
    builder.contexts([a_b, b_c])
    c_a = _transfer("C", "A", 3)
    deposit = make_tx(account_id="A", occurred_at=T0 + timedelta(minutes=4))
    cash_out = make_tx(
        account_id="C",
        type=TransactionType.WITHDRAWAL,
        direction=Direction.OUT,
        occurred_at=T0 + timedelta(minutes=5),
    )
    ctx_c_a, ctx_deposit, ctx_cash_out = builder.contexts([c_a, deposit, cash_out])

    assert [e.tx_id for e in ctx_c_a.edges] == [a_b.id, b_c.id]
    assert list(ctx_deposit.edges) == []
    assert list(ctx_cash_out.edges) == []
    # The account views are unaffected: the deposit still sees the transfers of its account.
    assert {o.id for o in ctx_deposit.account} == {a_b.id, c_a.id}

    engine = RuleEngine(default_rule_config())
    hits = {h.rule_id: h for h in engine.evaluate(c_a, ctx_c_a).hits}
    assert hits["circular_transfer"].values["path"] == ["A", "B", "C", "A"]


def test_served_graph_rules_match_a_search_over_every_earlier_edge() -> None:
    """Parity of serving with training and backtests, which give the rules every earlier edge:
    over the golden stream (cycles, layering chains, bursts, late events), the cycle and chain
    rules fire with the same values on the served contexts as on that reference. Serving used
    to hand out a neighbourhood of three hops around the account, which cut long chains."""
    import bisect
    import dataclasses

    from actors.customer_state import transfer_edge
    from aml.rules.config import RuleSettings
    from tests.unit.test_scoring_golden import BATCH, golden_stream

    config = default_rule_config().model_copy(
        update={"rules": {"round_number": RuleSettings(enabled=True)}}
    )
    engine = RuleEngine(config)
    builder = LocalContextBuilder(
        [ShardState(cold_start_complete=True) for _ in range(2)], graph=TransferGraph()
    )
    stream = golden_stream()
    graph_rules = {"circular_transfer", "stacking"}
    earlier: list[tuple[tuple[object, str], object]] = []  # ((at, tx_id), edge), sorted
    fired = 0
    for lo in range(0, len(stream), BATCH):
        batch = stream[lo : lo + BATCH]
        contexts = builder.contexts(batch)
        for tx in batch:
            e = transfer_edge(tx)
            if e is not None:
                bisect.insort(earlier, ((e.at, e.tx_id), e), key=lambda pair: pair[0])
        for tx, ctx in zip(batch, contexts, strict=True):
            if transfer_edge(tx) is None:
                continue
            cut = bisect.bisect_left(earlier, (tx.occurred_at, tx.id), key=lambda pair: pair[0])
            reference = dataclasses.replace(ctx, edges=tuple(e for _, e in earlier[:cut]))
            served = [h for h in engine.evaluate(tx, ctx).hits if h.rule_id in graph_rules]
            want = [h for h in engine.evaluate(tx, reference).hits if h.rule_id in graph_rules]
            assert served == want, tx.id
            fired += len(served)
    assert fired > 10
