"""Bootstrap as facts → commands, against a recording transport (no server needed)."""

import json

import pytest

from fleet import services
from fleet.models import Vps
from fleet.remote.agent_client import Agent
from fleet.remote.transport import Result
from fleet.services import FleetError, bootstrap_packages, vps_bootstrap, vps_firewall_rules
from tests.support.recording import RecordingTransport, agent_answer, installed_agent_checksums

# What MariaDB 10.11 on Debian 12 stores for root@localhost.
MARIADB_DEFAULT_ROOT = {
    "plugin": "mysql_native_password",
    "authentication_string": "invalid",
    "auth_or": [{}, {"plugin": "unix_socket"}],
}

DEBIAN_FACTS = {
    "os": {"id": "debian", "version_id": "12", "pretty": "Debian GNU/Linux 12 (bookworm)"},
    "php_versions": ["8.2"],
    "services": {"nginx": "active", "mariadb": "active", "php8.2-fpm": "active"},
    "agent_version": "1.0.0",
}


def _transport(*, changed: bool, facts=DEBIAN_FACTS, root_priv=None):
    root_priv = root_priv or MARIADB_DEFAULT_ROOT

    def respond(command, stdin):
        if command.argv[0] == "sha256sum":
            return installed_agent_checksums()
        if command.argv[0] == "mariadb":
            return Result(0, json.dumps(root_priv) + "\n", "")
        sub = command.argv[2]
        if sub == "facts":
            return agent_answer(data=facts)
        if sub == "version":
            return agent_answer(data={"version": "1.0.0"})
        if sub == "service-ensure" and "services" in json.loads(stdin):
            services = [
                {"name": s["name"], "state": "active", "changed": changed}
                for s in json.loads(stdin)["services"]
            ]
            return agent_answer(changed=changed, data={"services": services})
        return agent_answer(changed=changed, data={"state": "active"})

    return RecordingTransport(respond)


@pytest.fixture(autouse=True)
def only_fleet_steps(monkeypatch):
    """Other apps' bootstrap steps (e.g. observability's monitoring) are tested with their app."""
    monkeypatch.setattr(services, "EXTRA_BOOTSTRAP_STEPS", {})


@pytest.fixture
def vps(db):
    return Vps.objects.create(name="web1", provider="manual", ip_address="192.0.2.10", status="bootstrapping")


def _bootstrap(vps, transport, settings=None):
    lines = []
    changed = vps_bootstrap(vps=vps, agent=Agent(transport), log=lines.append, step=lambda *a, **k: None)
    return changed, lines


def test_it_sends_the_baseline_to_a_fresh_debian_server(vps, settings):
    settings.FLEET_MONITORING_SOURCE = "198.51.100.7"
    transport = _transport(changed=True)
    changed, lines = _bootstrap(vps, transport)
    assert changed == 6
    transport.assert_agent_called("packages-ensure", packages=bootstrap_packages("8.2"))
    transport.assert_agent_called(
        "service-ensure",
        services=[
            {"name": name, "enabled": True, "running": True}
            for name in ("nginx", "php8.2-fpm", "supervisor", "cron", "prometheus-node-exporter")
        ],
    )
    transport.assert_agent_called("service-ensure", name="mariadb", enabled=True, running=True)
    assert "  php8.2-fpm: active" in lines
    ufw = transport.assert_agent_called("ufw-apply")
    assert {"port": 9100, "proto": "tcp", "from": "198.51.100.7"} in ufw["allow"]
    assert {"port": 22, "proto": "tcp"} in ufw["allow"]
    transport.assert_agent_called("sshd-harden")
    transport.assert_agent_called("host-harden")
    vps.refresh_from_db()
    assert (vps.status, vps.os, vps.php_versions) == ("active", "Debian GNU/Linux 12 (bookworm)", ["8.2"])


def test_it_reports_no_change_for_every_step_on_a_ready_server(vps):
    transport = _transport(changed=False)
    changed, lines = _bootstrap(vps, transport)
    assert changed == 0
    for step in ("agent", "packages", "services", "firewall", "ssh hardening", "isolation", "mariadb"):
        assert f"{step}: no change" in lines
    assert lines[-1] == "bootstrap finished: no changes"
    assert transport.uploads == {}


def test_it_makes_one_agent_call_per_step(vps):
    transport = _transport(changed=False)
    _bootstrap(vps, transport)
    assert [sub for sub, _ in transport.agent_calls()] == [
        "version",
        "facts",
        "packages-ensure",
        "service-ensure",
        "ufw-apply",
        "sshd-harden",
        "host-harden",
        "service-ensure",
        "facts",
    ]


def test_it_refuses_an_unsupported_os(vps):
    facts = DEBIAN_FACTS | {"os": {"id": "centos", "version_id": "7", "pretty": "CentOS 7"}}
    with pytest.raises(FleetError, match="unsupported OS CentOS 7"):
        _bootstrap(vps, _transport(changed=False, facts=facts))


def test_it_marks_a_server_degraded_when_a_core_service_is_down(vps):
    facts = DEBIAN_FACTS | {"services": {"nginx": "failed", "mariadb": "active", "php8.2-fpm": "active"}}
    _bootstrap(vps, _transport(changed=False, facts=facts))
    vps.refresh_from_db()
    assert vps.status == "degraded"
    assert "nginx" in vps.status_reason


def test_it_keeps_exporter_ports_closed_without_a_monitoring_source():
    rules = vps_firewall_rules(ssh_port=2222, monitoring_source="")
    assert [r["port"] for r in rules] == [2222, 80, 443]


@pytest.mark.parametrize(
    "priv",
    [
        {
            "plugin": "mysql_native_password",
            "authentication_string": "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19",
        },
        {
            "plugin": "mysql_native_password",
            "authentication_string": "",
            "auth_or": [{}, {"plugin": "unix_socket"}],
        },
    ],
)
def test_it_refuses_a_mariadb_root_with_a_password_login(vps, priv):
    with pytest.raises(FleetError, match="MariaDB root can log in with a password"):
        _bootstrap(vps, _transport(changed=False, root_priv=priv))


def test_it_accepts_socket_only_mariadb_roots():
    assert services.mariadb_root_socket_only({"plugin": "unix_socket"})
    assert services.mariadb_root_socket_only(MARIADB_DEFAULT_ROOT)
