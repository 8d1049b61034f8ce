"""Postwacht's own secret: one random key in the state directory, and keys derived from it.

It signs the sender's confirmation links and keys the hashes of known correspondents, so
that a copy of the records store alone (a backup, a database dump) names nobody: without
the key, a hash cannot be tested against a guessed address. Every MTA that shares a
PostgreSQL store, and the web review, need the same file (copy it, mode 0600).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from postwacht.records.store import RecordsError

KEY_FILE = "postwacht.key"
SECRET_BYTES = 32


def secret_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / KEY_FILE


def load_secret(state_dir: str | Path, *, create: bool) -> bytes:
    """The key in `state_dir`, made (0600, never replaced) when `create` and missing.
    RecordsError naming the file when it is missing, unreadable, too short, or readable
    by other users."""
    path = secret_path(state_dir)
    if create and not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # made by another process meanwhile: read theirs
        except OSError as exc:
            raise RecordsError(f"{path}: cannot create the key: {exc.strerror}") from None
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(SECRET_BYTES) + "\n")
            _owned_like_its_directory(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise RecordsError(f"{path}: no key here (the daemon makes it when it first starts; "
                           "copy it from the MTA when this runs elsewhere)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordsError(f"{path}: cannot read the key: {exc}") from None
    if mode & 0o077:
        raise RecordsError(f"{path}: readable by other users (chmod 0600)")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < SECRET_BYTES:
        raise RecordsError(f"{path}: not a key ({SECRET_BYTES * 2} hex digits expected)")
    return key


def _owned_like_its_directory(path: Path) -> None:
    """A key root makes (a command run with sudo) belongs to the state directory's owner,
    the user the daemon and the site run as: else they could not read it."""
    if os.geteuid() != 0:
        return
    directory = path.parent.stat()
    if directory.st_uid != 0:
        os.chown(path, directory.st_uid, directory.st_gid)


def derive(secret: bytes, purpose: str) -> bytes:
    """A key for one purpose only (`links`, `correspondents`): one cannot stand in for
    another."""
    return hmac.new(secret, f"postwacht\0{purpose}".encode(), hashlib.sha256).digest()
