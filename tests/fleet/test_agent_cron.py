"""cron-apply and cron-status, run locally against a temp root (systemctl is a recording fake,
systemd-analyze the real one): units match the site's set exactly, nothing is installed when
systemd refuses a schedule, stale jobs go, and the runner reads the site's .env as the site user
(a .env linked to a root-only file yields nothing)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fleet.agent_fixtures import (
    FAKE_SYSTEMCTL,
    SITE,
    Agent,
    site_agent,  # noqa: F401 - the site tests' `agent` fixture (replaces conftest's)
)

pytestmark = pytest.mark.real


def job(job_id: int = 1, **extra) -> dict:
    return {
        "id": job_id,
        "on_calendar": ["*-*-* *:00/5:00"],
        "command": ["php", "artisan", "report"],
        "enabled": True,
        "timeout_seconds": 600,
    } | extra


@pytest.fixture
def cron_agent(agent: Agent) -> Agent:
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    agent.ok("site-ensure", {"name": SITE})
    (agent.path("/run/systemd/system")).mkdir(parents=True)  # systemd is init here, for the agent
    (agent.path("/etc/systemd/system")).mkdir(parents=True, exist_ok=True)
    state = agent.root.parent / "systemd"
    fake = FAKE_SYSTEMCTL.replace("@STATE@", str(state)).replace(
        "@CALLS@", str(agent.fakes / "systemctl.calls")
    )
    fake = fake.replace("  *) echo", "  daemon-reload|restart) ;;\n  *) echo")
    agent.env["VPSMANAGER_SYSTEMCTL"] = agent.fake("systemctl", fake)
    return agent


def unit(job_id: int) -> str:
    return f"/etc/systemd/system/chom-{SITE}-cron-{job_id}"


def site_ids(agent: Agent) -> tuple[int, int]:
    for line in agent.path("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == SITE:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"no {SITE} in passwd")


def mode(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return st.st_mode & 0o7777, st.st_uid, st.st_gid


def test_it_installs_the_units_and_a_second_run_changes_nothing(cron_agent: Agent):
    (cron_agent.path("/etc/cron.d")).mkdir(parents=True, exist_ok=True)
    legacy = cron_agent.path(f"/etc/cron.d/chom-{SITE}")
    legacy.write_text("* * * * * site1 php artisan schedule:run\n")
    out = cron_agent.ok("cron-apply", {"name": SITE, "jobs": [job(7)]})
    assert out["changed"] is True and out["data"]["jobs"] == [{"id": 7, "timer": "active"}]
    service = cron_agent.path(unit(7) + ".service").read_text()
    assert "Type=oneshot\n" in service and f"User={SITE}\n" in service
    assert f"Slice=chom-{SITE}.slice\n" in service and "TimeoutStartSec=600\n" in service
    assert "artisan" not in service  # the argv is in the job file, readable by the site only
    assert (
        f"ExecStart=/usr/bin/python3 -IS /usr/local/lib/chom/cron-run /var/lib/chom/cron/{SITE}/7.json"
        in service
    )
    assert "EnvironmentFile" not in service  # systemd would read it as root
    timer = cron_agent.path(unit(7) + ".timer").read_text()
    assert "OnCalendar=*-*-* *:00/5:00\n" in timer and f"Unit=chom-{SITE}-cron-7.service\n" in timer
    job_file = cron_agent.path(f"/var/lib/chom/cron/{SITE}/7.json")
    gid = site_ids(cron_agent)[1]
    assert mode(job_file) == (0o640, 0, gid)
    assert mode(job_file.parent) == (0o750, 0, gid)
    assert json.loads(job_file.read_text()) == {
        "argv": ["php", "artisan", "report"],
        "directory": f"/var/www/{SITE}/current",
        "env_file": f"/var/www/{SITE}/shared/.env",
    }
    assert mode(cron_agent.path("/usr/local/lib/chom/cron-run"))[0] == 0o755
    assert not legacy.exists()
    calls = cron_agent.calls("systemctl")
    assert "daemon-reload" in calls and f"enable -- chom-{SITE}-cron-7.timer" in calls
    assert f"start -- chom-{SITE}-cron-7.timer" in calls
    again = cron_agent.ok("cron-apply", {"name": SITE, "jobs": [job(7)]})
    assert again["changed"] is False, again["log"]


def test_it_installs_nothing_when_systemd_refuses_a_schedule(cron_agent: Agent):
    cron_agent.ok("cron-apply", {"name": SITE, "jobs": [job(1)]})
    before = cron_agent.path(unit(1) + ".timer").read_text()
    bad = [job(1, on_calendar=["*-*-* 25:00:00"]), job(2)]
    result = cron_agent("cron-apply", {"name": SITE, "jobs": bad})
    assert result.rc == 1 and result.error["code"] == "config_invalid", result.out
    assert "calendar" in result.error["message"]
    assert cron_agent.path(unit(1) + ".timer").read_text() == before
    assert not cron_agent.path(unit(2) + ".service").exists()


def test_it_removes_stale_jobs_and_disables_a_disabled_one(cron_agent: Agent):
    cron_agent.ok("cron-apply", {"name": SITE, "jobs": [job(1), job(2)]})
    out = cron_agent.ok("cron-apply", {"name": SITE, "jobs": [job(2, enabled=False)]})
    assert out["data"]["jobs"] == [{"id": 2, "timer": "inactive"}]
    for path in (unit(1) + ".service", unit(1) + ".timer", f"/var/lib/chom/cron/{SITE}/1.json"):
        assert not cron_agent.path(path).exists(), path
    calls = cron_agent.calls("systemctl")
    assert f"disable -- chom-{SITE}-cron-1.timer" in calls and f"stop -- chom-{SITE}-cron-1.service" in calls
    assert f"disable -- chom-{SITE}-cron-2.timer" in calls and f"stop -- chom-{SITE}-cron-2.timer" in calls
    assert cron_agent.path(unit(2) + ".timer").exists()
    # Another site's jobs, with a name that starts like this one's, are never touched.
    other = cron_agent.path(f"/etc/systemd/system/chom-{SITE}-cron-x-3.timer")
    other.write_text("[Timer]\n")
    cron_agent.ok("cron-apply", {"name": SITE, "jobs": []})
    assert other.exists() and not cron_agent.path(unit(2) + ".timer").exists()


def test_it_refuses_jobs_where_systemd_is_not_init(cron_agent: Agent):
    shutil.rmtree(cron_agent.path("/run/systemd"))
    result = cron_agent("cron-apply", {"name": SITE, "jobs": [job(1)]})
    assert result.rc == 1 and result.error["code"] == "unsupported"
    assert "systemd is not the init system" in result.error["message"]
    assert cron_agent.ok("cron-apply", {"name": SITE, "jobs": []})["data"] == {"jobs": []}


@pytest.mark.parametrize(
    ("jobs", "reason"),
    [
        ([job(1, command=["php", "a\nb"])], "line breaks"),
        ([job(1, command=[])], "command must be a list"),
        ([job(1, on_calendar=["*-*-* 00:00:00\nExecStart=/bin/sh"])], "on_calendar"),
        ([job(1, on_calendar=[])], "on_calendar"),
        ([job(1), job(1)], "repeat an id"),
        ([job(0)], "out of range"),
        ([job(1, timeout_seconds=0)], "timeout_seconds"),
        ([job(1, extra=True)], "extra"),
    ],
)
def test_it_refuses_invalid_jobs(cron_agent: Agent, jobs, reason):
    result = cron_agent("cron-apply", {"name": SITE, "jobs": jobs})
    assert result.rc == 1 and result.error["code"] == "invalid_input", result.out
    assert reason in result.error["message"], result.error
    assert not list(cron_agent.path("/etc/systemd/system").glob("chom-*-cron-*"))


def test_it_removes_the_sites_cron_jobs_with_the_site(cron_agent: Agent):
    cron_agent.ok("cron-apply", {"name": SITE, "jobs": [job(1), job(2)]})
    cron_agent.ok("site-remove", {"name": SITE})
    assert not list(cron_agent.path("/etc/systemd/system").glob(f"chom-{SITE}-cron-*"))
    assert not cron_agent.path(f"/var/lib/chom/cron/{SITE}").exists()
    assert f"disable -- chom-{SITE}-cron-2.timer" in cron_agent.calls("systemctl")


def test_the_runner_reads_the_env_as_the_site_user_never_as_root(cron_agent: Agent):
    """What systemd's unit does (User= then ExecStart=), done by hand: setpriv to the site user,
    then the runner. The .env's variables arrive; a .env linked to a root-only file gives none."""
    cron_agent.ok("cron-apply", {"name": SITE, "jobs": [job(1)]})
    home = cron_agent.path(f"/var/www/{SITE}")
    uid, gid = site_ids(cron_agent)
    release = home / "releases" / "r1"
    release.mkdir()
    os.chown(release, uid, gid)
    (home / "current").symlink_to("releases/r1")
    env = home / "shared" / ".env"
    env.write_text('GREETING="hello \\"world\\"\\n"\nPLAIN=a=b\nHOME=/root\n# comment\n')
    os.chown(env, uid, gid)
    secret = cron_agent.path("/etc/root-only.env")
    secret.write_text("STOLEN=root-secret\n")
    secret.chmod(0o600)
    spec = cron_agent.root.parent / "job.json"
    script = "import json, os; print(json.dumps({'cwd': os.getcwd(), 'env': dict(os.environ)}))"
    spec.write_text(json.dumps({"argv": ["python3", "-c", script], "directory": str(home / "current"),
                                "env_file": str(env)}))  # fmt: skip
    spec.chmod(0o644)
    runner = cron_agent.path("/usr/local/lib/chom/cron-run")

    def run() -> dict:
        proc = subprocess.run(
            ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--",
             "/usr/bin/python3", "-IS", str(runner), str(spec)],
            capture_output=True, text=True, timeout=30,
            env={"HOME": str(home), "PATH": "/usr/bin:/bin", "USER": SITE},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    seen = run()
    assert seen["cwd"] == str(release)
    assert seen["env"]["GREETING"] == 'hello "world"\n' and seen["env"]["PLAIN"] == "a=b"
    assert seen["env"]["HOME"] == str(home)  # the unit's own values win
    env.unlink()
    os.symlink(secret, env)
    os.lchown(env, uid, gid)
    seen = run()
    assert "STOLEN" not in seen["env"] and "GREETING" not in seen["env"]


