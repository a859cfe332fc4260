"""Behavioural credit features over a sliding window ending at a given ``as_of`` instant.

One implementation serves the per-client path (a request for one client) and the nightly batch
(thousands of clients at once): the per-client path converts the client's transactions into the
same columnar form (:class:`CreditColumns`) that the batch builds for a chunk of clients, and both
call :func:`feature_matrix`. That is what keeps the two paths identical.

Fixes over the predecessor's extractor:

* Transfers take their direction from ``Transaction.direction``: incoming transfers count as
  inflow, so ``incoming_transfer_ratio`` and ``unique_transfer_senders_30d`` mean what they say.
  Transfers between two accounts of the same client are activity, not income or spending.
* ``loan_repayment_rate`` is ``None`` (with a reason) when no loan was disbursed in the window,
  instead of a silent 0.5; the scorer substitutes a documented neutral component value.
* ``transaction_frequency`` divides by the observed window, ``min(window, account age)``, so old
  accounts are no longer biased low.
* Account age comes from the account's opening date when known, else the first transaction.
* Monthly aggregates use 30-day buckets counted back from ``as_of`` over the observed window
  (zero months included), so one large deposit no longer looks like a regular monthly income.
* ``round_trip_score`` matches each inflow at most once, and is used by the scorer.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from aml.domain import Direction, Transaction, TransactionStatus, TransactionType, ensure_utc

CREDIT_FEATURE_SET_VERSION = "credit-features-2"
WINDOW_DAYS = 180
MONTH_DAYS = 30.0
ROUND_TRIP_HOURS = 48.0
NO_FRAUD_DAYS = 365.0  # value of days_since_last_fraud_alert when there has never been one

FEATURE_NAMES: tuple[str, ...] = (
    "avg_monthly_deposits",
    "deposit_consistency",
    "avg_monthly_withdrawals",
    "net_monthly_flow",
    "savings_rate",
    "transaction_frequency",
    "account_age_days",
    "max_single_deposit",
    "max_single_withdrawal",
    "loan_repayment_rate",
    "days_since_last_fraud_alert",
    "total_fraud_alerts",
    "unique_counterparties",
    "geographic_stability",
    "deposit_trend",
    "withdrawal_trend",
    "incoming_transfer_ratio",
    "unique_transfer_senders_30d",
    "outgoing_transfer_ratio",
    "round_trip_score",
)
FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}

# Row kinds of the columnar form.
KIND_INFLOW = 0  # money in that is not a transfer (cash deposit, salary, ...)
KIND_TRANSFER_IN = 1
KIND_OUTFLOW = 2  # money out that is not a transfer (withdrawal, payment, fee, ...)
KIND_TRANSFER_OUT = 3
KIND_LOAN_DISBURSEMENT = 4
KIND_LOAN_REPAYMENT = 5
KIND_ACTIVITY = 6  # counted as a transaction only (own-account transfers, no direction)

_SKIPPED_STATUSES = (TransactionStatus.REJECTED, TransactionStatus.CORRECTION)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientInfo:
    """What is known about a client besides its transactions.

    Attributes:
        opened_at: opening date of the client's oldest account, when known.
        fraud_alert_dates: creation times of the client's confirmed-fraud alerts (any time; those
            after ``as_of`` are ignored).
    """

    opened_at: datetime | None = None
    fraud_alert_dates: Sequence[datetime] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CreditFeatures:
    """The 20 behavioural features of one client at ``as_of``.

    ``values`` holds ``None`` for a feature that cannot be known; ``unknown`` says why.
    """

    client_id: str
    currency: str
    as_of: datetime
    values: Mapping[str, float | None]
    transaction_count: int
    observed_days: float
    unknown: Mapping[str, str] = field(default_factory=dict)
    window_days: int = WINDOW_DAYS


@dataclass(frozen=True, slots=True)
class CreditColumns:
    """Transactions of a chunk of clients as flat arrays (one row per transaction).

    Attributes:
        client_ids: the chunk's clients; row arrays refer to them by position.
        currencies: each client's currency (amounts are in its major units).
        client: row -> client position.
        age_days: row -> ``(as_of - occurred_at)`` in days; rows older than the window only
            inform the account age.
        amount: row -> amount in major units.
        kind: row -> one of the ``KIND_*`` codes.
        counterparty: row -> counterparty code (-1: none); codes are only compared for equality.
        country: row -> country code (-1: unknown).
        opened_age_days: client -> days since the account was opened (NaN: unknown).
        fraud_count: client -> confirmed-fraud alerts up to ``as_of``.
        fraud_age_days: client -> days since the newest such alert (NaN: none).
    """

    client_ids: tuple[str, ...]
    currencies: tuple[str, ...]
    client: IntArray
    age_days: FloatArray
    amount: FloatArray
    kind: IntArray
    counterparty: IntArray
    country: IntArray
    opened_age_days: FloatArray
    fraud_count: IntArray
    fraud_age_days: FloatArray

    @property
    def n_clients(self) -> int:
        return len(self.client_ids)


def classify(tx: Transaction, own_accounts: frozenset[str], client_id: str | None) -> int | None:
    """Row kind of ``tx`` for the client owning ``own_accounts``; ``None`` drops it.

    Attempts, corrections and reversed movements are not behaviour and are dropped.
    """
    if tx.status in _SKIPPED_STATUSES or tx.reversed or tx.type is TransactionType.REVERSAL:
        return None
    if tx.type is TransactionType.LOAN_DISBURSEMENT:
        return KIND_LOAN_DISBURSEMENT
    if tx.type is TransactionType.LOAN_REPAYMENT:
        return KIND_LOAN_REPAYMENT
    if tx.type is TransactionType.TRANSFER:
        own = tx.counterparty_account_id in own_accounts or (
            client_id is not None and tx.counterparty_client_id == client_id
        )
        if own or tx.direction is Direction.NONE:
            return KIND_ACTIVITY
        return KIND_TRANSFER_IN if tx.direction is Direction.IN else KIND_TRANSFER_OUT
    if tx.direction is Direction.IN:
        return KIND_INFLOW
    if tx.direction is Direction.OUT:
        return KIND_OUTFLOW
    return KIND_ACTIVITY


def counterparty_key(tx: Transaction) -> str | None:
    """The best identity of the other side of ``tx`` (account, else client, else name)."""
    if tx.counterparty_account_id:
        return "a:" + tx.counterparty_account_id
    if tx.counterparty_client_id:
        return "c:" + tx.counterparty_client_id
    if tx.counterparty_name:
        return "n:" + tx.counterparty_name.strip().lower()
    return None


def dominant_currency(transactions: Iterable[Transaction], default: str) -> str:
    """The currency carrying most of the client's transactions (``default`` when none)."""
    counts: dict[str, int] = {}
    for tx in transactions:
        counts[tx.currency] = counts.get(tx.currency, 0) + 1
    if not counts:
        return default
    return max(sorted(counts), key=lambda c: counts[c])


