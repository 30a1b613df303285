"""Federation rules: serving each domain its signed bundle (ETag and long polling). Registering
enforcement points is ``points``; the decision-log and status sinks are ``sinks``.

The bundle of a domain is rebuilt only when something it is made of may have changed: a cheap
fingerprint (the agents' count and revision sum, their versions, the active policy revision, the
domain row, the token keys) keys an in-process cache; the revision itself is derived from the
content (``bundle``), so replicas agree on it. Long polling re-reads the fingerprint every
``POLL_INTERVAL`` seconds in short read sessions: no transaction is held while a point waits.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.agents import service as agents
from control_plane.credentials import service as credentials
from control_plane.decisions import service as decisions
from control_plane.domains import service as domains
from control_plane.federation import bundle as bundles
from control_plane.federation import repository, routing
from control_plane.federation.auth import authenticate
from control_plane.federation.schemas import FederationKeys
from control_plane.federation.signing import ALG, BundleKey, ensure_key, public_pem
from control_plane.kit import lifecycle
from control_plane.kit.errors import NotFound, ServiceUnavailable
from control_plane.kit.time import utcnow
from control_plane.policy import canary
from control_plane.policy import service as policy
from control_plane.policy.validation.opa import OpaUnavailableError
from control_plane.state import AppState

log = structlog.get_logger(__name__)

POLL_INTERVAL: Final = 0.25
MAX_WAIT_SECONDS: Final = 60
CONTACT_WRITE_INTERVAL: Final = 10.0
ROUTES_KEPT: Final = 8
SERVING_KEPT: Final = 1024


# --- the bundle -------------------------------------------------------------------------------


@dataclass
class _Cached:
    key: tuple[Any, ...]
    built: bundles.BuiltBundle


class BundleCache:
    """Per process: the last bundle built for each domain and the fingerprint it was built at."""

    def __init__(self) -> None:
        self.entries: dict[str, _Cached] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.key: BundleKey | None = None
        self.contacts: dict[uuid.UUID, tuple[float, str | None]] = {}
        # (active digest, canary digest) -> the routed policy, or why it cannot be: compiling
        # takes OPA a fraction of a second and depends on the two revisions only (not on the
        # agents or the domain), so every domain and every rebuild shares it.
        self.routes: dict[tuple[str, str], routing.RoutedPolicy | routing.Unroutable] = {}
        # Bundle revision -> which policy revision it answers each agent with: the decision
        # logs of points name the bundle revision they ran (``sinks``). Recent ones only.
        self.serving: dict[str, bundles.Serving] = {}


def cache_of(state: AppState) -> BundleCache:
    return state.bundle_cache


async def prepare(state: AppState) -> None:
    """At startup: load (or create, once across replicas) the bundle signing key, so no request
    ever has to write it (a request's own write turn on SQLite would wait for itself)."""
    async with state.database.writing() as session:
        state.bundle_cache.key = await ensure_key(session, state.kek)
        await session.commit()


async def start(state: AppState) -> None:
    """``prepare`` at start-up, where a database that is not ready yet (unreachable, not
    migrated) is not fatal: /readyz reports it and the key loads on the first bundle request."""
    try:
        await prepare(state)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("bundle_signing_key_not_loaded", error_type=type(exc).__name__)


async def signing_key(state: AppState) -> BundleKey:
    cache = cache_of(state)
    if cache.key is None:
        await prepare(state)
    assert cache.key is not None
    return cache.key


async def _fingerprint(session: AsyncSession, state: AppState, domain: str) -> tuple[Any, ...]:
    ring = await state.keystore.ring()
    found = await domains.find(session, domain)
    return (
        bundles.fresh_until(time.time(), state.settings),
        await agents.domain_fingerprint(session, domain),
        await credentials.revocations_fingerprint(session, domain),
        await policy.edge_plan(session, state.policy_runtime.bundle, domain),
        tuple(sorted(found.model_dump(mode="json").items())) if found is not None else None,
        ring.kids,
    )


def _edge_agent(document: dict[str, Any], domain_suspended: bool) -> dict[str, Any]:
    return {**document, "status": "suspended"} if domain_suspended else document


async def build_domain_bundle(
    session: AsyncSession, state: AppState, domain: str, key: BundleKey
) -> bundles.BuiltBundle:
    """Build ``domain``'s signed bundle now. Raises ``ServiceUnavailable`` without an active
    policy revision (the points keep their last bundle). With agents of the domain on a
    percentage canary, the bundle routes them to the canary revision (``routing``); when the
    two revisions cannot be routed, the bundle holds the active revision alone (logged)."""
    name = state.policy_runtime.bundle
    plan = await policy.edge_plan(session, name, domain)
    revision = await policy.revision(session, name, plan.active) if plan is not None else None
    if revision is None:
        raise ServiceUnavailable("No active policy revision: there is no bundle to serve.")
    found = await domains.find(session, domain)
    # The kill switch: a suspended domain's agents are suspended at the edge too.
    domain_suspended = found is not None and found.suspended_at is not None
    rows = await agents.domain_agents(session, domain)
    revoked_tokens, revoked_clients = await credentials.revoked_in_domain(session, domain)
    ring = await state.keystore.ring()
    settings = state.settings
    policy_part = _part(revision)
    registry = bundles.RegistryPart(
        domain=domain,
        domain_info=found.model_dump(mode="json", exclude={"created_at"}) if found else {},
        agents={
            str(agent.id): _edge_agent(decisions.agent_document(agent, version), domain_suspended)
            for agent, version in rows
        },
        issuer=settings.issuer_url,
        audience=settings.token_audience,
        jwks=ring.jwks(),
        max_staleness_seconds=settings.federation_max_staleness_seconds,
        fresh_until=bundles.fresh_until(time.time(), settings),
        revoked_tokens=revoked_tokens,
        revoked_clients=revoked_clients,
    )
    canary_part = None
    if plan is not None and plan.canary is not None:
        canary_part = await _canary_part(session, state, plan, policy_part, registry)
    served_by = plan.served_by if plan is not None else "active"
    return await asyncio.to_thread(
        bundles.build, policy_part, registry, key.sign, canary_part, served_by
    )


def _part(row: Any) -> bundles.PolicyPart:
    return bundles.PolicyPart(
        bundle=row.bundle,
        revision=row.revision,
        digest=row.digest,
        modules=row.modules,
        data=row.data,
        wasm=row.wasm,
    )


async def _canary_part(
    session: AsyncSession,
    state: AppState,
    plan: policy.EdgePlan,
    active: bundles.PolicyPart,
    registry: bundles.RegistryPart,
) -> bundles.CanaryPart | None:
    """The routed part for the agents of the domain on the canary (None: none of them is, or
    the revisions cannot be routed: then the points keep deciding with the active one)."""
    assert plan.canary is not None
    on = [
        agent_id
        for agent_id in registry.agents
        if canary.on_canary(active.bundle, agent_id, registry.domain, plan.basis_points, ())
    ]
    row = await policy.revision(session, active.bundle, plan.canary)
    if not on or row is None:
        return None
    candidate = _part(row)
    routed = await _routed(state, active, candidate)
    if isinstance(routed, routing.Unroutable):
        log.warning(
            "edge_canary_not_routed",
            domain=registry.domain,
            active=active.revision,
            canary=candidate.revision,
            reason=routed.reason,
        )
        return None
    return bundles.CanaryPart(candidate, sorted(on), routed.modules, routed.wasm)


async def _routed(
    state: AppState, active: bundles.PolicyPart, candidate: bundles.PolicyPart
) -> routing.RoutedPolicy | routing.Unroutable:
    cache = cache_of(state)
    key = (active.digest, candidate.digest)
    found = cache.routes.get(key)
    if found is not None:
        return found
    try:
        found = await asyncio.to_thread(
            routing.compile_routed,
            {
                "active": (active.modules, active.data),
                "canary": (candidate.modules, candidate.data),
            },
            edge_module=bundles.edge_module(),
            edge_module_path=bundles.EDGE_MODULE_PATH,
            entrypoint=bundles.WASM_ENTRYPOINT,
            opa_bin=state.settings.opa_bin,
        )
    except routing.Unroutable as exc:
        found = exc
    except OpaUnavailableError as exc:
        return routing.Unroutable(f"no OPA to compile the routed bundle: {exc}")  # not kept
    if len(cache.routes) >= ROUTES_KEPT:
        cache.routes.pop(next(iter(cache.routes)))
    cache.routes[key] = found
    return found


async def _built(session: AsyncSession, state: AppState, domain: str) -> bundles.BuiltBundle:
    cache = cache_of(state)
    key = await _fingerprint(session, state, domain)
    entry = cache.entries.get(domain)
    if entry is not None and entry.key == key:
        return entry.built
    lock = cache.locks.setdefault(domain, asyncio.Lock())
    async with lock:
        entry = cache.entries.get(domain)
        if entry is not None and entry.key == key:
            return entry.built
        key_now = await signing_key(state)
        started = time.perf_counter()
        built = await build_domain_bundle(session, state, domain, key_now)
        cache.entries[domain] = _Cached(key, built)
        if built.serving is not None:
            cache.serving.pop(built.revision, None)
            cache.serving[built.revision] = built.serving
            while len(cache.serving) > SERVING_KEPT:
                cache.serving.pop(next(iter(cache.serving)))
        log.info(
            "bundle_built",
            domain=domain,
            revision=built.revision,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return built


async def current_revision(session: AsyncSession, state: AppState, domain: str) -> str | None:
    """The revision of ``domain``'s bundle now (None: no active policy revision to serve)."""
    try:
        return (await _built(session, state, domain)).revision
    except ServiceUnavailable:
        return None


def _etag_value(header: str | None) -> str | None:
    if header is None:
        return None
    value = header.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"') or None


def wait_seconds(prefer: str | None) -> float:
    """The ``wait=N`` of a ``Prefer`` header (OPA's long polling), capped; 0 without one."""
    # OPA sends e.g. "modes=snapshot,delta;wait=30" (RFC 7240 preferences and parameters).
    for part in re.split(r"[,;]", prefer or ""):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                return float(min(max(int(value.strip()), 0), MAX_WAIT_SECONDS))
            except ValueError:
                return 0.0
    return 0.0


@dataclass(frozen=True)
class BundleAnswer:
    revision: str
    archive: bytes | None  # None: not modified
    point_id: uuid.UUID  # whose contact ``record_contact`` writes once the answer is sent


async def fetch_bundle(
    state: AppState,
    token: str,
    domain: str,
    *,
    if_none_match: str | None,
    prefer: str | None,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> BundleAnswer:
    """The bundle for the point presenting ``token`` (bundles:read, a point of ``domain``:
    otherwise 404), or not-modified when ``if_none_match`` names the current revision, after
    holding up to ``Prefer: wait=N`` seconds for a change. The point's last contact is not
    written here: the caller runs ``record_contact`` after the answer is sent, so a new
    revision never waits for a bookkeeping write (the writer turn, a commit's flush)."""
    async with state.database.read_sessionmaker() as session:
        principal = await authenticate(session, state, token)
        if principal.point.domain != domain or "bundles:read" not in principal.scopes:
            raise NotFound("Bundle not found.")
        built = await _built(session, state, domain)
    held = _etag_value(if_none_match)
    deadline = time.monotonic() + wait_seconds(prefer)
    while built.revision == held and time.monotonic() < deadline:
        await asyncio.sleep(POLL_INTERVAL)
        if gone is not None and await gone():  # the point hung up: stop holding the request
            break
        if lifecycle.draining():
            # Shutting down: answer now (not modified) rather than be cancelled by the graceful
            # shutdown's timeout; the point polls again, at another replica or this one later.
            break
        async with state.database.read_sessionmaker() as session:
            built = await _built(session, state, domain)
    changed = built.revision != held
    return BundleAnswer(built.revision, built.archive if changed else None, principal.point.id)


async def record_contact(state: AppState, answer: BundleAnswer) -> None:
    """After a bundle answer: the point's last contact (and the revision served, when it was
    sent), written at most every ``CONTACT_WRITE_INTERVAL`` seconds unless the revision changed:
    polls must stay cheap. Bookkeeping only: a database failure is logged, never raised."""
    point_id, revision = answer.point_id, answer.revision if answer.archive is not None else None
    cache = cache_of(state)
    last = cache.contacts.get(point_id)
    now = time.monotonic()
    if last is not None and now - last[0] < CONTACT_WRITE_INTERVAL and revision in (None, last[1]):
        return
    cache.contacts[point_id] = (now, revision if revision is not None else (last or (0, None))[1])
    try:
        async with state.database.writing() as session:
            await repository.record_contact(
                session, point_id, utcnow(), revision=revision, error=None, set_error=False
            )
            await session.commit()
    except (SQLAlchemyError, OSError) as exc:
        cache.contacts.pop(point_id, None)  # written again on the next poll
        log.warning(
            "point_contact_not_recorded", point_id=str(point_id), error_type=type(exc).__name__
        )


async def federation_keys(state: AppState) -> FederationKeys:
    key = await signing_key(state)
    return FederationKeys(
        keys=[key.public_jwk], pem={key.kid: public_pem(key.public_jwk)}, algorithm=ALG
    )