def test_cron_status_needs_systemd_and_valid_ids(cron_agent: Agent):
    result = cron_agent("cron-status", {"name": SITE, "ids": ["1"]})
    assert result.rc == 1 and result.error["code"] == "invalid_input"
    assert cron_agent.ok("cron-status", {"name": SITE, "ids": []})["data"] == {"jobs": []}
    shutil.rmtree(cron_agent.path("/run/systemd"))
    result = cron_agent("cron-status", {"name": SITE, "ids": [1]})
    assert result.rc == 1 and result.error["code"] == "unsupported"


def test_it_stops_a_suspended_sites_timers_and_runs_and_restores_them_after(cron_agent: Agent):
    state = cron_agent.root.parent / "systemd"
    jobs = [job(1), job(2, enabled=False)]
    cron_agent.ok("cron-apply", {"name": SITE, "jobs": jobs})
    timer1 = f"chom-{SITE}-cron-1.timer"
    assert (state / f"enabled.{timer1}").exists() and (state / f"active.{timer1}").exists()
    (state / f"active.chom-{SITE}-cron-1.service").touch()  # a run in progress

    held = cron_agent.ok("cron-apply", {"name": SITE, "jobs": jobs, "suspended": True})
    assert held["changed"] is True and held["data"]["suspended"] is True
    assert held["data"]["jobs"] == [{"id": 1, "timer": "inactive"}, {"id": 2, "timer": "inactive"}]
    assert f"disabled and stopped {timer1} (site suspended)" in held["log"]
    assert f"stopped the run in progress of chom-{SITE}-cron-1.service (site suspended)" in held["log"]
    assert not (state / f"enabled.{timer1}").exists() and not (state / f"active.{timer1}").exists()
    assert not (state / f"active.chom-{SITE}-cron-1.service").exists()
    # The units and job files stay: lifting the suspension needs nothing the site had to be resent.
    for path in (unit(1) + ".timer", unit(2) + ".timer", f"/var/lib/chom/cron/{SITE}/1.json"):
        assert cron_agent.path(path).exists(), path

    # Applied again while suspended (a deploy, a job change): nothing starts, nothing changes.
    before = len(cron_agent.calls("systemctl"))
    again = cron_agent.ok("cron-apply", {"name": SITE, "jobs": [*jobs, job(3)], "suspended": True})
    assert again["data"]["jobs"][2] == {"id": 3, "timer": "inactive"}
    assert not [c for c in cron_agent.calls("systemctl")[before:] if c.split()[0] in ("start", "enable")]
    same = cron_agent.ok("cron-apply", {"name": SITE, "jobs": [*jobs, job(3)], "suspended": True})
    assert same["changed"] is False, same["log"]

    lifted = cron_agent.ok("cron-apply", {"name": SITE, "jobs": [*jobs, job(3)]})
    assert lifted["data"]["jobs"] == [
        {"id": 1, "timer": "active"},
        {"id": 2, "timer": "inactive"},
        {"id": 3, "timer": "active"},
    ]
    assert (state / f"enabled.{timer1}").exists()
