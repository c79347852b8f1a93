"""env-apply and deploy hooks: the site's shared/.env (written as the site user, linked from every
release, read back by the real phpdotenv whatever the values), Laravel's config cache and reloads,
and tenant argv hooks in release-create and hook-run."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.agent_fixtures import (
    PHP,
    SITE,
    Agent,
    R,
    make_repo,
    mode_owner,
    placeholder,
    recorder,
    site_agent,  # noqa: F401 - the site tests' `agent` fixture (replaces conftest's)
)
from tests.fleet.test_agent_site_layout import legacy_supervisor_program

pytestmark = pytest.mark.real

DOTENV_AUTOLOAD = "/usr/share/php/Dotenv/autoload.php"
MANAGED = {"DB_HOST": "localhost", "DB_DATABASE": "site1", "DB_PASSWORD": "managed-Pa55word"}
READ_ENV = """<?php
require '%s';
echo json_encode(Dotenv\\Dotenv::createArrayBacked($argv[1])->load());
"""
# A fake artisan: config:cache bakes .env into bootstrap/cache/config.php, as Laravel's does.
ARTISAN = """<?php
if (($argv[1] ?? '') !== 'config:cache') { exit(2); }
@mkdir('bootstrap/cache', 0770, true);
$count = (int) @file_get_contents('../../shared/cache-runs') + 1;
file_put_contents('../../shared/cache-runs', (string) $count);
file_put_contents('bootstrap/cache/config.php', '<?php return ' . var_export(
    ['env' => file_get_contents('.env'), 'uid' => posix_geteuid()], true) . ';');
