"""MariaDB's health end to end: a VPS bootstrapped by CHOM runs its mysqld exporter with its own
least-privilege MariaDB account, a real Prometheus scrapes it (mysql_up == 1, and 0 once MariaDB
stops: what MariaDBDown fires on), only the exporter's account can read its login, and the
monitoring step changes nothing on a second run."""

import time

import pytest
import requests

from fleet import services
from fleet.models import MariaDBMonitorAccount
from fleet.remote.agent_client import Agent
from fleet.remote.commands import Command
from observability.monitoring import MYSQLD_EXPORTER_CNF, monitoring_bootstrap
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e


def _value(env, query: str) -> str | None:
    result = requests.get(f"{env['PROMETHEUS_URL']}/api/v1/query", params={"query": query}, timeout=5).json()
    values = [r["value"][1] for r in result["data"]["result"]]
    return values[0] if len(values) == 1 else None


def _run(transport, *argv: str) -> str:
    result = transport.run(Command.of(*argv), timeout=30)
    assert result.ok, (argv, result.stderr)
    return result.stdout


def test_it_scrapes_mariadb_through_a_least_privilege_account_only_the_exporter_can_read(
    monitoring, make_vps
):
    vps = make_vps("e2e-mysql")
    bootstrapped = time.monotonic()
    where = f'vps="{vps.name}"'

    wait_for(
        lambda: (
            _value(monitoring, f'up{{{where}, kind="mysqld"}}') == "1"
            and _value(monitoring, f"mysql_up{{{where}}}") == "1"
        ),
        timeout=60,
        interval=0.5,
        what="mysqld exporter scraped with mysql_up == 1",
    )
    print(f"\nbootstrap -> mysql_up == 1 in Prometheus: {time.monotonic() - bootstrapped:.2f}s")
    assert float(_value(monitoring, f"mysql_global_variables_max_connections{{{where}}}")) > 0

    password = MariaDBMonitorAccount.objects.get(vps=vps).password
    with services.transport_for(vps) as transport:
        grants = _run(transport, "mariadb", "-N", "-r", "-e", "SHOW GRANTS FOR 'chom_exporter'@'localhost'")
        hashed = _run(transport, "mariadb", "-N", "-e", f"SELECT PASSWORD('{password}')").strip()
        hosts = _run(
            transport, "mariadb", "-N", "-e", "SELECT Host FROM mysql.user WHERE User='chom_exporter'"
        )
        assert grants.splitlines() == [
            "GRANT PROCESS, BINLOG MONITOR ON *.* TO `chom_exporter`@`localhost`"
            f" IDENTIFIED BY PASSWORD '{hashed}' WITH MAX_USER_CONNECTIONS 3",
            "GRANT SELECT ON `performance\\_schema`.* TO `chom_exporter`@`localhost`",
        ]
        assert hosts.split() == ["localhost"]

        assert (
            _run(transport, "stat", "-c", "%a %U %G", MYSQLD_EXPORTER_CNF).strip()
            == "600 prometheus prometheus"
        )
        assert password in _run(transport, "cat", MYSQLD_EXPORTER_CNF)
        for account in ("www-data", "nobody"):  # nginx and php-fpm's account, and anyone else
            uid = _run(transport, "id", "-u", account).strip()
            gid = _run(transport, "id", "-g", account).strip()
            read = transport.run(
                Command.of(
                    "setpriv",
                    f"--reuid={uid}",
                    f"--regid={gid}",
                    "--clear-groups",
                    "cat",
                    MYSQLD_EXPORTER_CNF,
                ),
                timeout=30,
            )
            assert not read.ok and "Permission denied" in read.stderr, account
        assert password not in _run(transport, "ps", "-eo", "args")

        lines: list[str] = []
        assert monitoring_bootstrap(vps=vps, agent=Agent(transport), log=lines.append) is False, lines

        # What MariaDBDown fires on: the exporter keeps answering and says MariaDB does not.
        _run(transport, "systemctl", "stop", "mariadb")
        try:
            wait_for(
                lambda: _value(monitoring, f"mysql_up{{{where}}}") == "0",
                timeout=30,
                interval=0.5,
                what="mysql_up == 0 with MariaDB stopped",
            )
            assert _value(monitoring, f'up{{{where}, kind="mysqld"}}') == "1"
        finally:
            _run(transport, "systemctl", "start", "mariadb")
