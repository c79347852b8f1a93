"""workers-apply / workers-status, run for real against a temp root: the systemd units rendered
for a site's workers (checked by the host's real `systemd-analyze verify`), kept exactly in line
with the list CHOM sends (systemctl is a fake that keeps unit state), and the worker launcher run
as the site user: the site's environment read back exactly, and an .env the site made a symlink
to a root-only file refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.agent_fixtures import (
    SITE,
    Agent,
    R,
    mode_owner,
    placeholder,
    recorder,
    site_agent,  # noqa: F401 - the site tests' `agent` fixture (replaces conftest's)
)
from tests.fleet.test_agent_site_layout import legacy_supervisor_program

pytestmark = pytest.mark.real

ANALYZE = shutil.which("systemd-analyze")
UNIT_DIR = "/etc/systemd/system"
# A systemctl that keeps state: enable/disable make the [Install] symlinks, start/stop mark
# units active, list-units and show report them.
FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> @CALLS@
STATE=@STATE@; WANTS=@WANTS@
cmd=$1; shift
[ "$1" = "--no-block" ] && shift
[ "$1" = "--" ] && shift
case $cmd in
  daemon-reload) ;;
  enable) mkdir -p "$WANTS"; for u; do ln -sf "../${u%%@*}@.service" "$WANTS/$u"; done;;
  disable) for u; do rm -f "$WANTS/$u"; done;;
  start|restart) for u; do echo "$(( $(cat "$STATE/$u" 2>/dev/null || echo 100) + 1 ))" > "$STATE/$u"; done;;
  stop) for u; do rm -f "$STATE/$u"; done;;
  is-active) rc=3; for u; do
      if [ -e "$STATE/$u" ]; then echo active; rc=0; else echo inactive; fi; done; exit $rc;;
  list-units) for f in "$STATE"/*; do [ -e "$f" ] && echo "$(basename "$f") loaded active running x"; done;;
  show) shift 2; [ "$1" = "--" ] && shift; for u; do
      pid=$(cat "$STATE/$u" 2>/dev/null || echo 0)
      echo "Id=$u"; echo "ActiveState=$([ "$pid" = 0 ] && echo inactive || echo active)"
      echo "SubState=running"; echo "NRestarts=2"; echo "ExecMainStatus=0"; echo "ExecMainCode=0"
      echo "MainPID=$pid"; echo; done;;
  *) echo "fake systemctl: unsupported $cmd" >&2; exit 2;;
esac
"""
JOURNAL = json.dumps(
    {"_PID": "1", "UNIT": "chom-site1-worker-queue@1.service",
     "MESSAGE": "chom-site1-worker-queue@1.service: Main process exited, code=killed, status=9/KILL"}
)  # fmt: skip


@pytest.fixture
def workers_agent(agent: Agent, base: Path) -> Agent:
    if ANALYZE is None:
        pytest.skip("systemd-analyze is not installed")
    state = base / "units"
    state.mkdir()
    fake = FAKE_SYSTEMCTL.replace("@CALLS@", str(agent.fakes / "systemctl.calls"))
    fake = fake.replace("@STATE@", str(state)).replace(
        "@WANTS@", str(agent.path(f"{UNIT_DIR}/multi-user.target.wants"))
    )
    agent.env["VPSMANAGER_SYSTEMCTL"] = agent.fake("systemctl", fake)
    agent.env["VPSMANAGER_JOURNALCTL"] = agent.fake("journalctl", f"#!/bin/sh\necho '{JOURNAL}'\n")
    agent.path(UNIT_DIR).mkdir(parents=True, exist_ok=True)
    return agent


def worker(name: str = "queue", **extra: Any) -> dict[str, Any]:
    fields = {"name": name, "argv": ["php", "artisan", "queue:work"], "processes": 1}
    return fields | {"restart": "always", "enabled": True} | extra


