"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; no download).

The app runs on a real HTTP server in a thread; the sale comes through the real terminal API with a real
card's ARQC, so the test covers the path a demo takes: terminal → API → events → SSE → the browser's table.
If Chromium is missing or cannot start, the tests fail (a dashboard nobody has seen in a browser is untested).
"""

from __future__ import annotations

import datetime
import json
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import reader
from browser import TIMEOUT_MS, checked_page, chromium
from flask import Flask
from hostserver import served_in_thread
from playwright.sync_api import Browser, Page, expect
from werkzeug.serving import make_server

from acquirer_stub.instance import Instance
from acquirer_stub.serving import Serving
from acquirer_stub.store import db
from emvcore.bcd import encode_cn
from firmware.apps.cards.cardfile import PlainCard
from firmware.issuing.layout import World
from hostproto import signing

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"



# -- a live server, a browser, a terminal ------------------------------------------------------------------------


@pytest.fixture
def live(app: Flask) -> Iterator[str]:
    """The app on a real socket; short feed timings so a closed tab frees its stream thread within a second."""
    app.config.update(FEED_POLL_SECONDS=0.1, FEED_HEARTBEAT_SECONDS=0.5, FEED_MAX_SECONDS=60)
    threads_before = threading.active_count()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="dashboard-live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        deadline = time.monotonic() + 5  # request threads (an SSE stream notices the closed tab at its heartbeat)
        while threading.active_count() > threads_before and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with checked_page(browser, 1400, 1000) as page:
        yield page


class Terminal:
    """The demo terminal over real HTTP: every call signed like the real terminal's."""

    def __init__(self, base: str, world: World) -> None:
        entry = world.terminals()[0]
        self.base, self.world, self.tid, self.key = base, world, entry["tid"], bytes.fromhex(entry["key"])
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
        self.stan = 0

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, query: str = "") -> tuple[int, Any]:
        raw = b"" if body is None else json.dumps(body).encode()
        headers = {**signing.sign(self.key, self.tid, method, path, raw, now=time.time()),
                   "Content-Type": "application/json"}
        request = urllib.request.Request(self.base + path + query, data=raw if body is not None else None,
                                         headers=headers, method=method)
        try:
            with self.opener.open(request, timeout=10) as answer:
                status, data = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, data = error.code, error.read()
        return status, json.loads(data) if data else None

    def next_stan(self) -> str:
        self.stan += 1
        return f"{self.stan:06d}"

    def sale(self, issuer: str, amount: int) -> dict[str, Any]:
        """Sign on, tap the issuer's world card (online ARQC) and send the 0200."""
        mmdd = f"{datetime.date.today():%m%d}"
        status, signon = self.call("POST", "/api/v1/signon",
                                   {"mti": "0800", "tid": self.tid, "stan": self.next_stan(), "local_date": mmdd})
        assert status == 200, signon
        entry = next(c for c in self.world.cards() if c["issuer"] == issuer)
        card = PlainCard.load(self.world.path(Path(entry["file"])))
        values = reader.terminal_data(amount, ttq=bytes.fromhex("26800080"))
        aid = bytes.fromhex("A000000333010101" if entry["kind"] == "debit" else "A000000333010102")
        answer, data = reader.tap(card.chip(), aid, values)
        assert answer.ok
        icc = {tag: values[tag] for tag in (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37)}
        icc.update({tag: data[tag] for tag in (0x9F26, 0x9F10, 0x9F36, 0x82, 0x5F34)})
        icc[0x5A] = encode_cn(entry["pan"], 8)
        expiry = datetime.date.fromisoformat(entry["expiry"])
        status, body = self.call("POST", "/api/v1/authorizations", {
            "mti": "0200", "tid": self.tid, "stan": self.next_stan(), "local_date": mmdd, "batch": signon["batch"],
            "pan": entry["pan"], "psn": f"{entry['psn']:02d}", "expiry": f"{expiry:%y%m}", "amount": amount,
            "currency": "156", "entry_mode": "072",
            "icc": {f"{tag:X}": value.hex().upper() for tag, value in icc.items()},
        })
        assert status == 200, body
        return body


