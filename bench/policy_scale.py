"""How policy size affects load time, memory and decisions per second.

A lookup must cost O(labels), not O(rules): decisions per second with 100,000 policy
domains should be close to those with a handful. Run: `make bench` (or
`python bench/policy_scale.py [--domains N]`). Prints one line per policy size.
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from pathlib import Path

from postwacht.config.compiler import load
from postwacht.core.address import parse_recipient
from postwacht.core.decide import Envelope, decide
from postwacht.core.policy import Policy

WORDS = [
    "zorg", "jeugd", "veilig", "thuis", "samen", "wijk", "team", "kind", "gezin", "hulp",
    "midden", "noord", "zuid", "oost", "west", "regio", "bureau", "stichting", "groep",
]  # fmt: skip


def make_policy(path: Path, count: int, rng: random.Random) -> list[str]:
    """Write a policy with `count` domains (a tenth owned, the rest retired and partners)."""
    names: set[str] = set()
    while len(names) < count:
        parts = rng.sample(WORDS, 2)
        names.add(f"{parts[0]}-{parts[1]}{rng.randrange(100000)}.{rng.choice(['nl', 'com', 'eu'])}")
    domains = sorted(names)
    rng.shuffle(domains)
    owned = domains[: max(1, count // 10)]
    retired = domains[len(owned) : len(owned) + (count - len(owned)) // 2]
    partners = domains[len(owned) + len(retired) :]
    lines = ["version: 1", "organisation: Bench", "owned_domains:"]
    lines += [f"  - {d}" for d in owned]
    lines.append("retired_domains:")
    lines += [f"  - {{domain: {d}, successor: {owned[0]}}}" for d in retired]
    lines.append("partners:")
    lines += [f"  - {{domain: {d}, transport: dane}}" for d in partners]
    lines.append("outbound: {networks: [10.0.0.0/8]}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return domains


def recipients(domains: list[str], rng: random.Random, n: int) -> list[str]:
    """A mix: exact hits, subdomain hits, one-letter typos, and unrelated domains."""
    out = []
    for i in range(n):
        d = rng.choice(domains)
        match i % 4:
            case 0:
                out.append(f"x@{d}")
            case 1:
                out.append(f"Jan@mail.{d.upper()}.")
            case 2:
                label, _, suffix = d.partition(".")
                cut = rng.randrange(len(label))
                out.append(f"x@{label[:cut]}{label[cut + 1:]}.{suffix}")
            case _:
                out.append(f"x@unrelated{i}.example.org")
    return out


def measure(count: int, seconds: float) -> None:
    rng = random.Random(count)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.yaml"
        domains = make_policy(path, count, rng)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        policy = load(path)
        load_s = time.perf_counter() - start
        grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    sample = recipients(domains, rng, 4000)
    decided, elapsed = run_decisions(policy, sample, seconds)
    print(
        f"domains={count:>7}  load={load_s:7.2f} s  rss_growth={grown_mib:7.1f} MiB  "
        f"decisions/s={decided / elapsed:9.0f}  ({decided} one-recipient envelopes)"
    )


def run_decisions(policy: Policy, sample: list[str], seconds: float) -> tuple[int, float]:
    """Parse and decide each address (the per-recipient cost in the milter)."""
    decided = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for address in sample:
            envelope = Envelope("s@bench.example", (parse_recipient(address),), internal=True)
            decide(envelope, policy)
        decided += len(sample)
    return decided, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--domains", type=int, nargs="*", default=[10, 1000, 100_000])
    parser.add_argument("--seconds", type=float, default=3.0, help="decision run per size")
    args = parser.parse_args()
    for count in args.domains:
        measure(count, args.seconds)


if __name__ == "__main__":
    main()
