"""Shared fixtures: the example policy and a way to write policies for a test."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from postwacht.config.compiler import load
from postwacht.core.policy import Policy

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
