"""A real browser for the web review: Debian's Chromium, driven by Playwright.

Playwright's own browser downloads are not used: the tests launch the system's
`chromium` (`make test` installs it) headless, with the flags that keep it from reaching
anything but loopback (no background networking, component updates, sync or QUIC) and,
since the tests run as root, without its sandbox. Each test takes a fresh context (no
cookies, a chosen locale), so tests never share a sign-in.

`ScriptWatch` proves that nothing a held message carries ran in the page: the test
messages set `document.title` from a script and from an image's error handler, and raise
a dialog if they can; the watch remembers the title the page had and every dialog.
"""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Dialog,
    Page,
    Playwright,
    ViewportSize,
    expect,
)

from tests.labs.util import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--no-sandbox",  # root cannot use Chromium's sandbox
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
SCRIPT_MARK = "pwned"
"""What the test messages' scripts would write into the page's title."""
HOSTILE_HTML = (
    "<html><body><p>Zie bijlage.</p>"
    f"<script>document.title='{SCRIPT_MARK}'</script>"
    f"<img src=x onerror=\"document.title='{SCRIPT_MARK}'\">"
    f"<script>alert('{SCRIPT_MARK}')</script>"
    "</body></html>"
)
"""An HTML body whose scripts, if any ran, would change the title or open a dialog."""


def launch_chromium(playwright: Playwright) -> Browser:
    """The system's Chromium, headless; fails the test (not skips) when it is missing."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium package "
                    "(`make test` does)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_FLAGS))


@contextmanager
def browser_context(browser: Browser, locale: str = "en-US") -> Iterator[BrowserContext]:
    """A fresh context (no cookies) at the screenshots' viewport, closed afterwards."""
    context = browser.new_context(locale=locale, viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    try:
        yield context
    finally:
        context.close()


def sign_in(page: Page, base_url: str, name: str, password: str) -> None:
    """Sign in through the login form and wait until the held list shows."""
    page.goto(f"{base_url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.locator("form[action$='/login'] [type=submit]").click()
    expect(page).to_have_url(re.compile(r"/held"))


def csrf_token(page: Page) -> str:
    """The CSRF token of the page's forms, as a hand-made request would copy it."""
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    assert token, "the page has no form with a CSRF token"
    return token


@dataclass
class ScriptWatch:
    """Attach to a page before it loads hostile content; `assert_nothing_ran` after."""

    page: Page
    dialogs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def assert_nothing_ran(self, title: str) -> None:
        """The page kept `title`, raised no dialog, and shows the script tag as text."""
        assert self.page.title() == title
        assert SCRIPT_MARK not in self.page.title()
        assert self.dialogs == []
        expect(self.page.get_by_text("<script>", exact=False).first).to_be_visible()


def _page_handler(body: bytes) -> type[http.server.BaseHTTPRequestHandler]:
    class StaticPage(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/" else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return StaticPage


@contextmanager
def static_page(html: str = "<!doctype html><title>lab page</title><p>on loopback</p>",
                ) -> Iterator[str]:
    """A tiny HTTP server on loopback serving `html` (no CSP: whatever it holds runs);
    yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()),
                                             _page_handler(html.encode()))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
