"""Look-alike domains: names a person could mistake for one the policy protects.

Each name is reduced to a skeleton (the registrable label with homoglyphs, digit/letter
swaps and hyphens folded away), so `samen-veiIig.nl`, `samen-ve1lig.com` and
`samenveilig.nl` share the skeleton of `samen-veilig.nl`. Remaining typos (a dropped,
added, changed or swapped character) are found by edit distance on the skeletons.

To stay O(labels) per lookup however many domains are protected, no lookup scans the
names, and the index holds little more than the skeletons: within one edit (the default
`max_distance`), a lookup spells out only those edits of its text that could lead to a
protected skeleton (`_WithinOneEdit`); within two, each skeleton is stored under its
deletion neighbourhood as 8-byte hashes (`_WithinDeletions`). Either way, the few names
found are then checked by edit distance.
"""

from __future__ import annotations

import sys
import unicodedata
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
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
        text = _decomposed(text)
    text = text.translate(_FOLD)
    for pair, single in _PAIRS:
        text = text.replace(pair, single)
    return text


def _decomposed(text: str) -> str:
    """Compatibility forms unfolded, accents dropped."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _skeletons(labels: list[str]) -> list[str]:
    """`skeleton` of each label, folded in one pass over all of them (ten times faster).

    Each step works character by character, and none joins, splits or reads context across
    a newline (it is neither cased nor case-ignorable, and has no decomposition), so the
    labels joined by newlines fold as each would alone.
    """
    joined = "\n".join(labels).lower()
    if not labels or joined.count("\n") != len(labels) - 1:
        return [skeleton(label) for label in labels]  # a label with a newline is no name
    if not joined.isascii():
        joined = "\n".join(text if text.isascii() else _decomposed(text)
                           for text in joined.split("\n"))
    joined = joined.translate(_FOLD)
    for pair, single in _PAIRS:
        joined = joined.replace(pair, single)
    return joined.split("\n")


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
    if a == b:
        return 0
    if limit <= 1:
        return 1 if limit and _one_edit_apart(a, b) else over
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


def _one_edit_apart(a: str, b: str) -> bool:
    """Whether one change, insertion, deletion or adjacent swap turns `a` into `b`.

    What is left between their common start and common end must be that one edit: a
    tenth of the cost of the table, for the common case of a look-alike lookup.
    """
    start, most = 0, min(len(a), len(b))
    while start < most and a[start] == b[start]:
        start += 1
    end_a, end_b = len(a), len(b)
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a, end_b = end_a - 1, end_b - 1
    left, right = a[start:end_a], b[start:end_b]
    if len(left) + len(right) <= 2 and len(left) <= 1 and len(right) <= 1:
        return True  # one changed, inserted or deleted
    return len(left) == len(right) == 2 and left == right[::-1]


def _neighbourhood(text: str, depth: int) -> set[str]:
    """`text` and every string left after deleting up to `depth` of its characters."""
    found = {text}
    frontier = {text}
    for _ in range(min(depth, len(text))):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        found |= frontier
    return found


class _Postings:
    """Which entries (numbered from 0) carry each key, in 8 bytes a key.

    Each key is one integer in a sorted array: its string hash in the high bits, the
    entry's number in the low ones. `_runs` says where each value of the top bits starts,
    so a lookup bisects a few dozen integers. A hash only finds candidates (two keys may
    share one): callers check every entry they get.
    """

    def __init__(self, keyed: Iterable[tuple[int, Iterable[str]]], entries: int) -> None:
        bits = max(1, entries.bit_length())
        mask = (1 << (63 - bits)) - 1
        codes = array("q")
        for entry, keys in keyed:
            codes.extend([(hash(key) & mask) << bits | entry for key in keys])
        ordered = sorted(codes)
        del codes
        self._bits, self._hash_mask, self._entry_mask = bits, mask, (1 << bits) - 1
        top = min(63 - bits, (len(ordered) >> 5).bit_length())  # about 32 codes a run
        self._shift = 63 - top
        runs = array("q", [0])
        for run in range(1, (1 << top) + 1):
            runs.append(bisect_left(ordered, run << self._shift, runs[-1]))
        self._runs = runs
        self._codes = array("q", ordered)

    def find(self, key: str) -> list[int]:
        """The entries that may carry `key`, in ascending order."""
        low = (hash(key) & self._hash_mask) << self._bits
        run = low >> self._shift
        codes, end = self._codes, self._runs[run + 1]
        at = bisect_left(codes, low, self._runs[run], end)
        high = low | self._entry_mask
        found = []
        while at < end and codes[at] <= high:
            found.append(codes[at] & self._entry_mask)
            at += 1
        return found


class _WithinDeletions:
    """Skeletons within a distance of a text: the symmetric-delete index.

    Each skeleton is stored under its deletion neighbourhood (every string left after
    deleting up to `depth` characters); two skeletons within that distance share a key,
    so a lookup probes the text's own neighbourhood. About len**depth / 2 keys a name:
    for a depth of two, the size of a large policy's index grows tenfold.
    """

    def __init__(self, skeletons: Sequence[str], depth: int, min_length: int) -> None:
        self._depth = depth
        self._keys = _Postings(
            ((i, _neighbourhood(folded, depth if len(folded) >= min_length else 0))
             for i, folded in enumerate(skeletons)), len(skeletons))

    def candidates(self, folded: str) -> list[int]:
        """Numbers of the skeletons that may lie within the depth of `folded`."""
        return [entry for key in _neighbourhood(folded, self._depth)
                for entry in self._keys.find(key)]


class _WithinOneEdit:
    """Skeletons one edit (or none) from a text, with no key but the skeleton itself.

    A deletion index would hold 16 keys a name. Instead a lookup spells out the edits that
    could lead to a protected skeleton, and only those: an edit at position j needs the
    text before it to begin some skeleton and the text after it to end one (found by
    bisecting the skeletons sorted forwards and backwards), and an inserted or changed
    character must sit between its neighbours somewhere in a skeleton (`_between`). A
    text far from every name spells out nothing.
    """

    def __init__(self, skeletons: Sequence[str]) -> None:
        self._numbers = _numbered(skeletons, range(len(skeletons)))
        self._forwards = sorted(skeletons)
        backwards = "\n".join(skeletons)[::-1].split("\n")  # each reversed, in C
        if len(backwards) != len(skeletons):  # a newline in a skeleton: none in a name
            backwards = [folded[::-1] for folded in skeletons]
        self._backwards = sorted(backwards)
        between: dict[str, str] = {}
        for three in _threes("\n" + "\n\n".join(skeletons) + "\n"):
            ends = three[0] + three[2]
            between[ends] = between.get(ends, "") + three[1]
        self._between = between
        """The characters found between two others (or an end) in some skeleton."""

    def candidates(self, folded: str) -> list[int]:
        """Numbers of the skeletons within one edit of `folded` (and a few more)."""
        found: list[int] = []
        numbers = self._numbers
        for text in self._edits(folded):
            hit = numbers.get(text)
            if isinstance(hit, int):
                found.append(hit)
            elif hit is not None:
                found.extend(hit)
        return found

    def _edits(self, text: str) -> list[str]:
        """`text`, and each edit of it that could spell a protected skeleton."""
        edits = [text]
        size = len(text)
        prefix = _longest_shared(self._forwards, text)
        suffix = _longest_shared(self._backwards, text[::-1])
        ends = f"\n{text}\n"
        between = self._between
        # An edit at j keeps text[:j], so j <= prefix, and what follows the characters
        # it changes, so that many from the end <= suffix.
        for j in range(max(0, size - suffix - 2), min(prefix, size) + 1):
            head, kept = text[:j], size - j  # kept: characters from j on
            if 0 < kept <= suffix + 1:  # text[j] dropped, or changed
                tail = text[j + 1 :]
                edits.append(head + tail)
                edits.extend([head + other + tail for other in between.get(
                    ends[j] + ends[j + 2], "") if other != text[j]])
            if 1 < kept <= suffix + 2:  # text[j] and text[j + 1] swapped
                edits.append(head + text[j + 1] + text[j] + text[j + 2 :])
            if kept <= suffix:  # one inserted before text[j]
                tail = text[j:]
                edits.extend([head + other + tail for other in between.get(
                    ends[j] + ends[j + 1], "")])
        return edits


def _threes(text: str) -> set[str]:
    """Each run of three characters in `text` (here newlines mark where a name ends)."""
    if not text.isascii():
        return {text[i : i + 3] for i in range(len(text) - 2)}
    # Three bytes to an integer, in C (a third less time for 100,000 names).
    data = text.encode("ascii")
    size = len(data) - 2
    packed = bytearray(4 * size)
    for offset in range(3):
        packed[offset::4] = data[offset : offset + size]
    return {code.to_bytes(4, sys.byteorder)[:3].decode("ascii")
            for code in set(memoryview(packed).cast("I"))}


def _numbered(keys: Sequence[str], numbers: Sequence[int]
              ) -> dict[str, int | tuple[int, ...]]:
    """Each key's numbers, in the order given: one as it is, more as a tuple."""
    found: dict[str, int | tuple[int, ...]] = dict(zip(keys, numbers, strict=True))
    if len(found) == len(keys):
        return found  # each key once: built in C
    found = {}
    for key, number in zip(keys, numbers, strict=True):
        had = found.setdefault(key, number)
        if had != number:
            found[key] = (*had, number) if isinstance(had, tuple) else (had, number)
    return found


