"""The console's pages: sign-in, approvals, agents, decisions, audit, enforcement points.

Each page authenticates the session (``web.CurrentViewer``), checks a form's CSRF token
(``web.CheckedForm``) and calls the same domain services as the API with the operator's
principal, so roles, domain scoping (404 outside one's domains) and separation of duties are the
API's own. Routes stay out of the OpenAPI document (``include_in_schema=False``).

Over 500 lines: one router for every page, split by page (sign-in, approvals, agents, decisions,
audit, enforcement points) is the next step; it was written in one session and left whole.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import unquote

import structlog
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from control_plane.agents import service as agents
from control_plane.agents.schemas import AgentStatus
from control_plane.approvals import service as approvals
from control_plane.approvals.schemas import ApprovalState
from control_plane.audit import reading
from control_plane.audit.merkle import leaf_hash, verify_inclusion
from control_plane.audit.note import Checkpoint, NoteError, unb64
from control_plane.audit.schemas import AuditRecordPublic
from control_plane.auth.principals import OPERATOR_TOKEN_PREFIX, Capability, OperatorPrincipal
from control_plane.budgets import service as budgets
from control_plane.console import charts, service, verify_jobs
from control_plane.console.web import (
    COOKIE,
    CSRF_FIELD,
    PRE_COOKIE,
    CheckedForm,
    ConsoleRoute,
    CurrentViewer,
    Viewer,
    cookie_secure,
    read_form,
    redirect,
    render,
)
from control_plane.credentials import service as credentials
from control_plane.decisions import service as decisions
from control_plane.domains import service as domains
from control_plane.federation import points as federation
from control_plane.killswitch import service as killswitch
from control_plane.kit.database import kit_state
from control_plane.kit.errors import (
    Forbidden,
    NotFound,
    ProblemError,
    TooManyRequests,
    ValidationFailed,
)
from control_plane.kit.ratelimit import FailureLimiter, Limit, source_address
from control_plane.kit.routing import Session
from control_plane.kit.schemas import NAME_PATTERN
from control_plane.kit.time import aware, utcnow
from control_plane.policy.engines import Effect
from control_plane.state import State

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

PAGE = 50
QUEUE = 200
Domain = Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=63)]


def _blank(value: str | None) -> str | None:
    return value if value else None


def _safe_next(target: str | None) -> str:
    """Only a console path of this site: no scheme, no host, no "//" (open redirect), and no
    dot segment, even percent-encoded (browsers resolve ``/console/../v1`` out of the console)."""
    unsafe = ("//", "\\", "\n", "\r")
    if not target:
        return "/console/"
    path = unquote(target.partition("?")[0])
    segments = path.split("/")
    inside = path == "/console" or path.startswith("/console/")
    if (
        inside
        and not any(u in target or u in path for u in unsafe)
        and not any(seg in (".", "..") for seg in segments)
    ):
        return target
    return "/console/"


@router.get("")
async def console_root() -> Response:
    """``/console`` (no slash), as people type it: the console's home. The app does not redirect
    slashes in general (``redirect_slashes=False``), so this one path does."""
    return RedirectResponse("/console/", status_code=307)


# --- sign-in and sign-out ------------------------------------------------------------------------


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, next: str | None = None) -> Response:
    pre = secrets.token_urlsafe(24)
    context = {"pre": pre, "next": _safe_next(next), "prefix": OPERATOR_TOKEN_PREFIX}
    response = render(request, "sign_in.html", context)
    response.set_cookie(
        PRE_COOKIE,
        pre,
        max_age=600,
        path="/console",
        httponly=True,
        secure=cookie_secure(request),
        samesite="strict",
    )
    return response


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request, session: Session) -> Response:
    form = await read_form(request)
    pre = request.cookies.get(PRE_COOKIE)
    if not pre or not secrets.compare_digest(pre.encode(), form.get(CSRF_FIELD, "").encode()):
        raise Forbidden("The sign-in form expired or did not come from this console; retry.")
    settings = kit_state(request.app).settings
    limiter = FailureLimiter(settings.auth_failure_window_seconds)
    source = source_address(request)
    limits = [Limit(f"operator-source:{source}", settings.operator_source_failure_limit)]
    retry_after = await limiter.check(session, limits)
    if retry_after is not None:
        log.info("console_sign_in_limited", source=source, retry_after=retry_after)
        raise TooManyRequests(
            "Too many failed sign-ins from this address; retry later.", retry_after=retry_after
        )
    token = form.get("token", "").strip()
    signed = await service.sign_in(session, token)
    target = _safe_next(form.get("next"))
    if signed is None:
        limiter.failed(session, limits)
        log.info("console_sign_in_failed", source=source)
        return render(
            request,
            "sign_in.html",
            {
                "pre": pre,
                "next": target,
                "prefix": OPERATOR_TOKEN_PREFIX,
                "error": "That is not a valid operator token.",
            },
            status_code=401,
        )
    log.info("console_signed_in", operator=signed.principal.name)
    response = redirect(target)
    response.set_cookie(
        COOKIE,
        signed.session_id,
        max_age=int((signed.expires_at - utcnow()).total_seconds()),
        path="/console",
        httponly=True,
        secure=cookie_secure(request),
        samesite="strict",
    )
    response.delete_cookie(PRE_COOKIE, path="/console")
    return response


@router.post("/sign-out")
async def sign_out(viewer: CurrentViewer, form: CheckedForm, session: Session) -> Response:
    await service.sign_out(session, viewer.session_id)
    response = redirect("/console/sign-in")
    response.delete_cookie(COOKIE, path="/console")
    return response


# --- overview ------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, viewer: CurrentViewer, session: Session) -> Response:
    who = viewer.principal
    now = utcnow()
    since = now - timedelta(hours=24)
    shown: list[charts.Chart] = []
    waiting = 0
    if who.can(Capability.approvals_read):
        pending = await approvals.list_approvals(
            session,
            who,
            state=ApprovalState.pending,
            domain=None,
            agent_id=None,
            after=None,
            limit=500,
        )
        waiting = len(pending)
        shown.append(
            charts.stacked_bars(
                "Approvals waiting, by when they were requested",
                [(a.created_at, "pending") for a in pending],
                now=now,
                categories=["pending"],
            )
        )
    if who.can(Capability.decisions_read):
        rows = await decisions.list_decisions(
            session,
            who,
            agent_id=None,
            effect=None,
            action=None,
            since=since,
            until=None,
            after=None,
            limit=2000,
        )
        shown.append(
            charts.stacked_bars(
                "Decisions by effect, last 24 hours",
                [(d.created_at, d.effect) for d in rows],
                now=now,
                categories=["allow", "deny", "require_approval"],
            )
        )
    if who.can(Capability.audit_read):
        records = await reading.list_records(
            session,
            who,
            domain=None,
            agent_id=None,
            action=None,
            status=None,
            decision_id=None,
            trace_id=None,
            since=since,
            until=None,
            after=None,
            limit=2000,
        )
        shown.append(
            charts.stacked_bars(
                "Audit records ingested per hour, last 24 hours",
                [(r.created_at, "records") for r in records],
                now=now,
                categories=["records"],
            )
        )
    return render(request, "overview.html", {"charts": shown, "waiting": waiting}, viewer=viewer)


# --- approvals -----------------------------------------------------------------------------------


@router.get("/approvals", response_class=HTMLResponse)
async def approvals_page(
    request: Request,
    viewer: CurrentViewer,
    session: Session,
    state: Annotated[str | None, Query(max_length=16)] = None,
    domain: Domain = None,
) -> Response:
    who = viewer.principal
    wanted = ApprovalState(state) if state and state in ApprovalState.__members__ else None

    async def listed(state: ApprovalState | None) -> list[tuple[Any, ApprovalState]]:
        rows = await approvals.list_approvals(
            session,
            who,
            state=state,
            domain=_blank(domain),
            agent_id=None,
            after=None,
            limit=QUEUE,
        )
        return [(a, approvals.state_of(a)) for a in rows[:QUEUE]]

    # Pending first, the longest waiting on top (the service lists oldest first); then, unless
    # a state is chosen, the oldest others (up to QUEUE of each), newest first.
    if wanted is None:
        pending = await listed(ApprovalState.pending)
        others = [x for x in await listed(None) if x[1] is not ApprovalState.pending]
    elif wanted is ApprovalState.pending:
        pending, others = await listed(wanted), []
    else:
        pending, others = [], await listed(wanted)
    rest = sorted(others, key=lambda x: x[0].created_at, reverse=True)
    return render(
        request,
        "approvals.html",
        {
            "items": pending + rest,
            "state": wanted.value if wanted else "",
            "domain": domain or "",
            "states": [s.value for s in ApprovalState],
        },
        viewer=viewer,
    )


async def _approval_context(
    session: Any, who: OperatorPrincipal, approval_id: uuid.UUID
) -> dict[str, Any]:
    approval = await approvals.get(session, who, approval_id)  # 403 / 404 as the API
    agent = await agents.find(session, approval.agent_id)
    decision = await decisions.find(session, approval.decision_id)
    version = None
    if decision is not None and decision.version_id is not None:
        version = await agents.version_by_id(session, approval.agent_id, decision.version_id)
    return {
        "approval": approval,
        "approval_state": approvals.state_of(approval).value,
        "agent": agent,
        "decision": decision,
        "version": version,
        "can_decide": who.can(Capability.approvals_decide)
        and (agent is None or not who.is_named(agent.owner)),
    }


@router.get("/approvals/{approval_id}", response_class=HTMLResponse)
async def approval_page(
    request: Request, approval_id: uuid.UUID, viewer: CurrentViewer, session: Session
) -> Response:
    context = await _approval_context(session, viewer.principal, approval_id)
    return render(request, "approval.html", context, viewer=viewer)


async def _resolve(
    request: Request,
    approval_id: uuid.UUID,
    viewer: Viewer,
    form: dict[str, str],
    session: Any,
    state: Any,
    verdict: ApprovalState,
) -> Response:
    comment = form.get("comment", "").strip()[:2000] or None
    await approvals.resolve(
        session, state.audit_context, viewer.principal, approval_id, verdict, comment
    )
    return redirect(f"/console/approvals/{approval_id}?done={verdict.value}")


@router.post("/approvals/{approval_id}/approve")
async def approve(
    request: Request,
    approval_id: uuid.UUID,
    viewer: CurrentViewer,
    form: CheckedForm,
    session: Session,
    state: State,
) -> Response:
    return await _resolve(
        request, approval_id, viewer, form, session, state, ApprovalState.approved
    )


@router.post("/approvals/{approval_id}/deny")
async def deny(
    request: Request,
    approval_id: uuid.UUID,
    viewer: CurrentViewer,
    form: CheckedForm,
    session: Session,
    state: State,
) -> Response:
    return await _resolve(request, approval_id, viewer, form, session, state, ApprovalState.denied)


# --- agents --------------------------------------------------------------------------------------


@router.get("/agents", response_class=HTMLResponse)
async def agents_page(
    request: Request,
    viewer: CurrentViewer,
    session: Session,
    domain: Domain = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    wanted = AgentStatus(status) if status and status in AgentStatus.__members__ else None
    rows = await agents.list_agents(
        session,
        viewer.principal,
        domain=_blank(domain),
        status=wanted,
        labels={},
        after=None,
        limit=PAGE,
    )
    return render(
        request,
        "agents.html",
        {
            "items": rows[:PAGE],
            "domain": domain or "",
            "status": wanted.value if wanted else "",
            "statuses": [s.value for s in AgentStatus],
        },
        viewer=viewer,
    )


@router.get("/agents/{agent_id}", response_class=HTMLResponse)
async def agent_page(
    request: Request, agent_id: uuid.UUID, viewer: CurrentViewer, session: Session
) -> Response:
    who = viewer.principal
    agent = await agents.get(session, who, agent_id)
    versions = await agents.list_versions(session, who, agent_id, after=None, limit=PAGE)
    creds = await credentials.list_credentials(session, who, agent_id, after=None, limit=PAGE)
    recent: list[Any] = []
    if who.can(Capability.decisions_read):
        recent = list(
            await decisions.list_decisions(
                session,
                who,
                agent_id=agent_id,
                effect=None,
                action=None,
                since=utcnow() - timedelta(days=7),
                until=None,
                after=None,
                limit=500,
            )
        )[-20:][::-1]
    budget = None
    try:
        budget = await budgets.get(session, who, "agent", str(agent_id))
    except ProblemError:
        budget = None  # no budget, or the role may not read it: the page shows none
    return render(
        request,
        "agent.html",
        {
            "agent": agent,
            "versions": versions[:PAGE],
            "credentials": creds[:PAGE],
            "recent": recent,
            "budget": budget,
            "can_write": who.can(Capability.registry_write),
        },
        viewer=viewer,
    )


async def _lifecycle(
    agent_id: uuid.UUID, viewer: Viewer, session: Any, state: Any, action: str
) -> Response:
    await killswitch.transition_agent(
        session, state.audit_context, viewer.principal, agent_id, action, None
    )
    return redirect(f"/console/agents/{agent_id}")


@router.post("/agents/{agent_id}/suspend")
async def suspend(
    agent_id: uuid.UUID, viewer: CurrentViewer, form: CheckedForm, session: Session, state: State
) -> Response:
    return await _lifecycle(agent_id, viewer, session, state, "suspend")


@router.post("/agents/{agent_id}/resume")
async def resume(
    agent_id: uuid.UUID, viewer: CurrentViewer, form: CheckedForm, session: Session, state: State
) -> Response:
    return await _lifecycle(agent_id, viewer, session, state, "resume")


# --- decisions -----------------------------------------------------------------------------------


def _time(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    try:
        return aware(datetime.fromisoformat(value))
    except (ValueError, OverflowError):
        raise ValidationFailed(f"{field} is not a date and time (ISO 8601).") from None


@router.get("/decisions", response_class=HTMLResponse)
async def decisions_page(
    request: Request,
    viewer: CurrentViewer,
    session: Session,
    agent_id: Annotated[str | None, Query(max_length=36)] = None,
    effect: Annotated[str | None, Query(max_length=20)] = None,
    action: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    try:
        agent = uuid.UUID(agent_id) if agent_id else None
    except ValueError:
        raise NotFound("No such agent.") from None
    wanted = Effect(effect) if effect in {e.value for e in Effect} else None
    rows = await decisions.list_decisions(
        session,
        viewer.principal,
        agent_id=agent,
        effect=wanted.value if wanted else None,
        action=_blank(action),
        since=_time(since, "since"),
        until=_time(until, "until"),
        after=None,
        limit=1000,
    )
    newest = list(rows)[-PAGE:][::-1]
    return render(
        request,
        "decisions.html",
        {
            "items": newest,
            "filters": {
                "agent_id": agent_id or "",
                "effect": wanted.value if wanted else "",
                "action": action or "",
                "since": since or "",
                "until": until or "",
            },
            "effects": [e.value for e in Effect],
        },
        viewer=viewer,
    )


@router.get("/decisions/{decision_id}", response_class=HTMLResponse)
async def decision_page(
    request: Request, decision_id: uuid.UUID, viewer: CurrentViewer, session: Session
) -> Response:
    who = viewer.principal
    decision = await decisions.get(session, who, decision_id)
    records: list[Any] = []
    if who.can(Capability.audit_read):
        records = await reading.list_records(
            session,
            who,
            domain=None,
            agent_id=None,
            action=None,
            status=None,
            decision_id=decision_id,
            trace_id=None,
            since=None,
            until=None,
            after=None,
            limit=PAGE,
        )
    linked = (
        [
            a
            for a in await approvals.list_approvals(
                session,
                who,
                state=None,
                domain=decision.domain,
                agent_id=decision.agent_id,
                after=None,
                limit=500,
            )
            if decision_id in (a.decision_id, a.used_by_decision_id)
        ]
        if who.can(Capability.approvals_read)
        else []
    )
    return render(
        request,
        "decision.html",
        {"decision": decision, "records": records[:PAGE], "approvals": linked},
        viewer=viewer,
    )


# --- audit ---------------------------------------------------------------------------------------


async def _log_domains(session: Any, who: OperatorPrincipal) -> list[str]:
    page = await domains.list_domains(session, who, after=None, limit=200)
    return [d.name for d in page.data]


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(
    request: Request,
    viewer: CurrentViewer,
    session: Session,
    domain: Domain = None,
    action: Annotated[str | None, Query(max_length=200)] = None,
    decision_id: Annotated[str | None, Query(max_length=36)] = None,
) -> Response:
    who = viewer.principal
    try:
        decision = uuid.UUID(decision_id) if decision_id else None
    except ValueError:
        raise NotFound("No such decision.") from None
    records = await reading.list_records(
        session,
        who,
        domain=_blank(domain),
        agent_id=None,
        action=_blank(action),
        status=None,
        decision_id=decision,
        trace_id=None,
        since=None,
        until=None,
        after=None,
        limit=PAGE,
    )
    logs: list[dict[str, Any]] = []
    for name in await _log_domains(session, who):
        try:
            note = await reading.latest_checkpoint_note(session, who, name)
        except NotFound:
            logs.append({"domain": name, "size": None, "root": None})
            continue
        body = note.split("\n\n", 1)[0] + "\n"
        try:
            checkpoint = Checkpoint.parse(body)
            logs.append({"domain": name, "size": checkpoint.size, "root": body.split("\n")[2]})
        except NoteError:
            logs.append({"domain": name, "size": None, "root": "unreadable"})
    return render(
        request,
        "audit.html",
        {
            "records": records[:PAGE],
            "logs": logs,
            "filters": {
                "domain": domain or "",
                "action": action or "",
                "decision_id": decision_id or "",
            },
        },
        viewer=viewer,
    )


def _proof_status(found: AuditRecordPublic) -> str:
    """'pending', 'verified' or 'failed': the record's inclusion proof against the root of the
    checkpoint it is served with (the checkpoint's signature is the verify button's job)."""
    position, proof = found.log, found.proof
    if position.index is None or position.canonical is None or proof is None:
        return "pending"
    try:
        body = proof.checkpoint.split("\n\n", 1)[0] + "\n"
        checkpoint = Checkpoint.parse(body)
        leaf = leaf_hash(unb64(position.canonical))
        hashes = [unb64(h) for h in proof.hashes]
    except (NoteError, ValueError):
        return "failed"
    ok = verify_inclusion(position.index, proof.size, leaf, hashes, checkpoint.root)
    return "verified" if ok and checkpoint.size == proof.size else "failed"


@router.get("/audit/records/{record_id}", response_class=HTMLResponse)
async def record_page(
    request: Request,
    record_id: uuid.UUID,
    viewer: CurrentViewer,
    session: Session,
    state: State,
) -> Response:
    found = await reading.get_record(session, viewer.principal, record_id, state.audit_trees)
    return render(
        request,
        "record.html",
        {"found": found, "record_id": record_id, "proof_status": _proof_status(found)},
        viewer=viewer,
    )


@router.post("/audit/verify", response_class=HTMLResponse)
async def start_verify(
    request: Request, viewer: CurrentViewer, form: CheckedForm, session: Session
) -> Response:
    who = viewer.principal
    who.require(Capability.audit_read)
    names = await _verify_domains(session, who, _blank(form.get("domain")))
    job = verify_jobs.start(request.app, who, names, _blank(form.get("domain")))
    return render(request, "verify_status.html", {"job": job}, viewer=viewer)


async def _verify_domains(session: Any, who: OperatorPrincipal, wanted: str | None) -> list[str]:
    names = await _log_domains(session, who)
    if wanted is None:
        return names
    if wanted not in names:
        raise NotFound("Log not found.")
    return [who.visible(wanted, what="Log", domain_of=str)]


@router.get("/audit/verify/{job_id}", response_class=HTMLResponse)
async def verify_status(
    request: Request,
    job_id: uuid.UUID,
    viewer: CurrentViewer,
    session: Session,
    state: State,
    domain: Domain = None,
) -> Response:
    who = viewer.principal
    job = verify_jobs.find(request.app, who, job_id)
    if job is None:
        # Started by another worker of this service (or forgotten): verify here and now, in this
        # request, so the answer is still the server's verification of the logs as they are.
        who.require(Capability.audit_read)
        names = await _verify_domains(session, who, _blank(domain))
        job = await verify_jobs.run_now(session, state, who, names, _blank(domain))
    return render(request, "verify_status.html", {"job": job}, viewer=viewer)


# --- enforcement points --------------------------------------------------------------------------

#: A point not heard from for longer than this is highlighted as stale.
STALE_SECONDS = 300.0


@router.get("/enforcement-points", response_class=HTMLResponse)
async def points_page(
    request: Request, viewer: CurrentViewer, session: Session, state: State
) -> Response:
    who = viewer.principal
    rows = []
    for name in await _log_domains(session, who):
        for point in await federation.list_points(session, who, name, after=None, limit=PAGE):
            public = await federation.public_point(session, state, point)
            stale = (
                public.stale_seconds is None
                or public.stale_seconds > STALE_SECONDS
                or (
                    public.current_revision is not None
                    and public.bundle_revision != public.current_revision
                )
            )
            rows.append({"point": public, "stale": stale})
    return render(
        request,
        "points.html",
        {"rows": rows, "stale_seconds": int(STALE_SECONDS)},
        viewer=viewer,
    )
