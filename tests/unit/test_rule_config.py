"""Rule configuration: validation, defaults, dict round trip, unknown currencies."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from aml.errors import ConfigError
from aml.history import build_context
from aml.rules import RULE_IDS, RuleConfig, RuleEngine, default_rule_config
from tests.factories import make_tx


def _config_dict(**changes: Any) -> dict[str, Any]:
    data = default_rule_config().to_dict()
    data.update(changes)
    return data


def test_default_config_round_trips_through_a_plain_dict() -> None:
    config = default_rule_config()
    data = config.to_dict()
    assert isinstance(data["thresholds"]["XAF"]["large_amount"], float)
    assert RuleConfig.model_validate(data) == config


def test_defaults_follow_the_xaf_reference_values() -> None:
    xaf = default_rule_config().thresholds["XAF"]
    assert xaf.large_amount == 500_000
    assert xaf.ctr_threshold == 5_000_000
    assert xaf.structuring_floor < xaf.large_amount
    assert {"XAF", "USD", "EUR"} <= set(default_rule_config().thresholds)


def test_round_number_is_off_by_default() -> None:
    engine = RuleEngine(default_rule_config())
    assert "round_number" not in engine.enabled_rules
    assert "large_amount" in engine.enabled_rules


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("thresholds", "XAF", "large_amount"), -1, "greater than 0"),
        (("thresholds", "XAF", "structuring_floor"), 500_000, "structuring_floor"),
        (("thresholds", "XAF", "ctr_threshold"), 400_000, "ctr_threshold"),
        (("params", "cycle_amount_tolerance"), 1.5, "cycle_amount_tolerance"),
        (("params", "timezone"), "Mars/Olympus", "unknown time zone"),
        (("params", "stacking_ratio_min"), 1.3, "stacking"),
        (("params", "rapid_count"), 0, "rapid_count"),
    ],
)
def test_invalid_values_are_rejected_naming_the_field(
    path: tuple[str, ...], value: object, message: str
) -> None:
    data = _config_dict()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ValidationError, match=message):
        RuleConfig.model_validate(data)


def test_severity_override_must_be_within_unit_interval() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        RuleConfig.model_validate(_config_dict(rules={"large_amount": {"severity": 1.5}}))


def test_default_currency_needs_thresholds() -> None:
    data = _config_dict(default_currency="GHS")
    with pytest.raises(ValidationError, match="default currency GHS"):
        RuleConfig.model_validate(data)


def test_unknown_rule_ids_are_rejected() -> None:
    with pytest.raises(ValidationError, match="no_such_rule"):
        RuleConfig.model_validate(_config_dict(rules={"no_such_rule": {"enabled": False}}))


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="surprise"):
        RuleConfig.model_validate(_config_dict(surprise=1))


def test_engine_rejects_a_config_built_without_validation() -> None:
    bogus = default_rule_config().model_copy(update={"rules": {"bogus": None}})
    with pytest.raises(ConfigError):
        RuleEngine(bogus)


def test_currency_codes_are_normalised() -> None:
    data = _config_dict()
    data["thresholds"]["usd"] = data["thresholds"].pop("USD")
    config = RuleConfig.model_validate(data)
    assert config.thresholds_for("usd") is config.thresholds["USD"]


def test_thresholds_apply_per_currency() -> None:
    engine = RuleEngine(default_rule_config())
    # 900 is large in USD (threshold 850) and pocket money in XAF.
    usd = make_tx(amount_minor=90_000, currency="USD")
    xaf = make_tx(amount_minor=900, currency="XAF")
    assert "large_amount" in engine.evaluate(usd, build_context(usd, [])).rule_ids
    assert "large_amount" not in engine.evaluate(xaf, build_context(xaf, [])).rule_ids


def test_currency_without_thresholds_skips_amount_rules_but_not_others() -> None:
    engine = RuleEngine(default_rule_config())
    # 10 million of an unconfigured currency: never compared with XAF numbers.
    tx = make_tx(amount_minor=10_000_000_000, currency="GHS", occurred_at=_at_local_hour(3))
    ev = engine.evaluate(tx, build_context(tx, []))
    assert "large_amount" not in ev.rule_ids
    assert "cash_threshold_report" not in ev.rule_ids
    assert ev.rule_ids == ("unusual_hours",)


def test_disabling_a_rule_and_pinning_a_severity() -> None:
    data = _config_dict(
        version=7,
        rules={
            "large_amount": {"severity": 0.9},
            "cash_threshold_report": {"enabled": False},
            "high_velocity_volume": {"enabled": False},
        },
    )
    engine = RuleEngine(RuleConfig.model_validate(data))
    tx = make_tx(amount_minor=6_000_000)
    ev = engine.evaluate(tx, build_context(tx, []))
    assert ev.rule_ids == ("large_amount",)
    assert ev.hits[0].severity == 0.9
    assert ev.config_version == 7


def test_every_rule_id_is_snake_case() -> None:
    assert all(r.replace("_", "").isalpha() and r.islower() for r in RULE_IDS)


def _at_local_hour(hour: int) -> Any:
    from datetime import UTC, datetime

    # Africa/Douala is UTC+1 all year.
    return datetime(2026, 1, 15, (hour - 1) % 24, 30, tzinfo=UTC)
