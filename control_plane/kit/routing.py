"""Per-request transactions and ``Idempotency-Key`` handling.

``TransactionalRoute`` opens one session per request and puts it on ``request.state``. The endpoint
and the services it calls only ``flush()``; the route commits once, after the endpoint has produced
its response and before that response is sent. Any exception, or an error response, rolls back, so
a failed request leaves nothing half-written.

Idempotency follows Stripe's contract: the key is stored with the principal, a hash of the request
and the response in the same transaction as the change. A repeat with the same body replays the
stored response; the same key with another body is refused (422); a concurrent duplicate that loses
the race on the unique (principal, key) row is refused (409) and its transaction rolled back.
A principal holds at most ``idempotency_max_keys`` live keys: a new key beyond them is refused
(429 ``idempotency_key_limit``) rather than expiring older ones early, which would silently break
the replay promise made for them.

A route whose answer depends on state besides the request (a decision depends on the agent's
registry entry, its version, its credential and the policy revision) passes a ``ReplayGuard``:
the stored answer is replayed only while the guard's fingerprint of that state is unchanged,
otherwise the request is handled again and its new answer stored under the key; and the guard
records every replay in the replay's own transaction.

On SQLite a writing request holds this process's writer turn (``Database.writer_turn``) for its
whole transaction. A route marked ``reads_first`` (the decision hot path) does so too when the
turn is free as it starts; when another request holds it, it instead reads in a
deferred transaction without the turn and calls ``begin_writes`` before its first write: that
ends the read transaction, waits for the turn, and the next statement begins the write
transaction. Reads made before it may be stale by then, so ``begin_writes`` returns True and the
caller re-reads what its writes depend on inside the write transaction; when that changed it
raises ``StaleReads`` and the route runs the request again from the start, holding the turn
throughout. On PostgreSQL, and on other routes, ``begin_writes`` does nothing and returns False.

Database availability failures (``kit.dberrors``) leave the route as a 503
``DatabaseUnavailable``, logged once; a serialization failure or deadlock on PostgreSQL first
runs the whole transaction again, up to ``database_retry_attempts`` times. A POST that answered
503 either committed (then its ``Idempotency-Key`` replays the stored answer) or left nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Protocol

import structlog
from fastapi import Depends, Header, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.kit import dberrors, ratelimit, repository
from control_plane.kit.database import kit_state
from control_plane.kit.errors import (
    PROBLEM_CONTENT_TYPE,
    Conflict,
    ErrorCode,
    IdempotencyKeyInUse,
    IdempotencyKeyLimit,
    IdempotencyKeyReused,
    InvalidRequest,
    ServiceUnavailable,
    problem_body,
)
from control_plane.kit.time import aware, utcnow
from control_plane.models.idempotency import IdempotencyRecord

log = structlog.get_logger(__name__)

_REPLAY_HEADERS = ("content-type", "etag", "location", "cache-control")


class StaleReads(Exception):
    """What a request read changed before it could write (a ``reads_first`` request's state, a
    row a concurrent request stored after it looked): the route rolls back and runs it again,
    up to ``database_retry_attempts`` times, then answers 503."""


_LATE_TURN = "kit.late_writer_turn"
_AFTER_COMMIT = "kit.after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the request's transaction has committed, never when it rolls back
    (a 4xx, an exception, a 503, a re-run): for what must count only what is stored, such as
    metrics. Callbacks run in order; one that raises is logged and does not change the
    answer."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


def _committed(session: AsyncSession) -> None:
    for callback in session.info.pop(_AFTER_COMMIT, ()):
        try:
            callback()
        except Exception as exc:
            log.warning("after_commit_failed", error_type=type(exc).__name__)


@dataclass
class _LateTurn:
    lock: asyncio.Lock
    timeout: float
    held: bool = False


def reads_first(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Mark an endpoint whose request reads, then writes (see the module docstring)."""
    endpoint.__dict__["_kit_reads_first"] = True
    return endpoint


async def _take(lock: asyncio.Lock, wait: float) -> None:
    try:
        async with asyncio.timeout(wait):
            await lock.acquire()
    except TimeoutError:
        raise dberrors.DatabaseUnavailable(
            dberrors.Cause.busy, "Too many writes are waiting for the database; retry shortly."
        ) from None


