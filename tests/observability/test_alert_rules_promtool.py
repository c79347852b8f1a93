"""Every alert rule is proven by `promtool test rules` (deploy/observability/alert-rules*.test.yml):
each fires, with the labels CHOM's webhook routes on, and stays quiet where it must."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from observability.models import Alert
from observability.tenant_alerts import SERVER_DOWN_ALERTS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
RULES = DEPLOY / "alert-rules.yml"
TEST_FILES = sorted(DEPLOY.glob("alert-rules*.test.yml"))
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(not PROMTOOL, reason="promtool not installed (apt prometheus)")


def _rules() -> dict[str, dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {
        rule["alert"]: {**rule, "group": g["name"]} for g in groups for rule in g["rules"] if "alert" in rule
    }


def _cases() -> list[dict]:
    return [
        case
        for path in TEST_FILES
        for group in yaml.safe_load(path.read_text())["tests"]
        for case in group.get("alert_rule_test", [])
    ]


def _promtool_test(folder: Path) -> subprocess.CompletedProcess:
    files = [str(folder / p.name) for p in TEST_FILES]
    return subprocess.run(
        [PROMTOOL, "test", "rules", *files], capture_output=True, text=True, timeout=120, cwd=folder
    )


@pytest.mark.real
@needs_promtool
def test_it_proves_every_alert_rule_with_promtool():
    proc = _promtool_test(DEPLOY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(TEST_FILES) >= 1


@pytest.mark.real
@needs_promtool
def test_it_fails_when_a_rule_loses_the_labels_chom_routes_on(tmp_path):
    """The unit tests catch the bug they were written for: a one-to-one `on (instance)` division
    keeps only `instance`, so HighLoad lost `vps` and `tenant`."""
    for path in [RULES, *TEST_FILES]:
        shutil.copy(path, tmp_path / path.name)
    rules = (tmp_path / RULES.name).read_text()
    assert rules.count("/ on (instance) group_left") == 1
    (tmp_path / RULES.name).write_text(rules.replace("/ on (instance) group_left", "/ on (instance)"))
    proc = _promtool_test(tmp_path)
    assert proc.returncode != 0
    failure = proc.stdout + proc.stderr  # promtool reports failed cases on stderr
    assert "alertname: HighLoad" in failure
    got = failure.split("got:[", 1)[-1]
    assert 'Labels:{alertname="HighLoad", instance="ded1:node", severity="warning"}' in got


def test_it_has_a_firing_and_a_quiet_case_for_every_alert_rule():
    """A new rule without promtool cases fails here (and a case for a rule that is gone, too)."""
    rules, cases = set(_rules()), _cases()
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert rules - firing == set(), "alert rules without a firing case in alert-rules*.test.yml"
    assert rules - quiet == set(), "alert rules without a not-firing case (exp_alerts: [])"
    assert (firing | quiet) - rules == set(), "cases for alert rules that do not exist"


def test_it_expects_the_labels_chom_routes_alerts_on():
    """CHOM's webhook (observability/services.py alertmanager_ingest) takes its name from
    `alertname`, its severity from `severity` (anything else becomes warning), the owning site
    from `site` (unix user) or tenant from `tenant` (slug), and marks a VPS's sites down from
    `vps` on the server-down alerts: every firing case pins those labels."""
    rules = _rules()
    assert set(SERVER_DOWN_ALERTS) & set(rules) == {"VpsDown"}
    for case in _cases():
        rule = rules[case["alertname"]]
        for alert in case.get("exp_alerts", []):
            labels = alert["exp_labels"]
            assert labels["severity"] == rule["labels"]["severity"] in Alert.Severity.values
            if rule["group"] == "chom-fleet":
                assert labels["vps"] and labels["instance"].startswith(labels["vps"] + ":"), case
            if rule["group"] == "chom-sites":
                assert labels["site"] and labels["tenant"] and labels["domain"], case
            if rule["group"] == "chom-itself":
                assert not {"vps", "site", "tenant"} & set(labels), case  # staff only
            assert alert["exp_annotations"]["summary"], case
    fleet_tenants = [
        a["exp_labels"].get("tenant")
        for c in _cases()
        if rules[c["alertname"]]["group"] == "chom-fleet"
        for a in c.get("exp_alerts", [])
    ]
    assert "acme" in fleet_tenants, "a dedicated VPS's tenant label must reach the alert"
