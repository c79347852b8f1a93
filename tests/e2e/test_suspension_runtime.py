"""A suspended site runs none of its code on the shared VPS (issue 17 with issue 14): on a real
nspawn VPS (real systemd), a site with a cron job every minute and a worker is suspended: the
worker's unit stops and is disabled, the cron timer stops and is disabled; a deploy queued before
the suspension, a cron job and a worker changed and the environment changed during it start
nothing; suspending again changes nothing; lifting the suspension starts both again, exactly as
the tenant had them, and the worker processes the job that waited."""

import pytest

from chom.models import Operation
from chom.operations import operation_execute
from fleet.remote.commands import Command
from fleet.services import transport_for
from sites.models import CronJob, Site, Worker
from sites.services import site_suspend, site_unsuspend
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e


def _run(op_id) -> Operation:
    operation_execute(operation_id=op_id)
    op = Operation.objects.get(id=op_id)
    assert op.status == "succeeded", f"{op.kind}: {op.error}\n{_log(op)}"
    return op


def _accepted(response) -> int:
    assert response.status_code == 202, response.content
    return response.json()["operation"]["id"]


def _log(op: Operation) -> str:
    return "\n".join(e.message for e in op.log_entries.all())


def _sh(vps, *argv) -> str:
    with transport_for(vps) as transport:
        result = transport.run(Command.of(*argv))
    return (result.stdout + result.stderr).strip()


def _states(vps, *units) -> list[str]:
    """`is-active` and `is-enabled` of each unit, in that order."""
    return [_sh(vps, "systemctl", verb, unit) for unit in units for verb in ("is-active", "is-enabled")]


def test_it_stops_a_suspended_sites_cron_timers_and_workers_and_starts_them_when_lifted(alice, make_vps):
    vps = make_vps("e2e-susp-run")
    client = alice.client()
    response = client.post("/api/v1/sites", {"domain": "held-runtime.test", "type": "php"}, format="json")
    _run(_accepted(response))
    site = Site.objects.get(pk=response.json()["id"])
    name, tmp = site.unix_user, f"/var/www/{site.unix_user}/tmp"

    # A cron job every minute that writes a file, and a worker that moves queued jobs to done/.
    tick = f"date +%s >> {tmp}/cron.txt"
    response = client.post(
        f"/api/v1/sites/{site.pk}/cron-jobs",
        {"schedule": "* * * * *", "command": ["/bin/sh", "-c", tick]},
        format="json",
    )
    _run(_accepted(response))
    job_id = response.json()["id"]
    loop = (
        f'mkdir -p {tmp}/jobs {tmp}/done; while :; do for j in {tmp}/jobs/*.job; do [ -e "$j" ] && '
        f'mv "$j" {tmp}/done/; done; sleep 0.2; done'
    )
    response = client.post(
        f"/api/v1/sites/{site.pk}/workers",
        {"name": "jobs", "command": ["/bin/sh", "-c", loop]},
        format="json",
    )
    _run(_accepted(response))
    worker_id = response.json()["id"]
    timer, worker = f"chom-{name}-cron-{job_id}.timer", f"chom-{name}-worker-jobs@1.service"
    assert _states(vps, timer, worker) == ["active", "enabled", "active", "enabled"]

    def queue(job: str) -> None:
        _sh(vps, "runuser", "-u", name, "--", "touch", f"{tmp}/jobs/{job}.job")

    def done(job: str) -> bool:
        return f"{job}.job" in _sh(vps, "ls", f"{tmp}/done/").split()

    queue("before")
    wait_for(lambda: done("before"), timeout=30, interval=0.5, what="the worker processing a job")
    # A redeploy the tenant asked for while the site was live, still queued when it is suspended.
    queued_deploy = _accepted(client.post(f"/api/v1/sites/{site.pk}/deploy"))

    suspend = _run(site_suspend(site=site, reason="billing").id)
    assert _states(vps, timer, worker) == ["inactive", "disabled", "inactive", "disabled"]
    log = _log(suspend)
    assert f"stopped {worker} (site suspended)" in log, log
    assert f"disabled and stopped {timer} (site suspended)" in log, log
    # No further run is due: the timer has no next elapse (rather than waiting minutes for none).
    next_run = _sh(vps, "systemctl", "show", "-p", "NextElapseUSecRealtime", "--value", timer)
    assert next_run in ("", "0", "n/a", "infinity"), next_run
    queue("held")

    # Nothing the tenant or the platform does meanwhile starts them: the deploy queued before,
    # a cron job and a worker changed, the environment changed (which restarts running workers).
    deployed = _run(queued_deploy)
    site.refresh_from_db()
    assert (site.status, site.current_release) == ("suspended", deployed.result["release"])
    _run(
        _accepted(
            client.patch(
                f"/api/v1/sites/{site.pk}/cron-jobs/{job_id}",
                {"command": ["/bin/sh", "-c", tick + "; echo changed"]},
                format="json",
            )
        )
    )
    _run(
        _accepted(
            client.patch(
                f"/api/v1/sites/{site.pk}/workers/{worker_id}", {"restart": "on-failure"}, format="json"
            )
        )
    )
    _run(
        _accepted(
            client.patch(f"/api/v1/sites/{site.pk}/environment", {"variables": {"A": "1"}}, format="json")
        )
    )
    assert _states(vps, timer, worker) == ["inactive", "disabled", "inactive", "disabled"]
    assert not done("held"), "a suspended site's worker processed a job"
    # The rows are the tenant's, untouched by the suspension.
    assert CronJob.objects.get(pk=job_id).enabled and Worker.objects.get(pk=worker_id).enabled

    # Suspending again (another reason, the same state) changes nothing on the VPS.
    again = _run(site_suspend(site=site, reason="abuse").id)
    assert "(site suspended)" not in _log(again) and "kept stopped" in _log(again), _log(again)
    assert _states(vps, timer, worker) == ["inactive", "disabled", "inactive", "disabled"]

    # Lifted: both run again, and the job that waited is processed.
    _run(site_unsuspend(site=site, reason="abuse").id)
    assert _states(vps, timer, worker) == ["active", "enabled", "active", "enabled"]
    wait_for(lambda: done("held"), timeout=30, interval=0.5, what="the job queued during the suspension")
    queue("after")
    wait_for(lambda: done("after"), timeout=30, interval=0.5, what="a job queued after the suspension")
    site.refresh_from_db()
    assert site.status == "active"
