"""What every subcommand shares: exit codes, the `--state` option, loading a policy."""

from __future__ import annotations

import argparse
import sys
from enum import IntEnum
from typing import TextIO

from postwacht import defaults
from postwacht.config.compiler import load
from postwacht.config.policyfile import PolicyError
from postwacht.core.policy import Policy


class ExitCode(IntEnum):
    """One meaning per number, for every subcommand (README, "Exit codes")."""

    OK = 0
    FAILED = 1
    """The policy is invalid, or the work could not be done (the message says why)."""
    USAGE = 2
    """The command line, or a value on it, is wrong."""
    ATTENTION = 3
    """`domains audit`: a check failed, is unknown, or a registration expires soon."""


class UsageError(Exception):
    """A command-line value that cannot be used; the message names it."""


def add_state_option(parser: argparse.ArgumentParser, what: str = "state directory") -> None:
    parser.add_argument("--state", default=defaults.STATE_DIR, metavar="DIR",
                        help=f"{what} (default {defaults.STATE_DIR})")


def load_policy(path: str, out: TextIO = sys.stderr) -> Policy | None:
    """The policy, or None after printing every problem as `FILE:LINE: key: what`."""
    try:
        return load(path)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=out)
        count = len(exc.problems)
        print(f"{path}: invalid policy ({count} problem{'s' if count != 1 else ''})", file=out)
        return None
