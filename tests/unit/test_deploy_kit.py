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
from postwacht.records.sqlite import SqliteRecords
from postwacht.telemetry.prometheus import PrometheusTelemetry

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
METRIC = re.compile(r"\bpostwacht_[a-z_]+\b")


def exported_names(tmp_path: Path) -> set[str]:
    """Every sample name the daemon can expose."""
    telemetry = PrometheusTelemetry()
    telemetry.watch_quarantine(SqliteRecords(tmp_path).held_summary)
    names: set[str] = set()
    for family in telemetry.registry.collect():
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


def test_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "postwacht.service").read_text()
    postwacht = str(Path(sys.executable).with_name("postwacht"))
    path = tmp_path / "postwacht.service"
    path.write_text(unit.replace("/opt/postwacht/.venv/bin/postwacht", postwacht))
    verify = subprocess.run([tool("systemd-analyze"), "verify", str(path)],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0
    assert verify.stderr.strip() == "", verify.stderr
    security = subprocess.run([tool("systemd-analyze"), "security", "--offline=true", str(path)],
                              capture_output=True, text=True, check=False)
    level = re.search(r"Overall exposure level for postwacht.service: ([0-9.]+)", security.stdout)
    assert level is not None, security.stdout + security.stderr
    assert float(level.group(1)) < 2.0