def _log_in(page: Page, base: str, world: World) -> None:
    user = next(u for u in world.users() if u["role"] == "operator")
    page.goto(f"{base}/dashboard/")
    expect(page).to_have_url(f"{base}/login?next=%2Fdashboard%2F")  # anonymous: sent to the form first
    page.fill("input[name=username]", user["username"])
    page.fill("input[name=password]", user["password"])
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base}/dashboard/")
    expect(page.locator("h1")).to_have_text("Overview")


def _screenshot(page: Page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_SIGNATURE)


# -- the scenarios -----------------------------------------------------------------------------------------------


def test_login_live_sale_and_lost_phone(live: str, page: Page, world: World, instance: Instance,
                                        tmp_path: Path) -> None:
    _log_in(page, live, world)
    expect(page.locator("#feed-status")).to_have_text("live")
    page.evaluate("window.__notReloaded = true")
    expect(page.locator("#kpi-approval-detail")).to_have_text("0 approved / 0 declined")
    expect(page.locator("#kpi-approval")).to_have_text("—")
    expect(page.locator("#chart-volume rect.ok")).to_have_count(0)

    answer = Terminal(live, world).sale("icbc-debit", 43_21)
    assert answer["rc"] == "00"
    # the headline figures and the charts follow the feed, without a reload
    expect(page.locator("#kpi-approval-detail")).to_have_text("1 approved / 0 declined")
    expect(page.locator("#kpi-approval")).to_have_text("100.0 %")
    expect(page.locator("#chart-volume rect.ok")).to_have_count(1)
    expect(page.locator("#chart-latency")).not_to_contain_text("no data in this window")
    row = page.locator("#feed-rows tr", has_text="¥43.21")
    expect(row).to_be_visible()  # arrived over SSE
    expect(row).to_contain_text("00 Approved")
    expect(row).to_contain_text("QP000001")
    assert page.evaluate("window.__notReloaded === true"), "the page reloaded instead of updating live"
    masked = row.locator("td.pan").inner_text()
    assert "*" in masked and len(masked.replace("*", "")) <= 10
    _screenshot(page, tmp_path / "dashboard.png")

    row.locator("a", has_text="details").click()  # drill-down into the decoded message and ICC data
    expect(page.locator("table.icc")).to_contain_text("Application Cryptogram")

    connection = db.connect(instance.database)
    try:
        device = connection.execute("SELECT id FROM devices ORDER BY id LIMIT 1").fetchone()["id"]
        page.click("nav >> text=Devices & tokens")
        device_row = page.locator(f'tr[data-device="{device}"]')
        token_rows = page.locator("#tokens tbody tr")
        expect(device_row.locator(".wallet-state")).to_have_text("on")
        expect(token_rows.locator(".token-status")).to_have_text("active")

        device_row.locator("select[name=reason]").select_option("LOST")
        device_row.get_by_role("button", name="Suspend wallet").click()
        expect(device_row.locator(".wallet-state")).to_have_text("off (lost phone)")
        expect(token_rows.locator(".token-status")).to_have_text("suspended (LOST_DEVICE)")
        assert _states(connection, device) == (0, ["suspended"])

        device_row.get_by_role("button", name="Resume wallet").click()
        expect(device_row.locator(".wallet-state")).to_have_text("on")
        expect(token_rows.locator(".token-status")).to_contain_text("active")
        assert _states(connection, device) == (1, ["active"])
        _screenshot(page, tmp_path / "devices.png")
    finally:
        connection.close()


def _states(connection: sqlite3.Connection, device: str) -> tuple[int, list[str]]:
    wallet = connection.execute("SELECT wallet_enabled FROM devices WHERE id = ?", (device,)).fetchone()[0]
    tokens = [r[0] for r in connection.execute("SELECT status FROM tokens WHERE device_id = ? ORDER BY id", (device,))]
    return wallet, tokens


