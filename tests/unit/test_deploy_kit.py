"""The deploy kit: alert rules (promtool), the Grafana dashboard, the systemd unit."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from postwacht.records.locate import open_records
from postwacht.telemetry.prometheus import PrometheusTelemetry

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
METRIC = re.compile(r"\bpostwacht_[a-z_]+\b")


def exported_names(tmp_path: Path) -> set[str]:
    """Every sample name the daemon can expose."""
    telemetry = PrometheusTelemetry()
    store = open_records(None, tmp_path / "state", create=True, mta="mta1.example")
    telemetry.watch_quarantine(store.held_summary)
    names: set[str] = set()
    try:
        families = list(telemetry.registry.collect())
    finally:
        store.close()
    for family in families:
        if not family.name.startswith("postwacht_"):
            continue
        suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_count", "_sum",
                                                                    "_created"]}
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, []))
    return names


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: `make test` installs it")
    return found


def test_alert_rules_are_valid_and_their_unit_tests_pass() -> None:
    folder = DEPLOY / "prometheus"
    checked = subprocess.run([tool("promtool"), "check", "rules", "postwacht-rules.yml"],
                             cwd=folder, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = yaml.safe_load((folder / "postwacht-rules.yml").read_text())
    count = sum(len(g["rules"]) for g in rules["groups"])
    assert f"SUCCESS: {count} rules found" in checked.stdout
    tested = subprocess.run([tool("promtool"), "test", "rules", "postwacht-rules.test.yml"],
                            cwd=folder, capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_reads_metrics_the_daemon_exports(tmp_path: Path) -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "postwacht-rules.yml").read_text())
    exported = exported_names(tmp_path)
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {"PostwachtDown", "PostwachtPolicyReloadFailing", "PostwachtDomainExpiringSoon",
            "PostwachtDomainControlLost", "PostwachtRetiredDomainAttemptsRising",
            "PostwachtQuarantineGrowing", "PostwachtQuarantineAging"} <= alerts
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert set(METRIC.findall(rule["expr"])) <= exported, rule["alert"]


def test_dashboard_loads_and_every_query_names_an_exported_metric(tmp_path: Path) -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "postwacht.json").read_text())
    exported = exported_names(tmp_path)
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(queries) >= 10
    for query in queries:
        used = METRIC.findall(query)
        assert used, query
        assert set(used) <= exported, query
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def exposure(tmp_path: Path, name: str) -> float:
    """The unit verifies without a word, and systemd's exposure level for it."""
    unit = (DEPLOY / "systemd" / name).read_text()
    postwacht = str(Path(sys.executable).with_name("postwacht"))
    path = tmp_path / name
    path.write_text(unit.replace("/opt/postwacht/.venv/bin/postwacht", postwacht))
    verify = subprocess.run([tool("systemd-analyze"), "verify", str(path)],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0
    assert verify.stderr.strip() == "", verify.stderr
    security = subprocess.run([tool("systemd-analyze"), "security", "--offline=true", str(path)],
                              capture_output=True, text=True, check=False)
    level = re.search(rf"Overall exposure level for {re.escape(name)}: ([0-9.]+)",
                      security.stdout)
    assert level is not None, security.stdout + security.stderr
    return float(level.group(1))


def test_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    assert exposure(tmp_path, "postwacht.service") < 2.0


def deploy_settings() -> list[str]:
    """The `name = value` lines of deploy/postfix/main.cf."""
    text = (DEPLOY / "postfix" / "main.cf").read_text()
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_postconf_takes_every_main_cf_line_without_a_warning(tmp_path: Path) -> None:
    shutil.copy("/etc/postfix/master.cf", tmp_path / "master.cf")
    (tmp_path / "main.cf").write_text("compatibility_level = 3.6\n")
    subprocess.run([tool("postconf"), "-c", str(tmp_path), "-e", *deploy_settings()],
                   check=True)
    shown = subprocess.run([tool("postconf"), "-c", str(tmp_path), "-n"],
                           capture_output=True, text=True, check=True)
    assert shown.stderr == "", shown.stderr
    assert "enable_long_queue_ids = yes" in shown.stdout.splitlines()
    assert ("smtp_header_checks = regexp:/etc/postfix/postwacht_smtp_header_checks"
            in shown.stdout.splitlines())


@pytest.mark.parametrize(("header", "answer"), [
    ("X-Postwacht-Quarantine: rule=lookalike; policy=0a1b2c3d4e5f; key=k1", "IGNORE"),
    ("x-postwacht-quarantine: key=k1", "IGNORE"),
    ("X-Postwacht-Route: relay:[securemail.example]:587", "IGNORE"),
    ("Subject: about X-Postwacht-Quarantine: nothing", None),
    ("X-Postwacht-Quarantined-By: someone", None),
])
def test_bookkeeping_headers_are_dropped_at_delivery_and_nothing_else(
    tmp_path: Path, header: str, answer: str | None
) -> None:
    (tmp_path / "main.cf").write_text("compatibility_level = 3.6\n")
    table = f"regexp:{DEPLOY / 'postfix' / 'smtp_header_checks'}"
    looked = subprocess.run([tool("postmap"), "-c", str(tmp_path), "-q", header, table],
                            capture_output=True, text=True, check=False)
    assert looked.stderr == "", looked.stderr
    assert (looked.stdout.strip() or None) == answer


def test_the_daemons_unit_lets_notices_reach_postfix() -> None:
    """sendmail(1) hands a notice to postdrop, which writes into maildrop as group
    postdrop: under NoNewPrivileges the group comes from the unit, and under
    ProtectSystem=strict the directory must be writable."""
    unit = (DEPLOY / "systemd" / "postwacht.service").read_text()
    settings = dict(line.split("=", 1) for line in unit.splitlines()
                    if "=" in line and not line.startswith(("#", " ")))
    assert settings["ProtectSystem"] == "strict"
    assert "postdrop" in settings["SupplementaryGroups"].split()
    assert "/var/spool/postfix/maildrop" in settings["ReadWritePaths"].split()


def test_release_helper_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "postwacht-release.service").read_text()
    assert exposure(tmp_path, "postwacht-release.service") < 3.0  # root, as postsuper needs
    settings = dict(line.split("=", 1) for line in unit.splitlines()
                    if "=" in line and not line.startswith(("#", " ")))
    assert settings["CapabilityBoundingSet"].split() == [
        "CAP_SETUID", "CAP_SETGID", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
        "CAP_CHOWN"]
    assert "/var/spool/postfix" in settings["ReadWritePaths"].split()


