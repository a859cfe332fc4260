"""The engine runs a rule only when its ``when`` holds for the transaction's traits: that must
never hide a hit. Every rule is run on its own, ungated, over the varied golden stream; wherever
it fires, its condition must hold."""

from __future__ import annotations

from actors.customer_state import LocalContextBuilder, ShardState, TransferGraph
from aml.rules.catalog import CATALOG, RuleInput, Traits, is_scorable, traits_of
from aml.rules.config import RuleSettings, default_rule_config
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
    fired_gated = 0
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
                if spec.fn(RuleInput(tx, ctx, CONFIG.params, th)) is None:
                    continue
                ungated.add(spec.rule_id)
                if spec.when is not None:
                    assert spec.when(traits), (spec.rule_id, traits)
                    fired_gated += 1
            assert {h.rule_id for h in engine.evaluate(tx, ctx).hits} == ungated
    assert fired_gated > 500  # the gated rules did fire: the check above was exercised


def test_traits_read_the_transaction() -> None:
    tx = next(t for t in golden_stream(400) if t.agent_id and t.counterparty_account_id)
    t = traits_of(tx)
    assert isinstance(t, Traits)
    assert t.agent and t.agent_id and t.counterparty
    assert t.flow == (tx.counterparty_account_id != tx.account_id and t.direction != "none")