"""


@pytest.fixture
def env_agent(agent: Agent) -> Agent:
    agent.env["VPSMANAGER_PHP_FPM_RELOAD"] = agent.fake(
        "fpm-reload", recorder(agent.fakes / "fpm-reload.calls")
    )
    return agent


def apply(agent: Agent, variables: dict[str, str], **extra: Any) -> dict[str, Any]:
    payload = {"name": SITE, "site_env": {"managed": MANAGED, "variables": variables}, "php_version": "8.2"}
    return agent.ok("env-apply", payload | extra)


def dotenv_read(directory: Path) -> dict[str, str]:
    if not os.path.exists(DOTENV_AUTOLOAD):
        pytest.skip("php-dotenv (Debian's vlucas/phpdotenv) is not installed")
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "read-env.php"
        script.write_text(READ_ENV % DOTENV_AUTOLOAD)
        proc = subprocess.run([PHP, str(script), str(directory)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return json.loads(proc.stdout)


def test_it_writes_shared_env_for_the_site_user_and_links_every_release_to_it(
    env_agent: Agent, site: dict[str, Any]
) -> None:
    secret = "tenant-S3cret-value"
    variables = {"GREETING": "hello", "API_TOKEN": secret}
    out = env_agent.ok(
        "release-create",
        {**placeholder(R[0]), "site_env": {"managed": MANAGED, "variables": variables}},
    )
    shared = env_agent.path("/var/www/site1/shared/.env")
    release = env_agent.path(f"/var/www/site1/releases/{R[0]}")
    assert mode_owner(shared) == (0o640, site["uid"], site["gid"])
    assert os.readlink(release / ".env") == "../../shared/.env"
    assert dotenv_read(release) == {**MANAGED, **variables}
    assert secret not in json.dumps(out) and "managed-Pa55word" not in json.dumps(out)


def test_it_applies_a_change_without_a_new_release_and_the_second_run_changes_nothing(
    env_agent: Agent, site: dict[str, Any]
) -> None:
    env_agent.ok("release-create", {**placeholder(R[0]), "site_env": {"managed": MANAGED, "variables": {}}})
    env_agent.ok("release-activate", {"name": SITE, "release": R[0]})
    first = apply(env_agent, {"GREETING": "changed"})
    assert first["changed"] is True
    assert first["data"]["release"] == R[0] and first["data"]["reloaded"] == ["php8.2-fpm"]
    assert dotenv_read(env_agent.path(f"/var/www/site1/releases/{R[0]}"))["GREETING"] == "changed"
    assert os.listdir(env_agent.path("/var/www/site1/releases")) == [R[0]]
    assert len(env_agent.calls("fpm-reload")) == 1
    again = apply(env_agent, {"GREETING": "changed"})
    assert (again["changed"], again["data"]["reloaded"]) == (False, [])
    assert len(env_agent.calls("fpm-reload")) == 1


HOSTILE = {
    "newline": "x\nDB_PASSWORD=stolen",
    "carriage return": "x\rDB_HOST=evil.example",
    "double quote": 'x"\nDB_HOST="evil',
    "single quote": "it's '$DB_PASSWORD'",
    "hash": "before # after",
    "dollar brace": "${DB_PASSWORD}",
    "dollar": "$DB_PASSWORD",
    "backslash": "ends with a backslash\\",
    "backslash quote": '\\"\nDB_HOST=evil',
    "escapes": "\\n\\t\\$",
    "spaces": "  padded  ",
    "tab and form feed": "a\tb\fc\vd",
    "empty": "",
    "unicode": "héllo → ✓",
    "equals": "a=b=c",
}


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_it_renders_values_no_one_can_inject_another_variable_with(
    env_agent: Agent, site: dict[str, Any], value: str
) -> None:
    env_agent.ok("release-create", {**placeholder(R[0]), "site_env": {"managed": MANAGED, "variables": {}}})
    apply(env_agent, {"HOSTILE": value, "AFTER": "still-here"})
    read = dotenv_read(env_agent.path(f"/var/www/site1/releases/{R[0]}"))
    assert read == {**MANAGED, "HOSTILE": value, "AFTER": "still-here"}


def test_it_replaces_a_symlink_the_site_user_planted_at_shared_env_without_following_it(
    env_agent: Agent, site: dict[str, Any]
) -> None:
    env_agent.ok("release-create", {**placeholder(R[0]), "site_env": {"managed": MANAGED, "variables": {}}})
    victim = env_agent.path("/etc/victim.conf")
    victim.write_text("root only\n")
    victim.chmod(0o600)
    shared = env_agent.path("/var/www/site1/shared/.env")
    shared.unlink()
    os.symlink(victim, shared)
    os.lchown(shared, site["uid"], site["gid"])
    apply(env_agent, {"GREETING": "hi"})
    assert victim.read_text() == "root only\n" and mode_owner(victim) == (0o600, 0, 0)
    assert not shared.is_symlink() and mode_owner(shared) == (0o640, site["uid"], site["gid"])


def test_it_links_an_older_release_that_carried_its_own_env_file(
    env_agent: Agent, site: dict[str, Any]
) -> None:
    old = {"path": ".env", "content": "GREETING=from-the-old-release\n"}
    env_agent.ok("release-create", {**placeholder(R[0]), "env": old})
    env_agent.ok("release-activate", {"name": SITE, "release": R[0]})
    out = apply(env_agent, {"GREETING": "current"})
    release = env_agent.path(f"/var/www/site1/releases/{R[0]}")
    assert os.readlink(release / ".env") == "../../shared/.env"
    assert dotenv_read(release)["GREETING"] == "current"
    assert any(f"linked .env -> shared/.env in {R[0]}" in line for line in out["log"])


def test_it_rebuilds_laravel_config_cache_and_restarts_the_queue_worker(
    env_agent: Agent, site: dict[str, Any], base: Path
) -> None:
    repo, _ = make_repo(base, site["uid"], {"artisan": ARTISAN, "public/index.php": "<?php\n"})
    source = {"type": "git", "url": str(repo), "branch": "main"}
    env_agent.ok(
        "release-create",
        {"name": SITE, "release": R[0], "source": source, "site_env": {"managed": MANAGED, "variables": {}}},
    )
    env_agent.ok("release-activate", {"name": SITE, "release": R[0]})
    legacy_supervisor_program(env_agent)  # until the next deploy makes it a systemd worker
    out = apply(env_agent, {"GREETING": "cached"}, config_cache=True)
    cached = env_agent.path(f"/var/www/site1/releases/{R[0]}/bootstrap/cache/config.php")
    assert "GREETING=cached" in cached.read_text() and f"'uid' => {site['uid']}" in cached.read_text()
    assert out["data"]["config_cached"] is True
    assert out["data"]["reloaded"] == ["php8.2-fpm", f"chom-{SITE}-queue"]
    assert f"restart chom-{SITE}-queue:*" in env_agent.calls("supervisorctl")
    again = apply(env_agent, {"GREETING": "cached"}, config_cache=True)
    assert (again["changed"], again["data"]["config_cached"]) == (False, False)
    assert env_agent.path("/var/www/site1/shared/cache-runs").read_text() == "1"


def test_it_refuses_bad_names_nul_and_oversized_values(env_agent: Agent, site: dict[str, Any]) -> None:
    for variables in ({"lower": "x"}, {"A-B": "x"}, {"OK": "nul\x00"}, {"BIG": "x" * 8193}, {"N": 1}):
        payload = {"name": SITE, "site_env": {"managed": {}, "variables": variables}}
        result = env_agent("env-apply", payload)
        assert (result.rc, result.error["code"]) == (1, "invalid_input"), variables
    clash = {"name": SITE, "site_env": {"managed": {"DB_HOST": "a"}, "variables": {"DB_HOST": "b"}}}
    assert env_agent("env-apply", clash).error["code"] == "invalid_input"
    assert not env_agent.path("/var/www/site1/shared/.env").exists()


# --------------------------------------------------------------------------- deploy hooks


def test_it_runs_the_build_hook_as_the_site_user_in_the_new_release(
    agent: Agent, site: dict[str, Any]
) -> None:
    hook = [PHP, "-r", "file_put_contents('who', posix_geteuid()); echo 'built $(id)', PHP_EOL;"]
    out = agent.ok("release-create", {**placeholder(R[0]), "build_hook": hook})
    assert agent.path(f"/var/www/site1/releases/{R[0]}/who").read_text() == str(site["uid"])
    assert "  built $(id)" in out["log"]  # argv, never a shell: $(id) stays text


def test_it_removes_the_release_when_the_build_hook_fails(agent: Agent, site: dict[str, Any]) -> None:
    agent.ok("release-create", placeholder(R[0]))
    agent.ok("release-activate", {"name": SITE, "release": R[0]})
    hook = [PHP, "-r", "echo 'tests are red', PHP_EOL; exit(3);"]
    result = agent("release-create", {**placeholder(R[1]), "build_hook": hook})
    assert (result.rc, result.error["code"]) == (1, "build_failed")
    assert "exited 3" in result.error["message"] and "tests are red" in result.error["message"]
    assert not agent.path(f"/var/www/site1/releases/{R[1]}").exists()
    assert os.readlink(agent.path("/var/www/site1/current")) == f"releases/{R[0]}"


def test_it_refuses_a_hook_that_is_not_an_argv_list(agent: Agent, site: dict[str, Any]) -> None:
    for hook in ("echo hi; id", [], [""], ["x"] * 51, ["a" * 1001], ["echo", "nul\x00"], [1]):
        result = agent("release-create", {**placeholder(R[0]), "build_hook": hook})
        assert (result.rc, result.error["code"]) == (1, "invalid_input"), hook


def test_it_runs_the_release_hook_in_current_and_reports_its_failure(
    agent: Agent, site: dict[str, Any]
) -> None:
    agent.ok("release-create", placeholder(R[0]))
    agent.ok("release-create", placeholder(R[1]))
    agent.ok("release-activate", {"name": SITE, "release": R[1]})
    ok = agent.ok("hook-run", {"name": SITE, "release": R[1], "argv": [PHP, "-r", "echo getcwd(), PHP_EOL;"]})
    assert f"  {agent.path(f'/var/www/site1/releases/{R[1]}')}" in ok["log"]
    failed = agent(
        "hook-run", {"name": SITE, "release": R[1], "argv": [PHP, "-r", "echo 'no', PHP_EOL; exit(4);"]}
    )
    assert failed.error["code"] == "command_failed" and "exited 4: no" in failed.error["message"]
    stale = agent("hook-run", {"name": SITE, "release": R[0], "argv": ["true"]})
    assert stale.error["code"] == "conflict"


def test_it_applies_the_environment_even_when_the_worker_will_not_restart(
    env_agent: Agent, site: dict[str, Any]
) -> None:
    env_agent.ok("release-create", {**placeholder(R[0]), "site_env": {"managed": MANAGED, "variables": {}}})
    env_agent.ok("release-activate", {"name": SITE, "release": R[0]})
    legacy_supervisor_program(env_agent)
    env_agent.env["VPSMANAGER_SUPERVISORCTL"] = env_agent.fake(
        "crashing", recorder(env_agent.fakes / "c.calls", 7)
    )
    out = apply(env_agent, {"GREETING": "still-applied"})
    assert out["data"]["reloaded"] == ["php8.2-fpm"]
    assert any(line.startswith(f"warning: chom-{SITE}-queue did not restart cleanly") for line in out["log"])
    assert dotenv_read(env_agent.path(f"/var/www/site1/releases/{R[0]}"))["GREETING"] == "still-applied"
