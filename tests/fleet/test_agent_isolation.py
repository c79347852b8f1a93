"""The agent's isolation pieces on a real tree: log ACLs and rotation, resource limits around a
site's commands, host hardening, and locks that keep one tenant's builds from delaying another's
changes. The nspawn e2e suite (tests/e2e/test_hostile_tenant.py) proves them on a booted VPS."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.agent_fixtures import (
    SITE,
    Agent,
    R,
    make_repo,
    mode_owner,
    placeholder,
    require,
    site_agent,  # noqa: F401 - the site tests' `agent` fixture (replaces conftest's)
)

pytestmark = pytest.mark.real

LIMITS = {"memory_max_mb": 300, "cpu_quota_percent": 50, "tasks_max": 64, "disk_quota_mb": 100}


def getfacl(path: Path) -> set[str]:
    require("/usr/bin/getfacl")
    out = subprocess.run(["getfacl", "-n", "-p", str(path)], capture_output=True, text=True, check=True)
    return {line for line in out.stdout.splitlines() if line and not line.startswith("#")}


def test_it_gives_only_the_named_log_readers_access_to_a_sites_logs(agent: Agent) -> None:
    agent.ok("user-ensure", {"name": "reader", "home": "/home/reader"})
    uid = int(agent.path("/etc/passwd").read_text().split("reader:x:")[1].split(":")[0])
    logs = agent.path("/var/log/chom/site1")
    first = agent.ok("site-ensure", {"name": SITE, "log_readers": ["reader"]})
    assert first["changed"] is True
    acl = getfacl(logs)
    assert f"user:{uid}:r-x" in acl and f"default:user:{uid}:r--" in acl
    assert "other::---" in acl and "default:other::---" in acl
    # A log nginx creates later inherits the reader's access, nobody else's.
    (logs / "access.log").write_text("GET /?token=secret\n")
    assert {f"user:{uid}:r--", f"user:{uid}:r-x\t#effective:r--"} & getfacl(logs / "access.log")
    assert mode_owner(logs)[0] == 0o750

    again = agent.ok("site-ensure", {"name": SITE, "log_readers": ["reader"]})
    assert again["changed"] is False

    dropped = agent.ok("site-ensure", {"name": SITE})
    assert dropped["changed"] is True
    assert not any(str(uid) in line for line in getfacl(logs) | getfacl(logs / "access.log"))


def test_it_refuses_log_readers_that_are_not_account_names(agent: Agent) -> None:
    result = agent("site-ensure", {"name": SITE, "log_readers": ["../etc"]})
    assert (result.rc, result.error["code"]) == (1, "invalid_input")


def test_it_rotates_a_sites_logs_with_a_size_cap_keeping_the_site_as_reader(
    agent: Agent, site: dict[str, Any]
) -> None:
    require("/usr/sbin/logrotate")
    conf = agent.path("/etc/logrotate.d/chom-site1").read_text()
    assert "maxsize 64M" in conf and "rotate 14" in conf and "create 0640 root site1" in conf
    assert "/usr/sbin/logrotate" in agent.path("/etc/cron.d/chom-logrotate").read_text()
    logs = agent.path("/var/log/chom/site1")
    (logs / "access.log").write_bytes(b"x" * 1024)
    os.chown(logs / "access.log", 0, site["gid"])
    # The real logrotate, on this tree (paths moved into the agent's root, no nginx to signal).
    # site1 exists only in the tree's /etc/passwd: `create 0640` alone keeps the group it had.
    local = (
        re.sub(r"postrotate.*?endscript\n", "", conf, flags=re.S)
        .replace("/var/log/", f"{agent.root}/var/log/")
        .replace("create 0640 root site1", "create 0640")
    )
    (agent.root / "rotate.conf").write_text(local)
    subprocess.run(
        ["logrotate", "-f", "-s", str(agent.root / "rotate.state"), str(agent.root / "rotate.conf")],
        check=True,
        capture_output=True,
        timeout=30,
    )
    assert (logs / "access.log.1").stat().st_size == 1024
    mode, uid, gid = mode_owner(logs / "access.log")
    assert (mode, uid, gid) == (0o640, 0, site["gid"])  # the site still reads its fresh log


def test_it_runs_a_sites_build_under_its_limits(agent: Agent, site: dict[str, Any], base: Path) -> None:
    out = agent.ok("site-ensure", {"name": SITE, "limits": LIMITS})
    # No systemd as PID 1 in this tree: the honest fallback, and an honest quota answer.
    assert out["data"]["limits"]["enforced_by"].startswith("prlimit")
    assert (
        out["data"]["limits"]["disk_quota"].startswith("unavailable")
        or "MiB" in out["data"]["limits"]["disk_quota"]
    )
    # A "php" that shows the limits it runs under (php-lint is the build step that calls it).
    agent.env["VPSMANAGER_PHP"] = agent.fake(
        "php", "#!/bin/sh\ngrep -E 'Max (processes|address space)' /proc/self/limits\nexit 3\n"
    )
    repo, _ = make_repo(base, site["uid"], {"public/index.php": "<?php echo 1;\n"})
    result = agent(
        "release-create",
        {
            "name": SITE,
            "release": R[1],
            "source": {"type": "git", "url": str(repo), "branch": "main"},
            "build": ["php-lint"],
        },
    )
    assert result.error["code"] == "build_failed"
    message = result.error["message"]
    assert re.search(r"Max processes\s+64\s+64", message), message
    assert re.search(rf"Max address space\s+{300 * 4 * 1024 * 1024}\s", message), message


def test_it_refuses_limits_that_are_not_positive_integers(agent: Agent) -> None:
    result = agent("site-ensure", {"name": SITE, "limits": LIMITS | {"tasks_max": "64; reboot"}})
    assert (result.rc, result.error["code"]) == (1, "invalid_input")
    result = agent("site-ensure", {"name": SITE, "limits": {"memory_max_mb": 1}})
    assert (result.rc, result.error["code"]) == (1, "invalid_input")


def test_it_hardens_the_host_and_says_what_it_could_not_do(agent: Agent) -> None:
    out = agent.ok("host-harden")
    assert out["data"]["sysctl"]["fs.protected_hardlinks"] == "1"
    assert "fs.protected_hardlinks = 1" in agent.path("/etc/sysctl.d/60-chom-isolation.conf").read_text()
    assert "proc /proc proc defaults,hidepid=invisible 0 0" in agent.path("/etc/fstab").read_text()
    assert out["data"]["hidepid"].startswith("unavailable")  # a test tree is not the real root
    assert agent.ok("host-harden")["changed"] is False


def test_it_lets_a_co_tenants_vhost_change_through_while_a_build_holds_its_site_lock(
    agent: Agent, site: dict[str, Any]
) -> None:
    """Before, a build held the VPS lock (shared) for up to 900 s and every vhost change waited."""
    lock_dir = agent.path("/run/lock")
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / "vpsmanager-site-site1.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # site1 is "building"
        started = time.monotonic()
        # Another site's change needs only the VPS lock: it does not wait for site1's build.
        result = agent("file-write", {"path": "/etc/nginx/conf.d/other.conf", "content": "# other\n"})
        assert result.rc == 0 and time.monotonic() - started < 10
        # Reads take no lock at all.
        assert agent.ok("releases-list", {"name": SITE})["data"]["releases"] == []
        # site1's own build-scoped work does wait for that site's lock (here: gives up busy).
        vpsmanager = _agent_module()
        config = _config(vpsmanager, agent)
        with pytest.raises(vpsmanager.AgentError, match="vpsmanager-site-site1.lock"):
            vpsmanager.acquire_lock(config, timeout=0.3, filename="vpsmanager-site-site1.lock")
    finally:
        os.close(fd)
    agent.ok("release-create", placeholder(R[0]))


def test_it_takes_locks_site_first_and_never_the_vps_lock_for_a_build(agent: Agent, monkeypatch) -> None:
    vpsmanager = _agent_module()
    config = _config(vpsmanager, agent)
    held_vps = vpsmanager.acquire_lock(config)  # a vhost change is running
    monkeypatch.setattr(vpsmanager, "acquire_lock", _quick(vpsmanager.acquire_lock))
    try:
        build = vpsmanager.take_locks(config, "site", {"name": "site1"})  # does not wait for it
        assert len(build) == 1
        with pytest.raises(vpsmanager.AgentError, match="busy|holds"):
            vpsmanager.take_locks(
                config, "site+global", {"name": "site2"}
            )  # site-ensure waits for the VPS lock
        for fd in build:
            os.close(fd)
    finally:
        os.close(held_vps)


def _quick(acquire):
    return lambda config, timeout=120.0, **kwargs: acquire(config, timeout=0.3, **kwargs)


def _agent_module():
    import importlib.util

    from tests.fleet.agent_fixtures import AGENT

    spec = importlib.util.spec_from_file_location("vpsmanager_locks_under_test", AGENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(vpsmanager, agent: Agent):
    os.environ["VPSMANAGER_ROOT"] = str(agent.root)
    try:
        return vpsmanager.Config.from_env()
    finally:
        del os.environ["VPSMANAGER_ROOT"]
