"""The `postwacht` command: one subcommand per job, one exit code per outcome (`ExitCode`).

Each module adds its subcommands to the parser; `main` runs the one asked for and turns a
`UsageError` into a message and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from postwacht import __version__
from postwacht.cli import (
    audit,
    correspondents,
    daemon,
    doctor,
    domains,
    helper,
    policy,
    review,
    web,
)
from postwacht.cli.common import ExitCode, UsageError


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except UsageError as exc:
        print(f"postwacht {args.command}: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    return int(code)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postwacht",
        description="Outbound mail policy filter for Postfix.",
    )
    parser.add_argument("--version", action="version", version=f"postwacht {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    policy.add_parsers(sub)
    daemon.add_parsers(sub)
    domains.add_parsers(sub)
    review.add_parsers(sub)
    helper.add_parsers(sub)
    audit.add_parsers(sub)
    web.add_parsers(sub)
    correspondents.add_parsers(sub)
    doctor.add_parsers(sub)
    return parser


if __name__ == "__main__":
    sys.exit(main())
