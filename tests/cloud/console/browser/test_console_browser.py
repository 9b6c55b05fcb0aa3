"""Issue 6's proof in a real browser: roles, fleet, store drill-down, live events, live alerts.

Each test opens its own browser context (cookies, time zone, viewport) against one running
stack: the cloud with the console, and a real `storeedge agent run` reading a pty scanner.
Screenshots land in docs/console/ with STOREEDGE_SCREENSHOTS=1 (else a temp dir).
"""

import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from console.browser.stack import CAMPAIGN, PASSWORD, STORE, ConsoleStack
from protocol.coupons import parse_token
from protocol.ids import uuid7_str

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 20_000
EVERYONE = ["/console/", "/console/alerts", "/console/coupons", f"/console/stores/{STORE}"]
ADMIN_ONLY = ["/console/users", "/console/audit"]


@pytest.fixture
def open_as(browser: Any, stack: ConsoleStack) -> Iterator[Any]:
    """`open_as(role, **context options)`: a signed-in page in a fresh browser context."""
    contexts: list[Any] = []

    def open_as(role: str, **options: Any) -> Any:
        options.setdefault("viewport", DESKTOP)
        options.setdefault("locale", "en-GB")
        context = browser.new_context(**options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.errors = errors
        page.goto(stack.url + "/console/")
        assert "/console/login" in page.url
        page.fill("#username", role)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(stack.url + "/console/")
        return page

    yield open_as
    for context in contexts:
        context.close()


def test_login_page_and_a_wrong_password(browser: Any, stack: ConsoleStack, shots: Path) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(stack.url + "/console/")
    page.fill("#username", "viewer")
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    assert page.locator("#login-error").inner_text() == "Wrong username or password."
    page.fill("#password", "")
    page.screenshot(path=shots / "login.png")
    context.close()


@pytest.mark.parametrize(
    ("role", "allowed", "refused"),
    [
        ("viewer", EVERYONE, ADMIN_ONLY),
        ("engineer", EVERYONE, ADMIN_ONLY),
        ("admin", EVERYONE + ADMIN_ONLY, []),
    ],
)  # fmt: skip
def test_each_role_logs_in_and_is_refused_where_it_may_not_go(
    open_as: Any, stack: ConsoleStack, role: str, allowed: list[str], refused: list[str]
) -> None:
    page = open_as(role)
    assert page.locator(".whoami .role").inner_text() == role
    nav = page.locator("header nav").inner_text()
    assert ("Users" in nav) is (role == "admin")
    for path in allowed:
        response = page.goto(stack.url + path)
        assert response.status == 200, path
    for path in refused:
        response = page.goto(stack.url + path)
        assert response.status == 403, path
        assert "Not allowed" in page.locator("h1").inner_text()
        assert f"Your role ({role}) may not do this" in page.content()
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r".*/console/login$"))
    assert page.goto(stack.url + "/console/").url.startswith(stack.url + "/console/login")


def test_fleet_then_drill_into_the_store_in_the_viewers_time_zone(
    open_as: Any, stack: ConsoleStack, shots: Path
) -> None:
    page = open_as("viewer", timezone_id="Asia/Tokyo")
    row = page.locator(f'tr[data-store="{STORE}"]')
    row.wait_for()
    assert "Online" in row.inner_text()
    assert "Offline" in page.locator('tr[data-store="store-0310"]').inner_text()
    assert "Stale" in page.locator('tr[data-store="store-0107"]').inner_text()
    assert "No agent" in page.locator('tr[data-store="store-0999"]').inner_text()
    assert page.locator('[data-total="stores"]').inner_text() == "5"
    page.screenshot(path=shots / "fleet.png")
    # Times are in Tokyo: the text equals the UTC `datetime` attribute converted there.
    stamp = page.locator(f'tr[data-store="{STORE}"] time').first
    utc = datetime.fromisoformat(stamp.get_attribute("datetime").replace("Z", "+00:00"))
    local = utc.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (
        local.strftime("%H:%M:%S") in stamp.inner_text()
        or local.strftime("%H:%M") in stamp.inner_text()
    )
    assert page.locator("[data-tz]").inner_text() == "Asia/Tokyo"
    page.click(f"text={STORE}")
    page.wait_for_url(f"**/console/stores/{STORE}")
    assert page.locator('tr[data-device="scanner-front"]').get_attribute("data-state") == "online"
    assert "Scan diagnostics" in page.content()
    page.screenshot(path=shots / "store.png", full_page=True)
    assert page.errors == []