def _longest_shared(ordered: list[str], text: str) -> int:
    """The longest start `text` shares with any of the sorted strings."""
    at = bisect_left(ordered, text)
    longest = 0
    for other in ordered[max(0, at - 1) : at + 1]:  # the nearest share the most
        low, high = longest, min(len(text), len(other))
        while low < high:  # bisect the length: slices compare in C
            middle = (low + high + 1) // 2
            if text[:middle] == other[:middle]:
                low = middle
            else:
                high = middle - 1
        longest = low
    return longest


_UNASKED, _USABLE, _PUBLIC = 0, 1, 2
"""Whether a two-label protected name has been found to be registrable (or public)."""


@dataclass(frozen=True, slots=True)
class LookalikeMatch:
    """Why a domain looks like a protected one."""

    protected: str
    how: LookalikeHow
    distance: int = 0


class LookalikeIndex:
    """Protected domains, indexed for look-alike lookups that cost the same at any size."""

    def __init__(self, protected: Iterable[str], max_distance: int, min_length: int) -> None:
        self._max_distance = max_distance
        self._min_length = min_length
        domains = list(protected)
        self._exact = frozenset(domains)
        _public_suffixes()  # read now, not by the first message's lookup
        # A name of two labels is its own registrable name, unless it is a public suffix
        # itself (`github.io`): that is asked of the list only once it is found (a lookup
        # in the public suffix list is a sixth of building the index).
        named = [(domain, domain if domain.count(".") == 1 else registrable(domain))
                 for domain in domains]
        self._domains = tuple(domain for domain, base in named if base is not None)
        self._bases = tuple(base for _, base in named if base is not None)
        """The registrable name of each (the domain's own string when it is one)."""
        self._usable = bytearray(
            _UNASKED if base is domain else _USABLE for domain, base in named if base)
        self._skeletons = tuple(
            _skeletons([to_unicode(base.split(".", 1)[0]) for base in self._bases]))
        self._similar = (_WithinOneEdit(self._skeletons) if max_distance <= 1 else
                         _WithinDeletions(self._skeletons, max_distance, min_length))
        long_enough = [i for i, folded in enumerate(self._skeletons)
                       if len(folded) >= min_length]
        wholes = _skeletons([to_unicode(self._bases[i]) for i in long_enough])
        self._labels = _numbered(
            [key for i, whole in zip(long_enough, wholes, strict=True)
             for key in (self._skeletons[i], whole.replace(".", ""))],
            [i for i in long_enough for _ in range(2)])
        """Skeletons of protected names, and of whole registrable names without dots
        (`bjzutrechtnl`), for names hidden as one label of another domain."""

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
        for index in self._similar.candidates(folded):
            if index in seen:
                continue
            seen.add(index)
            if self._bases[index] == base or not self._registrable(index):
                continue
            distance = osa_distance(folded, self._skeletons[index], self._max_distance)
            if distance > self._max_distance:
                continue
            if distance > 0 and len(self._skeletons[index]) < self._min_length:
                continue
            if best is None or (distance, index) < best:
                best = (distance, index)
        if best is not None:
            return LookalikeMatch(self._domains[best[1]], LookalikeHow.SIMILAR, best[0])
        return self._hidden_in_a_label(domain, base)

    def _registrable(self, index: int) -> bool:
        """Whether a protected name has a registrable name (is no public suffix itself)."""
        usable = self._usable[index]
        if usable == _UNASKED:  # a benign race: two threads would write the same answer
            usable = self._usable[index] = (
                _USABLE if registrable(self._domains[index]) is not None else _PUBLIC)
        return usable == _USABLE

    def _hidden_in_a_label(self, domain: str, base: str) -> LookalikeMatch | None:
        """`bjzutrecht.example.com`, `bjzutrecht-nl.example`: the name as one label."""
        for label in domain.split(".")[:-1]:
            index = self._first_registrable(self._labels.get(skeleton(to_unicode(label))))
            if index is not None and self._bases[index] != base:
                return LookalikeMatch(self._domains[index], LookalikeHow.EMBEDDED)
        return None

    def _first_registrable(self, found: int | tuple[int, ...] | None) -> int | None:
        if found is None:
            return None
        for index in (found,) if isinstance(found, int) else found:
            if self._registrable(index):
                return index
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

