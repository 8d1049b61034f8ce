"""`postwacht serve` refusing to start: it says why and leaves nothing behind."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLE_POLICY
from tests.labs.util import free_port

POSTWACHT = str(Path(sys.executable).with_name("postwacht"))


def serve(state: Path, *listeners: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POSTWACHT, "serve", "--policy", str(EXAMPLE_POLICY), "--state", str(state),
         "--milter", f"inet:{free_port()}@127.0.0.1", *listeners],
        capture_output=True, text=True, timeout=60, check=False)


def test_a_busy_metrics_port_stops_the_start_and_leaves_no_control_socket(
    tmp_path: Path,
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = serve(tmp_path, "--metrics", f"127.0.0.1:{port}",
                       "--socketmap", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert f"not starting: metrics on 127.0.0.1:{port}" in result.stderr
    assert not (tmp_path / "control.sock").exists()


def test_a_bad_socketmap_listener_stops_the_start_and_leaves_no_control_socket(
    tmp_path: Path,
) -> None:
    result = serve(tmp_path, "--metrics", f"127.0.0.1:{free_port()}",
                   "--socketmap", "nowhere")
    assert result.returncode == 1
    assert "not starting: socketmap on nowhere: 'nowhere' is not HOST:PORT" in result.stderr
    assert not (tmp_path / "control.sock").exists()
    assert "Traceback" not in result.stderr


def test_an_invalid_policy_is_named_with_every_problem(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\norganisaton: X\nowned_domains: [a..nl]\n")
    result = subprocess.run(
        [POSTWACHT, "serve", "--policy", str(policy), "--state", str(tmp_path / "state"),
         "--metrics", "", "--socketmap", ""],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "unknown key 'organisaton'" in result.stderr
    assert f"not starting: {policy} is invalid" in result.stderr


def test_an_mta_name_with_a_blank_is_a_usage_error(tmp_path: Path) -> None:
    result = serve(tmp_path, "--mta", "mta a", "--metrics", "", "--socketmap", "")
    assert result.returncode == 2
    assert "--mta: 'mta a' is not an MTA name" in result.stderr
    assert not (tmp_path / "control.sock").exists()


def test_a_records_store_that_cannot_be_opened_stops_the_start(tmp_path: Path) -> None:
    port = free_port()  # nothing listens: a PostgreSQL that is down
    result = serve(tmp_path, "--records", f"postgresql://postwacht@127.0.0.1:{port}/mail",
                   "--metrics", "", "--socketmap", "")
    assert result.returncode == 1
    assert "not starting:" in result.stderr
    assert str(port) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "control.sock").exists()


def test_a_records_spec_that_is_no_url_is_named(tmp_path: Path) -> None:
    result = serve(tmp_path, "--records", "mysql://db/mail", "--metrics", "",
                   "--socketmap", "")
    assert result.returncode == 1
    assert "not starting: records store 'mysql://db/mail': not a records URL" in result.stderr


def test_a_state_directory_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    state = tmp_path / "file" / "state"
    result = serve(state, "--metrics", "", "--socketmap", "")
    assert result.returncode == 1
    assert f"not starting: state directory {state}: cannot make it: Not a directory" in (
        result.stderr)
