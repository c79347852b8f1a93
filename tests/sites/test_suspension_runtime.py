"""What the agent is told about a suspended site's cron timers and workers (sites/suspension.py):
from the moment a suspension is asked for until it is lifted, every cron-apply and workers-apply
(a deploy, a change of a job or a worker, a restore) says `suspended`, so none of them starts the
site's code; the rows stay the tenant's; the API shows the workers as suspended."""

import pytest
from django.utils import timezone

from chom.models import Operation
from fleet.models import Vps
from sites.cron_jobs import cron_payload
from sites.models import CronJob, Site, Worker
from sites.services import site_create, site_suspend, site_unsuspend, tenant_sites_suspend
from sites.workers import workers_payload


@pytest.fixture
def vps(db):
    return Vps.objects.create(
        name="web-1", provider="manual", ip_address="192.0.2.10", status="active", max_sites=10,
        php_versions=["8.2"],
    )  # fmt: skip


@pytest.fixture
def site(alice, vps) -> Site:
    site, _, _ = site_create(tenant=alice.tenant, domain="held.example.com", type="php")
    Site.objects.filter(pk=site.pk).update(status="active", current_release="r1")
    Operation.objects.all().delete()  # the create's deploy: not what these tests look at
    CronJob.objects.create(site=site, schedule="* * * * *", command=["php", "tick.php"])
    Worker.objects.create(site=site, name="jobs", command=["php", "worker.php"])
    return Site.objects.get(pk=site.pk)


def _held(site: Site) -> tuple[bool, bool]:
    site = Site.objects.get(pk=site.pk)
    return cron_payload(site)["suspended"], workers_payload(site, restart=True)["suspended"]


def _finish(op: Operation) -> None:
    """The run's outcome on the row, as the operation would leave it (no SSH here)."""
    status = "suspended" if op.kind == "site.suspend" else "active"
    Site.objects.filter(pk=int(op.target_id)).update(status=status)
    Operation.objects.filter(pk=op.pk).update(status="succeeded", finished_at=timezone.now())


def test_it_tells_the_agent_to_keep_the_timers_and_workers_stopped_while_suspended(site):
    assert _held(site) == (False, False)
    op = site_suspend(site=site, reason="billing")
    assert _held(site) == (True, True)  # already while the suspension is queued
    _finish(op)
    assert _held(site) == (True, True)
    # A deploy that was queued before runs meanwhile: its status is not "suspended" then.
    Site.objects.filter(pk=site.pk).update(status="deploying")
    assert _held(site) == (True, True)
    Site.objects.filter(pk=site.pk).update(status="suspended")
    op = site_unsuspend(site=Site.objects.get(pk=site.pk), reason="billing")
    assert _held(site) == (True, True)  # until the unsuspend run has put the site back
    _finish(op)
    assert _held(site) == (False, False)


def test_a_tenant_suspension_holds_every_site_and_the_rows_stay_as_the_tenant_set_them(alice, site):
    other, _, _ = site_create(tenant=alice.tenant, domain="second.example.com", type="static")
    Site.objects.filter(pk=other.pk).update(status="active", current_release="r1")
    before = list(Worker.objects.values_list("name", "command", "processes", "restart", "enabled"))
    jobs = list(CronJob.objects.values_list("schedule", "command", "enabled"))
    assert len(tenant_sites_suspend(tenant=alice.tenant, reason="billing")) == 2
    assert _held(site) == (True, True) and _held(other) == (True, True)
    assert list(Worker.objects.values_list("name", "command", "processes", "restart", "enabled")) == before
    assert list(CronJob.objects.values_list("schedule", "command", "enabled")) == jobs
    # Disabled jobs and workers are sent as they are: lifting the suspension restores exactly them.
    CronJob.objects.update(enabled=False)
    assert [j["enabled"] for j in cron_payload(Site.objects.get(pk=site.pk))["jobs"]] == [False]


def test_a_change_to_a_suspended_sites_jobs_or_workers_is_saved_and_applied_held(alice, site):
    _finish(site_suspend(site=site, reason="billing"))
    client = alice.client()
    job = site.cron_jobs.get()
    response = client.patch(
        f"/api/v1/sites/{site.pk}/cron-jobs/{job.pk}", {"schedule": "*/5 * * * *"}, format="json"
    )
    assert response.status_code == 202, response.content
    worker = site.workers.get()
    response = client.patch(f"/api/v1/sites/{site.pk}/workers/{worker.pk}", {"processes": 2}, format="json")
    assert response.status_code == 202, response.content
    site.refresh_from_db()
    assert cron_payload(site)["jobs"][0]["on_calendar"] == ["*-*-* *:00/5:00"]
    assert workers_payload(site)["workers"][0]["processes"] == 2
    assert _held(site) == (True, True)


def test_the_api_shows_a_suspended_sites_workers_as_suspended(alice, site):
    site.workers.update(status={"running": 0}, status_checked_at=timezone.now())
    url = f"/api/v1/sites/{site.pk}/workers"
    assert alice.client().get(url).json()["results"][0]["status"]["state"] == "down"
    _finish(site_suspend(site=site, reason="billing"))
    assert alice.client().get(url).json()["results"][0]["status"]["state"] == "suspended"
    site.workers.update(status={"running": 1})  # read before the suspension's stop took effect
    assert alice.client().get(url).json()["results"][0]["status"]["state"] == "stopping"
