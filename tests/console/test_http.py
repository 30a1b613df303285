"""The console over HTTP (ASGI): sessions, cookies, CSRF, the API's authorization, headers."""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from control_plane.console.web import CSP
from control_plane.kit.db import create_engine
from tests.audit.support import settle
from tests.console.support import (
    BIG,
    MARKER,
    assert_clean,
    operator,
    pending_approval,
    sign_in,
)
from tests.fixtures.factories import create_domain

HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
STATIC = Path(__file__).parents[2] / "control_plane" / "console" / "static"


@pytest.fixture
def browser_like(app: FastAPI) -> object:
    """A factory of clients with their own cookie jars, on a loopback http origin."""

    def make() -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")

    return make


@pytest.fixture
async def approver_a(browser_like: object) -> AsyncIterator[httpx.AsyncClient]:
    async with browser_like() as c:  # type: ignore[operator]
        yield c


async def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_revokes_it(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str], browser_like: object
) -> None:
    await create_domain(client, admin, "payments")
    token = await operator(client, admin, "auditor", "audrey", [])
    async with browser_like() as web:  # type: ignore[operator]
        r = await web.get("/console/approvals")
        assert r.status_code == 303
        assert r.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fapprovals"
        page = await web.get("/console/sign-in")
        pre = web.cookies["acp_console_signin"]
        # Without the sign-in form's own token (login CSRF): refused.
        r = await web.post("/console/sign-in", data={"token": token})
        assert r.status_code == 403
        r = await web.post("/console/sign-in", data={"csrf_token": pre, "token": "acp_op_nope"})
        assert r.status_code == 401
        assert "not a valid operator token" in r.text
        r = await web.post(
            "/console/sign-in", data={"csrf_token": pre, "token": token, "next": "//evil.example"}
        )
        assert r.status_code == 303
        assert r.headers["location"] == "/console/"  # no open redirect
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("acp_console="))
        attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
        assert {"httponly", "path", "max-age"} <= attributes
        assert "samesite=strict" in cookie.lower()
        assert "path=/console" in cookie.lower()
        assert "secure" not in attributes  # plain http on a loopback host
        session_id = web.cookies["acp_console"]
        assert session_id not in page.text
        home = await web.get("/console/")
        assert home.status_code == 200
        assert "audrey" in home.text
        csrf = (await web.get("/console/audit")).text.split('name="csrf_token" value="')[1][:64]
        r = await web.post("/console/sign-out", data={"csrf_token": csrf})
        assert r.status_code == 303
    # The old cookie is worthless once signed out: revoked on the server, not only forgotten.
    async with browser_like() as replay:  # type: ignore[operator]
        replay.cookies.set("acp_console", session_id)
        r = await replay.get("/console/")
        assert r.status_code == 303
        assert r.headers["location"].startswith("/console/sign-in")
    # Outside loopback http (here https), the cookie is Secure.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as tls:
        await tls.get("/console/sign-in")
        pre = tls.cookies["acp_console_signin"]
        r = await tls.post("/console/sign-in", data={"csrf_token": pre, "token": token})
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("acp_console="))
        assert "secure" in cookie.lower()
    # No session row holds the session id itself.
    engine = create_engine(str(app.state.context.settings.resolved_database_url))
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT id_hash FROM console_sessions"))).all()
    finally:
        await engine.dispose()
    assert hashlib.sha256(session_id.encode()).hexdigest() in {r[0] for r in rows}
    assert session_id not in {r[0] for r in rows}


