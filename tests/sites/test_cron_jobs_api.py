"""The cron jobs API: validation (schedule, argv), scoping, the tier's ceiling, the 202 operation
that applies the site's whole set, the payload the agent gets, and Laravel's scheduler as an
ordinary job of a new Laravel site."""

import pytest

from chom.models import AuditEvent, Operation
from fleet.models import Vps
from sites.cron_jobs import cron_payload
from sites.models import CronJob, Site
from sites.services import site_create
from sites.types import site_type


@pytest.fixture
def vps(db):
    return Vps.objects.create(
        name="web-1",
        provider="manual",
        ip_address="192.0.2.10",
        status="active",
        max_sites=10,
        php_versions=["8.2"],
    )


def _site(persona, type_="php") -> Site:
    repository = {"url": "https://git.example/app.git", "branch": "main"} if type_ == "laravel" else None
    site, _, _ = site_create(
        tenant=persona.tenant, domain=f"{type_}.example.com", type=type_, repository=repository
    )
    # Not yet deployed: reads do not ask the VPS (nothing runs there yet).
    Site.objects.filter(pk=site.pk).update(status="active")
    Operation.objects.all().delete()  # the create's deploy: not what these tests look at
    return Site.objects.get(pk=site.pk)


def _url(site, job=None):
    return f"/api/v1/sites/{site.pk}/cron-jobs" + (f"/{job}" if job else "")


JOB = {"schedule": "*/5 * * * *", "command": ["php", "artisan", "report", "--since=5m"]}