def test_release_helper_unit_runs_the_command_with_options_it_has() -> None:
    unit = (DEPLOY / "systemd" / "postwacht-release.service").read_text()
    command = re.search(r"^ExecStart=(.*?[^\\])$", unit, flags=re.MULTILINE | re.DOTALL)
    assert command is not None
    words = command.group(1).replace("\\\n", " ").split()
    assert words[1] == "release-helper"
    usage = subprocess.run([str(Path(sys.executable).with_name("postwacht")), "release-helper",
                            "--help"], capture_output=True, text=True, check=True).stdout
    for option in (w for w in words if w.startswith("--")):
        assert option in usage, option


def test_web_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "postwacht-web.service").read_text()
    assert exposure(tmp_path, "postwacht-web.service") < 2.0
    assert "User=postwacht" in unit.splitlines()


def test_web_unit_runs_the_command_with_options_it_has() -> None:
    unit = (DEPLOY / "systemd" / "postwacht-web.service").read_text()
    command = re.search(r"^ExecStart=(.*?[^\\])$", unit, flags=re.MULTILINE | re.DOTALL)
    assert command is not None
    words = command.group(1).replace("\\\n", " ").split()
    assert words[1:3] == ["web", "--listen"]
    assert words[3].startswith("127.0.0.1:")
    usage = subprocess.run([str(Path(sys.executable).with_name("postwacht")), "web", "--help"],
                           capture_output=True, text=True, check=True).stdout
    for option in (w for w in words if w.startswith("--")):
        assert option in usage, option
