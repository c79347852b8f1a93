"""release-activate, releases-list and pruning, zero failed requests through a real nginx while
releases switch, file isolation between sites, and site-exec in the current release.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.agent_fixtures import (
    SITE,
    Agent,
    R,
    Web,
    make_repo,
    placeholder,
    site_agent,  # noqa: F401 - the site tests' `agent` fixture (replaces conftest's)
)

pytestmark = pytest.mark.real  # real nginx/php-fpm/MariaDB/PostgreSQL/promtool (tests/support/real.py)


# --------------------------------------------------------------------------- activate, list, prune


def test_release_activate_switches_current_and_prunes_beyond_keep(agent: Agent, site: dict[str, Any]) -> None:
    for release in R[:6]:
        agent.ok("release-create", placeholder(release))
    out = agent.ok("release-activate", {"name": SITE, "release": R[5], "keep": 5})

    assert out["changed"] is True
    assert out["data"] == {"current": R[5], "previous": None, "pruned": [R[0]]}
    current = agent.path("/var/www/site1/current")
    assert os.readlink(current) == f"releases/{R[5]}"
    assert (current / "public" / "index.html").read_text() == f"release {R[5]}"

    again = agent.ok("release-activate", {"name": SITE, "release": R[5], "keep": 5})
    assert (again["changed"], again["data"]["pruned"]) == (False, [])

    # Rolling back to an older release keeps the one it replaced even when beyond keep.
    back = agent.ok("release-activate", {"name": SITE, "release": R[1], "keep": 1})
    assert back["data"]["previous"] == R[5]
    assert sorted(back["data"]["pruned"]) == [R[2], R[3], R[4]]
    listing = agent.ok("releases-list", {"name": SITE})["data"]
    assert listing["current"] == R[1]
    assert [r["name"] for r in listing["releases"]] == [R[5], R[1]]
    assert listing["releases"][0]["commit"] == "placeholder" and listing["releases"][0]["created"].endswith(
        "Z"
    )
    assert agent.ok("facts")["data"]["site_releases"] == {SITE: {"current_release": R[1], "releases": 2}}


def test_release_activate_refuses_unknown_or_incomplete_releases(agent: Agent, site: dict[str, Any]) -> None:
    agent.path(f"/var/www/site1/releases/{R[3]}").mkdir()  # no completion marker
    for release in (R[2], R[3]):
        result = agent("release-activate", {"name": SITE, "release": release})
        assert (result.error["code"], result.out["changed"]) == ("not_found", False)
    assert not agent.path("/var/www/site1/current").exists()


def test_a_hostile_release_marker_never_blocks_or_misleads_the_agent(
    agent: Agent, site: dict[str, Any]
) -> None:
    """The site user owns its releases: a FIFO, a symlink or a symlinked release directory at the
    marker must not hang root's agent (every facts call, so the whole VPS) nor count as complete."""
    for release in R[:4]:
        agent.ok("release-create", placeholder(release))
    releases = agent.path("/var/www/site1/releases")
    (releases / R[0] / ".chom-release.json").unlink()
    os.mkfifo(releases / R[0] / ".chom-release.json")
    (releases / R[1] / ".chom-release.json").unlink()
    (releases / R[1] / ".chom-release.json").symlink_to(releases / R[3] / ".chom-release.json")
    os.rename(releases / R[2], releases / "moved")
    (releases / R[2]).symlink_to(releases / R[3])
    started = time.monotonic()
    listing = agent.ok("releases-list", {"name": SITE})["data"]
    facts = agent.ok("facts")["data"]
    assert time.monotonic() - started < 30  # a blocking open would hang until the test times out
    assert [r["name"] for r in listing["releases"]] == [R[3]]
    assert facts["site_releases"][SITE]["releases"] == 1
    for release in (R[0], R[1], R[2]):
        assert agent("release-activate", {"name": SITE, "release": release}).error["code"] == "not_found"


def test_nginx_serves_each_activated_release_without_a_failed_request(
    agent: Agent, site: dict[str, Any], web: Web
) -> None:
    releases = R[:21]
    agent.ok("release-create", placeholder(releases[0]))
    agent.ok("release-activate", {"name": SITE, "release": releases[0]})
    assert web.get("site1.test") == (200, f"release {releases[0]}")
    valid = {f"release {r}" for r in releases}
    stats = {"requests": 0, "errors": 0}
    bad: list[tuple[int, str]] = []
    done = threading.Event()

    def hammer() -> None:
        while not done.is_set():
            status, body = web.get("site1.test")
            stats["requests"] += 1
            if status != 200 or body not in valid:
                stats["errors"] += 1
                bad.append((status, body))

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for thread in threads:
        thread.start()
    activations: list[float] = []
    try:
        for release in releases[1:]:
            agent.ok("release-create", placeholder(release))
            started = time.monotonic()
            out = agent.ok("release-activate", {"name": SITE, "release": release, "keep": 5})
            activations.append(time.monotonic() - started)
            assert out["changed"] is True
            assert web.get("site1.test") == (200, f"release {release}")
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=10)
    total, slowest = sum(activations), max(activations)
    print(f"\n20 activations (agent runs incl. prune): {total:.2f}s, slowest {slowest:.3f}s;", end=" ")
    print(f"request loop during create+activate: {stats['requests']} requests, {stats['errors']} errors")
    assert stats["requests"] > 20
    assert (stats["errors"], bad[:3]) == (0, [])
    assert len(list(agent.path("/var/www/site1/releases").iterdir())) == 5


