"""The console in headless Chromium (Playwright, Debian's chromium) against a real
``agentctl serve`` on SQLite and PostgreSQL: the approver's and the auditor's flows, tampering
found by the verify button, authorization in the browser, accessibility (axe-core), no secret in
any page, and screenshots of the main pages (pytest's tmp dir, ``console-artefacts*``)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from control_plane.kit.db import create_engine
from tests.audit.test_tamper import drop_triggers
from tests.console.browser import (
    ADMIN_TOKEN,
    CHROMIUM_ARGS,
    KEK,
    Api,
    axe_path,
    chromium_path,
    run_async,
)
from tests.console.support import MARKER, assert_clean
from tests.fixtures import databases
from tests.fixtures.servers import server_env, serving

database = databases.database  # the fixture, shared with the other module suites

#: Pages at phone width must not scroll sideways (tables scroll inside their own box).
PHONE = {"width": 375, "height": 740}


@pytest.fixture(scope="module")
def server(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("console-server")
    env = server_env(
        database,
        data_dir,
        AGENTCTL_ADMIN_TOKEN=ADMIN_TOKEN,
        AGENTCTL_KEY_ENCRYPTION_KEY=KEK,
        AGENTCTL_LOG_LEVEL="WARNING",
        AGENTCTL_AUDIT_CHECKPOINT_SECONDS="0.3",
        AGENTCTL_DATABASE_POOL_TIMEOUT_SECONDS="60",
    )
    with serving(env, data_dir / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def api(server: str) -> Api:
    return Api(server)


@pytest.fixture(scope="module")
def bot(api: Api) -> dict[str, Any]:
    """The one agent the shipped policy grants payments.refund: refund-bot of payments."""
    return api.decider("refund-bot")


@pytest.fixture(scope="module")
def browser(database: str) -> Iterator[Browser]:
    """One Chromium per module and database. It depends on ``database`` so that it stops before
    the next database is made: Playwright's sync API holds the thread's event loop, and the
    databases are made with asyncio.run."""
    executable = chromium_path()
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console-artefacts")


class Visits:
    """Every page a test's browsers showed, for the secrets scan at the end."""

    def __init__(self) -> None:
        self.pages: list[tuple[str, str]] = []
        self.csp_violations: list[str] = []

    def watch(self, page: Page) -> Page:
        page.on("load", lambda: self.pages.append((page.url, page.content())))
        page.on(
            "console",
            lambda msg: (
                self.csp_violations.append(msg.text)
                if "Content Security Policy" in msg.text
                else None
            ),
        )
        return page

    def check(self, forbidden: list[str]) -> None:
        assert self.pages
        for url, html in self.pages:
            assert_clean(html, forbidden, url)
        assert not self.csp_violations, self.csp_violations


def _context(browser: Browser, server: str, **kw: Any) -> BrowserContext:
    return browser.new_context(base_url=server, **kw)


def sign_in(page: Page, token: str) -> None:
    page.goto("/console/approvals")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))
    page.get_by_label("Operator token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/console/approvals$"))


def csrf_of(page: Page) -> str:
    value = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    assert value
    return value


def _tamper(db_url: str, index: int) -> None:
    async def change() -> None:
        engine = create_engine(db_url)
        try:
            async with engine.begin() as conn:
                await drop_triggers(conn)
                row = (
                    await conn.execute(
                        sa.text("SELECT canonical FROM audit_leaves WHERE seq = :s"), {"s": index}
                    )
                ).one()
                forged = bytes(row[0]).replace(b"payments.refund", b"payments.refunx")
                assert forged != bytes(row[0])
                await conn.execute(
                    sa.text("UPDATE audit_leaves SET canonical = :c WHERE seq = :s"),
                    {"c": forged, "s": index},
                )
        finally:
            await engine.dispose()

    run_async(change)


def _expire_sessions(db_url: str) -> None:
    async def expire() -> None:
        engine = create_engine(db_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text("UPDATE console_sessions SET expires_at = :t"),
                    {"t": datetime.now(UTC) - timedelta(seconds=1)},
                )
        finally:
            await engine.dispose()

    run_async(expire)


def _axe(page: Page, axe_js: str) -> list[str]:
    """Serious and critical axe-core violations of the page (WCAG 2.x A and AA rules)."""
    page.add_script_tag(content=axe_js)
    result = page.evaluate(
        "async () => (await axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})).violations"
        ".filter(v => ['serious', 'critical'].includes(v.impact))"
        ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
    )
    return list(result)


