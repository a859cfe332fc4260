"""Settings: invalid values name the variable; production refuses missing or weak secrets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from aml.errors import ConfigError
from aml.settings import load_settings

STRONG = "x" * 40


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AML_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AML_INGRESS_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="AML_INGRESS_PORT"):
        load_settings()


def test_unknown_timezone_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AML_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AML_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigError, match="AML_TIMEZONE"):
        load_settings()


@pytest.mark.parametrize(
    ("jwt", "hooks", "problem"),
    [
        (None, STRONG, "AML_JWT_SECRET is not set"),
        (STRONG, None, "AML_FINERACT_WEBHOOK_SECRETS is not set"),
        ("changeme", STRONG, "AML_JWT_SECRET is a default"),
        (STRONG, f"{STRONG},short", "AML_FINERACT_WEBHOOK_SECRETS is a default or too short"),
    ],
)
def test_production_refuses_missing_or_weak_secrets(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    jwt: str | None,
    hooks: str | None,
    problem: str,
) -> None:
    monkeypatch.setenv("AML_ENV", "production")
    monkeypatch.setenv("AML_DATA_DIR", str(tmp_path))
    for name, value in (("AML_JWT_SECRET", jwt), ("AML_FINERACT_WEBHOOK_SECRETS", hooks)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=problem):
        load_settings()
    assert not (tmp_path / "secrets.json").exists()


def test_production_starts_with_strong_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AML_ENV", "production")
    monkeypatch.setenv("AML_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AML_JWT_SECRET", STRONG)
    monkeypatch.setenv("AML_FINERACT_WEBHOOK_SECRETS", f"{STRONG}a,{STRONG}b")
    settings = load_settings()
    assert settings.webhook_secrets() == [f"{STRONG}a", f"{STRONG}b"]


def test_development_generates_secrets_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AML_DATA_DIR", str(tmp_path))
    for name in ("AML_JWT_SECRET", "AML_FINERACT_WEBHOOK_SECRETS", "AML_GENERIC_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    first = load_settings()
    second = load_settings()
    assert first.jwt_secret is not None and second.jwt_secret is not None
    assert first.jwt_secret.get_secret_value() == second.jwt_secret.get_secret_value()
    assert len(first.webhook_secrets()[0]) >= 32
    mode = stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode)
    assert mode == 0o600
    other = tmp_path / "other"
    monkeypatch.setenv("AML_DATA_DIR", str(other))
    assert load_settings().jwt_secret != first.jwt_secret


def test_group_commits_in_flight_are_left_to_the_committer_unless_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AML_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("AML_INGEST_MAX_IN_FLIGHT", raising=False)
    assert load_settings().ingest_max_in_flight is None  # chosen for the server at start
    monkeypatch.setenv("AML_INGEST_MAX_IN_FLIGHT", "3")
    assert load_settings().ingest_max_in_flight == 3
    monkeypatch.setenv("AML_INGEST_MAX_IN_FLIGHT", "0")
    with pytest.raises(ConfigError, match="AML_INGEST_MAX_IN_FLIGHT"):
        load_settings()


def test_the_overload_threshold_of_acknowledgements_is_half_a_second_unless_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AML_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("AML_INGEST_OVERLOAD_ACK_MS", raising=False)
    assert load_settings().ingest_overload_ack_ms == 500.0
    monkeypatch.setenv("AML_INGEST_OVERLOAD_ACK_MS", "250")
    assert load_settings().ingest_overload_ack_ms == 250.0
    monkeypatch.setenv("AML_INGEST_OVERLOAD_ACK_MS", "0")
    with pytest.raises(ConfigError, match="AML_INGEST_OVERLOAD_ACK_MS"):
        load_settings()