async def begin_writes(session: AsyncSession) -> bool:
    """Call before the first write of a ``reads_first`` request (flushes nothing itself).

    On SQLite: ends the read transaction (nothing was written; loaded objects stay usable),
    takes the process's writer turn (503 ``database_unavailable`` past the pool timeout) and
    returns True: re-read inside the write transaction whatever the writes depend on. Returns
    False, doing nothing, when the session already writes (PostgreSQL, other routes, a second
    call).
    """
    turn: _LateTurn | None = session.info.get(_LATE_TURN)
    if turn is None or turn.held:
        return False
    await session.commit()
    await _take(turn.lock, turn.timeout)
    turn.held = True
    return True


def writes_begun(session: AsyncSession) -> bool:
    """Whether what ``session`` reads now is read in its write transaction: False only in a
    ``reads_first`` request on SQLite before ``begin_writes``."""
    turn: _LateTurn | None = session.info.get(_LATE_TURN)
    return turn is None or turn.held


class _Replay(Exception):
    def __init__(self, response: Response, *, keep_writes: bool = False) -> None:
        self.response = response
        self.keep_writes = keep_writes


class ReplayGuard(Protocol):
    """Decides whether a stored answer may still be replayed, and records each replay."""

    async def fingerprint(self, request: Request, session: AsyncSession, principal: Any) -> str:
        """A digest (at most 64 characters) of the state the answer depends on."""
        ...

    async def replayed(
        self,
        request: Request,
        session: AsyncSession,
        principal: Any,
        key: str,
        record: IdempotencyRecord,
    ) -> None:
        """Record that ``record``'s answer was served again (flush only; the route commits)."""
        ...


@dataclass(frozen=True)
class IdempotencyContext:
    principal: str
    key: str
    request_hash: str
    retention: timedelta
    depends_on: str | None = None

    async def store(self, session: AsyncSession, response: Response) -> None:
        await begin_writes(session)
        # Keys are kept for the retention window only; prune this principal's expired ones.
        await repository.prune_idempotency_records(
            session, self.principal, utcnow() - self.retention
        )
        headers = {k: v for k, v in response.headers.items() if k in _REPLAY_HEADERS}
        status, body = response.status_code, bytes(response.body).decode()
        if "no-store" in response.headers.get("cache-control", ""):
            # The response carries a secret shown once (a token, a client secret): never store
            # it. A replay learns that the request succeeded and where the result is.
            status, body, headers = _secret_replay(headers.get("location"))
        session.add(
            IdempotencyRecord(
                principal=self.principal,
                key=self.key,
                request_hash=self.request_hash,
                status_code=status,
                response_headers=headers,
                response_body=body,
                depends_on=self.depends_on,
            )
        )
        try:
            await session.flush()
        except IntegrityError as exc:
            raise IdempotencyKeyInUse(
                "Another request with this Idempotency-Key completed first; retry to get its "
                "response."
            ) from exc


def _secret_replay(location: str | None) -> tuple[int, str, dict[str, str]]:
    problem = problem_body(
        status=409,
        code=ErrorCode.idempotency_key_in_use,
        title="Already created; its secret was shown once",
        detail="This request already succeeded. Its response held a secret that is never "
        "stored, so it cannot be replayed; read the created resource, or create a new one.",
        instance=location,
    )
    headers = {"content-type": PROBLEM_CONTENT_TYPE}
    if location:
        headers["location"] = location
    return 409, json.dumps(problem), headers


class TransactionalRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        late = bool(getattr(self.endpoint, "_kit_reads_first", False))

        async def route(request: Request) -> Response:
            settings = kit_state(request.app).settings
            attempts = settings.database_retry_attempts
            reads_first = late
            for attempt in range(1, attempts + 1):
                try:
                    return await _transaction(handler, request, reads_first=reads_first)
                except StaleReads:
                    # Run it again holding the writer turn from the start: it cannot go stale.
                    request.state.idempotency = None
                    reads_first = False
                    continue
                except Exception as exc:
                    found = dberrors.classify(exc)
                    retry = found is not None and found.cause in dberrors.RETRYABLE_IN_REQUEST
                    if not retry or attempt == attempts:
                        problem = dberrors.report(exc, request)
                        if problem is None or problem is exc:
                            raise
                        raise problem from exc
                    # PostgreSQL rolled the transaction back; run it again from the start
                    # after a short jittered pause (the other transaction is finishing).
                    request.state.idempotency = None
                    await asyncio.sleep(random.uniform(0.005, 0.02) * attempt)  # noqa: S311
            # Every attempt found what it read changed before it could write.
            raise ServiceUnavailable(
                "What this request depends on kept changing while it ran; retry it.",
                headers={"Retry-After": "1"},
            )

        return route