async def test_authorization_is_the_apis(
    client: httpx.AsyncClient, admin: dict[str, str], browser_like: object
) -> None:
    me, approval_id = await pending_approval(client, admin)
    await create_domain(client, admin, "shipping")
    tokens = {
        "other": await operator(client, admin, "approver", "olga", ["shipping"]),
        "auditor": await operator(client, admin, "auditor", "audrey", []),
        "approver": await operator(client, admin, "approver", "paula", ["payments"]),
    }
    forbidden = [MARKER, *tokens.values(), admin["Authorization"].split()[1]]
    async with (
        browser_like() as other,  # type: ignore[operator]
        browser_like() as auditor,  # type: ignore[operator]
        browser_like() as approver,  # type: ignore[operator]
    ):
        csrf = {
            "other": await sign_in(other, tokens["other"]),
            "auditor": await sign_in(auditor, tokens["auditor"]),
            "approver": await sign_in(approver, tokens["approver"]),
        }
        # Another domain's approver: not listed, 404 to read, 404 to act.
        listing = await other.get("/console/approvals")
        assert approval_id not in listing.text
        assert (await other.get(f"/console/approvals/{approval_id}")).status_code == 404
        r = await other.post(
            f"/console/approvals/{approval_id}/approve", data={"csrf_token": csrf["other"]}
        )
        assert r.status_code == 404
        # The auditor sees it, without any way to decide, and is refused when it tries anyway.
        page = await auditor.get(f"/console/approvals/{approval_id}")
        assert page.status_code == 200
        assert "/approve" not in page.text
        assert_clean(page.text, forbidden, "the auditor's approval page")
        r = await auditor.post(
            f"/console/approvals/{approval_id}/approve", data={"csrf_token": csrf["auditor"]}
        )
        assert r.status_code == 403
        # CSRF: missing, forged, another session's, or sent as JSON: refused, nothing changed.
        url = f"/console/approvals/{approval_id}/approve"
        for bad in ({"comment": "x"}, {"csrf_token": "0" * 64}, {"csrf_token": csrf["auditor"]}):
            r = await approver.post(url, data=bad)
            assert r.status_code == 403, bad
            assert "CSRF" in r.text
        r = await approver.post(url, json={"csrf_token": csrf["approver"]})
        assert r.status_code == 403
        state = (await client.get(f"/v1/approvals/{approval_id}", headers=admin)).json()["state"]
        assert state == "pending"
        # The approver of the domain: the page shows what is bound, then approves.
        page = await approver.get(f"/console/approvals/{approval_id}")
        assert page.status_code == 200
        assert "payments.refund" in page.text
        assert "refund-bot" in page.text
        assert "amount_requires_approval" in page.text
        assert_clean(page.text, forbidden, "the approver's approval page")
        r = await approver.post(url, data={"csrf_token": csrf["approver"], "comment": "ok by me"})
        assert r.status_code == 303, r.text
        got = (await client.get(f"/v1/approvals/{approval_id}", headers=admin)).json()
        assert (got["state"], got["resolved_by"], got["comment"]) == (
            "approved",
            "paula",
            "ok by me",
        )
        # Twice: the API's 409, as a page.
        again = await approver.post(url, data={"csrf_token": csrf["approver"]})
        assert again.status_code == 409
    retry = dict(BIG, approval_id=approval_id)
    answer = (await client.post("/v1/decisions", json=retry, headers=me["headers"])).json()
    assert (answer["effect"], answer["reasons"]) == ("allow", ["approved"])


async def test_the_owner_cannot_approve_their_agent(
    client: httpx.AsyncClient, admin: dict[str, str], browser_like: object
) -> None:
    _me, approval_id = await pending_approval(client, admin)  # the agent's owner is "o"
    token = await operator(client, admin, "approver", "o", ["payments"])
    async with browser_like() as web:  # type: ignore[operator]
        csrf = await sign_in(web, token)
        page = await web.get(f"/console/approvals/{approval_id}")
        assert "/approve" not in page.text
        r = await web.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": csrf})
        assert r.status_code == 403
        assert "Separation of duties" in r.text


async def test_an_expired_session_goes_back_to_sign_in(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str], browser_like: object
) -> None:
    token = await operator(client, admin, "auditor", "audrey", [])
    async with browser_like() as web:  # type: ignore[operator]
        await sign_in(web, token)
        engine = create_engine(str(app.state.context.settings.resolved_database_url))
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text("UPDATE console_sessions SET expires_at = :t"),
                    {"t": datetime.now(UTC) - timedelta(seconds=1)},
                )
        finally:
            await engine.dispose()
        r = await web.get("/console/decisions?effect=deny")
        assert r.status_code == 303
        assert (
            r.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fdecisions%3Feffect%3Ddeny"
        )
        r = await web.get("/console/audit", headers={"HX-Request": "true"})
        assert r.headers["hx-redirect"].startswith("/console/sign-in")


async def test_every_page_has_the_security_headers(
    client: httpx.AsyncClient, admin: dict[str, str], browser_like: object
) -> None:
    _me, approval_id = await pending_approval(client, admin)
    async with browser_like() as web:  # type: ignore[operator]
        await sign_in(web, admin["Authorization"].split()[1])
        for path in (
            "/console/sign-in",
            "/console/",
            "/console/approvals",
            f"/console/approvals/{approval_id}",
            "/console/agents",
            "/console/decisions",
            "/console/audit",
            "/console/enforcement-points",
            "/console/approvals/not-an-id",
        ):
            r = await web.get(path)
            assert r.status_code in (200, 404), (path, r.status_code)
            assert r.headers["content-security-policy"] == CSP, path
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["cache-control"] == "no-store"
            assert "<script>" not in r.text, path  # no inline script
            assert " style=" not in r.text, path  # no inline style


