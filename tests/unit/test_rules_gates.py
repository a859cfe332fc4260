"""The engine runs a rule only when its ``when`` holds for the transaction's traits, the
history reaches its ``min_moves``/``min_agent_txs`` and, for loan rules, holds a disbursement:
that must never hide a hit. Every rule is
run on its own, ungated, over the varied golden stream; wherever it fires, its conditions must
hold."""

from __future__ import annotations

from actors.customer_state import LocalContextBuilder, ShardState, TransferGraph
from aml.rules.catalog import CATALOG, RuleInput, Traits, is_scorable, traits_of
from aml.rules.config import RuleParams, RuleSettings, default_rule_config
from aml.rules.engine import RuleEngine
from tests.unit.test_scoring_golden import golden_stream

CONFIG = default_rule_config().model_copy(
    update={"rules": {"round_number": RuleSettings(enabled=True)}}
)


def test_no_rule_fires_where_its_condition_does_not_hold() -> None:
    txs = golden_stream(2_500)
    state = LocalContextBuilder(
        [ShardState(cold_start_complete=True), ShardState(cold_start_complete=True)],
        graph=TransferGraph(),
    )
    engine = RuleEngine(CONFIG)
    fired_gated = fired_bounded = 0
    for lo in range(0, len(txs), 250):
        batch = txs[lo : lo + 250]
        for tx, ctx in zip(batch, state.contexts(batch), strict=True):
            if not is_scorable(tx):
                continue
            th = CONFIG.thresholds_for(tx.currency)
            traits = traits_of(tx)
            ungated = set()
            for spec in CATALOG:
                if spec.needs_thresholds and th is None:
                    continue
                ri = RuleInput(tx, ctx, CONFIG.params, th)
                if spec.fn(ri) is None:
                    continue
                ungated.add(spec.rule_id)
                if spec.when is not None:
                    assert spec.when(traits), (spec.rule_id, traits)
                    fired_gated += 1
                if spec.min_moves is not None:
                    assert len(ri.moves) >= spec.min_moves(CONFIG.params), spec.rule_id
                    fired_bounded += 1
                if spec.needs_disbursement:
                    assert ri.disbursed, spec.rule_id
                    fired_bounded += 1
                if spec.min_agent_txs is not None:
                    assert len(ri.agent_txs) >= spec.min_agent_txs(CONFIG.params), spec.rule_id
                    fired_bounded += 1
            assert {h.rule_id for h in engine.evaluate(tx, ctx).hits} == ungated
    # The gated and bounded rules did fire: the checks above were exercised.
    assert fired_gated > 500
    assert fired_bounded > 500


def test_history_bounds_follow_the_parameters() -> None:
    # A lower threshold must lower the bound, or the engine would skip a rule that now fires.
    specs = {spec.rule_id: spec for spec in CATALOG}
    strict, loose = RuleParams(), RuleParams(rapid_count=3, bipartite_min=2, agent_rapid_count=2)
    rapid = specs["rapid_transactions"].min_moves
    bipartite = specs["bipartite_layering"].min_moves
    agent = specs["agent_rapid_transactions"].min_agent_txs
    assert rapid is not None and bipartite is not None and agent is not None
    assert (rapid(strict), rapid(loose)) == (19, 2)
    assert (bipartite(strict), bipartite(loose)) == (9, 3)
    assert (agent(strict), agent(loose)) == (29, 1)


def test_traits_read_the_transaction() -> None:
    tx = next(t for t in golden_stream(400) if t.agent_id and t.counterparty_account_id)
    t = traits_of(tx)
    assert isinstance(t, Traits)
    assert t.agent and t.agent_id and t.counterparty
    assert t.flow == (tx.counterparty_account_id != tx.account_id and t.direction != "none")
