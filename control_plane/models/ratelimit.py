"""Counters of failed authentications per key and fixed time window (``kit.ratelimit``)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column
from sqlmodel import Field, SQLModel


class AuthFailureCount(SQLModel, table=True):
    __tablename__ = "auth_failures"

    # What failed: "oauth-client:<client id>", "oauth-source:<address>", "operator-source:..."
    key: str = Field(primary_key=True, max_length=200)
    # Start of the fixed window, in seconds since the epoch (a multiple of the window length).
    window_start: int = Field(sa_column=Column(BigInteger, primary_key=True, index=True))
    count: int = Field(default=0)
