"""The agent's MariaDB commands (db-ensure, db-remove) against a real mariadbd on a private socket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fleet.agent_fixtures import MARIADBD, Agent, free_port, require, stop, wait_for

# --------------------------------------------------------------------------- MariaDB


@dataclass
class MariaDB:
    socket: str

    def client(self, *args: str, user: str = "root", password: str | None = None) -> str:
        env = {**os.environ, "MYSQL_PWD": password} if password is not None else None
        proc = subprocess.run(
            ["mariadb", "--no-defaults", "--socket", self.socket, "-u", user, "-N", "-B", *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        if proc.returncode != 0:
            raise PermissionError(proc.stderr.strip())
        return proc.stdout


@pytest.fixture
def mariadb(agent: Agent) -> Iterator[MariaDB]:
    require(MARIADBD)
    for tool in ("mariadb-install-db", "mariadb"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    # The server runs as the mysql user: it cannot enter pytest's 0700 tmp directories and must
    # own the directory holding its socket and pid file.
    base = Path(tempfile.mkdtemp(prefix="chom-agent-db-"))
    base.chmod(0o755)
    shutil.chown(base, "mysql", "mysql")
    sock = str(base / "mysqld.sock")
    init = subprocess.run(
        ["mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={base}/data"]
        + ["--skip-test-db", "--auth-root-authentication-method=socket"],
        capture_output=True,
        timeout=120,
    )
    assert init.returncode == 0, init.stderr
    proc = subprocess.Popen(
        [MARIADBD, "--no-defaults", "--user=mysql", f"--datadir={base}/data"]
        + [f"--socket={sock}", f"--pid-file={base}/mysqld.pid", "--bind-address=127.0.0.1"]
        + [f"--port={free_port()}", "--skip-name-resolve", "--innodb-buffer-pool-size=64M"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = MariaDB(socket=sock)
    try:
        wait_for(lambda: _answers(db), "mariadbd", deadline=30)
        agent.env["VPSMANAGER_MYSQL"] = json.dumps(["mariadb", "--no-defaults", "--socket", sock])
        yield db
    finally:
        proc.send_signal(signal.SIGTERM)
        stop(proc)
        shutil.rmtree(base, ignore_errors=True)


def _answers(db: MariaDB) -> bool:
    try:
        return db.client("-e", "SELECT 1").strip() == "1"
    except PermissionError:
        return False


PASSWORD = "pa'ss\\word\"; DROP USER root; --"


def test_db_ensure_creates_a_user_that_sees_only_its_database(agent: Agent, mariadb: MariaDB) -> None:
    mariadb.client("-e", "CREATE DATABASE shop1xdata; CREATE DATABASE other")
    payload = {"name": "shop1_data", "user": "shop1", "password": PASSWORD}

    assert agent.ok("db-ensure", payload)["changed"] is True

    visible = mariadb.client("-e", "SHOW DATABASES", user="shop1", password=PASSWORD).split()
    # "_" is a GRANT wildcard: unescaped, shop1_data's grant would also cover shop1xdata.
    assert sorted(visible) == ["information_schema", "shop1_data"]
    mariadb.client("-e", "CREATE TABLE shop1_data.t (i INT)", user="shop1", password=PASSWORD)
    hosts = mariadb.client("-e", "SELECT Host FROM mysql.user WHERE User='shop1' ORDER BY Host")
    assert hosts.split() == ["127.0.0.1", "localhost"]

    second = agent.ok("db-ensure", payload)
    assert second["changed"] is False


def test_db_ensure_changes_the_password_only_when_it_differs(agent: Agent, mariadb: MariaDB) -> None:
    payload = {"name": "shop2", "user": "shop2", "password": PASSWORD}
    agent.ok("db-ensure", payload)
    new = {**payload, "password": "an0ther-secret"}

    assert agent.ok("db-ensure", new)["changed"] is True
    assert agent.ok("db-ensure", new)["changed"] is False
    mariadb.client("-e", "SELECT 1", user="shop2", password="an0ther-secret")
    with pytest.raises(PermissionError):
        mariadb.client("-e", "SELECT 1", user="shop2", password=PASSWORD)


def test_db_remove_drops_database_and_users(agent: Agent, mariadb: MariaDB) -> None:
    agent.ok("db-ensure", {"name": "gone", "user": "gone", "password": PASSWORD})
    assert agent.ok("db-remove", {"name": "gone", "user": "gone"})["changed"] is True
    assert mariadb.client("-e", "SELECT COUNT(*) FROM mysql.user WHERE User='gone'").strip() == "0"
    assert "gone" not in mariadb.client("-e", "SHOW DATABASES").split()
    assert agent.ok("db-remove", {"name": "gone", "user": "gone"})["changed"] is False


def test_db_ensure_reports_an_unreachable_server(agent: Agent, tmp_path: Path) -> None:
    sock = str(tmp_path / "nothing.sock")
    agent.env["VPSMANAGER_MYSQL"] = json.dumps(["mariadb", "--no-defaults", "--socket", sock])
    if shutil.which("mariadb") is None:
        pytest.skip("mariadb client is not installed")
    result = agent("db-ensure", {"name": "x", "user": "x", "password": PASSWORD})
    assert result.error["code"] == "db_error"
    assert "Can't connect" in result.error["message"]


# --------------------------------------------------------------------------- db-monitor-ensure

MONITOR = {"user": "chom_exporter", "password": "Exp0rter-secret_" + "x" * 27}
MONITOR_GRANTS = [
    "GRANT PROCESS, BINLOG MONITOR ON *.* TO `chom_exporter`@`localhost` IDENTIFIED BY PASSWORD '{hash}'"
    " WITH MAX_USER_CONNECTIONS 3",
    "GRANT SELECT ON `performance\\_schema`.* TO `chom_exporter`@`localhost`",
]


def _monitor_grants(mariadb: MariaDB) -> list[str]:
    return mariadb.client("-r", "-e", "SHOW GRANTS FOR 'chom_exporter'@'localhost'").splitlines()


def _expected_grants(mariadb: MariaDB, password: str) -> list[str]:
    hashed = mariadb.client("-e", f"SELECT PASSWORD('{password}')").strip()
    return [line.format(hash=hashed) for line in MONITOR_GRANTS]


def test_db_monitor_ensure_creates_a_least_privilege_account_on_localhost_only(
    agent: Agent, mariadb: MariaDB
) -> None:
    first = agent.ok("db-monitor-ensure", MONITOR)

    assert first["changed"] is True
    assert first["data"] == {"user": "chom_exporter", "host": "localhost", "max_user_connections": 3}
    assert _monitor_grants(mariadb) == _expected_grants(mariadb, MONITOR["password"])
    hosts = mariadb.client("-e", "SELECT Host FROM mysql.user WHERE User='chom_exporter'").split()
    assert hosts == ["localhost"]
    login = {"user": "chom_exporter", "password": MONITOR["password"]}
    # What the exporter reads works; nothing else is visible.
    assert mariadb.client("-e", "SHOW GLOBAL STATUS LIKE 'Threads_connected'", **login).startswith("Threads")
    mariadb.client("-e", "SELECT COUNT(*) FROM performance_schema.threads", **login)
    shown = mariadb.client("-e", "SHOW DATABASES", **login).split()
    assert sorted(shown) == ["information_schema", "performance_schema"]
    with pytest.raises(PermissionError, match="denied"):
        mariadb.client("-e", "SELECT authentication_string FROM mysql.user", **login)
    assert MONITOR["password"] not in json.dumps(first)

    second = agent.ok("db-monitor-ensure", MONITOR)
    assert second["changed"] is False
    assert second["log"] == ["monitoring account chom_exporter@localhost unchanged"]


def test_db_monitor_ensure_takes_back_whatever_else_the_account_was_given(
    agent: Agent, mariadb: MariaDB
) -> None:
    mariadb.client(
        "-e",
        "CREATE DATABASE shop; CREATE TABLE shop.t (i INT); CREATE ROLE reader;"
        " GRANT SELECT ON shop.* TO reader;"
        " CREATE USER 'chom_exporter'@'localhost' IDENTIFIED BY 'old-password-1234';"
        " CREATE USER 'chom_exporter'@'%' IDENTIFIED BY 'old-password-1234';"
        " GRANT ALL ON *.* TO 'chom_exporter'@'localhost' WITH GRANT OPTION;"
        " GRANT SELECT ON `performance_schema`.* TO 'chom_exporter'@'localhost';"
        " GRANT INSERT ON shop.t TO 'chom_exporter'@'localhost';"
        " GRANT reader TO 'chom_exporter'@'localhost';",
    )

    out = agent.ok("db-monitor-ensure", MONITOR)

    assert out["changed"] is True
    assert _monitor_grants(mariadb) == _expected_grants(mariadb, MONITOR["password"])
    hosts = mariadb.client("-e", "SELECT Host FROM mysql.user WHERE User='chom_exporter'").split()
    assert hosts == ["localhost"]
    with pytest.raises(PermissionError):
        mariadb.client("-e", "SELECT 1", user="chom_exporter", password="old-password-1234")
    assert agent.ok("db-monitor-ensure", MONITOR)["changed"] is False


def test_db_monitor_ensure_restores_the_connection_limit_and_changes_the_password(
    agent: Agent, mariadb: MariaDB
) -> None:
    agent.ok("db-monitor-ensure", MONITOR)
    mariadb.client("-e", "ALTER USER 'chom_exporter'@'localhost' WITH MAX_USER_CONNECTIONS 0")
    out = agent.ok("db-monitor-ensure", MONITOR)
    assert out["changed"] is True and out["log"] == ["limited chom_exporter@localhost to 3 connections"]

    new = {**MONITOR, "password": "an0ther-exporter-secret"}
    assert agent.ok("db-monitor-ensure", new)["log"] == ["updated password of chom_exporter@localhost"]
    assert agent.ok("db-monitor-ensure", new)["changed"] is False
    mariadb.client("-e", "SELECT 1", user="chom_exporter", password=new["password"])
    assert _monitor_grants(mariadb) == _expected_grants(mariadb, new["password"])


MARIADB_ECHOING = """#!/bin/sh
# A MariaDB client that records its argv and fails quoting the statements it was sent, as a
# server error quotes the SQL near the problem.
echo "$*" >> @CALLS@
sql=$(tr '\\n' ' ')
case $sql in
  *"CREATE USER"*) echo "ERROR 1064 (42000): You have an error near '$sql'" >&2; exit 1;;
esac
"""


def test_db_monitor_ensure_keeps_the_password_out_of_argv_and_error_messages(agent: Agent) -> None:
    calls = agent.fakes / "mariadb.calls"
    agent.env["VPSMANAGER_MYSQL"] = agent.fake("mariadb", MARIADB_ECHOING.replace("@CALLS@", str(calls)))

    result = agent("db-monitor-ensure", MONITOR)

    assert result.error["code"] == "db_error"
    assert "You have an error near" in result.error["message"] and "***" in result.error["message"]
    assert MONITOR["password"] not in json.dumps(result.out)
    assert calls.read_text() and MONITOR["password"] not in calls.read_text()
