"""Look-alike detection: skeletons, edit distance, and an index that does not scan."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from postwacht.core.lookalike import LookalikeIndex, osa_distance, skeleton
from postwacht.core.vocabulary import LookalikeHow


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("samen-veilig", "samen-veiiig"),
        ("samen-veilig", "samen-ve1lig"),
        ("samen-veilig", "samenveilig"),
        ("modern", "modem"),  # rn / m
        ("wolters", "vvolters"),
        ("bol", "b0l"),
        ("paypal", "раураl"),  # Cyrillic
        ("cafe", "café"),
    ],
)
def test_confusable_spellings_share_a_skeleton(a: str, b: str) -> None:
    assert skeleton(a) == skeleton(b)


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("utrecht", "utrecht", 0),
        ("utrecht", "utrech", 1),
        ("utrecht", "utrechts", 1),
        ("utrecht", "utrekht", 1),
        ("utrecht", "turecht", 1),  # adjacent swap counts once
        ("utrecht", "tuercht", 2),
        ("utrecht", "amsterdam", 3),  # capped at limit + 1
    ],
)
def test_edit_distance_counts_a_swap_as_one_edit(a: str, b: str, distance: int) -> None:
    assert osa_distance(a, b, 2) == distance


def _reference_osa(a: str, b: str) -> int:
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


@given(st.text("abcde", max_size=8), st.text("abcde", max_size=8), st.integers(0, 3))
def test_capped_distance_agrees_with_the_full_table(a: str, b: str, limit: int) -> None:
    assert osa_distance(a, b, limit) == min(_reference_osa(a, b), limit + 1)


@given(st.text("abcdefgh", min_size=5, max_size=10), st.text("abcdefgh", min_size=5, max_size=10))
def test_index_finds_exactly_the_names_within_the_distance(protected: str, candidate: str) -> None:
    index = LookalikeIndex([f"{protected}.nl"], max_distance=1, min_length=5)
    match = index.match(f"{candidate}.com")
    within = osa_distance(skeleton(protected), skeleton(candidate), 1) <= 1
    assert (match is not None) == within


def test_a_domain_is_never_a_lookalike_of_its_own_registrable_name() -> None:
    index = LookalikeIndex(["zorg.utrecht.nl"], max_distance=1, min_length=5)
    assert index.match("post.utrecht.nl") is None
    found = index.match("utrecht.com")
    assert found is not None
    assert found.protected == "zorg.utrecht.nl"


def test_closest_protected_name_wins() -> None:
    index = LookalikeIndex(["utrecht.nl", "utrechts.nl"], max_distance=1, min_length=5)
    found = index.match("utrechts.com")
    assert found is not None
    assert (found.protected, found.distance) == ("utrechts.nl", 0)


def _nearest(protected: list[str], candidate: str, max_distance: int, min_length: int
             ) -> tuple[str, int] | None:
    """The first closest protected label by brute force: what the index must find."""
    folded = skeleton(candidate)
    best: tuple[int, int] | None = None
    for i, label in enumerate(protected):
        distance = osa_distance(folded, skeleton(label), max_distance)
        if distance > max_distance or (distance and len(skeleton(label)) < min_length):
            continue
        best = min(best or (distance, i), (distance, i))
    return None if best is None else (f"{protected[best[1]]}.test", best[0])


@given(st.lists(st.text("abcx01-", min_size=1, max_size=7), min_size=1, max_size=40),
       st.text("abcx01-", min_size=1, max_size=8), st.integers(0, 2), st.integers(1, 5))
def test_index_finds_the_first_closest_of_many_names(
    labels: list[str], candidate: str, max_distance: int, min_length: int
) -> None:
    # Few letters, so that many names share starts, ends and one another's edits; top
    # level domains without rules in the public suffix list.
    protected = [label for label in dict.fromkeys(labels) if label.strip("-")]
    candidate = candidate.strip("-") or "a"
    index = LookalikeIndex([f"{p.strip('-')}.test" for p in protected], max_distance,
                           min_length)
    found = index.match(f"{candidate}.example")
    nearest = _nearest([p.strip("-") for p in protected], candidate, max_distance, min_length)
    if nearest is not None:
        assert found is not None
        assert (found.how, found.protected, found.distance) == (
            LookalikeHow.SIMILAR, *nearest)
    else:
        assert found is None or found.how is LookalikeHow.EMBEDDED


def test_a_typo_is_found_among_100_000_names_that_differ_in_one_digit() -> None:
    names = [f"gemeente{n:05d}.nl" for n in range(100_000)]
    index = LookalikeIndex(names, max_distance=1, min_length=5)
    found = index.match("gemeente1234.com")  # a digit dropped: 10 names are one edit away
    assert found is not None
    assert (found.protected, found.distance) == ("gemeente01234.nl", 1)
    assert index.match("gemeinde-amsterdam.nl") is None


def test_the_first_name_whose_whole_spelling_is_a_label_is_named() -> None:
    index = LookalikeIndex(["zorg.bjz-utrecht.nl", "bjzutrecht.nl", "jeugd.bjzutrecht.com"],
                           max_distance=1, min_length=5)
    found = index.match("bjzutrechtnl.example.org")
    assert found is not None
    assert (found.protected, found.how) == ("zorg.bjz-utrecht.nl", LookalikeHow.EMBEDDED)


def test_a_protected_public_suffix_is_never_named() -> None:
    # github.io is a public suffix: anyone may register under it, so a name like it
    # says nothing; www.ck is an exception to *.ck, registrable like any other name.
    index = LookalikeIndex(["github.io", "x.ck", "www.ck"], max_distance=1, min_length=3)
    assert index.match("githubb.io") is None
    assert index.match("github-io.example.org") is None
    found = index.match("wvw.example")
    assert found is not None
    assert found.protected == "www.ck"
