"""The least pymilter for the job, the yardstick of bench/throughput.py.

It refuses recipients in a fixed set of domains at RCPT (550) and accepts every message
at its end. It asks Postfix for nothing else: no connect, HELO, MAIL, DATA, header or
body callbacks (pymilter's `Milter.Base` marks them all `@nocallback`, and only `envrcpt`
and `eom` are overridden here) and no actions that change a message. Run:
`python bench/peer_milter.py inet:PORT@127.0.0.1`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import Milter

REFUSED = frozenset({"bjzutrecht.nl", "oud-domein.example", "retired.example"})


class Peer(Milter.Base):  # type: ignore[misc]
    def negotiate(self, opts: list[int]) -> Any:
        answer = super().negotiate(opts)
        opts[0] = 0  # no actions: it never adds headers, quarantines or rewrites
        self._actions = 0
        return answer

    def envrcpt(self, to: str, *params: str) -> Any:
        domain = to.strip("<>").rpartition("@")[2].rstrip(".").lower()
        if domain in REFUSED:
            self.setreply("550", "5.7.1", f"{domain} is not ours any more")
            return Milter.REJECT
        return Milter.CONTINUE

    def eom(self) -> Any:
        return Milter.ACCEPT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("socket", help="libmilter socket, e.g. inet:8899@127.0.0.1")
    args = parser.parse_args()
    Milter.factory = Peer
    Milter.runmilter("bench-peer", args.socket, timeout=300)
    sys.exit(0)


if __name__ == "__main__":
    main()
