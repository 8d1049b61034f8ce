"""`postwacht web` (the review site) and `postwacht users` (its accounts).

Both need the records store only: the site runs as an unprivileged user on the reviewers'
side, never on the MTA with root."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import ipaddress
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from postwacht.adapters.web import SenderLinks, WebSettings, create_app
from postwacht.adapters.web.auth import (
    PASSWORD_MAX,
    PASSWORD_MIN,
    PROXY_SECRET_HEADER,
    PROXY_SECRET_MIN,
    Passwords,
    is_email,
    password_problem,
)
from postwacht.adapters.web.i18n import Words
from postwacht.adapters.web.server import WebServer
from postwacht.cli.common import ExitCode, UsageError
from postwacht.cli.review import actor, add_store_options, login_actor, run_with_store
from postwacht.core.roles import Role
from postwacht.core.text import one_word, printable
from postwacht.records.correspondents import Correspondents
from postwacht.records.secret import derive, load_secret, secret_path
from postwacht.records.store import RecordsError, RecordStore

LISTEN_DEFAULT = "127.0.0.1:8080"
HEADER_MAX = 64


def listen_address(text: str) -> tuple[str, int]:
    """HOST:PORT, or [IPV6]:PORT; port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(
            f"{printable(text, 100)!r} is not HOST:PORT (e.g. {LISTEN_DEFAULT})")
    return host, int(port)


def proxy_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{printable(text, 100)!r} is not an IP address (the proxy's, e.g. 127.0.0.1)"
        ) from None


def header_name(text: str) -> str:
    if not (0 < len(text) <= HEADER_MAX and text.isascii()
            and all(c.isalnum() or c == "-" for c in text)):
        raise argparse.ArgumentTypeError(
            f"{printable(text, 100)!r} is not an HTTP header name (e.g. X-Remote-User)")
    return text


