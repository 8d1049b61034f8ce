"""What every subcommand shares: exit codes, the `--state` option, loading a policy."""

from __future__ import annotations

import argparse
import os
import sys
from enum import IntEnum
from pathlib import Path
from typing import TextIO

from postwacht import defaults
from postwacht.config.compiler import load
from postwacht.config.policyfile import PolicyError
from postwacht.core.policy import Policy
from postwacht.core.text import one_word


class ExitCode(IntEnum):
    """One meaning per number, for every subcommand (README, "Exit codes")."""

    OK = 0
    FAILED = 1
    """The policy is invalid, or the work could not be done (the message says why)."""
    USAGE = 2
    """The command line, or a value on it, is wrong."""
    ATTENTION = 3
    """`domains audit`: a check failed, is unknown, or a registration expires soon."""
    PENDING = 4
    """`quarantine release|delete`: asked for, but not carried out by the MTA in time."""


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


RECORDS_ENV = "POSTWACHT_RECORDS"


def mta_name(text: str) -> str:
    """An MTA instance's name as records carry it (a host name fits)."""
    if not one_word(text, defaults.MTA_NAME_MAX):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an MTA name (1 to {defaults.MTA_NAME_MAX} printable "
            "characters without blanks, e.g. the host name)")
    return text


def add_records_options(parser: argparse.ArgumentParser) -> None:
    """Where the records live: SQLite under --state (one MTA), or PostgreSQL (several)."""
    parser.add_argument(
        "--records", metavar="URL",
        help="records store: postgresql://USER@HOST/DB for a store that several MTAs share "
             f"(the password from ~/.pgpass or PGPASSWORD, never here); default: the "
             f"file named by --records-file, else ${RECORDS_ENV}, else SQLite under "
             "--state")
    parser.add_argument("--records-file", metavar="FILE",
                        help="a file (mode 0600 or 0640) whose first line is the records URL")


def records_spec(args: argparse.Namespace) -> str | None:
    """The records URL the command line, the file or the environment names; None: the
    embedded SQLite store under --state. Raises UsageError naming what is wrong."""
    if getattr(args, "records", None):
        return str(args.records)
    if getattr(args, "records_file", None):
        path = Path(args.records_file)
        try:
            lines = [line.strip() for line in path.read_text().splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--records-file {path}: cannot read it: {exc}") from None
        urls = [line for line in lines if line and not line.startswith("#")]
        if not urls:
            raise UsageError(f"--records-file {path}: no records URL in it")
        if path.stat().st_mode & 0o007:
            raise UsageError(f"--records-file {path}: readable by every user; it may hold "
                             "a password (chmod 0640)")
        return urls[0]
    return os.environ.get(RECORDS_ENV) or None
