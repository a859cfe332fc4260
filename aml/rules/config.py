"""Versioned, validated rule configuration with per-currency amount thresholds.

The configuration is a plain pydantic model so that it round-trips through a dict: the storage
layer keeps every version in MongoDB and Serve's ``reconfigure`` hot-reloads it with
``RuleConfig.model_validate(document)``. Invalid values fail validation with the offending field
named.

Currencies: amounts are in **major units** of the currency they are listed under. A transaction
whose currency has no entry in ``thresholds`` is **not** compared with another currency's
numbers: converting 500,000 XAF into, say, KWD or IDR without a rate would make amount rules
either never or always fire. Amount-based rules (large amount, structuring, volumes, CTR, loan
and agent float rules that compare money with thresholds) are therefore skipped for such a
transaction; count-, time- and graph-based rules still run. ``RuleConfig.thresholds_for`` returns
``None`` in that case.
"""

from __future__ import annotations

from typing import Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class CurrencyThresholds(BaseModel):
    """Money thresholds of one currency, in major units.

    Attributes:
        large_amount: the reporting threshold for one transaction (``large_amount`` rule); also
            the ceiling that structuring stays below.
        structuring_floor: lower edge of the "just below the threshold" band
            ``[structuring_floor, large_amount)``.
        ctr_threshold: cash transaction report threshold (single or same-day cash aggregate).
        anonymous_payment: merchant payment without a counterparty at or above this is flagged.
        agent_float_minimum: an agent's 24 h gross volume below this is too small to judge its
            float balance.
        agent_net_float: an agent's 24 h net float movement (cash in minus cash out) at or
            above this is flagged.
        round_unit: ``round_number`` fires on multiples of this.
    """

    model_config = _FROZEN

    large_amount: float = Field(gt=0)
    structuring_floor: float = Field(gt=0)
    ctr_threshold: float = Field(gt=0)
    anonymous_payment: float = Field(gt=0)
    agent_float_minimum: float = Field(gt=0)
    agent_net_float: float = Field(gt=0)
    round_unit: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.structuring_floor >= self.large_amount:
            raise ValueError("structuring_floor must be below large_amount")
        if self.ctr_threshold < self.large_amount:
            raise ValueError("ctr_threshold must be at least large_amount")
        return self


class RuleSettings(BaseModel):
    """Per-rule override: switch a rule off or pin its severity.

    ``severity`` replaces whatever the rule computes (scaled rules become fixed).
    """

    model_config = _FROZEN

    enabled: bool | None = None
    severity: float | None = Field(default=None, ge=0.0, le=1.0)


class RuleParams(BaseModel):
    """Currency-independent knobs: counts, windows, ratios."""

    model_config = _FROZEN

    # Velocity.
    rapid_count: int = Field(default=20, ge=2)
    rapid_window_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    volume_multiple: float = Field(default=3.0, gt=0)  # x large_amount within the rapid window
    # Timing.
    timezone: str = "Africa/Douala"
    unusual_start_hour: int = Field(default=2, ge=0, le=23)
    unusual_end_hour: int = Field(default=6, ge=0, le=24)  # exclusive
    # Transfers.
    pair_count: int = Field(default=3, ge=2)
    pair_window_hours: int = Field(default=24, ge=1, le=7 * 24)
    new_counterparty_min_prior: int = Field(default=3, ge=1)
    cross_structuring_min_senders: int = Field(default=3, ge=2)
    cross_structuring_window_hours: int = Field(default=24, ge=1, le=7 * 24)
    # Graph. Cycles get 72 h rather than the predecessor's 24 h: round-tripping through two or
    # three accounts over a weekend is common, and the edge index keeps 7 days anyway.
    cycle_max_hops: int = Field(default=4, ge=2, le=8)
    cycle_window_hours: int = Field(default=72, ge=1, le=7 * 24)
    cycle_amount_tolerance: float = Field(default=0.2, ge=0.0, lt=1.0)
    stacking_min_hops: int = Field(default=3, ge=2, le=8)
    stacking_window_minutes: int = Field(default=30, ge=1, le=7 * 24 * 60)
    stacking_ratio_min: float = Field(default=0.8, gt=0)
    stacking_ratio_max: float = Field(default=1.2, gt=0)
    # Six distinct payers in a day is unusual for a personal account yet rare enough for shops
    # that the severity (0.5 at the threshold) leaves the decision to other evidence.
    fan_min: int = Field(default=6, ge=2)
    fan_window_hours: int = Field(default=24, ge=1, le=7 * 24)
    scatter_min_senders: int = Field(default=8, ge=2)
    scatter_outflow_share: float = Field(default=0.5, gt=0, le=1)
    bipartite_min: int = Field(default=5, ge=2)
    collection_inflow_multiple: float = Field(default=5.0, gt=0)
    collection_min_senders: int = Field(default=5, ge=1)
    # Agents. The predecessor counted 30 per 24 h (every busy agent); 30 per hour is a queue
    # no single counter serves honestly.
    agent_rapid_count: int = Field(default=30, ge=2)
    agent_rapid_window_minutes: int = Field(default=60, ge=1, le=24 * 60)
    agent_structuring_min: int = Field(default=5, ge=2)
    agent_structuring_window_minutes: int = Field(default=60, ge=1, le=24 * 60)
    agent_float_imbalance: float = Field(default=0.95, gt=0.5, le=1)
    agent_float_min_count: int = Field(default=5, ge=1)
    agent_farming_min_clients: int = Field(default=8, ge=2)
    agent_farming_max_kyc: int = Field(default=1, ge=0)
    collusion_window_minutes: int = Field(default=60, ge=1, le=24 * 60)
    collusion_min_ratio: float = Field(default=0.5, gt=0, le=1)
    # Loans. The watch matches the predecessor's 48 h follow-up of a disbursement.
    loan_watch_hours: int = Field(default=48, ge=1, le=7 * 24)
    loan_run_share: float = Field(default=0.8, gt=0, le=1)
    loan_cashout_minutes: int = Field(default=30, ge=1)
    loan_cashout_share: float = Field(default=0.8, gt=0, le=1)
    loan_structuring_min: int = Field(default=3, ge=2)
    loan_structuring_share: float = Field(default=0.7, gt=0, le=1)
    loan_dispersal_min: int = Field(default=5, ge=2)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.unusual_start_hour == self.unusual_end_hour % 24:
            raise ValueError("unusual hours window is empty")
        if self.stacking_ratio_min >= self.stacking_ratio_max:
            raise ValueError("stacking_ratio_min must be below stacking_ratio_max")
        if not self.stacking_ratio_min <= 1.0 <= self.stacking_ratio_max:
            raise ValueError("stacking ratio band must contain 1.0")
        return self