def add_parsers(sub: Any) -> None:
    web = sub.add_parser("web", help="the review site for privacy officers (HTTP behind a "
                                     "TLS reverse proxy)")
    add_store_options(web)
    web.add_argument("--listen", type=listen_address, default=listen_address(LISTEN_DEFAULT),
                     metavar="HOST:PORT", help=f"where to listen (default {LISTEN_DEFAULT}; "
                                               "port 0 picks a free port)")
    web.add_argument("--public", action="store_true",
                     help="allow a listen address other than loopback (the site speaks plain "
                          "HTTP: put a TLS proxy in front instead, if you can)")
    web.add_argument("--trusted-header", type=header_name, metavar="HEADER",
                     help="single sign-on: the header (e.g. X-Remote-User) in which the "
                          "proxy names the signed-in user; needs --trusted-proxy")
    web.add_argument("--trusted-proxy", type=proxy_address, metavar="ADDRESS",
                     help="the reverse proxy's address: only its --trusted-header and "
                          "X-Forwarded-For are believed")
    web.add_argument("--proxy-secret-file", metavar="FILE",
                     help="a file (mode 0600 or 0640) whose first line the proxy sends in "
                          f"{PROXY_SECRET_HEADER}: without it, any local process could pose "
                          "as the proxy on loopback; required with --trusted-header")
    web.set_defaults(run=_web)

    users = sub.add_parser("users", help="accounts of the review site (roles: "
                                         f"{', '.join(Role)})")
    add_store_options(users)
    actions = users.add_subparsers(dest="users", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add an account")
    add.add_argument("name", type=actor, metavar="NAME")
    add.add_argument("--role", required=True, choices=[str(r) for r in Role])
    add.add_argument("--email", default="", help="where the reviewers' digest goes")
    how = add.add_mutually_exclusive_group()
    how.add_argument("--password-file", metavar="FILE",
                     help="read the password from the first line of FILE (not readable by "
                          "every user); default: ask twice")
    how.add_argument("--no-password", action="store_true",
                     help="no local password: signs in through single sign-on only")
    actions.add_parser("remove", help="remove an account (and its sessions)").add_argument(
        "name", type=actor, metavar="NAME")
    actions.add_parser("list", help="the accounts").add_argument("--json", action="store_true")
    role = actions.add_parser("set-role", help="change an account's role")
    role.add_argument("name", type=actor, metavar="NAME")
    role.add_argument("role", choices=[str(r) for r in Role], metavar="ROLE")
    password = actions.add_parser("set-password", help="set an account's password (signs it "
                                                       "out everywhere)")
    password.add_argument("name", type=actor, metavar="NAME")
    password.add_argument("--password-file", metavar="FILE")
    for action in (add, role, password, actions.choices["remove"]):
        action.add_argument("--actor", type=actor, help="who (default: your login)")
    users.set_defaults(run=_users)


def _web(args: argparse.Namespace) -> int:
    host, port = args.listen
    if not args.public and not _loopback(host):
        raise UsageError(f"--listen {host}: not a loopback address. The site speaks plain "
                         "HTTP: keep it on 127.0.0.1 and put a TLS reverse proxy in front "
                         "(deploy/nginx/postwacht-web.conf), or add --public")
    if args.trusted_header and not args.trusted_proxy:
        raise UsageError("--trusted-header needs --trusted-proxy: the header is believed only "
                         "from the proxy that sets it")
    if args.trusted_header and not args.proxy_secret_file:
        raise UsageError("--trusted-header needs --proxy-secret-file: on loopback every local "
                         "process shares the proxy's address, so only a secret the proxy "
                         f"sends ({PROXY_SECRET_HEADER}) tells the proxy apart")
    secret = _proxy_secret(args.proxy_secret_file) if args.proxy_secret_file else ""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = WebSettings(trusted_header=args.trusted_header or "",
                           trusted_proxy=args.trusted_proxy or "", proxy_secret=secret)

    def serve(store: RecordStore) -> int:
        links = sender_links(args.state, store)
        try:
            server = WebServer(create_app(store, settings, links=links), host, port)
        except OSError as exc:
            print(f"postwacht web: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
            return ExitCode.FAILED
        shown = f"[{host}]" if ":" in host else host
        print(f"postwacht web: listening on http://{shown}:{server.port}", flush=True)
        server.serve_until_terminated()
        return ExitCode.OK

    return run_with_store(args, "web", serve)


def sender_links(state: str, store: RecordStore) -> SenderLinks | None:
    """The senders' confirmation links: signed with the key in the state directory (the
    same file as the MTAs', copied here when the site runs elsewhere), and what a sender
    confirms becomes a known correspondent. None (the review itself still serves) when
    the key is missing, cannot be read or is not the MTAs': every link would look
    changed. The site never makes a key of its own: the daemon makes it, and a site on
    another host gets a copy."""
    try:
        secret = load_secret(state, create=False)
        correspondents = Correspondents(store, derive(secret, "correspondents"),
                                        key_file=secret_path(state))
        correspondents.check_key()
    except RecordsError as exc:
        logging.getLogger("postwacht.web").error(
            "the senders' confirmation links are off: %s", exc)
        return None

    def remember(sender: str, recipients: Sequence[str]) -> None:
        # The release is asked for already: a store that fails now costs the sender one
        # more question later, and must not tell them the message did not go.
        try:
            correspondents.learn(sender, recipients, dt.datetime.now(dt.UTC))
        except RecordsError as exc:
            logging.getLogger("postwacht.web").error(
                "confirmed recipients not remembered: %s", exc)

    return SenderLinks(derive(secret, "links"), remember)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _users(args: argparse.Namespace) -> int:
    # Ask for the password before the store is opened: a typo costs no connection.
    password: str | None = None
    if (args.users == "add" and not args.no_password) or args.users == "set-password":
        password = _password(args.password_file)
    if args.users == "add" and args.email and not is_email(args.email):
        raise UsageError(f"--email {printable(args.email, 100)!r} is not one email address")
    who = getattr(args, "actor", None) or (login_actor() if args.users != "list" else "")
    return run_with_store(args, f"users {args.users}",
                          lambda store: _change(args, store, password, who))


def _change(args: argparse.Namespace, store: RecordStore, password: str | None,
            who: str) -> int:
    hashed = Passwords().hash(password) if password else ""
    match args.users:
        case "add":
            store.add_user(args.name, Role(args.role), args.email, hashed, who)
            print(f"{args.name}: added as {args.role}"
                  f"{'' if hashed else ' (no local password: single sign-on only)'}")
        case "remove":
            store.remove_user(args.name, who)
            print(f"{args.name}: removed")
        case "set-role":
            store.set_role(args.name, Role(args.role), who)
            print(f"{args.name}: now {args.role}")
        case "set-password":
            store.set_password(args.name, hashed, who)
            print(f"{args.name}: password set (signed out everywhere)")
        case _:
            _list(store, args.json)
    return ExitCode.OK


def _list(store: RecordStore, as_json: bool) -> None:
    users = store.users()
    if as_json:
        print(json.dumps([{"name": u.name, "role": str(u.role), "email": u.email,
                           "has_password": u.has_password,
                           "created_at": u.created_at.isoformat(),
                           "created_by": u.created_by} for u in users]))
        return
    if not users:
        print("no accounts (until one is added, anyone with access to the records store "
              "may review from the command line)")
    for u in users:
        print(f"{printable(u.name)}  {u.role}  {printable(u.email) or '-'}  "
              f"{'password' if u.has_password else 'single sign-on only'}  "
              f"added {u.created_at:%Y-%m-%d %H:%M} UTC by {printable(u.created_by)}")


def _proxy_secret(path: str) -> str:
    file = Path(path)
    try:
        if file.stat().st_mode & 0o007:
            raise UsageError(f"--proxy-secret-file {file}: readable by every user (chmod 0640)")
        lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--proxy-secret-file {file}: cannot read it: {exc}") from None
    secret = lines[0] if lines else ""
    if len(secret) < PROXY_SECRET_MIN or not one_word(secret, 512):
        raise UsageError(f"--proxy-secret-file {file}: the first line must be one word of "
                         f"{PROXY_SECRET_MIN} to 512 printable characters (e.g. the output "
                         "of `openssl rand -hex 32`)")
    return secret


def _password(path: str | None) -> str:
    """The new password, from a file or asked twice; UsageError saying what is wrong."""
    if path is not None:
        file = Path(path)
        try:
            if file.stat().st_mode & 0o007:
                raise UsageError(f"--password-file {file}: readable by every user (chmod 0600)")
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--password-file {file}: cannot read it: {exc}") from None
        password = lines[0] if lines else ""
    else:
        password = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != password:
            raise UsageError("the two passwords differ; nothing changed")
    problem = password_problem(password)
    if problem is not None:
        raise UsageError(Words("en")(problem, min=PASSWORD_MIN, max=PASSWORD_MAX))
    return password
