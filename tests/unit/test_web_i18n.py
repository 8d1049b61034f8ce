"""Every string the site shows comes from the catalogue, in both languages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from postwacht.adapters.web import i18n
from postwacht.adapters.web.auth import PasswordProblem
from postwacht.adapters.web.pages import State
from postwacht.core.roles import Role
from postwacht.records.store import ReleaseMode, Review, Status

WEB = Path(i18n.__file__).parent
LITERAL_KEY = re.compile(
    r"""(?:\bt|words\(\)|words|Phrase|PageError\(\d+,)\s*\(?\s*["']([a-z_]+\.[a-z_0-9]+)["']""")
"""A key passed literally: t('held.title'), words("login.failed"), Phrase("expect.text",
PageError(403, "error.role"."""
BUILT_KEY = re.compile(r"""t\('([a-z_]+)\.' ~ """)


def used_keys() -> set[str]:
    keys: set[str] = set()
    for path in [*WEB.glob("*.py"), *WEB.glob("templates/*.html")]:
        keys.update(LITERAL_KEY.findall(path.read_text()))
    keys.update(str(p) for p in PasswordProblem)
    # Keys made from a vocabulary: every value of it must be in the catalogue.
    keys.update(f"status.{s}" for s in Status)
    keys.update(f"state.{s}" for s in State)
    keys.update(f"role.{r}" for r in Role)
    keys.update(f"action.{a}" for a in Review)
    keys.update(f"release.{m}" for m in (ReleaseMode.PLAIN, ReleaseMode.ROUTE,
                                          ReleaseMode.OVERRIDE))
    keys.update(f"done.{d}" for d in ("release", "delete", "approve", "decline", "dismiss"))
    return keys


def test_both_catalogues_have_the_same_keys() -> None:
    assert set(i18n.EN) == set(i18n.NL)


def test_every_key_the_site_uses_is_in_the_catalogue() -> None:
    used = used_keys()
    assert len(used) > 100
    assert used - set(i18n.EN) == set()


def test_every_prefix_built_in_a_template_is_a_vocabulary_the_test_covers() -> None:
    prefixes = {p for path in WEB.glob("templates/*.html")
                for p in BUILT_KEY.findall(path.read_text())}
    assert prefixes == {"status", "state", "role", "action", "release", "done"}


@pytest.mark.parametrize("lang", ["en", "nl"])
def test_every_placeholder_is_the_same_in_both_languages(lang: str) -> None:
    table = i18n.CATALOGUES[lang]
    for key, text in table.items():
        assert set(re.findall(r"\{(\w+)\}", text)) == set(
            re.findall(r"\{(\w+)\}", i18n.EN[key])), key


def test_no_template_shows_a_word_outside_the_catalogue() -> None:
    """Text between tags is a catalogue call or a value, never a bare English word."""
    for path in WEB.glob("templates/*.html"):
        source = re.sub(r"{[{%#].*?[}%#]}", "", path.read_text(), flags=re.DOTALL)
        source = re.sub(r"<(style|title)[^>]*>.*?</\1>", "", source, flags=re.DOTALL)
        for text in re.findall(r">([^<]+)<", source):
            stray = re.sub(r"[\s#(),:·—<>/-]|&[a-z]+;|Postwacht", "", text)
            assert stray == "", f"{path.name}: {text!r}"


def test_the_browser_picks_the_language() -> None:
    assert i18n.Words("nl")("nav.logout") == "Afmelden"
    assert i18n.Words("fr").lang == "en"
    assert i18n.Words("en")("login.retry", at="12:00 UTC") == "Try again after 12:00 UTC."
