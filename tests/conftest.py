"""Shared fixtures: the example policy, a way to write policies for a test, the
PostgreSQL lab and a real browser."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from postwacht.config.compiler import load
from postwacht.core.policy import Policy

from tests.labs.browser import launch_chromium
from tests.labs.postgres import PostgresLab

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_POLICY = ROOT / "policies" / "example.yaml"
INTEGRATION = ROOT / "tests" / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests under tests/integration start real servers (Postfix needs root): they carry
    the `integration` marker, and outside CI a non-root run skips them and says why. In
    CI they run, and fail loudly if they cannot."""
    skip = pytest.mark.skip(reason="integration test: needs root to start a private Postfix "
                                   "(run `make test` as root, as CI does)")
    for item in items:
        if INTEGRATION in item.path.parents:
            item.add_marker(pytest.mark.integration)
            if os.geteuid() != 0 and not os.environ.get("CI"):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def example_policy() -> Policy:
    return load(EXAMPLE_POLICY)


@pytest.fixture
def write_policy(tmp_path: Path) -> Callable[[str], Path]:
    """Write a policy text (dedented) to a file and return its path."""

    def write(text: str, name: str = "policy.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def postgres_lab() -> Iterator[PostgresLab]:
    """A private PostgreSQL 15 cluster on loopback for the whole run, removed after it;
    each test takes a database of its own (`postgres_lab.new_database()`). Needs root."""
    if os.geteuid() != 0:
        pytest.fail("the PostgreSQL lab needs root (initdb runs as the postgres user)")
    lab = PostgresLab()
    try:
        lab.build()
        lab.start()
        yield lab
    finally:
        lab.cleanup()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright, for one test module; each test
    opens a fresh context of its own (`tests.labs.browser.browser_context`). Not for the
    whole run: while Playwright's synchronous API is running, the main thread counts as
    inside an event loop, and `asyncio.run` in any later test would fail."""
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()