def test_approve_then_audit_then_tamper(
    server: str,
    browser: Browser,
    database: str,
    artefacts: Path,
    api: Api,
    bot: dict[str, Any],
) -> None:
    me = bot
    first = api.ask(me)
    assert first["effect"] == "require_approval"
    approval_id = first["approval_id"]
    approver_token = api.operator("approver", "paula", ["payments"])
    auditor_token = api.operator("auditor", "audrey", [])
    visits = Visits()
    shot = artefacts / database.split(":")[0]
    shot.mkdir(exist_ok=True)

    # The approver: sign in, open the pending approval, approve it with a comment.
    with _context(browser, server) as ctx:
        page = visits.watch(ctx.new_page())
        sign_in(page, approver_token)
        page.screenshot(path=shot / "approvals.png", full_page=True)
        row = page.get_by_role("row").filter(has_text="payments.refund")
        expect(row).to_contain_text("pending")
        row.get_by_role("link", name="payments.refund").click()
        expect(page).to_have_url(re.compile(f"/console/approvals/{approval_id}$"))
        expect(page.locator("main")).to_contain_text("refund-bot")
        expect(page.locator("main")).to_contain_text("gpt-test 2026-01")
        expect(page.locator("main")).to_contain_text("amount_requires_approval")
        expect(page.locator("pre.doc")).to_contain_text('"amount": 500')
        page.screenshot(path=shot / "approval.png", full_page=True)
        page.get_by_label("Comment").fill("checked the order")
        page.get_by_role("button", name="Approve").click()
        expect(page.get_by_role("status")).to_contain_text("now approved")
        cookie = next(c for c in ctx.cookies() if c["name"] == "acp_console")
        assert cookie["httpOnly"]
        assert cookie["sameSite"] == "Strict"
        api.secrets.append(cookie["value"])

    # The agent's retry is allowed.
    retry = api.ask(me, approval_id=approval_id)
    assert (retry["effect"], retry["reasons"]) == ("allow", ["approved"])
    decision_id = retry["decision_id"]

    # The auditor: find the decision, open its audit record, verify the logs.
    with _context(browser, server) as ctx:
        page = visits.watch(ctx.new_page())
        sign_in(page, auditor_token)
        page.get_by_role("link", name="Decisions").click()
        page.get_by_label("Effect").select_option("allow")
        page.get_by_label("Action").fill("payments.refund")
        page.get_by_role("button", name="Filter").click()
        page.screenshot(path=shot / "decisions.png", full_page=True)
        page.locator(f'a[href="/console/decisions/{decision_id}"]').click()
        expect(page.locator("main")).to_contain_text("approved")
        expect(page.get_by_role("link", name=re.compile("approval"))).to_have_count(1)
        page.get_by_role("link", name=re.compile(r"^decision payments\.refund")).click()
        expect(page).to_have_url(re.compile(f"/console/audit/records/{decision_id}$"))
        deadline = time.monotonic() + 30
        while "verified against the checkpoint" not in page.locator("#proof-status").inner_text():
            assert time.monotonic() < deadline, page.locator("#proof-status").inner_text()
            time.sleep(0.3)
            page.reload()
        index = int(page.locator("dt:text('Leaf index') + dd").inner_text())
        page.screenshot(path=shot / "record.png", full_page=True)
        page.get_by_role("link", name="Audit").click()
        page.get_by_role("button", name="Verify").click()
        outcome = page.locator("#verify-outcome")
        expect(outcome).to_have_attribute("data-ok", "true", timeout=30_000)
        expect(outcome).to_contain_text("every log matches")
        page.screenshot(path=shot / "audit.png", full_page=True)
        page.get_by_role("link", name="agentctl console").click()
        expect(page.locator("svg.bars").first).to_be_visible()
        page.screenshot(path=shot / "overview.png", full_page=True)

        # Someone rewrites the decision's leaf in the database: verification names its index.
        _tamper(database, index)
        page.goto("/console/audit")
        page.get_by_role("button", name="Verify").click()
        expect(outcome).to_have_attribute("data-ok", "false", timeout=30_000)
        expect(page.locator(".bad-index")).to_have_text(f"first bad index {index}")
        page.screenshot(path=shot / "audit-tampered.png", full_page=True)
        # The record's own page no longer proves its inclusion either.
        page.goto(f"/console/audit/records/{decision_id}")
        expect(page.locator("#proof-status")).to_contain_text("FAILED")

    visits.check([MARKER, *api.secrets])
    assert sorted(p.name for p in shot.iterdir()) == [
        "approval.png",
        "approvals.png",
        "audit-tampered.png",
        "audit.png",
        "decisions.png",
        "overview.png",
        "record.png",
    ]