def apply(agent: Agent, workers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return agent.ok("workers-apply", {"name": SITE, "workers": workers} | extra)


def unit(agent: Agent, name: str) -> Path:
    return agent.path(f"{UNIT_DIR}/chom-site1-worker-{name}@.service")


def test_it_renders_a_hardened_template_unit_in_the_site_slice_and_no_tenant_text_in_it(
    workers_agent: Agent, site: dict[str, Any]
) -> None:
    hostile = ["php", "-r", "echo 1;\nExecStartPre=/bin/sh", "%i $HOME ; rm -rf /"]
    with pytest.raises(AssertionError, match="line breaks"):
        apply(workers_agent, [worker(argv=hostile)])
    assert not unit(workers_agent, "queue").exists()
    argv = ["php", "-r", "%i $HOME ; rm -rf / \"'\\"]
    out = apply(workers_agent, [worker(argv=argv, processes=2, restart="on-failure"), worker("node")])
    assert out["changed"] is True
    text = unit(workers_agent, "queue").read_text()
    for line in (
        "User=site1", "Group=site1", "Slice=chom-site1.slice", "WorkingDirectory=/var/www/site1/current",
        "Restart=on-failure", "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectSystem=strict",
        "ReadWritePaths=/var/www/site1", "KillMode=mixed", "TimeoutStopSec=60s", "RestartSec=3s",
        "ExecStart=/usr/bin/python3 -I /usr/local/lib/chom/worker-exec /etc/chom/workers/site1.json queue",
    ):  # fmt: skip
        assert line in text.splitlines(), line
    assert "rm -rf" not in text and "$HOME" not in text
    spec = workers_agent.path("/etc/chom/workers/site1.json")
    assert mode_owner(spec) == (0o640, 0, site["gid"])
    assert json.loads(spec.read_text())["workers"] == {
        "queue": argv,
        "node": ["php", "artisan", "queue:work"],
    }
    assert mode_owner(workers_agent.path("/usr/local/lib/chom/worker-exec"))[:2] == (0o755, 0)
    calls = workers_agent.calls("systemctl")
    assert "daemon-reload" in calls
    units = ["node@1", "queue@1", "queue@2"]
    assert "enable -- " + " ".join(f"chom-site1-worker-{u}.service" for u in units) in calls


def test_it_changes_nothing_the_second_time_and_restarts_running_workers_when_asked(
    workers_agent: Agent, site: dict[str, Any]
) -> None:
    apply(workers_agent, [worker()])
    before = len(workers_agent.calls("systemctl"))
    again = apply(workers_agent, [worker()])
    assert again["changed"] is False
    assert not [
        c
        for c in workers_agent.calls("systemctl")[before:]
        if c.split()[0] not in ("list-units", "is-active")
    ]
    restarted = apply(workers_agent, [worker()], restart=True)
    assert restarted["data"]["restarted"] == ["chom-site1-worker-queue@1.service"]
    assert "restart --no-block -- chom-site1-worker-queue@1.service" in workers_agent.calls("systemctl")


def test_it_stops_and_removes_what_is_no_longer_wanted(workers_agent: Agent, site: dict[str, Any]) -> None:
    apply(workers_agent, [worker(processes=3), worker("old")])
    apply(workers_agent, [worker(processes=1), worker("off", enabled=False)])
    calls = workers_agent.calls("systemctl")
    stale = (
        "chom-site1-worker-old@1.service chom-site1-worker-queue@2.service chom-site1-worker-queue@3.service"
    )
    assert f"stop -- {stale}" in calls and f"disable -- {stale}" in calls
    assert not unit(workers_agent, "old").exists() and unit(workers_agent, "off").exists()
    wants = workers_agent.path(f"{UNIT_DIR}/multi-user.target.wants")
    assert sorted(os.listdir(wants)) == ["chom-site1-worker-queue@1.service"]
    status = workers_agent.ok("workers-status", {"name": SITE})["data"]["workers"]
    assert set(status) == {"off", "queue"}
    assert status["off"]["running"] == 0
    queue = status["queue"]
    assert (queue["running"], queue["pids"], queue["restarts"]) == (1, 1, 2)
    assert queue["last_exit"] == {"kind": "signal", "status": 9}  # from systemd's journal
    # The site is removed: so are its workers.
    workers_agent.ok("site-remove", {"name": SITE})
    assert not unit(workers_agent, "queue").exists() and not unit(workers_agent, "off").exists()
    assert not workers_agent.path("/etc/chom/workers/site1.json").exists()


def test_it_installs_nothing_when_systemd_refuses_a_unit(workers_agent: Agent, site: dict[str, Any]) -> None:
    apply(workers_agent, [worker()])
    before = unit(workers_agent, "queue").read_bytes()
    workers_agent.env["VPSMANAGER_SYSTEMD_ANALYZE"] = workers_agent.fake(
        "analyze", "#!/bin/sh\necho 'chom-site1-worker-queue@.service:12: Unknown key' >&2\nexit 1\n"
    )
    calls = len(workers_agent.calls("systemctl"))
    result = workers_agent("workers-apply", {"name": SITE, "workers": [worker(restart="on-failure")]})
    assert result.rc == 1 and result.error["code"] == "unit_invalid"
    assert "Unknown key" in result.error["message"]
    assert unit(workers_agent, "queue").read_bytes() == before
    # Only the failure's question "is the server shutting down?": no unit touched.
    assert workers_agent.calls("systemctl")[calls:] == ["is-system-running"]


# --------------------------------------------------------------------------- the launcher


def launch(
    agent: Agent, site: dict[str, Any], base: Path, env_file: Path | None
) -> subprocess.CompletedProcess:
    """The launcher as systemd runs it (as the site user), its command printing its environment."""
    apply(agent, [worker()])
    spec = base / "spec.json"
    printer = ["python3", "-I", "-c", "import json, os; print(json.dumps(dict(os.environ)))"]
    spec.write_text(json.dumps({
        "user": SITE, "home": "/var/www/site1", "env_file": str(env_file) if env_file else None,
        "workers": {"queue": printer},
    }))  # fmt: skip
    spec.chmod(0o644)
    launcher = agent.path("/usr/local/lib/chom/worker-exec")
    setpriv = ["setpriv", f"--reuid={site['uid']}", f"--regid={site['gid']}", "--clear-groups", "--"]
    return subprocess.run(
        [*setpriv, "/usr/bin/python3", "-I", str(launcher), str(spec), "queue"],
        capture_output=True, text=True, timeout=30, cwd="/",
        env={"INVOCATION_ID": "x", "SECRET_OF_ROOT": "no"},
    )  # fmt: skip


HOSTILE = {
    "A": "x\nB=injected",
    "C": 'say "hi" $HOME ${PATH} \\n',
    "D": "  padded # not a comment  ",
    "E": "héllo ✓",
    "F": "",
}


def test_the_launcher_gives_the_command_the_sites_environment_exactly(
    workers_agent: Agent, site: dict[str, Any], base: Path
) -> None:
    agent = workers_agent
    agent.env["VPSMANAGER_PHP_FPM_RELOAD"] = agent.fake("fpm-reload", recorder(agent.fakes / "fpm.calls"))
    agent.ok("release-create", placeholder(R[0]))
    agent.ok("env-apply", {"name": SITE, "site_env": {"managed": {}, "variables": HOSTILE}})
    done = launch(agent, site, base, agent.path("/var/www/site1/shared/.env"))
    assert done.returncode == 0, done.stderr
    env = json.loads(done.stdout)
    assert {k: env.get(k) for k in HOSTILE} == HOSTILE
    assert "B" not in env and "SECRET_OF_ROOT" not in env
    assert (env["USER"], env["HOME"], env["INVOCATION_ID"]) == (SITE, "/var/www/site1", "x")


def test_the_launcher_refuses_an_env_the_site_linked_to_a_root_only_file(
    workers_agent: Agent, site: dict[str, Any], base: Path
) -> None:
    agent = workers_agent
    shadow = agent.path("/etc/shadow")
    shadow.write_text("root:$6$the-root-hash:19000:0:99999:7:::\n")
    shadow.chmod(0o600)
    link = agent.path("/var/www/site1/shared/.env")
    link.unlink(missing_ok=True)
    link.symlink_to(shadow)  # what the site user can do in its own shared/
    done = launch(agent, site, base, link)
    assert done.returncode == 78
    assert "not starting" in done.stderr
    assert "the-root-hash" not in done.stdout + done.stderr
    # Nor through a link to a file the site may read: the link itself is refused.
    readable = base / "readable.env"
    readable.write_text("GREETING=linked\n")
    readable.chmod(0o644)
    link.unlink()
    link.symlink_to(readable)
    assert launch(agent, site, base, link).returncode == 78


def test_it_removes_the_supervisor_program_of_an_older_chom_and_says_so(
    workers_agent: Agent, site: dict[str, Any]
) -> None:
    legacy = legacy_supervisor_program(workers_agent)
    out = apply(workers_agent, [worker()])
    assert out["data"]["supervisor_removed"] is True and not legacy.exists()
    assert workers_agent.calls("supervisorctl") == ["reread", "update"]
    assert apply(workers_agent, [worker()])["data"]["supervisor_removed"] is False


def test_it_leaves_alone_the_units_of_a_site_whose_name_extends_this_ones(
    workers_agent: Agent, site: dict[str, Any]
) -> None:
    # Site "site1-worker-x", worker "y": its unit also matches site1's file name pattern.
    theirs = workers_agent.path(f"{UNIT_DIR}/chom-site1-worker-x-worker-y@.service")
    theirs.write_text("[Service]\nUser=site1-worker-x\n")
    apply(workers_agent, [worker()])
    apply(workers_agent, [])
    assert theirs.exists() and not unit(workers_agent, "queue").exists()
    assert workers_agent.ok("workers-status", {"name": SITE})["data"]["workers"] == {}


def test_it_keeps_a_suspended_sites_workers_stopped_and_starts_them_when_the_suspension_ends(
    workers_agent: Agent, site: dict[str, Any]
) -> None:
    agent = workers_agent
    apply(agent, [worker(processes=2), worker("off", enabled=False)])
    units = ["chom-site1-worker-queue@1.service", "chom-site1-worker-queue@2.service"]
    wants = agent.path(f"{UNIT_DIR}/multi-user.target.wants")
    assert sorted(os.listdir(wants)) == units

    held = apply(agent, [worker(processes=2), worker("off", enabled=False)], suspended=True, restart=True)
    assert held["changed"] is True and held["data"]["restarted"] == []
    assert f"stopped {', '.join(units)} (site suspended)" in held["log"]
    calls = agent.calls("systemctl")
    assert f"stop -- {' '.join(units)}" in calls and f"disable -- {' '.join(units)}" in calls
    assert os.listdir(wants) == []  # not started at boot either
    assert agent.ok("workers-status", {"name": SITE})["data"]["workers"]["queue"]["running"] == 0
    # The units and the spec stay as they were: the suspension changes nothing the site set.
    assert unit(agent, "queue").exists() and unit(agent, "off").exists()
    assert set(json.loads(agent.path("/etc/chom/workers/site1.json").read_text())["workers"]) == {
        "queue",
        "off",
    }

    # Applied again while suspended (a deploy, a worker change, an environment change): nothing
    # starts, and nothing changes.
    before = len(agent.calls("systemctl"))
    again = apply(agent, [worker(processes=2), worker("off", enabled=False)], suspended=True, restart=True)
    assert again["changed"] is False, again["log"]
    assert not [
        c for c in agent.calls("systemctl")[before:] if c.split()[0] in ("start", "restart", "enable")
    ]
    assert agent.ok("env-apply", {"name": SITE, "site_env": {"managed": {}, "variables": {"A": "1"}}})
    assert agent.ok("workers-status", {"name": SITE})["data"]["workers"]["queue"]["running"] == 0

    lifted = apply(agent, [worker(processes=2), worker("off", enabled=False)])
    assert lifted["changed"] is True and sorted(lifted["data"]["restarted"]) == units
    assert sorted(os.listdir(wants)) == units
    assert agent.ok("workers-status", {"name": SITE})["data"]["workers"]["queue"]["running"] == 2