def test_php_files_and_the_env_file_are_not_readable_by_other_sites(
    agent: Agent, site: dict[str, Any]
) -> None:
    other = agent.ok("site-ensure", {"name": "site2"})["data"]
    agent.ok("release-create", {**placeholder(R[0]), "env": {"path": ".env", "content": "X=1\n"}})
    release = agent.path(f"/var/www/site1/releases/{R[0]}")
    for path, uid in ((release / "public" / "index.html", other["uid"]), (release / ".env", 33)):
        probe = subprocess.run(
            ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "cat", str(path)],
            capture_output=True,
            timeout=30,
        )
        assert probe.returncode != 0, path
    # ... while nginx's group www-data can read the site's public files.
    probe = subprocess.run(
        [
            "setpriv",
            "--reuid=33",
            "--regid=33",
            "--clear-groups",
            "cat",
            str(release / "public" / "index.html"),
        ],
        capture_output=True,
        timeout=30,
    )
    assert probe.returncode == 0


# --------------------------------------------------------------------------- site-exec


def test_site_exec_runs_a_step_in_current_as_the_site_user(
    agent: Agent, site: dict[str, Any], base: Path
) -> None:
    artisan = "<?php if ($argv[1] === 'migrate') { echo 'Nothing to migrate.'; }\n"
    repo, _ = make_repo(base, site["uid"], {"artisan": artisan, "public/index.php": "<?php\n"})
    agent.ok(
        "release-create",
        {"name": SITE, "release": R[0], "source": {"type": "git", "url": str(repo), "branch": "main"}},
    )
    assert agent("site-exec", {"name": SITE, "step": "artisan-migrate"}).error["code"] == "not_found"
    agent.ok("release-activate", {"name": SITE, "release": R[0]})
    out = agent.ok("site-exec", {"name": SITE, "step": "artisan-migrate"})
    assert (out["changed"], out["data"]) == (False, {"release": R[0], "step": "artisan-migrate", "ran": True})
    assert any("Nothing to migrate" in line for line in out["log"])


def test_site_exec_wp_install_passes_the_password_on_stdin_only(
    agent: Agent, site: dict[str, Any], base: Path
) -> None:
    # A stand-in for WordPress with the functions the installer calls: records its arguments.
    wp_load = """<?php
define('ABSPATH', __DIR__ . '/');
function is_blog_installed() { return file_exists(__DIR__ . '/installed.json'); }
function wp_slash($v) { return $v; }
function update_option($k, $v) { $GLOBALS['opts'][$k] = $v; }
function wp_install($t, $u, $e, $p, $d, $pw) {
    register_shutdown_function(function () use ($t, $u, $e, $pw) {
        file_put_contents(__DIR__ . '/installed.json', json_encode([$t, $u, $e, $pw, $GLOBALS['opts']]));
    });
    return ['user_id' => 1];
}
"""
    files = {"wp-load.php": wp_load, "wp-admin/includes/upgrade.php": "<?php\n", "index.php": "<?php\n"}
    repo, _ = make_repo(base, site["uid"], files)
    agent.ok(
        "release-create",
        {"name": SITE, "release": R[0], "source": {"type": "git", "url": str(repo), "branch": "main"}},
    )
    agent.ok("release-activate", {"name": SITE, "release": R[0]})
    password = "correct horse battery staple"
    payload = {
        "name": SITE,
        "step": "wp-install",
        "title": "My blog",
        "admin_user": "admin",
        "admin_email": "admin@example.com",
        "admin_password": password,
        "url": "https://site1.test",
    }
    out = agent.ok("site-exec", payload)
    assert (out["changed"], out["data"]["installed"]) == (True, True)
    assert password not in json.dumps(out)
    recorded = json.loads(agent.path(f"/var/www/site1/releases/{R[0]}/installed.json").read_text())
    assert recorded == [
        "My blog",
        "admin",
        "admin@example.com",
        password,
        {"siteurl": "https://site1.test", "home": "https://site1.test"},
    ]
    assert list(agent.path("/var/www/site1/tmp").iterdir()) == []
    assert agent.ok("site-exec", payload)["changed"] is False
