"""Webhooks: subscriptions, Standard Webhooks signing, delivery with retries and a dead letter.

A webhook's URL is checked against SSRF when it is registered, and every delivery connects
through ``kit.egress.pinned_client``: the host is resolved once per connection and the
connection goes to one of the addresses just checked (a name that resolves elsewhere later, by
DNS rebinding or otherwise, is refused when connecting). Every address must be public, not
loopback, link-local, private, reserved or multicast, unless ``webhook_allow_private`` is set.
A refused connection is a failed attempt (``last_error`` "url refused: <reason>"), retried and
then dead like any other.

``WebhookDispatcher`` (a background task of every replica) queues a delivery per new event for
each matching webhook, advancing the webhook's cursor in the same transaction (on PostgreSQL
``FOR UPDATE SKIP LOCKED`` lets one replica do a webhook at a time), then POSTs due deliveries
signed per Standard Webhooks (``webhook-id`` = the event id, so receivers de-duplicate,
``webhook-timestamp``, ``webhook-signature`` v1 HMAC-SHA256 via the ``standardwebhooks``
library). A 2xx is delivered; anything else is retried after ``webhook_backoff_seconds``
doubling per attempt (capped at an hour) until ``webhook_max_attempts``, then ``dead``.
``redeliver`` puts a delivery back to pending. Delivery is at least once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel.ext.asyncio.session import AsyncSession
from standardwebhooks import Webhook as Signer

from control_plane.auth.principals import Capability, OperatorPrincipal, Role
from control_plane.config import Settings
from control_plane.domains import service as domains
from control_plane.events import repository
from control_plane.events.schemas import WebhookCreate
from control_plane.events.service import envelope
from control_plane.events.types import TYPES
from control_plane.kit import egress
from control_plane.kit.database import Database
from control_plane.kit.errors import FieldError, Forbidden, NotFound, ValidationFailed
from control_plane.kit.logging import FailureStreak
from control_plane.kit.time import utcnow
from control_plane.models import Webhook, WebhookDelivery

log = structlog.get_logger(__name__)

_BATCH = 100
_MAX_BACKOFF = 3600.0


# --- SSRF -----------------------------------------------------------------------------------------


async def check_url(
    url: str, *, allow_private: bool, resolver: egress.Resolver = egress.system_resolver
) -> str | None:
    """None when ``url`` may receive webhooks, else why not (a short reason)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an http(s) URL with a host"
    if parts.username or parts.password:
        return "must not carry credentials"
    if allow_private:
        return None
    try:
        await egress.vetted_addresses(
            parts.hostname,
            port or (443 if parts.scheme == "https" else 80),
            allow_private=False,
            resolver=resolver,
        )
    except egress.Refused as exc:
        return exc.reason
    return None


# --- secrets --------------------------------------------------------------------------------------


def _aead(kek: str) -> AESGCM:
    key = HKDF(hashes.SHA256(), 32, salt=None, info=b"agentctl/webhook-secret/v1").derive(
        kek.encode()
    )
    return AESGCM(key)


def _seal(secret: str, kek: str) -> str:
    nonce = os.urandom(12)
    return base64.b64encode(nonce + _aead(kek).encrypt(nonce, secret.encode(), None)).decode()


def _open(sealed: str, kek: str) -> str:
    raw = base64.b64decode(sealed)
    return _aead(kek).decrypt(raw[:12], raw[12:], None).decode()


# --- operators ------------------------------------------------------------------------------------


