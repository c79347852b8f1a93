"""The VPS agent (fleet/on_vps/vpsmanager.py), run as a subprocess like CHOM runs it.

Everything happens under a temp VPSMANAGER_ROOT. nginx, php-fpm, MariaDB and sshd are the real
binaries with private prefixes, sockets and ports; systemctl, apt-get and ufw are recording fakes
because this machine has no systemd and tests must not install packages.

Set VPSMANAGER_TEST_PYTHON=/path/to/python3.9 to run the agent under the oldest supported Python.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.agent_fixtures import (
    AGENT,
    MARIADBD,
    NGINX,
    PHP_FPM,
    PYTHON,
    SSHD,
    Agent,
    free_port,
    make_agent,
    recorder,
    require,
    stop,
    wait_for,
)


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    return make_agent(tmp_path)


# --------------------------------------------------------------------------- protocol


def test_it_reports_its_version() -> None:
    source = AGENT.read_text()
    version = next(
        node.value.value
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "VERSION"
    )
    proc = subprocess.run(
        [PYTHON, str(AGENT), "version"], input="", capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {
        "ok": True,
        "changed": False,
        "data": {"version": version},
        "log": [],
    }


def test_it_stays_python39_syntax_and_stdlib_only() -> None:
    tree = ast.parse(AGENT.read_text(), feature_version=(3, 9))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


def test_it_rejects_unknown_subcommands(agent: Agent) -> None:
    result = agent("frobnicate")
    assert (result.rc, result.error["code"]) == (1, "unknown_command")


def test_it_rejects_input_that_is_not_a_json_object(agent: Agent) -> None:
    for raw in ("[1, 2]", "{not json", '"x"'):
        result = agent("version", raw=raw)
        assert (result.rc, result.error["code"]) == (1, "invalid_input"), raw


VALID_VHOST = "server { listen 127.0.0.1:1; }\n"
INVALID_INPUTS = [
    ("vhost-apply", {"name": "a;rm -rf /", "content": VALID_VHOST}),
    ("vhost-apply", {"name": "$(reboot)", "content": VALID_VHOST}),
    ("vhost-apply", {"name": "../etc", "content": VALID_VHOST}),
    ("vhost-apply", {"name": "Upper", "content": VALID_VHOST}),
    ("vhost-apply", {"name": "", "content": VALID_VHOST}),
    ("vhost-apply", {"name": "a" * 33, "content": VALID_VHOST}),
    ("vhost-apply", {"name": "site", "content": 42}),
    ("vhost-apply", {"name": "site", "content": VALID_VHOST, "extra": 1}),
    ("vhost-remove", {"name": "-rf"}),
    ("file-write", {"path": "/etc/nginx/../shadow", "content": "x"}),
    ("file-write", {"path": "/etc/shadow", "content": "x"}),
    ("file-write", {"path": "etc/nginx/x.conf", "content": "x"}),
    ("file-write", {"path": "/etc/nginx/x.conf;id", "content": "x"}),
    ("file-write", {"path": "/etc/nginx/a b.conf", "content": "x"}),
    ("file-write", {"path": "/etc/nginx//x.conf", "content": "x"}),
    ("file-write", {"path": "/etc/nginx", "content": "x"}),
    ("file-write", {"path": "/etc/nginxx/x.conf", "content": "x"}),
    ("file-write", {"path": "/var/www/x", "content": "x", "mode": "4755"}),
    ("file-write", {"path": "/var/www/x", "content": "x", "mode": "rwx"}),
    ("file-write", {"path": "/var/www/x", "content": "x", "owner": "root;id"}),
    ("file-write", {"path": "/var/www/x", "content": "x", "owner": "nosuchuser"}),
    ("file-remove", {"path": "/root/.ssh/authorized_keys"}),
    ("pool-apply", {"name": "site", "php_version": "8.2;id", "content": "[x]"}),
    ("pool-apply", {"name": "site", "php_version": "../8.2", "content": "[x]"}),
    ("db-ensure", {"name": "db;drop", "user": "u", "password": "secret-password"}),
    ("db-ensure", {"name": "db", "user": "u'--", "password": "secret-password"}),
    ("db-ensure", {"name": "db", "user": "u`x", "password": "secret-password"}),
    ("db-ensure", {"name": "db-1", "user": "u", "password": "secret-password"}),
    ("db-ensure", {"name": "db", "user": "u"}),
    ("db-ensure", {"name": "db", "user": "u", "password": "short"}),
    ("db-remove", {"name": "db", "user": "root@'%'"}),
    ("packages-ensure", {"packages": ["nginx; rm -rf /"]}),
    ("packages-ensure", {"packages": ["-oAPT::Foo=1"]}),
    ("packages-ensure", {"packages": []}),
    ("service-ensure", {"name": "--now", "running": True}),
    ("service-ensure", {"name": "nginx", "running": "yes"}),
    ("service-ensure", {"services": []}),
    ("service-ensure", {"services": ["nginx"]}),
    ("service-ensure", {"services": [{"name": "--now", "running": True}]}),
    ("service-ensure", {"services": [{"name": "nginx", "running": "yes"}]}),
    ("service-ensure", {"services": [{"name": "nginx", "restart": True}]}),
    ("service-ensure", {"services": [{"name": "nginx"}, {"name": "nginx", "running": True}]}),
    ("service-ensure", {"name": "cron", "services": [{"name": "nginx", "running": True}]}),
    ("reload", {"service": "nginx && reboot"}),
    ("user-ensure", {"name": "site", "home": "/etc/site"}),
    ("user-ensure", {"name": "site", "home": "/home/../root"}),
    ("user-ensure", {"name": "site", "home": "/home/site", "shell": "/tmp/evil"}),
    ("user-remove", {"name": "root'"}),
    ("ufw-apply", {"allow": [{"port": "22;id", "proto": "tcp"}]}),
    ("ufw-apply", {"allow": [{"port": 22, "proto": "icmp"}]}),
    ("ufw-apply", {"allow": [{"port": 22, "proto": "tcp", "from": "1.2.3.4; id"}]}),
    ("ufw-apply", {"allow": [{"port": 80, "proto": "tcp"}]}),
    ("sshd-harden", {"PasswordAuthentication": "yes"}),
]


@pytest.mark.parametrize(("command", "payload"), INVALID_INPUTS)
def test_it_rejects_invalid_input(agent: Agent, command: str, payload: dict[str, Any]) -> None:
    result = agent(command, payload)
    assert result.rc == 1
    assert result.out["ok"] is False
    assert result.out["changed"] is False
    assert result.error["code"] == "invalid_input", result.error
    assert result.error["message"]
    assert agent.calls("systemctl") == []
    assert agent.calls("refuse") == []


# --------------------------------------------------------------------------- file-write


def test_file_write_creates_file_with_mode_and_owner(agent: Agent) -> None:
    out = agent.ok(
        "file-write",
        {"path": "/var/www/site/.env", "content": "A=1\n", "mode": "0640", "group": "www-data"},
    )
    target = agent.path("/var/www/site/.env")
    st = target.stat()
    assert out["changed"] is True
    assert target.read_text() == "A=1\n"
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, 33)


def test_file_write_second_identical_call_changes_nothing(agent: Agent) -> None:
    payload = {"path": "/etc/cron.d/chom-site", "content": "* * * * * root true\n"}
    agent.ok("file-write", payload)
    inode = agent.path(payload["path"]).stat().st_ino
    out = agent.ok("file-write", payload)
    assert out["changed"] is False
    assert agent.path(payload["path"]).stat().st_ino == inode


def test_file_write_fixes_mode_without_rewriting(agent: Agent) -> None:
    payload = {"path": "/etc/nginx/snippets/x.conf", "content": "# x\n"}
    agent.ok("file-write", payload)
    inode = agent.path(payload["path"]).stat().st_ino
    out = agent.ok("file-write", {**payload, "mode": "0600"})
    st = agent.path(payload["path"]).stat()
    assert out["changed"] is True
    assert (st.st_ino, stat.S_IMODE(st.st_mode)) == (inode, 0o600)


def test_file_write_replaces_content_atomically(agent: Agent) -> None:
    # Two large, distinct contents: a torn write would show a mix or a truncated file.
    contents = ["A" * 2_000_000, "B" * 2_000_000]
    target = agent.path("/var/www/big/file.txt")
    agent.ok("file-write", {"path": "/var/www/big/file.txt", "content": contents[0]})
    seen: set[str] = set()
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            seen.add(target.read_text())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(10):
            agent.ok("file-write", {"path": "/var/www/big/file.txt", "content": contents[i % 2 - 1]})
    finally:
        done.set()
        thread.join(timeout=30)
    assert seen <= set(contents)
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]


def test_file_write_replaces_a_symlink_instead_of_writing_through_it(agent: Agent) -> None:
    outside = agent.root / "outside.txt"
    outside.write_text("keep me")
    link = agent.path("/var/www/site/config.php")
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    agent.ok("file-write", {"path": "/var/www/site/config.php", "content": "<?php\n"})
    assert outside.read_text() == "keep me"
    assert not link.is_symlink() and link.read_text() == "<?php\n"


def test_file_write_refuses_a_parent_symlinked_outside_allowed_roots(agent: Agent) -> None:
    agent.path("/var/www/site").mkdir(parents=True)
    agent.path("/etc/ssh").mkdir(parents=True)
    agent.path("/var/www/site/evil").symlink_to(agent.path("/etc/ssh"))
    result = agent("file-write", {"path": "/var/www/site/evil/sshd_config", "content": "x"})
    assert result.error["code"] == "invalid_input"
    assert not agent.path("/etc/ssh/sshd_config").exists()


def test_file_remove_is_idempotent(agent: Agent) -> None:
    agent.ok("file-write", {"path": "/etc/supervisor/conf.d/w.conf", "content": "[program:w]\n"})
    assert agent.ok("file-remove", {"path": "/etc/supervisor/conf.d/w.conf"})["changed"] is True
    assert not agent.path("/etc/supervisor/conf.d/w.conf").exists()
    assert agent.ok("file-remove", {"path": "/etc/supervisor/conf.d/w.conf"})["changed"] is False


# --------------------------------------------------------------------------- nginx


@dataclass
class Nginx:
    port: int
    prefix: Path

    def get(self, host: str) -> str | None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/", headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=0.5) as response:
                return response.read().decode()
        except (urllib.error.URLError, OSError):
            return None

    def wait_serving(self, host: str, body: str | None) -> None:
        wait_for(lambda: self.get(host) == body, f"{host} to answer {body!r}")


@pytest.fixture
def nginx(agent: Agent, tmp_path: Path) -> Iterator[Nginx]:
    require(NGINX)
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    conf = prefix / "nginx.conf"
    pid = agent.path("/run/nginx.pid")  # where the agent looks for the master, as on Debian
    pid.parent.mkdir(parents=True, exist_ok=True)
    temp = " ".join(f"{kind}_temp_path {prefix}/{kind};" for kind in ("proxy", "fastcgi", "uwsgi"))
    conf.write_text(
        f"daemon off;\nworker_processes 1;\npid {pid};\n"
        f"error_log {prefix}/error.log;\nevents {{ worker_connections 64; }}\n"
        f"http {{ access_log off; client_body_temp_path {prefix}/body; {temp}\n"
        f"  scgi_temp_path {prefix}/scgi;\n"
        f"  include {agent.path('/etc/nginx/sites-enabled')}/*.conf;\n}}\n"
    )
    base = [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    proc = subprocess.Popen(base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(pid.exists, "nginx pid file")
        agent.env["VPSMANAGER_NGINX"] = json.dumps(base)
        agent.env["VPSMANAGER_NGINX_RELOAD"] = json.dumps([*base, "-s", "reload"])
        yield Nginx(port=free_port(), prefix=prefix)
    finally:
        stop(proc)


def vhost(nginx: Nginx, host: str, body: str, extra: str = "") -> str:
    return (
        f"server {{\n  listen 127.0.0.1:{nginx.port};\n  server_name {host};\n{extra}"
        f'  location / {{ return 200 "{body}"; }}\n}}\n'
    )


def test_vhost_apply_serves_the_site_and_a_second_apply_changes_nothing(agent: Agent, nginx: Nginx) -> None:
    content = vhost(nginx, "site1.test", "site1 v1")
    first = agent.ok("vhost-apply", {"name": "site1", "content": content})
    assert first["changed"] is True
    nginx.wait_serving("site1.test", "site1 v1")
    assert agent.path("/etc/nginx/sites-enabled/chom-site1.conf").is_symlink()

    second = agent.ok("vhost-apply", {"name": "site1", "content": content})
    assert second["changed"] is False
    assert not any("reload" in line for line in second["log"])
    assert agent.ok("facts")["data"]["sites"] == ["site1"]


def test_vhost_apply_returns_only_once_nginx_serves_the_new_config(agent: Agent, nginx: Nginx) -> None:
    agent.ok("vhost-apply", {"name": "site1", "content": vhost(nginx, "site1.test", "v0")})
    nginx.wait_serving("site1.test", "v0")
    for version in ("v1", "v2", "v3"):
        agent.ok("vhost-apply", {"name": "site1", "content": vhost(nginx, "site1.test", version)})
        assert nginx.get("site1.test") == version  # no waiting: the old workers stopped accepting


def test_vhost_apply_rejects_an_unknown_directive_and_keeps_the_previous_vhost(
    agent: Agent, nginx: Nginx
) -> None:
    good = vhost(nginx, "site1.test", "site1 v1")
    agent.ok("vhost-apply", {"name": "site1", "content": good})
    nginx.wait_serving("site1.test", "site1 v1")

    bad = vhost(nginx, "site1.test", "site1 v2", extra="  foo bar;\n")
    result = agent("vhost-apply", {"name": "site1", "content": bad})

    assert (result.rc, result.out["changed"], result.error["code"]) == (1, False, "nginx_invalid")
    assert result.error["message"].startswith('nginx -t failed: unknown directive "foo" in ')
    assert "chom-site1.conf:4" in result.error["message"]
    assert agent.path("/etc/nginx/sites-available/chom-site1.conf").read_text() == good
    assert nginx.get("site1.test") == "site1 v1"


def test_vhost_apply_of_a_broken_new_site_leaves_no_file_behind(agent: Agent, nginx: Nginx) -> None:
    result = agent("vhost-apply", {"name": "site2", "content": "server { listen nope; }\n"})
    assert result.error["code"] == "nginx_invalid"
    assert 'host not found in "nope"' in result.error["message"]
    assert list(agent.path("/etc/nginx/sites-available").iterdir()) == []
    assert list(agent.path("/etc/nginx/sites-enabled").iterdir()) == []


def test_vhost_update_is_served_and_remove_stops_serving(agent: Agent, nginx: Nginx) -> None:
    agent.ok("vhost-apply", {"name": "site1", "content": vhost(nginx, "site1.test", "v1")})
    nginx.wait_serving("site1.test", "v1")
    agent.ok("vhost-apply", {"name": "site1", "content": vhost(nginx, "site1.test", "v2")})
    nginx.wait_serving("site1.test", "v2")

    assert agent.ok("vhost-remove", {"name": "site1"})["changed"] is True
    nginx.wait_serving("site1.test", None)
    assert agent.ok("vhost-remove", {"name": "site1"})["changed"] is False


def test_vhost_apply_reports_a_failed_reload(agent: Agent, nginx: Nginx) -> None:
    agent.env["VPSMANAGER_NGINX_RELOAD"] = json.dumps(["false"])
    result = agent("vhost-apply", {"name": "site1", "content": vhost(nginx, "s.test", "x")})
    assert (result.out["changed"], result.error["code"]) == (True, "reload_failed")


# --------------------------------------------------------------------------- php-fpm


@dataclass
class PhpFpm:
    run: Path


@pytest.fixture
def php_fpm(agent: Agent, tmp_path: Path) -> Iterator[PhpFpm]:
    require(PHP_FPM)
    run = tmp_path / "fpm-run"
    run.mkdir()
    pool_dir = agent.path("/etc/php/8.2/fpm/pool.d")
    pool_dir.mkdir(parents=True)
    # Debian ships a default "www" pool; CHOM's site "www" must never overwrite it.
    (pool_dir / "www.conf").write_text(pool("www", run))
    conf = tmp_path / "php-fpm.conf"
    conf.write_text(
        f"[global]\npid = {run}/fpm.pid\nerror_log = {run}/fpm.log\ndaemonize = no\n"
        f"include = {pool_dir}/*.conf\n"
    )
    proc = subprocess.Popen(
        [PHP_FPM, "-F", "-y", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: (run / "fpm.pid").exists() and (run / "www.sock").exists(), "php-fpm")
        agent.env["VPSMANAGER_PHP_FPM"] = json.dumps(["php-fpm{version}", "-y", str(conf)])
        agent.env["VPSMANAGER_PHP_FPM_RELOAD"] = json.dumps(["kill", "-USR2", str(proc.pid)])
        yield PhpFpm(run=run)
    finally:
        stop(proc)


def pool(name: str, run: Path, extra: str = "") -> str:
    return (
        f"[{name}]\nuser = nobody\ngroup = nogroup\nlisten = {run}/{name}.sock\n"
        f"pm = ondemand\npm.max_children = 2\n{extra}"
    )


def test_pool_apply_validates_reloads_and_is_idempotent(agent: Agent, php_fpm: PhpFpm) -> None:
    payload = {"name": "www", "php_version": "8.2", "content": pool("site1", php_fpm.run)}
    assert agent.ok("pool-apply", payload)["changed"] is True
    wait_for(lambda: (php_fpm.run / "site1.sock").exists(), "the new pool's socket")
    assert agent.path("/etc/php/8.2/fpm/pool.d/chom-www.conf").read_text() == payload["content"]
    assert agent.path("/etc/php/8.2/fpm/pool.d/www.conf").exists()

    second = agent.ok("pool-apply", payload)
    assert second["changed"] is False
    assert agent.ok("facts")["data"]["pools"] == {"8.2": ["www"]}


def test_pool_apply_rejects_a_bad_pool_and_keeps_the_previous_one(agent: Agent, php_fpm: PhpFpm) -> None:
    good = pool("site1", php_fpm.run)
    agent.ok("pool-apply", {"name": "site1", "php_version": "8.2", "content": good})
    bad = pool("site1", php_fpm.run, extra="foo = bar\n")
    result = agent("pool-apply", {"name": "site1", "php_version": "8.2", "content": bad})

    assert (result.rc, result.out["changed"], result.error["code"]) == (1, False, "php_fpm_invalid")
    assert "chom-site1.conf:7] unknown entry 'foo'" in result.error["message"]
    assert agent.path("/etc/php/8.2/fpm/pool.d/chom-site1.conf").read_text() == good


def test_pool_remove_removes_and_is_idempotent(agent: Agent, php_fpm: PhpFpm) -> None:
    payload = {"name": "site1", "php_version": "8.2"}
    agent.ok("pool-apply", {**payload, "content": pool("site1", php_fpm.run)})
    wait_for(lambda: (php_fpm.run / "site1.sock").exists(), "the pool's socket")
    assert agent.ok("pool-remove", payload)["changed"] is True
    wait_for(lambda: not (php_fpm.run / "site1.sock").exists(), "the pool to go away")
    assert agent.ok("pool-remove", payload)["changed"] is False


def test_pool_apply_for_a_php_version_that_is_not_installed(agent: Agent) -> None:
    result = agent("pool-apply", {"name": "s", "php_version": "7.4", "content": "[s]\n"})
    assert result.error["code"] == "invalid_input"
    assert "PHP 7.4" in result.error["message"]


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


# --------------------------------------------------------------------------- sshd


@pytest.fixture
def sshd(agent: Agent, tmp_path: Path) -> Path:
    require(SSHD)
    # sshd -t insists on its privilege separation directory; the package normally creates it.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    key = tmp_path / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    config = tmp_path / "sshd_config"
    config.write_text(
        f"Include {agent.path('/etc/ssh/sshd_config.d')}/*.conf\nHostKey {key}\nPasswordAuthentication yes\n"
    )
    agent.env["VPSMANAGER_SSHD"] = json.dumps([SSHD, "-f", str(config)])
    agent.env["VPSMANAGER_SSHD_RELOAD"] = agent.fake(
        "sshd-reload", recorder(agent.fakes / "sshd-reload.calls", 0)
    )
    return config


def test_sshd_harden_writes_validates_and_reloads_once(agent: Agent, sshd: Path) -> None:
    first = agent.ok("sshd-harden")
    assert first["changed"] is True
    dropin = agent.path("/etc/ssh/sshd_config.d/50-chom.conf").read_text()
    assert "PasswordAuthentication no" in dropin
    assert len(agent.calls("sshd-reload")) == 1

    assert agent.ok("sshd-harden")["changed"] is False
    assert len(agent.calls("sshd-reload")) == 1


def test_sshd_harden_fails_when_an_earlier_file_wins(agent: Agent, sshd: Path) -> None:
    earlier = agent.path("/etc/ssh/sshd_config.d/10-admin.conf")
    earlier.parent.mkdir(parents=True)
    earlier.write_text("PasswordAuthentication yes\n")
    result = agent("sshd-harden")
    assert result.error["code"] == "sshd_overridden"
    assert "passwordauthentication" in result.error["message"].lower()
    assert not agent.path("/etc/ssh/sshd_config.d/50-chom.conf").exists()
    assert agent.calls("sshd-reload") == []


# --------------------------------------------------------------------------- packages, services


def test_packages_ensure_installs_nothing_when_all_are_present(agent: Agent) -> None:
    require("/usr/bin/dpkg-query")
    out = agent.ok("packages-ensure", {"packages": ["dpkg", "coreutils"]})
    assert (out["changed"], out["data"]) == (False, {"installed": []})
    assert agent.calls("refuse") == []


def test_packages_ensure_installs_only_the_missing_ones(agent: Agent) -> None:
    require("/usr/bin/dpkg-query")
    apt = agent.fake("apt-get", recorder(agent.fakes / "apt-get.calls", 0))
    agent.env["VPSMANAGER_APT_GET"] = apt
    out = agent.ok("packages-ensure", {"packages": ["dpkg", "chom-no-such-package"]})
    assert (out["changed"], out["data"]) == (True, {"installed": ["chom-no-such-package"]})
    update, install = agent.calls("apt-get")
    assert update == "update [DEBIAN_FRONTEND=noninteractive]"
    assert install.startswith("install -y --no-install-recommends ")
    assert install.endswith(" chom-no-such-package [DEBIAN_FRONTEND=noninteractive]")


def test_packages_ensure_reports_apt_failures(agent: Agent) -> None:
    require("/usr/bin/dpkg-query")
    result = agent("packages-ensure", {"packages": ["chom-no-such-package"], "update": False})
    assert (result.error["code"], result.error["step"]) == ("command_failed", "apt-install")


def test_service_ensure_enables_and_starts_only_when_needed(agent: Agent) -> None:
    payload = {"name": "nginx", "enabled": True, "running": True}
    first = agent.ok("service-ensure", payload)
    assert (first["changed"], first["data"]["state"]) == (True, "active")
    assert {"enable -- nginx", "start -- nginx"} <= set(agent.calls("systemctl"))

    before = len(agent.calls("systemctl"))
    assert agent.ok("service-ensure", payload)["changed"] is False
    assert all(c.split()[0].startswith("is-") for c in agent.calls("systemctl")[before:]), agent.calls(
        "systemctl"
    )


def test_reload_fails_loudly_for_an_inactive_service(agent: Agent) -> None:
    result = agent("reload", {"service": "nginx"})
    assert (result.error["code"], result.out["changed"]) == ("command_failed", False)
    assert "not active" in result.error["message"]
    agent.ok("service-ensure", {"name": "nginx", "running": True})
    assert agent.ok("reload", {"service": "nginx"})["changed"] is True


def test_ufw_apply_reports_a_missing_ufw(agent: Agent) -> None:
    result = agent("ufw-apply", {"allow": [{"port": 22, "proto": "tcp"}]})
    assert (result.rc, result.error["code"]) == (1, "ufw_unavailable")


def test_service_ensure_asks_systemctl_once_per_question_for_a_batch(agent: Agent) -> None:
    agent.ok("service-ensure", {"name": "cron", "enabled": True, "running": True})
    payload = {"services": [{"name": n, "enabled": True, "running": True} for n in ("nginx", "cron", "ssh")]}
    before = len(agent.calls("systemctl"))
    first = agent.ok("service-ensure", payload)
    assert first["changed"] is True
    assert first["data"]["services"] == [
        {"name": "nginx", "state": "active", "changed": True},
        {"name": "cron", "state": "active", "changed": False},
        {"name": "ssh", "state": "active", "changed": True},
    ]
    calls = agent.calls("systemctl")[before:]
    assert calls[:2] == ["is-enabled -- nginx cron ssh", "is-active -- nginx cron ssh"]
    assert not [c for c in calls if c.endswith(" cron") and not c.startswith("is-")]

    before = len(agent.calls("systemctl"))
    assert agent.ok("service-ensure", payload)["changed"] is False
    assert agent.calls("systemctl")[before:] == [
        "is-enabled -- nginx cron ssh",
        "is-active -- nginx cron ssh",
    ]


def test_service_ensure_keeps_units_and_states_paired_when_a_unit_file_is_missing(agent: Agent) -> None:
    agent.ok("service-ensure", {"name": "nginx", "enabled": True})
    payload = {"services": [{"name": "nounit-x", "enabled": False}, {"name": "nginx", "enabled": True}]}
    out = agent.ok("service-ensure", payload)
    assert out["changed"] is False, out["log"]


def ufw_fake(agent: Agent) -> str:
    """Lists rules the way `ufw status` does (host sources without /32, "(v6)" twins)."""
    state = agent.fakes / "ufw-state"
    return agent.fake(
        "ufw",
        f"""#!/bin/sh