async def test_the_console_is_not_in_the_api_document(app: FastAPI) -> None:
    assert not [p for p in app.openapi()["paths"] if p.startswith("/console")]


def test_vendored_htmx_is_the_pinned_release() -> None:
    data = (STATIC / "htmx.min.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == HTMX_SHA256
    assert HTMX_SHA256 in (STATIC / "README.md").read_text()


async def test_the_queue_shows_pending_first(
    client: httpx.AsyncClient, admin: dict[str, str], browser_like: object
) -> None:
    me, first = await pending_approval(client, admin)
    r = await client.post("/v1/decisions", json=BIG, headers=me["headers"])
    second = r.json()["approval_id"]
    r = await client.post(f"/v1/approvals/{first}/deny", json={"comment": "no"}, headers=admin)
    assert r.status_code == 200
    async with browser_like() as web:  # type: ignore[operator]
        await sign_in(web, admin["Authorization"].split()[1])
        page = (await web.get("/console/approvals")).text
        assert page.index(second) < page.index(first)  # pending above the denied one
        only_denied = (await web.get("/console/approvals?state=denied")).text
        assert first in only_denied
        assert second not in only_denied


async def test_bad_filters_are_pages_not_errors(
    client: httpx.AsyncClient, admin: dict[str, str], browser_like: object
) -> None:
    async with browser_like() as web:  # type: ignore[operator]
        csrf = await sign_in(web, admin["Authorization"].split()[1])
        assert (await web.get("/console/decisions?since=yesterday")).status_code == 422
        assert (await web.get("/console/decisions?agent_id=nope")).status_code == 404
        assert (await web.get("/console/decisions?effect=maybe")).status_code == 200
        assert (await web.get("/console/audit?domain=Not%20A%20Name")).status_code == 404
        r = await web.post("/console/audit/verify", data={"csrf_token": csrf, "domain": "nowhere"})
        assert r.status_code == 404


async def test_verify_runs_in_the_background_and_anywhere(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str], browser_like: object
) -> None:
    await pending_approval(client, admin)  # a decision and an approval: records in 'payments'
    await settle(app)
    async with browser_like() as web:  # type: ignore[operator]
        csrf = await sign_in(web, admin["Authorization"].split()[1])
        r = await web.post("/console/audit/verify", data={"csrf_token": csrf, "domain": "payments"})
        assert r.status_code == 200
        for _ in range(100):
            if 'id="verify-outcome"' in r.text:
                break
            poll = re.search(r'hx-get="([^"]+)"', r.text)
            assert poll is not None, r.text
            assert poll.group(1).endswith("?domain=payments")
            await asyncio.sleep(0.05)
            r = await web.get(html.unescape(poll.group(1)), headers={"HX-Request": "true"})
            assert r.status_code == 200
        assert 'data-ok="true"' in r.text
        assert "payments: 2 leaves checked" in r.text
        # A poll that reaches a worker which did not start the job: verified there, at once.
        r = await web.get(f"/console/audit/verify/{uuid.uuid4()}?domain=payments")
        assert 'data-ok="true"' in r.text


async def test_the_console_without_its_slash_leads_to_it(client: httpx.AsyncClient) -> None:
    # What people type: /console. The app redirects no other slashes.
    r = await client.get("/console")
    assert r.status_code == 307
    assert r.headers["location"] == "/console/"
    r = await client.get("/console/")
    assert r.status_code == 303
    assert r.headers["location"].startswith("/console/sign-in")


@pytest.mark.parametrize(
    ("target", "where"),
    [
        ("/console/approvals?state=pending", "/console/approvals?state=pending"),
        ("/console", "/console"),
        ("//evil.example", "/console/"),
        ("https://evil.example/console/", "/console/"),
        ("/console/../v1/agents", "/console/"),  # a browser resolves it out of the console
        ("/console/%2e%2e/v1/agents", "/console/"),  # and this one too
        ("/console/./approvals", "/console/"),
        ("/consolex", "/console/"),
        ("/console/\\evil", "/console/"),
    ],
)
def test_after_sign_in_only_console_paths_are_followed(target: str, where: str) -> None:
    from control_plane.console.endpoints import _safe_next

    assert _safe_next(target) == where
