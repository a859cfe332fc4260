"""The history-cost benchmark builds the history it claims and measures both stages."""

from __future__ import annotations

from datetime import timedelta

from aml.history import HistoryContext
from aml.rules.catalog import movements
from aml.rules.config import default_rule_config
from aml.rules.engine import RuleEngine
from bench.history_cost import ACCOUNT, T0, busy_account, measure


def test_the_busy_account_has_n_earlier_movements_within_the_week() -> None:
    tx, history = busy_account(300)
    assert len(history) == 300 and len({o.id for o in history}) == 300
    times = [o.occurred_at for o in history]
    assert times == sorted(times)
    assert T0 - timedelta(days=7) < times[0] and times[-1] < tx.occurred_at == T0
    assert all(o.account_id == ACCOUNT for o in (*history, tx))
    transfers = [o for o in history if o.counterparty_account_id]
    assert 0.3 < len(transfers) / len(history) < 0.5
    # The rules see every one of them as a movement of the account (none unscorable, none
    # folded into another as its mirrored leg), so the cost measured is that of n movements.
    assert len(movements(ACCOUNT, history)) == 300
    engine = RuleEngine(default_rule_config())
    assert len(engine.evaluate_batch([(tx, HistoryContext(account=history))])) == 1


def test_measure_reports_both_stages_per_size() -> None:
    rows = measure([5, 50], budget_s=0.01)
    assert [r["history"] for r in rows] == [5, 50]
    assert all(r["features_us"] > 0 and r["rules_us"] > 0 for r in rows)