async def create(
    session: AsyncSession,
    who: OperatorPrincipal,
    body: WebhookCreate,
    settings: Settings,
    kek: str,
    resolver: egress.Resolver = egress.system_resolver,
) -> tuple[Webhook, str]:
    """Register a webhook; returns it and its signing secret (shown once). ``resolver``: how
    the URL's host is resolved for the SSRF check (the dispatcher's).

    Raises ``Forbidden`` (403) without events:manage or, for all domains, without
    platform_admin; ``ValidationFailed`` (422) for an unknown type or a refused URL.
    """
    who.require(Capability.events_manage)
    if body.domain is None and who.role is not Role.platform_admin:
        raise Forbidden("Only a platform_admin subscribes to every domain; name a domain.")
    if body.domain is not None and not (
        who.sees_domain(body.domain) and await domains.exists(session, body.domain)
    ):
        raise ValidationFailed(
            "The domain does not exist.",
            errors=[FieldError(pointer="/body/domain", detail="unknown domain")],
        )
    for i, t in enumerate(body.types):
        if t not in TYPES:
            raise ValidationFailed(
                f"Unknown event type {t!r}.",
                errors=[FieldError(pointer=f"/body/types/{i}", detail="unknown event type")],
            )
    problem = await check_url(
        body.url, allow_private=settings.webhook_allow_private, resolver=resolver
    )
    if problem is not None:
        raise ValidationFailed(
            f"The webhook URL is refused: {problem}.",
            errors=[FieldError(pointer="/body/url", detail=problem)],
        )
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    webhook = Webhook(
        url=body.url,
        domain=body.domain,
        types=sorted(set(body.types)),
        secret_encrypted=_seal(secret, kek),
        created_by=who.name,
    )
    # Deliveries start from now: the cursor is the current end of the outbox.
    webhook.cursor_txid, webhook.cursor_seq = await _end_of_outbox(session)
    await repository.add_webhook(session, webhook)
    return webhook, secret


async def _end_of_outbox(session: AsyncSession) -> tuple[int, int]:
    last: tuple[int, int] = (0, 0)
    while True:
        rows = await repository.page(session, after=last, domains=None, types=(), limit=1000)
        if not rows:
            return last
        last = (rows[-1].txid, rows[-1].seq or 0)


def _visible(who: OperatorPrincipal, webhook: Webhook | None) -> Webhook:
    who.require(Capability.events_manage)
    if webhook is None or not (
        who.role is Role.platform_admin or (webhook.domain and who.sees_domain(webhook.domain))
    ):
        raise NotFound("Webhook not found.")
    return webhook


async def get(session: AsyncSession, who: OperatorPrincipal, webhook_id: uuid.UUID) -> Webhook:
    return _visible(who, await repository.get_webhook(session, webhook_id))


async def list_webhooks(
    session: AsyncSession, who: OperatorPrincipal, *, after: uuid.UUID | None, limit: int
) -> Sequence[Webhook]:
    who.require(Capability.events_manage)
    visible = None if who.role is Role.platform_admin else who.domains
    return await repository.list_webhooks(session, visible=visible, after=after, limit=limit)


async def delete(session: AsyncSession, who: OperatorPrincipal, webhook_id: uuid.UUID) -> None:
    webhook = await get(session, who, webhook_id)
    webhook.deleted_at = utcnow()
    session.add(webhook)
    await session.flush()


