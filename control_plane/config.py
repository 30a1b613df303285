"""Process settings, read from the environment with the ``AGENTCTL_`` prefix.

One ``Settings`` object is built at start-up (``get_settings``) and handed to ``create_app``;
nothing else reads the environment.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    development = "development"
    production = "production"
    test = "test"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTCTL_", extra="ignore")

    environment: Environment = Environment.development
    data_dir: Path = Field(
        default=Path(".agentctl"), description="Directory of the embedded SQLite database."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default is SQLite in data_dir. postgresql+asyncpg://... "
        "selects PostgreSQL.",
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)
    forwarded_allow_ips: str = Field(
        default="",
        description="Comma-separated proxy addresses whose X-Forwarded-For/-Proto are trusted "
        "(uvicorn's forwarded_allow_ips). Empty: none, the peer address is the client.",
    )
    database_pool_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="How long a request waits for a pooled connection (on SQLite: for its turn "
        "to write) before it answers 503 database_unavailable.",
    )
    database_statement_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Longest a single SQL statement may run (PostgreSQL statement_timeout; on "
        "SQLite the busy timeout) before the request answers 503 database_unavailable.",
    )
    database_connect_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Longest wait to open a database connection."
    )
    database_retry_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Attempts a request makes when PostgreSQL reports a serialization failure "
        "or a deadlock, before it answers 503.",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bootstrap platform_admin token. Generated and printed once when unset.",
    )
    issuer: str | None = Field(
        default=None,
        description="Public base URL of this service: the tokens' iss and the base of the token "
        "endpoint. Default: http://HOST:PORT of `agentctl serve`.",
    )
    token_audience: str = Field(
        default="agent-control-plane", description="aud of the access tokens it issues."
    )
    token_lifetime_seconds: int = Field(default=600, ge=60, le=3600)
    token_leeway_seconds: int = Field(default=30, ge=0, le=60)
    key_encryption_key: SecretStr | None = Field(
        default=None,
        description="Encrypts signing keys at rest (>= 32 bytes). Outside production, one is "
        "generated into DATA_DIR/key-encryption-key when unset.",
    )
    key_refresh_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="The oldest signing key ring a replica uses; it reloads the keys in the "
        "background every half of this (rotations on other replicas reach it).",
    )
    auth_state_ttl_seconds: float = Field(
        default=0.0,
        ge=0,
        le=1.0,
        description="How long a replica may reuse agent status and revocation state on protected "
        "calls (at most 1 s); 0 reads it on every call.",
    )
    token_cache_size: int = Field(default=10_000, ge=0)
    prune_interval_seconds: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="How often expired one-time assertion and revoked-token rows are deleted.",
    )
    policy_engine: Literal["wasm", "opa"] = Field(
        default="wasm",
        description="wasm (the module OPA compiled for the revision, in process; OPA's own "
        "semantics) or opa (a real OPA server at opa_url).",
    )
    federation_max_staleness_seconds: int = Field(
        default=300,
        ge=1,
        le=7 * 86_400,
        description="How long an enforcement point may decide on its last bundle without a "
        "successful pull before it denies (policy_stale); served in every bundle.",
    )
    federation_refresh_seconds: int | None = Field(
        default=None,
        ge=1,
        le=7 * 86_400,
        description="How often every bundle is renewed even when nothing changed, so that a "
        "stock OPA, which cannot tell when it last pulled, stops deciding once its bundle's "
        "fresh_until (at most max staleness plus this after its last pull) has passed. "
        "Unset: a quarter of federation_max_staleness_seconds.",
    )
    opa_url: str = "http://127.0.0.1:8181"
    opa_load_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="How long loading a revision into the opa engine's server (modules and data "
        "over OPA's REST API) may take before the load fails; start-up waits for the active "
        "revision at most this long when that OPA accepts connections and never answers.",
    )
    opa_bin: str | None = Field(
        default=None,
        description="The OPA binary that validates uploaded policy and runs `opa test`; unset: "
        "the pinned one where scripts/install-opa.sh puts it. Without one, uploads answer 503.",
    )
    policy_bundle: str = Field(default="default", description="The bundle decisions use.")
    policy_timeout_seconds: float = Field(default=0.5, gt=0, le=10)
    policy_threads: int = Field(default=2, ge=1, le=64)
    policy_load_wait_seconds: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="How long a decision waits for a policy revision to load before denying.",
    )
    default_policy_dir: Path | None = Field(
        default=None,
        description="Policy loaded as the `default` bundle on the first start (default: the "
        "shipped policy, the project's policies/).",
    )
    log_level: str = Field(
        default="INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)."
    )
    log_json: bool | None = Field(
        default=None,
        description="JSON log lines; unset: JSON in production, key=value lines otherwise.",
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    audit_checkpoint_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="How often a grown audit log gets a new signed checkpoint.",
    )
    audit_sequencer_interval_seconds: float = Field(
        default=0.1,
        gt=0,
        le=10,
        description="How often the sequencer looks for newly committed audit records.",
    )
    idempotency_retention_hours: float = Field(
        default=24, gt=0, description="How long an Idempotency-Key is remembered."
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="A second port, on the same host, that answers GET /metrics without "
        "authentication (and nothing else). Unset: /metrics only on the API port, with an "
        "operator token (metrics:read).",
    )
    shutdown_drain_seconds: float = Field(
        default=0.0,
        ge=0,
        le=300,
        description="On SIGTERM, how long /readyz answers 503 while requests are still served, "
        "so load balancers stop routing here before the listener closes (Kubernetes: a few "
        "seconds).",
    )
    shutdown_grace_seconds: float = Field(
        default=20.0,
        gt=0,
        le=3600,
        description="After the listener closes, how long in-flight requests may take to finish "
        "before they are cancelled; the audit sequencer and checkpointer flush after that.",
    )
    events_poll_seconds: float = Field(
        default=0.25,
        gt=0,
        le=10,
        description="How often event streams and webhooks look for events.",
    )
    webhook_max_attempts: int = Field(
        default=5,
        ge=1,
        le=50,
        description="Deliveries to a webhook before an event is dead-lettered.",
    )
    webhook_backoff_seconds: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="First retry delay; doubles per attempt (capped at 1 h).",
    )
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    webhook_allow_private: bool = Field(
        default=False,
        description="Allow webhook URLs on loopback, link-local and private addresses (tests, "
        "development). Off: refused as an SSRF risk.",
    )
    nats_url: str | None = Field(
        default=None,
        description="Relay every event to NATS JetStream here (e.g. nats://host:4222).",
    )
    idempotency_max_keys: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Most live Idempotency-Keys one principal (operator or agent credential) "
        "may hold; a request with a new key beyond it answers 429 idempotency_key_limit, "
        "with Retry-After until the oldest key expires.",
    )
    auth_failure_window_seconds: int = Field(
        default=60,
        ge=1,
        le=86_400,
        description="Length of the fixed window in which failed authentications are counted.",
    )
    oauth_client_failure_limit: int = Field(
        default=10,
        ge=0,
        description="Failed client authentications per client id and window at /oauth/token "
        "and /oauth/revoke; past it that client id answers 429 (even with the right secret) "
        "until the window ends. 0: no limit.",
    )
    oauth_source_failure_limit: int = Field(
        default=100,
        ge=0,
        description="Failed client authentications per source address and window at "
        "/oauth/token and /oauth/revoke; past it that address answers 429 until the window "
        "ends. Set it above what a shared egress address legitimately fails. 0: no limit.",
    )
    operator_source_failure_limit: int = Field(
        default=30,
        ge=0,
        description="Failed operator-token authentications per source address and window; "
        "past it that address answers 429 on operator routes until the window ends. 0: no "
        "limit.",
    )
    version_approval_separation: bool = Field(
        default=False,
        description="Separation of duties: a version must be approved by another operator "
        "than the one that registered it.",
    )

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            # The service is async end to end: a plain URL means asyncpg.
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not (value.startswith("postgresql+asyncpg://") or value.startswith("sqlite+aiosqlite:")):
            raise ValueError("use postgresql+asyncpg://... or sqlite+aiosqlite:///path")
        return value

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Settings:
        if self.environment is Environment.production:
            if self.key_encryption_key is None:
                raise ValueError("AGENTCTL_KEY_ENCRYPTION_KEY is required in production")
            if self.issuer is None:
                raise ValueError("AGENTCTL_ISSUER is required in production")
        admin = self.admin_token.get_secret_value() if self.admin_token else None
        if admin is not None and (not admin.startswith("acp_op_") or len(admin) < 39):
            raise ValueError(
                "AGENTCTL_ADMIN_TOKEN must look like an operator token: acp_op_ followed by at "
                "least 32 random characters (e.g. python3 -c 'import secrets; "
                'print("acp_op_" + secrets.token_urlsafe(32))\')'
            )
        kek = self.key_encryption_key
        if kek is not None and len(kek.get_secret_value().encode()) < 32:
            raise ValueError("AGENTCTL_KEY_ENCRYPTION_KEY must be at least 32 bytes")
        return self

    @property
    def federation_refresh_period(self) -> int:
        """Seconds between bundle renewals: the setting, or a quarter of the max staleness."""
        return self.federation_refresh_seconds or max(1, self.federation_max_staleness_seconds // 4)

    @property
    def issuer_url(self) -> str:
        return (self.issuer or "http://127.0.0.1:8080").rstrip("/")

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer_url}/oauth/token"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'agentctl.db').resolve()}"

    @property
    def json_logs(self) -> bool:
        if self.log_json is not None:
            return self.log_json
        return self.environment is Environment.production

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
