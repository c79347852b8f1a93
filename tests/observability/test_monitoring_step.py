"""Bootstrap step "monitoring" as given facts → agent calls, against a recording transport."""

import pytest
import yaml

from fleet.remote.agent_client import AGENT_PATH, AGENT_SHA256, Agent
from fleet.remote.transport import Result
from fleet.services import EXTRA_BOOTSTRAP_STEPS
from observability.models import Alert, LogShippingCredential
from observability.monitoring import STUB_STATUS_VHOST, monitoring_bootstrap, promtail_config
from tests.observability.factories import make_vps
from tests.support.recording import RecordingTransport, agent_answer


def _transport(*, changed: bool, promtail_installed: bool, promtail_account: bool = False):
    def respond(command, stdin):
        if command.argv[0] == "sha256sum":
            return Result(0, f"{AGENT_SHA256}  {AGENT_PATH}\n", "")
        if command.argv[0] == "test":
            return Result(0 if promtail_installed else 1, "", "")
        if command.argv[0] == "id":
            return (
                Result(0, "998\n", "") if promtail_account else Result(1, "", "id: 'promtail': no such user")
            )
        return agent_answer(changed=changed, data={"state": "active"})

    return RecordingTransport(respond)


def _run(vps, transport):
    lines = []
    changed = monitoring_bootstrap(vps=vps, agent=Agent(transport), log=lines.append)
    return changed, lines


@pytest.fixture
def vps(db):
    return make_vps("web1")


@pytest.fixture
def shipping(settings):
    """Log shipping on: CHOM reaches Loki at LOKI_URL; the fleet reaches CHOM at SITE_URL."""
    settings.LOKI_URL, settings.LOKI_PUSH_URL = "http://loki.internal:3100", ""
    settings.SITE_URL = "https://chom.example.com/"


def test_it_is_registered_as_a_bootstrap_step():
    assert EXTRA_BOOTSTRAP_STEPS["monitoring"] is monitoring_bootstrap


def test_it_serves_stub_status_on_loopback_and_enables_the_exporters(vps, settings):
    settings.LOKI_URL = settings.LOKI_PUSH_URL = ""
    transport = _transport(changed=True, promtail_installed=False)
    changed, lines = _run(vps, transport)
    assert changed is True
    vhost = transport.assert_agent_called("vhost-apply", name="monitoring")
    assert vhost["content"] == STUB_STATUS_VHOST and "listen 127.0.0.1:8080;" in vhost["content"]
    for service in ("prometheus-node-exporter", "prometheus-nginx-exporter"):
        transport.assert_agent_called("service-ensure", name=service, enabled=True, running=True)
    transport.assert_agent_called(
        "service-ensure", name="prometheus-mysqld-exporter", enabled=True, running=True
    )
    assert "  LOKI_URL unset: no log shipping configured" in lines


def test_it_reports_a_missing_promtail_with_a_log_line_and_an_alert(vps, shipping):
    transport = _transport(changed=False, promtail_installed=False)
    changed, lines = _run(vps, transport)
    assert changed is False
    config = transport.assert_agent_called("file-write", path="/etc/promtail/config.yml")
    token = LogShippingCredential.objects.get(vps=vps).token
    assert config["content"] == promtail_config(
        vps_name="web1", push_url="https://chom.example.com/observability", bearer_token=token
    )
    assert any("WARNING: promtail is not installed on web1" in line for line in lines)
    alert = Alert.objects.get(name="promtail_missing", status="firing")
    assert alert.labels == {"vps": "web1"}


def test_it_writes_the_promtail_config_0600_for_the_promtail_account_only(vps, shipping):
    for account, owner in ((False, "root"), (True, "promtail")):
        transport = _transport(changed=False, promtail_installed=True, promtail_account=account)
        _run(vps, transport)
        config = transport.assert_agent_called("file-write", path="/etc/promtail/config.yml")
        assert config["mode"] == "0600" and config["owner"] == owner
        assert "group" not in config  # the agent's default: root