async def list_deliveries(
    session: AsyncSession,
    who: OperatorPrincipal,
    webhook_id: uuid.UUID,
    *,
    state: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[WebhookDelivery]:
    await get(session, who, webhook_id)
    return await repository.list_deliveries(
        session, webhook_id, state=state, after=after, limit=limit
    )


async def redeliver(
    session: AsyncSession, who: OperatorPrincipal, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDelivery:
    """Put a delivery (typically a dead one) back to pending, due now, with its attempts reset."""
    await get(session, who, webhook_id)
    delivery = await repository.get_delivery(session, webhook_id, delivery_id)
    if delivery is None:
        raise NotFound("Delivery not found.")
    delivery.state, delivery.attempts, delivery.next_attempt_at = "pending", 0, utcnow()
    session.add(delivery)
    await session.flush()
    return delivery


# --- the dispatcher -------------------------------------------------------------------------------


async def queue_round(database: Database) -> int:
    """Queue a delivery per new matching event for every webhook; returns how many."""
    queued = 0
    async with database.writing() as session:
        for webhook in await repository.active_webhooks(session):
            rows = await repository.page(
                session,
                after=(webhook.cursor_txid, webhook.cursor_seq),
                domains=frozenset({webhook.domain}) if webhook.domain else None,
                types=webhook.types,
                limit=_BATCH,
            )
            if not rows:
                continue
            now = utcnow()
            await repository.add_deliveries(
                session,
                [
                    WebhookDelivery(
                        webhook_id=webhook.id,
                        event_id=row.id,
                        event_type=row.type,
                        payload=_json(envelope(row)),
                        next_attempt_at=now,
                    )
                    for row in rows
                ],
            )
            webhook.cursor_txid, webhook.cursor_seq = rows[-1].txid, rows[-1].seq or 0
            session.add(webhook)
            queued += len(rows)
        await session.commit()
    return queued


def _json(event: dict[str, object]) -> str:
    return json.dumps(event, separators=(",", ":"))


async def deliver_round(
    database: Database, settings: Settings, kek: str, client: httpx.AsyncClient
) -> int:
    """POST every due delivery once; returns how many were attempted."""
    async with database.writing() as session:
        due = list(await repository.due_deliveries(session, utcnow(), _BATCH))
        webhooks: dict[uuid.UUID, Webhook | None] = {}
        for d in due:
            if d.webhook_id not in webhooks:
                webhooks[d.webhook_id] = await repository.get_webhook(session, d.webhook_id)
            # Leased while it is being sent: another replica does not pick it up meanwhile.
            d.next_attempt_at = utcnow() + timedelta(seconds=settings.webhook_timeout_seconds * 3)
            session.add(d)
        await session.commit()
    results = []
    for d in due:
        webhook = webhooks.get(d.webhook_id)
        results.append((d, await _send(d, webhook, settings, kek, client)))
    async with database.writing() as session:
        for d, (status, error) in results:
            d.attempts += 1
            d.last_status, d.last_error = status, error
            if status is not None and 200 <= status < 300:
                d.state, d.delivered_at = "delivered", utcnow()
            elif d.attempts >= settings.webhook_max_attempts or error == "webhook deleted":
                d.state = "dead"
            else:
                delay = min(settings.webhook_backoff_seconds * 2 ** (d.attempts - 1), _MAX_BACKOFF)
                d.next_attempt_at = utcnow() + timedelta(seconds=delay)
            await session.merge(d)
        await session.commit()
    return len(due)


async def _send(
    delivery: WebhookDelivery,
    webhook: Webhook | None,
    settings: Settings,
    kek: str,
    client: httpx.AsyncClient,
) -> tuple[int | None, str | None]:
    if webhook is None:
        return None, "webhook deleted"
    now = datetime.now(UTC)
    msg_id = str(delivery.event_id)
    signature = Signer(_open(webhook.secret_encrypted, kek)).sign(msg_id, now, delivery.payload)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    try:
        r = await client.post(webhook.url, content=delivery.payload, headers=headers)
    except egress.EgressRefused as exc:
        # Refused when connecting (the name resolves to an address that may not be reached):
        # the URL and the reason are logged, never the headers (the signature).
        log.warning("webhook_url_refused", webhook_id=str(webhook.id), reason=str(exc))
        return None, f"url refused: {exc}"
    except httpx.HTTPError as exc:
        return None, type(exc).__name__
    return r.status_code, None if r.is_success else f"HTTP {r.status_code}"


class WebhookDispatcher:
    """Runs ``queue_round`` and ``deliver_round`` every ``events_poll_seconds`` until
    ``aclose``; a failed round is logged and retried, never fatal. ``resolver``: how webhook
    hosts resolve (``kit.egress``; tests pass their own)."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        kek: str,
        resolver: egress.Resolver = egress.system_resolver,
    ) -> None:
        self._database, self._settings, self._kek = database, settings, kek
        self.resolver = resolver
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def _run(self) -> None:
        # Pinned connections (the address checked is the one connected to), no redirects.
        async with egress.pinned_client(
            allow_private=self._settings.webhook_allow_private,
            timeout=self._settings.webhook_timeout_seconds,
            resolver=self.resolver,
        ) as client:
            streak = FailureStreak(log, "webhook_round_failed")
            while True:
                try:
                    # Idle (no webhooks): one cheap read a round, no writer turn taken.
                    async with self._database.read_sessionmaker() as session:
                        active = await repository.any_webhook(session)
                    if active:
                        await queue_round(self._database)
                        await deliver_round(self._database, self._settings, self._kek, client)
                except (SQLAlchemyError, OSError) as exc:
                    streak.failed(exc)
                else:
                    streak.succeeded()
                await asyncio.sleep(self._settings.events_poll_seconds)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
