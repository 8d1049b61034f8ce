"""What the first-recipient guard costs: learning what left, and the one read per message.

The daemon asks the store once per sensitive message with outside recipients (the
milter waits for that read), and learns in batches from a thread of its own. Run:
`make bench` (or `python bench/correspondents.py [--pairs N]`). Prints the time to learn
N sender-recipient pairs, the time of one `known` read with two recipients at that
size, and the store's size on disk (SQLite).
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

from postwacht.core.vocabulary import Match, Scope
from postwacht.records.correspondents import Correspondents
from postwacht.records.sqlite import SqliteRecords

READS = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="postwacht-bench-") as state:
        store = SqliteRecords(state, create=True, mta="bench")
        try:
            known = Correspondents(store, b"bench-key-" * 4)
            now = dt.datetime.now(dt.UTC)
            pairs = [(f"medewerker{i % 500}@samen-veilig.nl", f"r{i}@zorg{i % 3000}.example")
                     for i in range(args.pairs)]
            started = time.perf_counter()
            known.learn_pairs(pairs, now)
            learnt = time.perf_counter() - started
            since = now - dt.timedelta(days=365)
            started = time.perf_counter()
            for i in range(READS):
                sender, recipient = pairs[i * 7 % len(pairs)]
                known.known(sender, [recipient, f"nieuw{i}@elders.example"], Scope.SENDER,
                            Match.ADDRESS, since)
            read = (time.perf_counter() - started) / READS
            size = (Path(state) / "postwacht.sqlite").stat().st_size
            print(f"{args.pairs} pairs learnt in {learnt:.2f} s "
                  f"({learnt / args.pairs * 1e6:.0f} us a pair), {known.count()} entries; "
                  f"known() with 2 recipients: {read * 1000:.3f} ms; "
                  f"SQLite file {size / 2**20:.1f} MiB")
        finally:
            store.close()


if __name__ == "__main__":
    main()