def test_the_virtual_ecr_follows_a_sale_live(live: str, page: Page, world: World) -> None:
    _log_in(page, live, world)
    page.click("nav >> text=Virtual ECR")
    page.fill("input[name=amount]", "8.80")
    page.click("button:has-text('Send sale')")
    sale = page.locator("#ecr-rows tr").first
    expect(sale.locator(".state")).to_have_text("pending")
    expect(page.locator("#feed-status")).to_have_text("live")
    page.evaluate("window.__notReloaded = true")

    terminal = Terminal(live, world)
    status, work = terminal.call("GET", "/api/v1/ecr/next")
    assert status == 200 and work["amount"] == 880
    expect(sale.locator(".state")).to_have_text("offered")
    status, _ = terminal.call("POST", f"/api/v1/ecr/{work['id']}/accept", {"offer": work["offer"], "seconds": 60})
    assert status == 200
    expect(sale.locator(".state")).to_have_text("taken")
    status, _ = terminal.call("POST", f"/api/v1/ecr/{work['id']}/result",
                              {"rc": "00", "text": "APPROVED", "stan": "000321"})
    assert status == 200
    expect(sale.locator(".state")).to_have_text("done")
    expect(sale).to_contain_text("APPROVED")
    expect(sale).to_contain_text("000321")
    assert page.evaluate("window.__notReloaded === true")


def test_a_feed_refused_as_busy_retries_and_resumes_where_it_stopped(app: Flask, browser: Browser, world: World,
                                                                      page: Page) -> None:
    """The server runs only so many streams (here one) and answers the next 503; the browser's EventSource gives
    up on a 503, so the page retries by itself and, once a stream is free, shows what happened meanwhile."""
    app.config.update(FEED_POLL_SECONDS=0.1, FEED_HEARTBEAT_SECONDS=0.5)
    with served_in_thread(app, Serving(feed_streams=1)) as port:
        base = f"http://127.0.0.1:{port}"
        _log_in(page, base, world)
        expect(page.locator("#feed-status")).to_have_text("live")  # this tab holds the only stream
        second = page.context.new_page()
        second.set_default_timeout(TIMEOUT_MS)
        second.goto(f"{base}/dashboard/")
        expect(second.locator("#feed-status")).to_have_text("server busy, retrying…")
        answer = Terminal(base, world).sale("icbc-debit", 12_34)  # while the second tab has no stream
        assert answer["rc"] == "00"
        page.close()  # the first tab goes away: its stream ends and frees the slot
        expect(second.locator("#feed-status")).to_have_text("live", timeout=TIMEOUT_MS)  # a retry every 5 s
        expect(second.locator("#feed-rows tr", has_text="¥12.34")).to_be_visible(timeout=TIMEOUT_MS)
        second.close()


# -- every page on a desktop and on a phone ------------------------------------------------------------------------

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
"""Kept after the run: var/screenshots/<width>x<height>/<page>.png, every page at both sizes."""
SIZES = ((1280, 800), (390, 844))
OPERATOR_PAGES = ("/dashboard/", "/dashboard/transactions", "/dashboard/terminals", "/dashboard/terminals/QP000001",
                  "/dashboard/devices",
                  "/dashboard/reversals", "/dashboard/exceptions", "/dashboard/settlements", "/dashboard/clearing",
                  "/dashboard/transit", "/dashboard/issuers", "/dashboard/sms", "/dashboard/ecr")
CARDHOLDER_PAGES = ("/cardholder/", "/cardholder/sms")


def _log_in_as(page: Page, base: str, world: World, role: str) -> None:
    user = next(u for u in world.users() if u["role"] == role)
    page.goto(f"{base}/login")
    page.fill("input[name=username]", user["username"])
    page.fill("input[name=password]", user["password"])
    page.click("button[type=submit]")
    expect(page.locator("h1")).not_to_have_text("Log in")


