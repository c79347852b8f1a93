"""A site's account and directory layout (site-ensure), validation of every site command's input,
legacy supervisor programs and site removal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fleet.agent_fixtures import (
    SITE,
    Agent,
    R,
    mode_owner,
    placeholder,
    site_agent,  # noqa: F401 - the site tests' `agent` fixture (replaces conftest's)
)

pytestmark = pytest.mark.real  # real nginx/php-fpm/MariaDB/PostgreSQL/promtool (tests/support/real.py)


# --------------------------------------------------------------------------- site-ensure


def test_site_ensure_creates_the_user_and_layout_and_a_second_call_changes_nothing(agent: Agent) -> None:
    first = agent.ok("site-ensure", {"name": SITE})
    data = first["data"]
    uid, gid = data["uid"], data["gid"]
    home = agent.path("/var/www/site1")

    assert first["changed"] is True
    assert data["home"] == "/var/www/site1" and data["docroot"] == "/var/www/site1/current/public"
    assert mode_owner(home) == (0o2750, uid, 33)
    assert mode_owner(home / "releases") == (0o2750, uid, 33)
    assert mode_owner(home / "shared") == (0o2750, uid, 33)
    # certbot's webroot: root-owned all the way, outside the home the site user controls
    assert data["acme_webroot"] == "/var/lib/chom/acme/site1"
    assert mode_owner(agent.path("/var/lib/chom/acme/site1")) == (0o750, 0, 33)
    assert mode_owner(agent.path("/var/lib/chom/acme")) == (0o755, 0, 0)
    assert not (home / "acme").exists()
    assert mode_owner(home / "tmp") == (0o700, uid, gid)
    assert mode_owner(agent.path("/var/log/chom/site1")) == (0o750, 0, gid)  # root writes, the site reads
    entry = agent.path("/etc/passwd").read_text().splitlines()[-1]
    assert entry.endswith(":CHOM managed:/var/www/site1:/usr/sbin/nologin")

    second = agent.ok("site-ensure", {"name": SITE})
    assert (second["changed"], second["data"]) == (False, data)


def test_site_ensure_repairs_drifted_modes(agent: Agent, site: dict[str, Any]) -> None:
    agent.path("/var/www/site1/shared").chmod(0o777)
    out = agent.ok("site-ensure", {"name": SITE})
    assert out["changed"] is True
    assert mode_owner(agent.path("/var/www/site1/shared"))[0] == 0o2750


def test_site_ensure_replaces_a_planted_symlink_and_leaves_its_target_alone(
    agent: Agent, site: dict[str, Any]
) -> None:
    """The site user owns its home: `tmp` swapped for a symlink to a root file must not make root
    chown/chmod that file (the old lstat-then-chmod followed the link)."""
    victim = agent.path("/etc/chom-victim")
    victim.write_text("root's file\n")
    victim.chmod(0o600)
    tmp = agent.path("/var/www/site1/tmp")
    tmp.rmdir()
    tmp.symlink_to(victim)
    agent.ok("site-ensure", {"name": SITE})
    assert mode_owner(victim) == (0o600, 0, 0) and victim.read_text() == "root's file\n"
    assert tmp.is_dir() and not tmp.is_symlink()
    assert mode_owner(tmp)[0] == 0o700


def test_site_ensure_refuses_an_account_chom_does_not_manage(agent: Agent) -> None:
    result = agent("site-ensure", {"name": "www-data"})
    assert result.error["code"] == "user_conflict"


def src(kind: str, **fields: Any) -> dict[str, Any]:
    """A release-create payload for site1 / R[0] with the given source."""
    return {"name": SITE, "release": R[0], "source": {"type": kind, **fields}}


WP = {"title": "t", "admin_email": "a@b.co", "admin_password": "longenough", "url": "https://x.test"}
CERT = {"name": SITE, "email": "a@b.co", "server": "https://ca/dir"}
SITE_INVALID = [
    ("site-ensure", {"name": "../x"}),
    ("site-ensure", {"name": SITE, "php_version": "8.2;id"}),
    ("release-create", {**src("placeholder", html=""), "release": "latest"}),
    ("release-create", src("svn", url="x")),
    ("release-create", src("git", url="ext::sh -c id", branch="m")),
    ("release-create", src("git", url="ssh://h/r", branch="m")),
    ("release-create", src("git", url="/a/../b", branch="m")),
    ("release-create", src("git", url="/r", branch="--upload-pack=x")),
    ("release-create", src("archive", url="file:///etc/shadow", sha256="0" * 64)),
    ("release-create", src("archive", url="https://x/a.tgz", sha256="abc")),
    ("release-create", {**placeholder(R[0]), "build": ["rm -rf /"]}),
    ("release-create", {**placeholder(R[0]), "shared": ["../etc"]}),
    ("release-create", {**placeholder(R[0]), "shared": ["/etc"]}),
    ("release-create", {**placeholder(R[0]), "env": {"path": "../.env", "content": "A=1"}}),
    ("release-create", {**placeholder(R[0]), "docroot": "../x"}),
    ("release-activate", {"name": SITE, "release": R[0], "keep": 0}),
    ("site-exec", {"name": SITE, "step": "bash"}),
    ("site-exec", {"name": SITE, "step": "wp-install", "admin_user": "a b", **WP}),
    ("cert-issue", {**CERT, "domains": ["x.test; id"]}),
    ("cert-issue", {**CERT, "domains": ["x.test"], "server": "http://ca/dir"}),
    ("cert-issue", {**CERT, "domains": []}),
    ("workers-apply", {"name": SITE, "workers": [{"name": "q", "argv": ["a\nb"], "processes": 1}]}),
    ("workers-apply", {"name": SITE, "workers": [{"name": "Q", "argv": ["php"], "processes": 1}]}),
    ("workers-apply", {"name": SITE, "workers": "php artisan queue:work"}),
    ("site-remove", {"name": "Root"}),
]


@pytest.mark.parametrize(("command", "payload"), SITE_INVALID)
def test_site_commands_reject_invalid_input(agent: Agent, command: str, payload: dict[str, Any]) -> None:
    result = agent(command, payload)
    assert (result.rc, result.out["changed"], result.error["code"]) == (1, False, "invalid_input"), result.out
    assert agent.calls("supervisorctl") == []


def test_release_commands_need_site_ensure_first(agent: Agent) -> None:
    assert agent("release-create", placeholder(R[0])).error["code"] == "not_found"
    assert agent("releases-list", {"name": SITE}).error["code"] == "not_found"


# --------------------------------------------------------------------------- supervisor, removal


def legacy_supervisor_program(agent: Agent) -> Path:
    """The queue worker an older CHOM ran under supervisor (workers are systemd units now)."""
    path = agent.path("/etc/supervisor/conf.d/chom-site1.conf")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[program:chom-site1-queue]\ncommand=/bin/true\nuser=site1\n")
    return path


def test_site_remove_removes_everything_and_is_idempotent(agent: Agent, site: dict[str, Any]) -> None:
    agent.ok("release-create", placeholder(R[0]))
    agent.ok("release-activate", {"name": SITE, "release": R[0]})
    legacy_supervisor_program(agent)
    agent.ok("file-write", {"path": "/etc/cron.d/chom-site1", "content": "* * * * * site1 true\n"})
    live = agent.path("/etc/letsencrypt/live/site1")
    live.mkdir(parents=True)
    agent.path("/etc/letsencrypt/renewal").mkdir()
    agent.path("/etc/letsencrypt/renewal/site1.conf").write_text("x")
    agent.ok("file-write", {"path": "/etc/nginx/sites-available/chom-site1.conf", "content": "server {}\n"})

    blocked = agent("site-remove", {"name": SITE})
    assert (blocked.error["code"], blocked.out["changed"]) == ("conflict", False)
    assert "vhost" in blocked.error["message"]
    agent.path("/etc/nginx/sites-available/chom-site1.conf").unlink()

    out = agent.ok("site-remove", {"name": SITE})
    assert out["changed"] is True
    for path in (
        "/var/www/site1",
        "/var/log/chom/site1",
        "/etc/cron.d/chom-site1",
        "/etc/letsencrypt/live/site1",
    ):
        assert not agent.path(path).exists(), path
    assert not agent.path("/etc/letsencrypt/renewal/site1.conf").exists()
    assert not agent.path("/etc/supervisor/conf.d/chom-site1.conf").exists()
    assert "site1:" not in agent.path("/etc/passwd").read_text()
    assert agent.ok("site-remove", {"name": SITE})["changed"] is False


def test_site_remove_refuses_accounts_chom_does_not_manage(agent: Agent) -> None:
    agent.path("/var/www/www-data").mkdir(parents=True)
    assert agent("site-remove", {"name": "www-data"}).error["code"] == "user_conflict"
    assert agent.path("/var/www/www-data").is_dir()
    # Without a CHOM user, a directory that merely has the name is left alone.
    agent.path("/var/www/html").mkdir()
    assert agent.ok("site-remove", {"name": "html"})["changed"] is False
    assert agent.path("/var/www/html").is_dir()
