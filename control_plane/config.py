"""Process settings, read from the environment with the ``AGENTCTL_`` prefix.

One ``Settings`` object is built at start-up (``get_settings``) and handed to ``create_app``;
nothing else reads the environment.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
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
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bootstrap platform_admin token. Generated and printed once when unset.",
    )
    log_level: str = "INFO"
    log_json: bool = Field(default=False, description="JSON log lines (use in production).")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)

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

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'agentctl.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
