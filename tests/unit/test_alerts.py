"""The alerting rules: promtool checks them and runs their unit tests on synthetic series.

``deploy/prometheus/alerts_test.yml`` holds the cases; these tests also make sure that every alert
has a case where it fires and one where it stays silent, that a rule which never fires fails its
cases, that each rule reads metrics the worker exports, and that each has its runbook in
``docs/operations.md``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream_app.core.metrics import Metrics
from tests.deployment import (
    ALERTS_FILE,
    ALERTS_TEST_FILE,
    OPERATIONS_DOC,
    PROMETHEUS_FILE,
    alert_rules,
    exported_names,
    metric_names,
    prometheus_tool,
    read_yaml,
)

# What issue 17 asks the rules to cover, and the alert that covers it.
REQUIRED = {
    "worker down": "StreamAppWorkerDown",
    "worker unhealthy": "StreamAppWorkerUnhealthy",
    "consumer lag growing for 5 minutes": "StreamAppConsumerLagGrowing",
    "learner lag over its bound": "StreamAppLearnerLagHigh",
    "dead-letter rate over a share of events": "StreamAppDeadLettersHigh",
    "drift bursts": "StreamAppDriftBurst",
    "rolling quality under a floor": "StreamAppQualityLow",
    "no checkpoint for 3 intervals": "StreamAppNoCheckpoint",
    "version load failures": "StreamAppVersionLoadFailures",
    "delivery failures": "StreamAppDeliveryFailures",
}
# Metrics a rule may read before the worker exports them: the throughput issue (#13) adds them.
# What each runbook section says, in this order.
RUNBOOK_PARTS = ("**What it means.**", "**What to check.**", "**How to fix it.**")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [prometheus_tool("promtool"), *args], capture_output=True, text=True, check=False
    )


def rule_cases() -> dict[str, list[list[Any]]]:
    """Alert name -> the ``exp_alerts`` of every case of it in alerts_test.yml."""
    cases: dict[str, list[list[Any]]] = {}
    for test in read_yaml(ALERTS_TEST_FILE)["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], []).append(case.get("exp_alerts") or [])
    return cases


def runbook_sections() -> dict[str, str]:
    """``### Name`` heading -> the text under it in docs/operations.md."""
    text = OPERATIONS_DOC.read_text(encoding="utf-8")
    parts = re.split(r"^### (\S+)\s*$", text, flags=re.MULTILINE)
    return {name: re.split(r"^#{1,3} ", body, flags=re.MULTILINE)[0] for name, body in
            zip(parts[1::2], parts[2::2], strict=True)}  # fmt: skip


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", str(ALERTS_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_checks_the_prometheus_config_with_its_rules() -> None:
    result = promtool("check", "config", str(PROMETHEUS_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", str(ALERTS_TEST_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_a_case_and_stays_silent_in_another() -> None:
    cases = rule_cases()
    for rule in alert_rules():
        expected = cases.get(rule["alert"], [])
        assert any(expected), f"{rule['alert']}: no case where it fires"
        assert not all(expected), f"{rule['alert']}: no case where it stays silent"


@pytest.mark.parametrize("name", [rule["alert"] for rule in alert_rules()])
def test_a_rule_that_never_fires_fails_its_cases(name: str, tmp_path: Path) -> None:
    """The cases can fail: with the rule's expression replaced by one that is never true."""
    rules = read_yaml(ALERTS_FILE)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == name:
                rule["expr"] = "vector(1) == 0"
    (tmp_path / ALERTS_FILE.name).write_text(yaml.safe_dump(rules), encoding="utf-8")
    shutil.copy(ALERTS_TEST_FILE, tmp_path / ALERTS_TEST_FILE.name)
    result = promtool("test", "rules", str(tmp_path / ALERTS_TEST_FILE.name))
    assert result.returncode != 0
    assert f"alertname: {name}," in result.stdout + result.stderr


def test_the_rules_cover_what_the_issue_asks_for() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert {what: alert for what, alert in REQUIRED.items() if alert not in names} == {}


def test_every_rule_reads_metrics_the_worker_exports() -> None:
    exported = set(exported_names(Metrics()))
    for rule in alert_rules():
        used = metric_names(rule["expr"])
        assert used or "up{" in rule["expr"], f"{rule['alert']}: reads no stream_app metric"
        assert used - exported == set(), f"{rule['alert']}: {used - exported} are not exported"


def test_a_metric_that_is_not_exported_would_be_caught() -> None:
    exported = set(exported_names(Metrics()))
    assert metric_names("increase(stream_app_checkpoint_total[90s]) > 0") - exported


def test_every_alert_has_a_summary_a_severity_and_a_runbook_in_operations_md() -> None:
    sections = runbook_sections()
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["annotations"]["summary"].strip(), name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{name.lower()}", name
        assert name in sections, f"docs/operations.md has no '### {name}' section"
        positions = [sections[name].find(part) for part in RUNBOOK_PARTS]
        assert -1 not in positions and positions == sorted(positions), (name, RUNBOOK_PARTS)
        assert "`" in sections[name], f"{name}: the runbook names no command"
