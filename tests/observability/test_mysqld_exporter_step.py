"""The mysqld exporter's part of bootstrap step "monitoring" as given facts → agent calls, against a
recording transport: its own MariaDB account, a 0600 login for the exporter's account, a restart
when that login changed, and the same calls (same password) on every run."""

import pytest

from fleet.models import MariaDBMonitorAccount
from fleet.remote.agent_client import AGENT_PATH, AGENT_SHA256, Agent
from fleet.remote.transport import Result
from observability.monitoring import (
    MYSQLD_EXPORTER_CNF,
    MYSQLD_EXPORTER_DEFAULTS,
    monitoring_bootstrap,
)
from observability.targets import sd_target_groups
from tests.observability.factories import make_vps
from tests.support.recording import RecordingTransport, agent_answer

SERVICE = "prometheus-mysqld-exporter"


def _transport(*, changed_calls: tuple[str, ...] = ()):
    """An agent whose subcommands in `changed_calls` report a change; every unit is active."""

    def respond(command, stdin):
        if command.argv[0] == "sha256sum":
            return Result(0, f"{AGENT_SHA256}  {AGENT_PATH}\n", "")
        if command.argv[0] in ("test", "id"):
            return Result(0, "", "")
        return agent_answer(changed=command.argv[2] in changed_calls, data={"state": "active"})

    return RecordingTransport(respond)


def _run(vps, transport) -> tuple[bool, list[str]]:
    lines: list[str] = []
    changed = monitoring_bootstrap(vps=vps, agent=Agent(transport), log=lines.append)
    return changed, lines


def _exporter_calls(transport) -> list[tuple[str, dict]]:
    return [
        (sub, payload)
        for sub, payload in transport.agent_calls()
        if sub == "db-monitor-ensure"
        or payload.get("path") in (MYSQLD_EXPORTER_CNF, MYSQLD_EXPORTER_DEFAULTS)
        or payload.get("name") == SERVICE
    ]


@pytest.fixture
def vps(db, settings):
    settings.LOKI_URL = settings.LOKI_PUSH_URL = ""
    return make_vps("db1")


def test_it_creates_the_exporters_account_and_a_login_only_the_exporter_can_read(vps):
    transport = _transport()
    _run(vps, transport)
    password = MariaDBMonitorAccount.objects.get(vps=vps).password

    assert _exporter_calls(transport) == [
        ("db-monitor-ensure", {"user": "chom_exporter", "password": password}),
        (
            "file-write",
            {
                "path": "/etc/prometheus/mysqld-exporter.cnf",
                "content": "# Managed by CHOM: prometheus-mysqld-exporter's MariaDB login"
                " (unix socket only).\n"
                f"[client]\nuser=chom_exporter\npassword={password}\nsocket=/run/mysqld/mysqld.sock\n",
                "mode": "0600",
                "owner": "prometheus",
                "group": "prometheus",
            },
        ),
        (
            "file-write",
            {
                "path": "/etc/default/prometheus-mysqld-exporter",
                "content": '# Managed by CHOM (bootstrap step "monitoring"): where the exporter finds its'
                ' MariaDB login.\nARGS="--config.my-cnf=/etc/prometheus/mysqld-exporter.cnf"\n',
                "mode": "0644",
            },
        ),
        ("service-ensure", {"name": SERVICE, "enabled": True, "running": True}),
    ]
    assert len(password) >= 40 and password.replace("-", "").replace("_", "").isalnum()


def test_it_sends_the_same_password_every_run_and_another_one_to_each_vps(vps):
    first, second, theirs = _transport(), _transport(), _transport()
    assert _run(vps, first)[0] is False
    assert _run(vps, second)[0] is False
    _run(make_vps("db2", ip_address="192.0.2.11"), theirs)

    assert _exporter_calls(first) == _exporter_calls(second)
    ours, other = (_exporter_calls(t)[0][1]["password"] for t in (first, theirs))
    assert ours != other
    assert MariaDBMonitorAccount.objects.count() == 2


def test_it_keeps_the_password_encrypted_at_rest(vps):
    from django.db import connection

    _run(vps, _transport())
    password = MariaDBMonitorAccount.objects.get(vps=vps).password
    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM fleet_mariadbmonitoraccount")
        (stored,) = cursor.fetchone()
    assert password not in stored and stored.startswith("gAAAA")  # Fernet


def test_it_restarts_a_running_exporter_when_its_login_changed(vps):
    transport = _transport(changed_calls=("file-write",))
    changed, lines = _run(vps, transport)
    services = [p for sub, p in _exporter_calls(transport) if sub == "service-ensure"]
    assert services == [
        {"name": SERVICE, "enabled": True, "running": True},
        {"name": SERVICE, "running": False},
        {"name": SERVICE, "running": True},
    ]
    assert changed is True
    assert "  restarted prometheus-mysqld-exporter for its new config" in lines


def test_it_does_not_restart_an_exporter_it_just_started(vps):
    transport = _transport(changed_calls=("file-write", "service-ensure"))
    _run(vps, transport)
    services = [p for sub, p in _exporter_calls(transport) if sub == "service-ensure"]
    assert services == [{"name": SERVICE, "enabled": True, "running": True}]


def test_it_reports_a_new_account_as_a_change(vps):
    changed, lines = _run(vps, _transport(changed_calls=("db-monitor-ensure",)))
    assert changed is True
    assert "  MariaDB account chom_exporter@localhost for the mysqld exporter" in lines


def test_service_discovery_lists_the_exporter_once_the_bootstrap_gave_it_its_account(vps):
    def kinds() -> set[str]:
        return {g["labels"]["kind"] for g in sd_target_groups() if g["labels"]["vps"] == "db1"}

    assert "mysqld" not in kinds()
    _run(vps, _transport())
    assert "mysqld" in kinds()
    assert ["192.0.2.10:9104"] in [g["targets"] for g in sd_target_groups()]
