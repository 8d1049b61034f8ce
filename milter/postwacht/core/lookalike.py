"""Look-alike domains: names a person could mistake for one the policy protects.

Each name is reduced to a skeleton (the registrable label with homoglyphs, digit/letter
swaps and hyphens folded away), so `samen-veiIig.nl`, `samen-ve1lig.com` and
`samenveilig.nl` share the skeleton of `samen-veilig.nl`. Remaining typos (a dropped,
added, changed or swapped character) are found by edit distance on the skeletons.

To stay O(labels) per lookup however many domains are protected, the index stores each
protected skeleton under its deletion neighbourhood (every string left after deleting up to
`max_distance` characters); two skeletons within that distance share a key, so a lookup
probes the candidate's own neighbourhood and checks only the few names it finds.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from publicsuffixlist import PublicSuffixList

from postwacht.core.names import to_unicode
from postwacht.core.vocabulary import LookalikeHow

# Characters that render (nearly) alike in common fonts, folded to one representative.
# Sources: Unicode confusables (UTS #39) for Cyrillic, Greek, Armenian and Latin
# look-alikes (dotless i, iota, script g); digit/letter swaps seen in phishing domains
# (0/o, 1/l/i, 3/e, 5/s). Compatibility forms (fullwidth, mathematical, circled) are
# folded by NFKD first.
_FOLD = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "і": "l", "ј": "j", "к": "k", "о": "o", "р": "p",
        "с": "c", "у": "y", "х": "x", "ѕ": "s", "һ": "h", "ԁ": "d", "ԛ": "q", "ԝ": "w",
        "ӏ": "l", "п": "n", "г": "r", "т": "t", "м": "m", "н": "h",
        "α": "a", "β": "b", "ε": "e", "ι": "l", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
        "τ": "t", "υ": "u", "χ": "x", "ω": "w", "μ": "u",
        "ı": "l", "ɩ": "l", "ɡ": "g", "ս": "u", "հ": "h", "օ": "o", "ո": "n", "ց": "g",
        "ᴏ": "o", "ʀ": "r",
        "0": "o", "1": "l", "i": "l", "3": "e", "5": "s",
        "-": None, "_": None,
    }
)  # fmt: skip
_PAIRS = (("rn", "m"), ("vv", "w"), ("cl", "d"))


def skeleton(label: str) -> str:
    """Fold a (U-label) name to the form in which look-alikes become equal."""
    text = label.lower()
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    text = text.translate(_FOLD)
    for pair, single in _PAIRS:
        text = text.replace(pair, single)
    return text


def registrable(domain: str) -> str | None:
    """The registrable name (one label below the public suffix), or None for a bare suffix."""
    found: str | None = _public_suffixes().privatesuffix(domain)
    return found


@cache
def _public_suffixes() -> PublicSuffixList:
    """The list the package ships, read once on first use (not at import)."""
    return PublicSuffixList()


def osa_distance(a: str, b: str, limit: int) -> int:
    """Edit distance counting an adjacent swap as one edit; `limit + 1` once it exceeds `limit`.

    Only cells within `limit` of the diagonal can stay within the limit, so only those
    are computed: cost O(len * limit), not O(len * len).
    """
    n, m = len(a), len(b)
    over = limit + 1
    if abs(n - m) > limit:
        return over
    previous: list[int] = []
    row = [j if j <= limit else over for j in range(m + 1)]
    for i in range(1, n + 1):
        current = [over] * (m + 1)
        if i <= limit:
            current[0] = i
        low, high = max(1, i - limit), min(m, i + limit)
        for j in range(low, high + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            best = min(row[j] + 1, current[j - 1] + 1, row[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                best = min(best, previous[j - 2] + 1)
            current[j] = min(best, over)
        if low <= high and min(current[low : high + 1]) > limit:
            return over
        previous, row = row, current
    return row[m]


def _neighbourhood(text: str, depth: int) -> set[str]:
    """`text` and every string left after deleting up to `depth` of its characters."""
    found = {text}
    frontier = {text}
    for _ in range(min(depth, len(text))):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        found |= frontier
    return found


@dataclass(frozen=True, slots=True)
class LookalikeMatch:
    """Why a domain looks like a protected one."""

    protected: str
    how: LookalikeHow
    distance: int = 0


@dataclass(frozen=True, slots=True)
class _Protected:
    domain: str
    registrable: str
    skeleton: str


class LookalikeIndex:
    """Protected domains, indexed for look-alike lookups that cost the same at any size."""

    def __init__(self, protected: Iterable[str], max_distance: int, min_length: int) -> None:
        self._max_distance = max_distance
        self._min_length = min_length
        self._names: list[_Protected] = []
        self._keys: dict[str, list[int]] = {}
        self._labels: dict[str, int] = {}
        """Skeletons of protected names, and of whole registrable names without dots
        (`bjzutrechtnl`), for names hidden as one label of another domain."""
        self._exact: frozenset[str] = frozenset()
        exact: set[str] = set()
        for domain in protected:
            exact.add(domain)
            base = registrable(domain)
            if base is None:
                continue
            folded = skeleton(to_unicode(base.split(".", 1)[0]))
            index = len(self._names)
            self._names.append(_Protected(domain, base, folded))
            if len(folded) >= min_length:
                self._labels.setdefault(folded, index)
                self._labels.setdefault(skeleton(to_unicode(base)).replace(".", ""), index)
            depth = max_distance if len(folded) >= min_length else 0
            for key in _neighbourhood(folded, depth):
                self._keys.setdefault(key, []).append(index)
        self._exact = frozenset(exact)

    def match(self, domain: str) -> LookalikeMatch | None:
        """The protected domain `domain` could be mistaken for, if any.

        `domain` must not itself be covered by the policy (the caller's suffix walk comes
        first): a protected domain is never its own look-alike.
        """
        embedded = self._embedded(domain)
        if embedded is not None:
            return embedded
        base = registrable(domain)
        if base is None:
            return None
        folded = skeleton(to_unicode(base.split(".", 1)[0]))
        best: tuple[int, int] | None = None
        seen: set[int] = set()
        for key in _neighbourhood(folded, self._max_distance):
            for index in self._keys.get(key, ()):
                if index in seen:
                    continue
                seen.add(index)
                name = self._names[index]
                if name.registrable == base:
                    continue
                distance = osa_distance(folded, name.skeleton, self._max_distance)
                if distance > self._max_distance:
                    continue
                if distance > 0 and len(name.skeleton) < self._min_length:
                    continue
                if best is None or (distance, index) < best:
                    best = (distance, index)
        if best is not None:
            return LookalikeMatch(self._names[best[1]].domain, LookalikeHow.SIMILAR, best[0])
        return self._hidden_in_a_label(domain, base)

    def _hidden_in_a_label(self, domain: str, base: str) -> LookalikeMatch | None:
        """`bjzutrecht.example.com`, `bjzutrecht-nl.example`: the name as one label."""
        for label in domain.split(".")[:-1]:
            index = self._labels.get(skeleton(to_unicode(label)))
            if index is not None and self._names[index].registrable != base:
                return LookalikeMatch(self._names[index].domain, LookalikeHow.EMBEDDED)
        return None

    def _embedded(self, domain: str) -> LookalikeMatch | None:
        """`samen-veilig.nl.example.com`: a protected name followed by foreign labels."""
        labels = domain.split(".")
        for start in range(len(labels) - 1):
            for end in range(start + 2, len(labels)):
                window = ".".join(labels[start:end])
                if window in self._exact:
                    return LookalikeMatch(window, LookalikeHow.EMBEDDED)
        return None
