"""The control plane's token signing keys: loading the key ring from the database (refreshed so
rotations reach every replica), and rotation.

Rotation adds a new key and retires the current one. The retired key's public half stays in the
JWKS until every token it can have signed has expired: its retirement time plus the longest token
lifetime, the leeway, and one refresh interval (replicas that have not reloaded yet may still sign
with it for that long).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.config import Settings
from control_plane.crypto import repository
from control_plane.crypto.encryption import (
    KeyEncryptionError,
    check_kek,
    decrypt_private_key,
    encrypt_private_key,
    resolve_kek,
)
from control_plane.crypto.signing import (
    KeyRecord,
    SigningKeyRing,
    generate_signing_key,
    public_key_not_after,
)
from control_plane.kit.database import Database
from control_plane.kit.db import SessionMaker
from control_plane.kit.time import utcnow
from control_plane.models import SigningKeyRow

log = structlog.get_logger(__name__)


def _records(rows: Sequence[SigningKeyRow], kek: str) -> list[KeyRecord]:
    records = []
    for row in rows:
        try:
            private = decrypt_private_key(
                row.private_key_encrypted, kid=row.kid, alg=row.alg, kek=kek
            )
        except KeyEncryptionError as exc:
            # Still published and verifying; this process just cannot sign with it.
            log.error("signing_key_undecryptable", kid=row.kid, reason=exc.reason)
            private = None
        records.append(
            KeyRecord(
                kid=row.kid,
                alg=row.alg,
                public_jwk=row.public_jwk,
                created_at=row.created_at,
                private_key=private,
                retired_at=row.retired_at,
                not_after=row.not_after,
            )
        )
    return records


async def check_kek_of_signing_keys(session: AsyncSession, kek: str) -> None:
    """Raise ``KekMismatchError`` when the token signing keys were encrypted under another KEK
    (a replica started with its own data dir's KEK); at start-up, before serving."""
    rows = await repository.active_signing_keys(session)
    check_kek("token signing key", (row.private_key_encrypted for row in rows), kek)


def _retirement_window(settings: Settings) -> dict[str, int]:
    return {
        "max_token_lifetime_seconds": settings.token_lifetime_seconds,
        "leeway_seconds": settings.token_leeway_seconds,
        "propagation_seconds": math.ceil(settings.key_refresh_seconds),
    }


async def add_signing_key(
    session: AsyncSession, kek: str, settings: Settings, *, retire_current: bool
) -> str:
    """Create a new signing key (and retire the current ones when rotating). Returns its kid."""
    now = utcnow()
    if retire_current:
        for row in await repository.active_signing_keys(session):
            row.retired_at = now
            row.not_after = public_key_not_after(now, **_retirement_window(settings))
            session.add(row)
        await repository.prune_signing_keys(session, now)
    key = generate_signing_key("EdDSA")
    session.add(
        SigningKeyRow(
            kid=key.kid,
            alg=key.alg,
            public_jwk=key.public_jwk(),
            private_key_encrypted=encrypt_private_key(key, kek),
            created_at=now,
        )
    )
    await session.flush()
    return key.kid


async def rotate(sessionmaker: SessionMaker, settings: Settings) -> str:
    async with sessionmaker() as session:
        kid = await add_signing_key(session, resolve_kek(settings), settings, retire_current=True)
        await session.commit()
        return kid


class KeyStore:
    """The current key ring of this process.

    A background task reloads it from the database every half ``key_refresh_seconds``, so
    rotations on other replicas reach this one and requests normally find the ring fresh
    without touching the database. A ring older than ``key_refresh_seconds`` (the refresh fell
    behind: the database is slow or away) is never used: the request that finds it so reloads
    it, and an unknown kid reloads it at most once a second. Every load reads through the
    database's one-connection side pool (``Database.side_sessionmaker``): a request already
    holding a pooled connection never waits for a second one from the same pool, which under
    load is a wait that ends only at the pool timeout.
    """

    def __init__(self, database: Database, settings: Settings) -> None:
        self._database = database
        self._settings = settings
        self._kek = resolve_kek(settings)
        self._ring: SigningKeyRing | None = None
        self._has_active_key = False
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the ring, creating the first signing key in a fresh database, then keep it
        fresh in the background. A database that is not ready yet (unreachable, not migrated)
        is not fatal: /readyz reports it and the refresh keeps trying."""
        try:
            await self._refresh()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("signing_keys_not_loaded", error_type=type(exc).__name__)
        self._task = asyncio.create_task(self._refresh_forever(), name="signing-key-refresh")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def reload(self) -> SigningKeyRing:
        """Reload now, e.g. right after this process rotated the keys."""
        async with self._lock:
            return await self._load()

    async def ring(self, *, force: bool = False) -> SigningKeyRing:
        """The ring (see the class docstring); ``force`` (an unknown kid) reloads at most once
        a second. Raises the database's errors when a stale ring cannot be reloaded (the
        request answers 503: a stale ring may verify a retired key)."""
        ring = self._fresh(force)
        if ring is not None:
            return ring
        async with self._lock:
            # Another request may have reloaded while this one waited.
            ring = self._fresh(force)
            return ring if ring is not None else await self._load()

    def _fresh(self, force: bool) -> SigningKeyRing | None:
        age = time.monotonic() - self._loaded_at
        if age >= self._settings.key_refresh_seconds or (force and age >= 1.0):
            return None
        return self._ring

    async def _refresh_forever(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._settings.key_refresh_seconds / 2)
            try:
                await self._refresh()
            except (SQLAlchemyError, OSError) as exc:
                # Warn once per outage; requests meanwhile answer 503 once the ring is stale.
                log.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "signing_keys_refresh_failed",
                    error_type=type(exc).__name__,
                )
                failing = True
            else:
                if failing:
                    log.info("signing_keys_refreshed")
                failing = False

    async def _refresh(self) -> None:
        await self.reload()
        if not self._has_active_key:
            # A fresh database: create the first key in this process's writer turn (never
            # inside a request, never under the lock requests wait on), then load it.
            async with self._database.writing() as session:
                if not await repository.active_signing_keys(session):
                    await add_signing_key(session, self._kek, self._settings, retire_current=False)
                    await session.commit()
            await self.reload()

    async def _load(self) -> SigningKeyRing:
        async with self._database.side_sessionmaker() as session:
            rows = await repository.published_signing_keys(session, utcnow())
        self._ring = SigningKeyRing(_records(rows, self._kek))
        self._has_active_key = any(row.retired_at is None for row in rows)
        self._loaded_at = time.monotonic()
        return self._ring