async def _transaction(
    handler: Callable[[Request], Coroutine[Any, Any, Response]],
    request: Request,
    *,
    reads_first: bool = False,
) -> Response:
    """One attempt: a session, the endpoint, then commit (or rollback on any failure)."""
    state = kit_state(request.app)
    database = state.database
    safe = request.method in ("GET", "HEAD")
    maker = database.read_sessionmaker if safe else database.sessionmaker
    # SQLite has one writer at a time. Queue this process's writers here, in order, rather
    # than in SQLite's busy handler, which sleeps and retries (slow tail). The body is read
    # first, so a client that sends it slowly holds no one else up. The wait is bounded like a
    # pool checkout.
    writer_turn = database.writer_turn if not safe else None
    timeout = state.settings.database_pool_timeout_seconds
    late: _LateTurn | None = None
    if writer_turn is not None:
        await request.body()
        if reads_first and writer_turn.locked():
            # Another request writes: read (and evaluate) meanwhile, take the turn to write.
            late = _LateTurn(writer_turn, timeout)
        else:
            # The turn is free (reads_first or not): one write transaction from the start
            # costs less than a read transaction, a second one and the re-read between them.
            await _take(writer_turn, timeout)
    try:
        async with maker() as session:
            request.state.session = session
            if late is not None:
                # Reads first in a deferred transaction (WAL: no waiting on the writer).
                session.info[_LATE_TURN] = late
                await session.connection(execution_options={"read_only": True})
            try:
                response = await handler(request)
            except _Replay as replay:
                if not replay.keep_writes:
                    await session.rollback()
                    return replay.response
                try:
                    await session.commit()
                except IntegrityError as exc:
                    await session.rollback()
                    raise Conflict("The replay conflicts with a concurrent change.") from exc
                _committed(session)
                return replay.response
            except BaseException as exc:
                await session.rollback()
                if isinstance(exc, Exception):
                    await _after_rollback(request, session, writer_turn is not None)
                raise
            if response.status_code >= 400:
                await session.rollback()
                await _after_rollback(request, session, writer_turn is not None)
                return response
            idempotency: IdempotencyContext | None = getattr(request.state, "idempotency", None)
            if idempotency is not None:
                await idempotency.store(session, response)
            try:
                await session.commit()
            except IntegrityError as exc:
                await session.rollback()
                raise Conflict("The change conflicts with a concurrent change.") from exc
            _committed(session)
            return response
    finally:
        if writer_turn is not None and (late is None or late.held):
            writer_turn.release()


async def _after_rollback(request: Request, session: AsyncSession, has_turn: bool) -> None:
    """Run and commit the writes a failed request registered with ``ratelimit.after_rollback``
    (counts of failed authentications), on SQLite in this process's writer turn. A failure
    here is logged and never hides the request's own answer."""
    writes = ratelimit.take_after_rollback(session)
    if not writes:
        return
    turn = kit_state(request.app).database.writer_turn
    try:
        async with contextlib.nullcontext() if has_turn or turn is None else turn:
            for write in writes:
                await write(session)
            await session.commit()
    except Exception as exc:
        await session.rollback()
        log.warning("after_rollback_write_failed", error_type=type(exc).__name__)


async def get_session(request: Request) -> AsyncSession:
    # async: FastAPI runs a plain def dependency on a worker thread, a hand-off per request.
    session: AsyncSession = request.state.session
    return session


Session = Annotated[AsyncSession, Depends(get_session)]


