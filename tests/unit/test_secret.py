"""Postwacht's key in the state directory: made once, kept private, never replaced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from postwacht.records.secret import derive, load_secret, secret_path
from postwacht.records.store import RecordsError


def test_the_key_is_made_once_private_and_read_back_the_same(tmp_path: Path) -> None:
    key = load_secret(tmp_path, create=True)
    assert len(key) == 32
    assert secret_path(tmp_path).stat().st_mode & 0o777 == 0o600
    assert load_secret(tmp_path, create=True) == key
    assert load_secret(tmp_path, create=False) == key
    assert derive(key, "links") != derive(key, "correspondents")


@pytest.mark.parametrize(("content", "mode", "says"), [
    (None, None, "no key here"),
    ("ab" * 32 + "\n", 0o644, "readable by other users"),
    ("not a key\n", 0o600, "not a key"),
    ("ab" * 8 + "\n", 0o600, "not a key"),
])
def test_a_missing_open_or_damaged_key_is_named(
        tmp_path: Path, content: str | None, mode: int | None, says: str) -> None:
    path = secret_path(tmp_path)
    if content is not None and mode is not None:
        path.write_text(content)
        path.chmod(mode)
    with pytest.raises(RecordsError, match=says) as raised:
        load_secret(tmp_path, create=False)
    assert str(path) in str(raised.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_a_key_root_makes_belongs_to_the_state_directorys_owner(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)
    load_secret(state, create=True)
    made = secret_path(state).stat()
    assert (made.st_uid, made.st_gid) == (65534, 65534)
