"""Time helpers. SQLite returns naive datetimes where PostgreSQL returns aware ones; values that
leave the database go through ``aware`` so the rest of the code only sees UTC-aware times."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