echo "$*" >> {agent.fakes}/ufw.calls
case $1 in
  status) if [ -e {state}.on ]; then
      printf 'Status: active\\n\\n%-26s %-12s%s\\n' To Action From -- ------ ----
      cat {state}.listing 2>/dev/null
    else echo "Status: inactive"; fi;;
  --force) touch {state}.on;;
  allow) if grep -qxF "$*" {state}.rules 2>/dev/null; then echo "Skipping adding existing rule"
         else echo "$*" >> {state}.rules; echo "Rules updated"
           row="%-26s %-12s%s\\n"
           if [ "$2" = proto ]; then printf "$row" "$9/$3" ALLOW "${{5%/32}}" >> {state}.listing
           else printf "$row" "$2" ALLOW Anywhere "$2 (v6)" ALLOW "Anywhere (v6)" >> {state}.listing
           fi
         fi;;
esac
""",
    )


def test_ufw_apply_adds_rules_and_enables_once(agent: Agent) -> None:
    agent.env["VPSMANAGER_UFW"] = ufw_fake(agent)
    payload = {
        "allow": [
            {"port": 22, "proto": "tcp", "from": "203.0.113.7"},
            {"port": 443, "proto": "tcp"},
        ]
    }
    assert agent.ok("ufw-apply", payload)["changed"] is True
    assert agent.calls("ufw") == [
        "status",
        "allow proto tcp from 203.0.113.7/32 to any port 22",
        "allow 443/tcp",
        "--force enable",
    ]
    before = len(agent.calls("ufw"))
    second = agent.ok("ufw-apply", payload)
    assert second["changed"] is False
    assert second["log"] == ["ufw active with all 2 rules"]
    assert agent.calls("ufw")[before:] == ["status"]


def test_ufw_apply_adds_only_the_rules_an_active_ufw_lacks(agent: Agent) -> None:
    agent.env["VPSMANAGER_UFW"] = ufw_fake(agent)
    agent.ok("ufw-apply", {"allow": [{"port": 22, "proto": "tcp"}]})
    exporter = {"port": 9100, "proto": "tcp", "from": "10.0.0.0/8"}
    before = len(agent.calls("ufw"))
    out = agent.ok("ufw-apply", {"allow": [{"port": 22, "proto": "tcp"}, exporter]})
    assert out["changed"] is True
    assert agent.calls("ufw")[before:] == ["status", "allow proto tcp from 10.0.0.0/8 to any port 9100"]


def test_ufw_apply_restores_a_missing_ipv6_twin_when_ipv6_is_on(agent: Agent) -> None:
    agent.env["VPSMANAGER_UFW"] = ufw_fake(agent)
    agent.path("/etc/default").mkdir(parents=True)
    agent.path("/etc/default/ufw").write_text('IPV6="yes"\n')
    payload = {"allow": [{"port": 22, "proto": "tcp"}, {"port": 443, "proto": "tcp"}]}
    agent.ok("ufw-apply", payload)
    listing = agent.fakes / "ufw-state.listing"
    kept = [line for line in listing.read_text().splitlines(keepends=True) if "443/tcp (v6)" not in line]
    listing.write_text("".join(kept))
    before = len(agent.calls("ufw"))
    agent.ok("ufw-apply", payload)
    assert agent.calls("ufw")[before:] == ["status", "allow 443/tcp"]


# --------------------------------------------------------------------------- users


def require_useradd_prefix() -> None:
    help_text = subprocess.run(["useradd", "--help"], capture_output=True, text=True).stdout
    if "--prefix" not in help_text:
        pytest.skip("useradd has no --prefix on this host")


def test_user_ensure_creates_a_system_user_with_a_private_home(agent: Agent) -> None:
    require_useradd_prefix()
    payload = {"name": "site1", "home": "/var/www/site1"}
    out = agent.ok("user-ensure", payload)
    home = agent.path("/var/www/site1").stat()
    assert out["changed"] is True
    assert (home.st_uid, home.st_gid) == (out["data"]["uid"], out["data"]["gid"])
    assert stat.S_IMODE(home.st_mode) == 0o750
    assert out["data"]["uid"] < 1000
    entry = agent.path("/etc/passwd").read_text().splitlines()[-1]
    assert entry.endswith(":CHOM managed:/var/www/site1:/usr/sbin/nologin")

    assert agent.ok("user-ensure", payload)["changed"] is False
    assert agent.ok("user-ensure", {**payload, "shell": "/bin/bash"})["changed"] is True


def test_user_ensure_refuses_accounts_chom_does_not_manage(agent: Agent) -> None:
    result = agent("user-ensure", {"name": "www-data", "home": "/var/www/x"})
    assert result.error["code"] == "user_conflict"
    assert agent("user-remove", {"name": "root"}).error["code"] == "user_conflict"


def test_user_remove_removes_user_and_group(agent: Agent) -> None:
    require_useradd_prefix()
    agent.ok("user-ensure", {"name": "site1", "home": "/home/site1"})
    assert agent.ok("user-remove", {"name": "site1"})["changed"] is True
    assert "site1" not in agent.path("/etc/passwd").read_text()
    assert "site1" not in agent.path("/etc/group").read_text()
    assert agent.ok("user-remove", {"name": "site1"})["changed"] is False


# --------------------------------------------------------------------------- facts


def test_facts_returns_a_well_formed_structure(agent: Agent) -> None:
    (agent.root / "etc" / "os-release").write_text(
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
    )
    agent.path("/etc/php/8.2/fpm").mkdir(parents=True)
    data = agent.ok("facts")["data"]

    assert data["os"] == {
        "id": "debian",
        "version_id": "12",
        "pretty": "Debian GNU/Linux 12 (bookworm)",
    }
    assert isinstance(data["kernel"], str) and data["hostname"]
    assert data["cpu_count"] >= 1
    assert data["memory"]["total_bytes"] >= data["memory"]["available_bytes"] > 0
    assert data["disk"]["path"] == "/" and data["disk"]["total_bytes"] >= data["disk"]["free_bytes"]
    assert len(data["load"]) == 3
    assert isinstance(data["packages"], dict)
    assert data["php_versions"] == ["8.2"]
    assert data["services"]["nginx"] == "inactive"
    assert data["services"]["php8.2-fpm"] == "inactive"
    assert data["sites"] == []
    assert data["agent_version"] == agent.ok("version")["data"]["version"]
