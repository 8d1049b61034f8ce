"""The socketmap's connection limit and the UNIX socket paths it and the milter claim."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from postwacht.adapters.netstring import encode, read_netstring
from postwacht.adapters.socketmap import ConnectionLimits, SocketmapServer
from postwacht.adapters.unixsocket import SocketPathError, claim
from postwacht.cli.serve import socketmap_address
from postwacht.core.tables import Status, TableAnswer
from postwacht.telemetry import NO_TELEMETRY

from tests.labs.util import poll

RELEASE = threading.Event()
IN_LOOKUP: list[str] = []


def slow(key: str) -> TableAnswer:
    """A lookup that takes until the test lets it finish (a DNS lookup, say)."""
    IN_LOOKUP.append(key)
    RELEASE.wait(10)
    return TableAnswer(Status.NOTFOUND, "")


def quick(key: str) -> TableAnswer:
    return TableAnswer(Status.OK, key.upper())


@pytest.fixture
def server() -> Iterator[SocketmapServer]:
    RELEASE.clear()
    IN_LOOKUP.clear()
    server = SocketmapServer(("127.0.0.1", 0), {"quick": quick, "slow": slow}, NO_TELEMETRY,
                             ConnectionLimits(idle_timeout=10, max_connections=2))
    server.start()
    yield server
    RELEASE.set()
    server.stop()


def client(server: SocketmapServer) -> socket.socket:
    before = len(server.connections)
    sock = socket.create_connection(server.server_address[:2], timeout=10)
    poll(lambda: len(server.connections) > before, "the connection to be taken in")
    return sock


def ask(sock: socket.socket, request: str) -> bytes | None:
    sock.sendall(encode(request))
    return read_netstring(sock.makefile("rb"))


def test_at_the_limit_the_connection_idle_longest_makes_room(server: SocketmapServer) -> None:
    oldest, other = client(server), client(server)
    newest = socket.create_connection(server.server_address[:2], timeout=10)
    assert ask(newest, "quick a@b.nl") == b"OK A@B.NL"
    assert oldest.recv(1) == b""  # closed to make room
    assert ask(other, "quick c@d.nl") == b"OK C@D.NL"
    for sock in (oldest, other, newest):
        sock.close()


def test_at_the_limit_with_every_connection_in_a_lookup_the_new_one_is_closed(
    server: SocketmapServer,
) -> None:
    busy = [client(server) for _ in range(2)]
    for sock in busy:
        sock.sendall(encode("slow x@y.nl"))
    poll(lambda: len(IN_LOOKUP) == 2, "both connections inside a lookup")
    late = socket.create_connection(server.server_address[:2], timeout=10)
    assert late.recv(1) == b""
    RELEASE.set()
    for sock in busy:
        assert read_netstring(sock.makefile("rb")) == b"NOTFOUND "
        sock.close()
    late.close()


def test_a_path_that_is_not_a_socket_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("precious")
    with pytest.raises(SocketPathError, match=f"{path} exists and is not a socket"):
        claim(path)
    assert path.read_text() == "precious"


def test_a_socket_someone_listens_on_is_refused_and_a_stale_one_removed(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        with pytest.raises(SocketPathError, match="in use"):
            claim(path)
    assert path.exists()  # now stale: nobody listens
    claim(path)
    assert not path.exists()


def test_a_socketmap_unix_socket_needs_an_absolute_path() -> None:
    assert socketmap_address("unix:/run/postwacht/socketmap.sock") == Path(
        "/run/postwacht/socketmap.sock")
    assert socketmap_address("127.0.0.1:8895") == ("127.0.0.1", 8895)
    with pytest.raises(ValueError, match="absolute path"):
        socketmap_address("unix:socketmap.sock")
