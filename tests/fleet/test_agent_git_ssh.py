"""release-create from a private repository over SSH: a real sshd serving git through git-shell on
127.0.0.1, the site's deploy key written as the site user (0600), the host key pinned on first
use and refused when it changes, and nothing of the tenant's ssh or git configuration used."""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sites.git_ssh import deploy_key_generate, key_fingerprint
from tests.fleet.agent_fixtures import (
    SITE,
    Agent,
    R,
    mode_owner,
    require,
    site_agent,  # noqa: F401 - the site tests' `agent` fixture (replaces conftest's)
)
from tests.support.git import GitSshServer, git_repo

pytestmark = pytest.mark.real

OTHER_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.fixture
def site_account(agent: Agent, site: dict[str, Any]) -> Iterator[None]:
    """ssh (unlike git) needs a passwd entry for its uid: on a VPS the site user has one; here the
    site lives in the agent's temp root, so the host gets a stand-in account with that uid and,
    as on a VPS, the site's home as its home (where ssh would look for ~/.ssh/config)."""
    try:
        known = bool(pwd.getpwuid(site["uid"]))
    except KeyError:
        known = False
    if known:
        yield
        return
    name = f"chomsite{secrets.token_hex(3)}"
    subprocess.run(
        ["useradd", "-M", "-N", "-u", str(site["uid"]), "-d", str(agent.path("/var/www/site1")),
         "-s", "/usr/sbin/nologin", name],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    try:
        yield
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=30)


@pytest.fixture
def server(base: Path, site_account: None) -> Iterator[GitSshServer]:
    require("/usr/sbin/sshd")
    require("/usr/bin/git-shell")
    server = GitSshServer(base / "sshd", "127.0.0.1")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def deploy_key() -> tuple[str, str]:
    return deploy_key_generate(comment="chom-site1.test")


def _publish(server: GitSshServer, base: Path, text: str) -> tuple[str, str]:
    commit = git_repo(base / "app", {"index.html": text}, text)
    return server.publish(base / "app", "app.git"), commit


def _payload(url: str, key: str, known_hosts: str = "", release: str = R[0]) -> dict[str, Any]:
    ssh = {"private_key": key, "known_hosts": known_hosts}
    return {
        "name": SITE,
        "release": release,
        "source": {"type": "git", "url": url, "branch": "main", "ssh": ssh},
    }


def test_it_clones_with_the_deploy_key_and_reports_the_host_key_it_saw(
    agent: Agent, site: dict[str, Any], server: GitSshServer, base: Path, deploy_key: tuple[str, str]
) -> None:
    private, public = deploy_key
    server.authorize(public)
    url, commit = _publish(server, base, "private v1")
    out = agent.ok("release-create", _payload(url, private))

    assert out["data"]["commit"] == commit
    assert out["data"]["git_host_keys"] == [f"[127.0.0.1]:{server.port} {server.host_key}"]
    release = agent.path(f"/var/www/site1/releases/{R[0]}")
    assert (release / "index.html").read_text() == "private v1"
    ssh_dir = agent.path("/var/www/site1/.chom-ssh")
    assert mode_owner(ssh_dir) == (0o700, site["uid"], site["gid"])
    assert mode_owner(ssh_dir / "deploy_key") == (0o600, site["uid"], site["gid"])
    assert (ssh_dir / "deploy_key").read_text() == private
    body = private.splitlines()[1]
    assert body not in str(out) and "PRIVATE KEY-----\n" not in str(out)

    # Pinned: the next clone accepts that key and only that key.
    pinned = "\n".join(out["data"]["git_host_keys"]) + "\n"
    url, commit = _publish(server, base, "private v2")
    again = agent.ok("release-create", _payload(url, private, pinned, release=R[1]))
    assert (
        again["data"]["commit"] == commit and again["data"]["git_host_keys"] == out["data"]["git_host_keys"]
    )


def test_it_refuses_a_changed_host_key_naming_the_pinned_fingerprint(
    agent: Agent, site: dict[str, Any], server: GitSshServer, base: Path, deploy_key: tuple[str, str]
) -> None:
    private, public = deploy_key
    server.authorize(public)
    url, _ = _publish(server, base, "v1")
    pinned = f"[127.0.0.1]:{server.port} {server.host_key}\n"
    agent.ok("release-create", _payload(url, private, pinned))
    server.rotate_host_key()

    result = agent("release-create", _payload(url, private, pinned, release=R[1]))
    assert result.rc == 1
    assert result.error["code"] == "host_key_changed" and result.error["step"] == "git-clone"
    assert key_fingerprint(server.host_key) not in result.error["message"]
    assert f"pinned for this site ({key_fingerprint(pinned.split(' ', 1)[1])})" in result.error["message"]
    assert not agent.path(f"/var/www/site1/releases/{R[1]}").exists()
    # The pin was not replaced by what the server shows now.
    assert agent.path("/var/www/site1/.chom-ssh/known_hosts").read_text() == pinned