def test_it_pushes_to_chom_with_the_vps_own_token_and_renders_the_same_config_twice(vps, shipping):
    other = make_vps("web2", ip_address="192.0.2.11")
    first, second, theirs = (_transport(changed=False, promtail_installed=True) for _ in range(3))
    _run(vps, first)
    _run(vps, second)
    _run(other, theirs)

    def written(transport) -> dict:
        return transport.assert_agent_called("file-write", path="/etc/promtail/config.yml")

    assert written(first) == written(second)
    config = yaml.safe_load(written(first)["content"])
    token = LogShippingCredential.objects.get(vps=vps).token
    assert config["clients"] == [
        {
            "url": "https://chom.example.com/observability/loki/api/v1/push",
            "bearer_token": token,
            "batchwait": "5s",
        }
    ]
    assert token.startswith(f"{vps.pk}.") and len(token.split(".", 1)[1]) >= 40
    assert token not in written(theirs)["content"]
    assert LogShippingCredential.objects.count() == 2


def test_it_pushes_to_loki_push_url_when_the_fleet_reaches_chom_by_another_address(vps, shipping, settings):
    settings.LOKI_PUSH_URL = "http://10.0.0.1:8000/observability/"
    transport = _transport(changed=False, promtail_installed=True)
    _run(vps, transport)
    content = transport.assert_agent_called("file-write", path="/etc/promtail/config.yml")["content"]
    assert (
        yaml.safe_load(content)["clients"][0]["url"] == "http://10.0.0.1:8000/observability/loki/api/v1/push"
    )


def test_it_starts_an_installed_promtail_and_resolves_the_missing_alert(vps, shipping):
    _run(vps, _transport(changed=False, promtail_installed=False))
    transport = _transport(changed=False, promtail_installed=True)
    _run(vps, transport)
    transport.assert_agent_called("service-ensure", name="promtail", enabled=True, running=True)
    assert Alert.objects.get(name="promtail_missing").status == "resolved"


def test_it_restarts_a_running_promtail_when_its_config_changed(vps, shipping):
    def respond(command, stdin):
        if command.argv[0] in ("test", "id"):
            return Result(0, "", "")
        return agent_answer(changed=command.argv[2] == "file-write", data={"state": "active"})

    transport = RecordingTransport(respond)
    _, lines = _run(vps, transport)
    promtail = [
        p for sub, p in transport.agent_calls() if sub == "service-ensure" and p["name"] == "promtail"
    ]
    assert promtail[1:] == [{"name": "promtail", "running": False}, {"name": "promtail", "running": True}]
    assert "  restarted promtail for its new config" in lines


def test_it_changes_nothing_on_a_configured_server(vps, shipping):
    transport = _transport(changed=False, promtail_installed=True)
    changed, _ = _run(vps, transport)
    assert changed is False
    assert [sub for sub, _ in transport.agent_calls()] == [
        "vhost-apply",
        "service-ensure",
        "service-ensure",
        "db-monitor-ensure",  # the mysqld exporter: its account, login, arguments, service
        "file-write",
        "file-write",
        "service-ensure",
        "file-write",  # mtail: its program, its settings, its service
        "file-write",
        "service-ensure",
        "file-write",
        "service-ensure",
    ]


def test_it_renders_a_promtail_config_with_per_site_labels_from_the_log_path():
    config = yaml.safe_load(
        promtail_config(vps_name="web1", push_url="https://chom.test/observability/", bearer_token="7.abc")
    )
    assert config["clients"] == [
        {
            "url": "https://chom.test/observability/loki/api/v1/push",
            "bearer_token": "7.abc",
            "batchwait": "5s",
        }
    ]
    job = config["scrape_configs"][0]
    paths = [c["labels"]["__path__"] for c in job["static_configs"]]
    assert paths == ["/var/log/chom/*/access.log", "/var/log/chom/*/error.log"]
    assert all(c["labels"]["vps"] == "web1" for c in job["static_configs"])
    stages = job["pipeline_stages"]
    assert "(?P<site>" in stages[0]["regex"]["expression"] and set(stages[1]["labels"]) == {"site", "log"}