def test_filter_sort_and_paginate_from_the_keyboard(open_as: Any, stack: ConsoleStack) -> None:
    page = open_as("viewer")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("0310")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*q=0310.*"))
    assert page.locator("tbody tr[data-store]").count() == 1
    page.goto(stack.url + "/console/?faults=1&sort=backlog")
    stores = page.locator("tbody tr[data-store]").evaluate_all(
        "rows => rows.map(r => r.dataset.store)"
    )
    assert stores == ["store-0310", "store-0042"]  # most backlog first, only stores with faults
    page.locator('tr[data-store="store-0042"] th a').focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/stores/store-0042")
    page.keyboard.press("g")
    page.keyboard.press("a")
    page.wait_for_url("**/console/alerts")


def test_an_event_arrives_live_from_the_running_agent(open_as: Any, stack: ConsoleStack) -> None:
    page = open_as("viewer")
    page.goto(f"{stack.url}/console/stores/{STORE}")
    _live(page)
    page.evaluate("window.notReloaded = true")
    stack.scanner.scan("4006381333931")  # a real EAN-13
    stack.scanner.scan("LIVE-FROM-THE-SHOP-FLOOR")
    row = page.locator("#tail tbody tr", has_text="LIVE-FROM-THE-SHOP-FLOOR")
    row.wait_for()
    assert "unrecognised" in row.inner_text()
    assert "scanner-front" in row.inner_text()
    assert "product: 4006381333931" in page.locator("#tail tbody").inner_text()
    assert page.evaluate("window.notReloaded") is True


def test_an_alert_opens_when_the_scanner_is_unplugged_and_resolves_when_it_is_back(
    open_as: Any, stack: ConsoleStack, shots: Path
) -> None:
    page = open_as("engineer")
    page.goto(f"{stack.url}/console/stores/{STORE}")
    _live(page)
    alerts = page.locator("#store-alerts")
    assert "Scanner disconnected" not in alerts.inner_text()
    stack.scanner.unplug()
    try:
        alerts.locator("text=Scanner disconnected").wait_for()
        page.locator('tr[data-device="scanner-front"][data-state="offline"]').wait_for()
        assert "open" in alerts.inner_text()
        fleet = page.context.new_page()
        fleet.goto(f"{stack.url}/console/alerts?rule=scanner_disconnected")
        assert STORE in fleet.locator("table.alerts").inner_text()
        fleet.screenshot(path=shots / "alerts.png")
        fleet.goto(f"{stack.url}/console/?alerts=1")
        assert fleet.locator(f'tr[data-store="{STORE}"]').count() == 1
        fleet.close()
    finally:
        stack.scanner.replug()
    alerts.locator("text=Scanner disconnected").wait_for(state="detached")
    page.locator('tr[data-device="scanner-front"][data-state="online"]').wait_for()
    page.goto(f"{stack.url}/console/alerts?state=resolved&rule=scanner_disconnected")
    assert STORE in page.locator("table.alerts").inner_text()
    assert page.errors == []


def test_an_admin_issues_coupons_and_sees_their_qr_codes(
    open_as: Any, stack: ConsoleStack, shots: Path
) -> None:
    page = open_as("admin")
    page.goto(stack.url + "/console/coupons")
    assert CAMPAIGN in page.locator("table.campaigns").inner_text()
    page.select_option("#issue-campaign", str(stack.campaign_id))
    page.fill("#issue-count", "3")
    page.fill("#issue-value", "20")
    page.click("text=Issue with QR codes")
    page.wait_for_url("**/console/coupons/issue")
    codes = page.locator(".qr-grid svg")
    assert codes.count() == 3
    box = codes.first.bounding_box()
    assert box is not None
    assert box["width"] >= 120  # big enough for a phone camera on a printout
    assert box["width"] == box["height"]
    for item in page.locator(".qr-grid li").all():
        token = item.locator("code.token").inner_text()
        status, coupon = stack.admin("GET", f"/api/coupons/{item.get_attribute('data-coupon')}")
        assert (status, coupon["token"], coupon["value_minor"]) == (200, token, 2000)
        assert "20.00 EUR" in item.inner_text()
    page.screenshot(path=shots / "coupons-issued.png", full_page=True)
    page.goto(stack.url + "/console/audit")
    assert "3 coupons of 20.00 EUR" in page.locator("table").inner_text()
    page.screenshot(path=shots / "audit.png")
    page.goto(stack.url + "/console/users")
    page.screenshot(path=shots / "users.png")
    assert page.errors == []


