"""Pages in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; no browser download).

If Chromium is missing or cannot start, a test that needs it fails: a page nobody has seen in a browser is
untested. `checked_page` fails the test on any JavaScript error or Content-Security-Policy violation, and on a
document served without a script-src 'self' policy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's browser (apt-get install -y chromium); "
                    ".ci/run does this when it is absent")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                                 timeout=60_000)
        except PlaywrightError as error:
            pytest.fail(f"Chromium at {CHROMIUM} could not start: {error}")
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def checked_page(browser: Browser, width: int, height: int) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if "Content Security Policy" in message.text
            else None)  # Chromium reports every CSP violation (a blocked script, style or frame) here
    policies: list[str] = []
    page.on("response", lambda response: policies.append(response.headers.get("content-security-policy", ""))
            if response.request.resource_type == "document" else None)
    yield page
    context.close()
    assert errors == [], f"JavaScript errors or CSP violations on the page: {errors}"
    assert policies and all("script-src 'self'" in policy for policy in policies), policies
