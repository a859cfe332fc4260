"""Rule engine: catalog of rules, versioned per-currency configuration, noisy-OR combination."""

from aml.rules.catalog import RULE_IDS, RULES
from aml.rules.config import (
    CurrencyThresholds,
    RuleConfig,
    RuleParams,
    RuleSettings,
    default_rule_config,
)
from aml.rules.engine import RuleEngine, RuleEvaluation, combine

__all__ = [
    "RULES",
    "RULE_IDS",
    "CurrencyThresholds",
    "RuleConfig",
    "RuleEngine",
    "RuleEvaluation",
    "RuleParams",
    "RuleSettings",
    "combine",
    "default_rule_config",
]