def test_an_offline_double_redemption_shows_as_a_conflict_naming_both_stores(
    open_as: Any, stack: ConsoleStack, shots: Path
) -> None:
    status, body = stack.admin("POST", f"/api/campaigns/{stack.campaign_id}/coupons",
                               {"count": 1, "value": 1500})  # fmt: skip
    assert status == 201, body
    token, coupon_id = body["coupons"][0]["token"], body["coupons"][0]["coupon_id"]
    # The running agent redeems it at its scanner (verified offline, reserved online)…
    stack.scanner.scan(token)
    _until(lambda: _redemptions(stack) == {STORE: 1}, "the agent's redemption never arrived")
    # …and store-0042, offline at the time, had redeemed it too: its sync arrives now.
    claims = parse_token(token).claims
    payload = {"redemption_id": uuid7_str(), "campaign_id": claims.campaign_id,
               "coupon_id": coupon_id, "key_id": claims.key_id, "value_minor": 1500,
               "currency": "EUR", "single_use": True, "reservation": "offline"}  # fmt: skip
    assert stack.ingest("store-0042", "coupon.redeemed", payload) == "accepted"
    page = open_as("viewer")
    page.goto(stack.url + "/console/coupons")
    conflict = page.locator(f'tr[data-conflict="{coupon_id}"]')
    assert conflict.count() == 1
    assert sorted(conflict.locator("a").all_inner_texts()) == ["store-0042", STORE]
    assert "offline" in conflict.inner_text()
    row = page.locator(f'tr[data-campaign="{stack.campaign_id}"]')
    assert row.locator('[data-stat="conflicts"]').inner_text() == "1"
    assert row.locator('[data-stat="redeemed"]').inner_text() == "1"
    # The redemptions chart counts both stores once the evaluator has rolled the events up.
    chart_rows = page.locator("#redemptions-h ~ table tr[data-store]")
    _until(lambda: page.reload() is not None and chart_rows.count() == 2, "no redemptions chart")
    assert page.locator("svg.chart rect.s0").count() == 1
    page.screenshot(path=shots / "coupons.png", full_page=True)
    conflict.locator("a", has_text="store-0042").click()
    page.wait_for_url("**/console/stores/store-0042")
    assert str(coupon_id) in page.locator("#coupons-h + table").inner_text()
    assert page.errors == []


def test_the_store_page_shows_a_refused_config_and_its_alert(
    open_as: Any, stack: ConsoleStack, shots: Path
) -> None:
    page = open_as("engineer")
    page.goto(f"{stack.url}/console/stores/{STORE}")
    _live(page)
    page.locator('#store-config tr[data-config-state="in_sync"]').wait_for()
    document = {"document": {"devices": {"scanner-9": {}}}, "author": "head office"}
    status, body = stack.admin("PUT", f"/api/stores/{STORE}/config", document)
    assert status == 201, body
    try:
        # The agent fetches it, refuses it (no scanner-9 in its agent.toml), says so in its
        # heartbeat; the page updates live, and the evaluator opens the alert.
        refused = page.locator('#store-config tr[data-config-state="refused"]')
        refused.wait_for()
        assert "devices.scanner-9: no such device on this box" in refused.inner_text()
        alert = page.locator("#store-alerts tr", has_text="Config refused")
        alert.wait_for()
        assert "open" in alert.inner_text()
        assert "devices.scanner-9" in alert.inner_text()
        page.screenshot(path=shots / "store-config.png", full_page=True)
    finally:
        fixed = {"document": {"devices": None}, "author": "head office", "comment": "undo"}
        assert stack.admin("PUT", f"/api/stores/{STORE}/config", fixed)[0] == 201
    page.locator('#store-config tr[data-config-state="in_sync"]').wait_for()
    alert.wait_for(state="detached")
    healed = page.locator("#store-config tr").last.inner_text()
    assert "last refusal, since healed" in healed
    page.goto(f"{stack.url}/console/alerts?state=resolved&rule=config_refused")
    assert STORE in page.locator("table.alerts").inner_text()
    assert page.errors == []


def test_readable_on_a_phone(open_as: Any, stack: ConsoleStack, shots: Path) -> None:
    page = open_as("viewer", viewport=PHONE, is_mobile=True, has_touch=True)
    # No horizontal scrolling: the table turns into one card per store.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=shots / "fleet-phone.png", full_page=True)
    page.goto(f"{stack.url}/console/stores/{STORE}")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=shots / "store-phone.png")


def _live(page: Any) -> None:
    """Wait for the page's SSE stream to be open.

    A selector, not `wait_for_function`: Playwright polls a function with eval, which the
    console's Content-Security-Policy (script-src 'self') rightly refuses.
    """
    page.locator('body[data-live-state="connected"]').wait_for(state="attached")


def _redemptions(stack: ConsoleStack) -> dict[str, int]:
    status, stats = stack.admin("GET", f"/api/campaigns/{stack.campaign_id}/stats")
    assert status == 200, stats
    return {s["store_id"]: s["redemptions"] for s in stats["stores"]}


def _until(predicate: Callable[[], bool], message: str, timeout: float = WAIT_MS / 1000) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.1)
