"""Scoring: Serve deployments, typed app builder, hand-off clients and shared pipeline logic."""
