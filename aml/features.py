"""Transaction features: one definition for serving (row path) and training (frame path).

Every feature is a pure function of the transaction, its point-in-time :class:`HistoryContext`
(strictly earlier transactions only, see :mod:`aml.history`) and :class:`FeatureParams`. Nothing
here reads a clock or does I/O, so a late event scores the same as if it had arrived on time,
and training rebuilt from history computes exactly what serving computed.

Conventions:
    * All values are floats and never NaN; when something is unknown a documented neutral value
      is used (0.5 for "new IP/device/country/KYC" flags, the cap for "minutes since").
    * Windows are relative to the transaction's own ``occurred_at``: ``[t - span, t)``.
    * Money aggregates use only history in the transaction's currency; counts use all history.
    * History excludes rejected attempts and corrections (they never moved money).
    * Hours and weekdays are local to ``FeatureParams.timezone`` (default Africa/Douala).
    * The account's view of a history transaction is direction-aware: a transfer recorded on the
      counterparty's account with this account as counterparty counts as the opposite direction
      here, and a counterparty-side record that merely mirrors one of the account's own records
      (same other account, amount, currency and direction within ``MIRROR_TOLERANCE``; each own
      record mirrors at most one) is counted once.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aml.domain import ActorType, Direction, Transaction, TransactionStatus, TransactionType
from aml.history import AGENT_LOOKBACK, COUNTERPARTY_LOOKBACK, MAX_LOOKBACK, HistoryContext
from aml.money import exponent

if TYPE_CHECKING:
    import pandas as pd

    from aml.settings import Settings
    from aml.summaries import SummaryCache

RATIO_CAP = 50.0
MINUTES_CAP = MAX_LOOKBACK.total_seconds() / 60.0  # 7 days: "never seen in the look-back"
MIRROR_TOLERANCE = timedelta(minutes=5)
_HOUR = timedelta(hours=1)
_DAY = timedelta(hours=24)
_WEEK = timedelta(days=7)
_UNKNOWN = 0.5

# Population floor (major units) under which an amount ratio's denominator never falls, so that a
# first small deposit does not look like a 50x spike. Roughly 15 EUR worth per currency.
DEFAULT_AMOUNT_FLOORS: Mapping[str, float] = {
    "XAF": 10_000.0,
    "XOF": 10_000.0,
    "EUR": 15.0,
    "USD": 15.0,
    "GBP": 15.0,
    "KES": 2_000.0,
    "NGN": 20_000.0,
    "GHS": 200.0,
    "UGX": 60_000.0,
    "RWF": 20_000.0,
}

_DEPOSIT_TYPES = frozenset(
    {TransactionType.DEPOSIT, TransactionType.FIXED_DEPOSIT, TransactionType.RECURRING_DEPOSIT}
)
_NOT_MONEY_STATUSES = frozenset({TransactionStatus.REJECTED, TransactionStatus.CORRECTION})
_LOAN = TransactionType.LOAN_DISBURSEMENT
_FLIP = {Direction.IN: Direction.OUT, Direction.OUT: Direction.IN, Direction.NONE: Direction.NONE}


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """A registered feature. Bump ``version`` whenever its definition changes."""

    name: str
    description: str
    version: int = 1


FEATURES: tuple[FeatureSpec, ...] = (
    # Transaction level.
    FeatureSpec("amount", "Amount in major units."),
    FeatureSpec("amount_log", "log1p(amount)."),
    FeatureSpec("is_deposit", "1 for deposits (incl. fixed/recurring deposits)."),
    FeatureSpec("is_withdrawal", "1 for withdrawals."),
    FeatureSpec("is_transfer", "1 for transfers."),
    FeatureSpec("hour_sin", "sin(2*pi*h/24), h = local fractional hour.", 2),
    FeatureSpec("hour_cos", "cos(2*pi*h/24), h = local fractional hour.", 2),
    FeatureSpec("day_of_week", "Local weekday, 0 = Monday.", 2),
    FeatureSpec("is_weekend", "1 on local Saturday/Sunday.", 2),
    FeatureSpec("is_night", "1 when the local hour is in the configured night window.", 2),
    FeatureSpec("is_round_hundred", "1 when amount >= 100 and a multiple of 100."),
    FeatureSpec("is_round_thousand", "1 when amount >= 1000 and a multiple of 1000."),
    # Account, last hour / 24 hours (history only, the transaction itself excluded).
    FeatureSpec("tx_count_1h", "Earlier transactions of the account in the last hour.", 2),
    FeatureSpec("tx_count_24h", "Earlier transactions of the account in the last 24 h.", 2),
    FeatureSpec("total_amount_1h", "Sum of earlier amounts in the last hour.", 2),
    FeatureSpec("total_amount_24h", "Sum of earlier amounts in the last 24 h.", 2),
    FeatureSpec("avg_amount_24h", "Mean earlier amount in 24 h (0 when none).", 2),
    FeatureSpec("max_amount_24h", "Max earlier amount in 24 h (0 when none).", 2),
    FeatureSpec("amount_vs_avg_ratio", "amount / max(avg_24h, floor[currency]), capped 50.", 2),
    FeatureSpec("unique_counterparties_24h", "Distinct counterparties in 24 h.", 2),
    FeatureSpec("same_type_ratio_24h", "Share of 24 h history of this type (0 when none).", 2),
    FeatureSpec("is_new_ip_for_account", "IP unseen in 7 d: 1 new, 0 known, 0.5 unknown.", 2),
    FeatureSpec("unique_ips_24h", "Distinct IPs of the account's own records in 24 h.", 2),
    FeatureSpec("is_new_device", "Device unseen in 7 d: 1 new, 0 known, 0.5 unknown.", 2),
    # Account, 7 days.
    FeatureSpec("tx_count_7d", "Earlier transactions of the account in 7 d.", 2),
    FeatureSpec("total_amount_7d", "Sum of earlier amounts in 7 d.", 2),
    FeatureSpec("avg_amount_7d", "Mean earlier amount in 7 d (0 when none).", 2),
    FeatureSpec("max_amount_7d", "Max earlier amount in 7 d (0 when none).", 2),
    FeatureSpec("unique_counterparties_7d", "Distinct counterparties in 7 d.", 2),
    FeatureSpec("amount_vs_7d_avg_ratio", "amount / max(avg_7d, floor[currency]), capped 50.", 2),
    FeatureSpec("tx_velocity_trend", "count_24h / (count_7d / 7); 1 when no 7 d history.", 2),
    FeatureSpec("receiver_diversity_7d", "unique_counterparties_7d / count_7d (0 when none).", 2),
    FeatureSpec(
        "geo_distance_from_usual", "Country vs 7 d modal: 1 differs, 0 same, 0.5 unknown.", 2
    ),
    FeatureSpec("has_loan_disbursement_7d", "1 when a loan disbursement touched it in 7 d.", 2),
    # Actor.
    FeatureSpec("is_agent", "1 when an agent performed it."),
    FeatureSpec("is_merchant", "1 when a merchant performed it."),
    FeatureSpec("kyc_level_norm", "KYC level / 4 in [0, 1]; 0.5 when unknown."),
    FeatureSpec("is_new_kyc", "1 when KYC level is 1; 0.5 when unknown.", 2),
    # Direction-aware.
    FeatureSpec("is_incoming", "1 when money flows into the account."),
    FeatureSpec("inflow_24h", "Earlier money into the account in 24 h."),
    FeatureSpec("outflow_24h", "Earlier money out of the account in 24 h."),
    FeatureSpec("net_flow_24h", "inflow_24h - outflow_24h."),
    FeatureSpec("unique_senders_7d", "Distinct counterparties that paid in, 7 d."),
    FeatureSpec("unique_receivers_7d", "Distinct counterparties paid out to, 7 d."),
    FeatureSpec("minutes_since_last_tx", "Minutes since the previous transaction, cap 7 d."),
    FeatureSpec("minutes_since_loan_disbursement", "Minutes since a disbursement, cap 7 d."),
    FeatureSpec("amount_vs_max_7d", "amount / max(max_7d, floor[currency]), capped 50."),
)

FEATURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in FEATURES)


def _feature_set_version(specs: Sequence[FeatureSpec]) -> str:
    raw = "\n".join(f"{s.name}:{s.version}" for s in specs).encode()
    return "fs-" + hashlib.sha256(raw).hexdigest()[:8]


FEATURE_SET_VERSION: str = _feature_set_version(FEATURES)


@lru_cache(maxsize=32)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureParams:
    """Deployment parameters of the feature definitions.

    Attributes:
        timezone: IANA zone in which hours and weekdays are read (the customers' local time).
        amount_floors: population floor per ISO currency (major units) for amount ratios.
        default_amount_floor: floor for currencies missing from ``amount_floors``.
        night_start_hour: first local hour of the night window (inclusive).
        night_end_hour: local hour at which the night window ends (exclusive); the window wraps
            midnight when ``night_start_hour > night_end_hour``.
    """

    timezone: str = "Africa/Douala"
    amount_floors: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_AMOUNT_FLOORS))
    default_amount_floor: float = 15.0
    night_start_hour: int = 22
    night_end_hour: int = 6

    def __post_init__(self) -> None:
        try:
            _zone(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.timezone!r}") from exc
        for hour in (self.night_start_hour, self.night_end_hour):
            if not 0 <= hour <= 23:
                raise ValueError(f"night hours must be within 0..23, got {hour}")
        floors = [self.default_amount_floor, *self.amount_floors.values()]
        if any(not f > 0 or not math.isfinite(f) for f in floors):
            raise ValueError("amount floors must be positive and finite")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> FeatureParams:
        """Parameters for a process: the configured time zone plus any explicit overrides."""
        values: dict[str, object] = {"timezone": settings.timezone, **overrides}
        return cls(**values)  # type: ignore[arg-type]

    def amount_floor(self, currency: str) -> float:
        """Population floor for ``currency`` in major units."""
        return float(self.amount_floors.get(currency.upper(), self.default_amount_floor))

    def is_night(self, hour: int) -> bool:
        """Whether a local hour falls in the night window."""
        start, end = self.night_start_hour, self.night_end_hour
        if start > end:
            return hour >= start or hour < end
        return start <= hour < end


def local_time(at: datetime, params: FeatureParams) -> datetime:
    """``at`` in the configured local time zone (for hour/weekday features and rules)."""
    return in_zone(at, params.timezone)


def in_zone(at: datetime, zone: str) -> datetime:
    """``at`` in the IANA time zone ``zone``.

    Cached: the features and the rules of a batch both read each transaction's local time, and
    a time-zone conversion costs more than the look-up. A plain dict emptied when full (it
    holds several batches) costs less per miss than an LRU, and almost every first look-up of
    an instant misses.
    """
    key = (at, zone)
    local = _LOCAL.get(key)
    if local is None:
        if len(_LOCAL) >= _LOCAL_KEPT:
            _LOCAL.clear()
        local = _LOCAL[key] = at.astimezone(_zone(zone))
    return local


_LOCAL: dict[tuple[datetime, str], datetime] = {}
_LOCAL_KEPT = 8192


def _is_money(o: Transaction) -> bool:
    return o.status not in _NOT_MONEY_STATUSES and o.type is not TransactionType.REVERSAL


def _mirror_keys(
    tx: Transaction, history: Sequence[Transaction]
) -> dict[tuple[str, int, str, Direction], list[datetime]]:
    """The account's own records with a counterparty, keyed as their mirror leg would look."""
    acct = tx.account_id
    keys: dict[tuple[str, int, str, Direction], list[datetime]] = defaultdict(list)
    for o in (*history, tx):
        other = o.counterparty_account_id
        if o.account_id == acct and other and other != acct and _is_money(o):
            keys[(other, o.amount_minor, o.currency, o.direction)].append(o.occurred_at)
    return keys


def _take_mirror(legs: list[datetime], at: datetime) -> bool:
    """Match a counterparty-side record to one unmatched own leg (each leg mirrors one record)."""
    for i, leg in enumerate(legs):
        if abs(leg - at) <= MIRROR_TOLERANCE:
            del legs[i]
            return True
    return False


# Aggregates of the account's history as the account sees it (see the module notes), as one
# tuple: built for every transaction scored, where a 23-field object cost more than its reading.
AccountSummary = tuple[
    int,  # count_1h
    int,  # count_24h
    int,  # count_7d
    float,  # total_1h
    float,  # total_24h
    float,  # total_7d
    int,  # n_amount_24h
    int,  # n_amount_7d
    float,  # max_24h
    float,  # max_7d
    int,  # same_type_24h
    float,  # inflow_24h
    float,  # outflow_24h
    datetime | None,  # last_at
    datetime | None,  # loan_at
    Collection[str],  # cps_24h
    Collection[str],  # cps_7d
    Collection[str],  # senders
    Collection[str],  # receivers
    Collection[str],  # ips_24h
    Collection[str],  # ips_7d
    Collection[str],  # devices_7d
    Mapping[str, int],  # countries
]


_FLOAT_UNITS: dict[str, float] = {}


def float_unit(currency: str) -> float:
    """``10 ** exponent`` of ``currency`` as a float (cached), the divisor of minor units."""
    unit = _FLOAT_UNITS.get(currency)
    if unit is None:
        unit = _FLOAT_UNITS[currency] = float(10 ** exponent(currency))
    return unit


def _no_sets() -> tuple[set[str], set[str], set[str], set[str], set[str], set[str], set[str]]:
    return set(), set(), set(), set(), set(), set(), set()


def summarise(tx: Transaction, history: Sequence[Transaction]) -> AccountSummary:
    """One pass over the history; hot in training (a few dozen items x every row).

    Money is summed in minor units, exactly, and divided once: the same totals whatever order
    they are added or taken away in (:class:`aml.summaries.SummaryCache` keeps them up to date
    as an account's window moves on and must agree with this to the last bit).
    """
    if not history:
        # What the pass below returns for no history (many new or quiet accounts).
        return (0, 0, 0, 0.0, 0.0, 0.0, 0, 0, 0.0, 0.0, 0, 0.0, 0.0, None, None, *_no_sets(), {})
    acct = tx.account_id
    currency = tx.currency
    tx_type = tx.type
    t = tx.occurred_at
    week_start, day_start, hour_start = t - _WEEK, t - _DAY, t - _HOUR
    mirrors: dict[tuple[str, int, str, Direction], list[datetime]] | None = None
    not_money, reversal, loan = _NOT_MONEY_STATUSES, TransactionType.REVERSAL, _LOAN
    inbound, outbound = Direction.IN, Direction.OUT
    count_1h = count_24h = count_7d = n_amount_24h = n_amount_7d = same_type_24h = 0
    # Minor units (ints): exact sums.
    total_1h = total_24h = total_7d = max_24h = max_7d = inflow_24h = outflow_24h = 0
    last_at: datetime | None = None
    loan_at: datetime | None = None
    cps_24h: set[str] = set()
    cps_7d: set[str] = set()
    senders: set[str] = set()
    receivers: set[str] = set()
    ips_24h: set[str] = set()
    ips_7d: set[str] = set()
    devices_7d: set[str] = set()
    # A plain dict: the same counts in the same order as a Counter, without its Python-level
    # constructor on every call.
    countries: dict[str, int] = {}
    for o in history:
        at = o.occurred_at
        if at < week_start or at > t or o.status in not_money or o.type is reversal:
            continue
        if o.account_id == acct:
            own = True
            direction = o.direction
            other = o.counterparty_account_id
            if other == acct:
                other = None
        elif o.counterparty_account_id == acct:
            own = False
            direction = _FLIP[o.direction]
            other = o.account_id
            if mirrors is None:
                mirrors = _mirror_keys(tx, history)
            legs = mirrors.get((other, o.amount_minor, o.currency, direction)) if mirrors else None
            if legs and _take_mirror(legs, at):
                continue
        else:
            continue  # does not touch this account: not part of its history

        minor = o.amount_minor if o.currency == currency else None
        count_7d += 1
        if last_at is None or at > last_at:
            last_at = at
        if minor is not None:
            n_amount_7d += 1
            total_7d += minor
            if minor > max_7d:
                max_7d = minor
        if other:
            cps_7d.add(other)
            if direction is inbound:
                senders.add(other)
            elif direction is outbound:
                receivers.add(other)
        if own:
            if o.ip_address:
                ips_7d.add(o.ip_address)
            if o.device_id:
                devices_7d.add(o.device_id)
            country = o.country_code
            if country:
                countries[country] = countries.get(country, 0) + 1
        if o.type is loan and (loan_at is None or at > loan_at):
            loan_at = at
        if at < day_start:
            continue
        count_24h += 1
        if o.type is tx_type:
            same_type_24h += 1
        if other:
            cps_24h.add(other)
        if own and o.ip_address:
            ips_24h.add(o.ip_address)
        if minor is not None:
            n_amount_24h += 1
            total_24h += minor
            if minor > max_24h:
                max_24h = minor
            if direction is inbound:
                inflow_24h += minor
            elif direction is outbound:
                outflow_24h += minor
        if at < hour_start:
            continue
        count_1h += 1
        if minor is not None:
            total_1h += minor
    return in_major_units(
        (count_1h, count_24h, count_7d, total_1h, total_24h, total_7d, n_amount_24h, n_amount_7d),
        (max_24h, max_7d, same_type_24h, inflow_24h, outflow_24h, last_at, loan_at),
        (cps_24h, cps_7d, senders, receivers, ips_24h, ips_7d, devices_7d, countries),
        float_unit(currency),
    )


def in_major_units(
    counts: tuple[int, int, int, int, int, int, int, int],
    flows: tuple[int, int, int, int, int, datetime | None, datetime | None],
    distinct: tuple[
        Collection[str],
        Collection[str],
        Collection[str],
        Collection[str],
        Collection[str],
        Collection[str],
        Collection[str],
        Mapping[str, int],
    ],
    unit: float,
) -> AccountSummary:
    """The summary from its aggregates with money in minor units (the one place the summary's
    layout and its unit conversion are written, for :func:`summarise` and
    :class:`aml.summaries.SummaryCache`).

    Args:
        counts: records in 1 h, 24 h and 7 d; money sums over them (minor units); records with
            an amount in the transaction's currency in 24 h and 7 d.
        flows: maxima in 24 h and 7 d (minor units), records of the transaction's type in 24 h,
            inflow and outflow in 24 h (minor units), last record and last loan disbursement.
        distinct: counterparties in 24 h and 7 d, senders, receivers, IPs in 24 h and 7 d,
            devices, and the countries' record counts.
        unit: the currency's minor units per major unit.
    """
    c1, c24, c7, s1, s24, s7, n24, n7 = counts
    m24, m7, same_type, inflow, outflow, last_at, loan_at = flows
    return (
        c1,
        c24,
        c7,
        s1 / unit,
        s24 / unit,
        s7 / unit,
        n24,
        n7,
        m24 / unit,
        m7 / unit,
        same_type,
        inflow / unit,
        outflow / unit,
        last_at,
        loan_at,
        *distinct,
    )


def _novelty(value: str | None, known: set[str]) -> float:
    if not value or not known:
        return _UNKNOWN
    return 0.0 if value in known else 1.0


def _ratio(amount: float, reference: float, floor: float) -> float:
    return min(amount / max(reference, floor), RATIO_CAP)


def _minutes(t: datetime, since: datetime | None) -> float:
    if since is None:
        return MINUTES_CAP
    return min((t - since).total_seconds() / 60.0, MINUTES_CAP)


def compute_features(
    tx: Transaction, ctx: HistoryContext, *, params: FeatureParams
) -> dict[str, float]:
    """All registered features of one transaction, keyed and ordered as ``FEATURE_NAMES``.

    Args:
        tx: the transaction being scored.
        ctx: its point-in-time history (only transactions strictly before ``tx``).
        params: deployment parameters (time zone, amount floors, night window).

    Returns:
        ``{name: value}`` for every registered feature; all values finite floats.
    """
    return dict(zip(FEATURE_NAMES, feature_vector(tx, ctx, params=params), strict=True))


def feature_vector(
    tx: Transaction,
    ctx: HistoryContext,
    *,
    params: FeatureParams,
    summaries: SummaryCache | None = None,
) -> list[float]:
    """The features of one transaction as a list in ``FEATURE_NAMES`` order (model input).

    Written out as one list (no dict, no helper calls per value): it runs for every transaction
    scored. :func:`compute_features` names the same values. ``summaries``: where a caller that
    scores an account's transactions one after another keeps their history summaries (the
    same values, without reading a busy account's whole history again).
    """
    currency = tx.currency
    minor = tx.amount_minor
    amount = tx.amount
    if amount < 0.0:
        amount = 0.0
    unit = _INT_UNITS.get(currency)
    if unit is None:
        unit = _INT_UNITS[currency] = 10 ** exponent(currency)
    floor = float(params.amount_floors.get(currency.upper(), params.default_amount_floor))
    local = in_zone(tx.occurred_at, params.timezone)
    hour = local.hour
    hour_frac = hour + local.minute / 60.0 + local.second / 3600.0
    angle = 2.0 * math.pi * hour_frac / 24.0
    weekday = local.weekday()
    start, end = params.night_start_hour, params.night_end_hour
    night = (hour >= start or hour < end) if start > end else (start <= hour < end)
    tx_type = tx.type

    (
        count_1h,
        count_24h,
        count_7d,
        total_1h,
        total_24h,
        total_7d,
        n_amount_24h,
        n_amount_7d,
        max_24h,
        max_7d,
        same_type_24h,
        inflow_24h,
        outflow_24h,
        last_at,
        loan_at,
        cps_24h,
        cps_7d,
        senders,
        receivers,
        ips_24h,
        ips_7d,
        devices_7d,
        countries,
    ) = summarise(tx, ctx.account) if summaries is None else summaries.summarise(tx, ctx.account)
    avg_24h = total_24h / n_amount_24h if n_amount_24h else 0.0
    avg_7d = total_7d / n_amount_7d if n_amount_7d else 0.0
    country = tx.country_code
    if country and countries:
        top = max(countries.values())
        modal = {c for c, n in countries.items() if n == top}
        geo = 0.0 if country in modal else 1.0
    else:
        geo = _UNKNOWN
    kyc = tx.kyc_level
    ip = tx.ip_address
    device = tx.device_id
    t = tx.occurred_at
    n_cps_7d = len(cps_7d)
    hundred, thousand = 100 * unit, 1000 * unit

    # Same expressions as the feature definitions (``_ratio``, ``_novelty``, ``_minutes``),
    # inlined: ``max(a, b)`` is ``b if b > a else a`` and ``min(a, b)`` is ``b if b < a else
    # a`` (what the builtins return, NaN included), ``n + 0.0`` is ``float(n)`` for a count.
    cap = RATIO_CAP
    ratio_24h = amount / (floor if floor > avg_24h else avg_24h)
    ratio_7d = amount / (floor if floor > avg_7d else avg_7d)
    ratio_max = amount / (floor if floor > max_7d else max_7d)
    if kyc is None:
        kyc_norm = new_kyc = _UNKNOWN
    else:
        kyc_norm = kyc / 4.0
        kyc_norm = 0.0 if 0.0 > kyc_norm else kyc_norm
        kyc_norm = 1.0 if 1.0 < kyc_norm else kyc_norm
        new_kyc = 1.0 if kyc == 1 else 0.0
    since_last = since_loan = MINUTES_CAP
    if last_at is not None:
        since_last = (t - last_at).total_seconds() / 60.0
        since_last = MINUTES_CAP if MINUTES_CAP < since_last else since_last
    if loan_at is not None:
        since_loan = (t - loan_at).total_seconds() / 60.0
        since_loan = MINUTES_CAP if MINUTES_CAP < since_loan else since_loan
    actor = tx.actor_type
    return [
        amount,
        math.log1p(amount),
        1.0 if tx_type in _DEPOSIT_TYPES else 0.0,
        1.0 if tx_type is TransactionType.WITHDRAWAL else 0.0,
        1.0 if tx_type is TransactionType.TRANSFER else 0.0,
        math.sin(angle),
        math.cos(angle),
        weekday + 0.0,
        1.0 if weekday >= 5 else 0.0,
        1.0 if night else 0.0,
        1.0 if minor >= hundred and minor % hundred == 0 else 0.0,
        1.0 if minor >= thousand and minor % thousand == 0 else 0.0,
        count_1h + 0.0,
        count_24h + 0.0,
        total_1h,
        total_24h,
        avg_24h,
        max_24h,
        cap if cap < ratio_24h else ratio_24h,
        len(cps_24h) + 0.0,
        same_type_24h / count_24h if count_24h else 0.0,
        _UNKNOWN if not ip or not ips_7d else (0.0 if ip in ips_7d else 1.0),
        len(ips_24h) + 0.0,
        _UNKNOWN if not device or not devices_7d else (0.0 if device in devices_7d else 1.0),
        count_7d + 0.0,
        total_7d,
        avg_7d,
        max_7d,
        n_cps_7d + 0.0,
        cap if cap < ratio_7d else ratio_7d,
        count_24h / (count_7d / 7.0) if count_7d else 1.0,
        n_cps_7d / count_7d if count_7d else 0.0,
        geo,
        1.0 if loan_at is not None else 0.0,
        1.0 if actor is ActorType.AGENT else 0.0,
        1.0 if actor is ActorType.MERCHANT else 0.0,
        kyc_norm,
        new_kyc,
        1.0 if tx.direction is Direction.IN else 0.0,
        inflow_24h,
        outflow_24h,
        inflow_24h - outflow_24h,
        len(senders) + 0.0,
        len(receivers) + 0.0,
        since_last,
        since_loan,
        cap if cap < ratio_max else ratio_max,
    ]


_INT_UNITS: dict[str, int] = {}


class _Slice(Sequence[Transaction]):
    """A read-only window onto a sorted list, without copying it (keeps the frame path linear)."""

    __slots__ = ("_hi", "_items", "_lo")

    def __init__(self, items: list[Transaction], lo: int, hi: int) -> None:
        self._items, self._lo, self._hi = items, lo, max(lo, hi)

    def __len__(self) -> int:
        return self._hi - self._lo

    def __iter__(self) -> Iterator[Transaction]:
        return itertools.islice(self._items, self._lo, self._hi)

    @overload
    def __getitem__(self, index: int) -> Transaction: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Transaction]: ...

    def __getitem__(self, index: int | slice) -> Transaction | Sequence[Transaction]:
        if isinstance(index, slice):
            return self._items[self._lo : self._hi][index]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(index)
        return self._items[self._lo + index]