def _request_hash(method: str, path: str, body: bytes) -> str:
    try:
        canonical = json.dumps(
            json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body
    digest = hashlib.sha256()
    digest.update(f"{method} {path}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


def _valid_key(key: str) -> bool:
    return 1 <= len(key) <= 255 and all(0x21 <= ord(c) <= 0x7E for c in key)


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Makes the POST safe to retry: a repeat with the same key and body replays "
        "the first response; the same key with another body is refused.",
        max_length=255,
        # Checked in _check_idempotency (400), so only stated here.
        json_schema_extra={"pattern": "^[\\x21-\\x7e]{1,255}$"},
    ),
]


async def _check_idempotency(
    request: Request,
    session: AsyncSession,
    key: str | None,
    guard: ReplayGuard | None = None,
    principal_object: Any = None,
) -> None:
    if key is None:
        return
    if not _valid_key(key):
        raise InvalidRequest("Idempotency-Key must be 1-255 visible ASCII characters.")
    principal: str | None = getattr(request.state, "principal_key", None)
    if principal is None:  # a wiring mistake: idempotent() always authenticates first
        raise RuntimeError("idempotency check ran before authentication")
    body = await request.body()
    request_hash = _request_hash(request.method, request.url.path, body)
    record = await repository.find_idempotency_record(session, principal, key)
    retention = timedelta(hours=kit_state(request.app).settings.idempotency_retention_hours)
    if record is not None and aware(record.created_at) < utcnow() - retention:
        # Past the retention window the key is new again (Stripe keeps keys for 24 hours).
        await begin_writes(session)
        await session.delete(record)
        await session.flush()
        record = None
    depends_on = await guard.fingerprint(request, session, principal_object) if guard else None
    stale = depends_on is not None and record is not None and record.depends_on != depends_on
    if record is not None and record.request_hash == request_hash and stale:
        # What the answer depended on has changed: it is no longer the answer. Handle the
        # request again and store the new answer under the same key.
        await begin_writes(session)
        await session.delete(record)
        await session.flush()
        record = None
    if record is not None:
        if record.request_hash != request_hash:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was used with a different request; use a new key."
            )
        headers = dict(record.response_headers)
        headers["idempotent-replayed"] = "true"
        if guard is not None:
            await begin_writes(session)
            await guard.replayed(request, session, principal_object, key, record)
        raise _Replay(
            Response(
                content=record.response_body.encode(),
                status_code=record.status_code,
                headers=headers,
            ),
            keep_writes=guard is not None,
        )
    await _within_key_limit(
        session, principal, retention, kit_state(request.app).settings.idempotency_max_keys
    )
    request.state.idempotency = IdempotencyContext(
        principal, key, request_hash, retention, depends_on
    )


async def _within_key_limit(
    session: AsyncSession, principal: str, retention: timedelta, most: int
) -> None:
    """Refuse a new key when ``principal`` already holds ``idempotency_max_keys`` live ones
    (429 ``idempotency_key_limit``, Retry-After: until its oldest key expires). Counting stops
    at the limit, so the check costs at most that many index entries."""
    # Expired records are pruned whenever the principal stores one, so counting them all is
    # nearly exact and the cheap test; only a principal at the limit has its live ones counted.
    if await repository.count_idempotency_records(session, principal, at_most=most) < most:
        return
    since = utcnow() - retention
    if (
        await repository.count_idempotency_records(session, principal, at_most=most, since=since)
        < most
    ):
        return
    oldest = await repository.oldest_idempotency_record(session, principal, since)
    wait = (aware(oldest) + retention - utcnow()).total_seconds() if oldest else 1.0
    raise IdempotencyKeyLimit(
        f"This principal holds {most} live Idempotency-Keys, the most allowed; retry when the "
        "oldest expires, or send the request without a key.",
        retry_after=math.ceil(wait),
    )


def idempotent(authenticate: Callable[..., Any], guard: ReplayGuard | None = None) -> Any:
    """A route dependency that authenticates with ``authenticate`` and then replays or records
    the POST by its ``Idempotency-Key``. FastAPI caches ``authenticate`` per request, so the
    endpoint's own use of it does not run it twice. With ``guard``, a stored answer is replayed
    only while ``guard.fingerprint`` is unchanged, and every replay is recorded by the guard."""

    async def dependency(
        request: Request,
        session: Session,
        idempotency_key: IdempotencyKeyHeader = None,
        principal: Any = Depends(authenticate),
    ) -> None:
        await _check_idempotency(request, session, idempotency_key, guard, principal)

    return Depends(dependency)
