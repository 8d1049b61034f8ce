"""UNIX sockets for Postfix: only their owner and group may connect.

A socket is created mode 0660, so Postfix reaches it through its group and a local user
outside that group gets "permission denied" (put it in a directory of the postfix group,
mode 2750, and the path itself is closed to others too). A socket left by a crashed run
is replaced; anything else at the path, or a socket another process still listens on, is
never touched: the start is refused and the message names the path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

SOCKET_MODE = 0o660
_SOCKET_UMASK = 0o777 & ~SOCKET_MODE
_UNIX_PREFIXES = ("unix:", "local:")


class SocketPathError(OSError):
    """The path cannot take a new socket; the message says why, naming it."""


def unix_path(spec: str) -> Path | None:
    """The path of `unix:PATH` (or libmilter's `local:PATH`); None for other specs."""
    for prefix in _UNIX_PREFIXES:
        if spec.startswith(prefix):
            return Path(spec[len(prefix):])
    return None


def claim(path: Path) -> None:
    """Make `path` free for a new socket: remove a stale socket, refuse anything else."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketPathError(f"{path} exists and is not a socket; not removing it")
    if _listening(path):
        raise SocketPathError(f"{path} is in use: another process listens on it")
    path.unlink()


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                return False  # nobody behind it: left by a run that did not stop cleanly
            raise SocketPathError(f"{path}: cannot tell whether it is in use: "
                                  f"{exc.strerror or exc}") from None
    return True


@contextlib.contextmanager
def group_only() -> Iterator[None]:
    """Sockets bound inside are created 0660 (for libmilter, which binds and listens at
    once, so a chmod afterwards would leave a moment of looser access). The umask is the
    process's: use it at start-up, before other threads create files."""
    old = os.umask(_SOCKET_UMASK)
    try:
        yield
    finally:
        os.umask(old)


def identity(path: Path) -> tuple[int, int]:
    """What `release` later checks, so that it removes only the socket we made."""
    st = path.lstat()
    return st.st_dev, st.st_ino


def release(path: Path, made: tuple[int, int]) -> None:
    """Remove the socket at `path` if it is still the one we made."""
    with contextlib.suppress(FileNotFoundError):
        st = path.lstat()
        if stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == made:
            path.unlink()