def test_authorization_in_the_browser(
    server: str, browser: Browser, database: str, api: Api, bot: dict[str, Any]
) -> None:
    me = bot
    first = api.ask(me)
    assert first["effect"] == "require_approval", first
    approval_id = first["approval_id"]
    api.call("POST", "/v1/domains", 201, json={"name": f"shipping-{uuid.uuid4().hex[:6]}"})
    shipping = api.call("GET", "/v1/domains")["data"][-1]["name"]
    other = api.operator("approver", f"olga-{uuid.uuid4().hex[:6]}", [shipping])
    auditor = api.operator("auditor", f"aud-{uuid.uuid4().hex[:6]}", [])
    approver = api.operator("approver", f"pat-{uuid.uuid4().hex[:6]}", ["payments"])
    visits = Visits()
    url = f"/console/approvals/{approval_id}"

    with _context(browser, server) as ctx:
        page = visits.watch(ctx.new_page())
        sign_in(page, other)
        expect(page.locator("main")).not_to_contain_text("payments.refund")
        response = page.goto(url)
        assert response is not None
        assert response.status == 404
        r = page.request.post(url + "/approve", form={"csrf_token": csrf_of(page)})
        assert r.status == 404

    with _context(browser, server) as ctx:
        page = visits.watch(ctx.new_page())
        sign_in(page, auditor)
        page.goto(url)
        expect(page.get_by_role("button", name="Approve")).to_have_count(0)
        r = page.request.post(url + "/approve", form={"csrf_token": csrf_of(page)})
        assert r.status == 403

    with _context(browser, server) as ctx:
        page = visits.watch(ctx.new_page())
        sign_in(page, approver)
        page.goto(url)
        for form in ({"comment": "no token"}, {"csrf_token": "f" * 64}):
            r = page.request.post(url + "/approve", form=form)
            assert r.status == 403
        page.reload()
        expect(page.locator("main")).to_contain_text("pending")
        # The session expires: the next page is the sign-in page, and it comes back after.
        _expire_sessions(database)
        page.reload()
        expect(page).to_have_url(re.compile(r"/console/sign-in\?next=%2Fconsole%2Fapprovals"))
        page.get_by_label("Operator token").fill(approver)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(f"{url}$"))

    visits.check([MARKER, *api.secrets])


def test_accessibility_and_phone_width(
    server: str,
    browser: Browser,
    database: str,
    artefacts: Path,
    api: Api,
    bot: dict[str, Any],
) -> None:
    me = bot
    first = api.ask(me)
    assert first["effect"] == "require_approval", first
    approval_id = first["approval_id"]
    agent_id = me["agent"]["id"]
    axe_js = axe_path().read_text()
    paths = [
        "/console/",
        "/console/approvals",
        f"/console/approvals/{approval_id}",
        "/console/agents",
        f"/console/agents/{agent_id}",
        "/console/decisions",
        "/console/audit",
        "/console/enforcement-points",
    ]
    visits = Visits()
    shot = artefacts / (database.split(":")[0] + "-phone")
    shot.mkdir(exist_ok=True)
    # axe is injected as an inline script, which the console's CSP rightly refuses: this
    # context alone bypasses the CSP (the flows above run with it and record no violation).
    with _context(browser, server, bypass_csp=True) as ctx:
        page = visits.watch(ctx.new_page())
        page.goto("/console/sign-in")
        problems = {"/console/sign-in": _axe(page, axe_js)}
        sign_in(page, ADMIN_TOKEN)
        for path in paths:
            page.goto(path)
            problems[path] = _axe(page, axe_js)
        assert not {k: v for k, v in problems.items() if v}, problems
    with _context(browser, server, viewport=PHONE) as ctx:
        page = visits.watch(ctx.new_page())
        sign_in(page, ADMIN_TOKEN)
        for path in paths:
            page.goto(path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], (path, width)
        page.goto(f"/console/approvals/{approval_id}")
        page.screenshot(path=shot / "approval.png", full_page=True)
        # Keyboard: the skip link is the first stop and takes focus to the content.
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    visits.check([MARKER, *api.secrets])