class RuleConfig(BaseModel):
    """One version of the rule configuration.

    Attributes:
        version: monotonically increasing; stored with every decision.
        default_currency: must have an entry in ``thresholds``.
        thresholds: per ISO 4217 code (upper case), amounts in major units.
        rules: per rule id, ``enabled``/``severity`` overrides of the catalog defaults.
        params: currency-independent counts, windows and ratios.
    """

    model_config = _FROZEN

    version: int = Field(default=1, ge=1)
    default_currency: str = Field(default="XAF", min_length=3, max_length=3)
    thresholds: dict[str, CurrencyThresholds]
    rules: dict[str, RuleSettings] = Field(default_factory=dict)
    params: RuleParams = Field(default_factory=RuleParams)

    @field_validator("default_currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("thresholds")
    @classmethod
    def _upper_keys(cls, value: dict[str, CurrencyThresholds]) -> dict[str, CurrencyThresholds]:
        out: dict[str, CurrencyThresholds] = {}
        for code, th in value.items():
            if len(code) != 3 or not code.isalpha():
                raise ValueError(f"{code!r} is not a 3-letter ISO 4217 code")
            out[code.upper()] = th
        return out

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.default_currency not in self.thresholds:
            raise ValueError(
                f"thresholds has no entry for default currency {self.default_currency}"
            )
        from aml.rules.catalog import RULE_IDS  # deferred: the catalog imports this module

        unknown = sorted(set(self.rules) - RULE_IDS)
        if unknown:
            raise ValueError(f"unknown rule ids in rules: {', '.join(unknown)}")
        return self

    def thresholds_for(self, currency: str) -> CurrencyThresholds | None:
        """Thresholds of ``currency``, or ``None`` when it has none (amount rules are skipped)."""
        return self.thresholds.get(currency.upper())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (what the storage layer persists)."""
        return self.model_dump(mode="json")


def default_rule_config() -> RuleConfig:
    """Shipped defaults for an XAF (CEMAC) microfinance institution, plus USD and EUR.

    XAF numbers follow the predecessor's reference values: 500,000 XAF is the single-transaction
    "large" (reporting) threshold and 5,000,000 XAF the cash transaction report threshold. The
    structuring band starts at 450,000 (90 % of the threshold) instead of the predecessor's
    490,000: a 2 % band is trivially dodged by splitting into 480,000s, while 10 % below the
    threshold is the band supervisory guidance describes. Anonymous merchant payments from
    100,000 XAF and agent float checks from 1,000,000 XAF gross / 5,000,000 XAF net per day
    (an agent's gross volume of 50,000 XAF, the predecessor's effective value, is a handful of
    ordinary cash-ins).

    EUR is converted at the fixed CFA peg (655.957 XAF per EUR) and rounded to readable values.
    USD uses about 600 XAF per USD for the customer thresholds but keeps the familiar 10,000 USD
    currency-transaction-report threshold.
    """
    return RuleConfig(
        version=1,
        default_currency="XAF",
        thresholds={
            "XAF": CurrencyThresholds(
                large_amount=500_000,
                structuring_floor=450_000,
                ctr_threshold=5_000_000,
                anonymous_payment=100_000,
                agent_float_minimum=1_000_000,
                agent_net_float=5_000_000,
                round_unit=1_000,
            ),
            "EUR": CurrencyThresholds(
                large_amount=750,
                structuring_floor=675,
                ctr_threshold=7_500,
                anonymous_payment=150,
                agent_float_minimum=1_500,
                agent_net_float=7_500,
                round_unit=100,
            ),
            "USD": CurrencyThresholds(
                large_amount=850,
                structuring_floor=765,
                ctr_threshold=10_000,
                anonymous_payment=170,
                agent_float_minimum=1_700,
                agent_net_float=8_500,
                round_unit=100,
            ),
        },
    )
