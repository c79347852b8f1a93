"""Cron jobs end to end on a real nspawn VPS (real systemd): a job every minute runs from its
timer as the site user, in the site's slice, with a variable from the site's environment; its last
run and exit code show in the API; a .env swapped for a link to /etc/shadow makes root read
nothing; a schedule systemd refuses leaves the previous units; disabling stops the timer;
deleting the job removes its units."""

import pytest

from chom.models import Operation
from chom.operations import operation_execute
from fleet.remote.agent_client import Agent, AgentError
from fleet.remote.commands import Command
from fleet.services import transport_for
from sites.cron_jobs import cron_payload
from sites.models import CronJob, Site
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e


def _ok(response) -> Operation:
    assert response.status_code == 202, response.content
    operation_execute(operation_id=response.json()["operation"]["id"])
    op = Operation.objects.get(id=response.json()["operation"]["id"])
    assert op.status == "succeeded", f"{op.error}\n" + "\n".join(e.message for e in op.log_entries.all())
    return op


def _sh(vps, *argv) -> str:
    with transport_for(vps) as transport:
        result = transport.run(Command.of(*argv))
    return (result.stdout + result.stderr).strip()


def _log(op: Operation) -> str:
    return "\n".join(e.message for e in op.log_entries.all())


def test_it_runs_a_cron_job_from_its_timer_as_the_site_user_with_its_environment(alice, make_vps):
    vps = make_vps("e2e-cron")
    client = alice.client()
    response = client.post("/api/v1/sites", {"domain": "cron.test", "type": "php"}, format="json")
    _ok(response)
    site = Site.objects.get(pk=response.json()["id"])
    name = site.unix_user
    env = f"/api/v1/sites/{site.pk}/environment"
    _ok(client.put(env, {"variables": {"GREETING": "hello-from-env"}}, format="json"))

    out = f"/var/www/{name}/tmp/cron.txt"
    script = f'echo "$GREETING $(id -un) $(pwd -P)" > {out}; echo "ran as $(id -un)"; echo "second line"'
    response = client.post(
        f"/api/v1/sites/{site.pk}/cron-jobs",
        {"schedule": "* * * * *", "command": ["/bin/sh", "-c", script]},
        format="json",
    )
    _ok(response)
    job_id = response.json()["id"]
    unit = f"chom-{name}-cron-{job_id}"
    assert _sh(vps, "systemctl", "is-active", f"{unit}.timer") == "active"
    assert _sh(vps, "systemctl", "is-enabled", f"{unit}.timer") == "enabled"
    service = _sh(vps, "cat", f"/etc/systemd/system/{unit}.service")
    assert f"User={name}" in service and f"Slice=chom-{name}.slice" in service
    assert "hello" not in service and script not in service  # the argv is not world-readable
    assert _sh(vps, "stat", "-c", "%a %U", f"/var/lib/chom/cron/{name}/{job_id}.json") == "640 root"
    # The same set again: nothing changes on the VPS.
    again = _ok(client.patch(f"/api/v1/sites/{site.pk}/cron-jobs/{job_id}", {"enabled": True}, format="json"))
    assert "no changes" in _log(again), _log(again)

    # The timer itself starts it (within a minute and a bit): no manual start.
    wait_for(
        lambda: _sh(vps, "cat", out).startswith("hello"), timeout=80, interval=2, what="a timer-driven run"
    )
    greeting, user, cwd = _sh(vps, "cat", out).split()
    assert (greeting, user) == ("hello-from-env", name)
    assert cwd.startswith(f"/var/www/{name}/releases/")
    assert _sh(vps, "stat", "-c", "%U", out) == name

    def last_run():
        job = client.get(f"/api/v1/sites/{site.pk}/cron-jobs/{job_id}").json()
        return job if job["last_exit_code"] is not None else None

    job = wait_for(last_run, timeout=30, interval=2, what="the last run in the API")
    assert job["last_exit_code"] == 0 and job["last_run_at"]
    assert f"ran as {name}" in job["last_output"]
    assert "second line" in job["last_output"], _sh(
        vps, "journalctl", "-o", "verbose", "-u", f"{unit}.service"
    )
    assert _sh(vps, "systemctl", "show", "-p", "Slice", f"{unit}.service") == f"Slice=chom-{name}.slice"

    # A .env swapped for a link to /etc/shadow: the runner reads it as the site user, so it
    # reads nothing, and the job still runs (without the variables).
    _sh(vps, "setpriv", f"--reuid={name}", f"--regid={name}", "--clear-groups", "--",
        "ln", "-sfn", "/etc/shadow", f"/var/www/{name}/shared/.env")  # fmt: skip
    _sh(vps, "systemctl", "start", f"{unit}.service")
    assert _sh(vps, "cat", out).split()[0] == name  # no greeting any more
    journal = _sh(vps, "journalctl", "--no-pager", "-o", "cat", "-u", f"{unit}.service", "-n", "50")
    assert "root:" not in journal and "$y$" not in journal and "$6$" not in journal
    _ok(client.put(env, {"variables": {"GREETING": "hello-again"}}, format="json"))  # a file again

    # A failing command: its exit code shows.
    _ok(client.patch(
        f"/api/v1/sites/{site.pk}/cron-jobs/{job_id}",
        {"command": ["/bin/sh", "-c", "echo failing on purpose; exit 3"]},
        format="json",
    ))  # fmt: skip
    _sh(vps, "systemctl", "start", f"{unit}.service")
    job = wait_for(
        lambda: (
            (j := client.get(f"/api/v1/sites/{site.pk}/cron-jobs/{job_id}").json())["last_exit_code"] == 3
            and j
        ),
        timeout=30,
        interval=2,
        what="exit code 3 in the API",
    )
    assert "failing on purpose" in job["last_output"]

    # A schedule systemd refuses (past CHOM's own checks): refused before anything changes.
    before = _sh(vps, "cat", f"/etc/systemd/system/{unit}.timer")
    payload = cron_payload(site)
    payload["jobs"][0]["on_calendar"] = ["*-*-* 25:00:00"]
    payload["jobs"].append({**payload["jobs"][0], "id": 999999, "on_calendar": ["*-*-* *:*:00"]})
    with transport_for(vps) as transport, pytest.raises(AgentError, match="calendar"):
        Agent(transport).call("cron-apply", payload)
    assert _sh(vps, "cat", f"/etc/systemd/system/{unit}.timer") == before
    assert "No such file" in _sh(vps, "ls", f"/etc/systemd/system/chom-{name}-cron-999999.service")

    # Disabled: the timer stops.
    _ok(client.patch(f"/api/v1/sites/{site.pk}/cron-jobs/{job_id}", {"enabled": False}, format="json"))
    assert _sh(vps, "systemctl", "is-active", f"{unit}.timer") == "inactive"
    assert _sh(vps, "systemctl", "is-enabled", f"{unit}.timer") == "disabled"

    # Deleted: its units and job file are gone.
    _ok(client.delete(f"/api/v1/sites/{site.pk}/cron-jobs/{job_id}"))
    assert not CronJob.objects.filter(pk=job_id).exists()
    listing = _sh(
        vps, "sh", "-c", f"ls /etc/systemd/system/ /var/lib/chom/cron/{name}/ | grep -c cron- || true"
    )
    assert listing == "0", listing
