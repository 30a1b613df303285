"""Web console sessions: an operator token exchanged for a cookie (control_plane/console)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from control_plane.models.base import timestamp_now, timestamp_null


class ConsoleSession(SQLModel, table=True):
    __tablename__ = "console_sessions"

    # sha256 (hex) of the session id; the id itself lives only in the browser's cookie.
    id_hash: str = Field(max_length=64, primary_key=True)
    operator_id: uuid.UUID = Field(index=True)
    created_at: datetime = timestamp_now()
    expires_at: datetime = timestamp_now()
    revoked_at: datetime | None = timestamp_null()
