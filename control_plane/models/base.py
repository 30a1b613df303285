"""Column helpers shared by the table models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field

from control_plane.kit.time import aware, utcnow


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        value = value.replace("\x00", "\ufffd")
        if not value.isascii():
            # Lone surrogates are not Unicode text either; U+FFFD, as Go's JSON does.
            value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


class JSONDocument(TypeDecorator[Any]):
    """JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.

    PostgreSQL's jsonb cannot hold U+0000 or lone surrogates, and no JSON response can carry a
    lone surrogate; agents may send either inside free-form attributes, so both are stored as
    U+FFFD instead of failing the request. (Digests are computed
    over the exact input before storage.)
    """

    impl = JSON().with_variant(JSONB(), "postgresql")
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        # On every database, so both store and answer the same document.
        return _without_nul(value)


JSONType = JSONDocument()


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are stored and returned as UTC-aware datetimes on every database.

    SQLite has no time zone type and hands back naive values; normalising here is the one place
    that makes both databases answer alike.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return aware(value) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return aware(value) if value is not None else None


def timestamp_now() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def timestamp_null() -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=True)
