"""The client view of the point-in-time context (``HistoryContext.client``)."""

from __future__ import annotations

from datetime import timedelta

from aml.domain import Direction, TransactionType
from aml.history import MAX_LOOKBACK, build_context
from tests.factories import T0, make_tx


def test_client_view_holds_the_clients_other_accounts_only() -> None:
    tx = make_tx(account_id="savings:12", occurred_at=T0)
    other_account = make_tx(account_id="savings:13", occurred_at=T0 - timedelta(hours=1))
    loan = make_tx(
        account_id="loan:21",
        type=TransactionType.LOAN_DISBURSEMENT,
        direction=Direction.OUT,
        occurred_at=T0 - timedelta(hours=2),
    )
    same_account = make_tx(account_id="savings:12", occurred_at=T0 - timedelta(hours=1))
    # Recorded on savings:13 but paid into savings:12: already in the account view.
    into_this = make_tx(
        account_id="savings:13",
        counterparty_account_id="savings:12",
        type=TransactionType.TRANSFER,
        direction=Direction.OUT,
        occurred_at=T0 - timedelta(minutes=30),
    )
    other_client = make_tx(account_id="savings:40", client_id="8", occurred_at=T0)
    other_tenant = make_tx(account_id="savings:13", tenant="t2", occurred_at=T0)
    history = [other_account, loan, same_account, into_this, other_client, other_tenant]
    ctx = build_context(tx, history)
    assert [o.id for o in ctx.client] == [loan.id, other_account.id]
    assert {o.id for o in ctx.account} == {same_account.id, into_this.id}


def test_client_view_is_point_in_time_within_the_look_back() -> None:
    tx = make_tx(account_id="savings:12", occurred_at=T0)
    edge = make_tx(account_id="savings:13", occurred_at=T0 - MAX_LOOKBACK)
    older = make_tx(account_id="savings:13", occurred_at=T0 - MAX_LOOKBACK - timedelta(seconds=1))
    later = make_tx(account_id="savings:13", occurred_at=T0 + timedelta(seconds=1))
    ctx = build_context(tx, [tx, edge, older, later])
    assert [o.id for o in ctx.client] == [edge.id]


def test_no_client_no_client_view() -> None:
    tx = make_tx(account_id="savings:12", client_id=None, occurred_at=T0)
    anonymous = make_tx(account_id="savings:13", client_id=None, occurred_at=T0 - timedelta(1))
    known = make_tx(account_id="savings:13", occurred_at=T0 - timedelta(hours=1))
    assert build_context(tx, [anonymous, known]).client == []
    # A single-account client: nothing beyond the account view.
    solo = make_tx(account_id="savings:12", occurred_at=T0)
    assert build_context(solo, [make_tx(occurred_at=T0 - timedelta(hours=1))]).client == []
