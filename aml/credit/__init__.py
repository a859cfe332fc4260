"""Credit scoring: behavioural features, rule-based score and tiers, recommendation, calibration."""