_EMPTY: Sequence[Transaction] = ()


class _SortedIndex:
    """Per-key time-sorted transactions with bisectable ``(occurred_at, id)`` keys."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], list[Transaction]] = defaultdict(list)
        self._keys: dict[tuple[str, str], list[tuple[datetime, str]]] = {}

    def add(self, key: tuple[str, str], tx: Transaction) -> None:
        self._items[key].append(tx)

    def freeze(self) -> None:
        for key, items in self._items.items():
            self._keys[key] = [(o.occurred_at, o.id) for o in items]

    def before(
        self, key: tuple[str, str], tx: Transaction, span: timedelta
    ) -> Sequence[Transaction]:
        """Transactions under ``key`` in ``[t - span, t)``, strictly before ``tx``."""
        keys = self._keys.get(key)
        if not keys:
            return _EMPTY
        t = tx.occurred_at
        lo = bisect.bisect_left(keys, (t - span, ""))
        hi = bisect.bisect_left(keys, (t, tx.id))
        return _Slice(self._items[key], lo, hi)


def _order(tx: Transaction) -> tuple[datetime, str]:
    return (tx.occurred_at, tx.id)


def feature_frame(txs: Sequence[Transaction], *, params: FeatureParams) -> pd.DataFrame:
    """Point-in-time features of a batch of transactions (training, backtests).

    The batch may be unsorted and span many accounts and tenants. Each row is computed by
    :func:`compute_features` from the same context :func:`aml.history.build_context` would build
    from the whole batch (strictly earlier transactions only), found by bisecting per-account
    time-sorted arrays, so the cost grows with the batch times the window size, not quadratically.

    Args:
        txs: the transactions; they are also each other's history. Ids are unique; a repeated id
            is taken to be a replay of its first occurrence and ignored.
        params: feature parameters.

    Returns:
        A float frame indexed by transaction id (in input order) with columns ``FEATURE_NAMES``.
    """
    import numpy as np
    import pandas as pd

    unique: dict[str, Transaction] = {}
    for tx in txs:
        unique.setdefault(tx.id, tx)
    accounts, agents = _SortedIndex(), _SortedIndex()
    for o in sorted(unique.values(), key=_order):
        for acct in {o.account_id, o.counterparty_account_id}:
            if acct:
                accounts.add((o.tenant, acct), o)
        if o.agent_id:
            agents.add((o.tenant, o.agent_id), o)
    accounts.freeze()
    agents.freeze()

    rows = np.empty((len(unique), len(FEATURE_NAMES)), dtype=np.float64)
    for i, tx in enumerate(unique.values()):
        cp = tx.counterparty_account_id
        ctx = HistoryContext(
            account=accounts.before((tx.tenant, tx.account_id), tx, MAX_LOOKBACK),
            counterparty=accounts.before((tx.tenant, cp), tx, COUNTERPARTY_LOOKBACK) if cp else (),
            agent=agents.before((tx.tenant, tx.agent_id), tx, AGENT_LOOKBACK)
            if tx.agent_id
            else (),
        )
        rows[i] = feature_vector(tx, ctx, params=params)
    index = pd.Index(list(unique), name="transaction_id", dtype=object)
    return pd.DataFrame(rows, index=index, columns=list(FEATURE_NAMES))
