"""The console in a real browser (headless Chromium) against the whole pipeline on a real broker.

A newsletter erasure fails while Mailchimp is down and is dead-lettered; the request goes overdue. A viewer
sees it flagged and the dead letter masked, and cannot reveal it; an operator reveals it (audit-logged),
replays it once Mailchimp is back, watches the request complete and verifies its receipt. A POST without the
CSRF token is refused; logging out ends the session. An operator extends a request's deadline, places and
releases a legal hold and retries its slices through the request page's forms and their confirmation pages.
Screenshots go to var/screenshots/, or where ERASURE_SCREENSHOTS_DIR says (`ERASURE_SCREENSHOTS_DIR=docs/screenshots`
refreshes the README's pictures).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.examples import example_consent_change, example_deregistration
from services.registry import SERVICES, load
from services.sandbox import Sandbox
from shared.testing import Pipeline, wait_until
from tests.console.conftest import PASSWORDS

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / os.environ.get("ERASURE_SCREENSHOTS_DIR", "var/screenshots")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium chromium-driver)"),
]


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium from the distribution, driven by Playwright (never `playwright install`).

    Playwright starts every launch with a fresh, temporary --user-data-dir of its own (it refuses one passed
    in `args`), and each test context below is a separate, empty profile in it.
    """
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _login(context: Any, base: str, name: str) -> Any:
    page = context.new_page()
    page.goto(f"{base}/login")
    # By keyboard: the name field has focus, Tab moves to the password, Enter submits.
    page.get_by_label("Name").focus()
    page.keyboard.type(name)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORDS[name])
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/requests")
    return page


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_viewer_and_operator_follow_a_dead_lettered_erasure_to_its_verified_receipt(
        erasure_pipeline: Pipeline, db_backend: str, serve, browser, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERASURE_LEDGER_DUE_SECONDS", "2")  # the request is overdue two seconds after it arrives
    with Sandbox() as sandbox:
        monkeypatch.setenv("ERASURE_SANDBOX_URL", sandbox.http_url)
        running = {name: erasure_pipeline.start(load(name), http_port=0) for name in SERVICES}
        consent = example_consent_change("u-4711", consented=True)
        [sent] = erasure_pipeline.publish(consent)
        running["newsletter"].wait_handled(sent.event_id)
        sandbox.set_outage("mailchimp", "503")
        deregistration = example_deregistration("u-4711")
        request_id = str(deregistration.request_id)
        erasure_pipeline.publish(deregistration)
        dead_queue = f"{erasure_pipeline.namespace}.newsletter.dead"
        wait_until(lambda: erasure_pipeline.depth(dead_queue) == 1, timeout=60, what="the newsletter dead letter")

        ledger = running["ledger"].engine.url.render_as_string(hide_password=False)
        account = running["account"].engine.url.render_as_string(hide_password=False)
        metrics = {name: f"http://127.0.0.1:{svc.runner.http_port}/metrics" for name, svc in running.items()}
        console = serve(ledger, account_url=account, runtime=erasure_pipeline.settings, metrics_urls=metrics,
                        sample_every_s=0.5)
        base = console.url

        # --- a viewer ---------------------------------------------------------------------------------------
        viewer = browser.new_context(viewport={"width": 1280, "height": 800})
        page = _login(viewer, base, "vera")
        page.goto(f"{base}/requests?state=open&flag=overdue")
        row = page.locator("tr", has=page.locator(f'a[href="/requests/{request_id}"]'))
        assert "overdue" in row.inner_text() and "newsletter" in row.inner_text()
        assert request_id not in page.title() and "u-4711" not in page.url
        _shot(page, "requests")
        page.goto(f"{base}/requests/{request_id}")
        page.locator("#dead li").wait_for()  # loaded by htmx: the newsletter slice gave up
        assert "newsletter" in page.locator("#dead").inner_text()
        _shot(page, "request-open")
        page.goto(f"{base}/dead-letters")
        page.locator('a[href^="/dead-letters/newsletter/"]').first.click()
        body = page.locator("pre.body").first.inner_text()
        assert "personal data masked" in page.content() and "u-4711" in body
        _shot(page, "dead-letter-masked")
        page.get_by_role("button", name="Reveal personal data (operators; audit-logged)").click()
        assert "needs the operator role" in page.content()
        viewer.close()

        # --- an operator --------------------------------------------------------------------------------------
        operator = browser.new_context(viewport={"width": 1280, "height": 800})
        page = _login(operator, base, "otto")
        page.goto(f"{base}/dead-letters")
        page.locator('a[href^="/dead-letters/newsletter/"]').first.click()
        letter_url = page.url
        # A POST without the CSRF token, with the operator's own cookie, is refused and replays nothing.
        forged = operator.request.post(f"{letter_url}/replay", form={"confirm": "yes"})
        assert forged.status == 403
        assert erasure_pipeline.depth(dead_queue) == 1
        page.get_by_role("button", name="Reveal personal data (operators; audit-logged)").click()
        assert "this reveal is in the audit log" in page.content()
        sandbox.set_outage("mailchimp", "off")
        page.get_by_role("link", name="Replay…").click()
        assert "Replay this dead letter?" in page.content()
        page.get_by_role("button", name="Yes, replay it").click()
        assert "Replayed" in page.locator("p.ok").inner_text()

        page.goto(f"{base}/requests/{request_id}")

        def complete() -> bool:
            page.reload()
            return page.locator(".state .flag.complete").count() == 1

        wait_until(complete, timeout=60, interval=1.0, what="the request to complete in the console")
        page.get_by_role("button", name="Verify the receipt").click()
        page.get_by_text("Receipt verified").wait_for()
        assert "6 entries intact" in page.locator("#verified").inner_text()
        _shot(page, "request-verified")
        page.goto(f"{base}/audit")
        log_text = page.locator("table").inner_text()
        assert "dead_letter_reveal" in log_text and "dead_letter_replay" in log_text and "otto" in log_text
        page.goto(f"{base}/health")
        page.wait_for_timeout(1500)
        assert "unreachable" not in page.locator("#health").inner_text()
        _shot(page, "health")

        # --- logging out ends the session, even for a copy of its cookie --------------------------------------
        cookies = operator.cookies()
        page.get_by_role("button", name="Log out").click()
        page.wait_for_url(f"{base}/login")
        thief = browser.new_context()
        thief.add_cookies(cookies)
        stolen = thief.new_page()
        stolen.goto(f"{base}/requests")
        assert stolen.url == f"{base}/login"
        thief.close()
        operator.close()


@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_read_only_pages_work_without_javascript(serve, ledger_url: str, db_backend: str, browser) -> None:
    from bench.console import fill_ledger
    from shared.db import make_engine

    console = serve(ledger_url)
    ids = fill_ledger(make_engine(ledger_url), 60, now=datetime.now(UTC))
    context = browser.new_context(java_script_enabled=False)
    page = _login(context, console.url, "vera")
    page.goto(f"{console.url}/requests?state=all")
    erasures = 'table:has(caption:has-text("by due date")) >> nth=0 >> tbody tr'  # the first table: erasures
    first = page.locator(erasures).count()
    page.get_by_role("link", name="Next page").click()
    assert first == 50 and page.locator(erasures).count() == 10
    page.goto(f"{console.url}/requests/{ids[0]}")
    assert page.get_by_role("heading", name="Timeline").count() == 1
    # Without htmx the receipt check is a plain form post that renders the whole page.
    page.get_by_role("button", name="Verify the receipt").click()
    assert "Receipt" in page.locator("#verified").inner_text()
    assert page.get_by_role("link", name="Look for this request in the dead-letter queues").count() == 1
    for label in ("State", "Only", "Request id", "User id"):
        page.goto(f"{console.url}/requests")
        assert page.get_by_label(label).count() == 1, f"no field labelled {label}"
    context.close()


@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_an_operator_extends_holds_releases_and_retries_in_the_browser(
        erasure_pipeline: Pipeline, serve, ledger_url: str, db_backend: str, browser) -> None:
    from tests.console.test_request_actions import _filled, _open_requests

    now = datetime.now(UTC)
    engine = _filled(ledger_url, now)
    running, late = _open_requests(engine, now)
    erasure_pipeline.declare()
    console = serve(ledger_url, runtime=erasure_pipeline.settings)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = _login(context, console.url, "otto")

    def act(request_id: str, action: str, button: str, heading: str, confirm: str, **fields: str) -> str:
        """Fill one action's form on the request page, submit it, confirm; the message the console answers."""
        page.goto(f"{console.url}/requests/{request_id}")
        form = page.locator(f'form[action="/requests/{request_id}/{action}"]')
        for label, value in fields.items():
            field = form.get_by_label(label.capitalize())
            if field.evaluate("e => e.tagName") == "SELECT":
                field.select_option(value)
            else:
                field.fill(value)
        form.get_by_role("button", name=button).click()
        assert page.get_by_role("heading", name=heading).count() == 1, page.content()
        page.get_by_role("button", name=confirm).click()
        return page.locator("main").inner_text()

    said = act(running.request_id, "extend", "Extend the deadline…", "Extend the deadline of this request?",
               "Yes, extend", reason="records held by three installers", months="1")
    assert "Request extended by 1 month(s)" in said
    _shot(page, "request-extended")
    said = act(late.request_id, "hold", f"Place a legal hold on user {late.user_id}…",
               "Place a legal hold on this user?", "Yes, hold", reason="court order 2026-T-1234")
    assert f"Legal hold 1 placed on user {late.user_id}" in said
    said = act(late.request_id, "release", f"Release the legal hold on user {late.user_id}…",
               "Release this user's legal hold?", "Yes, release")
    assert "Legal hold 1 released" in said
    said = act(late.request_id, "retry", "Retry…", "Retry this request's unfinished slices?", "Yes, retry")
    assert "Re-sent to" in said
    page.goto(f"{console.url}/audit")
    audit = page.locator("table").inner_text()
    for action in ("request_extend", "request_hold", "request_release", "request_retry"):
        assert action in audit
    context.close()
    engine.dispose()