def test_a_pin_for_another_key_refuses_even_the_first_connection(
    agent: Agent, site: dict[str, Any], server: GitSshServer, base: Path, deploy_key: tuple[str, str]
) -> None:
    private, public = deploy_key
    server.authorize(public)
    url, _ = _publish(server, base, "v1")
    result = agent("release-create", _payload(url, private, f"[127.0.0.1]:{server.port} {OTHER_HOST_KEY}\n"))
    assert result.error["code"] == "host_key_changed", result.out


def test_it_says_the_server_refused_the_deploy_key(
    agent: Agent, site: dict[str, Any], server: GitSshServer, base: Path, deploy_key: tuple[str, str]
) -> None:
    private, _ = deploy_key
    server.authorize(deploy_key_generate(comment="someone-else")[1])
    url, _ = _publish(server, base, "v1")
    result = agent("release-create", _payload(url, private))
    assert result.error["code"] == "source_failed"
    assert "refused the site's deploy key" in result.error["message"]
    assert private.splitlines()[1] not in str(result.out)


def test_it_never_reads_the_tenants_ssh_or_git_configuration(
    agent: Agent, site: dict[str, Any], server: GitSshServer, base: Path, deploy_key: tuple[str, str]
) -> None:
    private, public = deploy_key
    server.authorize(public)
    url, commit = _publish(server, base, "v1")
    home = agent.path("/var/www/site1")
    marker = base / "tenant-command-ran"
    (home / ".ssh").mkdir()
    (home / ".ssh" / "config").write_text(f"Host *\n  ProxyCommand touch {marker}\n  User root\n")
    (home / ".gitconfig").write_text(f"[core]\n  sshCommand = touch {marker}\n")
    for path in (home / ".ssh", home / ".ssh" / "config", home / ".gitconfig"):
        os.lchown(path, site["uid"], site["gid"])

    out = agent.ok("release-create", _payload(url, private))
    assert out["data"]["commit"] == commit
    assert not marker.exists()


def test_the_site_user_cannot_make_root_write_the_key_elsewhere(
    agent: Agent, site: dict[str, Any], server: GitSshServer, base: Path, deploy_key: tuple[str, str]
) -> None:
    private, public = deploy_key
    server.authorize(public)
    url, _ = _publish(server, base, "v1")
    victim = base / "root-only"
    victim.mkdir(mode=0o755)
    ssh_dir = agent.path("/var/www/site1/.chom-ssh")
    ssh_dir.symlink_to(victim)
    os.lchown(ssh_dir, site["uid"], site["gid"])

    agent.ok("release-create", _payload(url, private))
    assert list(victim.iterdir()) == []
    assert ssh_dir.is_dir() and not ssh_dir.is_symlink()


HOSTILE = [
    "ssh://-oProxyCommand=touch/r.git",
    "ssh://git@-oProxyCommand=x/r.git",
    "-oProxyCommand=x@host:r.git",
    "git@-oProxyCommand=x:r.git",
    "git@host:../../etc/passwd",
    "ssh://git@host/srv/../etc/passwd",
    "ssh://git@host/%2e%2e/x",
    "ext::sh -c touch% /tmp/pwned",
    "fd::17",
    "git@host:-u/x",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_it_refuses_hostile_ssh_urls(agent: Agent, site: dict[str, Any], deploy_key, url: str) -> None:
    result = agent("release-create", _payload(url, deploy_key[0]))
    assert result.error["code"] == "invalid_input", result.out


def test_an_ssh_url_needs_the_ssh_part_and_only_an_ssh_url_takes_one(
    agent: Agent, site: dict[str, Any], deploy_key
) -> None:
    bare = {
        "name": SITE,
        "release": R[0],
        "source": {"type": "git", "url": "git@host:o/r.git", "branch": "main"},
    }
    assert agent("release-create", bare).error["code"] == "invalid_input"
    https = _payload("https://host/o/r.git", deploy_key[0])
    assert agent("release-create", https).error["code"] == "invalid_input"
    for bad in ({"private_key": "not a key", "known_hosts": ""}, {"private_key": deploy_key[0]}):
        payload = _payload("git@host:o/r.git", deploy_key[0])
        payload["source"]["ssh"] = bad
        assert agent("release-create", payload).error["code"] == "invalid_input"
    hosts = _payload("git@host:o/r.git", deploy_key[0], "host ssh-ed25519 AAAA$(touch x)\n")
    assert agent("release-create", hosts).error["code"] == "invalid_input"