def _fits(page: Page, size: tuple[int, int], name: str, html: Path) -> None:
    """No sideways scrolling of the page itself (a wide table scrolls inside its own box); a screenshot kept, and
    the page's HTML left under basetemp for the end-of-session secret scan."""
    page_width = page.evaluate("document.documentElement.scrollWidth")
    assert page_width <= size[0], f"{name} is {page_width} px wide at a {size[0]} px viewport"
    folder = SCREENSHOTS / f"{size[0]}x{size[1]}"
    folder.mkdir(parents=True, exist_ok=True)
    _screenshot(page, folder / f"{name}.png")
    html.mkdir(exist_ok=True)
    (html / f"{name}.html").write_text(page.content(), encoding="utf-8")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # layout, not storage
@pytest.mark.parametrize(("width", "height"), SIZES)
def test_every_page_fits_the_screen(live: str, browser: Browser, world: World, width: int, height: int,
                                    tmp_path: Path) -> None:
    size, html = (width, height), tmp_path / "pages"
    Terminal(live, world).sale("icbc-debit", 43_21)
    with checked_page(browser, width, height) as page:
        page.goto(f"{live}/login")
        _fits(page, size, "login", html)
        _log_in_as(page, live, world, "operator")
        for path in OPERATOR_PAGES:
            page.goto(live + path)
            _fits(page, size, path.strip("/").replace("/", "-") or "dashboard", html)
        page.goto(f"{live}/dashboard/")
        page.locator("#feed-rows a", has_text="details").first.click()
        expect(page.locator("table.icc")).to_be_visible()
        _fits(page, size, "dashboard-tx", html)
        page.goto(f"{live}/password")
        _fits(page, size, "password", html)
    with checked_page(browser, width, height) as page:
        _log_in_as(page, live, world, "cardholder")
        for path in CARDHOLDER_PAGES:
            page.goto(live + path)
            _fits(page, size, path.strip("/").replace("/", "-"), html)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_lost_phone_button_is_in_reach_on_a_phone(live: str, browser: Browser, world: World) -> None:
    width, height = SIZES[1]
    with checked_page(browser, width, height) as page:
        _log_in_as(page, live, world, "cardholder")
        button = page.get_by_role("button", name="I lost this phone: turn the wallet off")
        expect(button).to_be_visible()
        box = button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box
        assert box["y"] + box["height"] <= height, f"below the first screen: {box}"
        assert box["height"] >= 44, f"too small for a thumb: {box}"  # Apple's and Google's minimum touch target
        suspend = page.get_by_role("button", name="Suspend").first
        suspend_box = suspend.bounding_box()
        assert suspend_box is not None and suspend_box["x"] + suspend_box["width"] <= width, suspend_box
        button.click()
        expect(page.get_by_role("button", name="I found this phone: turn the wallet on")).to_be_visible()


def test_search_by_rrn_and_last_four_and_export_what_is_shown(live: str, page: Page, world: World,
                                                              tmp_path: Path) -> None:
    terminal = Terminal(live, world)
    first = terminal.sale("icbc-debit", 11_11)
    second = terminal.sale("icbc-debit", 22_22)
    assert first["rc"] == second["rc"] == "00" and first["rrn"] != second["rrn"]
    _log_in(page, live, world)
    page.click("nav >> text=Transactions")
    page.fill("input[name=rrn]", second["rrn"])
    page.click("button:has-text('Search')")
    rows = page.locator("#results tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td.rrn")).to_have_text(second["rrn"])
    expect(rows.first).to_contain_text("¥22.22")

    card = next(c for c in world.cards() if c["issuer"] == "icbc-debit")
    page.fill("input[name=rrn]", "")
    page.fill("input[name=card]", card["pan"][-4:])
    page.click("button:has-text('Search')")
    expect(rows).to_have_count(2)
    shown = sorted(rows.evaluate_all("rows => rows.map(row => row.dataset.id)"))
    with page.expect_download() as download:
        page.click("#csv-export")
    path = tmp_path / "export.csv"
    download.value.save_as(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("id,received,terminal")
    assert sorted(line.split(",", 1)[0] for line in lines[1:]) == shown
    assert card["pan"] not in path.read_text(encoding="utf-8")
