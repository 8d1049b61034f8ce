"""The web review in a real browser, against real servers.

Chromium (driven by Playwright) talks to `postwacht web` on loopback, which reads the
records store of a real Postfix lab: the daemon holds mail, captures what review may
see of it, and carries out what the site asks through the release helper; the sink
shows what left.
"""

from __future__ import annotations

from playwright.sync_api import Browser

from tests.labs.browser import browser_context, static_page


def test_the_browser_loads_a_page_from_loopback(browser: Browser) -> None:
    with static_page() as url, browser_context(browser) as context:
        page = context.new_page()
        response = page.goto(url)
        assert response is not None
        assert response.ok
        assert page.title() == "lab page"
