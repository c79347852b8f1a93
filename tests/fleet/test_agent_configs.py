"""The agent's config-file commands: file-write/file-remove, nginx vhosts and php-fpm pools, applied
to a real nginx and php-fpm with private prefixes, sockets and ports.
"""

from __future__ import annotations

import json
import stat
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fleet.agent_fixtures import NGINX, PHP_FPM, Agent, free_port, require, stop, wait_for

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


def test_file_write_replaces_the_mysqld_exporters_defaults_file_but_nothing_else_in_etc_default(
    agent: Agent,
) -> None:
    payload = {"path": "/etc/default/prometheus-mysqld-exporter", "content": 'ARGS=""\n'}
    assert agent.ok("file-write", payload)["changed"] is True
    assert agent.path(payload["path"]).read_text() == 'ARGS=""\n'
    for other in ("/etc/default/ufw", "/etc/default/prometheus-mysqld-exporterx", "/etc/default/x/y"):
        result = agent("file-write", {"path": other, "content": "x"})
        assert result.error["code"] == "invalid_input", other
        assert not agent.path(other).exists()
    assert agent("file-remove", {"path": payload["path"]}).error["code"] == "invalid_input"


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
