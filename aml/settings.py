"""Process settings: loaded once in an entry point (``load_settings``) and passed down.

Every variable has the ``AML_`` prefix. Secrets are ``SecretStr``. Invalid values fail at start-up
with an error naming the variable. ``AML_ENV=production`` refuses to start with missing or weak
secrets; outside production, missing secrets are generated once and kept (mode 0600) under
``AML_DATA_DIR`` so that nothing ships with a default password.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aml.errors import ConfigError

# Values that must never be accepted as a production secret.
_WEAK_SECRETS = frozenset(
    {"", "secret", "changeme", "change-me", "password", "admin", "admin123", "dev", "test"}
)
_MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    """All configuration of one process."""

    model_config = SettingsConfigDict(env_prefix="AML_", extra="ignore", frozen=True)

    env: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    data_dir: Path = Path(".data")

    # MongoDB. Unset URI -> the embedded MongoDB-wire server is started on loopback.
    mongodb_uri: SecretStr | None = None
    mongodb_db: str = "fineract_aml"
    mongodb_timeout_ms: int = Field(default=5000, ge=100, le=120_000)
    embedded_db_host: str = "127.0.0.1"
    embedded_db_port: int = Field(default=0, ge=0, le=65535)  # 0 = pick a free port

    # Secrets.
    jwt_secret: SecretStr | None = None
    fineract_webhook_secrets: SecretStr | None = None  # comma-separated, first is current
    generic_webhook_secret: SecretStr | None = None  # HMAC key for POST /webhooks/generic
    metrics_token: SecretStr | None = None  # bearer token for /metrics from non-loopback peers

    # Ingress (Sanic).
    ingress_host: str = "127.0.0.1"
    ingress_port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    ingest_batch_max: int = Field(default=256, ge=1, le=10_000)
    ingest_batch_wait_ms: float = Field(default=4.0, ge=0.0, le=1000.0)
    # Group commits written at once; None: 1 on the embedded store, 2 on MongoDB (see
    # serve.ingress.committer.Committer._commits_in_flight).
    ingest_max_in_flight: int | None = Field(default=None, ge=1, le=64)
    # Acks move to the spool once a group commit's oldest event waited this long for its write.
    ingest_overload_ack_ms: float = Field(default=500.0, gt=0.0, le=60_000.0)
    max_amount_major: float = Field(default=1e12, gt=0)
    max_future_seconds: int = Field(default=300, ge=0)
    max_age_days: int = Field(default=5 * 365, ge=1)

    # REST API (Sanic, /api/v1).
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8001, ge=0, le=65535)

    # Dashboard (NiceGUI).
    ui_host: str = "127.0.0.1"
    ui_port: int = Field(default=8080, ge=0, le=65535)

    # Domain defaults.
    default_tenant: str = "default"
    default_currency: str = Field(default="XAF", min_length=3, max_length=3)
    timezone: str = "Africa/Douala"

    # Fineract read-back (enrichment and sweep). All optional.
    fineract_base_url: str | None = None
    fineract_username: str | None = None
    fineract_password: SecretStr | None = None
    fineract_tenant: str = "default"
    fineract_timeout_s: float = Field(default=3.0, gt=0, le=60)
    fineract_verify_tls: bool = True

    # Ray.
    ray_address: str | None = None  # None: start a local Ray; "auto" or host:port to join
    serve_app_name: str = "scoring"

    # Suspicious-transaction reports (goAML export). Optional: the export names what is missing.
    reporting_entity_id: str | None = None  # goAML rentity_id issued by the FIU
    reporting_entity_name: str | None = None

    # Auth.
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_hours: int = Field(default=12, ge=1, le=24 * 30)
    login_attempts_per_minute: int = Field(default=5, ge=1, le=1000)

    @field_validator("default_currency")
    @classmethod
    def _upper_currency(cls, value: str) -> str:
        if not value.isalpha():
            raise ValueError("must be a 3-letter ISO 4217 code")
        return value.upper()

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def webhook_secrets(self) -> list[str]:
        """The accepted Fineract webhook path secrets (several during rotation)."""
        if self.fineract_webhook_secrets is None:
            return []
        raw = self.fineract_webhook_secrets.get_secret_value()
        return [s.strip() for s in raw.split(",") if s.strip()]

    @property
    def secrets_file(self) -> Path:
        return self.data_dir / "secrets.json"


def _secret_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    checks: dict[str, list[str]] = {
        "AML_JWT_SECRET": [settings.jwt_secret.get_secret_value()] if settings.jwt_secret else [],
        "AML_FINERACT_WEBHOOK_SECRETS": settings.webhook_secrets(),
    }
    for name, values in checks.items():
        if not values:
            problems.append(f"{name} is not set")
        for value in values:
            if value.lower() in _WEAK_SECRETS or len(value) < _MIN_SECRET_LENGTH:
                problems.append(f"{name} is a default or too short (< {_MIN_SECRET_LENGTH} chars)")
    if settings.generic_webhook_secret is not None:
        value = settings.generic_webhook_secret.get_secret_value()
        if value.lower() in _WEAK_SECRETS or len(value) < _MIN_SECRET_LENGTH:
            problems.append("AML_GENERIC_WEBHOOK_SECRET is a default or too short")
    return problems


def _load_or_create_dev_secrets(path: Path) -> dict[str, str]:
    """Secrets generated once per data directory for non-production runs."""
    if path.exists():
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return {str(k): str(v) for k, v in data.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "jwt_secret": secrets.token_urlsafe(48),
        "fineract_webhook_secrets": secrets.token_urlsafe(32),
        "generic_webhook_secret": secrets.token_urlsafe(32),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    return data


def load_settings(**overrides: object) -> Settings:
    """Load settings from the environment (and ``overrides``), validate, fill dev secrets.

    Raises:
        ConfigError: naming the offending ``AML_*`` variable.
    """
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            name = "AML_" + "_".join(str(p) for p in err["loc"]).upper()
            parts.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(parts)) from None

    if settings.env == "production":
        problems = _secret_problems(settings)
        if problems:
            raise ConfigError("refusing to start in production: " + "; ".join(problems))
        return settings

    missing: dict[str, object] = {}
    if (
        settings.jwt_secret is None
        or settings.fineract_webhook_secrets is None
        or settings.generic_webhook_secret is None
    ):
        generated = _load_or_create_dev_secrets(settings.secrets_file)
        for key in ("jwt_secret", "fineract_webhook_secrets", "generic_webhook_secret"):
            if getattr(settings, key) is None:
                missing[key] = SecretStr(generated[key])
    if missing:
        settings = settings.model_copy(update=missing)
    return settings
