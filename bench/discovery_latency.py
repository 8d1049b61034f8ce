"""Latency of transport discovery, cold (empty cache) and warm, against the DNSSEC lab.

Starts the same nsd + unbound (and MTA-STS HTTPS) lab the tests use, on loopback, so the
figures measure Postwacht's own work plus a local validating resolver, not the internet.
Run: `python bench/discovery_latency.py [--rounds N]` (needs nsd, unbound, ldnsutils).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from postwacht.facts.discovery import Discovery
from postwacht.facts.dnscache import DnsCache, ResolverConfig
from postwacht.facts.mtasts import StsFetcher

from tests.labs.dns import DnsLab
from tests.labs.mtasts import StsServer

DOMAINS = ["dane.pw.test", "plain.pw.test", "sts.pw-unsigned.test", "nullmx.pw.test"]


def discovery(lab: DnsLab, sts: StsServer) -> Discovery:
    cache = DnsCache(ResolverConfig((("127.0.0.1", lab.port),), timeout=3))
    return Discovery(cache, StsFetcher(cache, port=sts.port, cafile=str(sts.cafile)))


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def report(label: str, samples: list[float]) -> None:
    samples.sort()
    p95 = samples[int(len(samples) * 0.95) - 1]
    print(f"{label:<34} median {statistics.median(samples):8.3f} ms   p95 {p95:8.3f} ms   "
          f"(n={len(samples)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="postwacht-bench-"))
    lab = DnsLab(root)
    lab.build()
    lab.start()
    sts = StsServer(root)
    sts.start()
    try:
        for domain in DOMAINS:
            discovery(lab, sts).facts(domain)  # warm unbound's own cache once
            report(f"cold {domain}",
                   timed(lambda d=domain: discovery(lab, sts).facts(d), args.rounds))
            warm = discovery(lab, sts)
            warm.facts(domain)
            report(f"warm {domain}", timed(lambda d=domain, w=warm: w.facts(d),
                                           args.rounds * 50))
    finally:
        sts.stop()
        lab.stop()
        lab.cleanup()


if __name__ == "__main__":
    main()
