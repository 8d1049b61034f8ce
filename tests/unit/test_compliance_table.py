"""docs/nta7516.md cannot drift from the tests: every claim names tests that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import ROOT

TABLE = ROOT / "docs" / "nta7516.md"
TEST_ID = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def claims() -> list[str]:
    """The rows of the table of what Postwacht enforces or supports."""
    text = TABLE.read_text()
    section = text.split("## What Postwacht enforces or supports", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| requirement")]


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")}


def test_every_claim_names_tests_that_exist() -> None:
    rows = claims()
    assert len(rows) >= 10
    for row in rows:
        named = TEST_ID.findall(row.rsplit("|", 2)[-2])
        assert named, f"names no test: {row[:80]}"
        for file, name in named:
            assert (ROOT / file).is_file(), f"{file} does not exist ({row[:60]})"
            assert name in defined_tests(ROOT / file), f"{file}::{name} does not exist"


def test_the_limits_are_named_with_what_to_do() -> None:
    text = TABLE.read_text()
    limits = text.split("## What a gateway filter cannot do", 1)[1]
    rows = [line for line in limits.splitlines()
            if line.startswith("| ") and not line.startswith("| requirement")]
    assert any("eIDAS" in row for row in rows)
    assert all(row.count("|") == 4 and row.split("|")[3].strip() for row in rows)