class _Codes:
    """Assigns small integer codes to strings (per chunk)."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}

    def code(self, key: str | None) -> int:
        if key is None:
            return -1
        got = self._codes.get(key)
        if got is None:
            got = self._codes[key] = len(self._codes)
        return got


def columns_from_transactions(
    by_client: Mapping[str, Sequence[Transaction]],
    *,
    as_of: datetime,
    info: Mapping[str, ClientInfo] | None = None,
    currencies: Mapping[str, str] | None = None,
    default_currency: str = "XAF",
    window_days: int = WINDOW_DAYS,
) -> CreditColumns:
    """Build the columnar form for several clients from domain transactions.

    Args:
        by_client: each client's transactions, over any of its accounts. Transactions at or after
            ``as_of`` are ignored, as are ones in another currency than the client's, and ones
            carrying another ``client_id``.
        as_of: end of the window (exclusive); the clock value, never read from the system.
        info: opening dates and confirmed-fraud alerts per client.
        currencies: currency per client; default: the client's dominant currency.
        default_currency: currency of a client without transactions.
        window_days: window length; older transactions only inform the account age.

    Returns:
        The columns, clients in ``by_client`` order.
    """
    as_of = ensure_utc(as_of)
    info = info or {}
    cp_codes, country_codes = _Codes(), _Codes()
    client_idx: list[int] = []
    ages: list[float] = []
    amounts: list[float] = []
    kinds: list[int] = []
    cps: list[int] = []
    countries: list[int] = []
    client_ids = tuple(by_client)
    ccy: list[str] = []
    opened = np.full(len(client_ids), np.nan)
    fraud_count = np.zeros(len(client_ids), dtype=np.int64)
    fraud_age = np.full(len(client_ids), np.nan)
    for pos, cid in enumerate(client_ids):
        txs = by_client[cid]
        currency = (currencies or {}).get(cid) or dominant_currency(txs, default_currency)
        ccy.append(currency)
        own = frozenset(t.account_id for t in txs if t.client_id in (None, cid))
        for tx in txs:
            if tx.currency != currency or (tx.client_id is not None and tx.client_id != cid):
                continue
            kind = classify(tx, own, cid)
            if kind is None:
                continue
            age = (as_of - tx.occurred_at).total_seconds() / 86_400.0
            if age <= 0.0:
                continue
            client_idx.append(pos)
            ages.append(age)
            amounts.append(tx.amount)
            kinds.append(kind)
            cps.append(cp_codes.code(counterparty_key(tx)))
            countries.append(
                country_codes.code(tx.country_code.upper() if tx.country_code else None)
            )
        ci = info.get(cid)
        if ci is not None:
            if ci.opened_at is not None and ensure_utc(ci.opened_at) < as_of:
                opened[pos] = (as_of - ensure_utc(ci.opened_at)).total_seconds() / 86_400.0
            past = [ensure_utc(d) for d in ci.fraud_alert_dates if ensure_utc(d) <= as_of]
            fraud_count[pos] = len(past)
            if past:
                fraud_age[pos] = (as_of - max(past)).total_seconds() / 86_400.0
    return CreditColumns(
        client_ids=client_ids,
        currencies=tuple(ccy),
        client=np.asarray(client_idx, dtype=np.int64),
        age_days=np.asarray(ages, dtype=np.float64),
        amount=np.asarray(amounts, dtype=np.float64),
        kind=np.asarray(kinds, dtype=np.int64),
        counterparty=np.asarray(cps, dtype=np.int64),
        country=np.asarray(countries, dtype=np.int64),
        opened_age_days=opened,
        fraud_count=fraud_count,
        fraud_age_days=fraud_age,
    )


@dataclass(frozen=True, slots=True)
class FeatureMatrix:
    """Features of a chunk: ``values[i, j]`` is feature ``FEATURE_NAMES[j]`` of client ``i``
    (NaN when unknown), with the per-client counts the scorer needs."""

    values: FloatArray
    transaction_count: IntArray
    observed_days: FloatArray


def _distinct_per_client(client: IntArray, code: IntArray, n: int) -> IntArray:
    keep = code >= 0
    if not keep.any():
        return np.zeros(n, dtype=np.int64)
    span = int(code[keep].max()) + 1
    keys = np.unique(client[keep] * span + code[keep])
    return np.bincount(keys // span, minlength=n).astype(np.int64)


def _round_trip_matched(cols: CreditColumns, in_window: npt.NDArray[np.bool_]) -> FloatArray:
    """Inflow amount sent back out to the same counterparty within 48 h, per client.

    Only (client, counterparty) pairs with both an inflow and an outflow are walked in Python;
    each inflow is consumed at most once so that one deposit cannot be matched twice.
    """
    n = cols.n_clients
    matched = np.zeros(n, dtype=np.float64)
    kind = cols.kind
    is_in = (kind == KIND_INFLOW) | (kind == KIND_TRANSFER_IN)
    is_out = (kind == KIND_OUTFLOW) | (kind == KIND_TRANSFER_OUT)
    base = in_window & (cols.counterparty >= 0)
    if not base.any():
        return matched
    span = int(cols.counterparty[base].max()) + 1
    key = cols.client * span + cols.counterparty
    both = np.intersect1d(np.unique(key[base & is_in]), np.unique(key[base & is_out]))
    if both.size == 0:
        return matched
    rows = np.flatnonzero(base & (is_in | is_out) & np.isin(key, both))
    # Oldest first within each pair; inflows before outflows at the same instant.
    order = np.lexsort((is_out[rows], -cols.age_days[rows], key[rows]))
    rows = rows[order]
    limit = ROUND_TRIP_HOURS / 24.0
    pending: deque[list[float]] = deque()
    current = -1
    for r in rows.tolist():
        k = int(key[r])
        if k != current:
            current, pending = k, deque()
        age = float(cols.age_days[r])
        if is_in[r]:
            pending.append([age, float(cols.amount[r])])
            continue
        while pending and pending[0][0] - age > limit:
            pending.popleft()
        want = float(cols.amount[r])
        got = 0.0
        while pending and want > 0.0:
            take = min(want, pending[0][1])
            got += take
            want -= take
            pending[0][1] -= take
            if pending[0][1] <= 0.0:
                pending.popleft()
        matched[int(cols.client[r])] += got
    return matched


def feature_matrix(cols: CreditColumns, *, window_days: int = WINDOW_DAYS) -> FeatureMatrix:
    """Compute the 20 features for every client of a chunk at once.

    Args:
        cols: the chunk (see :func:`columns_from_transactions`).
        window_days: the sliding window in days.

    Returns:
        The feature matrix; ``loan_repayment_rate`` is NaN when nothing was disbursed.
    """
    n = cols.n_clients
    c, age, amt, kind = cols.client, cols.age_days, cols.amount, cols.kind
    w_days = float(window_days)
    valid = age > 0.0
    in_window = valid & (age <= w_days)

    first_age = np.zeros(n, dtype=np.float64)
    np.maximum.at(first_age, c[valid], age[valid])
    account_age = np.where(np.isnan(cols.opened_age_days), first_age, cols.opened_age_days)
    account_age = np.maximum(account_age, first_age)
    observed = np.clip(np.minimum(account_age, w_days), 0.0, w_days)
    months = np.maximum(observed / MONTH_DAYS, 1.0)

    def total(mask: npt.NDArray[np.bool_]) -> FloatArray:
        return np.bincount(c[mask], weights=amt[mask], minlength=n).astype(np.float64)

    def largest(mask: npt.NDArray[np.bool_]) -> FloatArray:
        out = np.zeros(n, dtype=np.float64)
        np.maximum.at(out, c[mask], amt[mask])
        return out

    is_in = in_window & ((kind == KIND_INFLOW) | (kind == KIND_TRANSFER_IN))
    is_out = in_window & ((kind == KIND_OUTFLOW) | (kind == KIND_TRANSFER_OUT))
    tx_in = in_window & (kind == KIND_TRANSFER_IN)
    tx_out = in_window & (kind == KIND_TRANSFER_OUT)

    tx_count = np.bincount(c[in_window], minlength=n).astype(np.int64)
    dep_total, wd_total = total(is_in), total(is_out)
    avg_dep, avg_wd = dep_total / months, wd_total / months
    net = avg_dep - avg_wd

    # Regularity of income: 30-day buckets back from as_of, only the complete observed ones.
    n_buckets = math.ceil(w_days / MONTH_DAYS)
    bucket = np.minimum((age[is_in] // MONTH_DAYS).astype(np.int64), n_buckets - 1)
    monthly = np.bincount(
        c[is_in] * n_buckets + bucket, weights=amt[is_in], minlength=n * n_buckets
    ).reshape(n, n_buckets)
    complete = np.minimum(np.floor(observed / MONTH_DAYS), n_buckets).astype(np.int64)
    use = np.arange(n_buckets)[None, :] < complete[:, None]
    k = np.maximum(complete, 1).astype(np.float64)
    mean = (monthly * use).sum(axis=1) / k
    std = np.sqrt((((monthly - mean[:, None]) ** 2) * use).sum(axis=1) / k)
    with np.errstate(divide="ignore", invalid="ignore"):
        consistency = np.where(
            complete >= 2,
            np.where(mean > 0.0, np.maximum(0.0, 1.0 - std / mean), 0.0),
            0.5,
        )
        savings = np.where(avg_dep > 0.0, np.clip(net / avg_dep, 0.0, 1.0), 0.0)

        disbursed = total(in_window & (kind == KIND_LOAN_DISBURSEMENT))
        repaid = total(in_window & (kind == KIND_LOAN_REPAYMENT))
        repayment = np.where(disbursed > 0.0, np.minimum(repaid / disbursed, 1.0), np.nan)

        # Recent vs. quarter rate; the quarter is shortened to what was observed.
        quarter = np.clip(observed, MONTH_DAYS, 90.0)
        recent = age <= MONTH_DAYS
        quarterly = age <= 90.0
        dep30, dep90 = total(is_in & recent), total(is_in & quarterly)
        wd30, wd90 = total(is_out & recent), total(is_out & quarterly)
        dep_trend = np.where(dep90 > 0.0, (dep30 / MONTH_DAYS) / (dep90 / quarter), 1.0)
        wd_trend = np.where(wd90 > 0.0, (wd30 / MONTH_DAYS) / (wd90 / quarter), 1.0)

        in_ratio = np.where(dep_total > 0.0, total(tx_in) / dep_total, 0.0)
        out_ratio = np.where(wd_total > 0.0, total(tx_out) / wd_total, 0.0)
        round_trip = np.where(
            dep_total > 0.0,
            np.minimum(_round_trip_matched(cols, in_window) / dep_total, 1.0),
            0.0,
        )

    countries = _distinct_per_client(c[in_window], cols.country[in_window], n)
    geo = np.clip(1.0 - (np.maximum(countries, 1) - 1) / 4.0, 0.0, 1.0)
    senders = _distinct_per_client(c[tx_in & recent], cols.counterparty[tx_in & recent], n).astype(
        np.float64
    )
    fraud_days = np.where(np.isnan(cols.fraud_age_days), NO_FRAUD_DAYS, cols.fraud_age_days)

    columns = {
        "avg_monthly_deposits": avg_dep,
        "deposit_consistency": consistency,
        "avg_monthly_withdrawals": avg_wd,
        "net_monthly_flow": net,
        "savings_rate": savings,
        "transaction_frequency": tx_count / months,
        "account_age_days": account_age,
        "max_single_deposit": largest(is_in),
        "max_single_withdrawal": largest(is_out),
        "loan_repayment_rate": repayment,
        "days_since_last_fraud_alert": fraud_days,
        "total_fraud_alerts": cols.fraud_count.astype(np.float64),
        "unique_counterparties": _distinct_per_client(
            c[in_window], cols.counterparty[in_window], n
        ).astype(np.float64),
        "geographic_stability": geo,
        "deposit_trend": dep_trend,
        "withdrawal_trend": wd_trend,
        "incoming_transfer_ratio": in_ratio,
        "unique_transfer_senders_30d": senders,
        "outgoing_transfer_ratio": out_ratio,
        "round_trip_score": round_trip,
    }
    values = np.column_stack(
        [np.asarray(columns[name], dtype=np.float64) for name in FEATURE_NAMES]
    )
    return FeatureMatrix(values=values, transaction_count=tx_count, observed_days=observed)


def unknown_reasons(row: FloatArray) -> dict[str, str]:
    """Why each unknown (NaN) feature of one client is unknown."""
    reasons: dict[str, str] = {}
    if math.isnan(float(row[FEATURE_INDEX["loan_repayment_rate"]])):
        reasons["loan_repayment_rate"] = "no loan disbursed in the window"
    return reasons


def row_features(
    matrix: FeatureMatrix,
    i: int,
    *,
    client_id: str,
    currency: str,
    as_of: datetime,
    window_days: int,
) -> CreditFeatures:
    """The :class:`CreditFeatures` of client ``i`` of a computed chunk."""
    row = matrix.values[i]
    values: dict[str, float | None] = {}
    for j, name in enumerate(FEATURE_NAMES):
        v = float(row[j])
        values[name] = None if math.isnan(v) else v
    return CreditFeatures(
        client_id=client_id,
        currency=currency,
        as_of=as_of,
        values=values,
        transaction_count=int(matrix.transaction_count[i]),
        observed_days=float(matrix.observed_days[i]),
        unknown=unknown_reasons(row),
        window_days=window_days,
    )


def compute_features(
    transactions: Sequence[Transaction],
    *,
    client_id: str,
    as_of: datetime,
    opened_at: datetime | None = None,
    fraud_alert_dates: Sequence[datetime] = (),
    currency: str | None = None,
    default_currency: str = "XAF",
    window_days: int = WINDOW_DAYS,
) -> CreditFeatures:
    """The 20 behavioural features of one client over ``[as_of - window_days, as_of)``.

    Args:
        transactions: the client's transactions over any of its accounts (older ones may be
            included: they only inform the account age when ``opened_at`` is unknown).
        client_id: the client.
        as_of: end of the window (the clock value passed in; nothing reads the system clock).
        opened_at: the account's opening date, when known.
        fraud_alert_dates: creation times of the client's confirmed-fraud alerts.
        currency: the currency to profile; default: the client's dominant currency.
        default_currency: currency used when the client has no transactions.
        window_days: window length in days.

    Returns:
        The features, ``None`` (with a reason in ``unknown``) where a value cannot be known.
    """
    as_of = ensure_utc(as_of)
    cols = columns_from_transactions(
        {client_id: transactions},
        as_of=as_of,
        info={client_id: ClientInfo(opened_at=opened_at, fraud_alert_dates=fraud_alert_dates)},
        currencies={client_id: currency} if currency else None,
        default_currency=default_currency,
        window_days=window_days,
    )
    matrix = feature_matrix(cols, window_days=window_days)
    return row_features(
        matrix,
        0,
        client_id=client_id,
        currency=cols.currencies[0],
        as_of=as_of,
        window_days=window_days,
    )