def test_it_creates_a_job_with_a_202_operation_and_lists_it(alice, vps):
    site = _site(alice)
    response = alice.client().post(_url(site), JOB, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    op = Operation.objects.get(id=body["operation"]["id"])
    assert (op.kind, op.status, op.requested_by_tenant) == ("site.cron", "queued", True)
    assert body["schedule"] == "*/5 * * * *" and body["on_calendar"] == ["*-*-* *:00/5:00"]
    assert body["enabled"] is True and body["last_run_at"] is None and body["last_exit_code"] is None
    listed = alice.client().get(_url(site)).json()
    assert listed["count"] == 1 and listed["results"][0]["command"] == JOB["command"]
    detail = alice.client().get(_url(site, body["id"])).json()
    assert detail["id"] == body["id"]
    assert AuditEvent.objects.filter(action="site.cron_job_created").count() == 1


def test_it_changes_and_deletes_a_job_each_with_an_operation(alice, vps):
    site = _site(alice)
    job = alice.client().post(_url(site), JOB, format="json").json()
    response = alice.client().patch(
        _url(site, job["id"]), {"enabled": False, "schedule": "@daily"}, format="json"
    )
    assert response.status_code == 202, response.content
    assert response.json()["enabled"] is False and response.json()["on_calendar"] == ["*-*-* 00:00:00"]
    row = CronJob.objects.get(pk=job["id"])
    assert (row.enabled, row.schedule, row.command) == (False, "@daily", JOB["command"])
    response = alice.client().delete(_url(site, job["id"]))
    assert response.status_code == 202 and response.json()["operation"]["id"]
    assert not CronJob.objects.filter(pk=job["id"]).exists()
    kinds = list(Operation.objects.order_by("created_at").values_list("kind", flat=True))
    assert kinds == ["site.cron", "site.cron", "site.cron"]


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"schedule": "@reboot", "command": ["true"]}, "schedule", "@reboot"),
        ({"schedule": "61 * * * *", "command": ["true"]}, "schedule", "0-59"),
        ({"schedule": "* * * *", "command": ["true"]}, "schedule", "five fields"),
        ({"schedule": "* * * * * ; rm -rf /", "command": ["true"]}, "schedule", "five fields"),
        ({"schedule": "* * * * *", "command": []}, "command", ""),
        ({"schedule": "* * * * *", "command": "php artisan x"}, "command", ""),
        ({"schedule": "* * * * *", "command": ["php", "a\nb"]}, "command", "line breaks"),
        ({"schedule": "* * * * *", "command": ["php", "a\x00b"]}, "command", ""),
        ({"schedule": "* * * * *", "command": ["x" * 1001]}, "command", ""),
        ({"schedule": "* * * * *", "command": ["x"] * 51}, "command", ""),
        ({"schedule": "* * * * *", "command": [" "]}, "command", "empty"),
        ({"command": ["true"]}, "schedule", ""),
    ],
)
def test_it_refuses_invalid_input_with_field_errors_and_saves_nothing(alice, vps, body, field, reason):
    site = _site(alice)
    response = alice.client().post(_url(site), body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert field in error["fields"], error
    assert reason in str(error["fields"][field]), error
    assert not CronJob.objects.filter(site=site).exists() and not Operation.objects.exists()


def test_it_refuses_an_invalid_patch_and_changes_nothing(alice, vps):
    site = _site(alice)
    job = alice.client().post(_url(site), JOB, format="json").json()
    response = alice.client().patch(_url(site, job["id"]), {"schedule": "@reboot"}, format="json")
    assert response.status_code == 400 and "schedule" in response.json()["error"]["fields"]
    assert CronJob.objects.get(pk=job["id"]).schedule == JOB["schedule"]
    assert Operation.objects.count() == 1


def test_it_refuses_a_job_past_the_tier_ceiling(alice, vps):
    site = _site(alice)
    limit = alice.tenant.limits.cron_jobs_max
    CronJob.objects.bulk_create(
        [CronJob(site=site, schedule="@hourly", command=["true"]) for _ in range(limit)]
    )
    response = alice.client().post(_url(site), JOB, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "tier_limit_reached" and f"allows {limit} cron jobs" in error["message"]
    assert CronJob.objects.filter(site=site).count() == limit


def test_it_answers_404_for_another_tenants_site_or_job(alice, charlie, vps):
    site = _site(alice)
    job = alice.client().post(_url(site), JOB, format="json").json()
    other = charlie.client()
    assert other.get(_url(site)).status_code == 404
    assert other.get(_url(site, job["id"])).status_code == 404
    assert other.patch(_url(site, job["id"]), {"enabled": False}, format="json").status_code == 404
    assert other.delete(_url(site, job["id"])).status_code == 404
    assert other.post(_url(site), JOB, format="json").status_code == 404
    # A job id of another site of the same tenant is a 404 under this site.
    second = Site.objects.create(tenant=alice.tenant, vps=vps, domain="two.example.com", type="php")
    assert alice.client().get(_url(second, job["id"])).status_code == 404
    assert CronJob.objects.get(pk=job["id"]).enabled is True


def test_it_gives_the_agent_the_whole_set_with_on_calendar_lines(alice, vps):
    site = _site(alice)
    CronJob.objects.create(site=site, schedule="30 4 1,15 * 5", command=["php", "a.php"])
    CronJob.objects.create(site=site, schedule="@hourly", command=["true"], enabled=False)
    payload = cron_payload(site)
    assert payload["name"] == site.unix_user
    jobs = payload["jobs"]
    assert [j["on_calendar"] for j in jobs] == [
        ["Fri *-*-* 04:30:00", "*-*-01,15 04:30:00"],
        ["*-*-* *:00:00"],
    ]
    assert [j["enabled"] for j in jobs] == [True, False] and jobs[0]["command"] == ["php", "a.php"]
    assert all(j["timeout_seconds"] > 0 for j in jobs)


def test_it_gives_a_new_laravel_site_its_scheduler_as_an_ordinary_job(alice, vps):
    site = _site(alice, "laravel")
    jobs = list(site.cron_jobs.values_list("schedule", "command", "enabled"))
    assert jobs == [("* * * * *", ["php", "artisan", "schedule:run"], True)]
    # No /etc/cron.d file any more: the deploy's cron-apply installs it (and removes an old one).
    assert site_type("laravel").post_activate(site, first_deploy=True) == []
    job = site.cron_jobs.get()
    assert alice.client().delete(_url(site, job.pk)).status_code == 202
    assert not site.cron_jobs.exists()


def test_it_refuses_changes_while_the_site_is_being_deleted(alice, vps):
    site = _site(alice)
    job = alice.client().post(_url(site), JOB, format="json").json()
    Site.objects.filter(pk=site.pk).update(status="deleting")
    assert alice.client().patch(_url(site, job["id"]), {"enabled": False}, format="json").status_code == 409
